"""Analyses of profiles and embeddings: UMAP, outliers, batch effects, mean average precision."""

"""Profiles: exact streaming PCA, control-based normalisation and per-group aggregation."""

from cellscale.profiles._aggregate import aggregate
from cellscale.profiles._evaluate import knn_accuracy
from cellscale.profiles._normalize import robustize, spherize, standardize
from cellscale.profiles._pca import PCA
from cellscale.profiles._scalers import Robustizer, Standardizer
from cellscale.profiles._spherize import Spherizer

__all__ = [
    "PCA",
    "Robustizer",
    "Spherizer",
    "Standardizer",
    "aggregate",
    "knn_accuracy",
    "robustize",
    "spherize",
    "standardize",
]

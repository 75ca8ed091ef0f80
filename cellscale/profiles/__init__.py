"""Profiles: exact streaming PCA, control-based normalisation, aggregation and feature selection."""

from cellscale.profiles._aggregate import aggregate
from cellscale.profiles._blocklist import BLOCKLIST, blocklist_features
from cellscale.profiles._cell_aggregate import aggregate_cells
from cellscale.profiles._evaluate import knn_accuracy
from cellscale.profiles._feature_profiles import profile_wells
from cellscale.profiles._feature_select import DEFAULT_OPERATIONS, feature_select
from cellscale.profiles._normalize import robustize, spherize, standardize
from cellscale.profiles._pca import PCA
from cellscale.profiles._profile_normalize import normalize_profiles
from cellscale.profiles._scalers import Robustizer, Standardizer
from cellscale.profiles._spherize import Spherizer

__all__ = [
    "BLOCKLIST",
    "DEFAULT_OPERATIONS",
    "PCA",
    "Robustizer",
    "Spherizer",
    "Standardizer",
    "aggregate",
    "aggregate_cells",
    "blocklist_features",
    "feature_select",
    "knn_accuracy",
    "normalize_profiles",
    "profile_wells",
    "robustize",
    "spherize",
    "standardize",
]

"""Lazy array operations on plates."""

from cellscale.ops._projection import PROJECTIONS, focus_scores, project

__all__ = ["PROJECTIONS", "focus_scores", "project"]

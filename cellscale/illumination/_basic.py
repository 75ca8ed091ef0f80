"""BaSiC shading estimation (Peng et al. 2017, Nat Commun 8:14836) in NumPy.

Each image ``n`` of a stack is modelled as ``I_n = B_n S + D + R_n``: a flatfield ``S``
shared by all images and smooth (sparse in the discrete cosine domain), a per-image
baseline ``B_n``, an optional darkfield ``D`` and a residual ``R_n`` (the cells) that is
sparse. The decomposition is found by the inexact augmented Lagrange multiplier method
of the paper (the "approximate" fitting of the reference implementation, BaSiCPy):
the Lagrange multiplier ``Y`` and penalty ``mu`` grow until ``I = B S + D + R`` holds to
a relative tolerance, soft-thresholding the flatfield's DCT coefficients (smoothness)
and the residual (sparsity) at each step. The residual's L1 weights are then
re-estimated from the residual itself, ``1 / (|R_n / mean(B_n S + D)| + 0.1)``, so
bright cells weigh less, and the decomposition is solved again until the flatfield
changes by less than 1 %.

The darkfield, when asked for, is the part of the images that does not scale with the
baseline: how much brighter the bright half of the flatfield is than the dim half is
proportional to ``B_n`` for an image without offset, so regressing that contrast on
``B_n`` over the dimmer images finds the offset where the line crosses zero; a smooth,
sparse remainder is regularised like the flatfield.

Defaults follow the reference implementation: flatfield weight ``sum|DCT(mean image /
its mean)| / 800``, darkfield weights a tenth of it, ``mu`` starting at 12.5 over the
stack's spectral norm and growing 1.5-fold to 10⁷ times that, tolerance 10⁻³, at most
500 iterations per solve and 10 reweightings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft

__all__ = ["BasicFit", "basic"]

_EPSILON = 0.1
_RHO = 1.5
_MU_COEF = 12.5
_MAX_MU_COEF = 1e7
_TOLERANCE = 1e-3
_MAX_ITERATIONS = 500
_MAX_REWEIGHTINGS = 10
_REWEIGHT_TOLERANCE = 1e-2
_FLAT_WEIGHT = 1.0 / 800.0
_DARK_WEIGHT = 0.1
_DARK_STEP = 10.0
_BLOCK_PIXELS = 2**16  # pixels of the images handled at once: a few arrays of them stay in cache
_ALL = slice(None)


@dataclass(frozen=True)
class BasicFit:
    """The result of :func:`basic`.

    Attributes
    ----------
    flatfield
        ``(y, x)`` float64 flatfield, mean 1.
    darkfield
        ``(y, x)`` float64 darkfield in the images' units, or ``None``.
    smoothness
        The flatfield's DCT weight used.
    iterations
        Solver iterations, all reweightings together.
    reweightings
        Solves run.
    converged
        Whether the reweighting converged within its limit.
    """

    flatfield: np.ndarray
    darkfield: np.ndarray | None
    smoothness: float
    iterations: int
    reweightings: int
    converged: bool


@dataclass
class _State:
    """What one solve carries from iteration to iteration (images as ``(n, pixels)``)."""

    flat_dct: np.ndarray  # DCT of S, 2-D
    baseline: np.ndarray  # B, (n,)
    dark: np.ndarray | None  # D_R, (pixels,): the darkfield but for its constant part
    offset: float  # D_Z: the darkfield's constant part, in units of the baseline
    residual: np.ndarray  # R, (n, pixels)
    scaled_multiplier: np.ndarray  # Y / mu, (n, pixels)
    mu: float
    column_means: np.ndarray  # mean over images of Y / mu - R, (pixels,)

    def flat(self) -> np.ndarray:
        """S, flattened, float32."""
        return _idct(self.flat_dct).ravel().astype(np.float32)

    def subtract_background(
        self, images: np.ndarray, flat: np.ndarray, rows: slice = _ALL
    ) -> np.ndarray:
        """``images - (B_n S + D_R)`` for the images ``rows`` of the stack, in place."""
        images -= np.multiply.outer(self.baseline[rows].astype(np.float32), flat)
        if self.dark is not None:
            images -= self.dark
        return images


def basic(images: np.ndarray, *, darkfield: bool = False, smoothing: float = 1.0) -> BasicFit:
    """Estimate the flatfield (and darkfield) shared by a stack of images with BaSiC.

    Parameters
    ----------
    images
        ``(n, y, x)`` stack, a few hundred images of about 128 × 128 at most (memory and
        time grow with ``n * y * x``).
    darkfield
        Also estimate a darkfield.
    smoothing
        Multiplies the default weight of the flatfield's (and darkfield's) smoothness.

    Returns
    -------
    BasicFit
        The flatfield (mean 1), darkfield and how the solver went.
    """
    n, p, q = images.shape
    data = np.ascontiguousarray(images, dtype=np.float32).reshape(n, p * q)
    mean_image = data.mean(axis=0, dtype=np.float64).reshape(p, q)
    smoothness = smoothing * _FLAT_WEIGHT * np.abs(_dct(mean_image / mean_image.mean())).sum()
    spectral_norm = np.sqrt(np.linalg.eigvalsh((data @ data.T).astype(np.float64))[-1])
    mu0 = _MU_COEF / spectral_norm
    state, iterations = _solve(data, (p, q), np.ones_like(data), smoothness, mu0, darkfield)
    flat, dark, weights = _profiles(state, data)
    solves, change = 1, np.inf
    while solves < _MAX_REWEIGHTINGS and change > _REWEIGHT_TOLERANCE:
        state, used = _solve(data, (p, q), weights, smoothness, mu0, darkfield)
        iterations += used
        solves += 1
        new_flat, new_dark, weights = _profiles(state, data)
        change = _change(flat, dark, new_flat, new_dark)
        flat, dark = new_flat, new_dark
    return BasicFit(
        flatfield=flat.reshape(p, q),
        darkfield=None if dark is None else dark.reshape(p, q),
        smoothness=float(smoothness),
        iterations=iterations,
        reweightings=solves,
        converged=change <= _REWEIGHT_TOLERANCE,
    )


def _change(
    flat: np.ndarray, dark: np.ndarray | None, new_flat: np.ndarray, new_dark: np.ndarray | None
) -> float:
    """Relative L1 change of the profiles between two solves."""
    change = np.abs(new_flat - flat).sum() / np.abs(flat).sum()
    if dark is not None and new_dark is not None:
        change = max(change, np.abs(new_dark - dark).sum() / max(np.abs(dark).sum(), 1.0))
    return float(change)


def _dct(image: np.ndarray) -> np.ndarray:
    """Orthonormal 2-D DCT-II."""
    return fft.dctn(image, norm="ortho")


def _idct(coefficients: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_dct`."""
    return fft.idctn(coefficients, norm="ortho")


def _shrink(values: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
    """Soft thresholding, in place: ``sign(v) * max(|v| - t, 0)``, as ``v - clip(v, -t, t)``.

    Clipping with ``minimum`` and ``maximum`` is about twice as fast as ``np.clip``
    with array bounds.
    """
    inside = np.minimum(values, threshold)
    np.maximum(inside, -threshold, out=inside)
    values -= inside
    return values


def _solve(
    data: np.ndarray,
    shape: tuple[int, int],
    weights: np.ndarray,
    smoothness: float,
    mu0: float,
    darkfield: bool,
) -> tuple[_State, int]:
    """One inexact-ALM decomposition with fixed residual weights; returns it and its length."""
    row_means = data.mean(axis=1, dtype=np.float64)
    state = _State(
        flat_dct=_dct(np.ones(shape)),
        baseline=row_means / row_means.mean(),
        dark=np.zeros(data.shape[1], np.float32) if darkfield else None,
        offset=0.0,
        residual=np.zeros_like(data),
        scaled_multiplier=np.zeros_like(data),
        mu=mu0,
        column_means=np.zeros(data.shape[1], np.float32),
    )
    data_means = data.mean(axis=0)
    blocks = _blocks(*data.shape)
    norm = np.linalg.norm(data)
    iteration = 0
    while iteration < _MAX_ITERATIONS:
        iteration += 1
        _flatfield_step(state, data_means, shape, smoothness)
        flat = state.flat()
        _residual_pass(state, data, row_means, flat, weights, blocks)
        if state.dark is not None:
            cells_removed = data - state.residual
            _darkfield_step(
                state, cells_removed, flat, shape, smoothness * _DARK_WEIGHT, data.min()
            )
        mu = min(state.mu * _RHO, mu0 * _MAX_MU_COEF)
        gap = _multiplier_pass(state, data, flat, np.float32(state.mu / mu), blocks)
        state.mu = mu
        if gap / norm < _TOLERANCE:
            break
    return state, iteration


def _blocks(n: int, pixels: int) -> list[slice]:
    """Consecutive runs of images of about :data:`_BLOCK_PIXELS` pixels together."""
    step = max(1, _BLOCK_PIXELS // pixels)
    return [slice(start, start + step) for start in range(0, n, step)]


def _flatfield_step(
    state: _State, data_means: np.ndarray, shape: tuple[int, int], smoothness: float
) -> None:
    """Move S towards the mean of ``I - B S - D - R + Y / mu``, keeping its DCT sparse.

    The mean over images of ``B_n S`` is ``mean(B) S``: no pass over the stack.
    """
    update = data_means + state.column_means - np.float32(state.baseline.mean()) * state.flat()
    if state.dark is not None:
        update -= state.dark
    state.flat_dct = _shrink(state.flat_dct + _dct(update.reshape(shape)), smoothness / state.mu)


def _residual_pass(
    state: _State,
    data: np.ndarray,
    row_means: np.ndarray,
    flat: np.ndarray,
    weights: np.ndarray,
    blocks: list[slice],
) -> None:
    """R = shrink(I - B S - D + Y / mu, W / mu), then B from what R leaves of each image."""
    inv_mu = np.float32(1.0 / state.mu)
    removed = np.empty(len(data))
    for rows in blocks:
        target = data[rows] + state.scaled_multiplier[rows]
        state.subtract_background(target, flat, rows)
        state.residual[rows] = _shrink(target, weights[rows] * inv_mu)
        removed[rows] = row_means[rows] - target.mean(axis=1)
    state.baseline = np.maximum(removed / removed.mean(), 0.0)


def _multiplier_pass(
    state: _State, data: np.ndarray, flat: np.ndarray, shrinkage: np.float32, blocks: list[slice]
) -> float:
    """Y += mu (I - B S - D - R), kept as Y / mu for the next mu; returns the gap's norm."""
    squares = 0.0
    sums = np.zeros(data.shape[1], np.float64)
    for rows in blocks:
        gap = data[rows] - state.residual[rows]
        state.subtract_background(gap, flat, rows)
        squares += float(np.vdot(gap, gap))
        multiplier = state.scaled_multiplier[rows]
        multiplier += gap
        multiplier *= shrinkage
        np.subtract(multiplier, state.residual[rows], out=gap)
        sums += gap.sum(axis=0)
    state.column_means = (sums / len(data)).astype(np.float32)
    return float(np.sqrt(squares))


def _darkfield_step(
    state: _State,
    cells_removed: np.ndarray,
    flat: np.ndarray,
    shape: tuple[int, int],
    smoothness: float,
    ceiling: float,
) -> None:
    """Update the darkfield: a constant offset by regression, plus a smooth remainder."""
    dim_images = state.baseline < 1
    level = flat.mean()
    bright = flat >= level
    if not dim_images.any() or bright.all() or not bright.any() or level <= 0:
        return  # no contrast to regress yet (early iterations keep only the flat's mean)
    rows = cells_removed[dim_images]
    contrast = (rows[:, bright].mean(axis=1) - rows[:, ~bright].mean(axis=1)) / (
        cells_removed.mean() + 1e-6
    )
    base = state.baseline[dim_images]
    k = len(base)
    denominator = base.sum() * contrast.sum() - k * (base * contrast).sum()
    offset = 0.0
    if denominator != 0:
        offset = ((base**2).sum() * contrast.sum() - base.sum() * (base * contrast).sum()) / (
            denominator
        )
    state.offset = float(np.clip(offset, 0.0, ceiling / level))
    tilt = state.offset * (level - flat)
    remainder = rows.mean(axis=0) - base.mean() * flat
    remainder -= remainder.mean() + tilt
    threshold = smoothness / (_DARK_STEP * state.mu)
    coeffs = _shrink(_dct(remainder.reshape(shape)), threshold)
    smooth = _shrink(_idct(coeffs).ravel(), threshold)
    state.dark = (smooth + tilt).astype(np.float32)


def _profiles(state: _State, data: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Flatfield (mean 1), darkfield and the next residual weights of a finished solve.

    The darkfield is ``D_R + D_Z S``; the flatfield is what the mean background holds
    beyond it, ``mean(B) S + D_R - D``, which is ``S`` scaled.
    """
    flat = state.flat()
    background = state.subtract_background(np.zeros_like(data), flat)
    background *= -1
    level = background.mean(axis=1, keepdims=True) + np.float32(1e-6)
    weights = 1.0 / (np.abs(state.residual / level) + np.float32(_EPSILON))
    weights *= weights.size / weights.sum(dtype=np.float64)
    if state.dark is None:
        return flat / flat.mean(dtype=np.float64), None, weights
    dark = state.dark + state.offset * flat
    shading = background.mean(axis=0, dtype=np.float64) - dark
    return shading / shading.mean(), dark.astype(np.float64), weights

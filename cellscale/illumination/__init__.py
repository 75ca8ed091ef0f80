"""Illumination correction: estimate each channel's flatfield from a plate, then divide it out.

:func:`fit_illumination` estimates an :class:`IlluminationModel` (per-channel flatfield,
and darkfield where the method gives one) from many fields of a plate in one streaming
pass, by CellProfiler's robust average (``"mean"``) or BaSiC (``"basic"``);
:func:`correct_illumination` applies it lazily, one task per image. A fit needs of each
image only its binned copy (:func:`binned_image`, at :func:`bin_factor`): a pass that
holds the images can keep those, and :func:`fit_binned` fits the same model from them
without reading a pixel.

Examples
--------
>>> from cellscale.synthetic import synthetic_plate
>>> plate = synthetic_plate(wells=8, fields=2, n_z=1, shape=(64, 64), cells_per_field=4)
>>> model = fit_illumination(plate, progress=False)
>>> corrected = correct_illumination(plate, model)
>>> corrected.dtype, corrected.attrs["lineage"][-1]["op"]
(dtype('uint16'), 'correct_illumination')
"""

from cellscale.illumination._correct import correct_illumination
from cellscale.illumination._fields import FieldReader, bin_factor, binned_image, field_block
from cellscale.illumination._fit import METHODS, MIN_FIELDS, fit_binned, fit_illumination
from cellscale.illumination._model import IlluminationModel

__all__ = [
    "METHODS",
    "MIN_FIELDS",
    "FieldReader",
    "IlluminationModel",
    "bin_factor",
    "binned_image",
    "correct_illumination",
    "field_block",
    "fit_binned",
    "fit_illumination",
]

"""The resumable-stage mechanism every stage that writes is built on.

A stage has **units** (a field, a chunk of cells), each computed by one task whose key
is a token of its inputs (:func:`task_key`); a **completion ledger** per output
(:class:`Ledger`) records each finished unit with a token of the inputs it was made
from (:func:`unit_token`); a **fingerprint** (:class:`Fingerprint`) records what produced
the output, and writing into an output with another fingerprint is refused
(:func:`check_fingerprint`); :func:`run_units` runs every unit and reports every failure
the same way on every scheduler (:class:`UnitFailure`); :func:`output_lock` keeps two
writers off one output (a lazy write holds a :class:`Lease` until its graph ran) and
:func:`remove_partials` clears what a killed writer left; :func:`atomic_path` writes a file
or folder whole; readers raise :class:`DamagedOutputError` naming a missing, incomplete or
damaged piece, and every ``verify`` returns a :class:`VerifyReport`; :class:`FileOutput` is
a one-file output (a model, a table, the report) with its fingerprint and checksum.
"""

from cellscale._stages._failures import UnitFailure
from cellscale._stages._file_output import FileOutput, FileState
from cellscale._stages._fingerprint import (
    Fingerprint,
    StaleOutputError,
    check_fingerprint,
    names_digest,
)
from cellscale._stages._ledger import Ledger
from cellscale._stages._lock import (
    Lease,
    OutputLockedError,
    output_lock,
    release_lazy_write,
    remove_partials,
    take_lease,
)
from cellscale._stages._output import DamagedOutputError, VerifyReport, atomic_path
from cellscale._stages._run import (
    Opaque,
    compute_units,
    default_client,
    delayed_blocks,
    lazy_units,
    run_units,
    shared_delayed_blocks,
)
from cellscale._stages._tokens import task_key, unit_token

__all__ = [
    "DamagedOutputError",
    "FileOutput",
    "FileState",
    "Fingerprint",
    "Lease",
    "Ledger",
    "Opaque",
    "OutputLockedError",
    "StaleOutputError",
    "UnitFailure",
    "VerifyReport",
    "atomic_path",
    "check_fingerprint",
    "compute_units",
    "default_client",
    "delayed_blocks",
    "lazy_units",
    "names_digest",
    "output_lock",
    "release_lazy_write",
    "remove_partials",
    "run_units",
    "shared_delayed_blocks",
    "take_lease",
    "task_key",
    "unit_token",
]

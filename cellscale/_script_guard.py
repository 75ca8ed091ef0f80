"""Stop a script that starts worker processes from its unguarded top level, in one line.

Worker processes of a local cluster are started with ``multiprocessing``'s ``spawn``
method: each new process imports the script that started it again, as ``__mp_main__``,
and so runs its top-level code again. A script that starts a cluster (or a run that
starts one) outside ``if __name__ == "__main__":`` therefore starts a cluster in every
worker, which start workers in turn: dozens of tracebacks, then a hang. The check here
stops such a script before any process is started, with one line that shows the guard.
Interactive sessions, ``python -c``, notebooks and guarded scripts pass.
"""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path
from types import FrameType

__all__ = ["ScriptGuardError", "check_script_guard"]

MESSAGE = (
    'cellscale: start the cluster under  if __name__ == "__main__":  (worker processes '
    "re-run the script's top level): see README"
)


class ScriptGuardError(SystemExit):
    """A cluster started from a script's unguarded top level (Python exits with one line)."""

    def __init__(self) -> None:
        super().__init__(MESSAGE)


def check_script_guard() -> None:
    """Raise :class:`ScriptGuardError` if worker processes would re-run the caller's script.

    That is, if this call comes from the top-level code of the script run as
    ``__main__`` and not from within an ``if __name__ == "__main__":`` block, or from a
    spawned process importing that script again (as ``__mp_main__``).
    """
    frame = _script_frame()
    if frame is None:
        return
    if frame.f_globals.get("__name__") == "__mp_main__":
        raise ScriptGuardError()
    if not _guarded(frame.f_code.co_filename, frame.f_lineno):
        raise ScriptGuardError()


def _script_frame() -> FrameType | None:
    """The top-level frame of the main script (or of its re-import) that led here, if any."""
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__")
        top = frame.f_code.co_name == "<module>"
        if top and (
            name == "__mp_main__"
            or (name == "__main__" and script and _same_file(frame.f_code.co_filename, script))
        ):
            return frame
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _guarded(filename: str, line: int) -> bool:
    """Whether ``line`` of ``filename`` lies in an ``if __name__ == "__main__":`` block.

    A file that cannot be read or parsed passes: nothing is stopped on a guess.
    """
    spans = _guard_spans(filename)
    return spans is None or any(start <= line <= end for start, end in spans)


@functools.cache
def _guard_spans(filename: str) -> tuple[tuple[int, int], ...] | None:
    """The lines of every ``if __name__ == "__main__":`` body in a script's top level."""
    try:
        tree = ast.parse(Path(filename).read_text(encoding="utf-8"), filename)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    spans = []
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_test(node.test) and node.body:
            spans.append((node.body[0].lineno, node.body[-1].end_lineno or node.body[-1].lineno))
    return tuple(spans)


def _is_main_test(test: ast.expr) -> bool:
    """``__name__ == "__main__"``, either way round."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return False
    if not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    texts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(texts) == 1

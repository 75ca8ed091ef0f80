"""Library code never imports the test kit: :mod:`cellscale.testing` is for tests only."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import cellscale

PACKAGE = Path(cellscale.__file__).parent
KIT = "cellscale.testing"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _run_time_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:``, which never run."""
    for child in ast.iter_child_nodes(tree):
        yield child
        if isinstance(child, ast.If) and _is_type_checking(child):
            for branch in child.orelse:
                yield branch
                yield from _run_time_nodes(branch)
        else:
            yield from _run_time_nodes(child)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The modules an import statement or ``import_module("…")`` call names, absolute."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            anchor = module.split(".")
            anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
            base = ".".join([*anchor, base] if base else anchor)
        return [base, *(f"{base}.{alias.name}" for alias in node.names)]
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
            return [node.args[0].value]
    return []


def kit_imports(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """``line N: module`` for each run-time import of the test kit in ``module``'s source."""
    found = []
    for node in _run_time_nodes(ast.parse(source)):
        names = _imported(node, module, is_package)
        kit = [name for name in names if name == KIT or name.startswith(f"{KIT}.")]
        if kit:
            found.append(f"line {getattr(node, 'lineno', '?')}: {kit[-1]}")
    return found


def _library_files() -> list[Path]:
    kit = PACKAGE / "testing"
    return [p for p in sorted(PACKAGE.rglob("*.py")) if kit not in p.parents]


def test_no_library_module_imports_the_test_kit() -> None:
    offenders = {}
    for path in _library_files():
        source = path.read_text(encoding="utf-8")
        found = kit_imports(source, _module_name(path), is_package=path.name == "__init__.py")
        if found:
            offenders[str(path.relative_to(PACKAGE.parent))] = found
    assert not offenders, f"library modules import {KIT}: {offenders}"


@pytest.mark.parametrize(
    "source",
    [
        "from cellscale.testing import synthetic_plate",
        "import cellscale.testing.networks",
        "from cellscale import testing",
        "from .. import testing",
        "from ..testing._segmenter_tests import SegmenterTests",
        "def f():\n    import importlib\n    importlib.import_module('cellscale.testing')",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    pass\nelse:\n"
        "    from cellscale.testing import blob_field",
    ],
)
def test_the_scan_sees_every_spelling(source: str) -> None:
    assert kit_imports(source, "cellscale.pipeline._example"), source


@pytest.mark.parametrize(
    "source",
    [
        "from cellscale.synthetic import synthetic_plate",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cellscale import testing",
        "import numpy.testing",
        "from . import _testing_helpers",
    ],
)
def test_the_scan_allows_what_does_not_import_the_kit(source: str) -> None:
    assert not kit_imports(source, "cellscale.pipeline._example"), source

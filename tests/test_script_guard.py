"""Scripts that start worker processes from their unguarded top level stop in one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cellscale._script_guard import MESSAGE, _guarded

CLUSTER = 'cellscale.start_cluster("local", n_workers=1, gpu_workers=0, quiet=True{extra})'


def _script(tmp_path: Path, text: str, name: str = "script.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_an_unguarded_cluster_stops_at_once_with_one_line(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        f"""
        import cellscale

        with {CLUSTER.format(extra="")} as client:
            print("started")
        """,
    )
    done = _run([str(script)], tmp_path)
    assert done.returncode == 1
    assert "started" not in done.stdout
    assert done.stderr.strip() == MESSAGE
    assert 'if __name__ == "__main__":' in MESSAGE


@pytest.mark.slow
def test_a_guarded_cluster_starts(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        f"""
        import cellscale

        if __name__ == "__main__":
            with {CLUSTER.format(extra="")} as client:
                print("workers", len(client.scheduler_info()["workers"]))
        """,
    )
    done = _run([str(script)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "workers 1" in done.stdout


def test_an_unguarded_run_stops_before_writing_anything(tmp_path: Path) -> None:
    out = tmp_path / "out"
    script = _script(
        tmp_path,
        f"""
        import cellscale

        cellscale.run({{
            "output": {str(out)!r},
            "plates": [{{"name": "P1", "synthetic": {{"wells": 2, "fields": 1}}}}],
            "segment": {{"channel": "nuclei"}},
            "cluster": {{"n_workers": 1, "gpu_workers": 0}},
        }})
        """,
    )
    done = _run([str(script)], tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == MESSAGE
    assert not out.exists()


def test_threads_only_clusters_are_not_stopped(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        f"""
        import cellscale

        with {CLUSTER.format(extra=", processes=False")} as client:
            print("workers", len(client.scheduler_info()["workers"]))
        """,
    )
    done = _run([str(script)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "workers 1" in done.stdout


def test_a_spawned_process_importing_the_script_again_stops(tmp_path: Path) -> None:
    """What a worker process does with an unguarded script: run it as ``__mp_main__``."""
    _script(
        tmp_path,
        """
        from cellscale._script_guard import check_script_guard

        check_script_guard()
        print("passed")
        """,
        name="inner.py",
    )
    runner = 'import runpy; runpy.run_path("inner.py", run_name="__mp_main__")'
    done = _run(["-c", runner], tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == MESSAGE


def test_python_c_and_guarded_calls_pass(tmp_path: Path) -> None:
    check = "from cellscale._script_guard import check_script_guard; check_script_guard()"
    assert _run(["-c", check + "; print('passed')"], tmp_path).stdout.strip() == "passed"
    script = _script(
        tmp_path,
        """
        from cellscale._script_guard import check_script_guard

        def main():
            check_script_guard()
            print("passed")

        if "__main__" == __name__:
            main()
        """,
    )
    done = _run([str(script)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "passed"


def test_only_lines_inside_the_guard_are_guarded(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        import os

        x = 1
        if __name__ == "__main__":
            y = (
                2
            )
        if __name__ != "__main__":
            z = 3
        """,
    )
    assert not _guarded(str(script), 4)
    assert all(_guarded(str(script), line) for line in (6, 7, 8))
    assert not _guarded(str(script), 10)

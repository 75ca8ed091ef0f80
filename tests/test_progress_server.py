"""The progress server answers the progress page alone, to reading methods alone."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cellscale.pipeline._progress import PROGRESS_PAGE, ProgressPage


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A served progress page of a run folder that also holds other files; stopped after."""
    tmp_path = tmp_path_factory.mktemp("progress")
    out = tmp_path / "run"
    (out / "plates" / "P1").mkdir(parents=True)
    (out / "cellscale_run.json").write_text('{"secret": 1}')
    (out / "plates" / "P1" / "cells.parquet").write_bytes(b"PAR1")
    (tmp_path / "outside.txt").write_text("outside the run folder")
    with ProgressPage(out, ["P1"], interval=60, serve=True) as page:
        assert page.url is not None
        address = urlsplit(page.url)
        assert address.hostname == "127.0.0.1" and address.port is not None
        yield address.hostname, address.port


def _ask(server: tuple[str, int], method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(*server, timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("path", ["/", f"/{PROGRESS_PAGE}", f"/{PROGRESS_PAGE}?refresh=1"])
def test_get_and_head_answer_the_page(server: tuple[str, int], path: str) -> None:
    status, headers, body = _ask(server, "GET", path)
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"<title>cellscale run progress</title>" in body
    assert int(headers["Content-Length"]) == len(body)
    status, head_headers, head_body = _ask(server, "HEAD", path)
    assert (status, head_body) == (200, b"")
    assert head_headers["Content-Length"] == headers["Content-Length"]


@pytest.mark.parametrize(
    "path",
    [
        "/cellscale_run.json",
        "/plates/",
        "/plates/P1/cells.parquet",
        "/plates",
        f"/plates/../{PROGRESS_PAGE}",
        "/../outside.txt",
        "/%2e%2e/outside.txt",
        f"/{PROGRESS_PAGE}/",
        "/index.html",
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_every_other_path_is_not_found(server: tuple[str, int], method: str, path: str) -> None:
    status, _, body = _ask(server, method, path)
    assert status == 404
    assert b"secret" not in body and b"PAR1" not in body and b"outside" not in body


@pytest.mark.parametrize(
    "method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"]
)
@pytest.mark.parametrize("path", [f"/{PROGRESS_PAGE}", "/cellscale_run.json"])
def test_other_methods_are_not_allowed(server: tuple[str, int], method: str, path: str) -> None:
    status, headers, body = _ask(server, method, path)
    assert (status, body) == (405, b"")
    assert headers["Allow"] == "GET, HEAD"


def test_the_server_stops_with_the_page(tmp_path: Path) -> None:
    with ProgressPage(tmp_path, [], interval=60, serve=True) as page:
        assert page.url is not None
        address = urlsplit(page.url)
        assert _ask((str(address.hostname), int(address.port or 0)), "GET", "/")[0] == 200
    with pytest.raises(ConnectionError):
        _ask((str(address.hostname), int(address.port or 0)), "GET", "/")


def test_a_finished_run_links_its_report(tmp_path: Path) -> None:
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "index.html").write_text("<html></html>")
    with ProgressPage(tmp_path, ["P1"], interval=60):
        running = (tmp_path / PROGRESS_PAGE).read_text()
    finished = (tmp_path / PROGRESS_PAGE).read_text()
    assert 'href="report/index.html"' not in running
    assert 'href="report/index.html"' in finished and "cellscale run: finished" in finished


def test_a_stopped_run_links_no_report(tmp_path: Path) -> None:
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "index.html").write_text("<html></html>")  # an earlier run's
    with pytest.raises(KeyboardInterrupt), ProgressPage(tmp_path, ["P1"], interval=60):
        raise KeyboardInterrupt
    stopped = (tmp_path / PROGRESS_PAGE).read_text()
    assert 'href="report/index.html"' not in stopped and "cellscale run: stopped" in stopped

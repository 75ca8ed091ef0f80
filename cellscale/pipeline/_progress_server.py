"""Serving the progress page on localhost: the page alone, read-only.

The run's output folder holds every plate, table and model of the run; the server
answers ``GET`` and ``HEAD`` of the progress page (a single self-contained file, its
styles inline) and nothing else: any other path is ``404`` (no other file, no folder
listing, no way out of the folder) and any other method ``405``.
"""

from __future__ import annotations

import functools
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["PageHandler", "page_server"]

#: The methods that only read; every other standard method is answered 405 (a method
#: HTTP does not define, 501).
_ALLOWED = "GET, HEAD"


def page_server(page: Path) -> ThreadingHTTPServer:
    """A server on ``127.0.0.1`` (any free port) that answers only ``page``.

    The page is read at each request, so a page rewritten in place (``os.replace``) is
    served as it is now. Call ``serve_forever`` in a thread, and ``shutdown`` and
    ``server_close`` to stop it.
    """
    return ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(PageHandler, page=page))


class PageHandler(BaseHTTPRequestHandler):
    """Answers ``GET`` / ``HEAD`` of ``/`` and ``/<page name>`` with the page, quietly.

    Parameters
    ----------
    *args
        As for :class:`~http.server.BaseHTTPRequestHandler`.
    page
        The page's file.
    """

    def __init__(self, *args: Any, page: Path) -> None:
        self.page = page
        super().__init__(*args)  # handles the request

    def do_GET(self) -> None:
        self._answer_page(with_body=True)

    def do_HEAD(self) -> None:
        self._answer_page(with_body=False)

    def _refuse_method(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", _ALLOWED)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse_method
    do_OPTIONS = do_TRACE = do_CONNECT = _refuse_method

    def _answer_page(self, *, with_body: bool) -> None:
        if self.path.partition("?")[0] not in ("/", f"/{self.page.name}"):
            self.send_error(HTTPStatus.NOT_FOUND, "only the progress page is served here")
            return
        try:
            body = self.page.read_bytes()
        except FileNotFoundError:
            self.send_error(HTTPStatus.NOT_FOUND, "the progress page is not written yet")
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return

"""Real servers on 127.0.0.1 for the remote-store tests, started and stopped by the tests.

- :class:`HTTPStoreServer`: a plain ``http.server`` serving a directory with
  ``Range`` support (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``), counting
  requests and body bytes sent; ``suffix_ranges=False`` makes it refuse suffix
  ranges (``bytes=-n``: ``416``) while it serves explicit ones, as some servers do.
- :class:`PlainHTTPServer`: the standard library's own
  ``SimpleHTTPRequestHandler`` (what ``python -m http.server`` runs), which
  ignores ``Range`` and answers ``200`` with the whole file, counting requests.
- :class:`S3Server`: moto's standalone S3 server (``moto[server]``), wrapped so
  that it counts requests too.

Both bind a free port (port 0) on loopback only, serve from a daemon thread
and are stopped by ``stop()`` (the fixtures call it).
"""

from __future__ import annotations

import http.server
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass
class Counter:
    """Requests and body bytes seen by a server (``log``: ``(method, path, range)`` in order)."""

    requests: int = 0
    bytes_sent: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    delay: float = 0.0  # seconds each GET is held (to observe concurrency), 0 by default
    log: list[tuple[str, str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, path: str, range_header: str | None, nbytes: int) -> None:
        with self.lock:
            self.requests += 1
            self.bytes_sent += nbytes
            self.log.append((method, path, range_header))

    def reset(self) -> None:
        with self.lock:
            self.requests = self.bytes_sent = self.max_in_flight = 0
            self.log.clear()

    def enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1


class _Handler(http.server.BaseHTTPRequestHandler):
    root: Path
    counter: Counter
    suffix_ranges: bool = True
    ranges: bool = True
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _resolve(self) -> Path | None:
        rel = self.path.split("?", 1)[0].lstrip("/")
        path = (self.root / rel).resolve()
        if self.root.resolve() not in path.parents or not path.is_file():
            return None
        return path

    def _reply(self, head_only: bool) -> None:
        path = self._resolve()
        range_header = self.headers.get("Range")
        if path is None:
            self.counter.add(self.command, self.path, range_header, 0)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = path.stat().st_size
        start, stop, status = 0, size, 200
        if range_header:
            match = _RANGE.match(range_header.strip())
            if match is None or match.groups() == ("", ""):
                self.send_error(416)
                return
            first, last = match.groups()
            if not self.ranges or (first == "" and not self.suffix_ranges):
                self.counter.add(self.command, self.path, range_header, 0)
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if first == "":
                start, stop = max(0, size - int(last)), size
            else:
                start = int(first)
                stop = min(size, int(last) + 1) if last else size
            if start >= size and size:
                self.counter.add(self.command, self.path, range_header, 0)
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = b""
        if not head_only:
            with open(path, "rb") as handle:
                body = os.pread(handle.fileno(), max(0, stop - start), start)
        self.counter.add(self.command, self.path, range_header, len(body))
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(stop - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self.counter.enter()
        try:
            if self.counter.delay:
                import time

                time.sleep(self.counter.delay)
            self._reply(head_only=False)
        finally:
            self.counter.leave()

    def do_HEAD(self) -> None:
        self._reply(head_only=True)


class _PlainHandler(http.server.SimpleHTTPRequestHandler):
    """The standard library's file handler, unchanged but for counting and quiet logs."""

    counter: Counter

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def copyfile(self, source: Any, outputfile: Any) -> None:
        data = source.read()
        self.counter.add(self.command, self.path, self.headers.get("Range"), len(data))
        outputfile.write(data)

    def send_head(self) -> Any:
        handle = super().send_head()
        if handle is None or self.command == "HEAD":
            self.counter.add(self.command, self.path, self.headers.get("Range"), 0)
        return handle


class HTTPStoreServer:
    """Serve ``root`` over HTTP on 127.0.0.1 (a free port) with byte ranges; counts requests.

    ``suffix_ranges=False``: suffix ranges (``bytes=-n``) are refused with ``416``;
    ``ranges=False``: every range is.
    ``plain=True``: the standard library's ``SimpleHTTPRequestHandler``, which ignores ``Range``.
    """

    def __init__(self, root: str | os.PathLike, *, suffix_ranges: bool = True, ranges: bool = True, plain: bool = False) -> None:
        self.counter = Counter()
        if plain:
            import functools

            handler: Any = functools.partial(type("Handler", (_PlainHandler,), {"counter": self.counter}), directory=str(root))
        else:
            attributes = {"root": Path(root), "counter": self.counter, "suffix_ranges": suffix_ranges, "ranges": ranges}
            handler = type("Handler", (_Handler,), attributes)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-store-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HTTPStoreServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class _CountingApp:
    """WSGI middleware counting the requests and body bytes of the wrapped app."""

    def __init__(self, app: Any, counter: Counter) -> None:
        self.app, self.counter = app, counter

    def __call__(self, environ: dict, start_response: Any) -> Any:
        chunks = list(self.app(environ, start_response))
        self.counter.add(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), environ.get("HTTP_RANGE"), sum(map(len, chunks)))
        return chunks


class S3Server:
    """moto's S3 server on 127.0.0.1 (a free port); ``storage_options`` reach it with s3fs."""

    def __init__(self) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import WSGIRequestHandler, make_server

        class QuietHandler(WSGIRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass

        self.counter = Counter()
        app = _CountingApp(DomainDispatcherApplication(create_backend_app), self.counter)
        self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-server", daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def storage_options(self) -> dict[str, Any]:
        return {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": "us-east-1"},
        }

    def create_bucket(self, name: str) -> None:
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket=name)

    def start(self) -> S3Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def main() -> None:  # pragma: no cover - for benchmarks: a standalone S3 server in its own process
    import sys
    import time

    server = S3Server().start()
    print(server.endpoint_url, flush=True)
    try:
        while sys.stdin.readline():
            time.sleep(0.01)
    finally:
        server.stop()


if __name__ == "__main__":  # pragma: no cover
    main()


# --------------------------------------------------------------------------- pytest fixtures
# Imported by the test modules that use them (``pytest_plugins = ["helpers.servers"]``).
import pytest

BUCKET = "models"


@pytest.fixture(scope="session")
def s3_server() -> Any:
    """moto's S3 server on loopback with the bucket ``models``; stopped after the session."""
    pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    server = S3Server().start()
    try:
        server.create_bucket(BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """The S3 server, reachable with no ``storage_options`` (credentials and endpoint from the environment)."""
    import s3fs

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # fsspec keeps one S3FileSystem per set of arguments, with the endpoint the environment named
    # when it was made: another module's server (each module that imports these fixtures has its own).
    s3fs.S3FileSystem.clear_instance_cache()
    s3_server.counter.reset()
    yield s3_server
    s3fs.S3FileSystem.clear_instance_cache()


def _serve(tmp_path_factory: pytest.TempPathFactory, **kwargs: Any) -> Any:
    pytest.importorskip("aiohttp")
    root = tmp_path_factory.mktemp("http-root")
    server = HTTPStoreServer(root, **kwargs).start()
    server.root = root
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A range-capable HTTP server on loopback serving ``http_server.root`` (a temporary directory)."""
    yield from _serve(tmp_path_factory)


@pytest.fixture(scope="session")
def plain_http_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``python -m http.server`` on loopback: ignores ``Range``, answers 200 with whole files."""
    yield from _serve(tmp_path_factory, plain=True)


@pytest.fixture(scope="session")
def no_suffix_http_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An HTTP server that serves explicit byte ranges but refuses suffix ranges (416)."""
    yield from _serve(tmp_path_factory, suffix_ranges=False)

"""Shared fixtures. `bytes_store` is a small real token store (stdlib source, bytes tokenizer)."""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

import pytest


@pytest.fixture(scope="session")
def bytes_store(tmp_path_factory) -> Path:
    """A prepared store of Python standard-library source, `bytes` tokenizer (vocab 257, EOT 256).

    About 400k train tokens and 40k val tokens: enough for nano models to learn visibly in seconds.
    """
    from helpers.stores import prepare_for_tests

    out = tmp_path_factory.mktemp("bytes_store")
    prepare_for_tests(out, train_tokens=400_000, val_tokens=40_000)
    return out


class LocalServer:
    """An HTTP server on 127.0.0.1 serving `routes` {path: bytes}; 404 for anything else.

    It answers `Range: bytes=N-` with 206 (as real servers do) unless the path is in `ignore_range`.
    `throttle[path] = (block_bytes, pause_s)` sends that file slowly (to interrupt a run mid-way);
    `cut[path] = n` announces the whole file but drops the connection at byte n, on every request.
    `hold[path] = (n, event)` sends up to byte n, then waits for `event` before the rest (so a
    test can interrupt a client mid-file however slow the machine is).
    `faults[path]` is a list used up one per request: None (serve normally), ("status", code),
    ("reset", n) (send up to byte n, then reset the connection: TCP RST), or ("stall", n) (send up to
    byte n, then send nothing until the client gives up). Byte positions are offsets in the file.
    """

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.throttle: dict[str, tuple[int, float]] = {}
        self.cut: dict[str, int] = {}  # path -> bytes sent before the connection drops
        self.hold: dict[str, tuple[int, threading.Event]] = {}
        self.faults: dict[str, list] = {}
        self.ignore_range: set[str] = set()
        self.requests: list[str] = []
        self.ranges: list[Optional[str]] = []  # the Range header of each request (None: none)
        self.closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.requests.append(self.path)
                server.ranges.append(self.headers.get("Range"))
                body = server.routes.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                pending = server.faults.get(self.path)
                fault = pending.pop(0) if pending else None
                if fault and fault[0] == "status":
                    self.send_error(fault[1])
                    return
                start = self._range_start(len(body))
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("ETag", f'"{hashlib.sha1(body).hexdigest()[:16]}"')
                self.send_header("Connection", "close")
                self.end_headers()
                end = min(len(body), server.cut.get(self.path, len(body)))
                try:
                    if fault:  # reset / stall at byte fault[1]
                        self._send(body, start, max(start, fault[1]))
                        self._fail(fault[0])
                        return
                    if self.path in server.hold:
                        first, release = server.hold[self.path]
                        if start < first:
                            self._send(body, start, min(first, end))
                            self.wfile.flush()
                            release.wait(timeout=120)
                            start = first
                    self._send(body, start, end)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _range_start(self, size: int) -> int:
                header = self.headers.get("Range")
                if not header or self.path in server.ignore_range:
                    return 0
                start = int(header.removeprefix("bytes=").split("-")[0])
                return start if start < size else 0

            def _send(self, body: bytes, start: int, end: int) -> None:
                block, pause = server.throttle.get(self.path, (max(1, end - start), 0.0))
                for i in range(start, end, block):
                    self.wfile.write(body[i : min(end, i + block)])
                    if pause:
                        self.wfile.flush()
                        time.sleep(pause)
                self.wfile.flush()

            def _fail(self, how: str) -> None:
                if how == "stall":
                    server.closing.wait(timeout=60)  # the client times out long before
                    return
                # SO_LINGER 0: close() sends a TCP RST, what a dropped connection looks like.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()

            def log_message(self, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                pass  # a connection the test broke on purpose

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server(monkeypatch):
    """A LocalServer; downloads retry fast (0.01 s backoff, 3 retries) so failing tests end quickly."""
    monkeypatch.setenv("PILEABLATE_HTTP_BACKOFF", "0.01")
    monkeypatch.setenv("PILEABLATE_HTTP_RETRIES", "3")
    server = LocalServer()
    yield server
    server.close()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/train/00.jsonl.zst"


def jsonl(records) -> bytes:
    """Records (dicts, or raw bytes lines) as JSON lines."""
    lines = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in records]
    return b"\n".join(lines) + b"\n"


def zstd_frames(data: bytes, frames: int = 3) -> bytes:
    """`data` compressed as several concatenated zstd frames (as pigz/zstd -T and the Pile produce)."""
    import zstandard

    compressor = zstandard.ZstdCompressor(level=3)
    step = max(1, len(data) // frames + 1)
    return b"".join(compressor.compress(data[i : i + step]) for i in range(0, len(data), step))


@pytest.fixture
def one_torch_thread():
    """Run torch on one intra-op thread for the test.

    Thousands of tiny tensor ops (batch-1 decoding, nano models): a second thread only adds
    synchronisation, and on a busy 2-core machine it makes each op many times slower.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def forget_user_mods():
    """Modifications a test loads from a --mods-file do not outlive it: the next starts from the built-ins."""
    yield
    import sys

    if "pileablate.registry" not in sys.modules:
        return
    import pileablate.mods_files as files
    from pileablate import registry

    origins = {m.origin for m in registry.REGISTRY.values()}
    origins |= {c.origin for slot in registry.COMPONENTS.values() for c in slot.values()}
    for origin in origins - {"built-in"}:
        registry.unregister(origin)
    files._loaded.clear()

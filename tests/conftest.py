"""Shared fixtures. `bytes_store` is a small real token store (stdlib source, bytes tokenizer)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bytes_store(tmp_path_factory) -> Path:
    """A prepared store of Python standard-library source, `bytes` tokenizer (vocab 257, EOT 256).

    About 400k train tokens and 40k val tokens: enough for nano models to learn visibly in seconds.
    """
    from pileablate.data.prepare import prepare_for_tests

    out = tmp_path_factory.mktemp("bytes_store")
    prepare_for_tests(out, train_tokens=400_000, val_tokens=40_000)
    return out


class LocalServer:
    """An HTTP server on 127.0.0.1 serving `routes` {path: bytes}; 404 for anything else.

    `throttle[path] = (block_bytes, pause_s)` sends that file slowly (to interrupt a run mid-way);
    `cut[path] = n` announces the whole file but drops the connection after n bytes.
    `hold[path] = (n, event)` sends the first n bytes, then waits for `event` before the rest (so a
    test can interrupt a client mid-file however slow the machine is).
    """

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.throttle: dict[str, tuple[int, float]] = {}
        self.cut: dict[str, int] = {}  # path -> bytes sent before the connection drops
        self.hold: dict[str, tuple[int, threading.Event]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.requests.append(self.path)
                body = server.routes.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.path in server.cut:  # announce the whole body, send part of it, hang up
                    body = body[: server.cut[self.path]]
                block, pause = server.throttle.get(self.path, (len(body) or 1, 0.0))
                try:
                    if self.path in server.hold:
                        first, release = server.hold[self.path]
                        self.wfile.write(body[:first])
                        self.wfile.flush()
                        release.wait(timeout=120)
                        body = body[first:]
                    for i in range(0, len(body), block):
                        self.wfile.write(body[i : i + block])
                        if pause:
                            self.wfile.flush()
                            time.sleep(pause)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server():
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

"""HTTP(S) downloads that survive the network: retries with backoff, and Range requests to continue.

A multi-GB shard streamed for an hour will see a reset or a stall somewhere. `open_url` returns a
`Download`, a file-like stream whose `read1` hides those: on a reset, a timeout, a body that ends short
of its Content-Length, or a 5xx answer, it waits (exponential backoff), reconnects with
`Range: bytes=N-` from the first byte not yet received, and goes on returning bytes as if nothing
happened. The consumer (a zstd decompressor, a line splitter) sees one unbroken stream, so nothing is
read twice and nothing is lost. A server that ignores `Range` (answers 200) is read from its start
again and the bytes already received are skipped, which is said. Every retry is said on stderr. When
the retries run out (counted per failure: any progress starts the count again), `DownloadFailed` ends
the stream; `prepare` then commits what it has and says how to continue.

Settings from the environment (all optional): PILEABLATE_HTTP_TIMEOUT (seconds a connect or a read
may wait, default 30), PILEABLATE_HTTP_RETRIES (default 8), PILEABLATE_HTTP_BACKOFF (seconds before
the first retry, doubled each time up to 60; default 1).
"""

from __future__ import annotations

import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable, Optional

from pileablate.errors import UserError

USER_AGENT = "pileablate-prepare"
TIMEOUT_ENV, RETRIES_ENV, BACKOFF_ENV = "PILEABLATE_HTTP_TIMEOUT", "PILEABLATE_HTTP_RETRIES", "PILEABLATE_HTTP_BACKOFF"
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})  # the server may answer later
SKIP_BLOCK = 1 << 20
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")

Say = Callable[[str], None]


def say_on_stderr(message: str) -> None:
    # sys.stderr is looked up per call: under a live rich display it is the display's proxy, which
    # prints the line above the progress bar.
    print(f"pileablate: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class HttpSettings:
    timeout_s: float = 30.0
    retries: int = 8
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    @classmethod
    def from_env(cls) -> "HttpSettings":
        return cls(
            timeout_s=_env_number(TIMEOUT_ENV, cls.timeout_s, float, minimum=0.001),
            retries=_env_number(RETRIES_ENV, cls.retries, int, minimum=0),
            backoff_s=_env_number(BACKOFF_ENV, cls.backoff_s, float, minimum=0.0),
        )

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))


def _env_number(name: str, default, kind, minimum):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value != value or value < minimum:  # (value != value: NaN)
        raise UserError(f"{name}={raw!r}: expected a {'whole ' if kind is int else ''}number of at least {minimum}")
    return value


class Transient(Exception):
    """A failure worth retrying (reset, timeout, 5xx): its text says what happened."""


class DownloadFailed(OSError):
    """The stream broke and the retries are spent (or the file changed on the server)."""


def _describe(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return "no data within the timeout"
    if isinstance(err, http.client.IncompleteRead):
        return "the connection closed early"
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _connect(url: str, settings: HttpSettings, offset: int = 0, started: bool = False):
    """One request (a `Range` from `offset` when > 0). None: 416, nothing left after `offset`.

    Raises Transient for what a retry may fix; UserError for a wrong URL (4xx), and for a host that
    cannot be reached before anything was received (`started` False: fail fast on a typo).
    """
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=settings.timeout_s)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code in RETRY_STATUS:
            raise Transient(f"HTTP {err.code} {err.reason}") from None
        if err.code == 416 and offset:
            return None
        hint = " (a private or gated dataset needs a mirror: set PILEABLATE_PILE_URL)" if err.code in (401, 403) else ""
        raise UserError(f"{url} answered HTTP {err.code} {err.reason}{hint}; check the URL") from None
    except urllib.error.URLError as err:
        reason = err.reason
        if isinstance(reason, (TimeoutError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)) or (
            started and isinstance(reason, OSError)
        ):
            raise Transient(_describe(reason)) from None
        raise UserError(f"cannot reach {url} ({reason}); check the network, or use local files or --source sample") from None
    except (OSError, http.client.HTTPException) as err:  # timeout or reset while reading the headers
        raise Transient(_describe(err)) from None


def open_url(url: str, settings: Optional[HttpSettings] = None, say: Say = say_on_stderr) -> "Download":
    """A `Download` of `url` (redirects followed), retrying resets, timeouts and 5xx answers."""
    settings = settings or HttpSettings.from_env()
    attempt = 0
    while True:
        try:
            return Download(url, _connect(url, settings), settings, say)
        except Transient as err:
            attempt += 1
            if attempt > settings.retries:
                raise UserError(f"{url}: {err} ({settings.retries} retries); check the network or the server, "
                                "and run the same command again") from None
            delay = settings.delay(attempt)
            say(f"{_name(url)}: {err}; retry {attempt}/{settings.retries} in {delay:.1f} s")
            time.sleep(delay)


def _name(url: str) -> str:
    return url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]


class Download:
    """The body of one URL as an unbroken stream; reconnects (Range) are invisible to the reader."""

    def __init__(self, url: str, response, settings: HttpSettings, say: Say):
        self.url = url
        self.settings = settings
        self.say = say
        self.headers = response.headers
        self.received = 0
        self.reconnects = 0
        self._response = response
        self._failures = 0  # consecutive failed attempts since the last byte received
        self._etag = response.headers.get("ETag")
        length = response.headers.get("Content-Length")
        encoded = response.headers.get("Content-Encoding", "identity") != "identity"
        self.total = int(length) if length and length.isdigit() and not encoded else None

    # -- the stream ------------------------------------------------------------------------------
    def read1(self, n: int) -> bytes:
        while True:
            if self._response is None:  # the server said there is nothing after what we have (416)
                return b""
            try:
                data = self._response.read1(n)
            except (OSError, http.client.HTTPException) as err:
                self._reconnect(_describe(err))
                continue
            if data:
                self.received += len(data)
                self._failures = 0
                return data
            if self.total is not None and self.received < self.total:
                # http.client ends a body that stops short of its Content-Length quietly.
                self._reconnect(f"the connection closed after {self.received:,} of {self.total:,} bytes")
                continue
            return b""

    def read(self, n: int = -1) -> bytes:
        return self.read1(SKIP_BLOCK if n is None or n < 0 else n)

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def __enter__(self) -> "Download":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reconnecting ----------------------------------------------------------------------------
    def _reconnect(self, why: str) -> None:
        self.close()
        while True:
            self._failures += 1
            retries = self.settings.retries
            if self._failures > retries:
                raise DownloadFailed(f"{why}, at byte {self.received:,}; gave up after {retries} retries")
            delay = self.settings.delay(self._failures)
            self.say(f"{_name(self.url)}: {why} at byte {self.received:,}; retry {self._failures}/{retries} "
                     f"in {delay:.1f} s, continuing from there")
            time.sleep(delay)
            try:
                response = _connect(self.url, self.settings, self.received, started=True)
                self._attach(response)
                self.reconnects += 1
                return
            except DownloadFailed:
                raise
            except UserError as err:  # e.g. 404 now: a retry will not bring the file back
                raise DownloadFailed(str(err)) from None
            except (Transient, OSError, http.client.HTTPException) as err:
                self.close()
                why = str(err) if isinstance(err, Transient) else _describe(err)

    def _attach(self, response) -> None:
        """Continue with `response` to a Range request: skip to `received` if it starts earlier."""
        self._response = response
        if response is None:
            return
        etag = response.headers.get("ETag")
        if self._etag and etag and etag != self._etag:
            raise DownloadFailed(f"{self.url} changed on the server while it was read (ETag {self._etag} -> {etag})")
        if response.status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
            if not match:
                raise DownloadFailed(f"{self.url}: a partial answer without a usable Content-Range")
            start, total = int(match.group(1)), match.group(3)
            if self.total is not None and total != "*" and int(total) != self.total:
                raise DownloadFailed(f"{self.url} changed on the server while it was read "
                                     f"(now {int(total):,} bytes, was {self.total:,})")
            if start > self.received:
                raise DownloadFailed(f"{self.url}: asked for bytes from {self.received:,}, got them from {start:,}")
            self._skip(self.received - start)
            return
        length = response.headers.get("Content-Length")
        if self.total is not None and length and length.isdigit() and int(length) != self.total:
            raise DownloadFailed(f"{self.url} changed on the server while it was read "
                                 f"(now {int(length):,} bytes, was {self.total:,})")
        self.say(f"{_name(self.url)}: the server ignores Range requests; reading it from the start again "
                 f"and skipping the {self.received:,} bytes already read")
        self._skip(self.received)

    def _skip(self, count: int) -> None:
        while count > 0:
            data = self._response.read1(min(SKIP_BLOCK, count))
            if not data:
                raise Transient(f"the connection closed while skipping to byte {self.received:,}")
            count -= len(data)

"""One process per run folder: whoever trains a run holds an exclusive lock on RUNS/<name>/.lock.

The lock is an OS file lock (`fcntl.flock`), so the kernel drops it when its process ends however it
ends (SIGKILL, OOM killer, a node reboot on a local disk): a killed trainer never leaves a stale lock,
and the next process takes the run over at once. The holder writes its pid and host into the lock
file for the message a second process shows ("being trained by pid P on host H"); that text is only
read while the lock is held, so what a dead holder left there is never believed.

Claims are per process and counted: the same process claiming a folder again (a test holding a
session while it trains the run) is not refused. `claims()` scopes them: every folder claimed inside
is released when the block ends, so a process training runs one after another (`ablate --jobs 1`)
holds only the run it is training.

On a shared filesystem the lock is only as good as the filesystem's `flock`: NFS (Linux clients
emulate it with NFS byte-range locks, so it holds across nodes) and Lustre mounted with `-o flock`
work; Lustre's `localflock` only locks within one node. A filesystem without locks is refused in one
line rather than trained on unguarded.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from pileablate.errors import UserError
from pileablate.writes import writing

LOCK_FILE = ".lock"
# A prober (`holder`) holds the lock for microseconds; a claim that meets one tries again this often.
_CLAIM_TRIES, _CLAIM_PAUSE_S = 5, 0.05
_NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)


@dataclass(frozen=True)
class Holder:
    """The process training a run, as its lock file says."""

    pid: Optional[int]
    host: Optional[str]

    def __str__(self) -> str:
        if self.pid is None:
            return "another process"
        return f"pid {self.pid} on host {self.host or 'unknown'}"


class RunHeld(UserError):
    """Another process is training this run (exit code 2: nothing was touched)."""

    def __init__(self, run_dir: Path, holder: Holder):
        super().__init__(f"run {Path(run_dir).name} is being trained by {holder} ({run_dir}); wait for it to end "
                         "(or stop that process), then run the same command again")
        self.run_dir, self.holder = Path(run_dir), holder


_held: dict[str, list] = {}          # this process's claims: folder -> [fd, count]
_scopes: list[list[str]] = []        # the folders each open `claims()` block has claimed


def _key(run_dir) -> str:
    return os.path.abspath(run_dir)


def lock_path(run_dir) -> Path:
    return Path(run_dir) / LOCK_FILE


def claim(run_dir) -> None:
    """Hold the run for this process until released (by the enclosing `claims()` block, `release`, or
    the process's end). Raises RunHeld when another process holds it."""
    key = _key(run_dir)
    if key not in _held:
        _held[key] = [_lock(Path(run_dir)), 0]
    _held[key][1] += 1
    if _scopes:
        _scopes[-1].append(key)


def release(run_dir) -> None:
    key = _key(run_dir)
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] <= 0:
        del _held[key]
        os.close(entry[0])  # closing the only descriptor drops the flock


@contextmanager
def claims() -> Iterator[None]:
    """Every run folder claimed inside this block is released when it ends, however it ends."""
    _scopes.append([])
    try:
        yield
    finally:
        for key in _scopes.pop():
            release(key)


def holder(run_dir) -> Optional[Holder]:
    """Who holds the run now (this process included), or None when nobody does. Takes nothing."""
    key = _key(run_dir)
    if key in _held:
        return Holder(os.getpid(), socket.gethostname())
    path = lock_path(run_dir)
    try:
        fd = os.open(path, os.O_RDWR)  # NFS emulates flock with byte-range locks: they need a writable file
    except OSError:
        return None  # no lock file (never trained), or one this user may not lock: nobody can hold it
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """An exclusive lock on `lock_file` for the block, waiting while another process holds it: for
    files that several processes write in turn (a store's verification memo, a runs folder's report).
    None where the place cannot be written to or has no locks: then work may be repeated, no more."""
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def _lock(run_dir: Path) -> int:
    """An open descriptor of the run's lock file holding its exclusive lock, the holder written in it."""
    with writing(lock_path(run_dir)):
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path(run_dir), os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    try:
        for attempt in range(_CLAIM_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == _CLAIM_TRIES - 1:
                    raise RunHeld(run_dir, _read_holder(fd)) from None
                time.sleep(_CLAIM_PAUSE_S)
            except OSError as err:
                if err.errno in _NO_LOCKS:
                    raise UserError(f"cannot lock {lock_path(run_dir)}: the filesystem does not support file locks "
                                    f"({err.strerror}); put --runs-dir on a local disk, on NFS, or on Lustre mounted "
                                    "with -o flock") from None
                raise
        with writing(lock_path(run_dir)):
            text = f"{os.getpid()} {socket.gethostname()}\n".encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, text, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_holder(fd: int) -> Holder:
    """The pid and host the holder wrote (empty for the instant between its lock and its write)."""
    try:
        fields = os.pread(fd, 512, 0).decode("utf-8", "replace").split()
    except OSError:
        fields = []
    if len(fields) >= 2 and fields[0].isdigit():
        return Holder(int(fields[0]), fields[1])
    return Holder(None, None)


def wait_while_held(run_dirs, on_wait=None, pause_s: float = 2.0) -> None:
    """Return once at least one of these runs is no longer held (or at once when none is). `on_wait`
    is told, once, who holds which."""
    held = {Path(d): holder(d) for d in run_dirs}
    held = {d: h for d, h in held.items() if h is not None}
    if not held:
        return
    if on_wait is not None:
        on_wait(held)
    while all(holder(d) is not None for d in held):
        time.sleep(pause_s)

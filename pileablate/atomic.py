"""Files that are never half-written: the one way the package replaces a file.

`replacing(path)` hands out a temporary file beside `path` (`.<name>.<pid>-<random>.tmp`, unique to
the writer, so two processes sharing a directory never share one); when the block ends it is flushed,
fsynced and renamed over `path`, and the rename made durable. A reader (or a process killed
mid-write) sees the old file or the new one, never a torn one; a failed write (a full disk) removes
the temporary file, leaves the old `path` as it was, and names `path` in its error
(`pileablate.writes.writing`). `publish(tmp, path)` finishes a temporary file that another library
wrote (Arrow's part files) the same way.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from pileablate.writes import writing

TEMP_SUFFIX = ".tmp"


def temp_prefix(path) -> str:
    """Temporary files for `path` are `.<name>.<pid>-<random>.tmp` beside it (so cleaners can find them)."""
    return f".{Path(path).name}."


@contextmanager
def replacing(path, binary: bool = False) -> Iterator[IO]:
    """A new file (text, or bytes with `binary`) whose content replaces `path` when the block ends
    without an error; on an error `path` is left as it was."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{temp_prefix(path)}{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            # "x": created exclusively, with the usual permissions under the umask.
            with (open(tmp, "xb") if binary else open(tmp, "x", encoding="utf-8")) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    fsync_directory(path.parent)


def publish(tmp, path) -> None:
    """Move a finished temporary file (closed by its writer) over `path`: fsynced, renamed, durable."""
    with writing(path):
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    fsync_directory(Path(path).parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temps(path) -> int:
    """Delete temporary files of `path` left by writers that died (kill -9 mid-write): those whose pid is
    no longer alive. A live writer's file (another --task worker) is left alone. Returns how many."""
    path = Path(path)
    removed = 0
    for tmp in path.parent.glob(temp_prefix(path) + "*" + TEMP_SUFFIX):
        pid = tmp.name[len(temp_prefix(path)):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

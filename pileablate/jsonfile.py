"""JSON (and text) files that are never half-written, and read back with a one-line error when broken.

`write_json_atomic` writes a temporary file in the same directory, fsyncs it and renames it over the
target, so a reader (or a process killed mid-write) sees the old file or the new one, never a torn
one. Used for manifest.json, prepare's state, and a run's config.json and summary.json.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from pileablate.errors import UserError
from pileablate.writes import writing

TEMP_SUFFIX = ".tmp"


def temp_prefix(path: Path) -> str:
    """Temporary files for `path` are `.<name>.<pid>-<random>.tmp` beside it (so cleaners can find them)."""
    return f".{Path(path).name}."


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


def write_json_atomic(path, data) -> None:
    """Write `data` as indented JSON to `path` atomically (temp file, fsync, os.replace)."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_text_atomic(path, text: str) -> None:
    """Write `text` to `path` atomically: a temporary file beside it, fsynced, renamed over `path`. A
    failed write (a full disk) removes the temporary file and leaves the old `path` as it was."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # A unique temporary name: two processes (e.g. --task workers sharing a directory) never share one.
        # ("x" mode creates it exclusively, with the usual permissions under the umask.)
        tmp = path.with_name(f"{temp_prefix(path)}{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            with open(tmp, "x", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
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


def read_json(path, fix: str = "delete or repair it") -> dict:
    """A JSON object from `path`; UserError ("cannot read PATH: why; FIX") when missing or broken."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}; {fix}") from None
    except ValueError as err:  # JSONDecodeError, or bytes that are not UTF-8
        raise UserError(f"cannot read {path}: not valid JSON ({err}); {fix}") from None
    if not isinstance(data, dict):
        raise UserError(f"cannot read {path}: expected a JSON object, found {type(data).__name__}; {fix}")
    return data

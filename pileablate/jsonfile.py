"""JSON (and text) files that are never half-written, and read back with a one-line error when broken.

`write_json_atomic` and `write_text_atomic` write through `pileablate.atomic.replacing`, so a reader
(or a process killed mid-write) sees the old file or the new one, never a torn one. Used for
manifest.json, prepare's state, and a run's config.json and summary.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from pileablate.atomic import TEMP_SUFFIX, remove_stale_temps, replacing, temp_prefix
from pileablate.errors import UserError

__all__ = ["read_json", "write_json_atomic", "write_text_atomic",
           "TEMP_SUFFIX", "remove_stale_temps", "temp_prefix"]  # the last three: prepare's cleanup names them here

def write_json_atomic(path, data) -> None:
    """Write `data` as indented JSON to `path` atomically (temp file, fsync, os.replace)."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_text_atomic(path, text: str) -> None:
    """Write `text` to `path` atomically (`atomic.replacing`): a failed write (a full disk) leaves the
    old `path` as it was."""
    with replacing(path) as handle:
        handle.write(text)


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

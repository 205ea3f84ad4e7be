"""A token store checked against its manifest before its tokens are used.

Each part listed in manifest.json must be there, readable as a token part, hash to the manifest's
sha256, and hold no token id outside the tokenizer's vocabulary (one pass over a part that passes the
hash costs little next to the hash itself).

Hashing a multi-GB store takes a while, so what a part hashed to is remembered beside the store, in
DIR/.verified.json, with the file's state (size, mtime_ns, ctime_ns, inode): a part whose file has not
changed since is not hashed again, and a training run starts at once; processes that start together
take turns (DIR/.verified.lock), so one hashes and the others read what it found. A store that
cannot be written to (read-only, shared) is simply hashed each time. `prepare --verify` hashes every
part whatever the memo says: damage on the disk itself (bit rot) leaves a file's state as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from pileablate.data.manifest import SPLITS, read_manifest
from pileablate.data.store import part_batches, repair_hint
from pileablate.errors import UserError
from pileablate.jsonfile import write_json_atomic

MEMO = ".verified.json"
LOCK = ".verified.lock"
_BLOCK = 1 << 22
_NOTE_BYTES = 1 << 30


@dataclass
class PartCheck:
    """One part's outcome: `problem` is None when it matches the manifest."""

    path: Path
    size: int
    problem: Optional[str]
    hashed: bool  # False: the memo vouched for it


@dataclass
class StoreCheck:
    directory: Path
    parts: list[PartCheck]

    @property
    def problems(self) -> list[str]:
        return [p.problem for p in self.parts if p.problem]

    def summary(self) -> Optional[str]:
        """One line for the first damaged part (and how many more), or None for a sound store."""
        problems = self.problems
        if not problems:
            return None
        more = len(problems) - 1
        if more:
            parts = f"{more} more damaged part{'s' if more > 1 else ''}"
            return f"{problems[0]} (and {parts}: 'pileablate prepare --verify {self.directory}' lists them)"
        return problems[0]


def file_state(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}


def sha256_file(path: Path, advance: Callable[[int], None] = lambda n: None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
            advance(len(block))
    return h.hexdigest()


def max_token_id(path: Path) -> int:
    """The largest token id in a part (-1 when it holds none); UserError naming it when unreadable."""
    top = -1
    for column in part_batches(path):
        first = column.offsets[0].as_py()
        values = column.values.to_numpy(zero_copy_only=True)[first : column.offsets[-1].as_py()]
        if len(values):
            top = max(top, int(np.max(values)))
    return top


def _read_memo(directory: Path) -> dict:
    try:
        data = json.loads((directory / MEMO).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_memo(directory: Path, memo: dict) -> None:
    try:
        write_json_atomic(directory / MEMO, memo)
    except OSError:
        pass  # a read-only store: verified again next time


def _check_part(directory: Path, entry: dict, vocab: int, remembered: Optional[dict],
                advance: Callable[[int], None]) -> tuple[PartCheck, Optional[dict]]:
    """The part's check, and what to remember about it (None: nothing)."""
    path = directory / entry["file"]
    fix = repair_hint(directory)
    try:
        state = file_state(path)
    except FileNotFoundError:
        return PartCheck(path, 0, f"{path}: missing, though manifest.json lists it; {fix}", False), None
    if remembered is not None and {k: remembered.get(k) for k in state} == state:
        seen, hashed = remembered, False
    else:
        try:
            seen = dict(state, sha256=sha256_file(path, advance), max_id=max_token_id(path))
        except UserError as err:
            return PartCheck(path, state["size"], str(err), True), None
        hashed = True
    want = entry.get("sha256")
    if want is not None and seen.get("sha256") != want:
        problem = (f"{path}: its sha256 is not the one manifest.json records (the file changed after prepare "
                   f"wrote it); {fix}")
    elif seen.get("max_id", -1) >= vocab:
        problem = (f"{path}: holds token id {seen['max_id']}, outside the tokenizer's vocabulary of {vocab} ids; {fix}")
    else:
        problem = None
    return PartCheck(path, state["size"], problem, hashed), seen


def verify_store(directory, *, rehash: bool = False, console=None) -> StoreCheck:
    """Check every part of the store at `directory` against its manifest (see the module's docstring).

    `rehash`: hash every part, ignoring the memo. `console`: show a progress bar there while hashing.
    A missing or unreadable manifest is a UserError; damaged parts are returned, one line each.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    try:
        entries = [p for split in SPLITS for p in manifest["splits"].get(split, {}).get("parts", [])]
        vocab = int(manifest["vocab_size"])
        if not all(isinstance(e, dict) and isinstance(e.get("file"), str) for e in entries):
            raise TypeError("a part without a file name")
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise UserError(f"{directory}/manifest.json does not describe its parts ({err}); "
                        f"{repair_hint(directory)}") from None
    with memo_lock(directory):  # processes starting together (a job array): one hashes, the others then read
        memo = {} if rehash else _read_memo(directory).get("parts", {})
        if not isinstance(memo, dict):
            memo = {}
        pending = [e for e in entries if _needs_hash(directory / e["file"], memo.get(e["file"]))]
        total = sum(_size(directory / e["file"]) for e in pending)
        checks, remember = [], {}
        with _progress(console, total, f"verifying {directory}") as advance:
            for entry in entries:
                check, seen = _check_part(directory, entry, vocab, memo.get(entry["file"]), advance)
                checks.append(check)
                if seen is not None:
                    remember[entry["file"]] = seen
        if any(c.hashed for c in checks) or set(remember) != set(memo):
            _write_memo(directory, {"fingerprint": manifest.get("fingerprint"), "parts": remember})
    return StoreCheck(directory, checks)


def memo_lock(directory: Path):
    """An exclusive lock on DIR/.verified.lock while the memo is read, filled and written (none where
    the store cannot be written to or the file system has no locks: then work may be repeated, no more)."""
    from pileablate.runlock import exclusive

    return exclusive(directory / LOCK)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _needs_hash(path: Path, remembered: Optional[dict]) -> bool:
    try:
        state = file_state(path)
    except OSError:
        return False
    return remembered is None or {k: remembered.get(k) for k in state} != state


class _progress:
    """A rich progress bar over bytes hashed, on a terminal, shown only when there is something to hash."""

    def __init__(self, console, total: int, label: str):
        self.console, self.total, self.label = console, total, label
        self.bar = None

    def __enter__(self) -> Callable[[int], None]:
        if self.console is None or self.total == 0:
            return lambda n: None
        if not self.console.is_terminal:  # a log: no bar (it would leave a blank line), a note when it takes a while
            if self.total >= _NOTE_BYTES:
                self.console.print(f"{self.label}: hashing {self.total / 1e9:.1f} GB once", highlight=False)
            return lambda n: None
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                            TimeRemainingColumn(), console=self.console, transient=True)
        self.bar.__enter__()
        task = self.bar.add_task(self.label, total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def check_store(directory, console=None) -> None:
    """UserError (one line) unless the store at `directory` is sound."""
    problem = verify_store(directory, console=console).summary()
    if problem:
        raise UserError(problem)


def store_problem(directory, console=None) -> Optional[str]:
    """None when the store at `directory` is sound, else one line saying what is wrong and how to fix it.

    Never raises for a user-fixable problem (a torchrun rank 0 must hand its answer to the others)."""
    try:
        return verify_store(directory, console=console).summary()
    except UserError as err:
        return str(err)


def report_store(directory) -> int:
    """`prepare --verify DIR`: hash every part, print one line per damaged part (stdout) and a summary;
    returns the exit code (0 sound, 1 damaged)."""
    from pileablate.console import stderr_console, stdout_console

    out = stdout_console()
    check = verify_store(directory, rehash=True, console=stderr_console())
    for problem in check.problems:
        out.print(f"damaged: {problem}", highlight=False, markup=False)
    size = sum(p.size for p in check.parts)
    bad = len(check.problems)
    if bad:
        out.print(f"{directory}: {bad} of {len(check.parts)} parts damaged", highlight=False, markup=False)
        return 1
    out.print(f"{directory}: all {len(check.parts)} parts match manifest.json ({size / 1e6:,.1f} MB hashed)",
              highlight=False, markup=False)
    return 0

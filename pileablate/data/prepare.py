"""`prepare`: sources -> documents -> tokens -> a token store, resumable, in bounded memory.

The work is cut into chunks of about `chunk_tokens` tokens. A chunk is committed by renaming its
part files into place and then writing `.prepare/state*.json` (where the input stands, what is
committed). Killed at any moment, a rerun of the same command restarts from the last committed
chunk; chunk boundaries depend only on the input, so the result is token-for-token (and part-for-
part) the same as an uninterrupted run. `manifest.json` is written last, from the committed state.

`--task K/N` lets N processes (machines sharing the output directory) prepare disjoint parts:
sources of a role are dealt out whole when there are at least N of them (the Pile's 30 train
shards), else their records are dealt out by record index (line i goes to part i mod N). Row and
token limits are totals, shared out among parts: part K takes `share(limit, K, N)` from its own
documents in order (a one-process run takes the first documents of all sources, so with limits the
documents differ; the totals do not). Each part writes its own part files
(`part-KKKofNNN-CCCCC.arrow`) and state; the last part to finish writes the merged manifest.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from pileablate import __version__
from pileablate.data import records
from pileablate.data.config import PrepareConfig, available_cores, parse_task, share
from pileablate.data.manifest import MANIFEST, SPLITS, build_manifest, read_manifest
from pileablate.data.pipeline import Document, Pipeline, Profile
from pileablate.data.reading import SourceError
from pileablate.data.sources import Source, resolve_sources
from pileablate.data.store import PartWriter, dtype_for_vocab
from pileablate.data.tokenizer import Tokenizer, load_tokenizer
from pileablate.errors import UserError
from pileablate.jsonfile import TEMP_SUFFIX, read_json, remove_stale_temps, temp_prefix, write_json_atomic

STATE_DIR = ".prepare"
_START_OVER = "pass --overwrite to prepare {out} from the start"


class Interrupted(UserError):
    """Ctrl-C: what was committed stays; the same command continues from it."""

    exit_code = 130


def default_workers() -> int:
    """Tokenizer processes when --workers is not given: one per core this process may use.

    The main process (reading, decompressing, writing) needs a few percent of one core besides; it runs
    alongside the workers rather than taking a worker's place.
    """
    return available_cores()


def part_file_name(index: int, k: int, n: int) -> str:
    return f"part-{index:05d}.arrow" if n == 1 else f"part-{k:03d}of{n:03d}-{index:05d}.arrow"


def state_path(out: Path, k: int, n: int) -> Path:
    return out / STATE_DIR / ("state.json" if n == 1 else f"state-{k:03d}of{n:03d}.json")


def plan_part(sources: list[Source], k: int, n: int) -> tuple[list[Source], list[Optional[int]]]:
    """This part's sources, and for each the record stride (None: whole source is this part's)."""
    if n == 1:
        return sources, [None] * len(sources)
    mine: list[Source] = []
    strides: list[Optional[int]] = []
    for role_is_val in (True, False):
        group = [s for s in sources if (s.role == "val") == role_is_val]
        if len(group) >= n:
            picked = [s for i, s in enumerate(group) if i % n == k - 1]
            mine += picked
            strides += [None] * len(picked)
        else:
            mine += group
            strides += [n] * len(group)
    return mine, strides


class _Run:
    """One prepare run of one part: the committed state, the live counts, the open part writers."""

    def __init__(self, cfg: PrepareConfig, tokenizer: Tokenizer, sources: list[Source], k: int, n: int, state: dict,
                 profile: Optional[Profile] = None):
        self.cfg = cfg
        self.profile = profile if profile is not None else Profile()
        self.out = cfg.out
        self.tokenizer = tokenizer
        self.k, self.n = k, n
        self.dtype = state["dtype"]
        self.np_dtype = np.dtype(self.dtype)
        self.sources, strides = plan_part(sources, k, n)
        self.strides = strides
        self.state = state
        self.limits = {
            "train": (share(cfg.rows, k, n), share(cfg.tokens, k, n)),
            "val": (share(cfg.val_rows, k, n), share(cfg.val_tokens, k, n)),
        }
        self._reset_live()

    # -- counts -------------------------------------------------------------------------------
    def _reset_live(self) -> None:
        s = self.state
        self.rows = {sp: s["splits"][sp]["rows"] for sp in SPLITS}
        self.tokens = {sp: s["splits"][sp]["tokens"] for sp in SPLITS}
        self.text_bytes = {sp: s["splits"][sp]["bytes"] for sp in SPLITS}
        self.skipped = dict(s["skipped"])
        self.position = list(s["position"])
        self.writers: dict[str, PartWriter] = {}
        self.pending_tokens = 0

    def full(self, split: str) -> bool:
        max_rows, max_tokens = self.limits[split]
        return (max_rows is not None and self.rows[split] >= max_rows) or (
            max_tokens is not None and self.tokens[split] >= max_tokens
        )

    def needed(self, index: int) -> bool:
        role = self.sources[index].role
        if role == "mixed":
            return not (self.full("train") and self.full("val"))
        return not self.full(role)

    def finished(self) -> bool:
        return not any(self.needed(i) for i in range(self.position[0], len(self.sources)))

    def keep(self, index: int) -> Optional[Callable[[int], bool]]:
        stride = self.strides[index]
        if stride is None:
            return None
        residue = self.k - 1
        return lambda line: line % stride == residue

    # -- taking documents ---------------------------------------------------------------------
    def take(self, split: str, doc: Document) -> None:
        writer = self.writers.get(split)
        if writer is None:
            index = len(self.state["splits"][split]["parts"])
            path = self.out / split / part_file_name(index, self.k, self.n)
            writer = self.writers[split] = PartWriter(path, self.dtype)
        # A copy: the tokens are a view of their whole batch's array, which the view would keep alive
        # until the part's writer flushes (val's, which gets 5% of the documents, flushes rarely).
        writer.add(doc.tokens.copy())
        self.rows[split] += 1
        self.tokens[split] += len(doc.tokens)
        self.text_bytes[split] += doc.text_bytes
        self.pending_tokens += len(doc.tokens)

    def route(self, source: Source, item) -> None:
        if item is None:
            return
        if isinstance(item, str):
            self.skipped[item] = self.skipped.get(item, 0) + 1
            return
        if source.role == "mixed":
            split = "val" if item.held_out else "train"
        else:
            split = source.role
        if not self.full(split):
            self.take(split, item)
        elif source.role == "mixed" and split == "val":
            self.skipped[records.HELD_OUT_UNUSED] = self.skipped.get(records.HELD_OUT_UNUSED, 0) + 1

    # -- committing ---------------------------------------------------------------------------
    def commit(self, error: Optional[str] = None, done: bool = False) -> None:
        s = self.state
        started = time.thread_time()
        for split in SPLITS:
            writer = self.writers.get(split)
            if writer is not None and writer.rows:
                info = writer.commit()
                info["file"] = f"{split}/{info['file']}"
                s["splits"][split]["parts"].append(info)
        for split in SPLITS:
            s["splits"][split].update(rows=self.rows[split], tokens=self.tokens[split], bytes=self.text_bytes[split])
        s["skipped"] = dict(self.skipped)
        s["position"] = list(self.position)
        s["done"] = done
        s["error"] = error
        write_json_atomic(state_path(self.out, self.k, self.n), s)
        self.profile.commit += time.thread_time() - started
        self.writers = {}
        self.pending_tokens = 0

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.abort()
        self.writers = {}

    # -- the loop -----------------------------------------------------------------------------
    def run(self, display) -> None:
        if self.finished():
            self.position = [len(self.sources), 0]
            self.commit(done=True)
            return
        start_source, start_line = self.position
        pipeline = Pipeline(self.sources, start_source, start_line, self.tokenizer, self.np_dtype,
                            self.cfg.workers or default_workers(), keep=self.keep, profile=self.profile)
        started = time.thread_time()
        try:
            for result in pipeline:
                i = result.source_index
                if i < self.position[0]:
                    continue  # the rest of a source given up on (its split filled)
                if result.source_done:
                    self.position = [i + 1, 0]
                elif not self.needed(i):
                    pipeline.skip_source(i)
                    self.position = [i + 1, 0]
                else:
                    source = self.sources[i]
                    for j, item in enumerate(result.items):
                        self.route(source, item)
                        self.position = [i, result.first_line + j + 1]
                        if not self.needed(i):
                            pipeline.skip_source(i)
                            self.position = [i + 1, 0]
                            break
                    if self.pending_tokens >= self.cfg.chunk_tokens:
                        self.commit()
                display.update(self.rows["train"] + self.rows["val"], self.tokens["train"] + self.tokens["val"],
                               pipeline.bytes_read)
                if self.finished():
                    break
        except (SourceError, UserError) as err:
            pipeline.close()
            message = self._stopped_message(err)
            self.commit(error=message)
            raise UserError(message) from None
        except BaseException:
            pipeline.close()
            self.abort()
            raise
        pipeline.close()
        if self.finished():
            self.position = [len(self.sources), 0]
        self.commit(done=True)
        self.profile.write += time.thread_time() - started

    def _stopped_message(self, err: Exception) -> str:
        committed = f"{self.rows['train']:,} train and {self.rows['val']:,} val documents before it are committed in {self.out}"
        if isinstance(err, SourceError):
            return (
                f"{err.source.location}: {err.detail} after record {err.lines:,}; {committed} and usable; "
                "replace the file (or fix the connection) and run the same command to continue"
            )
        return f"{err}; {committed}; run the same command again to continue"


def _settings(cfg: PrepareConfig, tokenizer: Tokenizer, sources: list[Source], n: int) -> dict:
    return {
        "sources": [s.to_json() for s in sources],
        "tokenizer": {k: tokenizer.identity()[k] for k in ("name", "sha256", "n_vocab", "eot_id")},
        "rows": cfg.rows, "val_rows": cfg.val_rows, "tokens": cfg.tokens, "val_tokens": cfg.val_tokens,
        "chunk_tokens": cfg.chunk_tokens, "parts_of": n,
    }


def _describe_difference(old: dict, new: dict) -> str:
    if old.get("tokenizer") != new["tokenizer"]:
        t = old.get("tokenizer") or {}
        return f"data made with another tokenizer ({t.get('name')}, sha256 {str(t.get('sha256'))[:12]})"
    keys = [k for k in new if old.get(k) != new[k]]
    return "data prepared with other options (" + ", ".join(keys or ["settings"]) + ")"


def _own_files(out: Path) -> list[Path]:
    found = [out / MANIFEST, out / STATE_DIR, *out.glob(temp_prefix(out / MANIFEST) + "*" + TEMP_SUFFIX)]
    for split in SPLITS:  # a part being written is `<part>.tmp` (PartWriter)
        found += list((out / split).glob("part-*.arrow")) + list((out / split).glob("part-*.arrow" + TEMP_SUFFIX))
    return [p for p in found if p.exists()]


def _clear(out: Path) -> None:
    for path in _own_files(out):
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _check_out_dir(out: Path, settings: dict, overwrite: bool) -> None:
    """Refuse to mix data: an existing store or interrupted run must have been made the same way."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a directory")
    previous: list[dict] = []
    if (out / STATE_DIR).is_dir():
        for path in sorted((out / STATE_DIR).glob("state*.json")):
            try:
                previous.append(read_json(path)["settings"])
            except (UserError, KeyError):
                previous.append({})
    if (out / MANIFEST).is_file():
        try:
            previous.append(read_manifest(out).get("settings") or {"tokenizer": read_manifest(out).get("tokenizer")})
        except UserError:
            previous.append({})
    if not previous and any(any((out / split).glob("part-*.arrow")) for split in SPLITS):
        previous.append({})
    mismatch = next((p for p in previous if p != settings), None)
    if mismatch is None:
        return
    if not overwrite:
        what = _describe_difference(mismatch, settings) if mismatch else "token files this command did not make"
        raise UserError(f"{out} holds {what}; choose another --out, or pass --overwrite to replace it")
    _clear(out)


def _new_state(settings: dict, dtype: str, k: int, n: int) -> dict:
    empty = {"rows": 0, "tokens": 0, "bytes": 0, "parts": []}
    return {"settings": settings, "part": [k, n], "dtype": dtype, "position": [0, 0],
            "splits": {sp: dict(empty, parts=[]) for sp in SPLITS}, "skipped": {}, "done": False, "error": None}


def _val_policy(sources: list[Source], cfg: PrepareConfig) -> str:
    val = [s.display_name for s in sources if s.role == "val"]
    limit = f"at most {cfg.val_rows:,} documents" if cfg.val_rows is not None else "all its documents"
    if cfg.val_tokens is not None:
        limit += f", at most about {cfg.val_tokens:,} tokens"
    if val:
        return f"the source's own validation shard ({', '.join(val)}), first documents in order: {limit}"
    return records.hold_out_policy() + f"; {limit}"


def _merged_manifest(out: Path, states: list[dict], sources: list[Source], tokenizer: Tokenizer, cfg: PrepareConfig,
                     n: int) -> dict:
    splits = {sp: {"parts": [p for s in states for p in s["splits"][sp]["parts"]],
                   "bytes": sum(s["splits"][sp]["bytes"] for s in states)} for sp in SPLITS}
    skipped: dict = {}
    for s in states:
        for reason, count in s["skipped"].items():
            skipped[reason] = skipped.get(reason, 0) + count
    errors = [s["error"] for s in states if s.get("error")]
    complete = all(s["done"] for s in states) and not errors
    extra = {"settings": states[0]["settings"], "inputs": [s.to_json() | {"size": s.size} for s in sources]}
    if n > 1:
        extra["parts_of"] = n
    return build_manifest(
        version=__version__, sources=[s.location for s in sources], tokenizer=tokenizer.identity(),
        dtype=states[0]["dtype"], splits=splits, skipped=skipped, val_policy=_val_policy(sources, cfg),
        complete=complete, error="; ".join(errors) or None, extra=extra,
    )


def _refuse_empty(out: Path, manifest: dict) -> None:
    """A finished store with no train token is a mistake in the input, not data: say why and remove it,
    so that the corrected command starts afresh (no --overwrite needed)."""
    if manifest["splits"]["train"]["tokens"] > 0:
        return
    skipped = manifest.get("skipped") or {}
    why = ", ".join(f"{reason} {count:,}" for reason, count in skipped.items()) or "the sources hold no records"
    _clear(out)
    for folder in (out / "train", out / "val", out):  # the folders this run made, when nothing else is in them
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    raise UserError(f"no train documents in {', '.join(manifest['sources'])} (skipped: {why}); prepare needs JSON "
                    f"lines with a string 'text' field; nothing was kept in {out}")


def _load_states(out: Path, n: int) -> list[Optional[dict]]:
    states = []
    for k in range(1, n + 1):
        path = state_path(out, k, n)
        states.append(read_json(path, fix=_START_OVER.format(out=out)) if path.is_file() else None)
    return states


def _write_manifest_if_all_parts(out: Path, sources, tokenizer, cfg, n: int) -> None:
    states = _load_states(out, n)
    if all(s is not None for s in states):
        write_json_atomic(out / MANIFEST, _merged_manifest(out, states, sources, tokenizer, cfg, n))


def prepare(cfg: PrepareConfig, console=None, summary_console=None, profile: Optional[Profile] = None) -> dict:
    """Run (or continue) `prepare`. Returns the manifest (complete, or as far as all parts got).

    `profile`, when given, is filled with where the CPU time went (the benchmark prints it)."""
    from pileablate.data.display import PrepareDisplay, summary_table

    started = time.monotonic()
    k, n = parse_task(cfg.task)
    for name in ("rows", "val_rows", "tokens", "val_tokens"):
        value = getattr(cfg, name)
        if value is not None and value < 0:
            raise UserError(f"--{name.replace('_', '-')} must be 0 or more")
    if cfg.chunk_tokens < 1:
        raise UserError("--chunk-tokens must be at least 1")
    for name in ("rows", "tokens"):  # a store without train documents cannot train anything
        if getattr(cfg, name) == 0:
            raise UserError(f"--{name} 0 leaves nothing to train on; give a positive count, or omit it to take all")
    # Everything that can fail on bad input fails here, before anything is written.
    tokenizer = load_tokenizer(cfg.tokenizer)
    sources = resolve_sources(cfg.sources)
    settings = _settings(cfg, tokenizer, sources, n)
    out = cfg.out
    _check_out_dir(out, settings, cfg.overwrite)
    try:
        (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create --out {out}: {err.strerror or err}; choose a writable directory") from None

    path = state_path(out, k, n)
    remove_stale_temps(path)  # a previous run killed while writing its state
    state = read_json(path, fix=_START_OVER.format(out=out)) if path.is_file() else _new_state(settings, dtype_for_vocab(tokenizer.n_vocab), k, n)
    run = _Run(cfg, tokenizer, sources, k, n, state, profile)
    note = ""
    if not state["done"]:
        resumed = state["position"] != [0, 0]
        limit_docs = [x for x in (run.limits["train"][0], run.limits["val"][0]) if x is not None]
        limit_tokens = [x for x in (run.limits["train"][1], run.limits["val"][1]) if x is not None]
        sizes = [s.size for s in run.sources[state["position"][0]:]]  # a resumed source is read again from its start
        if cfg.rows is not None and len(limit_docs) == 2:
            unit, total = "docs", sum(limit_docs)
        elif cfg.tokens is not None and len(limit_tokens) == 2:
            unit, total = "tokens", sum(limit_tokens)
        elif all(sz is not None for sz in sizes):
            unit, total = "bytes", sum(sizes)
        else:
            unit, total = "none", None
        label = f"prepare{f' part {k}/{n}' if n > 1 else ''}{' (resumed)' if resumed else ''}"
        try:
            with PrepareDisplay(console, unit, total, label) as display:
                run.run(display)
        except KeyboardInterrupt:
            committed = run.state["splits"]
            raise Interrupted(
                f"interrupted; {committed['train']['rows']:,} train and {committed['val']['rows']:,} val documents "
                f"are committed in {out}; run the same command again to continue from there"
            ) from None
        except UserError:
            if run.state.get("error"):  # stopped at a broken source: what was committed stays usable
                _write_manifest_if_all_parts(out, sources, tokenizer, cfg, n)
            raise
        if resumed:
            note = "resumed from the last committed chunk"
    elif (out / MANIFEST).is_file():
        manifest = read_manifest(out)
        if manifest.get("complete"):
            if summary_console is not None:
                summary_console.print(summary_table(manifest, None, str(out), "already prepared; nothing to do"))
            return manifest

    states = _load_states(out, n)
    if all(s is not None and s["done"] for s in states):
        manifest = _merged_manifest(out, states, sources, tokenizer, cfg, n)
        _refuse_empty(out, manifest)
        write_json_atomic(out / MANIFEST, manifest)
    else:
        waiting = sum(1 for s in states if s is None or not s["done"])
        manifest = _merged_manifest(out, [s for s in states if s is not None], sources, tokenizer, cfg, n)
        note = (f"part {k}/{n} done; manifest.json is written by the last part to finish "
                f"({waiting} still running or not started)")
    if summary_console is not None:
        summary_console.print(summary_table(manifest, time.monotonic() - started, str(out), note))
    return manifest


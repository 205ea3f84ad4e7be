"""`manifest.json`: what a token store holds, written last and atomically; its fingerprint.

Keys (format_version 1; see docs/DESIGN.md): format_version, pileablate_version, created, sources,
tokenizer {spec, name, sha256, n_vocab, eot_id}, dtype, eot_id, vocab_size,
splits {train|val: {rows, tokens, bytes, parts [{file, rows, tokens, sha256}]}}, skipped {reason: n},
val_policy, fingerprint. Also: complete (false when prepare stopped at a broken source; the parts
listed are whole and usable), error (why, when not complete), parts_of (N for --task K/N stores),
inputs (each source with its role and records read), settings (what a rerun must match).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from pileablate.errors import UserError
from pileablate.jsonfile import read_json

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "val")


def read_manifest(directory) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise UserError(f"no prepared data in {directory}; run 'pileablate prepare' first")
    manifest = read_json(path, fix="run 'pileablate prepare --overwrite' to rebuild it")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise UserError(
            f"{path} has format_version {version}, this pileablate reads {FORMAT_VERSION}; "
            "rerun 'pileablate prepare' with this version"
        )
    return manifest


def tokenizer_identity(tokenizer: dict) -> dict:
    """The part of the tokenizer entry that identifies the vocabulary (not where it was loaded from)."""
    return {k: tokenizer[k] for k in ("name", "sha256", "n_vocab", "eot_id")}


def fingerprint(tokenizer: dict, splits: dict) -> str:
    """sha256 over the tokenizer identity and every part's (split, file, rows, tokens, sha256)."""
    parts = [
        [split, p["file"], p["rows"], p["tokens"], p["sha256"]]
        for split in SPLITS
        for p in splits.get(split, {}).get("parts", [])
    ]
    payload = json.dumps({"tokenizer": tokenizer_identity(tokenizer), "parts": parts}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def build_manifest(
    *,
    version: str,
    sources: list[str],
    tokenizer: dict,
    dtype: str,
    splits: dict,
    skipped: dict,
    val_policy: str,
    complete: bool = True,
    error: str | None = None,
    extra: dict | None = None,
) -> dict:
    splits = {
        name: {
            "rows": sum(p["rows"] for p in splits.get(name, {}).get("parts", [])),
            "tokens": sum(p["tokens"] for p in splits.get(name, {}).get("parts", [])),
            "bytes": int(splits.get(name, {}).get("bytes", 0)),
            "parts": sorted(splits.get(name, {}).get("parts", []), key=lambda p: p["file"]),
        }
        for name in SPLITS
    }
    manifest = {
        "format_version": FORMAT_VERSION,
        "pileablate_version": version,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sources": list(sources),
        "tokenizer": dict(tokenizer),
        "dtype": dtype,
        "eot_id": tokenizer["eot_id"],
        "vocab_size": tokenizer["n_vocab"],
        "splits": splits,
        "skipped": {k: v for k, v in sorted(skipped.items()) if v},
        "val_policy": val_policy,
        "fingerprint": fingerprint(tokenizer, splits),
        "complete": complete,
    }
    if error:
        manifest["error"] = error
    manifest.update(extra or {})
    return manifest

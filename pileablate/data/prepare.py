"""Temporary minimal writer so other parts can build on a real store while `prepare` is built.

Replaced by the real streaming pipeline (issue 2); `prepare_for_tests` stays as its small-data entry.
"""

from __future__ import annotations

import hashlib
import json
import sysconfig
import zlib
from datetime import datetime, timezone
from pathlib import Path

from pileablate import __version__
from pileablate.data.store import write_part


def prepare_for_tests(out: Path, train_tokens: int, val_tokens: int) -> dict:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    splits = {"train": ([], 0, 0), "val": ([], 0, 0)}
    for path in sorted(stdlib.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="ignore")
        if not text:
            continue
        split = "val" if zlib.crc32(text.encode()) % 10 == 0 else "train"
        docs, n, nbytes = splits[split]
        limit = train_tokens if split == "train" else val_tokens
        if n >= limit:
            continue
        data = text.encode("utf-8")
        docs.append(list(data) + [256])
        splits[split] = (docs, n + len(data) + 1, nbytes + len(data))
    manifest_splits = {}
    parts_for_fp = []
    for split, (docs, n, nbytes) in splits.items():
        path = out / split / "part-00000.arrow"
        rows, tokens = write_part(path, docs, "uint16")
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        manifest_splits[split] = {"rows": rows, "tokens": tokens, "bytes": nbytes,
                                  "parts": [{"file": f"{split}/part-00000.arrow", "rows": rows, "tokens": tokens, "sha256": sha}]}
        parts_for_fp.append([split, path.name, rows, tokens, sha])
    tokenizer = {"spec": "bytes", "name": "bytes", "sha256": hashlib.sha256(b"bytes").hexdigest(), "n_vocab": 257, "eot_id": 256}
    manifest = {
        "format_version": 1, "pileablate_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(), "sources": ["sample"],
        "tokenizer": tokenizer, "dtype": "uint16", "eot_id": 256, "vocab_size": 257,
        "splits": manifest_splits, "skipped": {}, "val_policy": "hash",
        "fingerprint": hashlib.sha256(json.dumps([tokenizer, parts_for_fp]).encode()).hexdigest(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest

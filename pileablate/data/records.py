"""One JSON line -> a document's text, or the reason it is skipped; and the validation hold-out rule."""

from __future__ import annotations

import hashlib
import json
from typing import Union

# Reasons a record is skipped (counted in the summary and the manifest, never a crash).
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
NO_TEXT = "no_text"  # not an object, or no string "text" field
EMPTY_TEXT = "empty_text"  # "" or whitespace only
HELD_OUT_UNUSED = "held_out_beyond_val_limit"  # hash-selected for val after val was full: in neither split

# Hash hold-out (when no source has its own validation shard): a document goes to val when its text
# hashes into the lowest HOLD_OUT_PER_10000 of 10000 buckets. Identical texts hash alike, so no text can be
# in both splits, and the choice does not depend on order, part or machine.
HOLD_OUT_PER_10000 = 500  # 5%


def parse_record(line: bytes) -> Union[tuple[str, bytes], str]:
    """(text, text as UTF-8) for a usable record, else the skip reason."""
    try:
        decoded = line.decode("utf-8")
    except UnicodeDecodeError:
        return INVALID_UTF8
    try:
        record = json.loads(decoded)
    except ValueError:
        return INVALID_JSON
    text = record.get("text") if isinstance(record, dict) else None
    if not isinstance(text, str):
        return NO_TEXT
    try:
        encoded = text.encode("utf-8")  # lone surrogates from "\ud800"-style escapes fail here
    except UnicodeEncodeError:
        return INVALID_UTF8
    if not encoded.strip():
        return EMPTY_TEXT
    return text, encoded


def held_out(text_utf8: bytes) -> bool:
    digest = hashlib.blake2b(text_utf8, digest_size=8).digest()
    return int.from_bytes(digest, "little") % 10000 < HOLD_OUT_PER_10000


def hold_out_policy() -> str:
    return (
        f"hash hold-out: a document goes to val when blake2b(text) falls in the lowest "
        f"{HOLD_OUT_PER_10000 / 100:g}% of buckets (val keeps at most the val limit; the rest of that "
        "share is dropped), so no document text is in both splits"
    )

"""Counts and durations as people type them: `250k`, `1.5M`, `2G`, `1_000_000`; `30s`, `1h30m`.

One grammar for every option that takes a count (`prepare --rows/--tokens/--chunk-tokens`,
`train --max-tokens/--eval-tokens`), so a value that works for one works for all.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, DecimalException
from typing import Optional

from pileablate.errors import UserError

# Suffixes are case-insensitive: k = 10^3, M = 10^6, G and B = 10^9, T = 10^12.
COUNT_SCALES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9, "t": 10**12}
_COUNT = re.compile(r"^(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:e\+?\d+)?)(?P<suffix>[kmgbt]?)$")
NO_LIMIT = ("all", "none")


def parse_count(text, option: str, *, minimum: int = 1, allow_all: bool = False) -> Optional[int]:
    """'2000', '250k', '1.5M', '2G', '1.5B', '1T', '1_000_000', '1,000', '1e6' -> a whole number.

    `allow_all`: '', 'all' and 'none' mean no limit (None). Below `minimum` is an error.
    """
    if text is None:
        if allow_all:
            return None
        raise UserError(f"{option}: expected a count like 20000, 250k, 1.5M or 2G")
    raw = str(text).strip().lower().replace("_", "").replace(",", "")
    if allow_all and raw in ("", *NO_LIMIT):
        return None
    match = _COUNT.match(raw)
    if not match:
        extra = " (or 'all')" if allow_all else ""
        raise UserError(f"{option} {text!r}: not a count; use e.g. 20000, 250k, 1.5M or 2G{extra}")
    try:
        value = Decimal(match["number"]) * COUNT_SCALES[match["suffix"]]
    except DecimalException:  # an exponent too large for Decimal's context
        raise UserError(f"{option} {text!r}: not a count; use e.g. 20000, 250k, 1.5M or 2G") from None
    if value != value.to_integral_value():
        raise UserError(f"{option} {text!r}: not a whole number")
    if value < minimum:
        raise UserError(f"{option} {text!r}: must be {minimum} or more")
    return int(value)


_DURATION = re.compile(r"^(?:(?P<d>\d+(?:\.\d+)?)d)?(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$")
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text, option: str = "--time-limit") -> float:
    """'30s', '90m', '1h', '1h30m', '2d', or plain seconds ('45') -> seconds (positive)."""
    raw = str(text).strip().lower()
    try:
        seconds = float(raw)
    except ValueError:
        match = _DURATION.match(raw)
        if not raw or not match or not any(match.groupdict().values()):
            raise UserError(f"{option} {text!r}: not a duration; use e.g. 30s, 90m, 1h or 1h30m") from None
        seconds = sum(float(v) * _DURATION_UNITS[k] for k, v in match.groupdict().items() if v)
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"{option} {text!r}: must be a positive duration, e.g. 30s, 90m, 1h")
    return seconds


def parse_share(text: str, option: str) -> tuple[int, int]:
    """'K/N' (this process's share K of N: `prepare --part`, `ablate --task`) -> (K, N), 1 <= K <= N."""
    try:
        k, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        k, n = 0, 0
    if not 1 <= k <= n:
        raise UserError(f"{option} {text!r}: use K/N with K between 1 and N, e.g. {option} 2/8")
    return k, n

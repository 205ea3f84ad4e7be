"""Counts and durations as people type them: `250k`, `1.5M`, `2G`, `1_000_000`; `30s`, `1h30m`.

One grammar for every option that takes a count (`prepare --rows/--tokens/--chunk-tokens`,
`train --max-tokens/--eval-tokens`), so a value that works for one works for all. And the one check
that no float option of any command takes NaN or an infinity (`refuse_non_finite`).
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
    """'K/N' (this process's share K of N: `prepare --task`, `ablate --task`) -> (K, N), 1 <= K <= N."""
    try:
        k, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        k, n = 0, 0
    if not 1 <= k <= n:
        raise UserError(f"{option} {text!r}: use K/N with K between 1 and N, e.g. {option} 2/8")
    return k, n


def refuse_non_finite(command):
    """Every float option of a click `command` (and of its subcommands) refuses NaN and infinities.

    The check is attached to each such option once, where the command line is parsed: before any
    command body runs, so nothing is written for a value that cannot be used.
    """
    for sub in getattr(command, "commands", {}).values():
        refuse_non_finite(sub)
    for param in command.params:
        if _takes_floats(param) and not getattr(param.callback, "finite_check", False):
            param.callback = _finite_callback(param.callback, (param.opts or [param.name])[0])
    return command


def _takes_floats(param) -> bool:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:  # typer >= 0.20 (its own click)
        annotation = descriptor.annotation
    else:
        annotation = getattr(getattr(param, "type", None), "name", None)
    return annotation is float or annotation == "float" or "float" in str(annotation).lower()


def _finite_callback(inner, option: str):
    def check(ctx, param, value):
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise UserError(f"{option} {v}: must be a finite number")
        return inner(ctx, param, value) if inner is not None else value

    check.finite_check = True
    return check

"""Human-readable numbers for tables: 1.2M tokens, 3m05s, 512 MiB, 2.345 ± 0.012."""

from __future__ import annotations

import math
from typing import Optional

DASH = "–"


def format_count(n: Optional[float]) -> str:
    if n is None:
        return DASH
    n = float(n)
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def format_seconds(s: Optional[float]) -> str:
    if s is None:
        return DASH
    s = float(s)
    if s < 120:
        return f"{s:.1f}s" if s < 10 else f"{s:.0f}s"
    if s < 7200:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def format_bytes(n: Optional[float]) -> str:
    if not n:
        return DASH
    n = float(n)
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def format_float(x: Optional[float], digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return DASH
    return f"{x:.{digits}f}"


def format_mean_std(m: Optional[float], s: Optional[float], digits: int = 3) -> str:
    if m is None:
        return DASH
    return f"{m:.{digits}f}" if s is None else f"{m:.{digits}f} ± {s:.{digits}f}"

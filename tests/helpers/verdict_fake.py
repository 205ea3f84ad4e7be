"""Until `pileablate.report.verdict` (the verdicts helper's module) is on this branch: the names the
ablate tests need from it, as the interface fixes them (docs in /work/briefs/verdict_interface.md)."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass


@dataclass(frozen=True)
class SequentialDesign:
    first: int = 3
    max_seeds: int = 10
    step: int = 2

    def looks(self) -> list[int]:
        return list(range(self.first, self.max_seeds, self.step)) + [self.max_seeds]


def install() -> bool:
    """True when the stand-in was installed (the real module is missing)."""
    if "pileablate.report.verdict" in sys.modules:
        return not hasattr(sys.modules["pileablate.report.verdict"], "check_margin")
    try:
        import pileablate.report.verdict  # noqa: F401
        return False
    except ImportError:
        module = types.ModuleType("pileablate.report.verdict")
        module.SequentialDesign, module.DEFAULT_MARGIN = SequentialDesign, 0.01
        sys.modules["pileablate.report.verdict"] = module
        return True

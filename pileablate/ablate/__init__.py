"""The ablation grid as a Python API (`Ablation`, `run_ablation`; `Study`, `run_study` for sweeps and
`--seeds auto`); `commands/ablate.py` is its command line."""

from pileablate.ablate.ablation import Ablation, AblationResult, run_ablation
from pileablate.ablate.plan import Experiment, default_grid, grid_from_toml

__all__ = ["Ablation", "AblationResult", "Experiment", "default_grid", "grid_from_toml", "run_ablation"]

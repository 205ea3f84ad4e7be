"""The ablation grid as a Python API: `Ablation` (what every point runs) and `run_ablation`; `Study` and
`run_study` for the general case (sweep points, `--seeds auto`). `commands/ablate.py` is its command line."""

from pileablate.ablate.ablation import Ablation
from pileablate.ablate.phases import AblationResult
from pileablate.ablate.plan import Experiment, default_grid, grid_from_toml
from pileablate.ablate.run import run_ablation, run_study
from pileablate.ablate.study import Study

__all__ = ["Ablation", "AblationResult", "Experiment", "Study", "default_grid", "grid_from_toml", "run_ablation",
           "run_study"]

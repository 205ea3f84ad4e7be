"""`SlurmOptions`: what a job array asks of the scheduler, the same options in `ablate --emit slurm` and
`prepare --emit slurm` (each field the option of its name, pileablate.options)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from pileablate.options import option

SLURM = "SLURM job arrays (with --emit slurm)"


@dataclass
class SlurmOptions:
    """The #SBATCH lines and set-up every task of an emitted job array gets."""

    slurm_time: Optional[str] = option(None, "The array's time limit (default: ablate's from --time-limit, prepare's "
                                             "24:00:00).", group=SLURM, metavar="[D-]HH:MM:SS")
    slurm_partition: Optional[str] = option(None, "sbatch --partition.", group=SLURM)
    slurm_account: Optional[str] = option(None, "sbatch --account.", group=SLURM)
    slurm_qos: Optional[str] = option(None, "sbatch --qos.", group=SLURM)
    slurm_mem: Optional[str] = option(None, "sbatch --mem (16G).", group=SLURM, metavar="SIZE")
    slurm_extra: tuple[str, ...] = option((), "Any other #SBATCH line, repeatable (--constraint=a100).", group=SLURM,
                                          metavar="OPTION")
    slurm_setup: Optional[str] = option(None, "Shell commands each task runs first (\"module load cuda; source "
                                              "venv/bin/activate\"); the command then uses the python they put on PATH.",
                                        group=SLURM, metavar="COMMANDS")

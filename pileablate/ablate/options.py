"""`AblateOptions`: what `pileablate ablate` takes beside the train options, one field per option.

Each field is the option of its name and its help the --help (pileablate.options), grouped as the
command's help shows them. `commands/ablate.py` turns them, with the train options every run shares,
into one `Study`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pileablate.options import option
from pileablate.slurm_options import SLURM

STUDY, TUNING = "Study", "Learning-rate tuning"
EXECUTION = "Execution"
# The groups a job array's tasks repeat (with the train options); the others say how to run them here.
FORWARDED_TO_TASKS = (STUDY, TUNING)


@dataclass
class AblateOptions:
    """The command line of `ablate` beside the train options (and the scheduler's, `SlurmOptions`)."""

    mods: Optional[str] = option(None, "Comma list of modifications: runs the baseline, each alone, and all together. "
                                       "Default: warmup,cosine,rmsnorm,rope,swiglu (the seven experiments).", group=STUDY)
    grid: Optional[Path] = option(None, "TOML file of explicit configurations: one [[config]] table per configuration with "
                                        "mods = [\"rope\", \"swiglu\"] (and optionally name = \"...\"); optional top-level seeds = K.",
                                  group=STUDY)
    sweep: tuple[str, ...] = option((), "Run the whole grid at every value of a train option, to see whether a modification's Δ "
                                        "holds at scale: preset=nano,micro,mini, n_layer=, n_head=, d_model=, seq_len=, "
                                        "max_tokens=1M,3M,10M, max_steps=, time_limit=. Repeat for several axes (their product). "
                                        "Each point gets the same seeds, its own folder (RUNS/micro/rope-s0), its own default "
                                        "budget when none is given, its own tuned lr with --tune-lr; one report over all points "
                                        "says how Δ moves along the axis. Replaces the grid file's [sweep] table.",
                                    group=STUDY, metavar="OPTION=V1,V2,...")
    seeds: Optional[str] = option(None, "Seeds per configuration (--seed S gives seeds S, S+1, ...). Default 1, or the grid "
                                        "file's seeds. 'auto': 3 seeds of every configuration, then 2 more at a time only for "
                                        "the configurations whose verdict is still undecided, up to --max-seeds (a sequential "
                                        "rule the report states).", group=STUDY, metavar="N|auto")
    max_seeds: Optional[int] = option(None, "With --seeds auto: the most seeds a configuration gets (at least 3; default 10).",
                                      group=STUDY)
    margin: Optional[float] = option(None, "The difference in validation loss (nats/token) below which a modification has "
                                           "'no effect'; recorded in RUNS/study.json for the report. Default 0.01 (about a fifth of "
                                           "SwiGLU's published gain; docs/report.md).", group=STUDY, metavar="NATS")
    tune_lr: Optional[str] = option(None, "Tune the learning rate of every configuration before the reported runs: 'auto' "
                                          "tries 5 rates log-spaced over x1/10..x10 of the preset's default, N tries N such "
                                          "rates, or give the rates (3e-4,1e-3,3e-3). Tuning runs use seeds of their own "
                                          "(1000+) and are scored on held-out tuning windows disjoint from the validation "
                                          "windows the report scores; each configuration's reported runs then train at its "
                                          "chosen rate. A rate chosen at the edge of the rates tried adds one rate beyond it "
                                          "(same ratio), twice at most.", group=TUNING, metavar="auto|N|LR,LR,...")
    tune_seeds: int = option(1, "Tuning runs per configuration and rate.", group=TUNING, min=1)
    tune_budget: float = option(1.0, "The tuning runs' budget as a fraction of the reported runs' budget (the best rate "
                                     "moves with the budget: shorten with care).", group=TUNING, metavar="FRACTION")
    jobs: int = option(1, "Runs at once on this machine, each slot with its own worker process: one per device of --device "
                          "(default every visible GPU), or on a CPU each with its share of the cores this process may use "
                          "(its CPU affinity; a tiny model gains little from a second thread). Results are bit-identical "
                          "to the same runs made one after another with that many threads.", group=EXECUTION, min=1)
    task: Optional[str] = option(None, "Make only this task's share of the plan (every N-th run from the K-th): N tasks of a "
                                       "job array cover the grid exactly once. No report: run 'pileablate report' after.",
                                 group=EXECUTION, metavar="K/N")
    stage: str = option("all", "tune, train or all: with --tune-lr a job array runs the tuning runs first (--stage tune), "
                               "then the reported ones (--stage train).", group=EXECUTION)
    no_wait: bool = option(False, "Runs that another process is training (it holds the run folder's lock) are skipped; "
                                  "by default the command then waits for them before its report (and resumes at once "
                                  "one whose process died). With --no-wait it reports them as being trained by pid P "
                                  "on host H instead. A --task never waits.", group=EXECUTION)
    dry_run: bool = option(False, "Print the plan (runs, budget, what is finished or will resume) and stop.", group=EXECUTION)
    emit: Optional[str] = option(None, "Write sbatch job-array scripts for this ablation and the submit.sh that submits them "
                                       "into RUNS/slurm/, and stop (nothing trains here).", group=SLURM, metavar="slurm")
    array_tasks: Optional[int] = option(None, "Tasks per array (default: one per run).", group=SLURM, min=1)
    gpus_per_run: Optional[int] = option(None, "GPUs per array task (default: 1, none with --device cpu).", group=SLURM, min=0)
    cpus_per_run: Optional[int] = option(None, "CPUs per array task, the run's thread count (default: 8 with a GPU, 4 on a "
                                               "CPU).", group=SLURM, min=1)

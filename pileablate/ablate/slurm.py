"""`ablate --emit slurm`: sbatch job-array scripts over the plan, and the script that submits them.

Every task runs `pileablate ablate <the same options> --task K/N`: the plan is the same deterministic
list on every machine, so N tasks cover it exactly once, writing run folders into one shared
--runs-dir. With --tune-lr the tuning stage is one array and the reported stage a second one that
starts after the first succeeded (`--dependency=afterok`), because each reported run needs every
tuning run of its configuration.
"""

from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

# Wall-clock allowance for a task over its runs' training time: evaluation, checkpoints, start-up.
TIME_MARGIN = 1.5
TIME_FLOOR_S = 15 * 60


def slurm_time(seconds: float) -> str:
    seconds = int(math.ceil(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}-{hours:02d}:{rest // 60:02d}:00" if days else f"{hours:02d}:{rest // 60:02d}:00"


def task_time(time_limit_s: Optional[float], runs_per_task: int, given: Optional[str]) -> tuple[str, str]:
    """(the array's --time, how it was derived)."""
    if given:
        return given, "given with --slurm-time"
    if time_limit_s:
        seconds = max(TIME_FLOOR_S, time_limit_s * runs_per_task * TIME_MARGIN)
        return slurm_time(seconds), (f"{runs_per_task} run(s) x --time-limit {time_limit_s:g}s x {TIME_MARGIN} "
                                     "(evaluation, checkpoints, start-up)")
    return "24:00:00", "the budget is in tokens or steps, so the time cannot be derived: pass --slurm-time to set it"


def array_script(*, stage: str, args: Sequence[str], tasks: int, runs: int, time: str, why_time: str,
                 gpus: int, cpus: int, log_dir: Path, workdir: Path) -> str:
    command = [sys.executable, "-m", "pileablate", "ablate", *args, "--stage", stage]
    task = '--task "${SLURM_ARRAY_TASK_ID}/' + str(tasks) + '"'
    return "\n".join([
        "#!/bin/bash",
        f"# pileablate ablate, stage '{stage}': {runs} runs in {tasks} array tasks.",
        f"# Time limit: {why_time}.",
        "# Each run is one process on one GPU. For multi-GPU DDP runs, run this command under",
        "#   torchrun --standalone --nproc_per_node=G -m pileablate ablate ...",
        "# in place of python -m pileablate, and ask for G GPUs per task below.",
        f"#SBATCH --job-name=pileablate-{stage}",
        f"#SBATCH --array=1-{tasks}",
        f"#SBATCH --time={time}",
        f"#SBATCH --gpus-per-task={gpus}" if gpus else "# (no GPU asked: --gpus-per-run 0)",
        f"#SBATCH --cpus-per-task={cpus}",
        f"#SBATCH --output={log_dir}/%x-%A_%a.out",
        "set -euo pipefail",
        f"cd {shlex.quote(str(workdir))}",
        " ".join(shlex.quote(c) for c in command) + " " + task,
        "",
    ])


def submit_script(scripts: Sequence[Path], runs_dir: Path) -> str:
    lines = ["#!/bin/bash", "# Submits the ablation's job arrays; each stage starts when the previous one succeeded.",
             "set -euo pipefail", 'cd "$(dirname "$0")"', "dependency=()"]
    for script in scripts:
        lines += [f'job=$(sbatch --parsable "${{dependency[@]}}" {script.name})',
                  f'echo "submitted {script.name}: job $job"', 'dependency=(--dependency=afterok:"$job")']
    lines += [f'echo "when it has finished: pileablate report {runs_dir}"', ""]
    return "\n".join(lines)


def write_scripts(ablation, args: Sequence[str], tasks: Optional[int], gpus: int, cpus: int,
                  given_time: Optional[str]) -> list[Path]:
    """The array script of each stage and submit.sh, into RUNS/slurm/. Returns their paths."""
    import os

    out = Path(ablation.base.runs_dir) / "slurm"
    out.mkdir(parents=True, exist_ok=True)
    stages = [("tune", ablation.tuning_plan())] if ablation.tuning else []
    stages.append(("train", ablation.report_plan()))
    scripts = []
    for stage, plan in stages:
        n = min(tasks or len(plan), len(plan))
        time, why = task_time(ablation.base.time_limit_s, math.ceil(len(plan) / n), given_time)
        path = out / f"{stage}.sbatch"
        path.write_text(array_script(stage=stage, args=args, tasks=n, runs=len(plan), time=time, why_time=why,
                                     gpus=gpus, cpus=cpus, log_dir=out.resolve(), workdir=Path.cwd()))
        scripts.append(path)
    submit = out / "submit.sh"
    submit.write_text(submit_script(scripts, ablation.base.runs_dir))
    os.chmod(submit, 0o755)
    return scripts + [submit]

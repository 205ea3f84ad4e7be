"""`ablate --emit slurm`: sbatch job-array scripts over the plan, and the script that submits them.

Every task runs `pileablate ablate <the same options> --task K/N`: the plan is the same deterministic
list on every machine, so N tasks cover it exactly once, writing run folders into one shared
--runs-dir. With --tune-lr the tuning stage is one array and the training stage a second one that
starts after the first succeeded (`--dependency=afterok`), because each reported run needs every
tuning run of its configuration.

Recovery is by re-running submit.sh: it asks `python -m pileablate.ablate.slurm pending` which tasks
still have unfinished runs (tasks.json lists each task's runs) and are not in the queue (`squeue`, for
the arrays it noted in jobs.txt), and submits only those; a run stopped
mid-way resumes from its checkpoint. A task whose run is held (pileablate.runlock: a task is training
it) is running and is not submitted again; a copy that starts anyway finds its runs held, leaves them
to their holder and exits 0. A time-out signals the task's shell early (`--signal`), which
forwards SIGTERM to the run so that it checkpoints before Slurm kills it.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from pileablate.errors import UserError

# Wall-clock allowance for a task over its runs' training time: evaluation, checkpoints, start-up.
TIME_MARGIN = 1.5
TIME_FLOOR_S = 15 * 60
# Seconds before the time limit at which Slurm signals the task, for the run to reach a step and checkpoint.
SIGNAL_LEAD_S = 120
# CPU threads per run when not given: a GPU run needs few (host work, data); a CPU run computes on them.
DEFAULT_CPUS = {"gpu": 8, "cpu": 4}
PATH_OPTIONS = ("--data", "--runs-dir")
JOBS_FILE = "jobs.txt"   # beside tasks.json: "STAGE JOB" for every array submit.sh submitted
_MEMORY = re.compile(r"^\d+[KMGT]?$")


@dataclass(frozen=True)
class SlurmRequest:
    """What each array task asks of the scheduler, and what runs before the command."""

    gpus: int
    cpus: int
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    mem: Optional[str] = None
    extra: tuple[str, ...] = ()
    setup: Optional[str] = None
    time: Optional[str] = None

    def directives(self) -> list[str]:
        named = [("partition", self.partition), ("account", self.account), ("qos", self.qos), ("mem", self.mem)]
        lines = [f"#SBATCH --cpus-per-task={self.cpus}"]
        lines += [f"#SBATCH --gpus-per-task={self.gpus}"] if self.gpus else []
        lines += [f"#SBATCH --{key}={value}" for key, value in named if value]
        return lines + [f"#SBATCH {line}" for line in self.extra]


def make_request(device: str, gpus: Optional[int], cpus: Optional[int], slurm=None) -> SlurmRequest:
    """The request of runs on `device` (the runs' --device): no GPU for CPU runs; checks the user's values
    (`slurm`: the SlurmOptions given, none by default)."""
    from pileablate.slurm_options import SlurmOptions

    slurm = slurm or SlurmOptions()
    mem, extra, setup = slurm.slurm_mem, slurm.slurm_extra, slurm.slurm_setup
    on_cpu = device == "cpu"
    if on_cpu and gpus:
        raise UserError(f"--gpus-per-run {gpus} with --device cpu: the runs would not use them; drop --gpus-per-run")
    gpus = (0 if on_cpu else 1) if gpus is None else gpus
    cpus = DEFAULT_CPUS["cpu" if on_cpu or not gpus else "gpu"] if cpus is None else cpus
    if mem is not None and not _MEMORY.match(mem):
        raise UserError(f"--slurm-mem {mem!r}: give a size such as 16G or 4000M (Slurm's --mem)")
    for line in extra:
        if not line.startswith("-") or "\n" in line:
            raise UserError(f"--slurm-extra {line!r}: give one sbatch option, such as --constraint=a100")
    if setup is not None and "\n" in setup:
        raise UserError("--slurm-setup: give one line of commands separated by ';'")
    return SlurmRequest(gpus=gpus, cpus=cpus, partition=slurm.slurm_partition, account=slurm.slurm_account,
                        qos=slurm.slurm_qos, mem=mem, extra=tuple(extra), setup=setup, time=slurm.slurm_time)


def slurm_time(seconds: float) -> str:
    seconds = int(math.ceil(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}-{hours:02d}:{rest // 60:02d}:00" if days else f"{hours:02d}:{rest // 60:02d}:00"


def task_time(time_limit: Optional[float], runs_per_task: int, given: Optional[str]) -> tuple[str, str]:
    """(the array's --time, how it was derived)."""
    if given:
        return given, "given with --slurm-time"
    if time_limit:
        seconds = max(TIME_FLOOR_S, time_limit * runs_per_task * TIME_MARGIN)
        return slurm_time(seconds), (f"{runs_per_task} run(s) x --time-limit {time_limit:g}s x {TIME_MARGIN} "
                                     "(evaluation, checkpoints, start-up)")
    return "24:00:00", "the budget is in tokens or steps, so the time cannot be derived: pass --slurm-time to set it"


def absolute_args(args: Sequence[str], data_dir: Path, runs_dir: Path) -> list[str]:
    """The train options with --data and --runs-dir as absolute paths (a task may start anywhere)."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in PATH_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{o}=" for o in PATH_OPTIONS)):
            kept.append(arg)
    return kept + ["--data", str(Path(data_dir).resolve()), "--runs-dir", str(Path(runs_dir).resolve())]


def python_command(request: SlurmRequest) -> str:
    """After a set-up step, the `python` it put first on PATH; otherwise the interpreter emitting the scripts."""
    return "python" if request.setup else shlex.quote(sys.executable)


def _resources_comment(request: SlurmRequest) -> list[str]:
    threads = f"{request.cpus} CPU thread{'s' if request.cpus != 1 else ''}"
    if not request.gpus:
        return [f"Each run is one process on {threads} (OMP_NUM_THREADS and torch's threads follow the task's",
                "CPUs; the thread count changes the last digits of the losses and is recorded in config.json)."]
    return [f"Each run is one process on {request.gpus} GPU(s) with {threads}. For multi-GPU DDP runs, run the",
            "command under torchrun --standalone --nproc_per_node=G -m pileablate ablate ... in place of",
            "python -m pileablate, and ask for G GPUs per task with --gpus-per-run G."]


@dataclass(frozen=True)
class Job:
    """One sbatch script: `python -m pileablate <command>`, as an array of `tasks` tasks (each given
    `--task K/N`) or, without tasks, one job."""

    name: str                   # --job-name
    label: str                  # what the log's first line calls it ("pileablate ablate, stage tune")
    command: tuple[str, ...]    # after `python -m pileablate`
    about: tuple[str, ...]      # the script's opening comment
    tasks: Optional[int] = None


def sbatch_script(job: Job, *, time: str, request: SlurmRequest, log_dir: Path, workdir: Path) -> str:
    command = [python_command(request), "-m", "pileablate", *map(shlex.quote, job.command)]
    if job.tasks:
        command.append('--task "${SLURM_ARRAY_TASK_ID}/' + str(job.tasks) + '"')
        array = [f"#SBATCH --array=1-{job.tasks}", f"#SBATCH --output={log_dir}/task-%a_job-%A.out"]
        which = f"task ${{SLURM_ARRAY_TASK_ID}} of {job.tasks} (job ${{SLURM_ARRAY_JOB_ID}})"
    else:
        array, which = [f"#SBATCH --output={log_dir}/job-%j.out"], "job ${SLURM_JOB_ID}"
    return "\n".join([
        "#!/bin/bash",
        *(f"# {line}" for line in job.about),
        f"#SBATCH --job-name={job.name}",
        f"#SBATCH --time={time}",
        *request.directives(),
        # Early enough for the run to reach a step boundary and checkpoint (Slurm's own kill wait is ~30 s).
        f"#SBATCH --signal=B:USR1@{SIGNAL_LEAD_S}",
        "#SBATCH --kill-on-invalid-dep=yes",
        *array,
        "set -euo pipefail",
        f"cd {shlex.quote(str(workdir))}",
        *([request.setup] if request.setup else []),
        f'export OMP_NUM_THREADS="${{SLURM_CPUS_PER_TASK:-{request.cpus}}}"',
        'export MKL_NUM_THREADS="$OMP_NUM_THREADS"',
        f'echo "{job.label}: {which} on $(hostname), $OMP_NUM_THREADS CPU threads"',
        # In the background, so that the shell can forward the time-out's signal as SIGTERM: the run checkpoints.
        " ".join(command) + " &",
        "run=$!",
        "trap 'kill -TERM \"$run\" 2>/dev/null || true' USR1 TERM",
        'status=0; wait "$run" || status=$?',
        'while kill -0 "$run" 2>/dev/null; do status=0; wait "$run" || status=$?; done',
        'exit "$status"',
        "",
    ])


def submit_script(stages: Sequence[str], about: Sequence[str], last: Sequence[str]) -> str:
    """submit.sh: each stage's array (the tasks `pending` names) after the previous stage, then `last`
    (lines run with $after, the jobs the last stage's tasks are in)."""
    python = shlex.quote(sys.executable)
    lines = ["#!/bin/bash", *(f"# {line}" for line in about), "set -euo pipefail", 'cd "$(dirname "$0")"', 'after=""']
    for stage in stages:
        lines += [
            # The stage's tasks still queued or running (squeue) are not submitted again; the next stage
            # waits for them as for the ones submitted now.
            f"queued=$({python} -m pileablate.ablate.slurm queued tasks.json {stage})",
            f"pending=$({python} -m pileablate.ablate.slurm pending tasks.json {stage})",
            'if [ -n "$pending" ]; then',
            f'  job=$(sbatch --parsable --array="$pending" ${{after:+"--dependency=afterok:$after"}} ${{1+"$@"}} '
            f"{stage}.sbatch)",
            '  job="${job%%;*}"',
            f"  {python} -m pileablate.ablate.slurm record tasks.json {stage} \"$job\"",
            f'  echo "submitted {stage}.sbatch (tasks $pending): job $job"',
            '  after="$job${queued:+:$queued}"',
            "else",
            f'  echo "{stage}: every task has finished or is queued; nothing to submit"',
            '  after="$queued"',
            "fi",
        ]
    return "\n".join(lines + list(last) + [""])


RESUBMIT = ("every sbatch (bash submit.sh --partition=debug). Run it again after a failure, a cancel or a time-out:",
            "it submits only the tasks with work left that are neither queued nor running (squeue, jobs.txt).")


def run_folder(planned) -> str:
    return f"{planned.point}/{planned.name}" if getattr(planned, "point", None) else planned.name


def task_runs(plan: Sequence, tasks: int) -> list[list[str]]:
    """Each task's run folders (relative to RUNS): every N-th run from the K-th, as `--task K/N` takes them."""
    return [[run_folder(p) for i, p in enumerate(plan) if i % tasks == k] for k in range(tasks)]


def write_scripts(study, args: Sequence[str], tasks: Optional[int], request: SlurmRequest) -> list[Path]:
    """The array script of each stage, tasks.json and submit.sh, into RUNS/slurm/. Returns the scripts' paths."""
    runs_dir = Path(study.base.runs_dir).resolve()
    out = runs_dir / "slurm"
    out.mkdir(parents=True, exist_ok=True)
    args = absolute_args(args, Path(study.base.data), runs_dir)
    stages = [("tune", study.tuning_plan())] if study.tuning else []
    stages.append(("train", study.report_plan()))
    scripts, listing = [], {}
    for stage, plan in stages:
        n = min(tasks or len(plan), len(plan))
        time, why = task_time(study.base.time_limit, math.ceil(len(plan) / n), request.time)
        log_dir = out / "logs" / stage
        log_dir.mkdir(parents=True, exist_ok=True)  # sbatch does not make it: a task would fail to start
        path = out / f"{stage}.sbatch"
        job = Job(f"pileablate-{stage}", f"pileablate ablate, stage {stage}", ("ablate", *args, "--stage", stage),
                  (f"pileablate ablate, stage '{stage}': {len(plan)} runs in {n} array tasks.", f"Time limit: {why}.",
                   *_resources_comment(request)), tasks=n)
        path.write_text(sbatch_script(job, time=time, request=request, log_dir=log_dir, workdir=Path.cwd()))
        scripts.append(path)
        listing[stage] = task_runs(plan, n)
    (out / "tasks.json").write_text(json.dumps({"runs_dir": str(runs_dir), "stages": listing}, indent=1) + "\n")
    submit = out / "submit.sh"
    about = ("Submits the ablation's job arrays, each stage after the previous one succeeded. Its arguments go to",
             *RESUBMIT, "Stopped runs resume from their checkpoints.")
    last = [f'echo "when it has finished: pileablate report {shlex.quote(str(runs_dir))}"']
    submit.write_text(submit_script([stage for stage, _ in stages], about, last))
    os.chmod(submit, 0o755)
    return scripts + [submit]


def pending_tasks(listing: dict, stage: str, queued: Sequence[int] = ()) -> list[int]:
    """1-based ids of the stage's tasks with a run that is new or unfinished (failed runs stay as they are),
    leaving out the tasks still in the scheduler's queue (`queued`) and a task with a run that a process
    holds: that task is running (it trains its runs one after another), and a second copy of it would
    only find its runs taken."""
    from pileablate.ablate.runner import run_state

    runs_dir = Path(listing["runs_dir"])
    pending = []
    for k, runs in enumerate(listing["stages"][stage], start=1):
        actions = {run_state(runs_dir / name).action for name in runs}
        if k not in queued and "held" not in actions and actions & {"train", "resume"}:
            pending.append(k)
    return pending


def record_job(tasks_json: Path, stage: str, job: str) -> None:
    """submit.sh notes each array it submitted (RUNS/slurm/jobs.txt), to ask the scheduler about it later."""
    with open(Path(tasks_json).parent / JOBS_FILE, "a", encoding="utf-8") as jobs:
        jobs.write(f"{stage} {job}\n")


def queued_tasks(tasks_json: Path, stage: str) -> dict[int, str]:
    """{task id: "JOB_TASK"} of the stage's tasks that `squeue` lists (pending, running, completing) among
    the arrays submit.sh submitted; empty where squeue is missing or fails (then the locks alone keep a
    running task from being trained twice)."""
    path = Path(tasks_json).parent / JOBS_FILE
    jobs = {line.split()[1] for line in (path.read_text().splitlines() if path.is_file() else [])
            if line.split()[:1] == [stage]}
    if not jobs or shutil.which("squeue") is None:
        return {}
    try:
        done = subprocess.run(["squeue", "-h", "-r", "-o", "%F %K"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    listed = [line.split() for line in done.stdout.splitlines()] if done.returncode == 0 else []
    return {int(task): f"{job}_{task}" for job, task, *_ in (row for row in listed if len(row) >= 2)
            if job in jobs and task.isdigit()}


def array_spec(ids: Sequence[int]) -> str:
    """Slurm's --array list, runs of ids as ranges: [1, 2, 3, 5] -> '1-3,5'."""
    parts, start = [], None
    for i, k in enumerate(ids):
        start = k if start is None else start
        if i + 1 == len(ids) or ids[i + 1] != k + 1:
            parts.append(str(k) if start == k else f"{start}-{k}")
            start = None
    return ",".join(parts)


def use_task_cpus() -> Optional[int]:
    """Inside an array task: torch computes on the CPUs Slurm gave the task (without CPU binding it would
    take every core of the node). Returns that count, None outside Slurm."""
    value = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if not value.isdigit() or int(value) < 1:
        return None
    import torch

    torch.set_num_threads(int(value))
    return int(value)


def fit_warnings(request: SlurmRequest) -> list[str]:
    """Requests no node can ever satisfy, as far as `sinfo` (when present) tells: such tasks pend forever."""
    if shutil.which("sinfo") is None:
        return []
    command = ["sinfo", "-N", "-h", "-o", "%c|%G"] + (["-p", request.partition] if request.partition else [])
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    nodes = [line.split("|", 1) for line in done.stdout.splitlines() if "|" in line]
    where = f"partition {request.partition}" if request.partition else "the cluster"
    if done.returncode != 0 or not nodes:
        return [f"sinfo lists no node in {where}: check --slurm-partition"] if done.returncode == 0 else []
    most_cpus = max(int(re.match(r"\d+", c).group()) if re.match(r"\d+", c) else 0 for c, _ in nodes)
    most_gpus = max(sum(int(n) for n in re.findall(r"gpu(?::[^:(,]+)?:(\d+)", gres)) for _, gres in nodes)
    warnings = []
    if request.cpus > most_cpus:
        warnings.append(f"no node of {where} has {request.cpus} CPUs (the most is {most_cpus}): the tasks would "
                        f"pend forever; pass --cpus-per-run {most_cpus} or fewer")
    if request.gpus > most_gpus:
        warnings.append(f"no node of {where} has {request.gpus} GPU(s) (the most is {most_gpus}): the tasks would "
                        "pend forever; pass --device cpu for CPU runs, or --slurm-partition with GPU nodes")
    return warnings


def main(argv: Sequence[str]) -> int:
    """What submit.sh asks, `python -m pileablate.ablate.slurm COMMAND TASKS_JSON STAGE [JOB]`:
    `pending` the tasks to submit (an --array list), `queued` the stage's tasks still in the queue
    (JOB_TASK:JOB_TASK..., for the next stage's dependency), `record JOB` notes a submitted array."""
    arity = {"pending": 3, "queued": 3, "record": 4}
    if not argv or arity.get(argv[0]) != len(argv):
        print("usage: python -m pileablate.ablate.slurm pending|queued RUNS/slurm/tasks.json STAGE\n"
              "       python -m pileablate.ablate.slurm record RUNS/slurm/tasks.json STAGE JOB", file=sys.stderr)
        return 2
    command, tasks_json, stage = argv[:3]
    if command == "record":
        record_job(Path(tasks_json), stage, argv[3])
        return 0
    queued = queued_tasks(Path(tasks_json), stage)
    if command == "queued":
        print(":".join(queued[k] for k in sorted(queued)))
        return 0
    listing = json.loads(Path(tasks_json).read_text())
    if "out" in listing:  # prepare's array (pileablate.data.slurm_array): parts, not runs
        from pileablate.data.slurm_array import pending_tasks as pending_parts

        print(array_spec(pending_parts(listing, queued=list(queued))))
    else:
        print(array_spec(pending_tasks(listing, stage, queued=list(queued))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

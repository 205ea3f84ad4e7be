"""`prepare --emit slurm`: a job array of `prepare --task K/N` into one --out, then `prepare --verify`.

Writes OUT/slurm/prepare.sbatch (N tasks, each `pileablate prepare <the same options> --task K/N`; the
last task to finish writes manifest.json), verify.sbatch (one job, after every task succeeded:
`pileablate prepare --verify OUT`), tasks.json and submit.sh, with the scheduler's options of `ablate
--emit slurm` (`SlurmOptions`) and its scripts (`pileablate.ablate.slurm`). Run again, submit.sh
submits only the tasks whose part is not done and that are neither queued nor running (squeue).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Sequence

from pileablate.data.config import PrepareConfig

STAGE = "prepare"
DEFAULT_TIME = "24:00:00"


def default_tasks(sources) -> int:
    """One task per train source (the Pile: 30), or one."""
    return max(1, sum(1 for s in sources if s.role != "val"))


def write_scripts(cfg: PrepareConfig, args: Sequence[str], tasks: Optional[int], slurm) -> list[Path]:
    """The scripts into OUT/slurm/; returns their paths, submit.sh last. The sources are checked first."""
    from pileablate.ablate.slurm import Job, RESUBMIT, make_request, sbatch_script, submit_script
    from pileablate.data.sources import resolve_sources

    sources = resolve_sources(cfg.sources)  # a typo fails here, before anything is written
    n = tasks or default_tasks(sources)
    request = make_request("cpu", None, cfg.workers, slurm)
    out = cfg.out.resolve()
    folder = out / "slurm"
    time = request.time or DEFAULT_TIME
    why = "given with --slurm-time" if request.time else f"{DEFAULT_TIME} unless --slurm-time"
    jobs = {
        "prepare": Job("pileablate-prepare", "pileablate prepare", ("prepare", *args), (
            f"pileablate prepare: {len(sources)} source(s) into {out} in {n} array tasks.",
            "The last task to finish writes manifest.json. Each task tokenizes on --workers processes (default:",
            f"the task's CPUs). Time limit: {why}."),
            tasks=n),
        "verify": Job("pileablate-verify", "pileablate prepare --verify", ("prepare", "--verify", str(out)), (
            f"pileablate prepare --verify {out}: every part against the manifest, once all tasks succeeded.",)),
    }
    paths = []
    for name, job in jobs.items():
        log_dir = folder / "logs" / name
        log_dir.mkdir(parents=True, exist_ok=True)  # sbatch does not make it: a task would fail to start
        paths.append(folder / f"{name}.sbatch")
        paths[-1].write_text(sbatch_script(job, time=time, request=request, log_dir=log_dir, workdir=Path.cwd()))
    (folder / "tasks.json").write_text(json.dumps({"out": str(out), "stages": {STAGE: n}}, indent=1) + "\n")
    submit = folder / "submit.sh"
    last = ['verify=$(sbatch --parsable ${after:+"--dependency=afterok:$after"} ${1+"$@"} verify.sbatch)',
            'echo "submitted verify.sbatch: job ${verify%%;*} (its log: logs/verify/job-${verify%%;*}.out)"']
    submit.write_text(submit_script([STAGE], ("Submits the prepare job array, then its verification. Its arguments go to",
                                              *RESUBMIT), last))
    os.chmod(submit, 0o755)
    return paths + [submit]


def pending_tasks(listing: dict, queued: Sequence[int] = ()) -> list[int]:
    """1-based ids of the tasks whose part is not done (its state says so), leaving out queued ones."""
    from pileablate.data.prepare import state_path
    from pileablate.jsonfile import read_json

    out, n = Path(listing["out"]), int(listing["stages"][STAGE])
    pending = []
    for k in range(1, n + 1):
        path = state_path(out, k, n)
        done = path.is_file() and read_json(path).get("done")
        if k not in queued and not done:
            pending.append(k)
    return pending

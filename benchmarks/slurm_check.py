"""`ablate --emit slurm` and `prepare --emit slurm` against a real Slurm scheduler: a one-node cluster on localhost.

    python benchmarks/slurm_check.py          # needs slurmctld, slurmd and munged (Debian: apt-get install slurm-wlm)

Installs nothing. In a temporary folder it starts munged and a one-node cluster (2 CPUs) with a
configuration of its own, emits a CPU grid with lr tuning (two stages, one CPU per task), submits it,
cancels one tuning task mid-run (`scancel`) and checks that the training stage was dropped rather than
left pending, runs submit.sh again (which must resubmit only that task, then the training stage) and at
once a third time (it must submit nothing: those tasks are queued or running), checks that
every run was trained by one task at a time (its metrics' steps strictly increase)
and compares every run's final losses with the same grid run locally on one thread: they must be identical.
Then `prepare --emit slurm` of two shards: its two tasks and the verification job after them must complete
and hold the documents of the same store made by one process here.
Stops everything it started, even on failure. Exit 0 when every check holds, 1 otherwise, 2 without Slurm.
Must be run as root (the daemons run as the invoking user, which Slurm requires to be root here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd", "munged")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")
GRID = ["--mods", "rope", "--tune-lr", "3e-3", "--preset", "nano", "--max-tokens", "48000", "--eval-tokens", "1024",
        "--eval-every", "40", "--log-every", "5", "--device", "cpu"]
CANCELLED_RUN = "tune-rope-lr0.003-s1000"   # task 2 of the tuning array
DEADLINE_S = 230   # the whole check, start-up to clean-up; every wait ends by then
_deadline = time.monotonic() + DEADLINE_S


def missing_tools() -> list[str]:
    return [tool for tool in DAEMONS + CLIENTS + ("mungekey",) if shutil.which(tool) is None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_conf(root: Path) -> str:
    user = os.environ.get("USER") or "root"
    return "\n".join([
        "ClusterName=pileablate-check", "SlurmctldHost=localhost", f"SlurmctldPort={free_port()}",
        f"SlurmdPort={free_port()}", "AuthType=auth/munge", "CredType=cred/munge",
        f"AuthInfo=socket={root}/munge.socket", f"SlurmUser={user}", f"SlurmdUser={user}",
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/slurmctld.log", f"SlurmdLogFile={root}/slurmd.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU", "SchedulerType=sched/builtin", "ReturnToService=2", "MpiDefault=none",
        "KillWait=10", "MinJobAge=600", "SlurmdParameters=config_overrides", "MailProg=/bin/true",
        "NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000 State=UNKNOWN",
        "PartitionName=check Nodes=localhost Default=YES MaxTime=INFINITE State=UP", "",
    ])


class Cluster:
    """munged, slurmctld and slurmd in the foreground as child processes; stop() ends exactly those."""

    def __init__(self, root: Path):
        self.root, self.processes = root, []
        self.env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}

    def start(self) -> None:
        root = self.root
        for folder in ("state", "spool"):
            (root / folder).mkdir()
        subprocess.run(["mungekey", "--create", f"--keyfile={root}/munge.key"], check=True, capture_output=True)
        (root / "slurm.conf").write_text(slurm_conf(root))
        self._spawn(["munged", "--foreground", "--force", f"--socket={root}/munge.socket",
                     f"--key-file={root}/munge.key", f"--pid-file={root}/munged.pid",
                     f"--log-file={root}/munged.log", f"--seed-file={root}/munged.seed"])
        wait_for(lambda: (root / "munge.socket").exists(), 20, "munged's socket")
        self._spawn(["slurmctld", "-D", "-i", "-f", str(root / "slurm.conf")])
        self._spawn(["slurmd", "-D", "-N", "localhost", "-f", str(root / "slurm.conf")])
        wait_for(lambda: self.out(["sinfo", "-h", "-o", "%T"]).strip() in ("idle", "mixed", "allocated"), 60,
                 "the node to come up (see slurmctld.log, slurmd.log)")

    def _spawn(self, command: list[str]) -> None:
        log = open(self.root / f"{command[0]}.stdout", "w")
        self.processes.append(subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def out(self, command: list[str], **kwargs) -> str:
        return subprocess.run(command, env=self.env, capture_output=True, text=True, **kwargs).stdout

    def stop(self) -> None:
        if self.processes:
            subprocess.run(["scancel", "--quiet", "--user", os.environ.get("USER") or "root"], env=self.env,
                           capture_output=True, timeout=20)
            deadline = time.monotonic() + 20  # the tasks' processes end before slurmd does
            while not self.idle() and time.monotonic() < deadline:
                time.sleep(0.5)
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def idle(self) -> bool:
        return not self.out(["squeue", "-h", "-o", "%i"], timeout=20).strip()

    def job_states(self, job: str) -> list[str]:
        return re.findall(r"JobState=(\S+)", self.out(["scontrol", "-o", "show", "job", job]))


def wait_for(predicate, seconds: float, what: str) -> None:
    deadline = min(time.monotonic() + seconds, _deadline)
    while not predicate():
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {seconds:g}s waiting for {what}")
        time.sleep(0.2)


class CheckFailed(Exception):
    pass


class LocalGrid:
    """The same grid on this machine, one thread per run, in the background: the reference losses."""

    def __init__(self, store: Path, runs: Path):
        self.store, self.runs, self.process, self.error = store, runs, None, None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.stopped = False

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        one_thread = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        for stage in ("tune", "train"):  # as tasks: the same runs, without the report's plots
            command = [sys.executable, "-m", "pileablate", "ablate", "--data", str(self.store), "--runs-dir",
                       str(self.runs), *GRID, "--stage", stage, "--task", "1/1"]
            if self.stopped:
                return
            self.process = subprocess.Popen(command, env=one_thread, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE, text=True)
            _, err = self.process.communicate()
            if self.process.returncode != 0:
                self.error = f"the local grid's {stage} stage exited {self.process.returncode}: {err[-2000:]}"
                return

    def join(self) -> None:
        self.thread.join(max(0.0, _deadline - time.monotonic()))
        if self.thread.is_alive():
            raise CheckFailed(f"timed out after {DEADLINE_S}s waiting for the local grid")
        if self.error:
            raise CheckFailed(self.error)

    def stop(self) -> None:
        self.stopped = True
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def pileablate(*args: str, env=None, cwd=None) -> str:
    command = [sys.executable, "-m", "pileablate", *args]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise CheckFailed(f"{' '.join(args[:2])} exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout + done.stderr


def make_store(path: Path) -> None:
    from pileablate.data.config import PrepareConfig
    from pileablate.data.prepare import prepare

    prepare(PrepareConfig(sources=["sample"], out=path, tokenizer="bytes", tokens=60_000, val_tokens=8_000,
                          val_rows=None, workers=1))


def final_losses(runs: Path) -> dict[str, tuple]:
    out = {}
    for summary in sorted(runs.glob("*/summary.json")):
        data = json.loads(summary.read_text())
        out[summary.parent.name] = (data.get("status"), data.get("steps"), data.get("final_train_loss"),
                                    data.get("final_val_loss"))
    return out


def submit(cluster: Cluster, runs: Path) -> dict[str, tuple[str, str]]:
    """Runs submit.sh; returns {stage: (job id, task list)} of what it submitted."""
    text = subprocess.run(["bash", str(runs / "slurm" / "submit.sh")], env=cluster.env, capture_output=True,
                          text=True, check=True).stdout
    return {m[0]: (m[2], m[1]) for m in re.findall(r"submitted (\w+)\.sbatch \(tasks ([\d,-]+)\): job (\d+)", text)}


def cancel_mid_run(cluster: Cluster, runs: Path, jobs: dict) -> str:
    """scancel the tuning task of CANCELLED_RUN once it has started training, before it finishes."""
    run = runs / CANCELLED_RUN
    wait_for(lambda: (run / "metrics.jsonl").exists(), DEADLINE_S, f"{CANCELLED_RUN} to start")
    subprocess.run(["scancel", f"{jobs['tune'][0]}_2"], env=cluster.env, check=True)
    wait_for(cluster.idle, DEADLINE_S, "the queue to empty after the cancel")
    status = (json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}).get("status")
    if status != "stopped":
        raise CheckFailed(f"{CANCELLED_RUN} is {status!r} after the cancel, not 'stopped' (checkpointed)"
                          + (": it finished before the cancel reached it" if status == "finished" else ""))
    return status
    train_states = cluster.job_states(jobs["train"][0])
    if any(state == "PENDING" for state in train_states) or not train_states:
        raise CheckFailed(f"the training array did not end after the cancelled tuning task: {train_states}")


def trained_twice(runs: Path) -> dict[str, list[int]]:
    """Runs whose metrics repeat or reorder a step (what two tasks training one run at once leave)."""
    problems = {}
    for metrics in runs.glob("*/metrics.jsonl"):
        steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines() if line.strip()]
        if not steps or any(b <= a for a, b in zip(steps, steps[1:])):
            problems[metrics.parent.name] = steps
    return problems


def documents(store: Path) -> dict[str, list[bytes]]:
    """Each split's documents (their tokens), in a fixed order: what two stores must hold alike."""
    from pileablate.data.store import TokenSplit

    splits = {}
    for split in ("train", "val"):
        tokens = TokenSplit(store / split)
        splits[split] = sorted(tokens.document(i).tobytes() for i in range(tokens.num_documents))
    return splits


def check_prepare(work: Path, cluster: Cluster) -> list[str]:
    """`prepare --emit slurm` on the cluster (2 tasks, then the verification) gives the store of one process:
    the same documents in each split, from two shards of standard-library source."""
    from pileablate.data.config import PrepareConfig
    from pileablate.data.prepare import prepare
    from pileablate.data.sources import sample_files

    shards, out, reference = work / "shards", work / "prepared", work / "prepared-here"
    shards.mkdir()
    files = sample_files()[:200]
    for i in range(2):
        (shards / f"{i:02d}.jsonl").write_text("".join(json.dumps({"text": p.read_text(errors="replace")}) + "\n"
                                                       for p in files[i::2]))
    prepare(PrepareConfig(sources=[str(shards)], out=reference, tokenizer="bytes", workers=1))
    pileablate("prepare", "--source", str(shards), "--tokenizer", "bytes", "--out", str(out), "--emit", "slurm",
               "--workers", "1", cwd=work)  # one task per shard
    text = subprocess.run(["bash", str(out / "slurm" / "submit.sh")], env=cluster.env, capture_output=True,
                          text=True, check=True).stdout
    verify = re.search(r"submitted verify\.sbatch: job (\d+)", text)
    if "submitted prepare.sbatch (tasks 1-2)" not in text or not verify:
        raise CheckFailed(f"prepare's submit.sh submitted: {text}")
    wait_for(cluster.idle, DEADLINE_S, "prepare's array and its verification to finish")
    states = cluster.job_states(verify.group(1))
    log = out / "slurm" / "logs" / "verify" / f"job-{verify.group(1)}.out"
    if states != ["COMPLETED"] or "parts match manifest.json" not in log.read_text():
        raise CheckFailed(f"the verification job ended {states}: {log.read_text()[-1000:]}")
    ours, theirs = documents(out), documents(reference)
    if ours != theirs:
        raise CheckFailed(f"the array's store holds other documents than one process's: "
                          f"{ {k: len(v) for k, v in ours.items()} } vs { {k: len(v) for k, v in theirs.items()} }")
    return [f"prepare --emit slurm: 2 tasks, then --verify (completed), hold the documents of one process's store "
            f"({len(ours['train'])} train, {len(ours['val'])} val)"]


def too_big_warning(cluster: Cluster) -> str:
    """What `--emit slurm --cpus-per-run 4` warns here, asked of this cluster's sinfo (in process: no torch start)."""
    from pileablate.ablate.slurm import fit_warnings, make_request

    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = cluster.env["SLURM_CONF"]
    try:
        return " ".join(fit_warnings(make_request("cpu", None, 4)))
    finally:
        os.environ.pop("SLURM_CONF") if before is None else os.environ.update(SLURM_CONF=before)


def check(work: Path) -> list[str]:
    """Runs the whole check in `work`; returns what it verified, raises CheckFailed on the first failure."""
    store, local, remote, start = work / "store", work / "local", work / "cluster", time.monotonic()
    make_store(store)
    pileablate("ablate", "--data", str(store), "--runs-dir", str(remote), *GRID, "--emit", "slurm",
               "--cpus-per-run", "1", cwd=work)
    cluster, reference = Cluster(work / "slurm"), LocalGrid(store, local)
    (work / "slurm").mkdir()
    done = []
    try:
        reference.start()  # meanwhile: it needs none of the cluster
        cluster.start()
        warned = too_big_warning(cluster)
        if "no node of the cluster has 4 CPUs (the most is 2)" not in warned:
            raise CheckFailed(f"a request of 4 CPUs per task on a 2-CPU node gave no warning: {warned}")
        done.append("a request of 4 CPUs per task is warned about (sinfo: 2 per node)")
        first = submit(cluster, remote)
        if set(first) != {"tune", "train"}:
            raise CheckFailed(f"submit.sh submitted {first}, expected both stages")
        status = cancel_mid_run(cluster, remote, first)
        done.append(f"cancelled tuning task 2 mid-run (its run {status}); training array ended "
                    f"({cluster.job_states(first['train'][0])[0]}), not left pending")
        second = submit(cluster, remote)
        if second.get("tune", ("", ""))[1] != "2" or "train" not in second:
            raise CheckFailed(f"the second submit.sh submitted {second}; expected tuning task 2, then training")
        done.append(f"re-submitted: {', '.join(f'{s} tasks {t}' for s, (_, t) in second.items())}")
        third = submit(cluster, remote)  # at once: what the second one submitted is queued or running
        queued = cluster.out(["squeue", "-h", "-r", "-o", "%F_%K %T"]).split("\n")
        if third:
            raise CheckFailed(f"submit.sh run again while the arrays ran submitted {third}; expected nothing")
        done.append(f"submit.sh run again while they ran ({', '.join(q for q in queued if q)}): submitted nothing")
        wait_for(cluster.idle, DEADLINE_S, "the resubmitted arrays to finish")
        done.append(f"cluster finished at {time.monotonic() - start:.0f} s")
        done += check_prepare(work, cluster)
        reference.join()
        done.append(f"local grid: {len(final_losses(local))} runs, finished at {time.monotonic() - start:.0f} s")
    finally:
        cluster.stop()
        reference.stop()
    twice = trained_twice(remote)
    if twice:
        raise CheckFailed(f"runs trained more than once: {twice}")
    done.append("every run trained by one task at a time: its metrics' steps strictly increase")
    ours, theirs = final_losses(local), final_losses(remote)
    if ours != theirs:
        raise CheckFailed(f"final losses differ:\n local   {ours}\n cluster {theirs}")
    threads = {json.loads(p.read_text())["hardware"].get("threads") for p in remote.glob("*/config.json")}
    if threads != {1}:
        raise CheckFailed(f"the cluster's runs recorded threads {threads}, expected 1 (--cpus-per-run 1)")
    return done + [f"all {len(theirs)} runs finished with final losses identical to the local grid, on 1 thread"]


def _terminated(signum, frame):
    raise CheckFailed(f"terminated by signal {signum}")


def main() -> int:
    signal.signal(signal.SIGTERM, _terminated)  # a caller's time-out still stops the cluster (finally)
    missing = missing_tools()
    if missing:
        print(f"skipped: {', '.join(missing)} not installed (Debian: apt-get install slurm-wlm munge)")
        return 2
    if os.geteuid() != 0:
        print("skipped: run it as root (the one-node cluster's daemons and jobs run as the invoking user)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="pileablate-slurm-check-"))
    start = time.monotonic()
    try:
        for line in check(work):
            print(f"ok: {line}")
    except (CheckFailed, subprocess.CalledProcessError) as err:
        print(f"FAILED: {err}\nlogs kept in {work}/slurm and {work}/cluster/slurm/logs")
        return 1
    print(f"slurm check passed in {time.monotonic() - start:.0f} s")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Check and measure pileablate on a CUDA machine with one command, in about 5 minutes.

    python benchmarks/gpu_check.py [--steps 20] [--warmup 5] [--budget 300]
    python -m pileablate.tools.gpu_check ...   (the same)

1. The GPU tests: `pytest -k "gpu or cuda" tests` (tests/test_model_gpu.py and every test with gpu in
   its name or parameters: bf16/fp16 training, the fp16 loss scaler and its checkpoint, the step
   clock, prefetching from pinned buffers, a compiled run). Then the pre-training guards of the medium
   preset with GPT-2's vocabulary, timed on the GPU (target: about a second; fails above GUARD_SECONDS).
2. A token store made on the spot: random tokens over GPT-2's vocabulary (50257), written with the
   project's own store writer. Throughput does not depend on what the tokens say, and the model is
   then exactly GPT-2 124M (embedding padded to 50304), so its MFU compares with nanoGPT's.
3. `pileablate train --preset small` (GPT-2 124M, batch 16 x 1024 tokens) for --steps steps, precision
   auto (bf16 on GPUs that compute it natively, else fp16 with loss scaling), eager and --compile,
   for the baseline, `all` and `moe`. From each run's metrics.jsonl and summary.json: tokens/s and
   MFU over the steps after --warmup (the step clock waits for the GPU, so these are device time),
   peak memory, and the first step's time beyond a steady step's: the compile time for --compile runs.
4. With two or more GPUs, the baseline again under `torchrun --nproc_per_node=2` (DDP over NCCL).

Prints one table and exits 1 if anything failed (a test, a run, or the time budget ran out), else 0.
Without CUDA it says so in one line and exits 0. The target is at least nanoGPT's MFU for the same
model and GPU (about 40% on an A100 for GPT-2 124M with bf16 and torch.compile).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[2]  # the repository checkout (its tests/ are run)
GPT2_VOCAB = 50257
BYTES_PER_TOKEN = 4  # GPT-2's average on English text: keeps bits/byte of the synthetic val split plausible
GUARD_SECONDS = 5.0  # "a second or so", with room for the first CUDA calls (context, cuBLAS handles)


@dataclass
class Check:
    """One line of the table."""

    name: str
    ok: bool = False
    note: str = ""
    precision: str = ""
    tokens_per_s: Optional[float] = None
    mfu: Optional[float] = None
    peak_mem_gib: Optional[float] = None
    compile_s: Optional[float] = None
    wall_s: Optional[float] = None
    log: list = field(default_factory=list)  # the last lines of a failed command's output


def make_token_store(out: Path, vocab_size: int = GPT2_VOCAB, train_tokens: int = 2_000_000,
                     val_tokens: int = 65_536, doc_tokens: int = 2048, seed: int = 0) -> Path:
    """A token store of random documents (ending with end-of-text = vocab_size - 1), as prepare writes one."""
    from pileablate import __version__
    from pileablate.data.manifest import MANIFEST, build_manifest
    from pileablate.data.store import PartWriter, dtype_for_vocab
    from pileablate.jsonfile import write_json_atomic

    rng = np.random.default_rng(seed)
    dtype, eot = dtype_for_vocab(vocab_size), vocab_size - 1
    splits = {}
    for split, tokens in (("train", train_tokens), ("val", val_tokens)):
        writer = PartWriter(out / split / "part-00000.arrow", dtype)
        for start in range(0, tokens, doc_tokens):
            doc = rng.integers(0, eot, size=min(doc_tokens, tokens - start))
            doc[-1] = eot
            writer.add(doc)
        part = writer.commit()
        splits[split] = {"parts": [dict(part, file=f"{split}/{part['file']}")], "bytes": tokens * BYTES_PER_TOKEN}
    tokenizer = {"spec": "synthetic", "name": f"random-{vocab_size}", "sha256": "0" * 64, "n_vocab": vocab_size,
                 "eot_id": eot}
    write_json_atomic(out / MANIFEST, build_manifest(
        version=__version__, sources=["synthetic random tokens"], tokenizer=tokenizer, dtype=dtype, splits=splits,
        skipped={}, val_policy="synthetic"))
    return out


def _env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _run(cmd: list[str], deadline: float) -> tuple[int, str, float]:
    """(exit code, stdout and stderr, seconds); exit code -1 when the time budget ran out."""
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                              timeout=max(1.0, deadline - started))
        return done.returncode, done.stdout + done.stderr, time.monotonic() - started
    except subprocess.TimeoutExpired as err:
        output = (err.stdout or b"").decode(errors="replace") + (err.stderr or b"").decode(errors="replace")
        return -1, output + "\n(time budget ran out)", time.monotonic() - started


def run_gpu_tests(deadline: float) -> Check:
    check = Check("GPU tests (pytest -k 'gpu or cuda')")
    rc, output, check.wall_s = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k",
                                     "gpu or cuda", "tests"], deadline)
    lines = [line for line in output.splitlines() if line.strip()]
    check.ok = rc == 0
    check.note = lines[-1].strip("= ") if lines else f"exit {rc}"
    if not check.ok:
        check.log = lines[-30:]
    return check


def time_guards(preset: str, device: str, vocab_size: int = GPT2_VOCAB, limit_s: float = GUARD_SECONDS) -> Check:
    """The causality and initial-loss guards as the trainer runs them (on a probe slice of a batch), timed."""
    import torch

    from pileablate.errors import UserError
    from pileablate.model.build import build_model_config
    from pileablate.model.gpt import GPT
    from pileablate.model.guards import check_causality, check_initial_loss, probe_slice

    check = Check(f"guards, {preset} preset, vocabulary {vocab_size}")
    torch.manual_seed(0)
    model = GPT(build_model_config(preset, "", vocab_size)).to(device)
    batch = torch.randint(0, vocab_size - 1, (16, model.config.seq_len + 1))
    started = time.monotonic()
    try:
        check_causality(model)
        check_initial_loss(model, *probe_slice(batch[:, :-1], batch[:, 1:]))
        check.ok = True
    except UserError as err:
        check.note = str(err)
    check.wall_s = time.monotonic() - started
    if check.ok and check.wall_s > limit_s:
        check.ok, check.note = False, f"took {check.wall_s:.1f}s, more than {limit_s:g}s"
    elif check.ok:
        check.note = f"{check.wall_s:.2f}s"
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return check


# Score and mask hooks run on FlexAttention on a GPU: ALiBi and a sliding window from the examples.
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HOOKED = ["--mods-file", str(EXAMPLES / "alibi.py"), "--mods-file", str(EXAMPLES / "sliding_window.py"),
          "--mod-option", "window.size=256"]


def train_command(data: Path, runs: Path, name: str, preset: str, mods: str, steps: int, compile: bool,
                  processes: int = 1, device: str = "cuda", extra: tuple = ()) -> list[str]:
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    cmd = launcher + ["-m", "pileablate", "train", "--data", str(data), "--runs-dir", str(runs), "--name", name,
                      "--preset", preset, "--max-steps", str(steps), "--log-every", "1", "--eval-every", "1000000",
                      "--eval-tokens", "16384", "--checkpoint-every", "1000000", "--device", device,
                      "--precision", "auto"]
    return cmd + (["--mods", mods] if mods else []) + (["--compile"] if compile else []) + list(extra)


def measure_run(run_dir: Path, steps: int, warmup: int, check: Check) -> None:
    """Fill `check` from a finished run's files; `check.ok` only if the run did every step."""
    summary = json.loads((run_dir / "summary.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    by_step = {row["step"]: row for row in rows}
    if summary["status"] != "finished" or summary["steps"] != steps or not {1, warmup, steps} <= by_step.keys():
        check.note = f"status {summary['status']} after {summary['steps']} of {steps} steps"
        return
    first, start, last = by_step[1], by_step[warmup], by_step[steps]
    check.precision = config["hardware"]["precision"]
    check.tokens_per_s = (last["tokens"] - start["tokens"]) / (last["elapsed_s"] - start["elapsed_s"])
    if last.get("mfu"):  # the row's MFU is proportional to the row's tokens/s
        check.mfu = last["mfu"] * check.tokens_per_s / last["tokens_per_s"]
    if summary.get("peak_mem_bytes"):
        check.peak_mem_gib = summary["peak_mem_bytes"] / 2**30
    check.compile_s = first["elapsed_s"] - config["tokens_per_step"] / check.tokens_per_s
    check.ok = True


def run_training(data: Path, runs: Path, label: str, mods: str, compile: bool, args, deadline: float,
                 processes: int = 1, extra: tuple = ()) -> Check:
    name = f"{label}{'-compile' if compile else ''}{f'-ddp{processes}' if processes > 1 else ''}"
    check = Check(f"{args.preset} {label}{' --compile' if compile else ''}{f' x{processes} DDP' if processes > 1 else ''}")
    cmd = train_command(data, runs, name, args.preset, mods, args.steps, compile, processes, args.device, extra)
    rc, output, check.wall_s = _run(cmd, deadline)
    if rc == 0:
        measure_run(runs / name, args.steps, args.warmup, check)
    else:
        check.note = "time budget ran out" if rc == -1 else f"exit {rc}"
    if not compile:
        check.compile_s = None  # an eager first step is warm-up, not compilation
    if not check.ok:
        check.log = output.splitlines()[-30:]
    shutil.rmtree(runs / name / "ckpt", ignore_errors=True)  # ~1.5 GB per run for the small preset
    return check


def format_table(checks: list[Check]) -> str:
    header = ("check", "result", "precision", "tokens/s", "MFU", "peak GiB", "compile s", "wall s")
    lines = [header] + [_cells(check) for check in checks]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(width) if i >= 3 else cell.ljust(width)
                               for i, (cell, width) in enumerate(zip(line, widths))).rstrip() for line in lines)


def _cells(c: Check) -> tuple[str, ...]:
    def num(value, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    result = ("ok" if c.ok else "FAIL") + (f": {c.note}" if c.note else "")
    return (c.name, result, c.precision, num(c.tokens_per_s, ",.0f"), "" if c.mfu is None else f"{c.mfu:.1%}",
            num(c.peak_mem_gib, ".1f"), num(c.compile_s, ".1f"), num(c.wall_s, ".0f"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per training run")
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of tokens/s and MFU")
    parser.add_argument("--budget", type=float, default=300, help="seconds for everything; what is left undone fails")
    parser.add_argument("--preset", default="small", help=argparse.SUPPRESS)  # tests: a tiny preset
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # tests: the CPU
    parser.add_argument("--guard-preset", default="medium", help=argparse.SUPPRESS)
    parser.add_argument("--skip-tests", action="store_true", help="leave out the pytest GPU tests")
    args = parser.parse_args(argv)
    if not 1 <= args.warmup < args.steps:
        parser.error("--warmup must be at least 1 and below --steps")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA GPU visible to PyTorch {torch.__version__}; nothing to check on this machine")
        return 0
    deadline = time.monotonic() + args.budget
    gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    print(f"gpu_check: {torch.cuda.get_device_name(0) if gpus else args.device} x{gpus}, torch {torch.__version__}, "
          f"preset {args.preset}, {args.steps} steps per run (tokens/s and MFU after step {args.warmup}), "
          f"budget {args.budget:.0f}s", flush=True)
    checks = [] if args.skip_tests else [run_gpu_tests(deadline)]
    checks.append(time_guards(args.guard_preset, args.device))
    with tempfile.TemporaryDirectory(prefix="pileablate-gpu-check-") as tmp:
        data = make_token_store(Path(tmp) / "data")
        runs = Path(tmp) / "runs"
        for label, mods, extra in (("baseline", "", ()), ("all", "all", ()), ("moe", "moe", ()),
                                   ("alibi+window-flex", "alibi,window", tuple(HOOKED))):
            for compile in (False, True):
                checks.append(run_training(data, runs, label, mods, compile, args, deadline, extra=extra))
                print(f"  {checks[-1].name}: {'ok' if checks[-1].ok else 'FAIL'}", flush=True)
        if gpus >= 2:
            checks.append(run_training(data, runs, "baseline", "", False, args, deadline, processes=2))
    print()
    print(format_table(checks))
    for check in checks:
        if not check.ok and check.log:
            print(f"\n--- {check.name}: last lines of its output ---\n" + "\n".join(check.log))
    failed = [c.name for c in checks if not c.ok]
    print(f"\n{len(checks) - len(failed)} of {len(checks)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

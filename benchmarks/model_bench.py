"""The model's training step now against the same step at an earlier revision, side by side.

The plug-in model (registry slots, a forward context, attention hooks) must cost nothing where no hook
is active: the baseline and `all` keep SDPA and the same modules. This times forward + backward +
fused AdamW steps of the GPT built by the current code and by the code at `--against` (default: the
last commit before the plug-in redesign), on the same random batches, each in a fresh process that
imports only its own copy of the package. Rounds alternate old / new so machine noise hits both; the
median round is reported, and the ratio is old ms/step / new ms/step (>= 0.95: no slowdown).

With --losses it also trains nano runs (30 steps) of several configurations under both revisions on
one small store and prints their validation losses side by side: they must be equal to the last digit.

Usage: .venv/bin/python benchmarks/model_bench.py [--against REV] [--preset micro] [--mods baseline,all]
       [--steps 30] [--warmup 5] [--rounds 3] [--threads 2] [--losses]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE_PLUGINS = "f3ffa72"

STEP = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(int(sys.argv[6]))
from pileablate.model.build import build_model_config
from pileablate.model.gpt import GPT
preset, mods, steps, warmup = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
torch.manual_seed(0)
cfg = build_model_config(preset, "" if mods == "baseline" else mods, 257, match_params=True)
model = GPT(cfg)
groups = model.param_groups(0.1)
optimizer = torch.optim.AdamW(groups, lr=1e-3, fused=True)
gen = torch.Generator().manual_seed(0)
batches = [torch.randint(0, 257, (16, cfg.seq_len + 1), generator=gen) for _ in range(4)]
times = []
for i in range(warmup + steps):
    w = batches[i % 4]
    start = time.perf_counter()
    out = model(w[:, :-1], w[:, 1:])
    (out.loss + out.aux_loss).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if i >= warmup:
        times.append(time.perf_counter() - start)
print(json.dumps({"ms": 1000 * sum(times) / len(times), "tokens": 16 * cfg.seq_len}))
"""


TRAIN = r"""
import sys
sys.path.insert(0, sys.argv[1])
from pileablate.cli import main
main(sys.argv[2:])
"""
SAME_LOSS_MODS = ("baseline", "all", "moe,mtp,gqa", "muon,postnorm")


def val_loss(package_root: Path, store: Path, runs: Path, mods: str) -> str:
    args = ["train", "--data", str(store), "--runs-dir", str(runs), "--name", mods.replace(",", "+"), "--preset", "nano",
            "--max-steps", "30", "--eval-every", "15", "--eval-tokens", "4096", "--log-every", "5"]
    args += [] if mods == "baseline" else ["--mods", mods]
    out = subprocess.run([sys.executable, "-c", TRAIN, str(package_root), *args], capture_output=True, text=True,
                         check=True, cwd=tempfile.gettempdir())
    return next(f for f in out.stdout.split() if f.startswith("val_loss=")).split("=", 1)[1]


def same_losses(old: Path, tmp: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers.stores import prepare_for_tests  # the test suite's small store

    store = tmp / "store"
    prepare_for_tests(store, train_tokens=400_000, val_tokens=40_000)
    print("\n| mods | old val loss (30 nano steps) | new val loss | equal |")
    print("|---|---|---|---|")
    for mods in SAME_LOSS_MODS:
        before, now = val_loss(old, store, tmp / "old-runs", mods), val_loss(ROOT, store, tmp / "new-runs", mods)
        print(f"| {mods} | {before} | {now} | {'yes' if before == now else 'NO'} |", flush=True)


def extract(revision: str, into: Path) -> Path:
    """The package as it was at `revision`, in a folder of its own."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "pileablate"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def step_ms(package_root: Path, preset: str, mods: str, steps: int, warmup: int, threads: int) -> float:
    out = subprocess.run([sys.executable, "-c", STEP, str(package_root), preset, mods, str(steps), str(warmup),
                          str(threads)], capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])["ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default=BEFORE_PLUGINS)
    parser.add_argument("--preset", default="micro")
    parser.add_argument("--mods", default="baseline,all")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--losses", action="store_true", help="also compare nano runs' validation losses")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = extract(args.against, Path(tmp) / "old")
        print(f"preset {args.preset}, batch 16, CPU fp32, {args.threads} thread(s); {args.rounds} rounds of "
              f"{args.steps} steps after {args.warmup}; old = {args.against}, new = the working tree")
        print("| mods | old ms/step | new ms/step | ratio old/new |")
        print("|---|---:|---:|---:|")
        for mods in args.mods.split(","):
            rounds = []
            for _ in range(args.rounds):
                before = step_ms(old, args.preset, mods, args.steps, args.warmup, args.threads)
                now = step_ms(ROOT, args.preset, mods, args.steps, args.warmup, args.threads)
                rounds.append((before / now, before, now))
            ratio, before, now = sorted(rounds)[len(rounds) // 2]
            print(f"| {mods} | {before:.1f} | {now:.1f} | **{ratio:.2f}x** |", flush=True)
        if args.losses:
            same_losses(old, Path(tmp))


if __name__ == "__main__":
    main()

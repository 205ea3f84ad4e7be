"""The model's training step now against the same step at an earlier revision, side by side.

The plug-in model (registry slots, a forward context, attention hooks) must cost nothing where no hook
is active: the baseline and `all` keep SDPA and the same modules. This times forward + backward +
fused AdamW steps of the GPT built by the current code and by the code at `--against` (default: the
last commit before the plug-in redesign), on the same random batches, each in a fresh process that
imports only its own copy of the package. Rounds alternate old / new so machine noise hits both; the
median round is reported, and the ratio is old ms/step / new ms/step (>= 0.95: no slowdown).

Usage: .venv/bin/python benchmarks/model_bench.py [--against REV] [--preset micro] [--mods baseline,all]
       [--steps 30] [--warmup 5] [--rounds 3] [--threads 2]
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


def extract(revision: str, into: Path) -> Path:
    """The package as it was at `revision`, in a folder of its own."""
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = extract(args.against, Path(tmp))
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


if __name__ == "__main__":
    main()

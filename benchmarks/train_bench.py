"""Benchmark `pileablate train` against a plain PyTorch training loop of the same model, on this CPU.

For the baseline and for `all` (warmup, cosine, rmsnorm, rope, swiglu), at a fixed small preset
(default micro: 4 layers, d_model 128, seq 128; batch 16 = 2,048 tokens per step), fp32:

- reference: the loop a careful user writes by hand (nanoGPT's train.py, stripped): the same GPT
  class, AdamW over the same parameter groups, random windows from a numpy memmap of the same
  tokens, forward, backward, clip to 1.0, step. No logging, no checkpoints, no guards.
- pileablate: `pileablate.train.trainer.train()` with the same preset, batch and optimiser settings,
  its windows taken from the Arrow token store, metrics logged every step. The one thing it does
  differently is the optimizer kernel: AdamW(fused=True), one pass over all parameters, where the
  plain loop gets PyTorch's default per-tensor AdamW; on small models the optimizer step is a
  sizeable share of a CPU step.

Both time the same steady-state steps (the first --warmup steps of each are excluded: allocator and
kernel warm-up), the trainer from its own per-step clock in metrics.jsonl, the reference with
perf_counter around the same steps. Evaluation (at the end of the trainer run only) is not counted by
either. Rounds alternate reference / trainer so machine noise hits both; the median round is reported.
Target: pileablate >= 1.0x the reference's tokens/s.

Usage: .venv/bin/python benchmarks/train_bench.py [--preset micro] [--steps 30] [--warmup 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_store(root: Path) -> Path:
    """A small store, prepared in a process of its own: after an in-process `prepare` this process's
    training steps measured about 1.5x slower (both loops alike, much of it system time), which is not
    what a run sees (`prepare` and `train` are separate commands)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    out = root / "data"
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_prepare_store, out).result()
    return out


def _prepare_store(out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test helpers: a small store
    from helpers.stores import prepare_for_tests

    prepare_for_tests(out, train_tokens=400_000, val_tokens=40_000)


def reference_loop(data_dir: Path, preset: str, mods: tuple, batch: int, lr: float, steps: int, warmup: int,
                   seed: int) -> tuple[float, int]:
    """(seconds per step, parameters) of a plain PyTorch loop over the same model and batch shape (steady state)."""
    from pileablate.data.manifest import read_manifest
    from pileablate.data.store import TokenSplit
    from pileablate.model.build import build_model_config
    from pileablate.model.gpt import GPT

    manifest = read_manifest(data_dir)
    cfg = build_model_config(preset, mods, manifest["vocab_size"], match_params=True)  # as the trainer builds it
    torch.manual_seed(seed)
    model = GPT(cfg)
    optimizer = torch.optim.AdamW(model.param_groups(0.1), lr=lr, betas=(0.9, 0.95))
    # nanoGPT keeps the tokens in a np.memmap and gathers random windows from it.
    tokens = np.concatenate([TokenSplit(data_dir / "train").window(0, TokenSplit(data_dir / "train").num_tokens)])
    rng = np.random.default_rng(seed)
    t = cfg.seq_len

    def get_batch():
        ix = rng.integers(0, len(tokens) - t - 1, size=batch)
        x = torch.from_numpy(np.stack([tokens[i : i + t] for i in ix]).astype(np.int64))
        y = torch.from_numpy(np.stack([tokens[i + 1 : i + 1 + t] for i in ix]).astype(np.int64))
        return x, y

    model.train()
    start = None
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        x, y = get_batch()
        out = model(x, y)
        loss = out.loss + out.aux_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / steps, sum(p.numel() for p in model.parameters())


def pileablate_loop(data_dir: Path, runs: Path, preset: str, mods: tuple, batch: int, lr: float, steps: int, warmup: int,
                    seed: int, name: str) -> tuple[float, int]:
    """(seconds per step, parameters) of pileablate's trainer over the same steady-state steps (its own clock)."""
    import io

    from rich.console import Console

    from pileablate.train.config import TrainConfig
    from pileablate.runfolder import read_metrics
    from pileablate.train.trainer import train

    cfg = TrainConfig(data=data_dir, runs_dir=runs, name=name, preset=preset, mods=mods, seed=seed, lr=lr,
                      batch_size=batch, max_steps=warmup + steps, eval_every=10**9, eval_tokens=1024, log_every=1,
                      checkpoint_every="100000", device="cpu", precision="fp32")
    summary = train(cfg, console=Console(file=io.StringIO()))
    rows = {r["step"]: r for r in read_metrics(Path(summary["run_dir"]))}
    return (rows[warmup + steps]["elapsed_s"] - rows[warmup]["elapsed_s"]) / steps, summary["params_total"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="micro")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: PyTorch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from pileablate.model.build import PRESETS
    from pileablate.registry import SEED_MODS

    seq = PRESETS[args.preset]["seq_len"]
    tokens_per_step = args.batch_size * seq
    print(f"train benchmark: preset {args.preset}, batch {args.batch_size} x seq {seq} = {tokens_per_step:,} tokens/step, "
          f"CPU fp32, {torch.get_num_threads()} threads, {args.steps} timed steps after {args.warmup}, "
          f"median of {args.rounds} rounds, torch {torch.__version__}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_store(root)
        for label, mods in (("baseline", ()), ("all", SEED_MODS)):
            ref, ours = [], []
            for r in range(args.rounds):
                ref_s, ref_params = reference_loop(data, args.preset, mods, args.batch_size, 1e-3, args.steps,
                                                   args.warmup, seed=r)
                ours_s, our_params = pileablate_loop(data, root / "runs", args.preset, mods, args.batch_size, 1e-3,
                                                     args.steps, args.warmup, seed=r, name=f"{label}-{r}")
                if ref_params != our_params:  # a like-for-like comparison or none
                    raise SystemExit(f"{label}: the loops trained different models ({ref_params:,} vs {our_params:,} "
                                     "parameters)")
                ref.append(ref_s)
                ours.append(ours_s)
            ref_s, ours_s = statistics.median(ref), statistics.median(ours)
            results.append((label, ref_s, ours_s))
    print()
    print(f"{'mods':10} {'reference ms/step':>18} {'reference tok/s':>16} {'pileablate ms/step':>19} {'pileablate tok/s':>17} {'ratio':>7}")
    for label, ref_s, ours_s in results:
        print(f"{label:10} {ref_s * 1e3:18.1f} {tokens_per_step / ref_s:16,.0f} {ours_s * 1e3:19.1f} "
              f"{tokens_per_step / ours_s:17,.0f} {ref_s / ours_s:6.2f}x")
    print("\nratio = pileablate tokens/s / reference tokens/s (target >= 1.00x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

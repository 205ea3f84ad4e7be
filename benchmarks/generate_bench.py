"""Benchmark `pileablate generate`: KV-cache size and speed per attention variant, and speculative decoding.

Measured side by side in one run, on this machine's CPU, batch 1, fp32:

1. Attention variants at equal model size (same layers, heads, width, context; only the attention
   changes, and GQA/MLA spend the parameters their smaller attention saves on a wider MLP, so all
   three have the same parameter count): MHA, GQA (kv-heads = n_head/4) and MLA (latent = d_model/4).
   For each: parameters, KV-cache
   bytes per token (what the cache allocates per position, all layers), tokens/s with the cache, and
   tokens/s without it (the whole context recomputed each token). Random weights: speed does not
   depend on what the weights are, and end-of-text is not honoured here so every run decodes the same
   number of tokens.
2. Speculative decoding (Leviathan et al. 2023). A draft only speeds decoding up when it agrees with
   the target, so both are *trained* here, briefly, with `pileablate train` on the same prepared data
   (Python source, byte tokenizer), the same number of steps on the same batches: the target a `mini`
   model (6 layers, d_model 192), the draft `nano` (2 layers, d_model 64, 1/20 of the parameters), at
   the same context. Then decode from held-out prompts: plain decoding of the target
   against speculative decoding with k draft tokens per round, greedy (tokens checked identical) and
   sampled (temperature 0.8). Reported: acceptance rate, tokens per target forward pass, tokens/s of
   both, and the speed-up.

Timings are medians over --repeats rounds after a warm-up; within a round the compared settings run
back to back (round-robin), so load from other processes hits them alike. Usage:
    .venv/bin/python benchmarks/generate_bench.py [--threads 1] [--train-steps 300] [--quick]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from pileablate.inference.decode import DecodeStats, decode
from pileablate.inference.sampling import SamplingConfig
from pileablate.model.build import build_model_config
from pileablate.model.gpt import GPT

GREEDY = SamplingConfig(temperature=0)
SAMPLED = SamplingConfig(temperature=0.8, top_k=200)


def timed_decode(model, prompt, n, sampling, **kw) -> tuple[list[int], DecodeStats]:
    """Decode `n` tokens after `prompt` (fixed seed); the tokens and the stats with the time taken."""
    stats = DecodeStats()
    gen = torch.Generator().manual_seed(1234)
    tokens = list(decode(model, prompt, n, sampling, vocab_size=257, generator=gen, stats=stats, **kw))
    return tokens, stats


def median(values: list[float]) -> float:
    return statistics.median(values)


def build(mods: str, shape: dict, extra: dict, mlp_hidden=None) -> GPT:
    torch.manual_seed(0)
    return GPT(build_model_config("nano", mods, 257, **shape, **extra, mlp_hidden=mlp_hidden)).eval()


def equal_size_hidden(mods: str, shape: dict, extra: dict, params: int) -> int:
    """The MLP width that gives this attention variant the same parameter count as MHA.

    GQA and MLA have smaller attention projections; spending the saved parameters on the MLP keeps
    the comparison at equal model size (parameters are linear in the MLP width, so two probes suffice).
    """
    hidden = 4 * shape["d_model"]
    p0 = build(mods, shape, extra, hidden).num_params()["total"]
    p1 = build(mods, shape, extra, hidden + 1).num_params()["total"]
    return hidden + round((params - p0) / (p1 - p0))


def attention_variants(args) -> list[dict]:
    shape = dict(n_layer=4, n_head=8, d_model=256, seq_len=args.context)
    prompt = [256] + list(b"import os\nimport sys\n\ndef main(argv):\n")
    n = args.context - len(prompt)  # fill the context once: no window jump
    variants = (("MHA", "", {}), ("GQA (kv-heads 2)", "gqa", {"n_kv_head": 2}), ("MLA (latent 64)", "mla", {"kv_latent_dim": 64}))
    models = {}
    for name, mods, extra in variants:
        hidden = None if not models else equal_size_hidden(mods, shape, extra, models["MHA"].num_params()["total"])
        models[name] = build(mods, shape, extra, hidden)
    times: dict[str, dict[str, list[float]]] = {name: {"cached": [], "uncached": []} for name in models}
    for name, model in models.items():  # warm-up
        timed_decode(model, prompt, 16, GREEDY)
    # Round-robin over the variants, so that load from other processes hits them alike.
    for _ in range(args.repeats):
        for name, model in models.items():
            times[name]["cached"].append(timed_decode(model, prompt, n, GREEDY)[1].elapsed_s)
            times[name]["uncached"].append(timed_decode(model, prompt, n, GREEDY, use_cache=False)[1].elapsed_s)
    rows = []
    for name, model in models.items():
        per_token = model.new_kv_cache(1, args.context).nbytes() / args.context
        cached, uncached = n / median(times[name]["cached"]), n / median(times[name]["uncached"])
        rows.append({
            "variant": name, "params": model.num_params()["total"], "mlp_hidden": model.config.ffn_hidden,
            "kv_bytes_per_token": per_token, "cached_tok_s": cached, "uncached_tok_s": uncached, "tokens": n,
        })
        print(f"  {name}: {per_token:.0f} B/token, {cached:.0f} tok/s cached, {uncached:.0f} uncached", file=sys.stderr)
    return rows


def train_pair(args, work: Path):
    """Train target and draft on the same prepared data; return (target, draft, val prompts)."""
    from rich.console import Console

    from pileablate.commands.train import train_config_from_args
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test helpers: a small store
    from helpers.stores import prepare_for_tests
    from pileablate.data.store import TokenSplit
    from pileablate.inference.trained import load_trained_run as load_run
    from pileablate.train.trainer import train

    store = Path(args.data) if args.data else work / "store"
    if not args.data:
        print("preparing data (Python source, bytes tokenizer) ...", file=sys.stderr)
        prepare_for_tests(store, train_tokens=3_000_000, val_tokens=100_000)
    console = Console(stderr=True)
    runs = work / "runs"
    common = ["--data", str(store), "--runs-dir", str(runs), "--seq-len", str(args.context), "--batch-size", "8",
              "--eval-tokens", "16384", "--eval-every", "100000", "--device", "cpu", "--mods", "cosine"]
    steps = ["--max-steps", str(args.train_steps)]
    print(f"training target (mini) and draft (nano) for {args.train_steps} steps each on the same batches ...",
          file=sys.stderr)
    target_summary = train(train_config_from_args([*common, *steps, "--name", "target", "--preset", "mini"]), console=console)
    draft_summary = train(train_config_from_args([*common, *steps, "--name", "draft", "--preset", "nano"]), console=console)
    target, _, _ = load_run(runs / "target")
    draft, _, _ = load_run(runs / "draft")
    val = TokenSplit(store / "val")
    prompts = []
    for i in range(val.num_documents):
        doc = [int(t) for t in val.document(i)]
        if len(doc) > 200:
            prompts.append([256] + doc[:48])
        if len(prompts) == args.prompts:
            break
    return target.eval(), draft.eval(), prompts, target_summary, draft_summary


def speculative(args, target, draft, prompts) -> list[dict]:
    rows = []
    n = args.new_tokens
    for sampling_name, sampling in (("greedy", GREEDY), ("T=0.8", SAMPLED)):
        timed_decode(target, prompts[0], 16, sampling)  # warm-up
        timed_decode(target, prompts[0], 16, sampling, draft=draft, draft_tokens=args.draft_tokens[0])
        plain = {"time": [], "tokens": 0}
        spec = {k: {"time": [], "tokens": 0, "drafted": 0, "accepted": 0, "passes": 0, "identical": True}
                for k in args.draft_tokens}
        # Per prompt, plain and every k back to back (and repeated), so load from other processes
        # hits them alike; times are summed over prompts, medians over repeats.
        for _ in range(args.repeats):
            plain_t = 0.0
            spec_t = {k: 0.0 for k in args.draft_tokens}
            for p in prompts:
                expected, stats = timed_decode(target, p, n, sampling)
                plain_t += stats.elapsed_s
                plain["tokens"] += stats.new_tokens
                for k in args.draft_tokens:
                    tokens, st = timed_decode(target, p, n, sampling, draft=draft, draft_tokens=k)
                    spec_t[k] += st.elapsed_s
                    r = spec[k]
                    r["tokens"] += st.new_tokens
                    r["drafted"] += st.drafted
                    r["accepted"] += st.accepted
                    r["passes"] += st.target_forward_passes
                    r["identical"] &= tokens == expected
            plain["time"].append(plain_t)
            for k in args.draft_tokens:
                spec[k]["time"].append(spec_t[k])
        per_run = plain["tokens"] / args.repeats
        plain_rate = per_run / median(plain["time"])
        for k, r in spec.items():
            rate = (r["tokens"] / args.repeats) / median(r["time"])
            rows.append({
                "sampling": sampling_name, "k": k, "acceptance": r["accepted"] / r["drafted"],
                "tokens_per_target_pass": r["tokens"] / r["passes"], "plain_tok_s": plain_rate, "spec_tok_s": rate,
                "speedup": rate / plain_rate, "identical": r["identical"] if sampling is GREEDY else None,
            })
            print(f"  {sampling_name} k={k}: acceptance {r['accepted'] / r['drafted']:.0%}, "
                  f"{rate:.0f} vs {plain_rate:.0f} tok/s ({rate / plain_rate:.2f}x)", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (batch-1 decoding of small models is latency-bound; 1 is steadiest)")
    parser.add_argument("--context", type=int, default=256, help="seq_len of every model")
    parser.add_argument("--train-steps", type=int, default=300, help="optimizer steps of both target and draft (batch 8 x context)")
    parser.add_argument("--new-tokens", type=int, default=192, help="tokens decoded per prompt in part 2")
    parser.add_argument("--prompts", type=int, default=3, help="held-out prompts in part 2")
    parser.add_argument("--draft-tokens", type=int, nargs="+", default=[2, 4, 6], help="k values to measure")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per measurement (median)")
    parser.add_argument("--data", help="a prepared store to train on (default: build one from Python's source)")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny budgets")
    args = parser.parse_args()
    if args.quick:
        args.train_steps, args.new_tokens, args.prompts, args.repeats = 3, 32, 1, 1
        args.draft_tokens = [4]
    torch.set_num_threads(args.threads)
    started = time.time()

    print("part 1: attention variants", file=sys.stderr)
    variants = attention_variants(args)
    print("part 2: speculative decoding", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        target, draft, prompts, ts, ds = train_pair(args, Path(tmp))
        spec = speculative(args, target, draft, prompts)

    out = io.StringIO()
    w = lambda s="": print(s, file=out)  # noqa: E731
    w(f"## generate benchmark (CPU, {args.threads} thread(s), batch 1, fp32; torch {torch.__version__})")
    w()
    w(f"Attention variants, 4 layers x 8 heads x d_model 256, context {args.context}, "
      f"{variants[0]['tokens']} tokens decoded:")
    w()
    w("| attention | params (MLP width) | KV cache B/token | vs MHA | tokens/s cached | tokens/s uncached | cache speed-up |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    base = variants[0]["kv_bytes_per_token"]
    for r in variants:
        w(f"| {r['variant']} | {r['params']:,} ({r['mlp_hidden']}) | {r['kv_bytes_per_token']:,.0f} | {r['kv_bytes_per_token'] / base:.2f}x "
          f"| {r['cached_tok_s']:.0f} | {r['uncached_tok_s']:.0f} | {r['cached_tok_s'] / r['uncached_tok_s']:.2f}x |")
    w()
    w(f"Speculative decoding: target mini ({target.num_params()['total']:,} params, val loss "
      f"{ts.get('final_val_loss', float('nan')):.3f}), draft nano ({draft.num_params()['total']:,} params, val loss "
      f"{ds.get('final_val_loss', float('nan')):.3f}), both trained {args.train_steps} steps on the same batches; "
      f"{len(prompts)} held-out prompts x {args.new_tokens} tokens:")
    w()
    w("| sampling | k | acceptance | tokens / target pass | plain tokens/s | speculative tokens/s | speed-up | same tokens as plain |")
    w("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in spec:
        same = "-" if r["identical"] is None else ("yes" if r["identical"] else "NO")
        w(f"| {r['sampling']} | {r['k']} | {r['acceptance']:.0%} | {r['tokens_per_target_pass']:.2f} "
          f"| {r['plain_tok_s']:.0f} | {r['spec_tok_s']:.0f} | {r['speedup']:.2f}x | {same} |")
    w()
    w(f"(total benchmark time {time.time() - started:.0f}s)")
    print(out.getvalue())


if __name__ == "__main__":
    main()

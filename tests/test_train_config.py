"""TrainConfig, budget parsing, schedules and data windows: the pieces of `train` that need no model."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from pileablate.commands.train import train_config_from_args
from pileablate.errors import UserError
from pileablate.options import flag_of, help_of
from pileablate.train.config import TrainConfig, parse_checkpoint_every
from pileablate.units import parse_count, parse_duration
from pileablate.train.data_loader import BatchLayout, TrainWindows, ValWindows, val_window_starts
from pileablate.train.schedule import budget_progress


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("90m", 5400), ("1h", 3600), ("1h30m", 5400),
                                           ("2h0m5s", 7205), ("45", 45), ("1.5h", 5400), ("1d", 86400)])
def test_durations_parse_to_seconds(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "1h-3m", "0s", "-5", "m", "h30"])
def test_bad_durations_are_one_line_user_errors(text):
    with pytest.raises(UserError) as err:
        parse_duration(text)
    assert "\n" not in str(err.value) and "--time-limit" in str(err.value)


@pytest.mark.parametrize("text, count", [("2000", 2000), ("500k", 500_000), ("5M", 5_000_000), ("1.5B", 1_500_000_000)])
def test_counts_accept_suffixes(text, count):
    assert parse_count(text, "--max-tokens") == count


def test_checkpoint_every_takes_steps_or_a_duration():
    assert parse_checkpoint_every("500") == (500, None)
    assert parse_checkpoint_every("10m") == (None, 600.0)
    with pytest.raises(UserError):
        parse_checkpoint_every("soon")


def test_every_config_field_is_a_train_option_with_its_doc_as_help():
    """Each TrainConfig field can be set through train's parser (what `ablate` passes through)."""
    values = {
        "data": ("--data", "d"), "runs_dir": ("--runs-dir", "r"), "name": ("--name", "x"),
        "mods": ("--mods", "rope,swiglu"), "preset": ("--preset", "nano"), "seed": ("--seed", "3"),
        "mods_files": ("--mods-file", str(Path(__file__).resolve().parents[1] / "examples" / "parallel_block.py")),
        "n_layer": ("--n-layer", "3"), "n_head": ("--n-head", "2"), "d_model": ("--d-model", "48"),
        "seq_len": ("--seq-len", "32"), "mod_options": ("--mod-option", "gqa.kv_heads=1"), "kv_latent_dim": ("--kv-latent-dim", "16"),
        "n_experts": ("--n-experts", "4"), "experts_per_token": ("--experts-per-token", "1"), "mtp_depth": ("--mtp-depth", "3"),
        "match_params": ("--no-match-params", None),
        "lr": ("--lr", "0.002"), "min_lr": ("--min-lr", "0.0001"), "weight_decay": ("--weight-decay", "0.05"),
        "beta1": ("--beta1", "0.8"), "beta2": ("--beta2", "0.99"), "grad_clip": ("--grad-clip", "0.5"),
        "batch_size": ("--batch-size", "4"), "grad_accum": ("--grad-accum", "2"), "warmup_steps": ("--warmup-steps", "7"),
        "time_limit": ("--time-limit", "1h30m"), "max_tokens": ("--max-tokens", "5M"), "max_steps": ("--max-steps", "9"),
        "eval_every": ("--eval-every", "11"), "eval_tokens": ("--eval-tokens", "4k"), "log_every": ("--log-every", "2"),
        "checkpoint_every": ("--checkpoint-every", "5m"), "trackers": ("--tracker", "wandb,tensorboard"),
        "device": ("--device", "cpu"), "precision": ("--precision", "fp32"),
        "compile": ("--compile", None), "tuning": ("--tuning", None), "resume": ("--resume", None),
    }
    assert set(values) == {f.name for f in dataclasses.fields(TrainConfig) if not f.metadata.get("internal")}
    args = [a for option, value in values.values() for a in ([option] if value is None else [option, value])]
    cfg = train_config_from_args(args)
    assert cfg.mods == ("rope", "swiglu") and cfg.time_limit == 5400 and cfg.max_tokens == 5_000_000
    assert cfg.eval_tokens == 4000 and cfg.compile and cfg.resume and cfg.mod_options == ("gqa.kv_heads=1",) and cfg.n_experts == 4 and cfg.lr == 0.002
    assert str(cfg.data) == "d" and cfg.checkpoint_every == "5m" and cfg.match_params is False
    assert cfg.trackers == ("wandb", "tensorboard")
    assert len(cfg.mods_files) == 1 and cfg.mods_files[0].split("#sha256=")[0].endswith("parallel_block.py")
    from pileablate.commands.train import _command

    params = {p.name: p for p in _command().params}
    for name, (option, _) in values.items():  # the field's name is the option, its documentation the help
        assert option in params[name].opts + params[name].secondary_opts and params[name].help == help_of(TrainConfig, name)
        assert flag_of(TrainConfig, name) == params[name].opts[0]
    renamed = {name for name in values if flag_of(TrainConfig, name) != "--" + name.replace("_", "-")}
    assert renamed == {"mods_files", "mod_options", "trackers"}  # only a repeatable option is the singular of its field


def test_defaults_parse_and_bad_options_are_user_errors(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cfg = train_config_from_args([])
    assert cfg.preset == "micro" and cfg.mods == () and str(cfg.data) == "data" and str(cfg.runs_dir) == "runs"
    assert cfg.match_params is True  # sizes are matched unless --no-match-params
    for bad in (["--mods", "nope"], ["--time-limit", "soon"], ["--max-tokens", "lots"], ["--device", "tpu"],
                ["--precision", "fp8"], ["--no-such-option"], ["--batch-size", "0"]):
        with pytest.raises(UserError):
            train_config_from_args(bad)


def test_config_round_trips_through_json():
    cfg = train_config_from_args(["--mods", "all", "--max-steps", "5"])
    assert TrainConfig(**cfg.to_json()) == cfg  # config.json's "train" reads back


# ---- schedules -----------------------------------------------------------------------------------

def schedule_of(kind: str, lr: float, min_lr: float, warmup_steps: int):
    """The schedule component a run with modification `kind` gets (constant: the baseline's)."""
    from pileablate.train.optimizer import make_schedule

    mods = () if kind == "constant" else (kind,)
    return make_schedule(TrainConfig(mods=mods, lr=lr, min_lr=min_lr, warmup_steps=warmup_steps))


def test_constant_schedule_is_constant():
    s = schedule_of("constant", 1e-3, 1e-4, 1000)
    assert {s(step, p) for step, p in [(0, 0), (5, 0.3), (10_000, 1.0)]} == {1e-3}


@pytest.mark.parametrize("kind", ["warmup", "cosine"])
def test_warmup_is_linear_and_capped_at_a_tenth_of_the_budget(kind):
    total = 200  # steps; 1000 warmup steps would be 5x the run, so the 10% cap (20 steps) applies
    s = schedule_of(kind, 1e-3, 1e-4, 1000)
    lrs = [s(step, step / total) for step in range(total + 1)]
    assert lrs[0] < 1e-4  # starts near zero
    assert all(b > a for a, b in zip(lrs[:19], lrs[1:20]))  # rising during warmup
    assert lrs[20] == pytest.approx(1e-3 if kind == "warmup" else 1e-4 + 0.45e-3 * (1 + math.cos(math.pi * 0.1)), rel=1e-9)
    long = schedule_of(kind, 1e-3, 1e-4, 100)  # short warmup in a long run: its own 100 steps rule
    if kind == "warmup":
        assert long(49, 49 / 100_000) == pytest.approx(0.5e-3)  # half way up its own 100 steps


def test_cosine_ends_at_min_lr_whichever_budget_runs_out():
    s = schedule_of("cosine", 6e-4, 6e-5, 10)
    progress = [budget_progress(step, step * 100, step * 0.5, max_steps=None, max_tokens=None, time_limit=50.0)
                for step in range(101)]
    lrs = [s(step, p) for step, p in enumerate(progress)]
    assert lrs[-1] == pytest.approx(6e-5)
    after = lrs[10:]
    assert all(b <= a for a, b in zip(after, after[1:]))  # non-increasing after warmup
    # Two budgets: the one that ends first drives the schedule.
    assert budget_progress(10, 1000, 1.0, max_steps=100, max_tokens=2000, time_limit=None) == 0.5


# ---- data windows ----------------------------------------------------------------------------------

def test_train_windows_depend_on_seed_and_step_only(bytes_store):
    from pileablate.data.store import TokenSplit

    split = TokenSplit(bytes_store / "train")
    a = TrainWindows(split, 32, BatchLayout(4, 2), seed=1)
    b = TrainWindows(split, 32, BatchLayout(4, 2), seed=1)
    assert np.array_equal(a.starts(7), b.starts(7))
    assert not np.array_equal(a.starts(7), a.starts(8))
    assert not np.array_equal(a.starts(7), TrainWindows(split, 32, BatchLayout(4, 2), seed=2).starts(7))
    x, y = a.micro_batch(7, 1)
    assert x.shape == y.shape == (4, 32)
    assert np.array_equal(x[:, 1:].numpy(), y[:, :-1].numpy())  # targets are the inputs shifted by one
    start = int(a.starts(7)[4])
    assert np.array_equal(x[0].numpy(), split.window(start, 32))


def test_ranks_take_disjoint_slices_that_make_up_the_single_process_batch(bytes_store):
    from pileablate.data.store import TokenSplit

    split = TokenSplit(bytes_store / "train")
    single = TrainWindows(split, 16, BatchLayout(batch_size=6, grad_accum=2, world_size=1), seed=0)
    ranks = [TrainWindows(split, 16, BatchLayout(batch_size=3, grad_accum=2, world_size=2, rank=r), seed=0) for r in (0, 1)]
    for micro in range(2):
        whole = single.micro_batch(5, micro)[0]
        parts = [w.micro_batch(5, micro)[0] for w in ranks]
        assert np.array_equal(np.concatenate(parts), whole.numpy())


def test_val_windows_are_fixed_spread_and_inside_the_split(bytes_store):
    from pileablate.data.store import TokenSplit

    split = TokenSplit(bytes_store / "val")
    v1, v2 = ValWindows(split, 64, 4096), ValWindows(split, 64, 4096)
    assert len(v1.starts) == 64 and np.array_equal(v1.data.numpy(), v2.data.numpy())
    starts = val_window_starts(split.num_tokens, 64, 4096)
    assert starts[-1] + 65 <= split.num_tokens and np.all(np.diff(starts) >= 64)
    assert starts[-1] > split.num_tokens / 2  # spread over the split, not just its beginning
    with pytest.raises(UserError):
        val_window_starts(10, 64, 4096)


@pytest.mark.parametrize("cuda, device, expected", [(True, "auto", "small"), (False, "auto", "micro"),
                                                     (True, "cpu", "micro"), (False, "cuda", "small")])
def test_the_default_preset_fits_the_machine_and_says_why(monkeypatch, cuda, device, expected):
    monkeypatch.setattr("torch.cuda.is_available", lambda: cuda)
    cfg = train_config_from_args(["--device", device])
    assert cfg.preset == expected
    assert ("CUDA is available" if expected == "small" else "without CUDA") in cfg.preset_reason
    assert "preset_reason" not in cfg.to_json()  # how it was chosen is not part of the run


def test_an_explicit_preset_wins_over_the_machine_default(monkeypatch):
    import dataclasses

    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    cfg = train_config_from_args(["--preset", "nano"])
    assert cfg.preset == "nano" and cfg.preset_reason is None
    chosen = train_config_from_args([])
    assert dataclasses.replace(chosen, preset="micro").preset_reason is None  # a sweep point's preset is chosen
    assert dataclasses.replace(chosen, seed=3).preset_reason == chosen.preset_reason

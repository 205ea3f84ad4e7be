"""`train()` end to end on the nano preset: run files, exact resume, honest-loss stops, guards."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from pileablate.errors import UserError
from pileablate.train.config import TrainConfig
from pileablate.runfolder import read_metrics
from pileablate.train.state import RunFailed
from pileablate.train.trainer import train


def nano(tmp_path: Path, data: Path, **overrides) -> TrainConfig:
    base = dict(data=data, runs_dir=tmp_path / "runs", preset="nano", device="cpu", batch_size=4,
                eval_every=10, eval_tokens=1024, log_every=1, checkpoint_every="1000")
    base.update(overrides)
    return TrainConfig(**base)


def losses(run_dir: Path) -> list[float]:
    return [row["train_loss"] for row in read_metrics(run_dir)]


def test_run_writes_config_metrics_summary_and_a_safe_checkpoint(tmp_path, bytes_store):
    summary = train(nano(tmp_path, bytes_store, max_steps=12, mods=("rope", "swiglu"), log_every=3))
    run = tmp_path / "runs" / "rope+swiglu-s0"
    config = json.loads((run / "config.json").read_text())
    assert {"name", "mods", "seed", "preset", "model", "train", "data", "tokens_per_step", "world_size",
            "pileablate_version", "created"} <= set(config)
    assert config["mods"] == ["rope", "swiglu"] and config["model"]["position"] == "rope"
    assert config["train"]["data"] == str(bytes_store) and config["train"]["lr"] == 1e-3  # preset default resolved
    manifest = json.loads((bytes_store / "manifest.json").read_text())
    assert config["data"]["fingerprint"] == manifest["fingerprint"]
    assert config["tokens_per_step"] == 4 * 64

    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [3, 6, 9, 10, 12]  # every 3 steps, plus evaluations (10) and the end
    assert {"step", "tokens", "elapsed_s", "lr", "train_loss", "grad_norm", "tokens_per_s", "epoch"} <= set(rows[0])
    assert "val_loss" in rows[3] and "val_loss" in rows[-1] and "val_loss" not in rows[0]
    assert rows[-1]["tokens"] == 12 * 256 and rows[-1]["epoch"] == pytest.approx(12 * 256 / manifest["splits"]["train"]["tokens"])

    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert summary["status"] == "finished" and summary["stop_reason"] == "max_steps" and summary["steps"] == 12
    assert summary["final_val_loss"] == rows[-1]["val_loss"] and summary["best_val_loss"] <= rows[3]["val_loss"]
    assert summary["guards"]["causality"] == "passed" and math.isfinite(summary["guards"]["initial_loss"])
    assert summary["params_total"] == summary["params_active"] > 0 and summary["flags"] == []
    bpt = manifest["splits"]["val"]["bytes"] / manifest["splits"]["val"]["tokens"]
    assert summary["val_bits_per_byte"] == pytest.approx(summary["final_val_loss"] / bpt / math.log(2))

    state = torch.load(run / "ckpt" / "latest.pt", weights_only=True)
    assert state["progress"]["step"] == 12 and "optimizer" in state and "torch" in state["rng"]
    assert not list((run / "ckpt").glob("*.tmp"))


def test_training_lowers_the_validation_loss(tmp_path, bytes_store):
    summary = train(nano(tmp_path, bytes_store, max_steps=40, eval_every=20, batch_size=8))
    rows = [r for r in read_metrics(Path(summary["run_dir"])) if "val_loss" in r]
    initial = summary["guards"]["initial_loss"]
    assert rows[-1]["val_loss"] < initial - 1.5  # bytes of Python source: ~5.6 nats -> < 4.1 in 40 steps


def test_resume_continues_bit_exact(tmp_path, bytes_store):
    """N steps, then the same run extended to 2N, equals 2N steps uninterrupted: every loss, ==."""
    straight = train(nano(tmp_path, bytes_store, name="straight", max_steps=16))
    train(nano(tmp_path, bytes_store, name="split", max_steps=8))
    resumed = train(nano(tmp_path, bytes_store, name="split", max_steps=16))
    a, b = losses(Path(straight["run_dir"])), losses(Path(resumed["run_dir"]))
    assert len(a) == len(b) == 16 and a == b
    assert resumed["final_val_loss"] == straight["final_val_loss"]
    state_a = torch.load(Path(straight["run_dir"]) / "ckpt" / "latest.pt", weights_only=True)
    state_b = torch.load(Path(resumed["run_dir"]) / "ckpt" / "latest.pt", weights_only=True)
    assert all(torch.equal(state_a["model"][k], state_b["model"][k]) for k in state_a["model"])


def test_resume_after_a_crash_drops_metrics_written_after_the_checkpoint(tmp_path, bytes_store):
    straight = train(nano(tmp_path, bytes_store, name="straight", max_steps=8))
    train(nano(tmp_path, bytes_store, name="crashed", max_steps=4))
    run = tmp_path / "runs" / "crashed"
    with open(run / "metrics.jsonl", "a") as handle:  # rows a killed process wrote after its checkpoint
        for step in (5, 6):
            handle.write(json.dumps({"step": step, "train_loss": 99.0}) + "\n")
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "running", "stop_reason": None}))
    resumed = train(nano(tmp_path, bytes_store, name="crashed", max_steps=8))
    assert [r["step"] for r in read_metrics(run)] == list(range(1, 9))
    assert losses(run) == losses(Path(straight["run_dir"])) and resumed["status"] == "finished"


def test_rerunning_a_finished_run_says_so_and_changes_nothing(tmp_path, bytes_store, capsys):
    cfg = nano(tmp_path, bytes_store, max_steps=5)
    first = train(cfg)
    mtime = (Path(first["run_dir"]) / "ckpt" / "latest.pt").stat().st_mtime_ns
    again = train(cfg)
    assert again == json.loads(json.dumps(first))
    assert (Path(first["run_dir"]) / "ckpt" / "latest.pt").stat().st_mtime_ns == mtime
    assert "already finished" in capsys.readouterr().err


def test_continuing_with_other_settings_or_other_data_is_refused(tmp_path, bytes_store):
    train(nano(tmp_path, bytes_store, max_steps=3))
    with pytest.raises(UserError, match="other settings"):
        train(nano(tmp_path, bytes_store, max_steps=6, lr=5e-3))
    with pytest.raises(UserError, match="no run 'other-s0'"):
        train(nano(tmp_path, bytes_store, name="other-s0", resume=True))
    # The same run on data made with another tokenizer: one-line error naming both.
    other = tmp_path / "other_data"
    other.mkdir()
    for item in bytes_store.iterdir():
        (other / item.name).symlink_to(item)
    manifest = json.loads((bytes_store / "manifest.json").read_text())
    manifest["tokenizer"] = {**manifest["tokenizer"], "name": "gpt2", "sha256": "0" * 64}
    (other / "manifest.json").unlink()
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="tokenized with") as err:
        train(nano(tmp_path, other, max_steps=6))
    assert "\n" not in str(err.value)


def test_default_budget_is_twenty_tokens_per_parameter():
    from pileablate.registry import SEED_MODS
    from pileablate.train.plan import plan_run

    plan = plan_run(TrainConfig(preset="nano"), vocab_size=256)
    cfg = plan.settings
    assert plan.default_budget and cfg.max_tokens == 20 * plan.params.active > 0
    assert cfg.lr == 1e-3 and cfg.min_lr == 1e-4 and cfg.batch_size == 8
    assert cfg.name == "baseline-s0"
    assert plan.components["optimizer"] == "adamw" and plan.components["schedule"] == "constant"
    assert plan_run(TrainConfig(preset="nano", max_steps=5), 256).settings.max_tokens is None
    assert plan_run(TrainConfig(preset="nano", seed=2, mods=SEED_MODS), 256).settings.name == "all-s2"


def test_time_limited_cosine_run_follows_the_clock_to_the_minimum_learning_rate(tmp_path, bytes_store):
    from pileablate.train.config import TrainConfig
    from pileablate.train.optimizer import make_schedule
    from pileablate.train.schedule import budget_progress

    summary = train(nano(tmp_path, bytes_store, mods=("cosine",), time_limit=1.0, eval_every=10_000))
    rows = read_metrics(Path(summary["run_dir"]))
    assert summary["stop_reason"] == "time_limit" and rows[-1]["elapsed_s"] >= 1.0
    schedule = make_schedule(TrainConfig(mods=("cosine",), lr=1e-3, min_lr=1e-4, warmup_steps=1000))
    for before, row in zip(rows, rows[1:]):  # each step's rate comes from the time used before it
        assert row["lr"] == schedule(row["step"] - 1, budget_progress(0, 0, before["elapsed_s"], time_limit=1.0))
    assert schedule(len(rows), budget_progress(0, 0, rows[-1]["elapsed_s"], time_limit=1.0)) == pytest.approx(1e-4)
    if len(rows) >= 50:  # on a machine not starved of CPU the last step is within 2% of the end
        assert rows[-1]["lr"] == pytest.approx(1e-4, rel=0.05)


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, bytes_store, monkeypatch):
    from pileablate.model import gpt

    original = gpt.GPT.forward
    calls = {"n": 0}

    def poisoned(self, idx, targets=None, kv_cache=None):
        out = original(self, idx, targets, kv_cache)
        if self.training and targets is not None and torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] > 7:  # from the 8th training step on
                out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(gpt.GPT, "forward", poisoned)
    cfg = nano(tmp_path, bytes_store, max_steps=20, checkpoint_every="5", log_every=1)
    with pytest.raises(RunFailed, match="became nan") as err:
        train(cfg)
    summary = err.value.summary
    assert summary["status"] == "failed" and summary["stop_reason"] == "non_finite_loss"
    assert "non_finite_loss" in summary["flags"]
    state = torch.load(Path(summary["run_dir"]) / "ckpt" / "latest.pt", weights_only=True)
    assert state["progress"]["step"] == 5
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_loss_below_the_plausibility_floor_marks_the_run_failed(tmp_path, bytes_store, monkeypatch):
    # A real leak would drive the loss below 0.3 bits/byte; here the floor is raised above any loss
    # this nano model reaches, which must trip the same check.
    monkeypatch.setattr("pileablate.train.session.MIN_PLAUSIBLE_BITS_PER_BYTE", 100.0)
    with pytest.raises(RunFailed, match="plausibility floor") as err:
        train(nano(tmp_path, bytes_store, max_steps=20, eval_every=5))
    summary = err.value.summary
    assert summary["status"] == "failed" and summary["stop_reason"] == "implausible_loss"
    assert "implausible_loss" in summary["flags"] and summary["steps"] == 5


def test_a_model_failing_the_causality_guard_does_not_train(tmp_path, bytes_store, monkeypatch):
    def leak(model, *args, **kwargs):
        raise UserError("causality guard failed: next-token logits at position 0 changed; At fault: modification(s) rope")

    monkeypatch.setattr("pileablate.model.guards.check_causality", leak)
    with pytest.raises(RunFailed, match="guard failed") as err:
        train(nano(tmp_path, bytes_store, max_steps=5, mods=("rope",)))
    summary = err.value.summary
    assert summary["status"] == "failed" and summary["stop_reason"] == "guard_failed" and summary["steps"] == 0
    assert summary["guards"]["causality"] == "failed"
    assert not (Path(summary["run_dir"]) / "ckpt" / "latest.pt").exists()


def test_grad_accumulation_matches_one_big_batch(tmp_path, bytes_store):
    big = train(nano(tmp_path, bytes_store, name="big", max_steps=4, batch_size=8))
    accum = train(nano(tmp_path, bytes_store, name="accum", max_steps=4, batch_size=4, grad_accum=2))
    assert losses(Path(accum["run_dir"])) == pytest.approx(losses(Path(big["run_dir"])), rel=1e-5)


def test_load_run_rebuilds_the_trained_model(tmp_path, bytes_store):
    from pileablate.inference.trained import load_trained_run

    summary = train(nano(tmp_path, bytes_store, max_steps=3, mods=("rmsnorm",)))
    model, config, tokenizer = load_trained_run(summary["run_dir"])
    state = torch.load(Path(summary["run_dir"]) / "ckpt" / "latest.pt", weights_only=True)
    assert all(torch.equal(v, state["model"][k]) for k, v in model.state_dict().items())
    assert config["mods"] == ["rmsnorm"] and tokenizer.n_vocab == config["data"]["tokenizer"]["n_vocab"]
    assert not model.training
    with pytest.raises(UserError, match="not a run folder"):
        load_trained_run(tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_run_uses_mixed_precision_compiles_and_logs_mfu_and_memory(tmp_path, bytes_store):
    from pileablate.train.metrics import peak_flops

    summary = train(nano(tmp_path, bytes_store, device="cuda", max_steps=6, compile=True, mods=("rope", "swiglu")))
    run = Path(summary["run_dir"])
    config = json.loads((run / "config.json").read_text())
    assert config["hardware"]["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    rows = read_metrics(run)
    assert summary["status"] == "finished" and summary["peak_mem_bytes"] > 0
    assert all(r["peak_mem_bytes"] > 0 for r in rows)
    if peak_flops(torch.cuda.get_device_name(), config["hardware"]["precision"]):
        assert all(0 < r["mfu"] < 1 for r in rows)
    # The checkpoint loads on a CPU-only reader.
    state = torch.load(run / "ckpt" / "latest.pt", weights_only=True, map_location="cpu")
    assert state["progress"]["step"] == 6


def test_with_clipping_off_no_gradient_norm_is_computed_and_the_steps_are_unchanged(tmp_path, bytes_store, monkeypatch):
    clipped = train(nano(tmp_path, bytes_store, name="clip-huge", max_steps=4, grad_clip=1e9))

    def no_clipping(*args, **kwargs):
        raise AssertionError("clip_grad_norm_ called with --grad-clip 0")

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", no_clipping)
    off = train(nano(tmp_path, bytes_store, name="clip-off", max_steps=4, grad_clip=0.0))
    assert off["status"] == "finished"
    rows = read_metrics(Path(off["run_dir"]))
    assert rows and all(row["grad_norm"] is None for row in rows)
    assert losses(Path(off["run_dir"])) == losses(Path(clipped["run_dir"]))  # a factor of 1.0 changed nothing


def test_a_finished_run_is_not_built_again(tmp_path, bytes_store):
    """open_session gives a Session fully built, or says the run is finished (with its summary)."""
    from rich.console import Console

    from pileablate.train.distributed import dist_info_from_env
    from pileablate.train.build import open_session
    from pileablate.train.session import Session
    from pileablate.train.state import AlreadyFinished

    cfg = nano(tmp_path, bytes_store, max_steps=3)
    info, device, console = dist_info_from_env(), torch.device("cpu"), Console(quiet=True)
    session = open_session(cfg, info, device, console)
    assert isinstance(session, Session) and session.optimizer is not None and session.train_model is not None
    first = train(cfg)
    with pytest.raises(AlreadyFinished) as done:
        open_session(cfg, info, device, console)
    assert done.value.summary == first
    assert train(cfg) == first  # its summary, read back; nothing trained

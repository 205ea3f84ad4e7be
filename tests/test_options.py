"""Options declared once: each command's options are its config dataclass's fields, with one name per idea."""

from __future__ import annotations

import dataclasses
import json

import pytest
import typer.main

from pileablate.ablate.options import AblateOptions
from pileablate.cli import app
from pileablate.data.config import PrepareConfig
from pileablate.errors import UserError
from pileablate.inference.options import GenerateOptions
from pileablate.options import exposed_fields, flag_of, help_of
from pileablate.slurm_options import SlurmOptions
from pileablate.train.config import TrainConfig

COMMANDS = {"train": [TrainConfig], "prepare": [PrepareConfig, SlurmOptions], "generate": [GenerateOptions],
            "ablate": [AblateOptions, SlurmOptions, TrainConfig]}


def _command(name: str):
    return typer.main.get_command(app).commands[name]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_is_a_field_whose_help_is_the_help(name):
    params = {p.name: p for p in _command(name).params}
    for cls in COMMANDS[name]:
        for f in exposed_fields(cls, exclude=("mods", "tuning") if cls is TrainConfig and name == "ablate" else ()):
            param = params[f.name]
            assert param.help.replace("\\[", "[") == help_of(cls, f.name)
            if param.opts[0].startswith("--"):  # generate's RUN is the argument
                assert param.opts[0] == flag_of(cls, f.name)
    declared = {f.name for cls in COMMANDS[name] for f in dataclasses.fields(cls)}
    extra = {p for p in params if p not in declared}
    assert extra <= {"verify", "ctx"}, extra  # prepare --verify is an action, not a setting


def test_a_short_flag_means_one_option_in_every_command():
    meaning: dict[str, set] = {}
    for command in typer.main.get_command(app).commands.values():
        for param in command.params:
            for short in [o for o in param.opts + param.secondary_opts if not o.startswith("--")]:
                meaning.setdefault(short, set()).add(param.opts[0])
    assert all(len(names) == 1 for names in meaning.values()), meaning


def test_one_name_for_a_process_share_and_for_the_device():
    names = {name: {o for p in _command(name).params for o in p.opts} for name in ("prepare", "ablate", "train")}
    assert "--task" in names["prepare"] and "--task" in names["ablate"] and "--part" not in names["prepare"]
    assert "--device" in names["ablate"] and "--devices" not in names["ablate"]
    generate = {o for p in _command("generate").params for o in p.opts}
    assert "--top-k" in generate and "--top-k" not in names["train"]  # sampling's top-k; moe's is another idea
    assert "--experts-per-token" in names["train"] and "--experts-per-token" in names["ablate"]


def test_the_array_scripts_repeat_what_was_given_and_nothing_else(tmp_path, monkeypatch):
    """as_args writes the given options back out (flags, repeats, paths absolute); parsed again they are
    the same values."""
    from pileablate.commands.ablate import _forwarded_args

    monkeypatch.chdir(tmp_path)
    command = _command("ablate")
    given = ["--mods", "rope,swiglu", "--sweep", "preset=nano,micro", "--sweep", "max_tokens=1M,2M",
             "--no-match-params", "--compile", "--tracker", "tensorboard", "--data", "d", "--time-limit", "90s",
             "--jobs", "2", "--emit", "slurm", "--slurm-extra", "--exclusive", "--seeds", "3"]
    ctx = command.make_context("ablate", list(given))
    args = _forwarded_args(ctx)
    assert "--jobs" not in args and "--emit" not in args and "--slurm-extra" not in args  # the array's own
    assert args[args.index("--data") + 1] == str(tmp_path / "d")
    assert "--preset" not in args and "--lr" not in args  # defaults are not repeated
    again = command.make_context("ablate", list(args))
    for name in ("mods", "sweep", "match_params", "compile", "trackers", "time_limit", "seeds"):
        assert again.params[name] == ctx.params[name], name


def test_ablate_spreads_its_jobs_over_the_devices_listed(monkeypatch):
    from pileablate.ablate.parallel import plan_slots
    from pileablate.commands.ablate import _devices

    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    assert [s.device for s in plan_slots(2, "cpu")] == ["cpu", "cpu"]
    assert [s.device for s in plan_slots(2, "auto")] == ["cpu", "cpu"]
    assert [s.device for s in plan_slots(2, "cuda:1,cuda:3")] == ["cuda:1", "cuda:3"]
    with pytest.raises(UserError, match="--jobs 2 needs 2 devices"):
        plan_slots(2, "cuda:1")
    with pytest.raises(UserError, match="no GPU is visible"):
        plan_slots(2, "cuda")
    options = {"device": "cuda:0, cuda:1"}
    assert _devices(options) == "cuda:0,cuda:1" and options["device"] == "cuda"
    with pytest.raises(UserError, match="one kind of device"):
        _devices({"device": "cpu,cuda:0"})
    with pytest.raises(UserError, match="use auto, cpu, cuda, cuda:N or mps"):
        _devices({"device": "cuda:0,cuda:x"})
    assert _devices({"device": "cpu"}) is None


def test_train_takes_one_device():
    from pileablate.commands.train import train_config_from_args

    with pytest.raises(UserError, match="one device"):
        train_config_from_args(["--device", "cuda:0,cuda:1"])


def test_run_folders_of_version_2_read_under_the_current_names(tmp_path):
    from pileablate import runfolder

    run = tmp_path / "baseline-s0"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": {"data_dir": "data", "time_limit_s": 60.0, "kv_heads": 2,
                                                           "experts": 4, "top_k": 1, "max_steps": None},
                                                  "model": {"n_experts": 4, "top_k": 1}}))
    (run / "summary.json").write_text(json.dumps({"budget": {"time_limit_s": 60.0, "max_tokens": None, "max_steps": None}}))
    (tmp_path / "point.json").write_text(json.dumps({"axes": ["time_limit_s"], "values": {"time_limit_s": 60.0}}))
    train = runfolder.read_config(run)["train"]
    assert train == {"data": "data", "time_limit": 60.0, "n_kv_head": 2, "n_experts": 4, "experts_per_token": 1,
                     "max_steps": None}
    assert runfolder.read_config(run)["model"] == {"n_experts": 4, "experts_per_token": 1}
    assert runfolder.budget_of(train) == runfolder.read_summary(run)["budget"] == {
        "time_limit": 60.0, "max_tokens": None, "max_steps": None}
    assert runfolder.read_point(tmp_path) == {"axes": ["time_limit"], "values": {"time_limit": 60.0}}
    assert set(TrainConfig(**{k: v for k, v in train.items() if k not in ("max_steps", "n_kv_head")}).to_json()) \
        >= set(train) - {"n_kv_head"}  # gqa's key/value heads are its own option now (gqa.kv_heads)


def test_model_options_are_model_fields_with_the_models_help():
    from pileablate.model.config import ModelConfig
    from pileablate.train.config import MODEL_OPTIONS

    for name in MODEL_OPTIONS:
        assert help_of(ModelConfig, name) in help_of(TrainConfig, name)
    assert flag_of(TrainConfig, "mod_options") == "--mod-option" and flag_of(TrainConfig, "n_experts") == "--n-experts"


@pytest.mark.parametrize("device, message", [("tpu", "use auto, cpu, cuda, cuda:N or mps"), ("cuda:0,cuda:1", "one device")])
def test_generate_names_its_device_as_train_does(tmp_path, capsys, device, message):
    from pileablate.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["generate", str(tmp_path), "--prompt", "x", "--device", device])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and message in err and "\n" not in err

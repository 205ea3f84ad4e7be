"""A user's modification is one file: `--mods-file` loads it, checks it before any run, and it goes
through everything a built-in does (leak probe, matching, ablate in worker processes, report)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pileablate.cli import app, main
from pileablate.errors import UserError
from pileablate import registry
from pileablate.mods_files import load_mods_files, split_record

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "parallel_block.py"
TINY = ["--preset", "nano", "--max-steps", "6", "--eval-every", "3", "--eval-tokens", "2048", "--log-every", "2"]

LEAKY = '''
import torch.nn.functional as F
from torch import nn
from pileablate.mods import Modification, register, register_component

class Unmasked(nn.Module):
    """Attention without its causal mask: every position reads the whole window."""
    def __init__(self, config, layer):
        super().__init__()
        self.c_attn = nn.Linear(config.d_model, 3 * config.d_model)
        self.c_proj = nn.Linear(config.d_model, config.d_model)
    def forward(self, x, ctx):
        q, k, v = self.c_attn(x).chunk(3, dim=-1)
        return self.c_proj(F.scaled_dot_product_attention(q, k, v))

register_component("attention", "unmasked", Unmasked)
register(Modification("unmasked", "attention that forgot its mask", fills={"attention": "unmasked"}))
'''


def write(tmp_path: Path, text: str, name: str = "my_mods.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def one_line_error(capsys, argv: list[str], code: int = 2) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == code and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_the_example_lists_with_its_slot_reference_and_incompatibilities():
    result = CliRunner().invoke(app, ["mods", "--json", "--mods-file", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    row = next(m for m in json.loads(result.stdout)["mods"] if m["name"] == "parallel")
    assert row["fills"] == {"block": "parallel"} and row["size_knob"] == "mlp_hidden"
    assert row["incompatible"] == ["postnorm"] and "GPT-J" in row["reference"]
    assert row["origin"] == str(EXAMPLE)
    assert registry.resolve_mods("rope,parallel") == ("rope", "parallel")


def test_a_user_block_is_leak_probed_and_parameter_matched():
    from pileablate.model.build import build_model_config
    from pileablate.model.gpt import GPT
    from pileablate.model.guards import check_causality
    from pileablate.model.matching import count_params

    load_mods_files([str(EXAMPLE)])
    for preset in ("nano", "micro", "small"):
        base = count_params(build_model_config(preset, (), 257))["active"]
        cfg = build_model_config(preset, "parallel,rope", 257, match_params=True)
        assert abs(count_params(cfg)["active"] / base - 1) <= 0.01
    check_causality(GPT(build_model_config("nano", "all,parallel,mtp,moe", 257)))


BAD_FILES = {
    "does_not_import": ("import torch\nraise RuntimeError('boom')\n", "does not import: RuntimeError: boom"),
    "builtin_name": ("from pileablate.mods import Modification, register\n"
                     "register(Modification('rope', 'mine', sets={'qk_norm': True}))\n", "'rope': the name is already taken"),
    "twice": ("from pileablate.mods import Modification, register\n"
              "register(Modification('twin', 'a', sets={'qk_norm': True}))\n"
              "register(Modification('twin', 'b', sets={'qk_norm': True}))\n", "'twin': the name is already taken"),
    "unknown_slot": ("from pileablate.mods import Modification, register\n"
                     "register(Modification('odd', 'a', fills={'embedding': 'x'}))\n", "'odd' declares unknown slot 'embedding'"),
    "wrong_shape": ("from torch import nn\nfrom pileablate.mods import Modification, register, register_component\n"
                    "register_component('mlp', 'narrow', lambda config, hidden: nn.Linear(config.d_model, hidden))\n"
                    "register(Modification('narrow', 'a', fills={'mlp': 'narrow'}, size_knob=None))\n",
                    "'narrow': the output of its mlp component 'narrow' has shape (2, 16, 256), expected (2, 16, 64)"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_mods_file_is_one_line_naming_the_file_before_anything_is_written(tmp_path, capsys, bytes_store, case):
    text, message = BAD_FILES[case]
    path = write(tmp_path, text)
    runs = tmp_path / "runs"
    err = one_line_error(capsys, ["train", "--mods-file", str(path), "--data", str(bytes_store), "--runs-dir", str(runs), *TINY])
    assert str(path) in err and message in err, err
    assert not runs.exists()
    assert "twin" not in registry.REGISTRY and "narrow" not in registry.COMPONENTS["mlp"]  # nothing half-registered


def test_a_missing_mods_file_is_one_line(tmp_path, capsys):
    err = one_line_error(capsys, ["mods", "--mods-file", str(tmp_path / "nope.py")])
    assert "nope.py: no such file" in err


def test_the_leaky_modification_is_refused_when_its_file_loads(tmp_path, capsys, bytes_store):
    path = write(tmp_path, LEAKY)
    runs = tmp_path / "runs"
    err = one_line_error(capsys, ["train", "--mods-file", str(path), "--mods", "unmasked", "--data", str(bytes_store),
                                  "--runs-dir", str(runs), "--name", "leak", *TINY])
    assert "causality guard failed" in err and "modification 'unmasked'" in err and str(path) in err
    assert not runs.exists()  # refused before any run folder, let alone step 1
    err = one_line_error(capsys, ["mods", "--mods-file", str(path)])  # the check a person runs first
    assert "causality guard failed" in err and "'unmasked'" in err


def test_a_mod_from_a_temp_file_goes_through_ablate_in_workers_and_report(tmp_path, bytes_store, one_torch_thread):
    path = write(tmp_path, EXAMPLE.read_text(), "parallel.py")
    runs = tmp_path / "runs"
    runner = CliRunner()
    result = runner.invoke(app, ["ablate", "--mods-file", str(path), "--mods", "parallel", "--data", str(bytes_store),
                                 "--runs-dir", str(runs), "--jobs", "2", "--device", "cpu,cpu", *TINY])
    assert result.exit_code == 0, (result.output, result.exception)
    config = json.loads((runs / "parallel-s0" / "config.json").read_text())
    recorded = config["train"]["mods_files"]
    assert [split_record(r) for r in recorded] == [(path.resolve(), __import__("hashlib").sha256(path.read_bytes()).hexdigest())]
    assert config["model"]["block"] == "parallel" and config["mods"] == ["parallel"]
    summary = json.loads((runs / "parallel-s0" / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert "| parallel |" in (runs / "report.md").read_text()
    generate = [sys.executable, "-m", "pileablate", "generate", str(runs / "parallel-s0"), "--prompt", "a", "-n", "4"]
    fresh = subprocess.run(generate, capture_output=True, text=True)  # a new process: the recorded file is loaded
    assert fresh.returncode == 0, fresh.stderr

    path.write_text(path.read_text() + "\n# edited\n")
    changed = subprocess.run(generate, capture_output=True, text=True)
    assert changed.returncode == 2 and "has changed since the run recorded it" in changed.stderr
    report = runner.invoke(app, ["report", str(runs), "--no-plots", "--mods-file", str(path)])
    assert report.exit_code == 0, report.output
    assert "parallel" in report.stdout and "changed since the run" in report.stderr
    again = runner.invoke(app, ["train", "--mods-file", str(path), "--mods", "parallel", "--data", str(bytes_store),
                                "--runs-dir", str(runs), "--name", "parallel-s0", *TINY])
    assert isinstance(again.exception, UserError) and "mods_files" in str(again.exception)  # the resume notices it


def test_an_installed_package_registers_through_the_entry_point_group(tmp_path, monkeypatch):
    import importlib.metadata
    import sys

    import pileablate.mods_files as files

    package = tmp_path / "site"
    package.mkdir()
    (package / "their_mods.py").write_text(EXAMPLE.read_text())
    monkeypatch.syspath_prepend(str(package))
    point = importlib.metadata.EntryPoint(name="theirs", value="their_mods", group=files.ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: [point] if group == files.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(files, "_entry_points_loaded", False)
    monkeypatch.delitem(sys.modules, "their_mods", raising=False)
    result = CliRunner().invoke(app, ["mods", "--json"])
    assert result.exit_code == 0, result.output
    row = next(m for m in json.loads(result.stdout)["mods"] if m["name"] == "parallel")
    assert row["origin"] == "entry point theirs (their_mods)"


def test_a_user_schedule_is_a_plain_function_named_by_its_component(tmp_path):
    from pileablate.train.config import TrainConfig
    from pileablate.train.optimizer import make_schedule

    path = write(tmp_path, "from pileablate.mods import Modification, register, register_component\n"
                           "register_component('schedule', 'halving', lambda cfg: lambda step, frac: cfg.lr * 0.5 ** step)\n"
                           "register(Modification('halving', 'halve the rate every step', fills={'schedule': 'halving'}))\n")
    load_mods_files([str(path)])
    schedule = make_schedule(TrainConfig(mods=registry.resolve_mods("halving"), lr=1.0))
    assert schedule.kind == "halving" and [schedule(s, 0.0) for s in range(3)] == [1.0, 0.5, 0.25]
    with pytest.raises(UserError, match="'cosine' and 'halving' cannot be combined"):
        registry.resolve_mods("halving,cosine")  # two schedules: one slot, two components

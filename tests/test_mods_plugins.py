"""Modifications as plug-ins: the extension points papers need (attention scores and masks, positions,
state across layers, a modification's own options) and the examples that use them, each through
`mods --mods-file`, `train` (compiled too) and `ablate`, with the guarantees of a built-in."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pileablate.cli import app, main
from pileablate.errors import UserError
from pileablate.mods_files import load_mods_files

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# example file -> (the modifications it is trained with, its --mod-option for a nano model)
TRAINED = {
    "alibi.py": ("alibi,gqa", []),
    "sliding_window.py": ("window", ["--mod-option", "window.size=16"]),
    "value_residual.py": ("valueres,rope,swiglu", ["--mod-option", "valueres.mix=0.7"]),
    "lion.py": ("lion", ["--mod-option", "lion.beta2=0.95"]),
    "wsd.py": ("wsd", ["--mod-option", "wsd.decay=0.3"]),
    "parallel_block.py": ("parallel,moe", []),
}
TINY = ["--preset", "nano", "--max-steps", "6", "--eval-every", "3", "--eval-tokens", "2048", "--log-every", "2"]


def load(*names: str) -> None:
    load_mods_files([str(EXAMPLES / name) for name in names])


def nano(mods: str, **kw):
    from pileablate.model.build import build_model_config

    return build_model_config("nano", mods, 257, **kw)


def model(mods: str, seed: int = 0, **kw):
    from pileablate.model.gpt import GPT

    torch.manual_seed(seed)
    return GPT(nano(mods, **kw))


def test_every_example_file_is_listed_with_its_options():
    args = ["mods", "--json"] + [a for name in TRAINED for a in ("--mods-file", str(EXAMPLES / name))]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = {m["name"]: m for m in json.loads(result.stdout)["mods"]}
    assert rows["lion"]["options"]["beta2"] == {"default": 0.99, "help": "momentum decay"}
    assert rows["wsd"]["options"]["decay"]["default"] == 0.2 and rows["window"]["options"]["size"]["default"] == 256
    assert rows["alibi"]["fills"] == {"position": "alibi", "score": "alibi"}
    assert rows["valueres"]["fills"] == {"attention": "valueres"}


@pytest.mark.parametrize("example", list(TRAINED))
def test_each_example_trains_compiled_and_records_its_options(example, tmp_path, bytes_store, monkeypatch,
                                                              one_torch_thread):
    """One compiled run per example on a CPU: tracing is where a user's file used to break (the file
    must be importable again by its module name). The eager backend traces without generating code."""
    monkeypatch.setenv("PILEABLATE_COMPILE_BACKEND", "eager")
    mods, options = TRAINED[example]
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["train", "--mods-file", str(EXAMPLES / example), "--mods", mods, *options,
                                      "--data", str(bytes_store), "--runs-dir", str(runs), "--name", "run",
                                      "--compile", *TINY])
    assert result.exit_code == 0, (result.output, result.exception)
    config = json.loads((runs / "run" / "config.json").read_text())
    summary = json.loads((runs / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["guards"]["causality"] == "passed"
    assert config["train"]["mod_options"] == [o for o in options if o != "--mod-option"]
    assert math.isfinite(summary["final_val_loss"])


def test_alibi_combines_with_gqa_and_valueres_with_rope_and_swiglu():
    load("alibi.py", "value_residual.py")
    from pileablate.model.guards import check_causality

    alibi = nano("alibi,gqa", n_head=4, d_model=64)
    assert alibi.scores == ("alibi",) and alibi.kv_heads == 2 and alibi.position == "alibi"
    check_causality(model("alibi,gqa", n_head=4, d_model=64))
    valueres = nano("valueres,rope,swiglu")
    assert (valueres.attention, valueres.position, valueres.mlp) == ("valueres", "rope", "swiglu")
    check_causality(model("valueres,rope,swiglu,gqa"))
    with pytest.raises(UserError, match="'rope' and 'alibi' cannot be combined"):
        nano("alibi,rope")  # both are position components


def test_the_score_hook_is_exactly_alibis_formula():
    """The hooked attention (explicit path on a CPU) against ALiBi written out by hand."""
    load("alibi.py")
    net = model("alibi", n_head=4, d_model=64, kernel="math").eval()
    attn = net.transformer.h[0].attn
    x = torch.randn(2, 10, 64)
    from pileablate.model.context import Context

    with torch.no_grad():
        got = attn(x, Context(start=0, length=10, hooks=net.hooks))
        q, k, v = attn.qkv(x, None)
        slopes = torch.tensor([2.0 ** (-8.0 * (i + 1) / 4) for i in range(4)]).view(1, 4, 1, 1)
        pos = torch.arange(10)
        scores = q @ k.transpose(-2, -1) / math.sqrt(16) + slopes * (pos[None, :] - pos[:, None])
        scores = scores.masked_fill(pos[None, :] > pos[:, None], float("-inf"))
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 10, 64)
    torch.testing.assert_close(got, attn.c_proj(y), rtol=1e-5, atol=1e-6)


def test_the_sliding_window_sees_exactly_the_last_tokens():
    load("sliding_window.py")
    net = model("window", mod_options=["window.size=3"]).eval()
    idx = torch.randint(0, 257, (1, 12))
    with torch.no_grad():
        base = net(idx).logits
        far = idx.clone()
        far[0, :5] = (far[0, :5] + 1) % 257  # tokens 0..4: beyond every window from position 7 on (2 layers: 2*2 back)
        moved = net(far).logits
    torch.testing.assert_close(base[0, 9:], moved[0, 9:])  # receptive field of two layers of window 3: 5 tokens
    assert not torch.allclose(base[0, 5], moved[0, 5])


@pytest.mark.parametrize("mods", ["alibi,gqa", "window,rope", "valueres,rope", "valueres,alibi,window"])
def test_cached_decoding_with_hooks_and_shared_state_is_exact(mods):
    load("alibi.py", "sliding_window.py", "value_residual.py")
    net = model(mods, n_head=4, d_model=64, mod_options=["window.size=5"]).eval()
    idx = torch.randint(0, 257, (2, 12))
    with torch.no_grad():
        full = net(idx).logits
        cache = net.new_kv_cache(2, 12)
        first = net(idx[:, :7], kv_cache=cache).logits
        steps = [net(idx[:, t:t + 1], kv_cache=cache).logits for t in range(7, 12)]
    torch.testing.assert_close(torch.cat([first, *steps], dim=1), full, rtol=1e-4, atol=1e-5)


def test_value_residual_shares_the_first_layers_values_across_layers():
    load("value_residual.py")
    net = model("valueres", mod_options=["valueres.mix=0.0"]).eval()  # every later layer uses layer 0's values
    layers = net.transformer.h
    assert [block.attn.layer for block in layers] == [0, 1]
    seen = {}
    original = type(layers[1].attn).qkv

    def spy(self, x, ctx):
        q, k, v = original(self, x, ctx)
        seen[self.layer] = v
        return q, k, v

    type(layers[1].attn).qkv = spy
    try:
        with torch.no_grad():
            net(torch.randint(0, 257, (1, 8)))
    finally:
        type(layers[1].attn).qkv = original
    torch.testing.assert_close(seen[1], seen[0])


def test_mod_options_are_typed_checked_and_part_of_the_same_run_rule(tmp_path, bytes_store, capsys):
    from pileablate.registry import options_of, parse_mod_options

    load("lion.py", "wsd.py")
    assert parse_mod_options(["lion.beta2=0.95", "wsd.decay=0.1"], ("lion",)) == {"lion": {"beta2": 0.95}}
    for bad, message in [("lion.beta3=1", "lion has no option 'beta3' (its options: beta1, beta2, lr_scale)"),
                         ("lion.beta2=fast", "'fast' is not a float"), ("lion=1", "write NAME.KEY=VALUE"),
                         ("nope.x=1", "unknown modification 'nope'")]:
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_mod_options([bad], ("lion",))
    from pileablate.train.config import TrainConfig

    assert options_of(TrainConfig(mod_options=("lion.beta2=0.9",)), "lion").beta2 == 0.9
    assert options_of(TrainConfig(), "lion").beta2 == 0.99  # the declared default
    runs = tmp_path / "runs"
    base = ["train", "--mods-file", str(EXAMPLES / "lion.py"), "--mods", "lion", "--data", str(bytes_store),
            "--runs-dir", str(runs), "--name", "lion", *TINY]
    result = CliRunner().invoke(app, [*base, "--mod-option", "lion.beta2=0.95"])
    assert result.exit_code == 0, result.output
    config = json.loads((runs / "lion" / "config.json").read_text())
    assert config["learning_rates"] == {"lion": pytest.approx(1e-4)}  # Lion's own rate: lr_scale 0.1 x 1e-3
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--mod-option", "lion.beta2=0.9", "--max-steps", "9"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "mod_options" in err and err.count("\n") == 1


def test_an_ablation_treats_the_examples_like_built_ins(tmp_path, bytes_store, one_torch_thread):
    """Sizes matched (or flagged), rates tuned, verdicts: for every example at once, each alone and all
    together (they fill different slots and hooks, so they combine)."""
    runs = tmp_path / "runs"
    names = ["alibi", "window", "valueres", "lion", "wsd", "parallel"]
    args = ["ablate", *[a for f in TRAINED for a in ("--mods-file", str(EXAMPLES / f))], "--mods", ",".join(names),
            "--mod-option", "window.size=16", "--data", str(bytes_store), "--runs-dir", str(runs), "--seeds", "2",
            "--tune-lr", "1e-3,3e-3", *TINY]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    report = (runs / "report.md").read_text()
    for name in names:
        assert f"| {name} |" in report, name
        config = json.loads((runs / f"{name}-s0" / "config.json").read_text())
        summary = json.loads((runs / f"{name}-s0" / "summary.json").read_text())
        assert summary["status"] == "finished" and config["mods"] == [name]
    assert json.loads((runs / "window-s0" / "config.json").read_text())["train"]["mod_options"] == ["window.size=16"]
    assert json.loads((runs / "baseline-s0" / "config.json").read_text())["train"]["mod_options"] == []
    summary_csv = (runs / "summary.csv").read_text()
    assert "verdict" in summary_csv.splitlines()[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("mods", ["alibi", "window", "alibi,window,gqa"])
def test_flex_attention_matches_the_explicit_path_on_gpu(mods):
    load("alibi.py", "sliding_window.py")
    fused = model(mods, n_head=4, d_model=64, mod_options=["window.size=9"]).cuda().eval()
    explicit = model(mods, n_head=4, d_model=64, mod_options=["window.size=9"], dropout=0.0).eval()
    explicit.load_state_dict(fused.state_dict())
    idx = torch.randint(0, 257, (2, 64))
    with torch.no_grad():
        a = fused(idx.cuda()).logits.float().cpu()
        b = explicit(idx).logits
    torch.testing.assert_close(a, b, atol=2e-3, rtol=2e-3)


def leaky_attention(name: str, when: str, start: int) -> str:
    """A user's file: multi-head attention that, when `when` holds, also hands each position from
    `start` on the next token."""
    return f'''
from pileablate.mods import CausalSelfAttention, Modification, register, register_component

class Leaky(CausalSelfAttention):
    def forward(self, x, ctx):
        y = super().forward(x, ctx)
        if {when}:
            y = y.clone()
            y[:, {start}:-1] = y[:, {start}:-1] + x[:, {start + 1}:]
        return y

register_component("attention", "{name}", Leaky)
register(Modification("{name}", "attention that leaks when {when}", fills={{"attention": "{name}"}}))
'''


TRAINING_ONLY_LEAK = leaky_attention("sloppy", "self.training", 0)  # a training path that forgot the mask
LATE_LEAK = leaky_attention("farsighted", "x.shape[1] > 301", 300)  # invisible to a probe of 256 tokens
ROPE_ONLY_LEAK = leaky_attention("sneaky", "ctx.rotate is not None", 0)  # alone (learned positions) it passes


@pytest.mark.parametrize("text, name, where", [(TRAINING_ONLY_LEAK, "sloppy", "training mode"),
                                                (LATE_LEAK, "farsighted", "at position 3")])
def test_leaks_only_in_training_or_only_far_are_refused_naming_the_modification(tmp_path, capsys, bytes_store,
                                                                                text, name, where):
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--mods-file", str(path), "--mods", name, "--seq-len", "512", "--data", str(bytes_store),
              "--runs-dir", str(runs), *TINY])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert f"modification '{name}'" in err and "causality guard failed" in err and where in err
    assert not runs.exists()


def test_a_leak_only_in_combination_is_refused_before_any_tuning_run(tmp_path, capsys, bytes_store):
    path = tmp_path / "sneaky.py"
    path.write_text(ROPE_ONLY_LEAK)
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", "--mods-file", str(path), "--mods", "sneaky,rope", "--data", str(bytes_store),
              "--runs-dir", str(runs), "--tune-lr", "1e-3,3e-3", *TINY])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    line = err.strip().splitlines()[-1]
    assert "configuration 'rope+sneaky'" in line and "causality guard failed" in line and "sneaky" in line
    assert "learning rate" not in line and not list(runs.glob("*/config.json"))


def test_a_run_folder_of_pileablate_3_still_resumes_reports_and_generates(tmp_path, bytes_store, one_torch_thread):
    """Version 3 stored moe and mtp as booleans, gqa as an attention of its own, the MTP heads as
    `mtp_heads.*`: such a folder is read as this version names it and continues exactly."""
    runs = tmp_path / "runs"
    common = ["--mods", "moe,mtp,gqa", "--data", str(bytes_store), "--runs-dir", str(runs), "--preset", "nano",
              "--eval-every", "5", "--eval-tokens", "2048", "--log-every", "5"]
    runner = CliRunner()
    assert runner.invoke(app, ["train", *common, "--name", "whole", "--max-steps", "10"]).exit_code == 0
    assert runner.invoke(app, ["train", *common, "--name", "old", "--max-steps", "5"]).exit_code == 0
    config_path = runs / "old" / "config.json"
    config = json.loads(config_path.read_text())
    model = config["model"]
    for added in ("feedforward", "objective", "scores", "masks", "mods", "mod_options"):
        model.pop(added)
    model.update(moe=True, mtp=True, attention="gqa", n_kv_head=None)
    config["train"].pop("mod_options")
    config["train"]["n_kv_head"] = None
    config_path.write_text(json.dumps(config))
    checkpoint = runs / "old" / "ckpt" / "latest.pt"
    state = torch.load(checkpoint, weights_only=True)
    state["model"] = {k.replace("objective.", "mtp_heads.", 1): v for k, v in state["model"].items()}
    torch.save(state, checkpoint)
    resumed = runner.invoke(app, ["train", *common, "--name", "old", "--max-steps", "10"])
    assert resumed.exit_code == 0, (resumed.output, resumed.exception)
    final = {name: json.loads((runs / name / "summary.json").read_text())["final_val_loss"] for name in ("old", "whole")}
    assert final["old"] == final["whole"]
    report = runner.invoke(app, ["report", str(runs), "--no-plots"])
    assert report.exit_code == 0, report.output
    generated = runner.invoke(app, ["generate", str(runs / "old"), "--prompt", "a", "-n", "3"])
    assert generated.exit_code == 0, generated.output

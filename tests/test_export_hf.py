"""`pileablate export --format hf`: the exported transformers model computes the run's logits."""

from __future__ import annotations

import json

import pytest
import torch

from pileablate.errors import UserError
from pileablate.export.hf import build_hf_model, export_hf, hf_architecture
from pileablate.model.build import build_model_config
from pileablate.model.gpt import GPT

from test_generate_cli import cli, trained_run  # noqa: F401  (trained_run: fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

transformers = pytest.importorskip("transformers", reason="export needs the optional 'hf' extra")
pytest.importorskip("safetensors", reason="export needs the optional 'hf' extra")


def make_model(mods: str, **overrides) -> GPT:
    torch.manual_seed(0)
    model = GPT(build_model_config("nano", mods, 257, **overrides)).eval()
    with torch.no_grad():
        # Random-init norms are all ones and biases all zeros: perturb them so a mapping that drops or
        # swaps them cannot pass unnoticed.
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.2)
    return model


def logits_gap(model: GPT, hf_model, n: int = 64) -> float:
    idx = torch.randint(0, 257, (2, n), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return float((model(idx).logits - hf_model(idx).logits).abs().max())


@pytest.mark.parametrize(
    "mods, arch",
    [
        ("", "GPT2LMHeadModel"),
        ("warmup,cosine", "GPT2LMHeadModel"),
        ("rope,rmsnorm,swiglu", "LlamaForCausalLM"),
        ("rope,rmsnorm,swiglu,gqa", "LlamaForCausalLM"),
        ("all", "LlamaForCausalLM"),
    ],
)
def test_exported_model_reloads_offline_with_the_same_logits(tmp_path, mods, arch):
    model = make_model(mods)
    export_hf(model, tmp_path, eot_id=256)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True).float().eval()
    assert type(loaded).__name__ == arch
    assert loaded.config.vocab_size == model.config.vocab_size == 320
    assert logits_gap(model, loaded) < 1e-4


def test_llama_config_carries_the_model_options(tmp_path):
    model = make_model("rope,rmsnorm,swiglu,gqa", n_kv_head=1)
    export_hf(model, tmp_path, eot_id=256)
    cfg = json.loads((tmp_path / "config.json").read_text())
    c = model.config
    assert cfg["num_key_value_heads"] == 1 and cfg["num_attention_heads"] == c.n_head
    assert cfg["intermediate_size"] == c.ffn_hidden and cfg["hidden_act"] == "silu"
    assert cfg["max_position_embeddings"] == c.seq_len and cfg["rms_norm_eps"] == c.norm_eps
    assert cfg["attention_bias"] is True and cfg["mlp_bias"] is True and cfg["tie_word_embeddings"] is True
    theta = cfg.get("rope_theta", cfg.get("rope_parameters", {}).get("rope_theta"))
    assert theta == c.rope_theta
    assert cfg["eos_token_id"] == 256


def test_models_without_biases_export_too():
    for mods in ("", "rope,rmsnorm,swiglu"):
        model = make_model(mods, bias=False)
        assert logits_gap(model, build_hf_model(model)) < 1e-4


def test_gpt2_weights_are_transposed_conv1d(tmp_path):
    model = make_model("")
    hf_model = build_hf_model(model)
    ours = model.transformer.h[0].mlp.c_fc.weight
    theirs = hf_model.transformer.h[0].mlp.c_fc.weight
    assert theirs.shape == ours.shape[::-1] and torch.equal(theirs, ours.t())


@pytest.mark.parametrize(
    "mods, named",
    [
        ("mla,rope,rmsnorm,swiglu", "mla"),
        ("moe,rope,rmsnorm,swiglu", "moe"),
        ("mtp", "mtp"),
        ("postnorm", "postnorm"),
        ("rope", "rope"),
        ("rmsnorm,swiglu", "rmsnorm"),
        ("gqa", "gqa"),
        ("qknorm,rope,rmsnorm,swiglu", "qknorm"),
        ("softcap", "softcap"),
        ("relu2,rope,rmsnorm", "relu2"),
    ],
)
def test_modifications_without_a_hf_equivalent_are_refused_by_name(mods, named):
    cfg = build_model_config("nano", mods, 257)
    with pytest.raises(UserError, match=f"'{named}' has no Hugging Face equivalent"):
        hf_architecture(cfg)


def test_every_modification_export_cannot_express_is_named_in_one_line():
    with pytest.raises(UserError) as err:
        hf_architecture(build_model_config("nano", "qknorm,softcap,mtp", 257))
    assert "modifications 'mtp', 'qknorm', 'softcap' have no Hugging Face equivalent" in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_transformers_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_transformers(name, *args, **kwargs):
        if name.split(".")[0] in ("transformers", "safetensors"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_transformers)
    with pytest.raises(UserError, match=r"pip install 'pileablate\[hf\]'"):
        build_hf_model(make_model(""))


def test_export_cli_writes_a_checkpoint_transformers_loads(capsys, tmp_path_factory, bytes_store, tmp_path):
    from pileablate.inference.trained import load_trained_run

    run = trained_run(tmp_path_factory, bytes_store, "base")
    out = tmp_path / "hf"
    code, stdout, err = cli(capsys, "export", str(run), "--format", "hf", "--out", str(out))
    assert code == 0, err
    assert "GPT2LMHeadModel" in err and "verified" in err
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "pileablate.json"}
    model, config, _ = load_trained_run(run)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out, local_files_only=True).float().eval()
    assert logits_gap(model, loaded) < 1e-4
    # A second export into the same folder does not silently overwrite it.
    code, _, err = cli(capsys, "export", str(run), "--out", str(out))
    assert code == 2 and "--overwrite" in err
    code, _, err = cli(capsys, "export", str(run), "--out", str(out), "--overwrite", "--no-verify")
    assert code == 0, err


def test_export_cli_llama_run(capsys, tmp_path_factory, bytes_store, tmp_path):
    run = trained_run(tmp_path_factory, bytes_store, "llama", "--mods", "rope,rmsnorm,swiglu,gqa")
    code, _, err = cli(capsys, "export", str(run), "--out", str(tmp_path / "hf"))
    assert code == 0, err
    assert "LlamaForCausalLM" in err and "verified" in err


def test_export_cli_refuses_mla_in_one_line_and_writes_nothing(capsys, tmp_path_factory, bytes_store, tmp_path):
    run = trained_run(tmp_path_factory, bytes_store, "mla", "--mods", "mla")
    code, _, err = cli(capsys, "export", str(run), "--out", str(tmp_path / "hf"))
    assert code == 2 and err.startswith("error: ") and "'mla'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "hf").exists()

"""Each modification against its definition, and the registry that names them."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from pileablate.errors import UserError
from pileablate.model.build import build_model_config
from pileablate.model.config import ModelConfig
from pileablate.mods.swiglu import mlp_params, swiglu_hidden
from pileablate.model.gpt import GPT
from pileablate.model.moe import MoE
from pileablate.model.norms import RMSNorm
from pileablate.registry import (
    REGISTRY,
    SEED_MODS,
    incompatible_with,
    model_changes,
    resolve_mods,
    trainer_component,
)
from pileablate.model.context import Context
from pileablate.model.rope import Rotary, apply_rotary


def tiny(mods="", **kw) -> ModelConfig:
    base = dict(n_layer=2, n_head=4, d_model=32, seq_len=16)
    base.update(kw)
    return build_model_config("nano", mods, 61, **base)


# ---- registry ------------------------------------------------------------------------------------

def test_resolve_mods_canonical_order_aliases_and_dedup():
    assert resolve_mods("") == () == resolve_mods("baseline") == resolve_mods(None)
    assert resolve_mods("all") == SEED_MODS == ("warmup", "cosine", "rmsnorm", "rope", "swiglu")
    assert resolve_mods("swiglu, ROPE,rope") == ("rope", "swiglu")
    assert resolve_mods(["mtp", "gqa,rope"]) == ("rope", "gqa", "mtp")
    assert resolve_mods("all,moe") == SEED_MODS + ("moe",)


def test_unknown_mod_is_one_line_error_listing_valid_names():
    with pytest.raises(UserError) as err:
        resolve_mods("rope,flashy")
    msg = str(err.value)
    assert "flashy" in msg and "\n" not in msg
    assert all(name in msg for name in [*REGISTRY, "all", "baseline"])


def test_incompatible_mods_rejected_with_valid_names():
    with pytest.raises(UserError, match="'gqa' and 'mla' cannot be combined.*valid: warmup"):
        resolve_mods("mla,gqa")
    with pytest.raises(UserError):
        build_model_config("nano", "gqa,mla", 257)


def test_every_registry_entry_changes_real_fields():
    model_fields = set(ModelConfig.__dataclass_fields__)
    for mod in REGISTRY.values():
        assert mod.target in ("model", "trainer") and mod.summary and (mod.fills or mod.sets)
        if mod.target == "model":
            assert set(mod.sets) <= model_fields, mod.name
            assert build_model_config("nano", mod.name, 257).mods == (mod.name,)
        for other in incompatible_with(mod.name):
            assert mod.name in incompatible_with(other)  # symmetric


def test_trainer_and_model_changes_split_by_target():
    assert trainer_component("warmup", "schedule").name == "warmup"
    assert trainer_component("cosine", "schedule").name == "cosine"
    assert trainer_component("all", "schedule").name == "cosine"  # cosine includes the warmup
    assert trainer_component("rope", "schedule").name == "constant" and model_changes("warmup,cosine", {}) == {}
    assert model_changes("all", {}) == {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu"}


def test_mods_command_table_and_json():
    from pileablate.cli import app

    runner = CliRunner()
    table = runner.invoke(app, ["mods"], env={"COLUMNS": "200"})
    assert table.exit_code == 0
    for name in REGISTRY:
        assert name in table.stdout
    out = runner.invoke(app, ["mods", "--json"])
    data = json.loads(out.stdout)
    assert [m["name"] for m in data["mods"]] == list(REGISTRY)
    assert next(m for m in data["mods"] if m["name"] == "gqa")["incompatible"] == ["mla"]
    assert data["aliases"]["all"] == list(SEED_MODS)


# ---- rmsnorm -------------------------------------------------------------------------------------

def test_rmsnorm_equals_its_formula_and_replaces_every_layernorm():
    torch.manual_seed(0)
    norm = RMSNorm(32, eps=1e-5)
    norm.weight.data.normal_()
    x = torch.randn(3, 5, 32) * 4 + 1
    expected = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-5) * norm.weight
    torch.testing.assert_close(norm(x), expected)
    assert list(dict(norm.named_parameters())) == ["weight"]
    model = GPT(tiny("rmsnorm"))
    kinds = {type(m).__name__ for m in model.modules()}
    assert "RMSNorm" in kinds and "LayerNorm" not in kinds


def test_rmsnorm_computes_in_fp32_and_returns_input_dtype():
    norm = RMSNorm(16)
    x = (torch.randn(4, 16) * 300).to(torch.bfloat16)
    y = norm(x)
    assert y.dtype == torch.bfloat16
    ref = (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-5)).to(torch.bfloat16)
    assert torch.equal(y, (norm.weight * ref).to(torch.bfloat16))


# ---- rope ----------------------------------------------------------------------------------------

def test_rotary_scores_depend_only_on_position_offset():
    torch.manual_seed(0)
    rot = Rotary(16, max_len=64)
    q, k = torch.randn(16), torch.randn(16)

    def score(m: int, n: int) -> float:
        cos, sin = rot(0, 64)
        return float(apply_rotary(q, cos[m], sin[m]) @ apply_rotary(k, cos[n], sin[n]))

    for m, n in [(5, 2), (9, 9), (3, 11)]:
        for shift in (1, 7, 40):
            assert math.isclose(score(m, n), score(m + shift, n + shift), rel_tol=1e-4, abs_tol=1e-5)
    by_offset = torch.tensor([score(m, 0) for m in range(12)])
    assert by_offset.std() > 0.05  # ... and do depend on the offset


def test_rotary_uses_llama_rotate_half_layout():
    rot = Rotary(8, max_len=4, theta=10000.0)
    inv = 1.0 / 10000 ** (torch.arange(0, 8, 2).float() / 8)
    cos, sin = rot(3, 1)
    torch.testing.assert_close(cos[0], torch.cat([(3 * inv).cos()] * 2))
    x = torch.arange(8.0)
    rotated = torch.cat([-x[4:], x[:4]])
    torch.testing.assert_close(apply_rotary(x, cos, sin), x * cos + rotated * sin)


def test_rope_removes_learned_positions():
    model = GPT(tiny("rope"))
    assert "transformer.wpe.weight" not in dict(model.named_parameters())
    assert "transformer.wpe.weight" in dict(GPT(tiny()).named_parameters())


# ---- swiglu --------------------------------------------------------------------------------------

@pytest.mark.parametrize("d_model", [32, 64, 128, 192, 256, 384, 512, 768, 1024, 1280, 1600])
@pytest.mark.parametrize("bias", [True, False])
def test_swiglu_params_within_one_percent_of_gelu_mlp(d_model, bias):
    hidden = swiglu_hidden(d_model, bias)
    gelu = mlp_params(d_model, 4 * d_model, False, bias)
    assert abs(mlp_params(d_model, hidden, True, bias) - gelu) <= 0.01 * gelu
    if d_model % 192 == 0:
        assert hidden == 8 * d_model // 3
    with torch.device("meta"):
        mlp = GPT(tiny("swiglu", d_model=d_model, n_head=4, bias=bias, n_layer=1)).transformer.h[0].mlp
    assert sum(p.numel() for p in mlp.parameters()) == mlp_params(d_model, hidden, True, bias)


def test_swiglu_equals_its_formula():
    torch.manual_seed(0)
    mlp = GPT(tiny("swiglu")).transformer.h[0].mlp
    x = torch.randn(2, 3, 32)
    expected = mlp.w2(torch.nn.functional.silu(mlp.w1(x)) * mlp.w3(x))
    torch.testing.assert_close(mlp(x), expected)


# ---- gqa -----------------------------------------------------------------------------------------

def test_gqa_with_all_kv_heads_equals_multi_head_attention():
    torch.manual_seed(0)
    mha = GPT(tiny("rope"))
    gqa = GPT(tiny("rope,gqa", n_kv_head=4))
    gqa.load_state_dict(mha.state_dict())
    idx = torch.randint(0, 61, (2, 16))
    torch.testing.assert_close(gqa(idx).logits, mha(idx).logits)


def test_gqa_query_head_h_reads_kv_head_h_div_group():
    """With one kv head per group made distinct, group membership follows h // (n_head // kv)."""
    from pileablate.model.attention import attend

    torch.manual_seed(0)
    q = torch.randn(1, 4, 5, 8)
    k, v = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    out = attend(q, k, v, "sdpa", 0.0)
    for h in range(4):
        ref = attend(q[:, h : h + 1], k[:, h // 2 : h // 2 + 1], v[:, h // 2 : h // 2 + 1], "math", 0.0)
        torch.testing.assert_close(out[:, h : h + 1], ref, atol=1e-5, rtol=1e-5)


def test_gqa_defaults_and_bad_kv_heads():
    assert build_model_config("small", "gqa", 257).kv_heads == 3
    assert build_model_config("nano", "gqa", 257).kv_heads == 1  # n_head 2 -> at least 1 (MQA)
    assert build_model_config("nano", "", 257, n_kv_head=1).kv_heads == 1  # a knob of attention
    assert build_model_config("micro", "gqa", 257, mod_options=["gqa.kv_heads=1"]).kv_heads == 1
    with pytest.raises(UserError, match="must divide n_head 12"):
        build_model_config("small", "gqa", 257, n_kv_head=5)


def test_gqa_shrinks_key_value_projection():
    cfg = tiny("gqa", n_kv_head=2)
    attn = GPT(cfg).transformer.h[0].attn
    assert attn.c_attn.weight.shape == ((4 + 2 * 2) * 8, 32)


# ---- mla -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("mods", ["mla", "mla,rope"])
def test_mla_keys_values_come_only_from_the_latent(mods):
    """Changing the latent's up-projection changes outputs; the cache holds latent (+ rope key) only."""
    cfg = tiny(mods, kv_latent_dim=12)
    model = GPT(cfg)
    attn = model.transformer.h[0].attn
    assert attn.kv_up.in_features == 12
    cache = model.new_kv_cache(1, 16)
    expected = {"latent": (1, 16, 12)}
    if "rope" in mods:
        expected["k_rope"] = (1, 1, 16, cfg.rope_dim)
    assert {k: tuple(v.shape) for k, v in cache.layers[0].items()} == expected


def test_mla_rotary_part_makes_scores_depend_on_offset_only():
    """A token's attention output pattern shifts with the sequence: same tokens at a later offset in a
    cache give the same logits as at the start (scores depend on relative positions only)."""
    torch.manual_seed(0)
    model = GPT(tiny("mla,rope")).eval()
    idx = torch.randint(0, 61, (1, 6))
    with torch.no_grad():
        direct = model(idx).logits
        rotary = next(t for t in model.transformer.wpe.tables if t.dim == model.config.rope_dim)
        cos, sin = rotary(0, 6)
        cos2, sin2 = rotary(5, 6)
        q, k = torch.randn(model.config.rope_dim), torch.randn(model.config.rope_dim)
        s1 = apply_rotary(q, cos[4], sin[4]) @ apply_rotary(k, cos[1], sin[1])
        s2 = apply_rotary(q, cos2[4], sin2[4]) @ apply_rotary(k, cos2[1], sin2[1])
    assert torch.isfinite(direct).all()
    torch.testing.assert_close(s1, s2, atol=1e-5, rtol=1e-4)


# ---- moe -----------------------------------------------------------------------------------------

def test_moe_router_weights_sum_to_one_over_chosen_experts():
    torch.manual_seed(0)
    model = GPT(tiny("moe", n_experts=6, experts_per_token=3))
    moe = model.transformer.h[0].mlp
    assert isinstance(moe, MoE)
    x = torch.randn(40, 32)
    weights, experts, probs = moe.route(x)
    assert weights.shape == experts.shape == (40, 3)
    torch.testing.assert_close(weights.sum(-1), torch.ones(40))
    assert (weights > 0).all()
    assert all(len(set(row.tolist())) == 3 for row in experts)  # distinct experts per token
    torch.testing.assert_close(probs.sum(-1), torch.ones(40))


def test_moe_output_is_weighted_sum_of_chosen_experts():
    torch.manual_seed(0)
    moe = GPT(tiny("moe", n_experts=4, experts_per_token=2)).transformer.h[0].mlp
    x = torch.randn(1, 5, 32)
    ctx = Context(start=0, length=5)
    out = moe(x, ctx)
    (balance,), weight = ctx.losses["moe_balance"]
    assert weight == 0.01
    weights, experts, _ = moe.route(x.view(5, 32))
    for t in range(5):
        ref = sum(weights[t, s] * moe.experts[int(experts[t, s])](x[0, t]) for s in range(2))
        torch.testing.assert_close(out[0, t], ref, atol=1e-6, rtol=1e-5)
    assert balance.item() >= 1.0 - 1e-6  # E * sum f P >= 1 iff not better than balanced (Cauchy-Schwarz bound ~)


@pytest.mark.parametrize("mods", ["moe", "swiglu,moe"])
def test_moe_active_params_match_dense_total_counts_all_experts(mods):
    dense = GPT(tiny(mods.replace("moe", "").strip(","))).num_params()["total"]
    model = GPT(tiny(mods, n_experts=8, experts_per_token=2))
    counts = model.num_params()
    per_expert = sum(p.numel() for p in model.transformer.h[0].mlp.experts[0].parameters())
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["total"] - counts["active"] == 2 * (8 - 2) * per_expert  # 2 layers, 6 idle experts each
    # active = dense + the router (d*E per layer) + one extra output bias per extra active expert
    assert abs(counts["active"] - dense) <= 0.03 * dense


def test_moe_balance_loss_in_aux_and_aux_loss():
    torch.manual_seed(0)
    model = GPT(tiny("moe"))
    idx = torch.randint(0, 61, (2, 16))
    out = model(idx, idx)
    assert "moe_balance" in out.aux
    torch.testing.assert_close(out.aux_loss, 0.01 * out.aux["moe_balance"])
    out.aux_loss.backward()
    assert model.transformer.h[0].mlp.router.weight.grad.abs().sum() > 0


# ---- mtp -----------------------------------------------------------------------------------------

def test_mtp_heads_leave_next_token_logits_and_loss_unchanged():
    torch.manual_seed(0)
    plain = GPT(tiny())
    torch.manual_seed(1)
    mtp = GPT(tiny("mtp", mtp_depth=3))
    missing, unexpected = mtp.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(name.startswith("objective.") for name in missing)
    idx = torch.randint(0, 61, (2, 16))
    a, b = plain(idx, idx), mtp(idx, idx)
    torch.testing.assert_close(a.logits, b.logits)
    torch.testing.assert_close(a.loss, b.loss)
    assert list(b.extra_logits) == ["mtp head t+2", "mtp head t+3"] and set(b.aux) == {"mtp_loss", "mtp_loss_2", "mtp_loss_3"}
    assert b.aux_loss.item() > 0


def test_mtp_head_k_is_trained_on_token_t_plus_k():
    torch.manual_seed(0)
    model = GPT(tiny("mtp", mtp_depth=2))
    idx = torch.randint(0, 61, (2, 16))
    targets = torch.randint(0, 61, (2, 16))
    out = model(idx, targets)
    lg = out.extra_logits["mtp head t+2"]
    ref = torch.nn.functional.cross_entropy(lg[:, :-1].reshape(-1, 64), targets[:, 1:].reshape(-1))
    torch.testing.assert_close(out.aux["mtp_loss_2"], ref)
    torch.testing.assert_close(out.aux_loss, 0.3 * ref)


def test_mtp_depth_must_be_at_least_two():
    with pytest.raises(UserError, match="mtp-depth"):
        build_model_config("nano", "mtp", 257, mtp_depth=1)


# ---- postnorm ------------------------------------------------------------------------------------

def test_postnorm_normalises_after_the_residual_add():
    torch.manual_seed(0)
    model = GPT(tiny("postnorm")).eval()
    block = model.transformer.h[0]
    x = torch.randn(1, 4, 32)
    ctx = Context(start=0, length=4)
    h = block.ln_1(x + block.attn(x, ctx))
    expected = block.ln_2(h + block.mlp(h, ctx))
    out = block(x, ctx)
    torch.testing.assert_close(out, expected)
    assert isinstance(model.transformer.ln_f, torch.nn.Identity)
    # every block output is normalised: per-position mean 0, variance 1 (LayerNorm gain 1, bias 0)
    assert out.mean(-1).abs().max() < 1e-5


def test_moe_every_expert_gets_a_gradient_even_without_tokens():
    """DistributedDataParallel fails on parameters that take no part in a step."""
    torch.manual_seed(0)
    model = GPT(tiny("moe", n_experts=8, experts_per_token=1))
    moe = model.transformer.h[0].mlp
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0].fill_(1.0)  # with positive inputs every token picks expert 0
    x = torch.rand(1, 4, 32) + 0.1
    ctx = Context(start=0, length=4)
    out = moe(x, ctx)
    balance = ctx.losses["moe_balance"][0][0]
    (out.sum() + balance).backward()
    assert all(p.grad is not None for p in moe.parameters())
    assert moe.experts[0].c_fc.weight.grad.abs().sum() > 0
    assert moe.experts[5].c_fc.weight.grad.abs().sum() == 0


def test_rope_tables_stay_fp32_exact_past_the_trained_context_after_a_bf16_cast():
    rot = Rotary(16, max_len=8).to(torch.bfloat16)
    cos, sin = rot(1000, 2)
    fresh_cos, _ = Rotary(16, max_len=1002)(1000, 2)
    assert cos.dtype == torch.float32
    torch.testing.assert_close(cos, fresh_cos)


# ---- qknorm, relu2, softcap ----------------------------------------------------------------------

def test_qknorm_normalises_each_head_of_queries_and_keys_before_the_scores():
    import torch.nn.functional as F

    from pileablate.model.attention import CausalSelfAttention

    cfg = tiny("qknorm", kernel="math")
    assert cfg.qk_norm and cfg.mods == ("qknorm",)
    torch.manual_seed(0)
    attn = CausalSelfAttention(cfg).eval()
    x = torch.randn(2, 8, cfg.d_model)
    hd, h = cfg.head_dim, cfg.n_head
    q, k, v = (t.view(2, 8, h, hd).transpose(1, 2) for t in attn.c_attn(x).split(cfg.d_model, dim=-1))
    q = q / q.pow(2).mean(-1, keepdim=True).add(torch.finfo(q.dtype).eps).sqrt()
    k = k / k.pow(2).mean(-1, keepdim=True).add(torch.finfo(k.dtype).eps).sqrt()
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(2, 8, -1)
    ctx = Context(start=0, length=8)
    torch.testing.assert_close(attn(x, ctx), attn.c_proj(expected), rtol=1e-5, atol=1e-5)
    base = CausalSelfAttention(tiny(kernel="math")).eval()
    base.load_state_dict(attn.state_dict())  # no parameters of its own: the same names and shapes
    assert not torch.allclose(base(x, ctx), attn(x, ctx))


def test_relu2_equals_its_formula_with_gpt2_names_and_size():
    cfg = tiny("relu2")
    model = GPT(cfg)
    mlp = model.transformer.h[0].mlp
    x = torch.randn(3, 5, cfg.d_model)
    torch.testing.assert_close(mlp(x), mlp.c_proj(torch.relu(mlp.c_fc(x)) ** 2))
    assert model.num_params() == GPT(tiny()).num_params()
    assert set(dict(model.named_parameters())) == set(dict(GPT(tiny()).named_parameters()))
    with pytest.raises(UserError, match="'swiglu' and 'relu2' cannot be combined"):
        resolve_mods("swiglu,relu2")


def test_softcap_bounds_the_logits_by_tanh_and_keeps_the_argmax():
    from pileablate.mods.softcap import CAP

    torch.manual_seed(0)
    capped, plain = GPT(tiny("softcap")), GPT(tiny())
    plain.load_state_dict(capped.state_dict())
    idx = torch.randint(0, 61, (2, 8))
    raw = plain(idx).logits
    out = capped(idx, idx)
    torch.testing.assert_close(out.logits, CAP * torch.tanh(raw / CAP))
    big = capped.logit_head(torch.tensor([[1e4, -1e4, 3.0]]))
    assert big.abs().max() <= CAP and torch.equal(big.argmax(-1), torch.tensor([0]))


# ---- adam, muon (trainer slots) -------------------------------------------------------------------

def _train_config(mods: str, **kw):
    from pileablate.train.config import TrainConfig

    return TrainConfig(mods=resolve_mods(mods), lr=1e-2, min_lr=1e-3, warmup_steps=10, weight_decay=0.1, **kw)


def test_adam_decays_through_the_gradient_where_adamw_decays_the_weight():
    from pileablate.train.optimizer import make_optimizer

    assert trainer_component("adam", "optimizer").name == "adam" and model_changes("adam", {}) == {}
    moved = {}
    for mods in ("", "adam"):
        torch.manual_seed(0)
        model = GPT(tiny())
        optimizer = make_optimizer(model, _train_config(mods), torch.device("cpu"))
        w = model.transformer.h[0].mlp.c_fc.weight
        before = w.detach().clone()
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
        moved[mods or "adamw"] = (w.detach() - before, before)
    # AdamW: zero gradient, the weight shrinks by lr * wd; Adam: g = wd * w is the gradient, so the
    # first (bias-corrected) step is lr * g / (|g| + eps), about lr * sign(w).
    delta, before = moved["adamw"]
    torch.testing.assert_close(delta, -1e-2 * 0.1 * before)
    delta, before = moved["adam"]
    g = 0.1 * before
    torch.testing.assert_close(delta, -1e-2 * g / (g.abs() + 1e-8), rtol=1e-4, atol=1e-7)


def test_muon_takes_the_hidden_matrices_at_its_own_rate_and_adamw_the_rest():
    from pileablate.mods import hidden_matrices
    from pileablate.mods.muon import MUON_LR_SCALE
    from pileablate.train.optimizer import learning_rates, make_optimizer, set_learning_rate

    torch.manual_seed(0)
    model = GPT(tiny("rope,mtp"))
    optimizer = make_optimizer(model, _train_config("muon"), torch.device("cpu"))
    muon, adamw = optimizer.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    hidden, rest = hidden_matrices(model)
    assert {id(p) for g in muon.param_groups for p in g["params"]} == {id(p) for p in hidden}
    assert model.lm_head.weight in rest and all(p.dim() == 2 for p in hidden)
    assert any(p is model.objective[0].block.attn.c_attn.weight for p in hidden)
    assert len(hidden) + len(rest) == len(list(model.parameters()))
    set_learning_rate(optimizer, 1e-3)
    assert learning_rates(optimizer, 1e-3) == {"muon": 1e-3 * MUON_LR_SCALE, "adamw": 1e-3}
    assert muon.param_groups[0]["lr"] == pytest.approx(0.02) and adamw.param_groups[0]["lr"] == 1e-3
    idx = torch.randint(0, 61, (2, 8))
    model(idx, idx).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    state = optimizer.state_dict()
    again = make_optimizer(model, _train_config("muon"), torch.device("cpu"))
    again.load_state_dict(state)
    assert again.state_dict()["chained"][0]["state"].keys() == state["chained"][0]["state"].keys()


def test_a_muon_run_records_each_rate_in_its_config(bytes_store, tmp_path):
    from pileablate.train.trainer import train

    summary = train(_train_config("muon", data=bytes_store, runs_dir=tmp_path, preset="nano", device="cpu",
                                  max_steps=2, eval_every=2, eval_tokens=2048, batch_size=2, name="m"))
    assert summary["status"] == "finished"
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["learning_rates"] == {"muon": pytest.approx(0.2), "adamw": 1e-2}

    # The report says which rate each optimizer used, not only --lr.
    from pileablate.report.aggregate import group_runs
    from pileablate.report.runs import load_run
    from pileablate.report.table import lr_text

    (muon,) = group_runs([load_run(tmp_path / "m")])
    assert lr_text(muon) == "0.01 (muon 0.2)"

"""Hugging Face `transformers` export: the baseline as GPT-2, rope+rmsnorm+swiglu(+gqa) as Llama.

The mapping is exact, not approximate: the exported model computes the same logits (fp32, within
rounding). GPT-2 (Radford et al. 2019) stores its projections as `Conv1D` with (in, out) weights,
so every Linear weight is transposed; its MLP is the tanh GELU ("gelu_new"). Llama (Touvron et al.
2023) splits our fused [q | k | v] projection into q_proj/k_proj/v_proj; SwiGLU's w1/w3/w2 are
gate_proj/up_proj/down_proj; rotary embeddings use the same rotate-half layout, so no permutation.
Every other modification changes the computation in a way neither architecture can express, and is
refused by name rather than exported as a model that would silently compute something else.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import torch

from pileablate.errors import UserError

ARCHITECTURES = {"gpt2": "GPT-2", "llama": "Llama"}
OUTPUT_FILES = ("config.json", "model.safetensors", "generation_config.json", "pileablate.json")


def _exports_of(name: str) -> frozenset[str]:
    """The architectures a modification maps onto: what it declares, else what every component it
    fills (a hook included) declares. A modification that maps onto none is refused by name."""
    from pileablate.registry import component, modification

    mod = modification(name)
    if mod.exports is not None:
        return mod.exports
    out = frozenset(ARCHITECTURES)
    for slot, chosen in mod.fills.items():
        out &= component(slot, chosen).exports
    return out


def hf_architecture(cfg) -> str:
    """'gpt2' or 'llama': the architecture every component of the model and every modification it was
    built with maps onto (the components say so, `exports`); UserError naming what has none."""
    from pileablate.registry import HOOK_FIELDS, SLOTS, TRAINER_SLOTS, component

    refused = sorted(name for name in cfg.mods if not _exports_of(name))
    if refused:
        raise UserError(
            f"cannot export: modification{'' if len(refused) == 1 else 's'} {', '.join(repr(n) for n in refused)} "
            f"{'has' if len(refused) == 1 else 'have'} no Hugging Face equivalent "
            "(export supports the baseline as GPT-2 and rope,rmsnorm,swiglu with optional gqa as Llama; every other "
            "modification, a --mods-file's too, is refused by name)"
        )
    parts = {f"{getattr(cfg, slot)} {slot}": component(slot, getattr(cfg, slot)).exports
             for slot in SLOTS if slot not in TRAINER_SLOTS}
    parts.update({f"{name} {kind} hook": component(kind, name).exports
                  for kind, key in HOOK_FIELDS.items() for name in getattr(cfg, key)})
    possible = frozenset(ARCHITECTURES)
    for exports in [*parts.values(), *(_exports_of(n) for n in cfg.mods)]:
        possible &= exports
    if "gpt2" in possible and cfg.kv_heads != cfg.n_head:
        possible -= {"gpt2"}  # GPT-2 has one key/value head per query head
    if possible:
        return "gpt2" if "gpt2" in possible else sorted(possible)[0]
    wanted = sorted(_exports_of(cfg.mods[0]))[0] if cfg.mods else "gpt2"
    blocking = [part for part, exports in parts.items() if wanted not in exports]
    what = f"modification '{cfg.mods[0]}'" if cfg.mods else "this model"
    raise UserError(
        f"cannot export: {what} has no Hugging Face equivalent together with the model's "
        f"{', '.join(blocking) or f'{cfg.kv_heads} key/value heads'} ({ARCHITECTURES[wanted]} needs every part its own: "
        "GPT-2 is the baseline; Llama is rope, rmsnorm and swiglu together, with optional gqa)"
    )


def gpt2_config(cfg, eot_id: Optional[int]) -> dict:
    return dict(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.seq_len,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_inner=cfg.ffn_hidden,
        activation_function="gelu_new",
        layer_norm_epsilon=cfg.norm_eps,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=True,
        bos_token_id=eot_id,
        eos_token_id=eot_id,
        architectures=["GPT2LMHeadModel"],
    )


def llama_config(cfg, eot_id: Optional[int]) -> dict:
    return dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.ffn_hidden,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.kv_heads,
        head_dim=cfg.head_dim,
        hidden_act="silu",
        max_position_embeddings=cfg.seq_len,
        rms_norm_eps=cfg.norm_eps,
        rope_theta=cfg.rope_theta,
        attention_bias=cfg.bias,
        mlp_bias=cfg.bias,
        attention_dropout=0.0,
        tie_word_embeddings=True,
        bos_token_id=eot_id,
        eos_token_id=eot_id,
        architectures=["LlamaForCausalLM"],
    )


class _Source:
    """Our state dict, with a record of what was taken, so no weight can be dropped unnoticed."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        self.state = {k: v.detach().to(torch.float32).cpu() for k, v in state.items()}
        self.used: set[str] = set()

    def take(self, name: str) -> torch.Tensor:
        self.used.add(name)
        return self.state[name]

    def bias_or_zeros(self, name: str, size: int) -> torch.Tensor:
        # Models trained with bias=False: GPT-2 always has biases; zeros compute the same function.
        if name in self.state:
            return self.take(name)
        return torch.zeros(size)

    def check_all_used(self) -> None:
        # lm_head.weight is wte (tied); the HF models tie them the same way.
        left = sorted(set(self.state) - self.used - {"lm_head.weight"})
        if left:
            raise RuntimeError(f"export left weights unmapped (a bug in the export mapping): {left}")


def gpt2_state_dict(cfg, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    src = _Source(state)
    d = cfg.d_model
    out = {
        "transformer.wte.weight": src.take("transformer.wte.weight"),
        "transformer.wpe.weight": src.take("transformer.wpe.weight"),
        "transformer.ln_f.weight": src.take("transformer.ln_f.weight"),
        "transformer.ln_f.bias": src.bias_or_zeros("transformer.ln_f.bias", d),
    }
    for i in range(cfg.n_layer):
        p = f"transformer.h.{i}."
        for norm in ("ln_1", "ln_2"):
            out[p + norm + ".weight"] = src.take(p + norm + ".weight")
            out[p + norm + ".bias"] = src.bias_or_zeros(p + norm + ".bias", d)
        for linear in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            weight = src.take(p + linear + ".weight")
            out[p + linear + ".weight"] = weight.t().contiguous()  # Conv1D: (in, out)
            out[p + linear + ".bias"] = src.bias_or_zeros(p + linear + ".bias", weight.shape[0])
    out["lm_head.weight"] = out["transformer.wte.weight"]
    src.check_all_used()
    return out


def llama_state_dict(cfg, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    src = _Source(state)
    hd = cfg.head_dim
    q_size, kv_size = cfg.n_head * hd, cfg.kv_heads * hd
    out = {
        "model.embed_tokens.weight": src.take("transformer.wte.weight"),
        "model.norm.weight": src.take("transformer.ln_f.weight"),
    }
    for i in range(cfg.n_layer):
        p, q = f"transformer.h.{i}.", f"model.layers.{i}."
        out[q + "input_layernorm.weight"] = src.take(p + "ln_1.weight")
        out[q + "post_attention_layernorm.weight"] = src.take(p + "ln_2.weight")
        parts = ("q_proj", "k_proj", "v_proj")
        for kind in ("weight", "bias") if cfg.bias else ("weight",):
            fused = src.take(p + f"attn.c_attn.{kind}")
            for name, chunk in zip(parts, fused.split([q_size, kv_size, kv_size], dim=0)):
                out[q + f"self_attn.{name}.{kind}"] = chunk.contiguous()
            out[q + f"self_attn.o_proj.{kind}"] = src.take(p + f"attn.c_proj.{kind}")
            for ours, theirs in (("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj")):
                out[q + f"mlp.{theirs}.{kind}"] = src.take(p + f"mlp.{ours}.{kind}")
    out["lm_head.weight"] = out["model.embed_tokens.weight"]
    src.check_all_used()
    return out


def _require_hf():
    try:
        import safetensors  # noqa: F401
        import transformers
    except ImportError:
        raise UserError(
            "export --format hf needs the optional packages transformers and safetensors: "
            "pip install 'pileablate[hf]'"
        ) from None
    # Our own summary line says what happened; their progress bars and config chatter would bury it.
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def build_hf_model(model, eot_id: Optional[int] = None):
    """A transformers model (GPT2LMHeadModel or LlamaForCausalLM) holding `model`'s weights, fp32."""
    transformers = _require_hf()
    cfg = model.config
    arch = hf_architecture(cfg)
    if arch == "gpt2":
        hf_cfg = transformers.GPT2Config(**gpt2_config(cfg, eot_id))
        hf_cls, weights = transformers.GPT2LMHeadModel, gpt2_state_dict(cfg, model.state_dict())
    else:
        hf_cfg = transformers.LlamaConfig(**llama_config(cfg, eot_id))
        hf_cls, weights = transformers.LlamaForCausalLM, llama_state_dict(cfg, model.state_dict())
    with torch.device("cpu"):
        hf_model = hf_cls(hf_cfg).to(torch.float32)
    # Strict: every transformers weight must come from ours (buffers such as rotary tables are
    # derived from the config and are not in the state dict).
    missing, unexpected = hf_model.load_state_dict(weights, strict=False)
    params = dict(hf_model.named_parameters(remove_duplicate=False))
    missing = [k for k in missing if k in params and k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"export mapping does not match {hf_cls.__name__}: missing {missing}, unexpected {unexpected}")
    hf_model.tie_weights()
    return hf_model.eval()


def export_hf(model, out_dir: Path, *, eot_id: Optional[int] = None, metadata: Optional[dict] = None,
              overwrite: bool = False) -> dict:
    """Write `model` to `out_dir` as config.json + model.safetensors (+ generation_config.json and
    pileablate.json with where it came from). Returns a summary dict."""
    out_dir = Path(out_dir)
    clashing = [name for name in OUTPUT_FILES if (out_dir / name).exists()]
    if clashing and not overwrite:
        raise UserError(f"{out_dir} already holds {', '.join(clashing)}; pick another --out or pass --overwrite to replace them")
    hf_model = build_hf_model(model, eot_id)
    info = {
        "architecture": type(hf_model).__name__,
        "model_type": hf_model.config.model_type,
        "vocab_size": model.config.vocab_size,
        "real_vocab_size": model.config.real_vocab_size,
        **(metadata or {}),
    }
    check_writable(out_dir)
    before = {name for name in OUTPUT_FILES if (out_dir / name).exists()}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        hf_model.save_pretrained(out_dir, safe_serialization=True)
        (out_dir / "pileablate.json").write_text(json.dumps(info, indent=2) + "\n")
        _usual_modes(out_dir)
    except OSError as err:
        for name in set(OUTPUT_FILES) - before:  # nothing half-written left behind
            (out_dir / name).unlink(missing_ok=True)
        raise UserError(f"cannot write the export to --out {out_dir}: {err.strerror or err}; "
                        "choose a folder you can write to") from None
    return info


def check_writable(out_dir: Path) -> None:
    """Refuse an --out that cannot be made or written to, in one line, before anything is written."""
    existing = Path(out_dir)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot write the export to --out {out_dir}: {existing} is a file; choose a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the export to --out {out_dir}: {existing} is not writable; "
                        "choose a folder you can write to")


def _usual_modes(out_dir: Path) -> None:
    """Every exported file gets the mode a new file gets here (0644 under the usual umask): safetensors
    writes its file 0600, which would keep the rest of a team from loading the export."""
    mask = os.umask(0)
    os.umask(mask)
    for name in OUTPUT_FILES:
        if (out_dir / name).is_file():
            os.chmod(out_dir / name, 0o666 & ~mask)


def verify_export(model, out_dir: Path, num_tokens: Optional[int] = None, seed: int = 0) -> float:
    """Load the export back with `from_pretrained` (offline) and return the largest absolute logit
    difference to `model` on random tokens; raises when the export computes something else."""
    transformers = _require_hf()
    cfg = model.config
    n = min(cfg.seq_len, num_tokens or cfg.seq_len)
    idx = torch.randint(0, cfg.real_vocab_size, (2, n), generator=torch.Generator().manual_seed(seed))
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out_dir, local_files_only=True).float()
    device = next(model.parameters()).device
    with torch.no_grad():
        ours = model.eval()(idx.to(device)).logits.float().cpu()
        theirs = loaded.eval()(idx).logits.float()
    diff = float((ours - theirs).abs().max())
    # fp32 on both sides: only summation order differs. 1e-3 leaves room for big models while any
    # mapping mistake (a transposed or swapped weight) moves logits by orders of magnitude more.
    if not diff <= 1e-3:
        raise RuntimeError(f"exported model's logits differ from the run's by {diff:.3g} (a bug in the export mapping)")
    return diff

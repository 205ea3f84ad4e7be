"""The components the baseline (GPT-2 as nanoGPT trains it) is built from; not a modification."""

import torch

from pileablate.mods import decay_groups, fused, register_component

# The Hugging Face architectures each baseline part maps onto exactly (export asks the components).
BOTH = ("gpt2", "llama")


def _learned(config):
    from pileablate.model.positions import LearnedPositions

    return LearnedPositions(config)


def _layernorm(config, dim):
    from pileablate.model.norms import LayerNorm

    return LayerNorm(dim, config.norm_eps, config.bias)


def _attention(config, layer):
    from pileablate.model.attention import CausalSelfAttention

    return CausalSelfAttention(config, layer)


def _kv_heads(config):
    kv = config.kv_heads
    if kv < 1 or config.n_head % kv:
        divisors = ", ".join(str(d) for d in range(1, config.n_head + 1) if config.n_head % d == 0)
        return f"--n-kv-head {kv} must divide n_head {config.n_head} (e.g. {divisors})"
    return None


def _gelu(config, hidden):
    from pileablate.model.mlp import GeluMLP

    return GeluMLP(config.d_model, hidden, config.bias, config.dropout)


def _dense(config, layer):
    from pileablate.model.mlp import dense_feedforward

    return dense_feedforward(config, layer)


def _sequential(config, layer):
    from pileablate.model.gpt import Block

    return Block(config, layer)


def _adamw(model, cfg, device):
    """AdamW (Loshchilov & Hutter 2019) with decay on matrices only."""
    return torch.optim.AdamW(decay_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                             fused=fused(device))


def _constant(cfg):
    return lambda step, progress: cfg.lr


register_component("position", "learned", _learned, "learned absolute positions (transformer.wpe)", exports=("gpt2",))
register_component("norm", "layernorm", _layernorm, "LayerNorm (with bias when the model has biases)", exports=("gpt2",))
register_component("attention", "mha", _attention, "multi-head causal self-attention (--n-kv-head: grouped-query)",
                   check=_kv_heads, exports=BOTH)
register_component("mlp", "gelu", _gelu, "c_proj(gelu_tanh(c_fc x)), 4 x d_model wide", exports=("gpt2",))
register_component("feedforward", "dense", _dense, "the mlp in force", exports=BOTH)
register_component("block", "sequential", _sequential, "x + attn(norm x), then x + mlp(norm x) (or post-norm)", exports=BOTH)
register_component("head", "linear", None, "the tied unembedding alone", exports=BOTH)
register_component("objective", "next", None, "next-token prediction alone", exports=BOTH)
register_component("optimizer", "adamw", _adamw, "AdamW, decoupled decay on matrices only")
register_component("schedule", "constant", _constant, "the peak learning rate throughout")

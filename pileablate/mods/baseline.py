"""The components the baseline (GPT-2 as nanoGPT trains it) is built from; not a modification."""

from pileablate.model.registry import register_component


def _layernorm(config, dim):
    from pileablate.model.norms import LayerNorm

    return LayerNorm(dim, config.norm_eps, config.bias)


def _attention(config):
    from pileablate.model.attention import CausalSelfAttention

    return CausalSelfAttention(config)


def _gelu(config, hidden):
    from pileablate.model.mlp import GeluMLP

    return GeluMLP(config.d_model, hidden, config.bias, config.dropout)


def _sequential(config):
    from pileablate.model.gpt import Block

    return Block(config)


def _adamw(model, cfg, device):
    from pileablate.train.optimizer import adamw

    return adamw(model, cfg, device)


def _constant(cfg):
    from pileablate.train.optimizer import schedule

    return schedule("constant", cfg)


register_component("position", "learned", None, "learned absolute positions (transformer.wpe)")
register_component("norm", "layernorm", _layernorm, "LayerNorm (with bias when the model has biases)")
register_component("attention", "mha", _attention, "multi-head causal self-attention")
register_component("mlp", "gelu", _gelu, "c_proj(gelu_tanh(c_fc x)), 4 x d_model wide")
register_component("block", "sequential", _sequential, "x + attn(norm x), then x + mlp(norm x) (or post-norm)")
register_component("head", "linear", None, "the tied unembedding alone")
register_component("optimizer", "adamw", _adamw, "AdamW, decoupled decay on matrices only")
register_component("schedule", "constant", _constant, "the peak learning rate throughout")

"""swiglu: the SwiGLU MLP w2(silu(w1 x) * w3 x), hidden ~8/3 d so its parameters match the GELU MLP."""

from pileablate.mods import Modification, register, register_component


def _swiglu(config, hidden):
    from pileablate.model.mlp import SwiGLU

    return SwiGLU(config.d_model, hidden, config.bias, config.dropout)


def _hidden(config):
    from pileablate.model.config import swiglu_hidden

    return swiglu_hidden(config.d_model, config.bias)


register_component("mlp", "swiglu", _swiglu, "w2(silu(w1 x) * w3 x)", hidden=_hidden, exports=("llama",))
register(Modification(
    "swiglu", "SwiGLU MLP w2(silu(w1 x) * w3 x), hidden ~8/3 d, params = GELU MLP", fills={"mlp": "swiglu"},
    reference="Shazeer 2020",
))

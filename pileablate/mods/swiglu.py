"""swiglu: the SwiGLU MLP w2(silu(w1 x) * w3 x), hidden ~8/3 d so its parameters match the GELU MLP."""

from pileablate.mods import Modification, register, register_component


def _swiglu(config, hidden):
    from pileablate.model.mlp import SwiGLU

    return SwiGLU(config.d_model, hidden, config.bias, config.dropout)


def mlp_params(d_model: int, hidden: int, gated: bool, bias: bool) -> int:
    """Parameters of one MLP (no norm): GELU's two matrices, or SwiGLU's three (gated)."""
    if not gated:
        return 2 * d_model * hidden + ((hidden + d_model) if bias else 0)
    return 3 * d_model * hidden + ((2 * hidden + d_model) if bias else 0)


def swiglu_hidden(d_model: int, bias: bool = True) -> int:
    """SwiGLU hidden width: 8/3*d_model (Shazeer 2020, as in Llama) rounded to a multiple of 64.

    Three matrices at 8/3*d cost what two at 4*d do. Rounding to 64 can miss the GELU MLP's parameter
    count by more than 1% at small widths (d=64: 192 is +12%), so the multiple is halved (64, 32, ... 1)
    until the count is within 1%. d_model 192 and 768 give exactly 8/3*d; 1024 gives 2752 (+0.8%).
    """
    target = mlp_params(d_model, 4 * d_model, False, bias)
    exact = 8 * d_model / 3
    for multiple in (64, 32, 16, 8, 4, 2, 1):
        hidden = max(multiple, multiple * round(exact / multiple))
        if abs(mlp_params(d_model, hidden, True, bias) - target) <= 0.01 * target:
            return hidden
    return max(1, round(exact))


def _hidden(config):
    return swiglu_hidden(config.d_model, config.bias)


register_component("mlp", "swiglu", _swiglu, "w2(silu(w1 x) * w3 x)", hidden=_hidden, exports=("llama",))
register(Modification(
    "swiglu", "SwiGLU MLP w2(silu(w1 x) * w3 x), hidden ~8/3 d, params = GELU MLP", fills={"mlp": "swiglu"},
    reference="Shazeer 2020",
))

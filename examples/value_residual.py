"""valueres: every layer's values are mixed with the first layer's (ResFormer's value residual).

    pileablate mods --mods-file examples/value_residual.py
    pileablate train --mods-file examples/value_residual.py --mods valueres,rope,swiglu

Across layers: the attention knows its layer (`self.layer`) and shares the first layer's values with
the later ones through `ctx.state`, which lives for one forward pass. Only the projections change
(`qkv`); qk-norm, rope, grouped key/value heads, the KV cache and the hooks stay the built-in's. The
mixed values are what the cache keeps, so cached decoding is exact.
"""

from pileablate.mods import CausalSelfAttention, Modification, Option, options_of, register, register_component


class ValueResidualAttention(CausalSelfAttention):
    def __init__(self, config, layer) -> None:
        super().__init__(config, layer)
        self.mix = options_of(config, "valueres").mix

    def qkv(self, x, ctx):
        q, k, v = super().qkv(x, ctx)
        if self.layer == 0:
            ctx.state["first_values"] = v
        else:
            v = self.mix * v + (1 - self.mix) * ctx.state["first_values"]
        return q, k, v


register_component("attention", "valueres", ValueResidualAttention, "mha whose values mix in layer 0's")
register(Modification(
    "valueres", "value residual: each layer's values mixed with the first layer's (ResFormer)",
    fills={"attention": "valueres"}, options={"mix": Option(0.5, "weight of the layer's own values")},
    reference="Zhou et al. 2024 (Value Residual Learning)",
))

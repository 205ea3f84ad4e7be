"""parallel: attention and MLP read the same normalised input and are added together (GPT-J, PaLM).

    pileablate mods --mods-file examples/parallel_block.py
    pileablate ablate --mods-file examples/parallel_block.py --mods parallel --seeds 3 --tune-lr 3
"""

from torch import nn

from pileablate.mods import Modification, make_attention, make_feedforward, make_norm, register, register_component


class ParallelBlock(nn.Module):
    """x + attn(ln(x)) + mlp(ln(x)): one norm, both branches side by side (one matmul wave on TPUs)."""

    def __init__(self, config, layer) -> None:
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = make_attention(config, layer)
        self.mlp = make_feedforward(config, layer)  # the MLP in force: swiglu, a mixture of experts, ...

    def forward(self, x, ctx):
        h = self.ln_1(x)
        return x + self.attn(h, ctx) + self.mlp(h, ctx)


register_component("block", "parallel", ParallelBlock, "x + attn(ln x) + mlp(ln x)")
register(Modification(
    "parallel", "attention and MLP in parallel from one LayerNorm (GPT-J / PaLM block)",
    fills={"block": "parallel"}, incompatible={"postnorm"},
    reference="Wang & Komatsuzaki 2021 (GPT-J); Chowdhery et al. 2022 (PaLM)",
))

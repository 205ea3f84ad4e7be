"""postnorm: the sequential block normalises after the residual add (original Transformer)."""

from pileablate.mods import Modification, register

register(Modification(
    "postnorm", "post-LayerNorm blocks x = LN(x + f(x)) (original Transformer) instead of pre-norm",
    sets={"norm_position": "post"}, exports=frozenset(), reference="Vaswani et al. 2017; Xiong et al. 2020",
))

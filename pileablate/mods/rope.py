"""rope: rotary embeddings on queries and keys replace learned positions (no parameters).

The position component hands attention a rotation (`ctx.rotate`); every attention variant applies it
(mla to its decoupled rotary part), and a user's rotary variant is built the same way.
"""

from pileablate.mods import Modification, register, register_component


def _rope(config):
    from pileablate.model.rope import RotaryPositions

    return RotaryPositions(config)


def _even_head_dim(config):
    if config.head_dim % 2:
        return f"rope needs an even head dimension (d_model/n_head = {config.head_dim}); change d_model or n_head"
    return None


register_component("position", "rope", _rope, "rotary queries and keys, rotate-half layout (model/rope.py)",
                   traits=("rotary",), check=_even_head_dim, exports=("llama",))
register(Modification(
    "rope", "rotary embeddings on queries and keys replace learned positions", fills={"position": "rope"},
    reference="Su et al. 2021 (RoFormer); Llama rotate-half layout",
))

"""rope: rotary embeddings on queries and keys replace learned positions (built into GPT: no parameters)."""

from pileablate.model.registry import Modification, register, register_component

register_component("position", "rope", None, "rotary queries and keys, rotate-half layout (model/rope.py)")
register(Modification(
    "rope", "rotary embeddings on queries and keys replace learned positions", fills={"position": "rope"},
    reference="Su et al. 2021 (RoFormer); Llama rotate-half layout",
))

"""qknorm: queries and keys RMS-normalised per head before the rotation and the dot product.

Parameter-free (F.rms_norm), as in the modded-nanogpt speedrun; bounds the attention logits, which
lets training run at higher learning rates without logit growth.
"""

from pileablate.mods import Modification, register

register(Modification(
    "qknorm", "RMS-normalised queries and keys (per head, no gain) before attention scores",
    sets={"qk_norm": True}, incompatible=frozenset({"mla"}), exports=frozenset(),
    reference="Henry et al. 2020 (Query-Key Normalization); Dehghani et al. 2023; Jordan et al. 2024 (modded-nanogpt)",
))

"""gqa: grouped-query attention, a knob of attention (its key/value heads), not a rival attention.

It sets the model's n_kv_head: `--mod-option gqa.kv_heads=N`, or by default a real grouping (the divisor
of n_head nearest n_head/4), so it combines with every attention component that reads n_kv_head and
with every score or mask hook (`--mods alibi,gqa`).
"""

from pileablate.mods import Modification, Option, register


def _kv_heads(values):
    from pileablate.model.config import default_kv_heads

    chosen = (values.get("mod_options") or {}).get("gqa", {}).get("kv_heads", 0)
    return chosen or default_kv_heads(values["n_head"])


register(Modification(
    "gqa", "grouped-query attention: key/value heads gqa.kv_heads (default a real grouping near n_head/4; 1 = MQA)",
    sets={"n_kv_head": _kv_heads}, options={"kv_heads": Option(0, "key/value heads (must divide n_head; 1 = "
                                                                 "multi-query); 0: the divisor of n_head nearest n_head/4")},
    incompatible=frozenset({"mla"}), exports=frozenset({"llama"}), reference="Ainslie et al. 2023",
))

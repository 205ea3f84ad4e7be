"""gqa: grouped-query attention (the multi-head module with fewer key/value heads)."""

from pileablate.model.registry import Modification, register, register_component


def _gqa(config):
    from pileablate.model.attention import CausalSelfAttention

    return CausalSelfAttention(config)  # config.kv_heads is the grouping when attention == "gqa"


register_component("attention", "gqa", _gqa, "multi-head attention with --n-kv-head key/value heads")
register(Modification(
    "gqa", "grouped-query attention: --n-kv-head key/value heads (default a real grouping near n_head/4; 1 = MQA)",
    fills={"attention": "gqa"}, incompatible=frozenset({"mla"}), reference="Ainslie et al. 2023",
))

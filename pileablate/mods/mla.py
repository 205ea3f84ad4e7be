"""mla: multi-head latent attention (keys/values up-projected from a cached latent)."""

from pileablate.model.registry import Modification, register, register_component


def _mla(config):
    from pileablate.model.attention import LatentAttention

    return LatentAttention(config)


register_component("attention", "mla", _mla, "keys/values from a --kv-latent-dim latent, decoupled rope part")
register(Modification(
    "mla", "multi-head latent attention: keys/values from a --kv-latent-dim latent, decoupled rope part",
    fills={"attention": "mla"}, incompatible=frozenset({"gqa", "qknorm"}), reference="DeepSeek-AI 2024 (DeepSeek-V2)",
))

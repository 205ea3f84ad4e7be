"""mla: multi-head latent attention (keys/values up-projected from a cached latent)."""

from pileablate.mods import Modification, register, register_component


def _mla(config, layer):
    from pileablate.model.attention import LatentAttention

    return LatentAttention(config, layer)


def _check(config):
    if config.latent_dim < 1:
        return f"--kv-latent-dim must be at least 1 (got {config.latent_dim})"
    if config.rope_dim < 2 or config.rope_dim % 2:
        return f"mla's rotary part must be even and at least 2 (got {config.rope_dim})"
    return None


register_component("attention", "mla", _mla, "keys/values from a --kv-latent-dim latent, decoupled rope part", check=_check)
register(Modification(
    "mla", "multi-head latent attention: keys/values from a --kv-latent-dim latent, decoupled rope part",
    fills={"attention": "mla"}, incompatible=frozenset({"gqa", "qknorm"}), reference="DeepSeek-AI 2024 (DeepSeek-V2)",
))

"""rmsnorm: every LayerNorm becomes RMSNorm (fp32, weight only)."""

from pileablate.mods import Modification, register, register_component


def _rmsnorm(config, dim):
    from pileablate.model.norms import RMSNorm

    return RMSNorm(dim, config.norm_eps)


register_component("norm", "rmsnorm", _rmsnorm, "x / rms(x) * g, computed in fp32", exports=("llama",))
register(Modification(
    "rmsnorm", "every LayerNorm becomes RMSNorm (fp32, weight only)", fills={"norm": "rmsnorm"},
    reference="Zhang & Sennrich 2019",
))

"""moe: every MLP becomes a mixture of experts (each expert the mlp component in force; model/moe.py)."""

from pileablate.mods import Modification, register, register_component


def _moe(config, layer):
    from pileablate.model.moe import MoE

    return MoE(config, layer)


def _check(config):
    if config.n_experts < 1:
        return f"--n-experts must be at least 1 (got {config.n_experts})"
    if not 1 <= config.experts_per_token <= config.n_experts:
        return f"--experts-per-token {config.experts_per_token} must be between 1 and --n-experts {config.n_experts}"
    return None


register_component("feedforward", "moe", _moe, "top-k routed experts, Switch balance loss", check=_check,
                   width_unit=lambda config: config.experts_per_token)
register(Modification(
    "moe", "mixture-of-experts MLP: --n-experts E, --experts-per-token routing, load-balancing loss, active params = dense",
    fills={"feedforward": "moe"}, reference="Shazeer et al. 2017; Fedus et al. 2021 (Switch)",
))

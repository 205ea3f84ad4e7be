"""moe: every MLP becomes a mixture of experts (each expert the mlp component in force; model/moe.py)."""

from pileablate.model.registry import Modification, register

register(Modification(
    "moe", "mixture-of-experts MLP: --n-experts E, --experts-per-token routing, load-balancing loss, active params = dense",
    options={"moe": True}, reference="Shazeer et al. 2017; Fedus et al. 2021 (Switch)",
))

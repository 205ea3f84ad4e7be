"""mtp: multi-token prediction heads as an auxiliary loss (model/gpt.py MTPHead)."""

from pileablate.model.registry import Modification, register

register(Modification(
    "mtp", "multi-token prediction heads for t+2..t+k (--mtp-depth k) as an auxiliary loss",
    options={"mtp": True}, reference="Gloeckle et al. 2024",
))

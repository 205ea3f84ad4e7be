"""lion: the Lion optimizer (sign of an interpolated momentum), with its betas as options.

    pileablate mods --mods-file examples/lion.py
    pileablate train --mods-file examples/lion.py --mods lion --mod-option lion.beta2=0.95

Its rate is lion.lr_scale x --lr (Lion wants a rate 3-10x below AdamW's), given to its param groups as
`lr_scale`: --tune-lr moves it with --lr, and the run records and the report shows Lion's own rate.
"""

import torch

from pileablate.mods import Modification, Option, decay_groups, options_of, register, register_component


class Lion(torch.optim.Optimizer):
    def __init__(self, params, lr, betas, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                momentum = self.state[p].setdefault("exp_avg", torch.zeros_like(p))
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_((momentum * beta1 + p.grad * (1 - beta1)).sign_(), alpha=-group["lr"])
                momentum.mul_(beta2).add_(p.grad, alpha=1 - beta2)


def _lion(model, cfg, device):
    opts = options_of(cfg, "lion")
    groups = [{**group, "lr_scale": opts.lr_scale} for group in decay_groups(model, cfg.weight_decay)]
    return Lion(groups, lr=cfg.lr * opts.lr_scale, betas=(opts.beta1, opts.beta2), weight_decay=cfg.weight_decay)


register_component("optimizer", "lion", _lion, "sign(beta1 m + (1 - beta1) g), decoupled decay")
register(Modification(
    "lion", "Lion optimizer (sign of interpolated momentum) instead of AdamW", fills={"optimizer": "lion"},
    options={"beta1": Option(0.9, "interpolation of momentum and gradient for the update"),
             "beta2": Option(0.99, "momentum decay"),
             "lr_scale": Option(0.1, "Lion's rate as a multiple of --lr")},
    reference="Chen et al. 2023 (Symbolic Discovery of Optimization Algorithms)",
))

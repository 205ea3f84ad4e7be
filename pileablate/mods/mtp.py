"""mtp: multi-token prediction heads as an auxiliary loss (Gloeckle et al. 2024).

k-1 extra heads, each a transformer block plus final norm on the trunk's last hidden state, feeding
the shared unembedding; head j predicts token t+2+j. Their mean loss times --mtp-weight goes into the
auxiliary loss; the loss logged and compared stays the next-token loss. A head sees only the trunk's
causal state, so it is causal too (the guards check every head's logits).
"""

import torch
import torch.nn.functional as F
from torch import nn

from pileablate.model.gpt import cross_entropy, make_block

from pileablate.mods import Modification, make_norm, register, register_component


class MTPHead(nn.Module):
    def __init__(self, config, layer: int) -> None:
        super().__init__()
        self.block = make_block(config, layer)
        self.ln_f = nn.Identity() if config.norm_position == "post" else make_norm(config)

    def forward(self, h, ctx):
        return self.ln_f(self.block(h, ctx))


class MultiTokenHeads(nn.ModuleList):
    """The objective: next-token prediction plus k-1 heads for t+2..t+k."""

    def __init__(self, config) -> None:
        super().__init__(MTPHead(config, config.n_layer + j) for j in range(config.mtp_depth - 1))
        self.weight = config.mtp_weight

    def forward(self, h, ctx, logits_fn, targets):
        extra, losses = {}, []
        first = ctx.layer
        for j, head in enumerate(self):
            ctx.layer = first + j
            logits = logits_fn(head(h, ctx))
            extra[f"mtp head t+{j + 2}"] = logits
            shift = j + 1  # head j predicts token t + 2 + j = targets[t + 1 + j]
            if targets is not None and targets.shape[1] > shift:
                shifted = F.pad(targets[:, shift:], (0, shift), value=-1)
                loss = cross_entropy(logits, shifted)
                ctx.add_loss(f"mtp_loss_{j + 2}", loss.detach(), weight=0.0)  # logged, not optimised twice
                losses.append(loss)
        if losses:
            ctx.add_loss("mtp_loss", torch.stack(losses).mean(), self.weight)
        return extra


def _check(config):
    if config.mtp_depth < 2:
        return f"--mtp-depth {config.mtp_depth} must be at least 2 (tokens t+1..t+k; 2 adds one head for t+2)"
    return None


register_component("objective", "mtp", MultiTokenHeads, "k-1 extra heads for t+2..t+k, mean loss in aux_loss", check=_check)
register(Modification(
    "mtp", "multi-token prediction heads for t+2..t+k (--mtp-depth k) as an auxiliary loss",
    fills={"objective": "mtp"}, reference="Gloeckle et al. 2024",
))

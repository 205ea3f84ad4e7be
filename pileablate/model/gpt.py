"""The GPT: GPT-2 (Radford et al. 2019, as in nanoGPT) whose parts ModelConfig switches.

Parameter names follow nanoGPT (transformer.wte / wpe / h.{i}.ln_1 / attn.c_attn / attn.c_proj /
ln_2 / mlp.c_fc / mlp.c_proj / ln_f, lm_head tied to wte) so checkpoints map onto Hugging Face GPT-2
and, with SwiGLU (mlp.w1/w3/w2 = gate/up/down) and RMSNorm, onto Llama. docs/DESIGN.md lists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from pileablate.errors import UserError
from pileablate.model.attention import make_attention
from pileablate.model.config import ModelConfig
from pileablate.model.kv_cache import KVCache
from pileablate.model.mlp import make_mlp
from pileablate.model.moe import MoE
from pileablate.model.norms import make_norm
from pileablate.model.rope import Rotary

BUILT_IN_POSITIONS = ("learned", "rope")  # the others are registered position components


@dataclass
class ModelOutput:
    """logits (B, T, vocab_size) for the next token; loss: its mean cross-entropy (None without targets);
    aux_loss: what to add to loss for the optimiser (MoE balance + MTP heads; zero when neither);
    aux: name -> scalar tensor for logging; mtp_logits: logits of the extra heads for t+2, t+3, ...
    (uncached forwards of mtp models only)."""

    logits: torch.Tensor
    loss: Optional[torch.Tensor] = None
    aux_loss: Optional[torch.Tensor] = None
    aux: dict[str, torch.Tensor] = field(default_factory=dict)
    mtp_logits: tuple[torch.Tensor, ...] = ()


def make_block(config: ModelConfig) -> nn.Module:
    """The block component the config names (registry): `sequential` is Block below."""
    from pileablate.model.registry import component

    return component("block", config.block).build(config)


class Block(nn.Module):
    """The `sequential` block. Pre-norm: x + f(norm(x)) (GPT-2); post-norm: norm(x + f(x)) (Vaswani
    et al. 2017)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.post = config.norm_position == "post"
        self.ln_1 = make_norm(config)
        self.attn = make_attention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MoE(config) if config.moe else make_mlp(config)

    def _mlp(self, x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        if isinstance(self.mlp, MoE):
            return self.mlp(x)
        return self.mlp(x), None

    def forward(self, x, rotary=None, cache=None, start: int = 0):
        if self.post:
            x = self.ln_1(x + self.attn(x, rotary, cache, start))
            y, balance = self._mlp(x)
            return self.ln_2(x + y), balance
        x = x + self.attn(self.ln_1(x), rotary, cache, start)
        y, balance = self._mlp(self.ln_2(x))
        return x + y, balance


class MTPHead(nn.Module):
    """One extra multi-token-prediction head (Gloeckle et al. 2024): a transformer block on the trunk's
    last hidden state, then a final norm, feeding the shared unembedding. It sees only the trunk's
    causal state, so it is causal too."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.block = make_block(config)
        self.ln_f = nn.Identity() if config.norm_position == "post" else make_norm(config)

    def forward(self, h, rotary=None):
        h, balance = self.block(h, rotary)
        return self.ln_f(h), balance


class GPT(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        modules = dict(
            wte=nn.Embedding(config.vocab_size, config.d_model),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(make_block(config) for _ in range(config.n_layer)),
            # Post-norm blocks already end normalised.
            ln_f=nn.Identity() if config.norm_position == "post" else make_norm(config),
        )
        if config.position == "learned":
            modules["wpe"] = nn.Embedding(config.seq_len, config.d_model)
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        # Weight tying (Press & Wolf 2017), as GPT-2.
        self.transformer.wte.weight = self.lm_head.weight
        self.rotary = None
        if config.position == "rope":
            dim = config.rope_dim if config.attention == "mla" else config.head_dim
            self.rotary = Rotary(dim, config.seq_len, config.rope_theta)
        from pileablate.model.registry import component

        if config.position not in BUILT_IN_POSITIONS:
            self.position = component("position", config.position).build(config)
        head = component("head", config.head).build
        self.logit_head = head(config) if head is not None else None  # None: plain tied unembedding
        self.mtp_heads = nn.ModuleList(MTPHead(config) for _ in range(config.mtp_depth - 1)) if config.mtp else None
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer) so the residual stream's variance
        # does not grow with depth.
        resid_std = config.init_std / math.sqrt(2 * config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight") or name.endswith("w2.weight"):
                nn.init.normal_(p, mean=0.0, std=resid_std)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)

    # ---- forward ---------------------------------------------------------------------------------
    def forward(
        self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None, kv_cache: Optional[KVCache] = None
    ) -> ModelOutput:
        """idx (B, T) token ids. targets (B, T): the next token at each position (-1 = ignore).

        With `kv_cache`, idx holds only the new tokens; they take positions cache.length onwards, their
        keys/values are appended and only their logits are returned (MTP heads are skipped).
        """
        cfg = self.config
        b, t = idx.shape
        start = 0
        if kv_cache is not None:
            start = kv_cache.length
            if b != kv_cache.batch_size:
                raise ValueError(f"batch of {b} sequences does not match the KV cache's {kv_cache.batch_size}")
            if start + t > kv_cache.max_len:
                raise UserError(
                    f"{start + t} tokens do not fit the KV cache (max_len {kv_cache.max_len}); make a larger cache"
                )
        if cfg.position == "learned" and start + t > cfg.seq_len:
            raise UserError(
                f"{start + t} positions exceed the model's context of {cfg.seq_len} tokens (learned positions); crop the input"
            )
        x = self.transformer.wte(idx)
        if cfg.position == "learned":
            x = x + self.transformer.wpe(torch.arange(start, start + t, device=idx.device))
        elif cfg.position not in BUILT_IN_POSITIONS:
            x = self.position(x, start)
        x = self.transformer.drop(x)
        rotary = self.rotary(start, t) if self.rotary is not None else None
        balances = []
        for i, block in enumerate(self.transformer.h):
            x, balance = block(x, rotary, kv_cache.layers[i] if kv_cache is not None else None, start)
            if balance is not None:
                balances.append(balance)
        if kv_cache is not None:
            kv_cache.length = start + t
        logits = self.logits(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            loss = _cross_entropy(logits, targets)

        aux: dict[str, torch.Tensor] = {}
        aux_loss = logits.new_zeros((), dtype=torch.float32)
        mtp_logits: list[torch.Tensor] = []
        if self.mtp_heads is not None and kv_cache is None:
            mtp_losses = []
            for j, head in enumerate(self.mtp_heads):
                hj, balance = head(x, rotary)
                if balance is not None:
                    balances.append(balance)
                lj = self.logits(hj)
                mtp_logits.append(lj)
                shift = j + 1  # head j predicts token t + 2 + j = targets[t + 1 + j]
                if targets is not None and targets.shape[1] > shift:
                    tj = F.pad(targets[:, shift:], (0, shift), value=-1)
                    lossj = _cross_entropy(lj, tj)
                    aux[f"mtp_loss_{j + 2}"] = lossj.detach()
                    mtp_losses.append(lossj)
            if mtp_losses:
                mtp_loss = torch.stack(mtp_losses).mean()
                aux["mtp_loss"] = mtp_loss.detach()
                aux_loss = aux_loss + cfg.mtp_weight * mtp_loss
        if balances:
            balance = torch.stack(balances).mean()
            aux["moe_balance"] = balance.detach()
            aux_loss = aux_loss + cfg.moe_aux_weight * balance
        return ModelOutput(logits=logits, loss=loss, aux_loss=aux_loss, aux=aux, mtp_logits=tuple(mtp_logits))

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Tied unembedding, then the head component (softcap, a user's) when there is one."""
        logits = self.lm_head(h)
        return logits if self.logit_head is None else self.logit_head(logits)

    # ---- helpers ---------------------------------------------------------------------------------
    def num_params(self) -> dict[str, int]:
        """{"total": every parameter once (tied embeddings once, MTP heads included),
        "active": what one token uses (total minus the experts it is not routed to)}."""
        total = sum(p.numel() for p in self.parameters())
        inactive = sum(m.inactive_params() for m in self.modules() if isinstance(m, MoE))
        return {"total": total, "active": total - inactive}

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: decay on matrices (Linear weights, embeddings, router); none on biases and
        norm gains (nanoGPT)."""
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def flops_per_token(self, seq_len: Optional[int] = None) -> float:
        """Training FLOPs per token: 6 * active params + attention (PaLM appendix B, as nanoGPT's MFU)."""
        cfg = self.config
        t = seq_len or cfg.seq_len
        n = self.num_params()["active"]
        return 6 * n + 12 * cfg.n_layer * cfg.n_head * cfg.head_dim * t

    def new_kv_cache(self, batch_size: int, max_len: Optional[int] = None, device=None, dtype=None) -> KVCache:
        """An empty cache for `batch_size` sequences of up to `max_len` tokens (default seq_len)."""
        max_len = self.config.seq_len if max_len is None else int(max_len)
        ref = self.lm_head.weight
        device = ref.device if device is None else device
        dtype = ref.dtype if dtype is None else dtype
        layers = [block.attn.new_cache(batch_size, max_len, device, dtype) for block in self.transformer.h]
        return KVCache(layers, batch_size, max_len)


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)

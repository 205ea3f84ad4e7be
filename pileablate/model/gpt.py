"""The GPT: GPT-2 (Radford et al. 2019, as in nanoGPT) assembled from the components ModelConfig names.

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
from pileablate.model.attention import make_attention, make_hooks
from pileablate.model.config import ModelConfig
from pileablate.model.context import Context
from pileablate.model.kv_cache import KVCache
from pileablate.model.norms import make_norm
from pileablate.registry import component


@dataclass
class ModelOutput:
    """logits (B, T, vocab_size) for the next token; loss: its mean cross-entropy (None without targets);
    aux_loss: what to add to loss for the optimiser (the auxiliary losses blocks and objectives added:
    MoE balance, MTP heads; zero when none); aux: name -> scalar tensor for logging; extra_logits: name ->
    logits of an objective's extra heads ("mtp head t+2", ...; uncached forwards only)."""

    logits: torch.Tensor
    loss: Optional[torch.Tensor] = None
    aux_loss: Optional[torch.Tensor] = None
    aux: dict[str, torch.Tensor] = field(default_factory=dict)
    extra_logits: dict[str, torch.Tensor] = field(default_factory=dict)


def make_block(config: ModelConfig, layer: int = 0) -> nn.Module:
    """The block component the config names (registry) for layer `layer`: `sequential` is Block below."""
    return component("block", config.block).build(config, layer)


def make_feedforward(config: ModelConfig, layer: int = 0) -> nn.Module:
    """The feedforward component the config names: `dense` (the mlp in force) or `moe`."""
    return component("feedforward", config.feedforward).build(config, layer)


class Block(nn.Module):
    """The `sequential` block. Pre-norm: x + f(norm(x)) (GPT-2); post-norm: norm(x + f(x)) (Vaswani
    et al. 2017)."""

    def __init__(self, config: ModelConfig, layer: int = 0) -> None:
        super().__init__()
        self.layer = layer
        self.post = config.norm_position == "post"
        self.ln_1 = make_norm(config)
        self.attn = make_attention(config, layer)
        self.ln_2 = make_norm(config)
        self.mlp = make_feedforward(config, layer)

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        if self.post:
            x = self.ln_1(x + self.attn(x, ctx))
            return self.ln_2(x + self.mlp(x, ctx))
        x = x + self.attn(self.ln_1(x), ctx)
        return x + self.mlp(self.ln_2(x), ctx)


class GPT(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        modules = dict(
            wte=nn.Embedding(config.vocab_size, config.d_model),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(make_block(config, i) for i in range(config.n_layer)),
            # Post-norm blocks already end normalised.
            ln_f=nn.Identity() if config.norm_position == "post" else make_norm(config),
            # The position component (learned: GPT-2's wpe; rope: rotation tables, no weights), after
            # ln_f as GPT-2's wpe always was, so the initialisation draws in the same order.
            wpe=component("position", config.position).build(config),
        )
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        # Weight tying (Press & Wolf 2017), as GPT-2.
        self.transformer.wte.weight = self.lm_head.weight
        self.hooks = make_hooks(config)  # attention score/mask hooks, None when there are none
        head = component("head", config.head).build
        self.logit_head = head(config) if head is not None else None  # None: plain tied unembedding
        objective = component("objective", config.objective).build
        self.objective = objective(config) if objective is not None else None  # None: next-token loss alone
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
        keys/values are appended and only their logits are returned (extra objective heads are skipped).
        """
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
        ctx = Context(start=start, length=t, cache=kv_cache, hooks=self.hooks)
        x = self.transformer.wpe(self.transformer.wte(idx), ctx)
        x = self.transformer.drop(x)
        for i, block in enumerate(self.transformer.h):
            ctx.layer = i
            x = block(x, ctx)
        if kv_cache is not None:
            kv_cache.length = start + t
        logits = self.logits(self.transformer.ln_f(x))
        loss = cross_entropy(logits, targets) if targets is not None else None
        extra: dict[str, torch.Tensor] = {}
        if self.objective is not None and kv_cache is None:
            ctx.layer = self.config.n_layer  # past the trunk: no cache entry
            extra = self.objective(x, ctx, self.logits, targets)
        aux: dict[str, torch.Tensor] = {}
        aux_loss = logits.new_zeros((), dtype=torch.float32)
        for name, (values, weight) in ctx.losses.items():
            mean = torch.stack(values).mean()
            aux[name] = mean.detach()
            if weight:
                aux_loss = aux_loss + weight * mean
        return ModelOutput(logits=logits, loss=loss, aux_loss=aux_loss, aux=aux, extra_logits=extra)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Tied unembedding, then the head component (softcap, a user's) when there is one."""
        logits = self.lm_head(h)
        return logits if self.logit_head is None else self.logit_head(logits)

    # ---- helpers ---------------------------------------------------------------------------------
    def num_params(self) -> dict[str, int]:
        """{"total": every parameter once (tied embeddings once, MTP heads included),
        "active": what one token uses (total minus the experts it is not routed to)}."""
        total = sum(p.numel() for p in self.parameters())
        inactive = sum(m.inactive_params() for m in self.modules() if hasattr(m, "inactive_params"))
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
        # A block caches what its attention needs (a block without `.attn` brings its own new_cache).
        layers = [getattr(block, "new_cache", None) or block.attn.new_cache for block in self.transformer.h]
        layers = [new_cache(batch_size, max_len, device, dtype) for new_cache in layers]
        return KVCache(layers, batch_size, max_len)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)

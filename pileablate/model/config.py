"""ModelConfig: every architecture choice as one typed, JSON-serialisable dataclass, plus presets.

A config is the baseline (GPT-2) unless a field says otherwise; the slot fields (position, norm,
attention, mlp, feedforward, block, head, objective) name registered components, `scores` and `masks` the
attention hooks in force, and modifications (pileablate/registry.py) are named sets of such changes.
Presets and `build_model_config` live in build.py. Fields left `None` follow a documented default rule
(see the `help` of each), computed by the properties below, so `ModelConfig(**asdict(cfg))` rebuilds
exactly the same model. Each component checks its own conditions (`Component.check`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from pileablate.errors import UserError
from pileablate.options import option

VOCAB_MULTIPLE = 64  # embedding rows padded up to a multiple of 64: faster matmuls (nanoGPT's 50304)


@dataclass
class ModelConfig:
    """Architecture of one GPT. The defaults are GPT-2 (nanoGPT's model.py)."""

    vocab_size: int = option(50304, "Embedding rows (tokenizer vocab padded up to a multiple of 64).")
    data_vocab_size: Optional[int] = option(None, "Real tokenizer vocab (ids the data can hold); the initial loss is compared with ln of this. None: vocab_size.")
    n_layer: int = option(12, "Transformer blocks.")
    n_head: int = option(12, "Attention (query) heads per block.")
    d_model: int = option(768, "Residual stream width.")
    seq_len: int = option(1024, "Context length (tokens per window) the model is trained on.")
    bias: bool = option(True, "Biases in every Linear layer and LayerNorm (GPT-2: yes).")
    dropout: float = option(0.0, "Dropout on embeddings, attention weights and residual branches.")
    init_std: float = option(0.02, "Std of the normal weight init (GPT-2: 0.02).")

    norm: str = option("layernorm", "'layernorm', 'rmsnorm' or a registered norm component.")
    norm_eps: float = option(1e-5, "Epsilon of every normalisation layer.")
    norm_position: str = option("pre", "'pre' (GPT-2) or 'post' (original Transformer) LayerNorm.")

    position: str = option("learned", "'learned' absolute positions (wpe), 'rope' rotary embeddings or a registered position component.")
    rope_theta: float = option(10000.0, "RoPE base (Llama: 10000).")

    mlp: str = option("gelu", "'gelu' (4x, tanh GELU as GPT-2), 'swiglu', 'relu2' or a registered mlp component.")
    mlp_hidden: Optional[int] = option(None, "MLP hidden width. None: 4*d_model for gelu; for swiglu 8/3*d_model rounded so params match gelu within 1%.")

    attention: str = option("mha", "'mha' (multi-head; grouped-query with --n-kv-head), 'mla' (multi-head latent) or a registered attention component.")
    qk_norm: bool = option(False, "RMS-normalise queries and keys per head before attention (qknorm; mha).")
    kernel: str = option("sdpa", "'sdpa' (F.scaled_dot_product_attention, flash when available; FlexAttention on GPUs when a "
                                 "score or mask hook is active) or 'math' (explicit reference).")
    n_kv_head: Optional[int] = option(None, "Key/value heads of multi-head attention; must divide n_head. None: n_head. "
                                            "gqa sets the divisor of n_head nearest n_head/4, above 1 when one exists; 1 = multi-query attention.")
    kv_latent_dim: Optional[int] = option(None, "Latent width of keys/values for 'mla'. Default: max(d_model/4, head dim).")
    mla_rope_dim: Optional[int] = option(None, "mla with a rotary position component: width of the decoupled rotary query/key part. None: head_dim//2.")
    scores: tuple[str, ...] = option((), "Attention score hooks in force (registered 'score' components, applied in order).")
    masks: tuple[str, ...] = option((), "Attention mask hooks in force (registered 'mask' components, all combined with causality).")

    block: str = option("sequential", "Block wiring: 'sequential' (x + attn, then + mlp; GPT-2) or a registered block component.")
    feedforward: str = option("dense", "What each block's MLP is: 'dense' (one MLP), 'moe' (a mixture of experts of it) or a registered feedforward component.")
    head: str = option("linear", "What follows the tied unembedding: 'linear' (nothing), 'softcap' or a registered head component.")
    objective: str = option("next", "Training objective beside next-token prediction: 'next' (none), 'mtp' or a registered objective component.")

    n_experts: int = option(8, "Experts per layer for 'moe'.")
    experts_per_token: int = option(2, "Experts each token is routed to, for 'moe'.")
    moe_aux_weight: float = option(0.01, "moe: weight of the Switch load-balancing loss.")

    mtp_depth: int = option(2, "Tokens predicted ahead per position for 'mtp' (2 = t+1 and t+2; k-1 extra heads).")
    mtp_weight: float = option(0.3, "mtp: weight of the mean extra-head loss in aux_loss.")

    mods: tuple[str, ...] = option((), "The modifications this config was built with (build_model_config records them).")
    mod_options: dict = option(None, "Options given to those modifications (--mod-option), {name: {key: value}}.")

    def __post_init__(self) -> None:
        from pileablate.registry import HOOK_FIELDS, SLOTS, TRAINER_SLOTS, component

        self.scores, self.masks, self.mods = tuple(self.scores), tuple(self.masks), tuple(self.mods)
        self.mod_options = {k: dict(v) for k, v in (self.mod_options or {}).items()}
        chosen = [component(slot, getattr(self, slot)) for slot in SLOTS if slot not in TRAINER_SLOTS]
        chosen += [component(kind, name) for kind, key in HOOK_FIELDS.items() for name in getattr(self, key)]
        choices = {"norm_position": ("pre", "post"), "kernel": ("sdpa", "math")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"model {name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        for name in ("vocab_size", "n_layer", "n_head", "d_model", "seq_len"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"model {name} must be at least 1 (got {getattr(self, name)})")
        if self.d_model % self.n_head:
            raise UserError(f"d_model {self.d_model} is not divisible by n_head {self.n_head}; pick sizes where it is")
        if self.data_vocab_size is not None and not 1 <= self.data_vocab_size <= self.vocab_size:
            raise UserError(f"data_vocab_size {self.data_vocab_size} must be between 1 and vocab_size {self.vocab_size}")
        for part in chosen:  # each component's own conditions (rope: an even head dim; moe: experts)
            problem = part.check(self) if part.check is not None else None
            if problem:
                raise UserError(problem)

    # Derived sizes (the "None means default rule" fields resolved).
    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def kv_heads(self) -> int:
        """Key/value heads of multi-head attention: n_head unless --n-kv-head (or gqa) says fewer."""
        return self.n_kv_head if self.n_kv_head is not None else self.n_head

    @property
    def latent_dim(self) -> int:
        return self.kv_latent_dim if self.kv_latent_dim is not None else max(self.d_model // 4, self.head_dim)

    @property
    def rope_dim(self) -> int:
        """mla's decoupled rotary width (DeepSeek-V2: half the head dim)."""
        return self.mla_rope_dim if self.mla_rope_dim is not None else max(2, (self.head_dim // 2) // 2 * 2)

    @property
    def ffn_hidden(self) -> int:
        """Dense MLP hidden width."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        from pileablate.registry import component

        rule = component("mlp", self.mlp).hidden
        return rule(self) if rule is not None else 4 * self.d_model


    @property
    def real_vocab_size(self) -> int:
        return self.data_vocab_size if self.data_vocab_size is not None else self.vocab_size


def default_kv_heads(n_head: int) -> int:
    """gqa's key/value heads when none are asked for: the divisor of n_head strictly between 1 and
    n_head nearest n_head/4 (ties: the larger), so the default is a real grouping and not multi-query
    attention: 4 heads -> 2, 6 -> 2, 12 -> 3, 16 -> 4. Only without such a divisor (n_head < 4, or
    prime) is it 1. Multi-query attention is `--n-kv-head 1`."""
    groups = [d for d in range(2, n_head) if n_head % d == 0]
    if not groups:
        return 1
    return min(groups, key=lambda d: (abs(d - n_head / 4), -d))


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)

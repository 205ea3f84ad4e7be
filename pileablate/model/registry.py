"""The one registry of modifications: each is a name, a target (model or trainer) and field changes.

`--mods rope,swiglu` means exactly "the baseline plus these field changes". Trainer modifications
change TrainConfig-side behaviour (the learning-rate schedule); model modifications change
ModelConfig fields (config.py). Nothing else in the package switches behaviour on a mod name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence, Union

from pileablate.errors import UserError


@dataclass(frozen=True)
class Modification:
    name: str
    summary: str
    target: str  # "model" | "trainer"
    changes: dict[str, Any]
    incompatible: frozenset[str] = field(default_factory=frozenset)
    reference: str = ""


_MODS = [
    Modification(
        "warmup", "linear learning-rate warmup, then constant", "trainer", {"schedule": "warmup"},
        reference="Goyal et al. 2017; Vaswani et al. 2017",
    ),
    Modification(
        "cosine", "warmup, then cosine decay to the minimum learning rate over the run's budget", "trainer",
        {"schedule": "cosine"}, reference="Loshchilov & Hutter 2017 (SGDR)",
    ),
    Modification("rmsnorm", "every LayerNorm becomes RMSNorm (fp32, weight only)", "model", {"norm": "rmsnorm"},
                 reference="Zhang & Sennrich 2019"),
    Modification("rope", "rotary embeddings on queries and keys replace learned positions", "model", {"position": "rope"},
                 reference="Su et al. 2021 (RoFormer); Llama rotate-half layout"),
    Modification("swiglu", "SwiGLU MLP w2(silu(w1 x) * w3 x), hidden ~8/3 d, params = GELU MLP", "model", {"mlp": "swiglu"},
                 reference="Shazeer 2020"),
    Modification("gqa", "grouped-query attention: --kv-heads key/value heads (default a real grouping near n_head/4; 1 = MQA)", "model",
                 {"attention": "gqa"}, frozenset({"mla"}), reference="Ainslie et al. 2023"),
    Modification("mla", "multi-head latent attention: keys/values from a --kv-latent-dim latent, decoupled rope part",
                 "model", {"attention": "mla"}, frozenset({"gqa"}), reference="DeepSeek-AI 2024 (DeepSeek-V2)"),
    Modification("moe", "mixture-of-experts MLP: --experts E, --top-k routing, load-balancing loss, active params = dense",
                 "model", {"moe": True}, reference="Shazeer et al. 2017; Fedus et al. 2021 (Switch)"),
    Modification("mtp", "multi-token prediction heads for t+2..t+k (--mtp-depth k) as an auxiliary loss", "model",
                 {"mtp": True}, reference="Gloeckle et al. 2024"),
    Modification("postnorm", "post-LayerNorm blocks x = LN(x + f(x)) (original Transformer) instead of pre-norm", "model",
                 {"norm_position": "post"}, reference="Vaswani et al. 2017; Xiong et al. 2020"),
]

REGISTRY: dict[str, Modification] = {m.name: m for m in _MODS}
SEED_MODS: tuple[str, ...] = ("warmup", "cosine", "rmsnorm", "rope", "swiglu")
ALIASES: dict[str, tuple[str, ...]] = {"all": SEED_MODS, "baseline": ()}


def valid_names() -> str:
    return ", ".join([*REGISTRY, *ALIASES])


def _split(spec: Union[str, Sequence[str], None]) -> list[str]:
    if spec is None:
        return []
    items: Iterable[str] = [spec] if isinstance(spec, str) else spec
    out: list[str] = []
    for item in items:
        out.extend(part.strip().lower() for part in str(item).split(",") if part.strip())
    return out


def resolve_mods(spec: Union[str, Sequence[str], None]) -> tuple[str, ...]:
    """Canonical tuple of modification names (registry order) from "a,b" or ["a", "b"].

    "" and "baseline" mean none; "all" is the five seed modifications. Unknown names and impossible
    combinations raise UserError.
    """
    chosen: set[str] = set()
    for name in _split(spec):
        if name in ALIASES:
            chosen.update(ALIASES[name])
        elif name in REGISTRY:
            chosen.add(name)
        else:
            raise UserError(f"unknown modification {name!r}; valid: {valid_names()}")
    ordered = tuple(name for name in REGISTRY if name in chosen)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            if b in REGISTRY[a].incompatible or a in REGISTRY[b].incompatible:
                raise UserError(
                    f"modifications {a!r} and {b!r} cannot be combined (see 'pileablate mods'); valid: {valid_names()}"
                )
    return ordered


def _changes(mods: Union[str, Sequence[str]], target: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for name in resolve_mods(mods):  # registry order: cosine (which includes warmup) wins over warmup
        mod = REGISTRY[name]
        if mod.target == target:
            merged.update(mod.changes)
    return merged


def model_changes(mods: Union[str, Sequence[str]]) -> dict[str, Any]:
    """ModelConfig field -> value for the model modifications in `mods`."""
    return _changes(mods, "model")


def trainer_changes(mods: Union[str, Sequence[str]]) -> dict[str, Any]:
    """Trainer setting -> value, e.g. {"schedule": "cosine"}; {} means the baseline constant LR."""
    return _changes(mods, "trainer")


def mods_in_config(config: Any) -> tuple[str, ...]:
    """The model modifications whose changes are all in effect in a ModelConfig (for guard messages)."""
    return tuple(
        m.name for m in _MODS
        if m.target == "model" and all(getattr(config, k, object()) == v for k, v in m.changes.items())
    )

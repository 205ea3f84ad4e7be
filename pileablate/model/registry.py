"""The registry: slots, the components that fill them, and the modifications that choose components.

The model and the trainer are assembled from named slots (SLOTS). Each slot is filled by a registered
component (`register_component`); the baseline's components are the defaults of ModelConfig's slot
fields (and `adamw` / `constant` for the trainer). A modification (`register(Modification(...))`) says
which slots it fills and with which component, which options of the components it sets, the size knob
parameter matching may adjust, what it cannot be combined with, and its reference.

The built-in modifications live one module per family in `pileablate/mods/` and register themselves
exactly as a user's file does (`--mods-file`, see `pileablate.mods_files`). `--mods rope,swiglu`
means exactly "the baseline with these components and options". Nothing else in the package switches
behaviour on a modification's name.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

from pileablate.errors import UserError

# slot -> what its component's `build` is called with and must return.
SLOTS: dict[str, str] = {
    "position": "build(config) -> module(x, start) -> x with positions added (learned and rope are built into GPT)",
    "norm": "build(config, dim) -> module(x) -> x",
    "attention": "build(config) -> module(x, rotary, cache, start) -> x, with .new_cache(batch, max_len, device, dtype)",
    "mlp": "build(config, hidden) -> module(x) -> x",
    "block": "build(config) -> module(x, rotary, cache, start) -> (x, aux balance loss or None)",
    "head": "build(config) -> module(logits) -> logits (after the tied unembedding)",
    "optimizer": "build(model, train_config, device) -> torch optimizer (param groups may carry an lr_scale)",
    "schedule": "build(train_config) -> callable(step, budget_fraction) -> learning rate",
}
TRAINER_SLOTS = ("optimizer", "schedule")
# The baseline's component in each trainer slot (the model's are ModelConfig's field defaults).
TRAINER_DEFAULTS = {"optimizer": "adamw", "schedule": "constant"}

# Canonical order of the historical modifications: run names ("rope+swiglu-s0") and the precedence of
# field changes (cosine after warmup) depend on it. Later modifications follow in registration order.
_HISTORICAL = ("warmup", "cosine", "rmsnorm", "rope", "swiglu", "gqa", "mla", "moe", "mtp", "postnorm")


@dataclass(frozen=True)
class Component:
    slot: str
    name: str
    build: Optional[Callable[..., Any]]  # None: built into the model/trainer (learned, rope)
    summary: str = ""
    hidden: Optional[Callable[[Any], int]] = None  # mlp only: default hidden width for a config
    origin: str = "built-in"


@dataclass(frozen=True)
class Modification:
    """One modification. `fills`: slot -> component name. `options`: other config fields it sets (the
    built-in components read them, e.g. qk_norm). `size_knob`: what parameter matching may adjust to
    give it the baseline's parameter count ("mlp_hidden"), or None when it needs none (a model that still
    differs by more than 1% is then trained at its own size and flagged in the report)."""

    name: str
    summary: str
    fills: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    size_knob: Optional[str] = "mlp_hidden"
    incompatible: frozenset[str] = field(default_factory=frozenset)
    reference: str = ""
    origin: str = "built-in"
    supersedes: frozenset[str] = field(default_factory=frozenset)  # combinable though filling one slot: this wins

    @property
    def changes(self) -> dict[str, Any]:
        """Config field -> value: the slot fields it fills and the options it sets."""
        return {**self.fills, **self.options}

    @property
    def target(self) -> str:
        """"trainer" when it only changes trainer slots, else "model"."""
        return "trainer" if set(self.changes) <= set(TRAINER_SLOTS) else "model"

    @property
    def slots(self) -> tuple[str, ...]:
        return tuple(self.fills)


REGISTRY: dict[str, Modification] = {}
COMPONENTS: dict[str, dict[str, Component]] = {slot: {} for slot in SLOTS}
SEED_MODS: tuple[str, ...] = ("warmup", "cosine", "rmsnorm", "rope", "swiglu")
ALIASES: dict[str, tuple[str, ...]] = {"all": SEED_MODS, "baseline": ()}
SIZE_KNOBS = ("mlp_hidden", None)

_origin = "built-in"
_sequence: dict[str, int] = {}


@contextlib.contextmanager
def registering_from(origin: str) -> Iterator[None]:
    """Everything registered inside is attributed to `origin` (a file path or an entry point)."""
    global _origin
    before, _origin = _origin, origin
    try:
        yield
    finally:
        _origin = before


def _where() -> str:
    return "" if _origin == "built-in" else f"{_origin}: "


def register_component(slot: str, name: str, build: Optional[Callable[..., Any]], summary: str = "",
                       hidden: Optional[Callable[[Any], int]] = None) -> Component:
    """Register the component `name` for `slot`; `build` as SLOTS[slot] describes."""
    if slot not in SLOTS:
        raise UserError(f"{_where()}component {name!r} declares unknown slot {slot!r}; slots: {', '.join(SLOTS)}")
    existing = COMPONENTS[slot].get(name)
    if existing is not None:
        raise UserError(f"{_where()}component {name!r} for slot {slot} is already registered by {existing.origin}; rename it")
    component = Component(slot, name, build, summary, hidden, _origin)
    COMPONENTS[slot][name] = component
    return component


def register(mod: Modification) -> Modification:
    """Add a modification; UserError (naming the file) for a taken name, an unknown slot, component or
    option, or an unknown size knob."""
    mod = Modification(**{**{f.name: getattr(mod, f.name) for f in fields(mod)}, "origin": _origin,
                          "incompatible": frozenset(mod.incompatible), "supersedes": frozenset(mod.supersedes)})
    where = f"{_where()}modification {mod.name!r}"
    if mod.name in REGISTRY or mod.name in ALIASES or mod.name != mod.name.strip().lower() or "," in mod.name:
        owner = REGISTRY[mod.name].origin if mod.name in REGISTRY else "pileablate"
        raise UserError(f"{where}: the name is already taken (by {owner}) or not a lower-case name without commas; rename it")
    for slot, component in mod.fills.items():
        if slot not in SLOTS:
            raise UserError(f"{where} declares unknown slot {slot!r}; slots: {', '.join(SLOTS)}")
        if component not in COMPONENTS[slot]:
            raise UserError(f"{where} fills slot {slot} with {component!r}, which is not registered "
                            f"(register_component first); registered: {', '.join(COMPONENTS[slot])}")
    unknown = [k for k in mod.options if k not in _option_fields()]
    if unknown:
        raise UserError(f"{where} sets unknown option(s) {', '.join(unknown)}; options are ModelConfig fields")
    if mod.size_knob not in SIZE_KNOBS:
        raise UserError(f"{where}: size_knob must be 'mlp_hidden' or None, not {mod.size_knob!r}")
    _sequence.setdefault(mod.name, len(_sequence))
    REGISTRY[mod.name] = mod
    ordered = sorted(REGISTRY.values(), key=_rank)
    REGISTRY.clear()
    REGISTRY.update((m.name, m) for m in ordered)
    return mod


def _rank(mod: Modification) -> tuple[int, int]:
    historical = _HISTORICAL.index(mod.name) if mod.name in _HISTORICAL else len(_HISTORICAL)
    return historical, _sequence[mod.name]


def _option_fields() -> set[str]:
    from pileablate.model.config import ModelConfig

    return {f.name for f in fields(ModelConfig)} - set(SLOTS)


def unregister(origin: str) -> None:
    """Forget every modification and component registered from `origin` (tests; a reloaded file)."""
    for name in [n for n, m in REGISTRY.items() if m.origin == origin]:
        del REGISTRY[name]
    for slot in COMPONENTS.values():
        for name in [n for n, c in slot.items() if c.origin == origin]:
            del slot[name]


def component(slot: str, name: str) -> Component:
    """The registered component; UserError listing the registered ones for an unknown name."""
    try:
        return COMPONENTS[slot][name]
    except KeyError:
        raise UserError(f"model {slot} must be one of {', '.join(COMPONENTS[slot])}, not {name!r} "
                        "(a modification from a --mods-file that is not loaded?)") from None


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
            if b in incompatible_with(a):
                raise UserError(
                    f"modifications {a!r} and {b!r} cannot be combined (see 'pileablate mods'); valid: {valid_names()}"
                )
    return ordered


def incompatible_with(name: str) -> frozenset[str]:
    """What `name` cannot be combined with: what it declares, what declares it (a user's file can
    declare a built-in, which cannot know about it), and what fills one of its slots with another
    component (unless one supersedes the other, as cosine, which includes warmup's ramp, does warmup)."""
    mod = REGISTRY[name]
    out = set(mod.incompatible) | {m.name for m in REGISTRY.values() if name in m.incompatible}
    for other in REGISTRY.values():
        clash = any(other.fills.get(slot, chosen) != chosen for slot, chosen in mod.fills.items())
        if clash and other.name != name and name not in other.supersedes and other.name not in mod.supersedes:
            out.add(other.name)
    return frozenset(out)


def _changes(mods: Union[str, Sequence[str]], trainer: bool) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for name in resolve_mods(mods):  # registry order: cosine (which includes warmup) wins over warmup
        merged.update({k: v for k, v in REGISTRY[name].changes.items() if (k in TRAINER_SLOTS) == trainer})
    return merged


def model_changes(mods: Union[str, Sequence[str]]) -> dict[str, Any]:
    """ModelConfig field -> value for the model modifications in `mods`."""
    return _changes(mods, trainer=False)


def trainer_changes(mods: Union[str, Sequence[str]]) -> dict[str, Any]:
    """Trainer slot -> component, e.g. {"schedule": "cosine"}; {} means the baseline (adamw, constant)."""
    return _changes(mods, trainer=True)


def trainer_component(mods: Union[str, Sequence[str]], slot: str) -> Component:
    """The component filling a trainer slot for `mods` (the baseline's when none fills it)."""
    return component(slot, trainer_changes(mods).get(slot, TRAINER_DEFAULTS[slot]))


def mods_in_config(config: Any) -> tuple[str, ...]:
    """The model modifications whose changes are all in effect in a ModelConfig (for guard messages)."""
    return tuple(
        m.name for m in REGISTRY.values()
        if m.target == "model" and all(getattr(config, k, object()) == v for k, v in m.changes.items()
                                       if k not in TRAINER_SLOTS)
    )


def size_knobs(mods: Union[str, Sequence[str]]) -> set[Optional[str]]:
    """The size knobs the model modifications in `mods` declare."""
    return {REGISTRY[name].size_knob for name in resolve_mods(mods) if REGISTRY[name].target == "model"}


def _load_builtins() -> None:
    """Import every module of pileablate/mods/ (the folder listing is the list of built-ins)."""
    import pileablate.mods as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        importlib.import_module(f"{package.__name__}.{info.name}")


_load_builtins()

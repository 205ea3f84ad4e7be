"""The registry: slots, the components that fill them, the modifications that choose components, and
the options each modification declares. A leaf: it imports nothing of the package but `errors`, so
`model/` and `train/` consult it by slot and nobody imports upwards through it.

The model and the trainer are assembled from named slots (SLOTS), each filled by one registered
component, and from stackable attention hooks (HOOKS: every chosen one applies). A modification
(`register(Modification(...))`) says which slots it fills and with which component, which hooks it adds,
which ModelConfig fields it sets (`sets`), which options of its own a person may give
(`options`, `--mod-option NAME.KEY=VALUE`), the size knob parameter matching may adjust, what it cannot
be combined with, and its reference.

The built-ins (`pileablate/mods/`, one module each) and a user's file (`--mods-file`) register through
the same public module, `pileablate.mods`; the built-ins are loaded the first time anything is looked
up here. Nothing else in the package switches behaviour on a modification's or a component's name.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

from pileablate.errors import UserError

# slot -> what its component's `build` is called with and must return (ctx: model.context.Context).
SLOTS: dict[str, str] = {
    "position": "build(config) -> module(x, ctx) -> x: adds positions to the embeddings and/or sets ctx.rotate for attention",
    "norm": "build(config, dim) -> module(x) -> x",
    "attention": "build(config, layer) -> module(x, ctx) -> x, with .new_cache(batch, max_len, device, dtype)",
    "mlp": "build(config, hidden) -> module(x) -> x",
    "feedforward": "build(config, layer) -> module(x, ctx) -> x: the MLP in force, dense or a mixture of experts",
    "block": "build(config, layer) -> module(x, ctx) -> x",
    "head": "build(config) -> module(logits) -> logits (after the tied unembedding)",
    "objective": "build(config) -> module(h, ctx, logits_fn, targets): extra heads and losses beside next-token (or None)",
    "optimizer": "build(model, train_config, device) -> torch optimizer (param groups may carry an lr_scale)",
    "schedule": "build(train_config) -> callable(step, budget_fraction) -> learning rate",
}
# Stackable hooks: a config holds a list of them, every one applies (ALiBi and a sliding window together).
HOOKS: dict[str, str] = {
    "score": "build(config) -> score_mod(score, b, h, q_idx, kv_idx) -> score (absolute positions; torch ops only)",
    "mask": "build(config) -> mask_mod(b, h, q_idx, kv_idx) -> bool, True where the query may attend (causality is always added)",
}
# The ModelConfig field of each hook kind (a tuple of component names).
HOOK_FIELDS = {"score": "scores", "mask": "masks"}
TRAINER_SLOTS = ("optimizer", "schedule")
# The baseline's component in each trainer slot (the model's are ModelConfig's field defaults).
TRAINER_DEFAULTS = {"optimizer": "adamw", "schedule": "constant"}

# Canonical order of the historical modifications: run names ("rope+swiglu-s0") and the precedence of
# field changes (cosine after warmup) depend on it. Later modifications follow in registration order.
_HISTORICAL = ("warmup", "cosine", "rmsnorm", "rope", "swiglu", "gqa", "mla", "moe", "mtp", "postnorm")


@dataclass(frozen=True)
class Option:
    """An option a modification declares: `--mod-option NAME.KEY=VALUE`, typed as its default."""

    default: Any
    help: str = ""

    def parse(self, text: str, where: str) -> Any:
        kind = type(self.default)
        try:
            if kind is bool:
                lowered = str(text).strip().lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                return lowered in ("true", "1", "yes")
            return kind(float(text)) if kind is int and float(text).is_integer() else kind(text)
        except (TypeError, ValueError):
            raise UserError(f"{where}: {text!r} is not a {kind.__name__} ({self.help or 'see pileablate mods'})") from None


@dataclass(frozen=True)
class Component:
    slot: str
    name: str
    build: Optional[Callable[..., Any]]  # None: nothing to build (the tied head alone, no extra objective)
    summary: str = ""
    hidden: Optional[Callable[[Any], int]] = None  # mlp only: default hidden width for a config
    origin: str = "built-in"
    traits: frozenset[str] = frozenset()  # what it offers others: "rotary" (position: sets ctx.rotate)
    check: Optional[Callable[[Any], Optional[str]]] = None  # config -> why it cannot be built, or None
    exports: frozenset[str] = frozenset()  # Hugging Face architectures it maps onto exactly ("gpt2", "llama")
    width_unit: Optional[Callable[[Any], int]] = None  # feedforward: the MLP width moves in steps of this (moe: k)


@dataclass(frozen=True)
class Modification:
    """One modification. `fills`: slot -> component name, or hook kind -> component name (added to the
    hooks in force). `sets`: ModelConfig fields it sets (values, or a function of the config's other
    values). `options`: its own options (KEY -> Option), read by its components with `options_of`.
    `size_knob`: what parameter matching may adjust to give it the baseline's parameter count
    ("mlp_hidden"), or None when it needs none (a model that still differs by more than 1% is then
    trained at its own size and flagged in the report). `exports`: the Hugging Face architectures it
    maps onto, when it sets fields (None: those of the components it fills)."""

    name: str
    summary: str
    fills: Mapping[str, str] = field(default_factory=dict)
    sets: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Option] = field(default_factory=dict)
    size_knob: Optional[str] = "mlp_hidden"
    incompatible: frozenset[str] = field(default_factory=frozenset)
    reference: str = ""
    origin: str = "built-in"
    supersedes: frozenset[str] = field(default_factory=frozenset)  # combinable though filling one slot: this wins
    exports: Optional[frozenset[str]] = None

    @property
    def target(self) -> str:
        """"trainer" when it only changes trainer slots, else "model"."""
        return "trainer" if not self.sets and set(self.fills) <= set(TRAINER_SLOTS) else "model"

    @property
    def slots(self) -> tuple[str, ...]:
        return tuple(self.fills)


_REGISTRY: dict[str, Modification] = {}
_COMPONENTS: dict[str, dict[str, Component]] = {slot: {} for slot in (*SLOTS, *HOOKS)}
SEED_MODS: tuple[str, ...] = ("warmup", "cosine", "rmsnorm", "rope", "swiglu")
ALIASES: dict[str, tuple[str, ...]] = {"all": SEED_MODS, "baseline": ()}
SIZE_KNOBS = ("mlp_hidden", None)

_origin = "built-in"
_sequence: dict[str, int] = {}
_builtins = "unloaded"


def _ensure_builtins() -> None:
    """Load pileablate/mods/ the first time anything is looked up (lazily: the registry is a leaf)."""
    global _builtins
    if _builtins == "unloaded":
        _builtins = "loading"
        importlib.import_module("pileablate.mods").load_builtins()
        _builtins = "loaded"


def modifications() -> dict[str, Modification]:
    """Every registered modification, in canonical order (name -> Modification)."""
    _ensure_builtins()
    return _REGISTRY


def components(slot: str) -> dict[str, Component]:
    """The registered components of a slot or hook kind (name -> Component)."""
    _ensure_builtins()
    return _COMPONENTS[slot]


def modification(name: str) -> Modification:
    return modifications()[name]


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


def register_component(slot: str, name: str, build: Optional[Callable[..., Any]], summary: str = "", *,
                       hidden: Optional[Callable[[Any], int]] = None, traits: Iterable[str] = (),
                       check: Optional[Callable[[Any], Optional[str]]] = None, exports: Iterable[str] = (),
                       width_unit: Optional[Callable[[Any], int]] = None) -> Component:
    """Register the component `name` for `slot` (or hook kind); `build` as SLOTS / HOOKS describe."""
    if slot not in _COMPONENTS:
        raise UserError(f"{_where()}component {name!r} declares unknown slot {slot!r}; slots: {', '.join(_COMPONENTS)}")
    existing = _COMPONENTS[slot].get(name)
    if existing is not None:
        raise UserError(f"{_where()}component {name!r} for slot {slot} is already registered by {existing.origin}; rename it")
    made = Component(slot, name, build, summary, hidden, _origin, frozenset(traits), check, frozenset(exports), width_unit)
    _COMPONENTS[slot][name] = made
    return made


def register(mod: Modification) -> Modification:
    """Add a modification; UserError (naming the file) for a taken name, an unknown slot, component,
    field or option, or an unknown size knob."""
    mod = replace(mod, origin=_origin, incompatible=frozenset(mod.incompatible), supersedes=frozenset(mod.supersedes),
                  exports=None if mod.exports is None else frozenset(mod.exports))
    where = f"{_where()}modification {mod.name!r}"
    if mod.name in _REGISTRY or mod.name in ALIASES or mod.name != mod.name.strip().lower() or "," in mod.name \
            or "." in mod.name:
        owner = _REGISTRY[mod.name].origin if mod.name in _REGISTRY else "pileablate"
        raise UserError(f"{where}: the name is already taken (by {owner}) or not a lower-case name without "
                        "commas or dots; rename it")
    for slot, chosen in mod.fills.items():
        if slot not in _COMPONENTS:
            raise UserError(f"{where} declares unknown slot {slot!r}; slots: {', '.join(_COMPONENTS)}")
        if chosen not in _COMPONENTS[slot]:
            raise UserError(f"{where} fills slot {slot} with {chosen!r}, which is not registered "
                            f"(register_component first); registered: {', '.join(_COMPONENTS[slot])}")
    unknown = [k for k in mod.sets if k not in _settable_fields()]
    if unknown:
        raise UserError(f"{where} sets unknown field(s) {', '.join(unknown)}; `sets` takes ModelConfig fields "
                        "(its own settings are `options`)")
    for key, declared in mod.options.items():
        if not isinstance(declared, Option) or not key.isidentifier():
            raise UserError(f"{where}: option {key!r} must be a Python name mapped to Option(default, help)")
    if mod.size_knob not in SIZE_KNOBS:
        raise UserError(f"{where}: size_knob must be 'mlp_hidden' or None, not {mod.size_knob!r}")
    _sequence.setdefault(mod.name, len(_sequence))
    _REGISTRY[mod.name] = mod
    ordered = sorted(_REGISTRY.values(), key=_rank)
    _REGISTRY.clear()
    _REGISTRY.update((m.name, m) for m in ordered)
    return mod


def _rank(mod: Modification) -> tuple[int, int]:
    historical = _HISTORICAL.index(mod.name) if mod.name in _HISTORICAL else len(_HISTORICAL)
    return historical, _sequence[mod.name]


def _settable_fields() -> set[str]:
    from pileablate.model.config import ModelConfig  # lazily: the config module consults the registry

    return {f.name for f in fields(ModelConfig)} - set(SLOTS) - set(HOOK_FIELDS.values()) - {"mods", "mod_options"}


def unregister(origin: str) -> None:
    """Forget every modification and component registered from `origin` (tests; a reloaded file)."""
    for name in [n for n, m in _REGISTRY.items() if m.origin == origin]:
        del _REGISTRY[name]
    for slot in _COMPONENTS.values():
        for name in [n for n, c in slot.items() if c.origin == origin]:
            del slot[name]


def component(slot: str, name: str) -> Component:
    """The registered component; UserError listing the registered ones for an unknown name."""
    try:
        return components(slot)[name]
    except KeyError:
        raise UserError(f"model {slot} must be one of {', '.join(_COMPONENTS[slot])}, not {name!r} "
                        "(a modification from a --mods-file that is not loaded?)") from None


def valid_names() -> str:
    return ", ".join([*modifications(), *ALIASES])


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
    registry = modifications()
    chosen: set[str] = set()
    for name in _split(spec):
        if name in ALIASES:
            chosen.update(ALIASES[name])
        elif name in registry:
            chosen.add(name)
        else:
            raise UserError(f"unknown modification {name!r}; valid: {valid_names()}")
    ordered = tuple(name for name in registry if name in chosen)
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
    component (unless one supersedes the other, as cosine, which includes warmup's ramp, does warmup).
    Hooks stack, so two modifications adding hooks never clash by that."""
    registry = modifications()
    mod = registry[name]
    out = set(mod.incompatible) | {m.name for m in registry.values() if name in m.incompatible}
    for other in registry.values():
        clash = any(slot in SLOTS and other.fills.get(slot, chosen) != chosen for slot, chosen in mod.fills.items())
        if clash and other.name != name and name not in other.supersedes and other.name not in mod.supersedes:
            out.add(other.name)
    return frozenset(out)


def model_changes(mods: Union[str, Sequence[str]], values: Mapping[str, Any]) -> dict[str, Any]:
    """ModelConfig field -> value for the model modifications in `mods`, applied on `values` (the
    preset's sizes; a `sets` entry may be a function of them). Hooks accumulate in registry order."""
    merged: dict[str, Any] = {}
    for name in resolve_mods(mods):  # registry order
        mod = _REGISTRY[name]
        for slot, chosen in mod.fills.items():
            if slot in HOOKS:
                key = HOOK_FIELDS[slot]
                merged[key] = (*merged.get(key, ()), chosen)
            elif slot not in TRAINER_SLOTS:
                merged[slot] = chosen
        for key, value in mod.sets.items():
            merged[key] = value({**values, **merged}) if callable(value) else value
    return merged


def trainer_component(mods: Union[str, Sequence[str]], slot: str) -> Component:
    """The component filling a trainer slot for `mods` (the baseline's when none fills it); cosine
    comes after warmup in registry order, so it wins."""
    chosen = TRAINER_DEFAULTS[slot]
    for name in resolve_mods(mods):
        chosen = _REGISTRY[name].fills.get(slot, chosen)
    return component(slot, chosen)


def size_knobs(mods: Union[str, Sequence[str]]) -> set[Optional[str]]:
    """The size knobs the model modifications in `mods` declare."""
    return {_REGISTRY[name].size_knob for name in resolve_mods(mods) if _REGISTRY[name].target == "model"}


# ---- a modification's own options ----------------------------------------------------------------

def parse_mod_options(given: Iterable[str], mods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """"NAME.KEY=VALUE" strings -> {name: {key: typed value}} for the modifications in `mods`, sorted so
    the same options always record the same way. An option of a modification not in `mods` is left out
    (an ablation gives it to the configurations that use it); an unknown key is a UserError."""
    registry = modifications()
    out: dict[str, dict[str, Any]] = {}
    for text in given:
        name_key, eq, value = str(text).partition("=")
        name, dot, key = name_key.strip().lower().partition(".")
        if not (eq and dot and key):
            raise UserError(f"--mod-option {text!r}: write NAME.KEY=VALUE, e.g. lion.beta2=0.95")
        if name not in registry:
            raise UserError(f"--mod-option {text!r}: unknown modification {name!r}; valid: {valid_names()}")
        declared = registry[name].options
        if key.strip() not in declared:
            have = ", ".join(declared) or "none"
            raise UserError(f"--mod-option {text!r}: {name} has no option {key.strip()!r} (its options: {have})")
        if name in mods:
            key = key.strip()
            out.setdefault(name, {})[key] = declared[key].parse(value.strip(), f"--mod-option {name}.{key}")
    return {name: dict(sorted(values.items())) for name, values in sorted(out.items())}


def mod_options_text(options: Mapping[str, Mapping[str, Any]]) -> tuple[str, ...]:
    """{name: {key: value}} -> ("name.key=value", ...), as --mod-option takes them."""
    return tuple(f"{name}.{key}={value}" for name, values in options.items() for key, value in values.items())


class _Options:
    def __init__(self, name: str, values: Mapping[str, Any]) -> None:
        self._name, self._values = name, dict(values)

    def __getattr__(self, key: str) -> Any:
        try:
            return self.__dict__["_values"][key]
        except KeyError:
            raise AttributeError(f"modification {self.__dict__['_name']!r} declares no option {key!r}") from None

    def __repr__(self) -> str:
        return f"options of {self._name}: {self._values}"


def options_of(config: Any, name: str) -> _Options:
    """The options of modification `name` in force for a ModelConfig or TrainConfig: what was given
    with --mod-option, the declared defaults for the rest (`options_of(cfg, "lion").beta2`)."""
    declared = modification(name).options
    given = getattr(config, "mod_options", None) or {}
    if not isinstance(given, Mapping):  # a TrainConfig's, as given: ("lion.beta2=0.95", ...)
        given = parse_mod_options(given, (name,))
    given = dict(given.get(name, {}))
    return _Options(name, {key: given.get(key, option.default) for key, option in declared.items()})


def config_without(config: Any, name: str) -> Any:
    """A ModelConfig as it would be without modification `name`: its slots back to the baseline's
    components, its hooks removed, the fields it sets back to their defaults (the guards' culprit search)."""
    defaults = {f.name: f.default for f in fields(type(config))}
    mod = modification(name)
    changes: dict[str, Any] = {}
    for slot, chosen in mod.fills.items():
        if slot in HOOKS:
            key = HOOK_FIELDS[slot]
            changes[key] = tuple(c for c in getattr(config, key) if c != chosen)
        elif slot not in TRAINER_SLOTS:
            changes[slot] = defaults[slot]
    changes.update({key: defaults[key] for key in mod.sets})
    changes["mods"] = tuple(m for m in config.mods if m != name)
    return replace(config, **changes)


def __getattr__(name: str) -> Any:
    """REGISTRY (name -> Modification) and COMPONENTS (slot -> name -> Component), with the built-ins
    loaded on first use."""
    if name == "REGISTRY":
        return modifications()
    if name == "COMPONENTS":
        _ensure_builtins()
        return _COMPONENTS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""A run's plan: what a person gave (a TrainConfig from the command line, an ablation's run, a job-array
task) resolved once into what the run is.

`plan_run` is the one function that resolves a run: it loads the --mods-file files (a worker process
started by spawn registers the user's modifications too), resolves --mods, builds the model config
(size matched to the baseline's), counts its parameters, and fills every default that depends on them
or on the preset (learning rate, batch, warmup, the budget). Nothing after it resolves again: the
trainer builds from the plan, `config.json` records it, and `ablate` compares run folders with it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

from pileablate.model.config import ModelConfig
from pileablate.train import config as tc
from pileablate.train.config import TrainConfig


@dataclass(frozen=True)
class ParamCounts:
    total: int    # every parameter once (tied embeddings once)
    active: int   # what one token uses (the experts it is not routed to left out)


@dataclass(frozen=True)
class RunPlan:
    """One run, resolved: the settings config.json records, its model and its components."""

    requested: TrainConfig    # as given (to tell a default budget from a chosen one)
    settings: TrainConfig     # resolved: every default filled, the modifications by their registered names
    model: ModelConfig
    params: ParamCounts
    components: Mapping[str, str]  # slot -> the component filling it (model and trainer slots)
    default_budget: bool      # no budget was given: DEFAULT_TOKENS_PER_PARAM tokens per active parameter

    @property
    def mods(self) -> tuple[str, ...]:
        return self.settings.mods

    @property
    def budget(self) -> dict:
        from pileablate.runfolder import budget_of

        return budget_of(self.settings)


def plan_run(requested: TrainConfig, vocab_size: int) -> RunPlan:
    """The run `requested` describes, on data whose tokenizer has `vocab_size` ids (UserError for a
    modification, option or size that cannot be built)."""
    from pileablate.model.build import build_model_config
    from pileablate.mods_files import load_mods_files
    from pileablate.registry import resolve_mods

    load_mods_files(requested.mods_files)  # checks a recorded file's hash; registers what it defines
    mods = resolve_mods(requested.mods)
    model = build_model_config(requested.preset, mods, vocab_size, match_params=requested.match_params,
                               mod_options=requested.mod_options, **requested.model_overrides())
    params = count_params(model)
    default_budget = requested.max_steps is None and requested.max_tokens is None and requested.time_limit is None
    settings = _resolved_settings(requested, mods, params.active)
    return RunPlan(requested=requested, settings=settings, model=model, params=params,
                   components=_components(model, mods), default_budget=default_budget)


def count_params(model: ModelConfig) -> ParamCounts:
    """The model's parameter counts, without allocating its weights (built on the meta device)."""
    import torch

    from pileablate.model.gpt import GPT

    with torch.device("meta"):
        counts = GPT(model).num_params()
    return ParamCounts(total=counts["total"], active=counts["active"])


def _resolved_settings(cfg: TrainConfig, mods: tuple[str, ...], params_active: int) -> TrainConfig:
    """Fill the per-preset and budget defaults (the values config.json records)."""
    from pileablate.registry import SEED_MODS, mod_options_text, parse_mod_options

    defaults = tc.preset_defaults(cfg.preset)
    lr = cfg.lr if cfg.lr is not None else tc.default_lr(cfg.preset)
    no_budget = cfg.max_steps is None and cfg.max_tokens is None and cfg.time_limit is None
    return dataclasses.replace(
        cfg,
        mods=mods,
        mod_options=mod_options_text(parse_mod_options(cfg.mod_options, mods)),  # this run's modifications' only
        name=cfg.name or tc.default_run_name(mods, cfg.seed, SEED_MODS),
        lr=lr,
        min_lr=cfg.min_lr if cfg.min_lr is not None else lr / 10,
        batch_size=cfg.batch_size if cfg.batch_size is not None else defaults["batch_size"],
        warmup_steps=cfg.warmup_steps if cfg.warmup_steps is not None else tc.DEFAULT_WARMUP_STEPS,
        max_tokens=tc.DEFAULT_TOKENS_PER_PARAM * params_active if no_budget else cfg.max_tokens,
    )


def _components(model: ModelConfig, mods: tuple[str, ...]) -> dict[str, str]:
    from pileablate.registry import SLOTS, TRAINER_SLOTS, trainer_component

    chosen = {slot: getattr(model, slot) for slot in SLOTS if slot not in TRAINER_SLOTS and hasattr(model, slot)}
    chosen.update({slot: trainer_component(mods, slot).name for slot in TRAINER_SLOTS})
    return chosen

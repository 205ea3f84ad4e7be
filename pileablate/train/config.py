"""`TrainConfig`: every option of one training run, typed, with the docs the CLI shows as help.

Each field is the `pileablate train` option of its name and its help the --help (pileablate.options), so
the manual and the code cannot drift apart. Options left as `None` take a per-preset default (see `PRESET_DEFAULTS`), resolved
by `plan.plan_run` once the model size is known; the preset itself, when not given, by `machine_preset`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

from pileablate.errors import UserError
from pileablate.model.config import ModelConfig
from pileablate.options import default_of, flag_of, help_of, internal, option
from pileablate.trackers import parse_trackers, require_packages
from pileablate.units import parse_count, parse_duration

# Learning rate and batch per preset. Small models tolerate (and need) larger rates: 1e-3 is what
# minGPT/nanoGPT use for models up to ~10M parameters, 6e-4 is GPT-2 small's rate (GPT-3 paper,
# table 2.1), 3e-4 GPT-2 medium's. The batch sizes keep a step a few thousand tokens on small presets
# (many steps on a CPU) and ~16k-32k tokens on GPU presets.
PRESET_DEFAULTS: dict[str, dict] = {
    "nano": {"lr": 1e-3, "batch_size": 8},
    "micro": {"lr": 1e-3, "batch_size": 16},
    "mini": {"lr": 1e-3, "batch_size": 32},
    "small": {"lr": 6e-4, "batch_size": 16},
    "medium": {"lr": 3e-4, "batch_size": 16},
}
FALLBACK_DEFAULTS = {"lr": 6e-4, "batch_size": 16}

# Without any budget a run trains on this many tokens per (active) parameter: the compute-optimal
# ratio of Hoffmann et al. 2022 ("Chinchilla"), so a default run is neither toy-short nor wasteful.
DEFAULT_TOKENS_PER_PARAM = 20

# Warmup (linear, from 0) lasts `warmup_steps` optimizer steps, or 10% of the budget if that ends
# sooner (the ramp's rule: pileablate/mods/_kit.py), so a 300-step run is not spent warming up for 1000 steps.
DEFAULT_WARMUP_STEPS = 1000


AUTO_PRESET = "auto"
# The preset a run gets when none is given: what fits the machine it runs on.
GPU_PRESET, CPU_PRESET = "small", "micro"


def machine_preset(device: str = "auto") -> tuple[str, str]:
    """(preset, why): `small` (GPT-2 124M) when the run will train on CUDA, else `micro`, small enough for
    a CPU; an explicit --preset never comes here."""
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return GPU_PRESET, "the default where CUDA is available; --preset to choose"
    return CPU_PRESET, "the default without CUDA; --preset to choose"


# The --help panels, as litgpt groups its arguments.
MODEL, OPTIMIZER, BUDGET = "Model", "Optimizer", "Budget (the first reached ends the run)"
EVALUATION, HARDWARE = "Evaluation, logging, checkpoints", "Hardware"
# ModelConfig fields a run may set (None: the preset's value, or the model's own default rule).
# (Grouped-query attention's key/value heads are gqa's own option, gqa.kv_heads: an n_kv_head given to
# every configuration would make the baseline grouped too.)
MODEL_OPTIONS = ("n_layer", "n_head", "d_model", "seq_len", "kv_latent_dim", "n_experts", "experts_per_token", "mtp_depth")
_PRESET_SIZES = ("n_layer", "n_head", "d_model", "seq_len")


def _model_option(name: str):
    """A ModelConfig field as a train option of the same name: its help is the model's."""
    default = default_of(ModelConfig, name)
    tail = "Default: the preset's." if name in _PRESET_SIZES else f"Default: {default}." if default is not None else ""
    return option(None, f"{help_of(ModelConfig, name)} {tail}".strip(), group=MODEL)


def _count(text: str, flag: str) -> int:
    return parse_count(text, flag)


@dataclass
class TrainConfig:
    """One training run. Each field is the `pileablate train` option of the same name; its help is the --help."""

    mods: tuple[str, ...] = option((), "Modifications on top of the baseline: comma list, 'all', or 'baseline' (see 'pileablate mods').",
                                   comma_list=True)
    mods_files: tuple[str, ...] = option((), "Python files that register modifications (repeatable; see docs/modifications.md). "
                                             "Recorded with each file's sha256, so a resume notices a changed file.",
                                         flag="--mods-file", metavar="FILE")
    mod_options: tuple[str, ...] = option((), "An option a modification declares, NAME.KEY=VALUE (repeatable; e.g. lion.beta2=0.95; "
                                              "'pileablate mods' lists each one's). Given only to runs that use that modification.",
                                          flag="--mod-option", metavar="NAME.KEY=VALUE")
    preset: str = option(AUTO_PRESET, "Model size preset: nano, micro, mini, small, medium. Default auto: small (GPT-2 124M) "
                                      "where CUDA is available, micro (0.85M) on a CPU: its default budget, 17M tokens, takes about 20 "
                                      "minutes on 2 CPU cores (14k tokens/s, benchmarks/README.md).")
    data: Path = option(Path("data"), "Prepared token store (from 'pileablate prepare').")
    runs_dir: Path = option(Path("runs"), "Where run directories are written.")
    name: Optional[str] = option(None, "Run name (directory under --runs-dir). Default: the modifications and seed, e.g. 'rope+swiglu-s0'.")
    seed: int = option(0, "Seed for initialisation and the training data order (identical batches across --mods).")
    resume: bool = option(False, "Continue the existing run of this name (re-running the same command also resumes).")
    n_layer: Optional[int] = _model_option("n_layer")
    n_head: Optional[int] = _model_option("n_head")
    d_model: Optional[int] = _model_option("d_model")
    seq_len: Optional[int] = _model_option("seq_len")
    kv_latent_dim: Optional[int] = _model_option("kv_latent_dim")
    n_experts: Optional[int] = _model_option("n_experts")
    experts_per_token: Optional[int] = _model_option("experts_per_token")
    mtp_depth: Optional[int] = _model_option("mtp_depth")
    match_params: bool = option(True, "Give a modified model the baseline's parameter count (active parameters, within 1%) by "
                                      "its MLP width; --no-match-params keeps the modification's own size.", group=MODEL)
    lr: Optional[float] = option(None, "Peak learning rate. Default per preset: 1e-3 nano/micro/mini, 6e-4 small, 3e-4 medium.", group=OPTIMIZER)
    min_lr: Optional[float] = option(None, "Final learning rate of the 'cosine' schedule. Default lr/10.", group=OPTIMIZER)
    weight_decay: float = option(0.1, "AdamW weight decay, applied to weight matrices only (not biases, norms).", group=OPTIMIZER)
    beta1: float = option(0.9, "AdamW beta1.", group=OPTIMIZER)
    beta2: float = option(0.95, "AdamW beta2 (0.95 as in GPT-3: steadier for large-batch LM training).", group=OPTIMIZER)
    grad_clip: float = option(1.0, "Clip the global gradient norm to this value (0 = off).", group=OPTIMIZER)
    batch_size: Optional[int] = option(None, "Windows per micro-batch per process. Default per preset (8 nano, 16 micro, 32 mini, "
                                             "16 small/medium).", group=OPTIMIZER)
    grad_accum: int = option(1, "Micro-batches per optimizer step. Global batch = batch-size x grad-accum x processes.", group=OPTIMIZER)
    warmup_steps: Optional[int] = option(None, f"Warmup steps for 'warmup'/'cosine'. Default {DEFAULT_WARMUP_STEPS}, capped at "
                                               "10% of the budget.", group=OPTIMIZER)
    time_limit: Optional[float] = option(None, "Training-time budget, e.g. 30s, 90m, 1h30m (evaluation and checkpoints not counted; "
                                               "stored in seconds).", group=BUDGET, metavar="DURATION", parse=parse_duration)
    max_tokens: Optional[int] = option(None, f"Token budget, e.g. 5M, 1.5B. Without any budget: {DEFAULT_TOKENS_PER_PARAM} tokens per "
                                             "active parameter.", group=BUDGET, metavar="N", parse=_count)
    max_steps: Optional[int] = option(None, "Optimizer-step budget.", group=BUDGET)
    eval_every: int = option(100, "Evaluate on the validation windows every N steps (and at the end).", group=EVALUATION)
    eval_tokens: int = option(131072, "Validation tokens per evaluation: fixed windows of the held-out split, the same for every run.",
                              group=EVALUATION, metavar="N", parse=_count)
    log_every: int = option(10, "Write a metrics.jsonl row every N steps.", group=EVALUATION)
    checkpoint_every: str = option("10m", "Checkpoint every N steps (e.g. 500) or every duration (e.g. 10m); also at the end and on "
                                          "Ctrl-C.", group=EVALUATION, metavar="STEPS|DURATION")
    trackers: tuple[str, ...] = option((), "Live curves: tensorboard (in RUNS_DIR/tensorboard) and/or wandb (Weights & Biases, "
                                           "grouped by runs folder); comma list or repeated. Needs pip install -e "
                                           "'.[tensorboard]' / '.[wandb]'.", group=EVALUATION, flag="--tracker", metavar="NAME")
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps (auto: cuda, then mps, then cpu). ablate also takes a "
                                 "list, cuda:0,cuda:1, for its --jobs.", group=HARDWARE)
    precision: str = option("auto", "auto, bf16, fp16 or fp32 (auto: bf16 on GPUs with native bf16, compute capability 8.0+; else "
                                    "fp16 with loss scaling; fp32 on CPU/MPS).", group=HARDWARE)
    compile: bool = option(False, "torch.compile the model (faster on GPU after a warm-up compile).", group=HARDWARE)
    tuning: bool = option(False, "A learning-rate tuning run: evaluated on tuning windows of the held-out split that are "
                                 "disjoint from the validation windows reports score (set by 'ablate --tune-lr').", hidden=True)
    # Why the preset was chosen when none was given (shown in the run's header; not part of the run).
    preset_reason: Optional[str] = internal()

    def __post_init__(self) -> None:
        self.data = Path(self.data)
        self.runs_dir = Path(self.runs_dir)
        if isinstance(self.mods, str):
            self.mods = tuple(m for m in (s.strip() for s in self.mods.split(",")) if m)
        else:
            self.mods = tuple(self.mods)
        self.mods_files = tuple(str(f) for f in self.mods_files)
        self.mod_options = tuple(str(o) for o in self.mod_options)
        self.trackers = parse_trackers(self.trackers)
        if self.preset == AUTO_PRESET:
            self.preset, self.preset_reason = machine_preset(self.device)
        elif self.preset_reason is not None and self.preset != machine_preset(self.device)[0]:
            self.preset_reason = None  # a copy given another preset (a sweep point) chose it

    def model_overrides(self) -> dict:
        """The model options given (None: the preset's value), as `build_model_config` takes them."""
        return {name: getattr(self, name) for name in MODEL_OPTIONS}

    def to_json(self) -> dict:
        """`asdict` with paths as strings and tuples as lists (the form stored in config.json)."""
        out = {}
        for f in fields(self):
            if f.metadata.get("internal"):
                continue
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        return out


# ---------------------------------------------------------------------------------------------
# Parsing budget strings (counts and durations: pileablate.units).


def parse_checkpoint_every(text: str) -> tuple[Optional[int], Optional[float]]:
    """'500' -> (500 steps, None); '10m' -> (None, 600.0 seconds)."""
    raw = str(text).strip().lower()
    if raw.isdigit():
        steps = int(raw)
        if steps <= 0:
            raise UserError(f"--checkpoint-every {text!r}: must be positive (steps, or a duration like 10m)")
        return steps, None
    return None, parse_duration(raw, "--checkpoint-every")


CHOICES = {
    "device": ("auto", "cpu", "cuda", "mps"),
    "precision": ("auto", "bf16", "fp16", "fp32"),
}


def check_device(name: str) -> None:
    """One device, named as --device takes it (train, generate; ablate checks each device it lists)."""
    if "," in name:
        raise UserError(f"--device {name}: a run trains on one device; for several GPUs run it under torchrun, "
                        "or spread an ablation's runs over them with ablate --jobs")
    if not (name in CHOICES["device"] or re.fullmatch(r"cuda:\d+", name)):
        raise UserError(f"--device {name!r}: use auto, cpu, cuda, cuda:N or mps")


def validate(cfg: TrainConfig) -> None:
    """One-line errors for values that cannot work, before anything is built."""
    check_device(cfg.device)
    if cfg.precision not in CHOICES["precision"]:
        raise UserError(f"--precision {cfg.precision!r}: use auto, bf16, fp16 or fp32")
    positive = {"batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum, "eval_every": cfg.eval_every,
                "eval_tokens": cfg.eval_tokens, "log_every": cfg.log_every, "max_steps": cfg.max_steps,
                "max_tokens": cfg.max_tokens, "time_limit": cfg.time_limit, "lr": cfg.lr}
    for name, value in positive.items():
        if value is not None and value <= 0:
            raise UserError(f"{flag_of(TrainConfig, name)} must be positive (got {value})")
    if cfg.min_lr is not None and cfg.min_lr < 0:
        raise UserError("--min-lr must be >= 0")
    if cfg.warmup_steps is not None and cfg.warmup_steps < 0:
        raise UserError("--warmup-steps must be >= 0")
    if cfg.grad_clip < 0 or cfg.weight_decay < 0:
        raise UserError("--grad-clip and --weight-decay must be >= 0")
    if not (0 <= cfg.beta1 < 1 and 0 <= cfg.beta2 < 1):
        raise UserError("--beta1 and --beta2 must be in [0, 1)")
    if cfg.name is not None and (not cfg.name or "/" in cfg.name or cfg.name in (".", "..")):
        raise UserError(f"--name {cfg.name!r}: use a plain directory name")
    parse_checkpoint_every(cfg.checkpoint_every)
    require_packages(cfg.trackers)  # on every rank, before anything trains


def preset_defaults(preset: str) -> dict:
    return PRESET_DEFAULTS.get(preset, FALLBACK_DEFAULTS)


def default_lr(preset: str) -> float:
    """The learning rate a run of `preset` trains at without --lr, and what --tune-lr auto centres on:
    the one place the preset's rate is worked out."""
    return preset_defaults(preset)["lr"]


def default_run_name(mods: tuple[str, ...], seed: int, all_mods: tuple[str, ...] = ()) -> str:
    """'baseline-s0', 'rope+swiglu-s1', 'all-s0' (when mods are exactly the seed study's five)."""
    if not mods:
        label = "baseline"
    elif all_mods and set(mods) == set(all_mods):
        label = "all"
    else:
        label = "+".join(mods)
    return f"{label}-s{seed}"

"""Drive the grid: one `train()` after another, in process, with one budget for every run.

Fairness is the trainer's job per run (same data order for a seed, same validation windows); the
runner's job across runs is the equal budget and not losing work: a finished run is skipped, an
interrupted one resumed (the trainer continues a run directory it finds), a failed one left as it is
for the report to flag, and one that another process is training (it holds the run's lock,
`pileablate.runlock`) left to that process.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from pileablate import runlock
from pileablate.ablate.plan import PlannedRun
from pileablate.errors import UserError

from pileablate.runfolder import BUDGET_FIELDS, budget_of, read_summary, same_budget  # the run folder's rules


@dataclass(frozen=True)
class RunState:
    """What re-running a planned run will do."""

    action: str   # "train" (new), "skip" (finished), "resume" (interrupted), "failed", "held" (by another process)
    detail: str


# What is not finished yet: trained here, resumed here, or being trained by another process.
UNFINISHED = ("train", "resume", "held")
# What this process does not train now (a held run may be trained here once its holder has let go).
NOT_TRAINED = ("skip", "failed", "held")


def held_state(holder) -> RunState:
    return RunState("held", f"being trained by {holder}")


def run_state(run_dir: Path) -> RunState:
    holder = runlock.holder(run_dir)
    if holder is not None:  # first: another process is changing what the files say
        return held_state(holder)
    summary = read_summary(run_dir) or {}
    status, steps = summary.get("status"), summary.get("steps") or 0
    if status == "failed":
        # Checked first: a run that failed its guards has a summary but no config.json.
        return RunState("failed", f"failed ({summary.get('stop_reason')}) at step {steps}; delete {run_dir} to retry")
    if not (run_dir / "config.json").is_file():
        return RunState("train", "new")
    if not summary:
        return RunState("resume", "started, no summary yet")
    if status == "finished":
        return RunState("skip", f"finished ({steps} steps)")
    return RunState("resume", f"{status or 'unfinished'}; resumes from its last checkpoint (step ≤ {steps})")


def baseline_params(base, vocab_size: int) -> int:
    """Active parameters of the baseline model of these settings (preset and size overrides)."""
    from pileablate.model.build import build_model_config
    from pileablate.train.plan import count_params

    return count_params(build_model_config(base.preset, (), vocab_size, **base.model_overrides())).active


def grid_budget(base, vocab_size: int):
    """The budget every run gets. Without one from the user: the baseline's default (tokens per
    parameter of the *baseline* model), passed explicitly so that a modification changing the
    parameter count (rope drops learned positions) does not change its own budget."""
    if any(getattr(base, k) is not None for k in BUDGET_FIELDS):
        return base, False
    from pileablate.train import config as tc

    active = baseline_params(base, vocab_size)
    return dataclasses.replace(base, max_tokens=tc.DEFAULT_TOKENS_PER_PARAM * active), True


def check_existing(ablation, plan: Sequence[PlannedRun], data: tuple[int, str]) -> None:
    """Before training anything: every run folder the plan would reuse must hold the same experiment
    (data, model, optimiser settings, budget). `data`: the store's (vocab size, fingerprint).
    Otherwise a re-run with, say, another --lr would skip old runs and mix two ablations in one table."""
    from pileablate.report.checks import describe_budget
    from pileablate.jsonfile import read_json
    from pileablate.runfolder import settings_differences
    from pileablate.train.plan import plan_run

    vocab_size, fingerprint = data
    for planned in plan:
        config_file = Path(ablation.base.runs_dir) / planned.name / "config.json"
        if not config_file.is_file():
            continue
        try:
            old = read_json(config_file)
        except (OSError, ValueError):
            raise UserError(f"{config_file} is unreadable; delete {config_file.parent} to redo that run") from None
        differences = []
        if (old.get("data") or {}).get("fingerprint") != fingerprint:
            differences.append(f"data {ablation.base.data} differs (fingerprint)")
        # The run as the trainer will plan it (the same function, so the same defaults).
        cfg = ablation.config_for(planned)
        expected = plan_run(cfg, vocab_size).settings.to_json()
        stored = old.get("train") or {}
        differences += settings_differences(stored, expected)  # the run folder's same-run rule, not a copy
        old_budget = budget_of(stored)
        if not differences and not same_budget(old_budget, budget_of(cfg)):
            # Extending a run is not the same experiment as running it with the larger budget from the
            # start: warmup and cosine follow the fraction of the budget used.
            raise UserError(
                f"{config_file.parent} was given another budget ({describe_budget(old_budget)}, now "
                f"{describe_budget(budget_of(cfg))}); every run of an ablation needs the same one: repeat "
                "its budget, or use another --runs-dir"
            )
        if differences:
            raise UserError(
                f"{config_file.parent} was made with other settings ({'; '.join(differences[:3])}); repeat that "
                "ablation's options to continue it, or use another --runs-dir for this one"
            )


@dataclass
class Outcome:
    run: PlannedRun
    state: RunState
    summary: Optional[dict] = None
    error: Optional[str] = None


def run_grid(configs: Sequence, plan: Sequence[PlannedRun], console) -> tuple[list[Outcome], bool]:
    """Train every planned run (with its TrainConfig) in order. Returns the outcomes and whether the grid
    was interrupted (a Ctrl-C or SIGTERM inside a run: its checkpoint is saved, the remaining runs are
    left for the next invocation)."""
    from pileablate.train.state import RunFailed
    from pileablate.train.trainer import train

    from pileablate.report.fmt import format_seconds

    outcomes: list[Outcome] = []
    durations: list[float] = []
    to_train = sum(run_state(Path(c.runs_dir) / p.name).action in ("train", "resume") for c, p in zip(configs, plan))
    for position, (cfg, planned) in enumerate(zip(configs, plan), start=1):
        run_dir = Path(cfg.runs_dir) / planned.name
        state = run_state(run_dir)
        # The position in what this process trains (a job-array task's share), not in the whole plan.
        header = (f"run {position}/{len(plan)}: {planned.title} · mods "
                  f"{','.join(planned.mods) or 'baseline'} · seed {planned.seed}"
                  + (f" · lr {cfg.lr:.3g}" if cfg.lr is not None else ""))
        if state.action in NOT_TRAINED:
            console.print(f"[dim]{header} · {state.detail}: skipped[/dim]", highlight=False)
            outcomes.append(Outcome(planned, state, read_summary(run_dir)))
            continue
        left = to_train - len(durations)
        eta = f" · ~{format_seconds(sum(durations) / len(durations) * left)} left" if durations else ""
        console.rule(f"[bold]{header}[/bold]" + ("" if state.action == "train" else f" · {state.action}") + eta)
        start = time.monotonic()
        try:
            summary = train(cfg, console=console)
        except runlock.RunHeld as err:  # claimed by another process since the look above
            console.print(f"[dim]{planned.title} · being trained by {err.holder}: skipped[/dim]", highlight=False)
            outcomes.append(Outcome(planned, held_state(err.holder), read_summary(run_dir)))
            continue
        except RunFailed as err:
            # One modification failing its guards or going non-finite must not cost the other runs.
            console.print(f"[red]{planned.title} failed:[/red] {err}", highlight=False)
            outcomes.append(Outcome(planned, state, err.summary, str(err)))
            durations.append(time.monotonic() - start)
            continue
        durations.append(time.monotonic() - start)
        outcomes.append(Outcome(planned, state, summary))
        if summary.get("status") == "stopped":
            return outcomes, True
    return outcomes, False


def data_identity(data_dir: Path) -> tuple[int, str]:
    """(vocab size, fingerprint) of the prepared data every run will read."""
    from pileablate.data.manifest import read_manifest

    manifest = read_manifest(data_dir)
    try:
        return int(manifest["vocab_size"]), str(manifest["fingerprint"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{data_dir}/manifest.json lacks vocab_size or fingerprint; run 'pileablate prepare' again") from None

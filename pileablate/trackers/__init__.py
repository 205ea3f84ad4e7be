"""Live curves in TensorBoard and Weights & Biases: one small interface over both.

A tracker receives what the run already writes (each metrics.jsonl row, the final summary) and shows
it where people watch training. metrics.jsonl stays the record; a tracker is a view of it, so a
tracker that cannot work (W&B unreachable) never stops or fails a run. Only a missing package or an
unknown tracker name is an error, and it comes before anything trains.

    with open_tracker(("tensorboard",), run_dir=..., run_name=..., group=..., group_dir=...,
                      config=..., resume_step=0, is_main=True, console=console) as tracker:
        tracker.log(row)          # every metrics.jsonl row, as it is written
        tracker.summary(summary)  # once, at the end

Metric names. A row's key `k` is shown as `<section>/<k>` (`loss/train_loss`, `optim/lr`, ...), so
related curves share a panel and the name is still the metrics.jsonl key. The x-axis is the step;
`progress/tokens` is logged too (choose it as the x-axis in W&B).

Nothing here imports torch, tensorboard or wandb at module level: `pileablate report` must open on a
machine without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Protocol, Sequence, Union

from pileablate.errors import UserError

TRACKERS = ("tensorboard", "wandb")
EXTRAS = {"tensorboard": "tensorboard", "wandb": "wandb"}  # pyproject optional extra per tracker

def parse_trackers(spec: Union[str, Iterable[str], None]) -> tuple[str, ...]:
    """'tensorboard,wandb' or ['wandb', 'tensorboard,wandb'] -> ('tensorboard', 'wandb') in given order,
    repeats dropped; '' or 'none' -> (). Unknown names raise UserError."""
    parts = [spec] if isinstance(spec, str) else list(spec or ())
    names: list[str] = []
    for part in parts:
        for name in (n.strip().lower() for n in str(part).split(",")):
            if not name or name == "none":
                continue
            if name not in TRACKERS:
                raise UserError(f"--tracker {name!r}: unknown tracker; use {' or '.join(TRACKERS)} (comma list or repeated)")
            if name not in names:
                names.append(name)
    return tuple(names)


def require_packages(kinds: Sequence[str]) -> None:
    """Import each tracker's package now (UserError naming the extra when missing)."""
    for kind in kinds:
        import_backend(kind)


def import_backend(kind: str):
    """The back-end module of a tracker; a missing package is a one-line UserError naming the extra."""
    try:
        if kind == "tensorboard":
            import tensorboard  # noqa: F401  (torch's SummaryWriter needs it; say so before torch does)

            from pileablate.trackers import tensorboard_tracker as backend
        elif kind == "wandb":
            import wandb  # noqa: F401

            from pileablate.trackers import wandb_tracker as backend
        else:
            raise UserError(f"--tracker {kind!r}: unknown tracker; use {' or '.join(TRACKERS)}")
    except ImportError:
        raise UserError(f"--tracker {kind} needs the {kind} package: pip install -e \".[{EXTRAS[kind]}]\"") from None
    return backend


class Tracker(Protocol):
    def log(self, row: dict) -> None: ...
    def summary(self, summary: dict) -> None: ...
    def close(self) -> None: ...


class Trackers:
    """Every requested tracker behind one object (none: nothing happens). A context manager, so a
    run that fails or is interrupted still closes its trackers."""

    def __init__(self, trackers: Sequence[Tracker] = ()):
        self.trackers = list(trackers)

    def log(self, row: dict) -> None:
        for tracker in self.trackers:
            tracker.log(row)

    def summary(self, summary: dict) -> None:
        for tracker in self.trackers:
            tracker.summary(summary)

    def close(self) -> None:
        trackers, self.trackers = self.trackers, []
        for tracker in trackers:
            tracker.close()

    def __enter__(self) -> "Trackers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_tracker(kinds: Sequence[str], *, run_dir: Path, run_name: str, group: str, group_dir: Path,
                 config: dict, resume_step: Optional[int], is_main: bool, console) -> Trackers:
    """Open the requested trackers for one run (on the main process only; others get a no-op).

    run_dir: the run's folder (W&B keeps its files and the run id there).
    group, group_dir: the ablation this run belongs to (W&B group; TensorBoard's folder, one sub-folder
      per run so every run of the ablation overlays).
    config: hyperparameters shown with the run (nested dicts allowed).
    resume_step: the step this session continues from (0 for a new run): anything an earlier session
      logged after it is dropped or skipped, so a resumed run has each step once. None: unknown, keep all.
    """
    kinds = parse_trackers(kinds)
    backends = [import_backend(kind) for kind in kinds]
    if not is_main:
        return Trackers()
    return Trackers([backend.open_run(run_dir=Path(run_dir), run_name=run_name, group=group, group_dir=Path(group_dir),
                                  config=config, resume_step=resume_step, console=console)
                     for backend in backends])


def publish_report(kinds: Sequence[str], runs_dir: Path, table_markdown: str, plot_paths: Sequence[Path],
                   console) -> None:
    """Add a report's results table and plot images next to the runs' curves: the TensorBoard folder
    RUNS_DIR/tensorboard (as the run `report`) and the W&B group of the runs (as a run `report`)."""
    runs_dir = Path(runs_dir)
    if (runs_dir / "config.json").is_file():  # one run's folder was given: its ablation is the parent
        runs_dir = runs_dir.parent
    for kind in parse_trackers(kinds):
        import_backend(kind).publish_report(runs_dir=runs_dir, group=group_name(runs_dir),
                                            group_dir=tensorboard_dir(runs_dir), table_markdown=table_markdown,
                                            plot_paths=[Path(p) for p in plot_paths], console=console)


def group_name(runs_dir: Path) -> str:
    """An ablation's name: its runs folder's name."""
    return Path(runs_dir).resolve().name


def tensorboard_dir(runs_dir: Path) -> Path:
    """TensorBoard's folder for an ablation: `tensorboard --logdir RUNS_DIR/tensorboard`."""
    return Path(runs_dir) / "tensorboard"

"""A study's training, phase by phase: the tuning runs (extended at the grid's edges), then the reported
runs at each configuration's chosen rate, all at once or round by round (`--seeds auto`).

Every phase trains this task's share of its runs with the one trainer of the study (in process, or
the worker pool of `--jobs`), after checking that the run folders it would reuse hold the same
experiment. Re-running the same command replans the same runs from what is finished on disk, so it
continues where it stopped and never retrains a finished run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from pileablate import runlock
from pileablate.ablate.ablation import AblationInterrupted
from pileablate.ablate.plan import PlannedRun, format_lr
from pileablate.ablate.runner import UNFINISHED, Outcome, check_existing, data_identity, run_state
from pileablate.ablate.study import Part, Study, ordered, run_dir
from pileablate.errors import UserError

Pairs = list[tuple[Part, PlannedRun]]
# `parallel.plan_trainer`'s trainer: (configs, plan, console) -> (outcomes, interrupted).
TrainPlan = Callable[..., tuple[list[Outcome], bool]]


@dataclass
class AblationResult:
    outcomes: list[Outcome] = field(default_factory=list)
    chosen_lrs: dict[str, float] = field(default_factory=dict)
    report: object = None


def train_phase(train_plan, configs: Sequence, plan: Sequence[PlannedRun], console, result: AblationResult,
                wait: bool = True) -> None:
    """Train one phase's runs (`parallel.plan_trainer`); an interrupt stops the study, checkpoints kept.

    Runs that other processes were training are skipped; with `wait`, the phase then waits for them and
    hands them to `train_plan` again whenever one is let go: finished by its holder, it is skipped;
    left unfinished (its holder was killed), it is resumed here at once."""
    outcomes, interrupted = train_plan(configs, plan, console)
    runs = {p.title: (cfg, p) for cfg, p in zip(configs, plan)}
    while wait and not interrupted and (held := [o.run.title for o in outcomes if o.state.action == "held"]):
        try:
            runlock.wait_while_held([Path(runs[t][0].runs_dir) / runs[t][1].name for t in held],
                                    on_wait=lambda holders: _say_waiting(console, holders))
        except KeyboardInterrupt:  # nothing of ours is running: nothing to save
            raise AblationInterrupted("interrupted while waiting for runs that other processes are training; "
                                      "re-run the same command to continue") from None
        again, interrupted = train_plan([runs[t][0] for t in held], [runs[t][1] for t in held], console)
        retried = {o.run.title: o for o in again}
        outcomes = [retried.get(o.run.title, o) for o in outcomes]
    result.outcomes += outcomes
    if interrupted:
        raise AblationInterrupted(f"interrupted at run {len(outcomes)}/{len(plan)} ({outcomes[-1].run.title}); "
                                  "checkpoints are saved. Re-run the same command to continue where it stopped")


def _say_waiting(console, holders: dict) -> None:
    listed = ", ".join(f"{path.name} ({holder})" for path, holder in holders.items())
    console.print(f"waiting for {len(holders)} run(s) that other processes are training: {listed} (--no-wait: "
                  "report them as they stand)", highlight=False)


def check_tuning(study: Study, ready: Sequence[Part]) -> None:
    """Before anything trains: the tuning runs' folders hold the same experiment (runner.check_existing)."""
    data = data_identity(study.ablation.base.data)
    for part in ready:
        check_existing(part.ablation, part.ablation.tuning_plan(), data)


class Phases:
    """The runs a study has planned so far, and what training them gave."""

    def __init__(self, study: Study, ready: Sequence[Part], train_plan: TrainPlan, console):
        self.study, self.ready, self.train_plan, self.console = study, list(ready), train_plan, console
        self.result = AblationResult()
        self.tuning: Pairs = ordered([(part, p) for part in self.ready for p in part.ablation.tuning_plan()])
        self.reported: Pairs = []
        self.data = data_identity(study.ablation.base.data)  # (vocab size, fingerprint)

    @property
    def planned(self) -> Pairs:
        return self.tuning + self.reported

    def folders(self) -> list:
        return [run_dir(part, p) for part, p in self.planned]

    def run(self, pairs: Pairs) -> None:
        """This task's share of these runs, each with its TrainConfig."""
        share = self.study.share(pairs)
        train_phase(self.train_plan, [part.ablation.config_for(p) for part, p in share], [p for _, p in share],
                    self.console, self.result, wait=self.study.ablation.waits)

    def tune(self) -> bool:
        """The tuning phase; False when this invocation stops after it (`--stage tune`)."""
        ablation = self.study.ablation
        if not self.tuning:
            return True
        if ablation.stage in ("tune", "all"):
            n_lrs = len(ablation.tune_lrs)
            self.console.print(f"tuning the learning rate: {len(self.tuning)} runs ({len(ablation.experiments)} "
                               f"configurations × {n_lrs} rates {', '.join(format_lr(x) for x in ablation.tune_lrs)}"
                               f" × {ablation.tune_seeds} seed(s)"
                               + (f" at each of {len(self.ready)} points)" if self.study.is_sweep else ")"),
                               highlight=False)
            self.run(self.tuning)
            if ablation.stage == "tune" and ablation.task is not None:
                return False  # the edges can be judged only once every task's tuning runs have finished
        self._require_finished(self.tuning)
        self._extend_edges()
        if ablation.stage == "tune":
            return False
        for part in self.ready:
            lrs = self.chosen(part)
            self.result.chosen_lrs.update({part.key(label): lr for label, lr in lrs.items()})
        return True

    def tuning_of(self, part: Part) -> list[PlannedRun]:
        return [p for owner, p in self.tuning if owner.point == part.point]

    def chosen(self, part: Part) -> dict[str, float]:
        from pileablate.ablate.tuning import chosen_lrs

        return chosen_lrs(part.ablation, self.tuning_of(part))

    def _require_finished(self, pairs: Pairs) -> None:
        states = [(p.title, run_state(run_dir(part, p))) for part, p in pairs]
        unfinished = [(title, state) for title, state in states if state.action in UNFINISHED]
        if unfinished:
            title, state = unfinished[0]
            raise UserError(f"{len(unfinished)} tuning runs are not finished ({title}: {state.detail}, ...); run "
                            "--stage tune to the end first")

    def _extend_edges(self) -> None:
        """A rate chosen at an edge of the rates tried: one more rate beyond it (tuning.next_rate), until
        the choice is inside or the extensions are spent."""
        from pileablate.ablate.tuning import MAX_EXTENSIONS, edge_extensions

        for _ in range(MAX_EXTENSIONS):
            extra = [(part, p) for part in self.ready for p in edge_extensions(part.ablation, self.tuning_of(part))]
            if not extra:
                return
            for part in self.ready:
                check_existing(part.ablation, [p for owner, p in extra if owner is part], self.data)
            extra = ordered(extra)
            self.tuning = ordered(self.tuning + extra)
            pending = [(part, p) for part, p in extra if run_state(run_dir(part, p)).action != "skip"]
            if not pending:
                continue  # extended by an earlier invocation
            labels = sorted({f"{part.key(p.label)} (lr {format_lr(p.lr)})" for part, p in pending})
            if self.study.ablation.task is not None:
                raise UserError(f"tuning chose a rate at the edge of its grid; the grid extends to {labels[0]}"
                                f"{' and more' if len(labels) > 1 else ''}, which a job-array task cannot do alone: "
                                "run the same command once without --task and with --stage tune, then this stage")
            self.console.print(f"tuning: a chosen rate is at the edge of the rates tried; trying one step beyond: "
                               f"{', '.join(labels)}", highlight=False)
            self.run(extra)
            self._require_finished(extra)

    def reported_pairs(self, counts: Optional[dict[str, int]] = None) -> Pairs:
        """Every point's reported runs at the rates its own tuning runs chose (`counts`: how many of the
        seeds each configuration gets; None: all of them), checked against what lies in their folders."""
        pairs = []
        for part in self.ready:
            ablation = part.ablation
            lrs = self.chosen(part) if ablation.tuning else None
            plan = [p for p in ablation.report_plan(lrs) if lrs is None or p.label in lrs]
            if counts is not None:
                plan = [p for p in plan if ablation.seeds.index(p.seed) < counts.get(part.key(p.label), 0)]
            check_existing(ablation, plan, self.data)
            pairs += [(part, p) for p in plan]
        return ordered(pairs)

    def train_reported(self) -> None:
        if self.study.sequential:
            self._train_in_rounds()
            return
        self.reported = self.reported_pairs()
        self.run(self.reported)

    def _groups(self) -> list[tuple[Optional[str], list[str]]]:
        """Per point: (its baseline's key, the keys of its other configurations), those that are reported."""
        groups = []
        for part in self.ready:
            ablation = part.ablation
            keys = [(e.mods, part.key(e.label)) for e in ablation.experiments
                    if not ablation.tuning or part.key(e.label) in self.result.chosen_lrs]
            baseline = next((key for mods, key in keys if not mods), None)
            groups.append((baseline, [key for _, key in keys if key != baseline]))
        return groups

    def _train_in_rounds(self) -> None:
        """`--seeds auto`: a round of runs, the verdicts over everything finished, the next round for the
        undecided (rounds.next_counts), until no configuration gets another seed."""
        from pileablate.ablate.rounds import describe_round, describe_words, first_counts, next_counts
        from pileablate.report.verdict import SequentialDesign

        looks = SequentialDesign(max_seeds=self.study.max_seeds).looks()
        groups = self._groups()
        counts, previous, number = first_counts(groups, looks), None, 1
        while True:
            pairs = self.reported_pairs(counts)
            known = {p.title for _, p in self.reported}
            self.reported = pairs
            self.console.print(describe_round(number, counts, previous), highlight=False)
            self.run(ordered([(part, p) for part, p in pairs if p.title not in known]))
            words = verdict_words(self.study, self.folders())
            self.console.print(f"after round {number}: {describe_words(words)}", highlight=False)
            previous, counts = counts, next_counts(counts, words, looks, groups)
            if counts == previous:
                return
            number += 1


def verdict_words(study: Study, folders: Sequence) -> dict[str, str]:
    """The verdict word of each configuration over the study's finished runs (the report's verdicts)."""
    what = "sweep" if study.is_sweep else "ablation"
    report = build_over(Path(study.ablation.base.runs_dir), folders, what)
    return {key: verdict.word for key, verdict in report.verdicts.items()}


def build_over(runs_dir: Path, folders: Sequence[Path], what: str):
    """The report over these run folders (not whatever else lies in the runs folder), not yet written."""
    from pileablate.report.build import build_report
    from pileablate.report.runs import load_run
    from pileablate.runfolder import is_run_dir

    runs = [load_run(folder) for folder in folders if is_run_dir(folder)]
    if not runs:
        raise UserError(f"no run of this {what} in {runs_dir} finished; nothing to report")
    return build_report([runs_dir], runs=runs)

"""Running a study: plan, tune, train (round by round with --seeds auto), list the failures, and write,
print and publish one report. The last link of `ablate/`: it imports the specification (`ablation`),
the plan (`study`) and the execution (`phases`), and none of them imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from pileablate.ablate.ablation import Ablation, AblationFailed
from pileablate.ablate.phases import AblationResult, Phases, build_over, check_tuning
from pileablate.ablate.runner import UNFINISHED, run_state
from pileablate.ablate.study import Part, Study, check_configurations, describe, parts, run_dir


def run_ablation(ablation: Ablation, console=None) -> AblationResult:
    """Tune (when asked), train the reported runs, and write the report: the study of one point."""
    return run_study(Study(ablation), console)


def run_study(study: Study, console=None) -> AblationResult:
    """Tune (when asked), train the reported runs (round by round with --seeds auto), and write, print
    and publish one report over the study's runs. Raises UserError subclasses for an interrupt (exit
    130) and for failed runs (exit 1) after everything else has run."""
    from pileablate.ablate.parallel import plan_trainer
    from pileablate.ablate.record import checked_design, claim_folders, write_design
    from pileablate.console import stderr_console
    from pileablate.data.verify import check_store

    console = console or stderr_console()
    ready = parts(study)
    console.print(describe(study, ready), highlight=False)
    check_store(study.ablation.base.data, console)  # once here, not in every run (or every worker at once)
    check_configurations(ready)
    check_tuning(study, ready)
    design = checked_design(study)
    if study.is_sweep:
        claim_folders(study, ready)
    write_design(study, design)
    with plan_trainer(study.ablation.jobs, study.ablation.devices or study.ablation.base.device) as train_plan:
        phases = Phases(study, ready, train_plan, console)
        trained = phases.tune()
        if trained:
            phases.train_reported()
    if not trained or study.ablation.task is not None:
        return task_done(study, phases)
    result = phases.result
    result.report = report_folders(Path(study.ablation.base.runs_dir), phases.folders(),
                                   "sweep" if study.is_sweep else "ablation", study.ablation.base.trackers)
    raise_failures(study, ready, phases)
    return result


def task_done(study: Study, phases) -> AblationResult:
    """A task of a job array (or the tuning stage) ends without a report: the others may still run."""
    left = [p for part, p in phases.planned if run_state(run_dir(part, p)).action in UNFINISHED]
    phases.console.print(f"done: this share of the plan ({len(phases.result.outcomes)} runs); {len(left)} runs of "
                         f"the stage are not finished yet. When every task has finished: pileablate report "
                         f"{study.ablation.base.runs_dir}", highlight=False)
    return phases.result


def raise_failures(study: Study, ready: Sequence[Part], phases) -> None:
    # A tuning run that diverges at a high rate is an answer, not a failure of the study.
    result = phases.result
    failed = [o for o in result.outcomes if o.run.role == "report" and (o.state.action == "failed" or o.error)]
    untuned = [part.key(e.label) for part in ready for e in part.ablation.experiments
               if part.ablation.tuning and part.key(e.label) not in result.chosen_lrs]
    reported = len(phases.reported)
    problems = [f"{len(failed)} of {reported} runs failed ({', '.join(o.run.title for o in failed)})"] if failed else []
    problems += [f"not reported, no tuning run finished: {', '.join(untuned)}"] if untuned else []
    if problems:
        raise AblationFailed("; ".join(problems) + "; the report lists them. Fix the cause, delete those run "
                             "folders and re-run to redo only them")


def report_folders(runs_dir: Path, folders: Sequence[Path], what: str, trackers: Sequence[str] = ()):
    """One report over these run folders, written into `runs_dir`, printed, and sent to the runs'
    trackers when they have any."""
    from pileablate.console import stdout_console
    from pileablate.report.build import publish_to_trackers, write_report
    from pileablate.report.console import print_files

    report = build_over(runs_dir, folders, what)
    files = write_report(report, runs_dir)
    stdout_console().print(report.table())
    print_files(report, files)
    publish_to_trackers(report, files, trackers, runs_dir)
    return report

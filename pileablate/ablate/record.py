"""What a study writes beside its runs: RUNS/study.json (its design: the margin and, with --seeds auto,
the sequential rule, which `report` reads to reproduce the verdicts the study acted on) and, in a
sweep, RUNS/<point>/point.json (what the report reads to group runs by point). Neither holds a
timestamp, so every task of a job array writes the same files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from pileablate.errors import UserError
from pileablate.runfolder import POINT_FILE, STUDY_FILE, read_study, write_study


def design_record(study) -> dict:
    from pileablate.report.verdict import DEFAULT_MARGIN, SequentialDesign

    sequential = None
    if study.sequential:
        design = SequentialDesign(max_seeds=study.max_seeds)
        sequential = {"first": design.first, "max_seeds": design.max_seeds, "step": design.step}
    return {"margin": study.margin if study.margin is not None else DEFAULT_MARGIN, "sequential": sequential}


def checked_design(study) -> dict:
    """The study's design record, refused when RUNS holds a sequential study of another design (or this
    one is sequential and RUNS holds another): its runs were chosen by that design's verdicts."""
    record = design_record(study)
    path = Path(study.ablation.base.runs_dir) / STUDY_FILE
    if not path.is_file():
        return record
    old = read_study(path.parent)
    if old != record and (old.get("sequential") or record["sequential"]):
        raise UserError(f"{path.parent} holds a study with another design ({_describe(old)}; now "
                        f"{_describe(record)}); repeat its --seeds/--max-seeds/--margin, or use another --runs-dir")
    return record


def _describe(record: dict) -> str:
    sequential = record.get("sequential")
    seeds = f"--seeds auto --max-seeds {sequential.get('max_seeds')}" if sequential else "fixed seeds"
    return f"{seeds}, --margin {record.get('margin')}"


def write_design(study, record: dict) -> None:
    write_study(Path(study.ablation.base.runs_dir), record)


def point_record(study, part) -> dict:
    from pileablate.runfolder import budget_of

    return {"point": part.point.label, "axes": [a.field for a in study.axes], "values": part.point.values,
            "budget": budget_of(part.ablation.base), "default_budget": part.default_budget}


def claim_folders(study, ready: Sequence) -> None:
    """Refuse a point folder that holds something else (a run, or another sweep's point); then record
    each point."""
    from pileablate.runfolder import is_run_dir, write_point

    records = []
    for part in ready:
        folder = Path(part.ablation.base.runs_dir)
        record = point_record(study, part)
        if is_run_dir(folder):
            raise UserError(f"{folder} is a run's folder, not a sweep point's; use another --runs-dir for the sweep")
        path = folder / POINT_FILE
        if path.is_file():
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError):
                raise UserError(f"{path} is unreadable; delete it (and the runs beside it) to redo point "
                                f"{part.point.label}") from None
            if old.get("values") != json.loads(json.dumps(record["values"])) or old.get("axes") != record["axes"]:
                raise UserError(f"{folder} holds another sweep's point ({old.get('values')}); use another --runs-dir")
        records.append((path, record))
    for path, record in records:
        write_point(path.parent, record)

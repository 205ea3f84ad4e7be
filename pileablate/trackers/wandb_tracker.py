"""The Weights & Biases tracker.

One W&B run per pileablate run, in the group of its ablation. Its id is made once and kept in
RUN_DIR/wandb/pileablate-run.json, so a resumed run continues the same W&B run; the file also keeps
the last step sent, and steps at or before it are skipped (W&B refuses a step twice, and a resumed
run re-trains exactly what it had trained after its checkpoint, so nothing is lost).

W&B never holds a run up: start-up waits at most WANDB_INIT_TIMEOUT seconds (default 30; W&B's own is
90), the end waits at most FINISH_TIMEOUT_S for uploads where W&B has that setting (the rest stays on
disk for `wandb sync`), and any W&B error is said once on the console, after which the run goes on
without W&B. WANDB_MODE=offline writes RUN_DIR/wandb/offline-run-*/ to upload later with `wandb sync`.
W&B reads its usual environment (WANDB_API_KEY, WANDB_ENTITY, WANDB_BASE_URL); WANDB_PROJECT picks
the project (default "pileablate").
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
from pathlib import Path
from typing import Optional, Sequence

from pileablate.jsonfile import write_json_atomic
from pileablate.trackers.rows import flat, row_metrics

DEFAULT_PROJECT = "pileablate"
INIT_TIMEOUT_S = 30.0
FINISH_TIMEOUT_S = 60.0
RUN_STATE = "pileablate-run.json"
REPORT_STATE = "pileablate-report.json"
EXIT_CODES = {"finished": 0, "stopped": 130}  # anything else (failed, or no summary: a crash) is 1


class RunState:
    """The W&B run id of a folder and the last step sent to it (a small JSON file in W&B's folder)."""

    def __init__(self, path: Path):
        self.path = path
        data = json.loads(path.read_text()) if path.is_file() else {}
        self.id: str = data.get("id") or secrets.token_hex(6)  # W&B ids: letters, digits, - and _
        self.last_step: int = int(data.get("last_step", 0))

    def save(self) -> None:
        write_json_atomic(self.path, {"id": self.id, "last_step": self.last_step})


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _start(console, **kwargs):
    """wandb.init with bounded waits; None (said once) when W&B cannot start."""
    import wandb

    try:
        timeout = float(os.environ.get("WANDB_INIT_TIMEOUT", INIT_TIMEOUT_S))
        settings = {"init_timeout": timeout, "login_timeout": timeout, "console": "off", "silent": True}
        if "finish_timeout" in wandb.Settings.model_fields:  # a 2026 setting; older W&B waits for uploads
            settings["finish_timeout"] = FINISH_TIMEOUT_S
        run = wandb.init(project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT, resume="allow",
                         allow_val_change=True, settings=wandb.Settings(**settings), **kwargs)
    except Exception as err:  # W&B has many failure types (network, login, service); none may stop a run
        console.print(f"[yellow]wandb: could not start ({_first_line(err)}); going on without W&B[/yellow]",
                      highlight=False)
        return None
    offline = getattr(run, "offline", None)
    if offline if offline is not None else run.settings.mode == "offline":
        console.print(f"wandb: offline run in {run.settings.sync_dir} (upload: wandb sync {run.settings.sync_dir})",
                      highlight=False)
    else:
        console.print(f"wandb: {run.url}", highlight=False)
    return run


class WandbTracker:
    def __init__(self, run, state: RunState, console):
        self.run = run
        self.state = state
        self.console = console
        self.status: Optional[str] = None

    def _give_up(self, what: str, err: Exception) -> None:
        self.console.print(f"[yellow]wandb: {what} failed ({_first_line(err)}); going on without W&B "
                           "(metrics.jsonl has every row)[/yellow]", highlight=False)
        run, self.run = self.run, None
        try:
            run.finish(exit_code=1)
        except Exception:
            pass

    def log(self, row: dict) -> None:
        step = int(row["step"])
        if self.run is None or step <= self.state.last_step:
            return
        try:
            self.run.log(row_metrics(row), step=step)
        except Exception as err:
            self._give_up("logging", err)
            return
        self.state.last_step = step
        self.state.save()

    def summary(self, summary: dict) -> None:
        self.status = summary.get("status")
        if self.run is None:
            return
        try:
            self.run.summary.update({k: v for k, v in flat(summary).items() if v is not None})
        except Exception as err:
            self._give_up("the summary", err)

    def close(self) -> None:
        run, self.run = self.run, None
        if run is None:
            return
        try:
            run.finish(exit_code=EXIT_CODES.get(self.status, 1))
        except Exception as err:
            self.console.print(f"[yellow]wandb: finishing failed ({_first_line(err)}); upload later with "
                               f"wandb sync {run.settings.sync_dir}[/yellow]", highlight=False)


def open_run(*, run_dir: Path, run_name: str, group: str, group_dir: Path, config: dict,
             resume_step: Optional[int], console) -> WandbTracker:
    """The W&B run of run_dir (created or continued); resume_step is not needed: the state file
    knows the last step W&B has."""
    run_dir.mkdir(parents=True, exist_ok=True)
    state = RunState(run_dir / "wandb" / RUN_STATE)
    state.save()
    run = _start(console, id=state.id, name=run_name, group=group, job_type="train", dir=str(run_dir), config=config)
    return WandbTracker(run, state, console)


def markdown_rows(table: str) -> tuple[list[str], list[list[str]]]:
    """A Markdown pipe table -> (headers, rows); ([], []) when the text holds none."""
    lines = [line.strip() for line in table.splitlines() if line.strip().startswith("|")]
    cells = [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip("|"))] for line in lines]
    body = [row for row in cells[1:] if not all(re.fullmatch(r":?-+:?", c) for c in row)]
    return (cells[0], body) if cells else ([], [])


def publish_report(*, runs_dir: Path, group: str, group_dir: Path, table_markdown: str,
                   plot_paths: Sequence[Path], console) -> None:
    """The report as the run `report` of the ablation's group: the results as a W&B table, the plots
    as images. The same W&B run is continued by each later report (its id in RUNS_DIR/wandb/)."""
    import wandb

    runs_dir.mkdir(parents=True, exist_ok=True)
    state = RunState(runs_dir / "wandb" / REPORT_STATE)
    state.save()
    run = _start(console, id=state.id, name="report", group=group, job_type="report", dir=str(runs_dir))
    if run is None:
        return
    try:
        headers, rows = markdown_rows(table_markdown)
        data = {"report/results": wandb.Table(columns=headers, data=rows) if headers
                else wandb.Html(f"<pre>{html.escape(table_markdown)}</pre>")}
        data.update({f"report/{p.stem}": wandb.Image(str(p)) for p in plot_paths
                     if p.suffix.lower() == ".png" and p.is_file()})
        run.log(data)
        run.finish()
    except Exception as err:
        console.print(f"[yellow]wandb: publishing the report failed ({_first_line(err)})[/yellow]", highlight=False)
        try:
            run.finish(exit_code=1)
        except Exception:
            pass

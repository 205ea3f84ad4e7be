"""The TensorBoard tracker: event files through torch's SummaryWriter.

Layout: one folder per ablation (RUNS_DIR/tensorboard), one sub-folder per run, so
`tensorboard --logdir RUNS_DIR/tensorboard` overlays every run of the ablation; the report adds a run
`report` there with the results table and the plots.

Resume: a resumed session opens the same folder with `purge_step` = the checkpoint's step + 1, which
writes TensorBoard's restart marker: readers drop what the crashed session logged after the
checkpoint, and the re-trained steps appear once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from pileablate.trackers.rows import flat, row_metrics

FLUSH_SECS = 10  # how stale the live curves may get; writing is cheap
REPORT_RUN = "report"


def _hparam(value):
    """HParams take numbers, strings and booleans; anything else is shown as text."""
    return value if isinstance(value, (int, float, str, bool)) else json.dumps(value)


class TensorBoardTracker:
    def __init__(self, writer, log_dir: Path):
        self.writer = writer
        self.log_dir = log_dir

    def write_config(self, config: dict) -> None:
        """The run's hyperparameters: a text panel, and a row in the HParams table beside its results."""
        from torch.utils.tensorboard.summary import hparams

        params = {k: _hparam(v) for k, v in flat(config).items() if v is not None}
        self.writer.add_text("config", "```json\n" + json.dumps(config, indent=2, default=str) + "\n```", 0)
        # The session start only: without an experiment summary per run, TensorBoard builds the table
        # from every run of the folder (which hyperparameters differ, every curve as a metric).
        _, session_start, _ = hparams(params, {})
        self.writer.file_writer.add_summary(session_start, 0)
        self.writer.flush()

    def log(self, row: dict) -> None:
        step = int(row["step"])
        for tag, value in row_metrics(row).items():
            self.writer.add_scalar(tag, value, step)

    def summary(self, summary: dict) -> None:
        rows = [f"| {key} | {json.dumps(value, default=str)} |" for key, value in flat(summary).items()]
        text = "| field | value |\n|---|---|\n" + "\n".join(rows)
        self.writer.add_text("summary", text, int(summary.get("steps") or 0))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_run(*, run_dir: Path, run_name: str, group: str, group_dir: Path, config: dict,
         resume_step: Optional[int], console) -> TensorBoardTracker:
    """A writer in group_dir/run_name. A new run (resume_step 0) starts the folder afresh (purge from
    step 0, also clearing a deleted run of the same name) and records its config; a resumed one keeps
    steps up to resume_step."""
    from torch.utils.tensorboard import SummaryWriter

    log_dir = Path(group_dir) / run_name
    purge = None if resume_step is None else (0 if resume_step == 0 else resume_step + 1)
    tracker = TensorBoardTracker(SummaryWriter(log_dir=str(log_dir), purge_step=purge, flush_secs=FLUSH_SECS), log_dir)
    if not resume_step:
        tracker.write_config(config)
    console.print(f"tensorboard: logging to {log_dir} (view: tensorboard --logdir {group_dir})", highlight=False)
    return tracker


def publish_report(*, runs_dir: Path, group: str, group_dir: Path, table_markdown: str,
                   plot_paths: Sequence[Path], console) -> None:
    """The report as the run `report`: its table (Text tab) and plots (Images tab). Each report
    replaces the previous one (purge from step 0)."""
    import numpy as np
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    log_dir = Path(group_dir) / REPORT_RUN
    with SummaryWriter(log_dir=str(log_dir), purge_step=0) as writer:
        writer.add_text("report/results", table_markdown, 0)
        for path in plot_paths:
            if path.suffix.lower() == ".png" and path.is_file():
                with Image.open(path) as image:
                    writer.add_image(f"report/{path.stem}", np.asarray(image.convert("RGB")), 0, dataformats="HWC")
    console.print(f"tensorboard: report added to {log_dir} (view: tensorboard --logdir {group_dir})", highlight=False)

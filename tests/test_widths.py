"""Terminal output that degrades by priority: at 80 columns the report keeps every configuration's name,
verdict and Δ whole, `mods` its name, what it changes and reference, train's live line its step, loss, %
and time left; lesser columns go first (listed below the table), and COLUMNS is honoured when piped."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from rich.console import Console
from test_report import make_run, three_seed_grid

from pileablate.report.build import build_report
from pileablate.report.table import _delta_with_interval, _verdict
from pileablate.widths import fit_pieces


def render(renderable, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def test_status_pieces_keep_the_most_important_in_their_order():
    pieces = [(0, "step 12"), (0, "loss 2.3"), (2, "val 2.4"), (1, "1:02 left")]
    assert fit_pieces(pieces, 100) == "step 12 · loss 2.3 · val 2.4 · 1:02 left"
    assert fit_pieces(pieces, 30) == "step 12 · loss 2.3 · 1:02 left"
    assert fit_pieces(pieces, 5) == ""


def report_with_long_names(tmp_path):
    runs = three_seed_grid(tmp_path / "runs")
    for seed, loss in enumerate([2.05, 1.95, 2.08]):  # undecided, with the seeds it would need
        make_run(runs, f"a-long-configuration-name-s{seed}", mods=("cosine",), seed=seed, final_val=loss,
                 final_train=loss - 0.5, epochs=1.5)  # flagged: over-fitting and repeated data
    return build_report([runs])


def test_the_report_at_80_columns_keeps_name_verdict_and_delta_whole(tmp_path):
    report = report_with_long_names(tmp_path)
    text = render(report.table(), 80)
    assert "…" not in text
    table_lines = [line for line in text.splitlines() if not line.startswith(("Verdict", "["))]
    assert all(len(line) <= 80 for line in table_lines)
    for config in report.configurations:
        row = next(line for line in text.splitlines() if line.lstrip().startswith(config.name))
        assert _verdict(config) in row and _delta_with_interval(config) in row, row
    assert "undecided: ~" in text  # the long verdict is there, uncut
    assert "lr: baseline 0.001" in text  # a dropped column is listed below the table
    wide = render(report.table(), 200)
    assert "± 0.010" in wide and "lr: baseline" not in wide  # nothing dropped where everything fits


def test_piped_report_and_mods_honour_columns(tmp_path):
    report_with_long_names(tmp_path)
    env = dict(os.environ, COLUMNS="80")
    out = subprocess.run([sys.executable, "-m", "pileablate", "report", str(tmp_path / "runs")], env=env,
                         capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if line.lstrip().startswith(("rope", "swiglu", "a-long"))]
    assert len(rows) == 3 and all(len(line) <= 80 for line in rows) and "…" not in out

    out = subprocess.run([sys.executable, "-m", "pileablate", "mods"], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert all(len(line) <= 80 for line in out.splitlines()) and "…" not in out
    header = next(line for line in out.splitlines() if "name" in line and "what it changes" in line)
    assert "reference" in header and "slots" not in header
    assert "not shown at this width: " in out and "slots" in out.split("not shown at this width: ")[1]
    for name in ("warmup", "cosine", "rmsnorm", "rope", "swiglu", "gqa", "mla", "moe"):
        assert any(line.split("│")[1].strip() == name for line in out.splitlines() if line.count("│") > 2)


def test_train_live_line_at_80_columns_shows_percentage_and_time_left():
    from pileablate.train.display import LiveDisplay

    console = Console(width=80, file=io.StringIO(), color_system=None, force_terminal=True)
    display = LiveDisplay(console)
    with display:
        display.update(progress=0.42, step=1234, train_loss=2.3456, val_loss=2.4567, lr=3e-3, tokens_per_s=123456.0,
                       elapsed_s=75.0, epoch=0.01)
        line = render(display._progress.get_renderable(), 80)
    assert "42%" in line and "step 1234" in line and "loss 2.3456" in line and "1:44 left" in line
    assert all(len(row) <= 80 for row in line.splitlines())

"""What the manuals and --help say about options matches the options (issue 30: generate's short flags,
the --margin default)."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from pileablate.cli import app
from pileablate.report.verdict import DEFAULT_MARGIN

ROOT = Path(__file__).resolve().parents[1]


def help_text(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.replace("│", " ").split())


def test_every_short_flag_in_the_generate_manual_exists():
    manual = (ROOT / "docs" / "generate.md").read_text()
    shorts = set(re.findall(r"`--[a-z-]+/(-[a-z])`", manual))
    assert shorts, "the manual names short flags"
    help_ = help_text("generate")
    for short in shorts:
        assert re.search(rf"(^|\s|,){short}(\s|,)", help_), short


def test_the_margin_default_is_said_once_as_a_number_not_by_reference():
    ablate, report = help_text("ablate"), help_text("report")
    assert f"Default {DEFAULT_MARGIN:g}" in ablate and "report --help" not in ablate
    assert f"else {DEFAULT_MARGIN:g}" in report and "ablate --help" not in report

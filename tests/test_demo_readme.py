"""benchmarks/demo_readme.py: the README's demo block is written from one demo's output and its runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from test_report import three_seed_grid

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "demo_readme.py"


def load_script():
    spec = importlib.util.spec_from_file_location("demo_readme", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_block_says_what_this_demo_ran_and_its_report_says(tmp_path):
    script = load_script()
    runs = three_seed_grid(tmp_path / "runs")
    log = "\n".join(["tune-baseline-lr0.001-s1000: finished · val loss 2.5", "baseline-s0: finished · val loss 2.0",
                     "rope-s0: finished · val loss 1.9", "after round 1: rope helps", "after round 2: rope helps"])
    block = script.render(log, 125.0, runs)
    assert "2 min 5 s for prepare, 1 tuning runs, 2 reported runs in 2 rounds" in block
    assert "| rope | helps | 3 |" in block and "> rope helps by" in block
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{script.BEGIN}\nold numbers\n{script.END}\nrest\n")
    script.write_block(readme, block)
    text = readme.read_text()
    assert "old numbers" not in text and text.startswith("intro\n") and text.endswith("rest\n") and block in text

"""The ablation grid: which configurations and run names `--mods`, `--grid` and `--seeds` make."""

from __future__ import annotations

import re

import pytest

from pileablate.ablate.plan import default_grid, grid_from_toml, label_for, plan_runs
from pileablate.errors import UserError


def test_default_grid_is_the_seven_experiments():
    grid = default_grid()
    assert [c.label for c in grid] == ["baseline", "warmup", "cosine", "rmsnorm", "rope", "swiglu", "all"]
    assert grid[0].mods == () and grid[-1].mods == ("warmup", "cosine", "rmsnorm", "rope", "swiglu")


def test_mods_make_baseline_each_alone_and_all_together():
    grid = default_grid("moe,gqa")
    assert [c.label for c in grid] == ["baseline", "gqa", "moe", "gqa+moe"]


def test_a_single_mod_is_not_run_twice():
    assert [c.label for c in default_grid("rope")] == ["baseline", "rope"]


@pytest.mark.parametrize("mods", ["", "rope", "rope,swiglu", "all", "gqa,moe,mtp"])
def test_plan_names_are_stable_unique_and_seeded(mods):
    grid = default_grid(mods or None)
    plan = plan_runs(grid, [0, 1, 2])
    names = [p.name for p in plan]
    assert len(names) == len(set(names)) == 3 * len(grid)
    assert [p.index for p in plan] == list(range(1, len(plan) + 1))
    assert all(p.name == f"{label_for(p.mods)}-s{p.seed}" for p in plan)
    # seeds outermost: the first len(grid) runs are a complete one-seed ablation
    assert {p.seed for p in plan[: len(grid)]} == {0}
    assert plan_runs(grid, [0, 1, 2]) == plan


def test_grid_file_lists_configurations(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text('seeds = 3\n[[config]]\nmods = []\n[[config]]\nmods = ["swiglu", "rope"]\n'
                    '[[config]]\nname = "modern"\nmods = "all"\n')
    configs, seeds = grid_from_toml(path)
    assert seeds == 3
    assert [(c.label, c.mods) for c in configs] == [
        ("baseline", ()), ("rope+swiglu", ("rope", "swiglu")),
        ("modern", ("warmup", "cosine", "rmsnorm", "rope", "swiglu")),
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[[config]]\nmods = [\n", "not valid TOML"),
        ("seeds = 2\n", "no [[config]]"),
        ("[[config]]\nname = 'x'\n", "needs 'mods'"),
        ("[[config]]\nmods = 'warp'\n", "unknown modification"),
        ("[[config]]\nmods = []\n[[config]]\nmods = ''\n", "names repeat"),
        ("[[config]]\nmods = []\nlr = 1\n", "nothing else"),
        ("seed = 1\n[[config]]\nmods = []\n", "unknown key"),
        ("seeds = 0\n[[config]]\nmods = []\n", "positive integer"),
        ("[[config]]\nname = 'a/b'\nmods = []\n", "plain directory name"),
    ],
)
def test_bad_grid_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "grid.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=re.escape(message)) as err:
        grid_from_toml(path)
    assert "\n" not in str(err.value)


def test_missing_grid_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        grid_from_toml(tmp_path / "nope.toml")


def test_run_state_reads_what_a_rerun_will_do(tmp_path):
    import json

    from pileablate.ablate.runner import run_state

    def run(name, status=None, config=True):
        d = tmp_path / name
        d.mkdir()
        if config:
            (d / "config.json").write_text("{}")
        if status:
            (d / "summary.json").write_text(json.dumps({"status": status, "steps": 5, "stop_reason": "x"}))
        return d

    assert run_state(tmp_path / "absent").action == "train"
    assert run_state(run("done", "finished")).action == "skip"
    assert run_state(run("stopped", "stopped")).action == "resume"
    assert run_state(run("killed", "running")).action == "resume"  # kill -9: the summary never caught up
    assert run_state(run("started")).action == "resume"
    # guards failed: the trainer wrote a summary but no config.json; retrying would fail again
    assert run_state(run("guarded", "failed", config=False)).action == "failed"

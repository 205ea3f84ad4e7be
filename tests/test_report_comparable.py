"""Only comparable runs are compared: a configuration whose recorded settings (other than its
modifications, learning rate and seed) differ from the baseline's gets no Δ and no verdict, and says why."""

from __future__ import annotations

import csv
import json

import pytest

from pileablate.cli import main
from pileablate.report.build import build_report
from pileablate.report.comparable import differences, settings
from pileablate.report.runs import load_run


def train(bytes_store, runs, *args: str) -> None:
    try:
        main(["train", "--data", str(bytes_store), "--runs-dir", str(runs), "--preset", "nano", "--device", "cpu",
              "--max-steps", "6", "--eval-every", "1000", "--eval-tokens", "1024", "--log-every", "2", *args])
    except SystemExit as exit_:
        assert not exit_.code


@pytest.fixture(scope="module")
def hand_made(bytes_store, tmp_path_factory):
    """Two seeds of a baseline at batch 8 and of cosine at batch 4, made by hand with `train`, and a
    rope run at another learning rate (which may differ)."""
    runs = tmp_path_factory.mktemp("hand") / "runs"
    for seed in ("0", "1"):
        train(bytes_store, runs, "--seed", seed, "--batch-size", "8")
        train(bytes_store, runs, "--seed", seed, "--batch-size", "4", "--mods", "cosine")
        train(bytes_store, runs, "--seed", seed, "--batch-size", "8", "--mods", "rope", "--lr", "3e-3")
    return runs


def test_a_configuration_at_another_batch_size_gets_no_verdict_and_names_the_difference(hand_made, capsys):
    report = build_report([hand_made])
    cosine = next(c for c in report.configurations if c.mods == ("cosine",))
    rope = next(c for c in report.configurations if c.mods == ("rope",))
    assert cosine.not_comparable == ["batch_size 4 vs 8"]
    assert cosine.delta is None and cosine.verdict is None and "cosine" not in report.verdicts
    assert any(f.startswith("not comparable: batch_size 4 vs 8") for f in cosine.flags)
    # Another learning rate is what tuning does: still compared.
    assert rope.not_comparable == [] and rope.delta is not None and rope.verdict is not None
    assert "cosine: not comparable (batch_size 4 vs 8)" in report.headline()

    try:
        main(["report", str(hand_made)])
    except SystemExit as exit_:
        assert not exit_.code
    out = " ".join(capsys.readouterr().out.split())
    assert "not comparable: batch_size 4 vs 8" in out
    rows = {r["configuration"]: r for r in csv.DictReader((hand_made / "summary.csv").open())}
    assert rows["cosine"]["verdict"] == "not comparable" and rows["cosine"]["delta_vs_baseline"] == ""
    assert "not comparable with the baseline (batch_size 4 vs 8)" in (hand_made / "report.md").read_text()


def test_seeds_that_differ_in_a_setting_are_two_configurations_not_one(hand_made, tmp_path):
    """A baseline seed run at another context length is not another seed of the baseline."""
    import shutil

    runs = tmp_path / "runs"
    for name in ("baseline-s0", "baseline-s1"):
        shutil.copytree(hand_made / name, runs / name)
    config = json.loads((runs / "baseline-s1" / "config.json").read_text())
    config["model"]["seq_len"] = 32
    (runs / "baseline-s1" / "config.json").write_text(json.dumps(config))
    report = build_report([runs])
    names = sorted(c.name for c in report.configurations)
    assert names == ["baseline [seq_len 32]", "baseline [seq_len 64]"]
    assert differences(settings(load_run(runs / "baseline-s1")), settings(load_run(runs / "baseline-s0"))) == \
        ["seq_len 32 vs 64"]


def copy_run(source, target) -> None:
    """A copy of a run under another name."""
    import shutil

    shutil.copytree(source, target)
    for file in ("config.json", "summary.json"):
        data = json.loads((target / file).read_text())
        data["name"] = target.name
        (target / file).write_text(json.dumps(data))


def test_runs_of_one_name_that_differ_in_mods_and_settings_get_names_of_their_own(hand_made, tmp_path):
    runs = tmp_path / "runs"
    # two cosine seeds at batch 4, a baseline at batch 8, rope at batch 8 and (edited below) at batch 4
    sources = {"x-s0": "baseline-s0", "x-s1": "cosine-s0", "x-s2": "rope-s0", "x-s3": "cosine-s1", "x-s4": "rope-s1"}
    for name, source in sources.items():
        copy_run(hand_made / source, runs / name)
    config = json.loads((runs / "x-s2" / "config.json").read_text())
    config["train"]["batch_size"] = 4
    (runs / "x-s2" / "config.json").write_text(json.dumps(config))
    names = sorted(c.name for c in build_report([runs]).configurations)
    assert names == ["x [baseline]", "x [cosine]", "x [rope, batch_size 4]", "x [rope, batch_size 8]"]

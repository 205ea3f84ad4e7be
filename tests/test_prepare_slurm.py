"""`prepare --emit slurm`: a job array of `--task K/N` prepares into one --out, then `--verify`; submit.sh
submits only the parts not done and not queued. (On a real scheduler: benchmarks/slurm_check.py.)"""

from __future__ import annotations

import json
import subprocess

from test_prepare import run_cli
from test_slurm import env_with, fake_tool


def test_the_array_repeats_the_options_and_submit_sh_resubmits_only_parts_not_done(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shards").mkdir()
    for i in range(3):
        (tmp_path / "shards" / f"{i:02d}.jsonl").write_text(json.dumps({"text": f"document {i}"}) + "\n")
    code, _, err = run_cli(capsys, "--source", "shards/*.jsonl", "--tokenizer", "bytes", "--out", "data", "--emit",
                           "slurm", "--workers", "2", "--slurm-partition", "cpuq", "--slurm-setup", "true")
    assert code == 0, err
    folder = tmp_path / "data" / "slurm"
    assert sorted(p.name for p in tmp_path.joinpath("data").iterdir()) == ["slurm"]  # nothing prepared here
    array = (folder / "prepare.sbatch").read_text()
    assert "#SBATCH --array=1-3" in array  # one task per train source
    assert "#SBATCH --cpus-per-task=2" in array and "#SBATCH --partition=cpuq" in array
    assert (f"python -m pileablate prepare --source 'shards/*.jsonl' --out {tmp_path / 'data'} --tokenizer bytes "
            '--workers 2 --task "${SLURM_ARRAY_TASK_ID}/3" &') in array
    assert f"python -m pileablate prepare --verify {tmp_path / 'data'} &" in (folder / "verify.sbatch").read_text()
    for name in ("prepare.sbatch", "verify.sbatch", "submit.sh"):
        subprocess.run(["bash", "-n", str(folder / name)], check=True)

    bin_dir, log = tmp_path / "bin", tmp_path / "sbatch.log"
    fake_tool(bin_dir, "sbatch", f'echo "$@" >> {log}\necho "$(wc -l < {log});cluster"')
    subprocess.run(["bash", str(folder / "submit.sh")], env=env_with(bin_dir), check=True, capture_output=True)
    assert [line.split() for line in log.read_text().splitlines()] == [
        ["--parsable", "--array=1-3", "prepare.sbatch"], ["--parsable", "--dependency=afterok:1", "verify.sbatch"]]

    log.unlink()  # part 2 done (as its task would leave it): submitted again, the others only
    assert run_cli(capsys, "--source", "shards/*.jsonl", "--tokenizer", "bytes", "--out", "data", "--workers", "2",
                   "--task", "2/3")[0] == 0
    subprocess.run(["bash", str(folder / "submit.sh")], env=env_with(bin_dir), check=True, capture_output=True)
    assert [line.split()[:2] for line in log.read_text().splitlines()] == [
        ["--parsable", "--array=1,3"], ["--parsable", "--dependency=afterok:1"]]


def test_emit_refuses_a_task_of_its_own(tmp_path, capsys):
    code, _, err = run_cli(capsys, "--source", "sample", "--out", str(tmp_path / "d"), "--emit", "slurm",
                           "--task", "1/2")
    assert code == 2 and "drop --task" in err and not (tmp_path / "d").exists()

"""Atomic JSON files: a failed write leaves the old file whole; a broken file is a one-line error."""

from __future__ import annotations

import pytest

from pileablate.errors import UserError
from pileablate.jsonfile import read_json, write_json_atomic


def test_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "deep" / "summary.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2, "b": [1, 2]})
    assert read_json(path) == {"a": 2, "b": [1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]


def test_a_write_that_fails_half_way_keeps_the_old_file(tmp_path):
    path = tmp_path / "config.json"
    write_json_atomic(path, {"step": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"step": 2, "oops": object()})  # json.dump fails after writing a prefix
    assert read_json(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


@pytest.mark.parametrize("content, why", [(None, "No such file"), ('{"a": ', "not valid JSON"),
                                          ("[1, 2]", "expected a JSON object"), (b"\xff\xfe", "not valid JSON")])
def test_unreadable_json_is_a_one_line_error_with_the_way_out(tmp_path, content, why):
    path = tmp_path / "state.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(UserError) as err:
        read_json(path, fix="pass --overwrite")
    message = str(err.value)
    assert "\n" not in message and str(path) in message and why in message and message.endswith("pass --overwrite")


def test_run_files_and_manifest_share_the_one_writer():
    from pileablate import jsonfile
    from pileablate.data import prepare
    from pileablate import runfolder

    assert runfolder.write_json_atomic is jsonfile.write_json_atomic and runfolder.read_json is jsonfile.read_json
    assert prepare.write_json_atomic is jsonfile.write_json_atomic


def test_temporary_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    import os
    import subprocess
    import sys

    from pileablate.atomic import remove_stale_temps, temp_prefix

    path = tmp_path / "state.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{temp_prefix(path)}{int(dead.stdout)}-abcd1234.tmp"
    live = tmp_path / f"{temp_prefix(path)}{os.getpid()}-abcd1234.tmp"
    stale.write_text("{")
    live.write_text("{")
    assert remove_stale_temps(path) == 1
    assert not stale.exists() and live.exists()

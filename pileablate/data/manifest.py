"""Temporary: read_manifest. Replaced by the real manifest module (issue 2)."""

import json
from pathlib import Path

from pileablate.errors import UserError


def read_manifest(directory) -> dict:
    path = Path(directory) / "manifest.json"
    if not path.is_file():
        raise UserError(f"no prepared data in {directory}; run 'pileablate prepare' first")
    return json.loads(path.read_text())

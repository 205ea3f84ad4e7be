"""`pileablate train` (placeholder until its issue lands; replaced by the real command)."""

from pileablate.errors import UserError


def train() -> None:
    raise UserError("'pileablate train' is not built yet")

"""`pileablate generate` (placeholder until its issue lands; replaced by the real command)."""

from pileablate.errors import UserError


def generate() -> None:
    raise UserError("'pileablate generate' is not built yet")

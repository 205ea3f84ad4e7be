"""`pileablate export` (placeholder until its issue lands; replaced by the real command)."""

from pileablate.errors import UserError


def export() -> None:
    raise UserError("'pileablate export' is not built yet")

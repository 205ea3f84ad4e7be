"""`pileablate report` (placeholder until its issue lands; replaced by the real command)."""

from pileablate.errors import UserError


def report() -> None:
    raise UserError("'pileablate report' is not built yet")

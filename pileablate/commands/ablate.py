"""`pileablate ablate` (placeholder until its issue lands; replaced by the real command)."""

from pileablate.errors import UserError


def ablate() -> None:
    raise UserError("'pileablate ablate' is not built yet")

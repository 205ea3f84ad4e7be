"""`pileablate prepare` (placeholder until its issue lands; replaced by the real command)."""

from pileablate.errors import UserError


def prepare() -> None:
    raise UserError("'pileablate prepare' is not built yet")

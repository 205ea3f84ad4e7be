"""`pileablate mods` (placeholder until its issue lands; replaced by the real command)."""

from pileablate.errors import UserError


def mods() -> None:
    raise UserError("'pileablate mods' is not built yet")

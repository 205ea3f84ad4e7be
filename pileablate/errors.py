"""The one exception type that means "the user can fix this".

Anything raised as `UserError` is printed by the CLI as a single line (`error: ...`) with a non-zero
exit code and no traceback (unless `--debug`). Its message says what went wrong and what to do.
Any other exception is a bug in pileablate and keeps its traceback.
"""


class UserError(Exception):
    """A mistake the user can fix: bad input, missing data, an impossible option combination."""

    exit_code = 2

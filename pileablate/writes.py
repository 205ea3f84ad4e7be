"""Writes that fail for want of space or permission: named, never half done, and said in one line.

A full disk (ENOSPC), a spent quota (EDQUOT), a read-only filesystem (EROFS) or a missing permission
(EACCES) is not a bug and costs nothing: every file the tool writes is written to a temporary name and
renamed into place, so a failed write leaves the previous file (or none), and the same command resumes
from what was committed. Where a file is written, `writing(path)` makes such an OSError name the file
(a failed `write()` does not say which); the CLI prints it with `one_line` (exit code 2) instead of a
traceback. The error stays an OSError on its way up, so that the code between the write and the CLI
treats it as what it is: prepare drops the part it was writing, a run is left resumable rather than
recorded as crashed.
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from typing import Iterator

RESUMES = "run the same command again (it resumes)"
_WHY = {
    errno.ENOSPC: ("no space left on device writing {path}", f"free space and {RESUMES}"),
    errno.EDQUOT: ("disk quota exceeded writing {path}", f"free space (or raise the quota) and {RESUMES}"),
    errno.EROFS: ("cannot write {path}: read-only filesystem", f"choose a writable place (or remount it) and {RESUMES}"),
    errno.EACCES: ("permission denied on {path}", f"fix its permissions (or choose another place) and {RESUMES}"),
}


def is_write_error(err: BaseException) -> bool:
    """A failure of the place written to (space, quota, read-only, permission), not of the program."""
    return isinstance(err, OSError) and err.errno in _WHY


@contextmanager
def writing(path) -> Iterator[None]:
    """Inside: a write error without a file name gets `path` (the same errno, so the same handling)."""
    try:
        yield
    except OSError as err:
        if is_write_error(err) and not err.filename:
            raise OSError(err.errno, err.strerror or os.strerror(err.errno), str(path)) from err
        raise


def one_line(err: OSError) -> str:
    """What failed, where, and that the same command resumes once the cause is fixed."""
    what, fix = _WHY[err.errno]
    return f"{what.format(path=err.filename or 'a file')}; {fix}"


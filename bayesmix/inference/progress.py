"""When to show progress bars.

Bars are shown only when a person is watching: standard error is a terminal and
the ``CI`` environment variable is unset. Callers may force either way.
"""

from __future__ import annotations

import os
import sys


def progress_enabled(show: bool | None = None) -> bool:
    """Return whether to draw a progress bar.

    ``show`` overrides the automatic choice when it is not ``None``.
    """
    if show is not None:
        return bool(show)
    if os.environ.get("CI"):
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())

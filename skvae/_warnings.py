"""The ``stacklevel`` that attributes a warning to the user's code.

A warning raised deep inside skvae (the training loop, the base class) and
reached through scikit-learn's wrappers (``_fit_context``, a Pipeline, a
search) should point at the line that called them, as Python 3.12's
``warnings.warn(skip_file_prefixes=...)`` does; skvae supports 3.10.
"""

from __future__ import annotations

import os
import sys

import sklearn

# Frames in these folders are the library's, not the caller's.
_LIBRARY_FOLDERS = tuple(
    os.path.dirname(os.path.abspath(file)) + os.sep for file in (__file__, sklearn.__file__)
)


def caller_stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` call made where this is
    called: the first frame outside skvae and scikit-learn."""
    frame = sys._getframe(1)  # the function calling warnings.warn: stacklevel 1
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_LIBRARY_FOLDERS):
        frame = frame.f_back
        level += 1
    return level

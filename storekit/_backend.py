"""Choose the C or the pure-Python implementation of the hot paths.

``backend`` is ``"cffi"`` when the compiled module ``storekit._cframing``
imports and ``STOREKIT_PUREPYTHON`` is not set to a non-empty value other
than ``0``; otherwise it is ``"python"``. Both give identical results.
"""

from __future__ import annotations

import os

from . import _framing_py

#: True when STOREKIT_PUREPYTHON is set to a non-empty value other than
#: ``0``. The framing and the cache hit path then use their pure-Python code.
PURE_PYTHON = os.environ.get("STOREKIT_PUREPYTHON", "") not in ("", "0")

framing = _framing_py
backend = "python"

if not PURE_PYTHON:
    try:
        from . import _framing_c
    except ImportError:
        pass
    else:
        framing = _framing_c
        backend = "cffi"

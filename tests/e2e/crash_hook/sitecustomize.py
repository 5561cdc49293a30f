"""Test-only: on PYTHONPATH of a detector started by the reliability tests, a photo whose JPEG
comment reads `tally-test:crash` kills the detector process as it is decoded (SIGKILL, like a
native decoder's segfault or the OOM killer), every time. Nothing else changes."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

MARKER = b"tally-test:crash"

if os.path.basename(sys.argv[0]) == "tally-detector":
    import tally_inference

    _decode = tally_inference.decode_checked_image  # what the detector decodes photos with

    def _decode_or_die(data: bytes, *args: Any, **kwargs: Any) -> Any:
        if MARKER in data:
            os.kill(os.getpid(), signal.SIGKILL)
        return _decode(data, *args, **kwargs)

    tally_inference.decode_checked_image = _decode_or_die

"""Where align keeps reusable artefacts (datasets with precomputed reference log-probs, models
converted from GGUF files): ``$ALIGN_CACHE``, else ``~/.cache/align``. Standard library only."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$ALIGN_CACHE``, else ``~/.cache/align`` (not created here)."""
    return Path(os.environ.get("ALIGN_CACHE") or Path.home() / ".cache" / "align")

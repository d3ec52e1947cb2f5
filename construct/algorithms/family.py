"""The two ways rawc builds a named algorithm's weights (``registry`` explains both)."""
from __future__ import annotations

import enum


class Family(enum.Enum):
    PROGRAM = "RAW program"
    LINEAR_ATTENTION = "linear self-attention"

"""``--device auto|cpu|cuda`` resolved once for every command that takes it (verify, train,
train-lsa): ``auto`` is CUDA where torch sees a device, else the CPU; ``cuda`` without one is
a usage error, named."""
from __future__ import annotations

import torch


def resolve_device(choice: str) -> str:
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice

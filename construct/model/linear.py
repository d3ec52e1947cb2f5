"""A linear-attention model (constructed or trained) in the shape the checkpoint writer takes.

Linear self-attention has no op program: ``rawc.program`` states the update the blocks run,
``rawc.layout`` the rows of x and of the y-slot, and ``rawc.bounds`` that there is no
approximation, only floating-point rounding (so no input bound is declared).
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from construct.targets.architecture import ModelShape
from construct.targets.linear.block import LSAModel


@dataclasses.dataclass(frozen=True)
class LinearConstruction:
    """``model`` with the text of its update (``description``) and its name."""

    name: str
    model: LSAModel
    description: str

    @property
    def shape(self) -> ModelShape:
        return self.model.shape

    @functools.cached_property
    def weights(self) -> dict[str, np.ndarray]:
        return self.model.weights()

    @property
    def n_params(self) -> int:
        return int(sum(w.size for w in self.weights.values()))

    def program_text(self) -> str:
        return self.description

    def layout_json(self) -> dict[str, object]:
        return self.model.layout_json()

    def bounds_json(self) -> dict[str, object]:
        return {"input_bound": None, "constants": {},
                "exact": "no approximation: only floating-point rounding"}

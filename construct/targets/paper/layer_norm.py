"""What the LayerNorm before a layer's MLP does in the paper target (Lemma 6 and Lemma 8).

A layer whose MLP holds products sees LayerNorm at a *fixed scale*: the pads ``±P`` dwarf
every other row, so ``LN(h) = h / s`` with a known ``s`` and the GeLU products read through
it (``error_models.fixed_scale_ln_error``). A layer whose MLP holds a ``div`` sets the pads to
``±N c`` from the divisor slot ``c``, so LayerNorm divides every row by ``|c|`` up to a known
constant (``error_models.division_error``). The role is a typed value: a divisor slot may be
named anything the grammar allows, ``mul`` included.
"""
from __future__ import annotations

import dataclasses
import enum

from construct.compiler.schedule import Schedule
from construct.language.program import Div, Program


class LayerNormRole(enum.Enum):
    FIXED_SCALE = enum.auto()  # products read through LN at a known scale
    DIVIDE = enum.auto()       # LN divides by |divisor|


@dataclasses.dataclass(frozen=True)
class LayerNormUse:
    """The LayerNorm of one layer's MLP half; ``divisor`` names the slot for ``DIVIDE``."""

    role: LayerNormRole
    divisor: str | None = None

    @classmethod
    def fixed_scale(cls) -> LayerNormUse:
        return cls(LayerNormRole.FIXED_SCALE)

    @classmethod
    def dividing_by(cls, slot: str) -> LayerNormUse:
        return cls(LayerNormRole.DIVIDE, slot)

    @property
    def divides(self) -> bool:
        return self.role is LayerNormRole.DIVIDE


def layer_norm_use(program: Program, schedule: Schedule, layer_index: int) -> LayerNormUse | None:
    """``None`` when the layer's MLP does no LayerNorm work (no LN in the model, or an empty
    MLP half). A layer's MLP half always holds a mul or div when it holds anything: an affine
    map is folded there only beside the product or quotient it takes."""
    layer = schedule.layers[layer_index]
    if not schedule.uses_layernorm or not layer.mlp:
        return None
    divs = [program.ops[i] for i in layer.mlp if isinstance(program.ops[i], Div)]
    return LayerNormUse.dividing_by(divs[0].den) if divs else LayerNormUse.fixed_scale()

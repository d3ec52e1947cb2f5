"""Integrity: the checkpoint's weights are exactly what its own description builds.

Weights never depend on data, so a checkpoint is fully determined by what it says it is: a
compiled program's by its program text and constants (``rawc.program``, ``rawc.bounds``), a
named linear-attention construction's by its algorithm and parameters (``rawc.algorithm``).
Rebuilding from that description and comparing every tensor bit for bit catches any change to
any weight, however small, which no sampled error bound can (a 1e-6 change of one weight, or a
whole ``W_Q`` scaled by 1.001, hides inside the bounds). Trained weights have no description to
rebuild from: the check does not apply, and the verdict says so.
"""
from __future__ import annotations

import dataclasses
import enum

import numpy as np
import torch

from construct.algorithms.linear_attention import LSA_ALGORITHMS
from construct.model.assemble import CompiledModel, compile_program
from construct.model.checkpoint import Checkpoint


class Integrity(enum.Enum):
    MATCH = "weights equal a fresh build of the checkpoint's description"
    DIFFERS = "weights differ from a fresh build of the checkpoint's description"
    NOT_APPLICABLE = "no description to rebuild from (trained or unknown weights)"
    SKIPPED = "not checked (--no-integrity)"


@dataclasses.dataclass(frozen=True)
class IntegrityResult:
    status: Integrity
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status is Integrity.DIFFERS

    def line(self) -> str:
        return f"integrity: {self.status.value}" + (f" ({self.detail})" if self.detail else "")


def compare_weights(built: dict[str, np.ndarray], stored: dict[str, torch.Tensor]
                    ) -> IntegrityResult:
    """Every tensor exactly equal (float64 as stored); else the first that differs and where."""
    names = sorted(set(built) | set(stored))
    for name in names:
        if name not in built or name not in stored:
            return IntegrityResult(Integrity.DIFFERS, f"tensor {name} is not in both")
        fresh = torch.as_tensor(np.asarray(built[name], dtype=np.float64))
        saved = stored[name].to(torch.float64)
        if fresh.shape != saved.shape:
            return IntegrityResult(Integrity.DIFFERS, f"tensor {name} has shape "
                                   f"{list(saved.shape)}, a fresh build {list(fresh.shape)}")
        if not torch.equal(fresh, saved):
            diff = (fresh - saved).abs()
            where = [int(i) for i in (diff == diff.max()).nonzero()[0]]
            return IntegrityResult(
                Integrity.DIFFERS, f"tensor {name} differs at {len(diff.nonzero())} of "
                f"{diff.numel()} entries, most at index {where} by {float(diff.max()):.3g}")
    return IntegrityResult(Integrity.MATCH, f"{len(names)} tensors, bit for bit")


def compare_compiled(compiled: CompiledModel, checkpoint: Checkpoint) -> IntegrityResult:
    """A compiled program's checkpoint against ``compiled``, the fresh compile of its program
    and constants (callers that need the compile anyway pass theirs)."""
    if compiled.shape != checkpoint.shape:
        return IntegrityResult(Integrity.DIFFERS, f"config {checkpoint.shape} is not what the "
                               f"program and constants compile to ({compiled.shape})")
    return compare_weights(compiled.weights, checkpoint.weights)


def check_integrity(checkpoint: Checkpoint) -> IntegrityResult:
    """Rebuild ``checkpoint`` from its description and compare (``Integrity`` explains)."""
    if not checkpoint.shape.attn_kind.is_linear:
        return compare_compiled(compile_program(checkpoint.program(), checkpoint.config()),
                                checkpoint)
    name = checkpoint.algorithm.get("name")
    if name not in LSA_ALGORITHMS:
        return IntegrityResult(Integrity.NOT_APPLICABLE, f"algorithm {name!r}")
    algorithm = LSA_ALGORITHMS[name]
    built = algorithm.construct(algorithm.resolve(**(checkpoint.algorithm.get("params") or {})))
    if built.shape != checkpoint.shape:
        return IntegrityResult(Integrity.DIFFERS, f"config {checkpoint.shape} is not what "
                               f"{name} with its parameters builds ({built.shape})")
    return compare_weights(built.weights, checkpoint.weights)

"""Running error statistics: what ``rawc verify`` keeps of every task instead of the task.

Every comparison (one op, one slot after one layer, one prefix end to end) is an ``ErrorStat``:
running max / sum of ``|compiled - reference|`` and ``|reference|``, and the bound it is held
to. Memory is one small record per comparison, whatever the number of tasks.

Relative errors are batch-normwise: ``max|err| / max|ref|`` and ``mean|err| / mean|ref|``
(a per-task ratio is meaningless where the reference is near zero).
"""
from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class ErrorStat:
    """Running max/mean of |compiled - reference| and |reference| over tasks and columns."""

    label: str
    bound: float
    max_abs: float = 0.0
    sum_abs: float = 0.0
    max_ref: float = 0.0
    sum_ref: float = 0.0
    count: int = 0

    def update(self, value: torch.Tensor, reference: torch.Tensor) -> None:
        # A NaN is no error bound's friend: ``max(0.0, nan)`` is 0.0, so it counts as inf.
        err = (value.double() - reference.double()).abs().nan_to_num(nan=torch.inf,
                                                                     posinf=torch.inf)
        self.max_abs = max(self.max_abs, float(err.max()))
        self.sum_abs += float(err.sum())
        self.max_ref = max(self.max_ref, float(reference.abs().max()))
        self.sum_ref += float(reference.abs().sum())
        self.count += err.numel()

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.bound

    def row(self) -> dict[str, object]:
        mean_abs = self.sum_abs / max(self.count, 1)
        mean_ref = self.sum_ref / max(self.count, 1)
        return {"check": self.label, "max_abs": self.max_abs, "mean_abs": mean_abs,
                "max_ref": self.max_ref,
                "max_rel": self.max_abs / self.max_ref if self.max_ref else 0.0,
                "mean_rel": mean_abs / mean_ref if mean_ref else 0.0,
                "bound": self.bound, "ok": self.ok}


@dataclasses.dataclass
class RatioStat:
    """Per-task ``observed / bound`` for a bound computed task by task (the a-posteriori
    bound): the largest ratio (must stay <= 1), the smallest bound's tightness, and the
    largest bound relative to the output it bounds."""

    label: str
    worst_ratio: float = 0.0      # max over tasks and prefixes of observed / bound
    max_bound: float = 0.0
    max_observed: float = 0.0
    max_relative_bound: float = 0.0  # max of bound / |exact output| scale
    count: int = 0

    def update(self, observed: torch.Tensor, bound: torch.Tensor, scale: torch.Tensor) -> None:
        # (nan_to_num would also turn an infinity into the largest float: an infinite bound
        # then "held" nothing against an overflowed output, and an overflow looked finite)
        observed = observed.double().abs().nan_to_num(nan=torch.inf, posinf=torch.inf)
        bound = bound.double().nan_to_num(nan=torch.inf, posinf=torch.inf)
        ratio = torch.where(bound > 0, observed / bound.clamp(min=1e-300),
                            torch.where(observed > 0, torch.inf, 0.0))
        ratio = torch.where(bound.isinf(), 0.0, ratio)  # an infinite bound claims nothing
        self.worst_ratio = max(self.worst_ratio, float(ratio.max()))
        self.max_bound = max(self.max_bound, float(bound.max()))
        self.max_observed = max(self.max_observed, float(observed.max()))
        self.max_relative_bound = max(self.max_relative_bound,
                                      float(bound.max() / scale.double().abs().max().clamp(
                                          min=1e-300)))
        self.count += observed.numel()

    @property
    def ok(self) -> bool:
        return self.worst_ratio <= 1.0

    @property
    def tightness(self) -> float:
        """How far the bound sits above what was observed: max bound / max observed."""
        return self.max_bound / self.max_observed if self.max_observed else float("inf")

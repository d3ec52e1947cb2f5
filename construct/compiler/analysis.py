"""Static analysis: magnitude bounds of every slot, and the dependencies between ops.

Bounds are interval bounds on the largest entry ``|v|`` of a slot, given the declared bound
``B`` on every input entry (``|x_k| <= B``, ``|y| <= B``). They are flow-sensitive (each op's
result has its own bound) and sound for every column, not only the columns that matter:

- ``mov``: ``|dst| <= |src|`` (a convex combination of columns);
- ``aff``: ``|dst_i| <= sum_k sum_j |W_k[i, j]| |src_k| + |b_i|``;
- ``mul``: ``|dst| <= b |left| |right|`` (``b`` the inner size);
- ``div``: ``|dst| <= |num| / m`` with ``m`` the declared lower bound on ``|den|``;
- ``hinge``: the piecewise-linear function's extremes over its input's interval (its domain,
  if declared), times the value's bound (``construct.compiler.hinge_bounds``);
- a declared bound on an op's result (``Program.assumptions``) caps the interval bound;
- a slot with a prior value starts at that value's largest entry (zero in other columns).

A loop is analysed unrolled (the caller passes ``Program.unrolled()``).

The lowering scales each ``mul`` by these bounds and the error models are written in them.
"""
from __future__ import annotations

import dataclasses

from construct.compiler import hinge_bounds
from construct.language.program import Aff, Div, Hinge, Mov, Mul, Program


@dataclasses.dataclass(frozen=True)
class Bounds:
    """``before[i][name]``: bound on slot ``name`` just before op ``i``; ``results[i]``: on op
    ``i``'s result."""

    input_bound: float
    before: tuple[dict[str, float], ...]
    final: dict[str, float]
    results: tuple[float, ...]

    def of_op_result(self, index: int, program: Program | None = None) -> float:
        return self.results[index]

    def uniform_over_loop(self, start: int, length: int, times: int) -> Bounds:
        """Bounds of an unrolled loop made equal in every iteration (the largest of them).

        A weight-shared stage scales its products by one bound for all iterations, so each
        body op gets the worst case over its iterations; still sound for every one of them.
        """
        before, results = list(self.before), list(self.results)
        for p in range(length):
            copies = [start + j * length + p for j in range(times)]
            worst = {name: max(self.before[i][name] for i in copies) for name in before[start]}
            result = max(self.results[i] for i in copies)
            for i in copies:
                before[i], results[i] = dict(worst), result
        return dataclasses.replace(self, before=tuple(before), results=tuple(results))

    @property
    def overall(self) -> dict[str, float]:
        """Largest bound any version of each slot ever has."""
        out: dict[str, float] = {}
        for state in (*self.before, self.final):
            for name, value in state.items():
                out[name] = max(out.get(name, 0.0), value)
        return out


def magnitude_bounds(program: Program, input_bound: float) -> Bounds:
    current = {s.name: 0.0 for s in program.slots}
    current[program.x_slot] = current[program.y_slot] = float(input_bound)
    for name, values in program.prior:  # zero in every other column
        current[name] = max(abs(float(v)) for v in values)
    before, results = [], []
    declared: dict[int, float] = {}
    for index, bound in program.assumptions:  # several on one op: the tightest holds
        declared[index] = min(float(bound), declared.get(index, float("inf")))
    for index, op in enumerate(program.ops):
        before.append(dict(current))
        match op:
            case Mov(src=src):
                value = current[src]
            case Mul(left=left, right=right, b=b):
                value = b * current[left] * current[right]
            case Div(num=num, min_abs=min_abs):
                value = current[num] / float(min_abs)
            case Hinge(src=src, value=factor):
                value = hinge_bounds.result_bound(
                    op, current[src], 1.0 if factor is None else current[factor])
            case Aff(terms=terms, bias=bias):
                n = len(bias) if bias is not None else len(terms[0][1])
                value = max(
                    sum(sum(abs(float(w)) for w in matrix[i]) * current[name]
                        for name, matrix in terms)
                    + (abs(float(bias[i][0])) if bias is not None else 0.0)
                    for i in range(n))
        current[op.dst] = min(value, declared.get(index, value))
        results.append(current[op.dst])
    return Bounds(float(input_bound), tuple(before), dict(current), tuple(results))


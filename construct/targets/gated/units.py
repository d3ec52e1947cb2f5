"""Units of the gated MLP (TransformerLens ``GatedMLP``): ``relu(z W_gate[:, u]) * (z W_in[:, u])``.

**Exact product.** ``relu(a) b - relu(-a) b = a b`` for all reals ``a, b``: two units per
scalar product, one gating on ``+a``, one on ``-a``, both reading ``b``, their outputs
subtracted. A matrix product ``L (a x b) @ R (b x c)`` takes ``2 a b c`` units, each computing
one ``L_ik R_kj`` exactly; ``W_out`` sums them over ``k`` into each ``(i, j)``. In exact
arithmetic there is no approximation term at all; in floats each unit is one rounded
multiply of two rounded inputs, and ``W_out`` sums ``2 b`` terms (``error_models
.gated_product_rounding``). Weights are the operands' scales (``gain``), never ``1 / eps^2``:
nothing here grows past the magnitude bounds.

**Pass-through.** ``relu(g v) k - relu(-g v) k = g v k`` with a *constant* ``k`` on the value
side: the ``one`` position row (1 at every position) in a model without LayerNorm, the pads'
half-difference ``(pad_+ - pad_-) / 2 = P`` (exactly, the zero-mean pads' ``-S/2`` cancels)
in a fixed-scale LayerNorm layer.

**Hinge.** ``relu(s x + o) v`` is one unit: gate ``s x + o`` (the offset on the constant row),
value ``v``; a sum of them with ``W_out`` weights is any piecewise-linear function of ``x``
times ``v``, the gated division's seed (``construct.compiler.newton_division``).

**Division.** In a ``div`` layer LayerNorm divides every row by ``sigma ~ N |c| sqrt(2 / L)``
and the pads' half-difference is ``N c / sigma``: gating on it and on its negative, both
reading the numerator, gives ``relu(N c / s) n / s + relu(-N c / s) n / s = N |c| n / s^2``,
that is ``n / |c|`` times ``L / (2 N)`` up to LayerNorm's own relative error
``(E + L eps) / (2 N^2 c^2)`` (Lemma 8's, ``error_models.division_error``).

Every column's weights sum to zero (the zero row takes the balance) in models with LayerNorm,
so LayerNorm's mean subtraction cancels, as in the paper target.
"""
from __future__ import annotations

import itertools

import numpy as np

Reading = tuple[tuple[int, float], ...]  # (row, weight) pairs of one column


class GatedUnits:
    """Collects the ``W_gate``, ``W_in`` columns and ``W_out`` rows of one MLP half.

    ``constant``: a column whose value in z-space is the known ``constant_value`` (the
    pass-through's fixed factor); ``pads``: the pad rows ``(+, -)`` of a LayerNorm model."""

    def __init__(self, d_model: int, zero_row: int | None, constant: Reading,
                 constant_value: float, pads: tuple[int, int] | None = None) -> None:
        self.d_model, self.zero_row = d_model, zero_row
        self.constant, self.constant_value, self.pads = constant, constant_value, pads
        self.gates: list[np.ndarray] = []
        self.inputs: list[np.ndarray] = []
        self.outputs: list[np.ndarray] = []

    def _column(self, reading: Reading) -> np.ndarray:
        column = np.zeros(self.d_model)
        for row, w in reading:
            column[row] += w
        if self.zero_row is not None:
            column[self.zero_row] -= column.sum()
        return column

    def add(self, gate: Reading, value: Reading) -> int:
        self.gates.append(self._column(gate))
        self.inputs.append(self._column(value))
        self.outputs.append(np.zeros(self.d_model))
        return len(self.gates) - 1

    def product(self, left: range, right: range, placement: np.ndarray,
                shape: tuple[int, int, int], gain_l: float, gain_r: float,
                read_scale: float) -> None:
        """``h += placement.T @ vec(left @ right)``, each scalar product by two units reading
        ``gain_l * left`` (gate) and ``gain_r * right`` (value); ``z = value / read_scale``."""
        a, b, c = shape
        for i, k, j in itertools.product(range(a), range(b), range(c)):
            target = placement[i * c + j] / (gain_l * gain_r)
            value = ((right[k * c + j], gain_r * read_scale),)
            plus = self.add(((left[i * b + k], gain_l * read_scale),), value)
            minus = self.add(((left[i * b + k], -gain_l * read_scale),), value)
            self.outputs[plus] += target
            self.outputs[minus] -= target

    def pass_through(self, row: int, read_scale: float, gain: float,
                     target: np.ndarray) -> None:
        """``h += target * value(row)`` (``value = read_scale * z[row]``): gates on
        ``+-gain value``, values the constant."""
        plus = self.add(((row, gain * read_scale),), self.constant)
        minus = self.add(((row, -gain * read_scale),), self.constant)
        self.outputs[plus] += target / (gain * self.constant_value)
        self.outputs[minus] -= target / (gain * self.constant_value)

    def hinge(self, src: int, values: range | None, terms: tuple[tuple[float, float, float], ...],
              bias: float, placement: np.ndarray) -> None:
        """``h += placement.T @ (b + v sum_k w_k relu(s_k x + o_k))`` (``Hinge``): per term and
        value entry one unit gating on ``s_k x + o_k`` (``o_k`` on the constant column) and
        reading the entry (or the constant); the bias rides on one unit per entry. Only in a
        model without LayerNorm, where the constant column is the ``one`` row."""
        (one, _), = self.constant
        entries = range(placement.shape[0])
        for w, s, o in terms:
            for r in entries:
                value = self.constant if values is None else ((values[r], 1.0),)
                unit = self.add(((src, s), (one, o)), value)
                self.outputs[unit] += w * placement[r]
        if bias:
            for r in entries:
                unit = self.add(((one, 1.0),), self.constant)
                self.outputs[unit] += bias * placement[r]

    def divide(self, row: int, gain: float, target: np.ndarray) -> None:
        """``h += target * z[row] * |pad half-difference|`` times ``gain``: in a ``div`` layer
        ``z[row] |N c / s| = n N |c| / s^2``, so ``gain = 2 N / L`` gives ``n / |c|``."""
        positive, negative = self.pads
        half = gain ** 0.5  # split between W_in and W_out: neither grows past sqrt(2 N / L)
        for sign in (1.0, -1.0):
            unit = self.add(((positive, sign / 2), (negative, -sign / 2)), ((row, half),))
            self.outputs[unit] += target * (gain / half)

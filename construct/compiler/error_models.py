"""Error models: a bound on every lowered operation's error, in terms of its constants.

Each op's bound is split into the approximation term (what the construction gives up in exact
arithmetic; it shrinks as the constants grow) and a rounding term (unit roundoff ``u`` of the
dtype times the magnitudes involved; standard ``gamma_n = n u`` accumulation bounds, counting
only nonzero terms since adding an exact zero does not round). Both are bounds on the largest
absolute error of the op's destination, given exact inputs inside their magnitude bounds.

Derivations (reference ``raw-constructions.md`` section 2):

*Softmax read (position codes).* Head ``t`` scores key ``j`` with ``N (2 tau j - j^2)``, which
is ``-N (j - tau)^2`` up to a constant, so every other key sits at least ``N m^2`` below the
target for distance ``m``. The weight off target is at most
``2 sum_{m>=1} e^{-N m^2} <= 2 e^{-N} / (1 - e^{-3N})``; scores are rounded by at most
``delta = 2 u S`` with ``S = 3 N n_ctx^2``, which costs ``e^{2 delta}``. A read of values bounded
by ``V`` is then off by at most ``2 V leak``. A mean over columns of one kind has every
unwanted key ``N`` below: ``leak <= n_ctx e^{-N}``.

*Attention rounding.* A head's output ``sum_j p_j v_j`` is dominated by the target column
(``p_tau`` rounds to 1 once the leak is below ``u``). Rounding ``a + b`` to nearest errs by at
most ``min(u |a + b|, |b|)``, so however the sum is ordered, adding the off-target terms costs
at most their own size (the leak, already counted) and the target term one rounding: ``2 u V``
with the product ``p_tau v_tau``. A value that is itself an ``n``-term combination adds
``gamma_n``; the two heads' sum through ``W_O`` and the residual add one rounding each. Total:
``(n + 6) u (V + D)`` with ``D`` the old destination value — independent of ``n_ctx``.

*GeLU products* (Lemma 4, Richardson, polarized): ``construct.compiler.gelu_products``.

*GeLU pass-through.* ``GeLU(z) - GeLU(-z) = z Phi(z) + z Phi(-z) = z`` exactly (also for the
tanh GeLU and ReLU), so linear values cross the MLP with rounding error only.

*LayerNorm at a fixed scale (Lemma 6, improved to second order).* Two pad rows hold ``+P`` and
``-P``; a zero row makes every unit's input weights sum to zero, so the mean cancels exactly.
Then ``sigma^2 = (2 P^2 + E - L mu^2) / L + eps_ln`` with ``E`` the energy of all other rows,
and each value is recovered with relative error ``<= E / (2 P^2)`` (the paper's bypass is
``O(1/P)``; keeping ``x`` out of the pads makes it ``O(1/P^2)``).

*LayerNorm mean shift.* LayerNorm subtracts the row mean ``mu`` before it scales. The zero
row makes a unit's input the difference ``g (z_a - z_0)``, in which ``mu`` cancels exactly, but
each ``z`` is rounded at ``|h - mu|``, so a factor read through LayerNorm is off by at most
``4 u (|a| + |mu|)`` in value units; the linear parts of a product's three GeLU units cancel
only in exact arithmetic, so ``kappa`` times those input errors, weighed by the rule's
``input_error_gain`` ``g`` (``gelu_products``, *Input errors*; ``g ~ 1.5`` for Richardson),
gives ``4 g b sqrt(pi/2) (2 A B + |mu| (A + B)) / eps`` multiples of ``u``. Dead values left in rows
would make ``|mu|`` as large as their mean; so each layer's attention writes the pads as
``+P - S/2`` and ``-P - S/2``, ``S`` the sum of every other row after the half (*zero-mean
pads*: the self head reads the rows' sum, every head subtracts half the sum of what it
writes). The residual LayerNorm sees then sums to zero up to rounding, and ``S`` enters only
the energy: ``E + S^2 / 2``. The rounding is the pads' own (the self head reads the rows as
stored, so their errors cancel): each pad is a head write of ``T`` terms (the self head's
value reads every row, ``W_O`` sums every head's outputs) over an old pad, off by
``(T + 6) u (V + D)`` (*attention rounding*) with ``V, D <= B_pad``, so
``|mu| <= 4 (T + 6) u B_pad / L`` (``pad_mean_count``; ``rawc fuzz`` found the earlier
``4 u (P + S) / L`` exceeded in float32, 0.092 against 0.068). A pass-through (division,
old-value removal) has no ``kappa`` and pays ``4 u |mu|`` per value.

*Pad leak.* The pads are rewritten each layer by a softmax read of the column's own rows,
which takes ``sum_j p_j v_j = v_t + sum_{j != t} p_j (v_j - v_t)``: a leak ``<= leak`` of the
*other* columns' pads. After a division layer those hold ``+-N_div c_j`` with a divisor that
differs between columns, so the pad is off by up to ``2 leak B_pad`` (``B_pad`` the largest
pad magnitude anywhere) and the LayerNorm scale, ``~ P``, by the same relative amount:
``2 leak B_pad / P`` more relative error on every value read at the fixed scale. At the
default hardness ``e^-64`` it is nothing; at hardness 16 with ``B_pad ~ 1e9 |c|`` it dominates.

*LayerNorm division (Lemma 8).* Pads ``+N c``, ``-N c`` make ``sigma ~ N |c| sqrt(2/L)``;
``y / sigma * N sqrt(2/L) = y / |c| (1 + X)^{-1/2}`` with
``|X| <= (E + L eps_ln) / (2 N^2 m^2)`` for ``|c| >= m``: relative error ``<= |X|``.
"""
from __future__ import annotations

import dataclasses
import math

from construct.compiler import gelu_products
from construct.compiler.config import GeluProduct, unit_roundoff


FORMING_ULPS = 64  # the most terms a model's approx or rounding sums (folded maps included)


@dataclasses.dataclass(frozen=True)
class ScaledPart:
    """A part of an op's bound that shrinks with the magnitudes the op actually reads.

    With ``s`` the largest ``|value| / bound`` over the op's reads (``ErrorModel.reads``) in
    one column, the part is at most ``value[dtype] * s**power`` there: Lemma 4's remainder
    ``1.5 b eps^2 A B`` has ``power`` 4 (its ``u, v`` are at most ``eps s``), the rounding of
    the GeLU units' outputs ``power`` 1 (outputs ``~ |z| kappa``, ``|z| <= 2 eps s``), a
    relative error of the product ``power`` 2 (``|a b| <= A B s^2``).

    A *bilinear* part of a product ``L R`` is a sum over its terms ``l_j r_j`` of ``|l_j| |r_j|``
    times at most ``power - 2`` more factors ``<= s``: the unit and summation rounding and the
    scale error of an exact gated product (``|l_j r_j| (...)``), the GeLU products' remainders
    (``(u + v)^m - u^m - v^m`` and ``(u + v)^m - (u - v)^m`` vanish where ``u`` or ``v`` does,
    so ``u v`` divides them).
    It is at most ``value * s_l * s_r * s**(power - 2)`` with ``s_l, s_r`` the two reads' own
    ratios: far below ``s**power`` where one operand is much smaller than its bound (a gd
    prediction ``w^T x`` reads ``|w|`` near 1 under a bound of 13)."""

    value: dict[str, float]  # dtype -> the part at the declared magnitudes (s = 1)
    power: int
    # A quotient's parts also follow its result and its divisor: times ``q**result_power``,
    # ``q`` the largest ``|result| / bound`` in the column, and ``t**divisor_power``,
    # ``t = floor / |den|`` (Lemma 8's error falls like ``1 / |den|^2`` above the floor).
    result_power: int = 0
    divisor_power: int = 0
    bilinear: bool = False

    def factor(self, scale, result_scale, divisor_scale, read_scales=None):
        """``read_scales``: a product's ``(s_l, s_r)``, taken by a bilinear part."""
        magnitude = (read_scales[0] * read_scales[1] * scale ** (self.power - 2)
                     if self.bilinear and read_scales is not None else scale ** self.power)
        return (magnitude * result_scale ** self.result_power
                * divisor_scale ** self.divisor_power)


@dataclasses.dataclass(frozen=True)
class ErrorModel:
    """Bound on the largest absolute error of one op's destination.

    ``approx + rounding[dtype]`` holds for any inputs inside the declared magnitudes. The
    parts in ``scaled`` (included in that total) shrink with the magnitudes a task actually
    has (``at_magnitude``); the a-posteriori bound uses them."""

    op_index: int
    mechanism: str
    approx: float
    rounding: dict[str, float]  # dtype -> rounding term
    reads: tuple[tuple[str, float], ...] = ()  # slot, declared magnitude bound
    scaled: tuple[ScaledPart, ...] = ()
    result_bound: float = 0.0  # the result's magnitude bound (for ``result_power``)
    divisor: tuple[str, float] | None = None  # a quotient's divisor slot and its floor
    # The part its destination rows do not share with another row fed by the same MLP units
    # (an aff folded beside it): the rounding of each row's own sum and what clearing that row
    # leaves. None: the whole bound.
    unshared: dict[str, float] | None = None
    unshared_scaled: tuple[ScaledPart, ...] = ()  # the scaled share of ``unshared``

    def unshared_part(self, dtype: str) -> float:
        return self.total(dtype) if self.unshared is None else self.unshared[dtype]

    def total(self, dtype: str) -> float:
        return self.approx + self.rounding[dtype]

    def fixed_part(self, dtype: str) -> float:
        """The part that does not shrink: ``total - sum(scaled)``, summed exactly (``fsum``;
        a plain difference loses it entirely beside a scaled part of 1e30, and a product of
        two zeros then claimed no error: ``rawc fuzz``), plus what forming ``approx`` and
        ``rounding`` as float sums may have rounded away (``FORMING_ULPS`` ulps of the total:
        a sum of ``k`` non-negative terms is off by at most ``k - 1`` of them)."""
        total = self.total(dtype)
        if not math.isfinite(total):
            return math.inf
        exact = math.fsum([self.approx, self.rounding[dtype],
                           *(-part.value[dtype] for part in self.scaled)])
        return max(exact, 0.0) + FORMING_ULPS * 2.0 ** -52 * total

    def at_magnitude(self, dtype: str, scale, result_scale=1.0, divisor_scale=1.0,
                     read_scales=None):
        """The bound where the reads are at most ``scale`` times their declared bounds (a
        product's two reads ``read_scales`` times theirs), the result ``result_scale`` times
        its bound and the divisor ``1 / divisor_scale`` times its floor (floats or tensors of
        per-column scales; ``ScaledPart``)."""
        fixed = self.fixed_part(dtype)
        return fixed + sum(part.value[dtype]
                           * part.factor(scale, result_scale, divisor_scale, read_scales)
                           for part in self.scaled)

    def to_json(self) -> dict[str, object]:
        return {"op": self.op_index, "mechanism": self.mechanism, "approx": self.approx,
                "rounding": dict(self.rounding)}


def per_dtype(scaled_count: float) -> dict[str, float]:
    """``count * u`` for each dtype (a rounding term written as a multiple of ``u``)."""
    return {dtype: scaled_count * unit_roundoff(dtype) for dtype in ("float64", "float32")}


def mean_read_leak(hardness: float, n_ctx: int, dtype: str = "float64") -> float:
    """Softmax weight on columns of the wrong kind for a mean read."""
    margin = hardness - 4 * unit_roundoff(dtype) * hardness
    return min(1.0, n_ctx * math.exp(-margin))


def attention_rounding(terms: int, magnitude: float) -> float:
    """Rounding term of a head's write, in multiples of ``u`` (see *Attention rounding*)."""
    return (terms + 6) * magnitude


def gated_product_rounding(inner: int, left_bound: float, right_bound: float) -> float:
    """Rounding of an exact gated dot product (``construct.targets.gated.units``), in
    multiples of ``u``: each unit multiplies two inputs read with one rounding each (``3 u``
    relative), ``W_out`` sums ``2 b`` signed terms of total size ``b A B`` (``2 b u`` of it),
    then the scaling by ``W_out`` and the residual add (``4 u``)."""
    return (2 * inner + 7) * inner * left_bound * right_bound


def pad_mean_count(width: int, value_terms: int, pad_bound: float) -> float:
    """``|mu| / u`` of the residual a LayerNorm sees after the zero-mean pads (*LayerNorm mean
    shift*): ``4 (T + 6) B_pad / L`` with ``T = L + value_terms`` the terms of a pad's write."""
    return 4 * (width + value_terms + 6) * pad_bound / width


def gated_shift_rounding(inner: int, left_bound: float, right_bound: float,
                         mean_count: float) -> tuple[dict[str, float], dict[str, float]]:
    """LayerNorm's mean subtraction in a gated product, per dtype: each operand is read as
    ``(a - mu)`` balanced by the zero row, off by ``4 u (|a| + |mu|)`` (*LayerNorm mean shift*:
    the subtraction, the scaling, LayerNorm's weight and bias each round),
    ``|mu| <= mean_count u``; summed over ``b`` products: the operand part ``8 b u A B`` and
    the mean part ``4 b u |mu| (A + B)`` (``rawc fuzz`` found one rounding, the count used
    before, 1.7 times exceeded in float32)."""
    operands, mean_part = {}, {}
    for dtype in ("float64", "float32"):
        u = unit_roundoff(dtype)
        operands[dtype] = 8 * inner * u * left_bound * right_bound
        mean_part[dtype] = 4 * inner * u * mean_count * u * (left_bound + right_bound)
    return operands, mean_part


def layernorm_shift_rounding(inner: int, left_bound: float, right_bound: float, scale: float,
                             mean_count: float, rule: GeluProduct = GeluProduct.LEMMA4
                             ) -> tuple[dict[str, float], dict[str, float]]:
    """Absolute rounding a GeLU product suffers from LayerNorm's mean subtraction, per dtype,
    with ``|mu| <= mean_count * u`` (see *LayerNorm mean shift*), in two parts: the one
    proportional to the operands read (``2 A B``), which shrinks with them, and the one from
    the mean itself (``|mu| (A + B)``), which the pads fix whatever the operands hold."""
    operands, mean_part = {}, {}
    for dtype in ("float64", "float32"):
        u = unit_roundoff(dtype)
        factor = (4 * inner * math.sqrt(math.pi / 2) * u / scale
                  * gelu_products.input_error_gain(rule, scale))
        operands[dtype] = factor * 2 * left_bound * right_bound
        mean_part[dtype] = factor * mean_count * u * (left_bound + right_bound)
    return operands, mean_part


def layernorm_shift_pass_through(mean_count: float, gain: float = 1.0) -> dict[str, float]:
    """Absolute rounding a pass-through of gain ``gain`` suffers from LayerNorm's mean, per
    dtype: ``4 u |mu| gain`` with ``|mu| <= mean_count * u`` (see *LayerNorm mean shift*)."""
    return {dtype: 4 * mean_count * unit_roundoff(dtype) ** 2 * gain
            for dtype in ("float64", "float32")}


def fixed_scale_ln_error(energy: float, pad: float) -> float:
    """Relative error of a value read through LayerNorm held at a fixed scale by pads."""
    return energy / (2 * pad ** 2)


def pad_leak_error(leak: float, pad_bound: float, pad: float) -> float:
    """Relative error of a fixed-scale LayerNorm read whose pads were written by a softmax
    read that leaks (see *Pad leak*)."""
    return 2 * leak * pad_bound / pad


def layernorm_energy(rows):
    """``E`` of Lemmas 6 and 8 along the last axis of ``rows`` (every row LayerNorm reads but
    its pads; numpy or torch): their squares, plus the sum squared over 2, since the pads also
    carry ``-S/2`` each, ``S`` the sum of the other rows (zero-mean residual)."""
    return (rows ** 2).sum(-1) + rows.sum(-1) ** 2 / 2


def division_error(energy: float, width: int, ln_eps: float, scale: float,
                   min_abs: float) -> float:
    """Relative error of the LayerNorm division (Lemma 8)."""
    return (energy + width * ln_eps) / (2 * scale ** 2 * min_abs ** 2)

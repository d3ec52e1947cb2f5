"""Division for the gated target: a hinge seed refined by Newton steps, exact products only.

The paper target's ``div`` is LayerNorm's quotient (Lemma 8): it needs LayerNorm in every
layer, and with it pads of ``1e9``. The gated target divides without LayerNorm. For
``q = n / |c|`` with ``m <= |c| <= M`` (the floor and the divisor's magnitude bound):

1. ``a = |c| = relu(c) + relu(-c)``: one hinge, exact in floats.
2. *Seed.* ``g`` interpolates ``1/x`` linearly between knots ``t_0 = m < t_1 < ... < t_K``,
   ``t_K >= M``. As ``1/x`` is convex, on ``[t_{j-1}, t_j]`` with ``rho_j = t_j / t_{j-1}``
   ``x g(x) = x (t_{j-1} + t_j - x) / (t_{j-1} t_j)`` lies in ``[1, 1 + E]``,
   ``E = max_j (rho_j - 1)^2 / (4 rho_j)``; scaled by ``2 / (2 + E)`` it is centred:
   ``|1 - x g(x)| <= eps0 = E / (2 + E)``. Written with left hinges,
   ``g(x) = c (1/t_K + sum_j w_j relu(t_j - x))``, ``w_K = 1/(t_{K-1} t_K)``,
   ``w_j = 1/(t_{j-1} t_j) - 1/(t_j t_{j+1})``: every ``w_j > 0`` (the slopes steepen to the
   left), so the terms never cancel and their sum rounds like any sum of positive terms. One
   layer computes ``q_0 = n g(a)`` and ``e_0 = 1 - a g(a)`` from the same ``a``.
3. *Newton, coupled.* ``q_{i+1} = q_i + q_i e_i``, ``e_{i+1} = e_i^2``: two exact products a
   layer. By induction ``q_k = n g(a) (1 - e_0^(2^k)) / (1 - e_0)``, and ``1 - e_0 = a g(a)``,
   so ``q_k = (n / a) (1 - e_0^(2^k))``: relative error at most ``eps0^(2^k)`` in exact
   arithmetic (``rawc prove lemmas`` checks the identity). Rounding ``delta`` in ``e_0`` moves
   ``q_k`` by about ``delta`` relative: one hinge sum's rounding, never amplified.

``k = CompileConfig.division_steps`` (3 in float64, 2 in float32) and
``eps0 = (u / 16)^(1 / 2^k)`` put the truncation at a sixteenth of the unit roundoff; the
knot ratio ``rho = 1 + 2E + 2 sqrt(E + E^2)`` follows from ``E = 2 eps0 / (1 - eps0)``, and
``K = ceil(log(M / m) / log rho)`` knots (float64: ``rho ~ 1.27``, about ``4.2 ln(M / m)``).
One step fewer needs ``rho ~ 1.02``, ten times the knots, and the seed's sum of ``K``
positive terms rounds like ``K u``: measured on Sherman-Morrison, d = 2, float32, one step
and 400 knots err 1.5e-5 in ``r``, two steps and 30 knots 1e-6; float64 d = 16 1.7e-13
against 2e-14.
4. *A fresh last step*, in float32, where the chain runs on the scalar ``r ~ 1 / a`` (a
   numerator too large to seed entry by entry): ``k - 1`` coupled steps, then ``t = n r`` and
   ``p = a r`` in one layer and ``q = t + t (1 - p)`` in the next. With ``a r = 1 - eps`` that is
   ``(n / a)(1 - eps^2)`` (proved beside the identity above): the coupled chain carries the
   mismatch of ``r_0``'s and ``e_0``'s roundings (each a sum of ``K`` terms), the fresh step
   squares it away.

A division costs ``2 + k`` MLP halves on the critical path instead of one, ``3 + k`` for a
numerator too large to seed entry by entry (``_division``).
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

from construct.compiler.analysis import magnitude_bounds
from construct.compiler.config import CompileConfig, unit_roundoff
from construct.compiler.refusal import CompileRefusal, Refusal
from construct.language.program import Aff, Div, Hinge, Loop, Mul, Op, Program, Slot, identity

MAX_KNOTS = 4096
DIRECT_UNITS = 1024  # seed a numerator directly while it takes at most this many units


@dataclasses.dataclass(frozen=True)
class Seed:
    """The hinge terms of ``g`` (``(w, s, o)`` with ``w relu(s x + o)``) on ``[floor, top]``
    and the centred seed's worst ``|1 - x g(x)|``."""

    terms: tuple[tuple[Fraction, Fraction, Fraction], ...]
    floor: Fraction
    top: Fraction
    eps0: Fraction

    @classmethod
    def reciprocal(cls, floor: float, top: float, steps: int, dtype: str) -> Seed:
        target = (unit_roundoff(dtype) / 16) ** (1 / 2 ** steps)
        spread = 2 * target / (1 - target)
        rho = (1 + 2 * spread + 2 * math.sqrt(spread + spread ** 2)) * (1 - 1e-9)
        knots = [Fraction(floor)]
        while knots[-1] < Fraction(top) * Fraction(1000001, 1000000) or len(knots) < 2:
            knots.append(Fraction(float(knots[-1]) * rho))
            if len(knots) > MAX_KNOTS:
                raise CompileRefusal(
                    Refusal.OUT_OF_RANGE,
                    f"a divisor ranges over [{floor:.6g}, {top:.6g}]: the gated division's seed "
                    f"would need more than {MAX_KNOTS} knots; declare a tighter floor or bound")
        spread_exact = max((b / a - 1) ** 2 / (4 * b / a) for a, b in zip(knots, knots[1:]))
        centre = 2 / (2 + spread_exact)
        last = len(knots) - 1
        weights = {last: 1 / (knots[last - 1] * knots[last])}
        for j in range(1, last):
            weights[j] = 1 / (knots[j - 1] * knots[j]) - 1 / (knots[j] * knots[j + 1])
        # w relu(t - x) = (w p) relu(t / p - x / p) with p the power of two at or below t:
        # gates of size below 2 whose scaling is exact, so a gate rounds once (its
        # subtraction, exact by Sterbenz where x >= t / 2), W_out of size ~ 3 / t
        powers = {j: Fraction(2) ** math.floor(math.log2(knots[j])) for j in weights}
        terms = tuple((centre * weights[j] * powers[j], -1 / powers[j], knots[j] / powers[j])
                      for j in range(1, last + 1))
        terms += ((centre / knots[last], Fraction(0), Fraction(1)),)
        # the seed holds to its last knot, a hair past ``top``: the domain says so, a margin
        # for a lowered loop's divisors, which differ from the written program's by the
        # truncation of earlier quotients
        return cls(terms, knots[0], knots[-1], spread_exact / (2 + spread_exact))

    @property
    def negated(self) -> tuple[tuple[Fraction, Fraction, Fraction], ...]:
        return tuple((-w, s, o) for w, s, o in self.terms)


ABSOLUTE = ((Fraction(1), Fraction(1), Fraction(0)), (Fraction(1), Fraction(-1), Fraction(0)))


def truncation(seed: Seed, steps: int) -> float:
    """Relative error of ``q_k`` in exact arithmetic: ``eps0^(2^k) / (1 - eps0)^(k+1)``
    (``q_0``'s share of it, carried through the ``k`` steps that each scale by ``1 + e``)."""
    eps0 = float(seed.eps0)
    return eps0 ** (2 ** steps) / (1 - eps0) ** (steps + 1)


def expand_divisions(program: Program, config: CompileConfig) -> Program:
    """``program`` (its loop rolled, floors resolved) with every ``div`` replaced by the hinge
    seed and Newton steps above. A loop's divisions take the largest divisor bound over its
    iterations, so every iteration expands alike."""
    divisions = [i for i, op in enumerate(program.ops) if isinstance(op, Div)]
    if not divisions:
        return program
    if program.groups is not None:
        raise CompileRefusal(
            Refusal.GROUPED_GATED_DIVISION,
            f"op {divisions[0] + 1} (div): the gated target divides over "
            f"{2 + config.division_steps} layers or more (a hinge seed, then Newton steps), so "
            "the program's explicit layer groups cannot hold it; drop the groups or use "
            "--target paper")
    top = _divisor_bounds(program, config.input_bound)
    names = {slot.name for slot in program.slots}
    slots, ops, where, declared = list(program.slots), [], {}, []
    for i, op in enumerate(program.ops):
        if isinstance(op, Div):
            new_slots, new_ops, new_bounds = _division(op, i, top[i], config, names,
                                                       program.slot(op.num).size)
            declared += [(len(ops) + j, bound) for j, bound in new_bounds]
            slots += new_slots
            ops += new_ops
        else:
            ops.append(op)
        where[i] = len(ops) - 1  # the op that writes what op i wrote
    starts = {i: (where[i - 1] + 1 if i else 0) for i in range(len(program.ops))}
    loop = program.loop
    if loop is not None:
        loop = Loop(starts[loop.start], where[loop.stop - 1] + 1, loop.times)
    assumptions = tuple(sorted([(where[i], bound) for i, bound in program.assumptions]
                               + declared, key=lambda pair: pair[0]))
    return dataclasses.replace(program, slots=tuple(slots), ops=tuple(ops), loop=loop,
                               assumptions=assumptions)


def _divisor_bounds(program: Program, input_bound: float) -> dict[int, float]:
    unrolled = program.unrolled()
    bounds = magnitude_bounds(unrolled, input_bound)
    out: dict[int, float] = {}
    for index, op in enumerate(unrolled.ops):
        if isinstance(op, Div):
            rolled = index if program.loop is None else program.loop.rolled(index)
            out[rolled] = max(out.get(rolled, 0.0), bounds.before[index][op.den])
    return out


def _fresh(names: set[str], wanted: str) -> str:
    name, k = wanted, 1
    while name in names:
        name, k = f"{wanted}_{k}", k + 1
    names.add(name)
    return name


def _division(op: Div, index: int, top: float, config: CompileConfig, names: set[str],
              size: int) -> tuple[list[Slot], list[Op], list[tuple[int, Fraction]]]:
    """The ops replacing ``op``: a numerator is seeded directly (``q_0 = n g(a)``, a unit per
    knot and entry) while that takes at most ``DIRECT_UNITS`` units; a larger one (a matrix:
    Sherman-Morrison's ``A x x^T A``) runs the chain on the scalar ``r ~ 1 / |c|``
    (``r_0 = g(a)``) and one exact product ``n r_k`` ends it: a layer more, ``K + 2 size``
    units instead of ``K size``.

    In float32 that chain's last step is taken afresh (module docstring, 4.): same layers,
    the chain's accumulated rounding squared away. Sherman-Morrison float32 end to end:
    d = 16 6.9e-6 -> 3.7e-6, d = 32 1.5e-5 -> 8.4e-6 (the interpreter's own float32 run:
    1.6e-6, 4.4e-6). The fresh ``1 - p`` declares its bound (``Program.assumptions``, checked
    on every task): ``a r_(k-1) = 1 - e_0^(2^(k-1))`` exactly, so ``|1 - p| <= eps0^(2^(k-1))``,
    where intervals give ``1 + M / m`` (``rawc fuzz`` found the products past ``1e100``, a
    refusal the written program does not earn). Not in float64: the error propagation bounds
    ``p = a r`` by ``max|a| * err(r)``, and ``err(r)`` is absolute, ``~ max|r| delta``: the
    intervals lose the ``a r ~ 1`` correlation and the bound grows by ``M / m`` (no assumption
    caps an error; Sherman-Morrison d = 8: a-priori 1.7e-6 -> 8.7e-4, a-posteriori 2.7e-10 ->
    5.6e-9) where float64's observed error is already 2e-14; float32's a-priori bound there is
    uninformative either way (891 -> 4.6e5)."""
    steps = config.division_steps
    floor = float(op.min_abs)
    if not math.isfinite(top):
        raise CompileRefusal(
            Refusal.OUT_OF_RANGE,
            f"op {index + 1} (div): its divisor has no finite magnitude bound over the declared "
            "input box, so the gated division's seed has no interval to cover; declare a "
            "smaller --bound or use --target paper")
    seed = Seed.reciprocal(floor, max(top, floor), steps, config.dtype)
    base = f"_div{index + 1}"
    direct = size * len(seed.terms) <= DIRECT_UNITS
    fresh = not direct and config.dtype == "float32"
    coupled = steps - 1 if fresh else steps
    a = _fresh(names, f"{base}_abs")
    chain = [_fresh(names, f"{base}_{'q' if direct else 'r'}{j}") for j in range(coupled + 1)]
    if direct:
        chain[-1] = op.dst
    e = [_fresh(names, f"{base}_e{j}") for j in range(coupled)]
    step = [_fresh(names, f"{base}_{'q' if direct else 'r'}e{j}") for j in range(coupled)]
    width = size if direct else 1
    slots = ([Slot(a, 1)] + [Slot(name, width) for name in chain[:len(chain) - direct] + step]
             + [Slot(name, 1) for name in e])
    domain = (seed.floor, seed.top)
    ops: list[Op] = [
        Hinge(a, op.den, None, ABSOLUTE),
        Hinge(chain[0], a, op.num if direct else None, seed.terms, domain=domain,
              truncation=truncation(seed, steps))]
    if coupled:  # the fresh step computes its own e from r; a chain without steps needs none
        ops.append(Hinge(e[0], a, a, seed.negated, bias=Fraction(1), domain=domain))
    eye = identity(width)
    for j in range(coupled):
        ops.append(Mul(step[j], chain[j], e[j], width, 1, 1))
        if j + 1 < coupled:
            ops.append(Mul(e[j + 1], e[j], e[j], 1, 1, 1))
        ops.append(Aff(chain[j + 1], ((chain[j], eye), (step[j], eye))))
    declared: list[tuple[int, Fraction]] = []
    if fresh:
        left = seed.eps0 ** (2 ** coupled)  # |1 - a r_(k-1)| in exact arithmetic
        fresh_slots, fresh_ops, fresh_bounds = _fresh_step(
            op, base, chain[-1], a, size, names, 2 * left + Fraction(1, 2 ** 20))
        declared = [(len(ops) + j, bound) for j, bound in fresh_bounds]
        slots += fresh_slots
        ops += fresh_ops
    elif not direct:
        ops.append(Mul(op.dst, op.num, chain[-1], size, 1, 1))
    return slots, ops, declared


def _fresh_step(op: Div, base: str, r: str, a: str, size: int, names: set[str],
                small: Fraction) -> tuple[list[Slot], list[Op], list[tuple[int, Fraction]]]:
    """``q = t + t (1 - p)``, ``t = n r`` and ``p = a r`` (``_division``): the Newton step
    ``r (2 - a r)`` taken afresh from ``r``, with the numerator's product inside it; and the
    declared bound ``|1 - p| <= small`` (the index among these ops)."""
    t, p, e, te = (_fresh(names, f"{base}_{name}") for name in ("t", "p", "ef", "te"))
    eye = identity(size)
    ops: list[Op] = [
        Mul(t, op.num, r, size, 1, 1),
        Mul(p, a, r, 1, 1, 1),
        Aff(e, ((p, ((Fraction(-1),),)),), bias=((Fraction(1),),)),
        Mul(te, t, e, size, 1, 1),
        Aff(op.dst, ((t, eye), (te, eye)))]
    declared = [(j, small) for j, fresh_op in enumerate(ops) if fresh_op.dst == e]
    return [Slot(t, size), Slot(p, 1), Slot(e, 1), Slot(te, size)], ops, declared

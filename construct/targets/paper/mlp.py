"""Lowering of a layer's MLP half: GeLU products (``mul``) and LayerNorm division (``div``).

The MLP sees ``z = LN(h)`` in models with LayerNorm (any program with a ``div``), else ``h``.
``read_scale`` turns a LayerNorm output back into the value it stands for: ``sigma_0`` when the
pads hold the scale fixed (``mul`` layers), ``N sqrt(2/L)`` in a ``div`` layer (giving
``value / |c|``), ``1`` without LayerNorm. Every unit's input weights sum to zero (the zero row
takes the balance), so LayerNorm's mean subtraction cancels exactly.

``mul`` (``left`` ``a x b`` times ``right`` ``b x c``; ``construct.compiler.gelu_products``),
with ``l_ik = eps_l L_ik``, ``r_kj = eps_r R_kj``, ``eps_l = eps / |L|max``,
``eps_r = eps / |R|max`` and ``kappa = sqrt(pi/2) / (eps_l eps_r)``:

- Lemma 4 with shared units: ``G(l_ik)``, ``G(r_kj)`` and ``G(l_ik + r_kj)``;
  ``out_ij = kappa sum_k [G(l_ik + r_kj) - G(l_ik) - G(r_kj)]``, width ``a b c + a b + b c``
  (the paper's ``4|t| + |w|`` per dot would be ``4 a b c + a c``);
- polarized: ``out_ij = (kappa / 4) sum_k [G(l_ik + r_kj) + G(-l_ik - r_kj) - G(l_ik - r_kj)
  - G(r_kj - l_ik)]``, width ``4 a b c``.

The ``richardson`` and ``polarized`` rules (``CompileConfig.gelu_product``) build their units
at ``eps`` and ``2 eps`` and weigh them ``4/3`` and ``-1/3``: the ``eps^2`` terms cancel
(twice the width).

``div`` and in-place old-value removal use the exact pass-through ``G(z) - G(-z) = z``.

A result goes wherever ``placements`` sends it: its own rows when it is materialised, and
``W`` times it into the rows of every affine map folded into this half (``construct.compiler.fusion``),
so a folded ``aff`` costs no unit.
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from construct.compiler import error_models as errors
from construct.compiler import gelu_products
from construct.targets.paper.layer_norm import LayerNormUse
from construct.compiler.analysis import Bounds
from construct.compiler.config import DTYPES, CompileConfig, GeluProduct, MlpTarget
from construct.compiler.layout import Layout
from construct.compiler.position_codes import point_read_leak
from construct.compiler.fusion import LinearForm
from construct.compiler import hinge_bounds
from construct.language.program import Div, Hinge, Mul, Program
from construct.compiler.schedule import Layer, Schedule
from construct.targets.gated.units import GatedUnits


# (sign of x, sign of y, sign of the output): G(x+y) + G(-x-y) - G(x-y) - G(y-x)
POLARIZED_UNITS = ((1, 1, 1), (-1, -1, 1), (1, -1, -1), (-1, 1, -1))


@dataclasses.dataclass(frozen=True)
class MLPHalf:
    w_in: np.ndarray  # [d_model, units]
    w_out: np.ndarray  # [units, d_model]
    errors: tuple[errors.ErrorModel, ...]
    w_gate: np.ndarray | None = None  # [d_model, units]: the gated target's


class _Units:
    def __init__(self, d_model: int, zero_row: int | None) -> None:
        self.d_model, self.zero_row = d_model, zero_row
        self.inputs: list[np.ndarray] = []
        self.outputs: list[np.ndarray] = []

    def add(self, *weights: tuple[int, float]) -> int:
        """A unit reading ``sum w * row`` (a row may appear twice: ``mul`` of a slot by itself)."""
        column = np.zeros(self.d_model)
        for row, w in weights:
            column[row] += w
        if self.zero_row is not None:
            column[self.zero_row] -= column.sum()
        self.inputs.append(column)
        self.outputs.append(np.zeros(self.d_model))
        return len(self.inputs) - 1

    def gelu_product(self, left: range, right: range, placement: np.ndarray,
                     shape: tuple[int, int, int], gain_l: float, gain_r: float,
                     kappa: float, rule: GeluProduct) -> None:
        """``h += placement.T @ vec(left @ right)`` with units ``G(l)``, ``G(r)`` shared across
        the product (``placement`` ``[a c, d_model]``: where each entry of the product goes),
        one set per pre-scale of the rule (``gelu_products.product_scales``)."""
        a, b, c = shape
        for s, weight in gelu_products.product_scales(rule):
            g_l, g_r = s * gain_l, s * gain_r
            if rule.polarized:
                for i, k, j in itertools.product(range(a), range(b), range(c)):
                    target = weight * kappa / (4 * s ** 2) * placement[i * c + j]
                    left_row, right_row = left[i * b + k], right[k * c + j]
                    # A square's x - y is an exact 0 and G(0) = 0: those units are dead.
                    square = left_row == right_row and g_l == g_r
                    for sign_l, sign_r, sign in POLARIZED_UNITS[:2 if square else 4]:
                        unit = self.add((left_row, sign_l * g_l), (right_row, sign_r * g_r))
                        self.outputs[unit] += sign * target
                continue
            left_units = {(i, k): self.add((left[i * b + k], g_l))
                          for i in range(a) for k in range(b)}
            right_units = {(k, j): self.add((right[k * c + j], g_r))
                           for k in range(b) for j in range(c)}
            for i, k, j in itertools.product(range(a), range(b), range(c)):
                target = weight * kappa / s ** 2 * placement[i * c + j]
                pair = self.add((left[i * b + k], g_l), (right[k * c + j], g_r))
                self.outputs[pair] += target
                self.outputs[left_units[i, k]] -= target
                self.outputs[right_units[k, j]] -= target

    def pass_through(self, row: int, read_scale: float, gain: float,
                     target: np.ndarray) -> None:
        """``h += target * value(row)`` via ``G(gain v) - G(-gain v) = gain v``."""
        plus = self.add((row, gain * read_scale))
        minus = self.add((row, -gain * read_scale))
        self.outputs[plus] += target / gain
        self.outputs[minus] -= target / gain


def placements(program: Program, schedule: Schedule, layer: Layer, forms: dict[int, LinearForm],
               layout: Layout) -> dict[int, np.ndarray]:
    """For each MLP op of the layer: ``[result size, d_model]``, where its result's entries go
    (its own rows if materialised, and through every affine map folded into this half)."""
    out = {i: np.zeros((program.slot_map[program.ops[i].dst].size, layout.d_model))
           for i in layer.mlp if i not in schedule.fused}
    for v in layer.mlp:
        dst = program.ops[v].dst
        if dst in schedule.virtual:
            continue
        rows = list(layout.rows(dst))
        for i, matrix in forms[v].products.items():
            out[i][:, rows] += matrix.T
    return out


def lower_mlp(program: Program, schedule: Schedule, layer_index: int,
              forms: dict[int, LinearForm], layout: Layout, bounds: Bounds,
              config: CompileConfig, ln_use: LayerNormUse | None, cleared: frozenset[int], energy: float,
              garbage: np.ndarray, pad_bound: float, first_writes: frozenset[int],
              mean_count: float = 0.0) -> MLPHalf:
    """``mean_count``: LayerNorm's mean is at most ``mean_count * u`` (zero-mean pads)."""
    layer = schedule.layers[layer_index]
    d_model = layout.d_model
    placement = placements(program, schedule, layer, forms, layout)
    uses_ln = ln_use is not None
    fixed_scale = uses_ln and not ln_use.divides
    gated = config.target is MlpTarget.GATED
    leak = point_read_leak(config.code, config.attn_hardness, config.n_ctx, "float32")
    models = []
    if fixed_scale:
        read_scale = math.sqrt(2 * config.ln_pad ** 2 / d_model + config.ln_eps)
        ln_rel = (errors.fixed_scale_ln_error(energy, config.ln_pad)
                  + errors.pad_leak_error(leak, pad_bound, config.ln_pad))
    elif uses_ln:
        read_scale = config.div_scale * math.sqrt(2 / d_model)
    else:
        read_scale = 1.0
    if not fixed_scale:
        ln_rel = 0.0
    mean_count = mean_count if uses_ln else 0.0
    # Pad rounding: the self head writes the pads afresh over whatever they held, up to
    # ``pad_bound`` (a div layer's ``N |c|``), so each pad is off by ``u pad_bound`` and
    # LayerNorm's scale by twice that over ``P``, in multiples of ``u`` (rawc fuzz found it in
    # float32 gated products after a division by a large divisor).
    pad_rounding = 2 * pad_bound / config.ln_pad if fixed_scale else 0.0
    zero_row = layout.fixed["ln_zero"] if uses_ln else None
    if not gated:
        units = _Units(d_model, zero_row)
    elif uses_ln:  # the pads' half-difference: P (fixed scale) or N c (division) in h
        pads = (layout.fixed["ln_pad_pos"], layout.fixed["ln_pad_neg"])
        units = GatedUnits(d_model, zero_row, ((pads[0], 0.5), (pads[1], -0.5)),
                           config.ln_pad / read_scale, pads)
    else:
        units = GatedUnits(d_model, None, ((layout.fixed["one"], 1.0),), 1.0)
    for i in (j for j in layer.mlp if j not in schedule.fused):
        op = program.ops[i]
        before = bounds.before[i]
        virtual = op.dst in schedule.virtual
        dst_rows = range(0) if virtual else layout.rows(op.dst)
        old = 0.0 if virtual else float(max(
            (garbage[row] for row in layout.rows_to_clear(op.dst, i in first_writes)),
            default=0.0))
        result = bounds.of_op_result(i, program)
        if isinstance(op, Mul) and gated:
            left_bound = before[op.left] or 1.0
            right_bound = before[op.right] or 1.0
            # Any gains give the exact product; through LayerNorm these keep W_gate, W_in and
            # W_out of one size (read_scale^(2/3) each, up to the bounds); without it gains of
            # 1 leave W_out the placement itself (the folded affine maps' coefficients).
            balance = read_scale ** (-1 / 3)
            gains = ((balance / left_bound, balance / right_bound) if uses_ln else (1.0, 1.0))
            units.product(layout.rows(op.left), layout.rows(op.right), placement[i],
                          (op.a, op.b, op.c), *gains, read_scale)
            product = op.b * left_bound * right_bound
            relative = product * (2 * ln_rel + ln_rel ** 2)
            unit_rounding = errors.gated_product_rounding(op.b, left_bound, right_bound)
            approx = relative
            rounding = unit_rounding + (d_model + 8 + pad_rounding) * 2 * product * uses_ln
            reads = ((op.left, left_bound), (op.right, right_bound))
            operand_shift, mean_shift = (
                errors.gated_shift_rounding(op.b, left_bound, right_bound, mean_count)
                if uses_ln else (errors.per_dtype(0.0), errors.per_dtype(0.0)))
            shift = {dtype: operand_shift[dtype] + mean_shift[dtype] for dtype in DTYPES}
            scaled = (errors.ScaledPart({dtype: relative for dtype in DTYPES}, 2, bilinear=True),
                      errors.ScaledPart(errors.per_dtype(unit_rounding), 2, bilinear=True),
                      errors.ScaledPart(operand_shift, 2, bilinear=True))
            private = (errors.ScaledPart(errors.per_dtype(unit_rounding), 2, bilinear=True),)
            mechanism = "exact gated product" + (" through fixed-scale LayerNorm"
                                                  if uses_ln else "")
        elif isinstance(op, Mul):
            left_bound = before[op.left] or 1.0
            right_bound = before[op.right] or 1.0
            eps_l, eps_r = config.mul_scale / left_bound, config.mul_scale / right_bound
            units.gelu_product(layout.rows(op.left), layout.rows(op.right), placement[i],
                               (op.a, op.b, op.c), eps_l * read_scale, eps_r * read_scale,
                               math.sqrt(math.pi / 2) / (eps_l * eps_r), config.gelu_product)
            product = op.b * left_bound * right_bound
            remainder = gelu_products.gelu_product_error(op.b, left_bound, right_bound,
                                                         config.mul_scale, config.gelu_product)
            relative = product * (2 * ln_rel + ln_rel ** 2)
            unit_rounding = gelu_products.gelu_product_rounding(
                op.b, left_bound, right_bound, config.mul_scale, config.gelu_product)
            approx = remainder + relative
            rounding = unit_rounding + (d_model + 8 + pad_rounding) * 2 * product * uses_ln
            reads = ((op.left, left_bound), (op.right, right_bound))
            scaled = (errors.ScaledPart({dtype: remainder for dtype in DTYPES},
                                        gelu_products.remainder_power(config.gelu_product),
                                        bilinear=True),
                      errors.ScaledPart({dtype: relative for dtype in DTYPES}, 2, bilinear=True),
                      errors.ScaledPart(errors.per_dtype(unit_rounding), 1))
            private = (errors.ScaledPart(errors.per_dtype(unit_rounding), 1),)
            operand_shift, mean_shift = (
                errors.layernorm_shift_rounding(op.b, left_bound, right_bound,
                                                config.mul_scale, mean_count,
                                                config.gelu_product)
                if uses_ln else (errors.per_dtype(0.0), errors.per_dtype(0.0)))
            shift = {dtype: operand_shift[dtype] + mean_shift[dtype] for dtype in DTYPES}
            # LayerNorm's mean-shift rounding is kappa times input errors 4u(|a| + |mu|): the
            # |a| part is linear in the magnitudes read (s <= 1 by the analysis bounds); the
            # |mu| part is set by the pads and stays whatever the operands are (a product of
            # zeros still reads a - mu: rawc fuzz found it under an a-posteriori bound).
            scaled += (errors.ScaledPart(operand_shift, 1),)
            mechanism = "GeLU product" + (" through fixed-scale LayerNorm" if uses_ln else "")
        elif isinstance(op, Hinge):
            if not gated or uses_ln:
                raise TypeError(f"op {i + 1} (hinge): only the gated target without LayerNorm "
                                "lowers hinges")
            value_bound = 1.0 if op.value is None else before[op.value]
            terms = tuple((float(w), float(s), float(o)) for w, s, o in op.terms)
            units.hinge(layout.rows(op.src)[0],
                        None if op.value is None else layout.rows(op.value), terms,
                        float(op.bias), placement[i])
            count = hinge_bounds.rounding_count(op, before[op.src], value_bound)
            approx = op.truncation * result
            rounding = count
            shift = errors.per_dtype(0.0)
            reads, scaled, divisor = (), (), None
            if op.value not in (None, op.src):  # both parts scale with the value read
                reads = ((op.value, value_bound),)
                falls = int(hinge_bounds.falls_with_input(op))  # and the seed's like 1 / x
                divisor = (op.src, float(op.domain[0])) if falls else None
                scaled = (errors.ScaledPart({dtype: approx for dtype in DTYPES}, 1),
                          errors.ScaledPart(errors.per_dtype(count), 1, 0, falls))
            private = scaled[1:]
            mechanism = "gated hinge" + (" (division seed)" if op.truncation else "")
        elif isinstance(op, Div):
            divisor = (op.den, float(op.min_abs))
            gain = float(op.min_abs) / (before[op.num] or 1.0)
            for r, row in enumerate(layout.rows(op.num)):
                if gated:  # n N |c| / s^2 = (n / |c|) L / (2 N), up to Lemma 8's error
                    units.divide(row, 2 * config.div_scale / d_model, placement[i][r])
                else:
                    units.pass_through(row, read_scale, gain, placement[i][r])
            relative = errors.division_error(energy, d_model, config.ln_eps, config.div_scale,
                                             float(op.min_abs))
            relative += 2 * leak * (pad_bound + config.div_scale * before[op.den]) / (
                config.div_scale * float(op.min_abs))
            approx = relative * result
            per_result = d_model + 12 + (d_model + 4) * gated
            pads = 2 * pad_bound / (config.div_scale * float(op.min_abs)) * result
            num_part = 4 * before[op.num] / float(op.min_abs)
            rounding = per_result * result + num_part + pads
            shift = errors.layernorm_shift_pass_through(mean_count, 1 / float(op.min_abs))
            # Above the floor the parts shrink (``ScaledPart``): Lemma 8's relative error like
            # ``(m / |c|)^2`` (and its leak term like ``m / |c|``: ``t``, as ``t <= 1``), the
            # rounding of a result like the result, the numerator's like ``|n| / |c|``. The
            # pads are written afresh to +-N c over what they held (up to pad_bound): off by
            # u pad_bound, so LayerNorm's scale is off by that over N m (rawc fuzz, float32).
            # Gated: two LayerNorm outputs multiplied, sigma's rounding enters squared.
            reads = ((op.num, before[op.num]),)
            scaled = (errors.ScaledPart({dtype: approx for dtype in DTYPES}, 0, 1, 1),
                      errors.ScaledPart(errors.per_dtype(per_result * result), 0, 1),
                      errors.ScaledPart(errors.per_dtype(num_part), 1, 0, 1),
                      errors.ScaledPart(errors.per_dtype(pads), 0, 1, 1))
            private = scaled[1:]  # Lemma 8's relative error: one sigma for every row
            mechanism = "LayerNorm division" + (" (gated)" if gated else "")
        else:
            raise TypeError(f"op {i + 1} is not an MLP op")
        # What follows is this row's alone (``ErrorModel.unshared``): the clearing of its old
        # value; of what came before, a product's unit rounding (its W_out sum) is too.
        approx_before, rounding_before = approx, rounding
        if i in cleared:
            approx += 2 * leak * old
            rounding += errors.attention_rounding(0, old)
        elif uses_ln and not fixed_scale:
            raise ValueError(
                f"op {i + 1} (div -> {op.dst}): a div's destination must not be read or written "
                "by another op of its layer (its MLP sees values divided by |den|)")
        else:
            scale = ln_rel if fixed_scale else 0.0
            for row in dst_rows:
                remove = np.zeros(d_model)
                remove[row] = -1.0
                units.pass_through(row, read_scale, 1.0 / (old or 1.0), remove)
            approx += scale * old
            rounding += 8 * old + (d_model + 8 + pad_rounding) * old * uses_ln
            removal = errors.layernorm_shift_pass_through(mean_count)
            shift = {dtype: shift[dtype] + removal[dtype] for dtype in shift}
        total_rounding = {dtype: value + shift[dtype]
                          for dtype, value in errors.per_dtype(rounding).items()}
        clearing = errors.per_dtype(rounding - rounding_before)
        # A quotient's rounding is each row's (pass-through units, W_out); a product's rows
        # share all but the unit rounding and the clearing.
        row_rounding = total_rounding if isinstance(op, (Div, Hinge)) else {
            dtype: clearing[dtype] + sum(part.value[dtype] for part in private)
            for dtype in DTYPES}
        unshared = {dtype: approx - approx_before + row_rounding[dtype] for dtype in DTYPES}
        models.append(errors.ErrorModel(
            i, mechanism, approx, total_rounding, reads, scaled,
            result_bound=result,
            divisor=divisor if isinstance(op, (Div, Hinge)) else None,
            unshared=unshared, unshared_scaled=private))
    if not units.inputs:
        return MLPHalf(np.zeros((d_model, 0)), np.zeros((0, d_model)), tuple(models),
                       np.zeros((d_model, 0)) if gated else None)
    return MLPHalf(np.stack(units.inputs, axis=1), np.stack(units.outputs, axis=0),
                   tuple(models), np.stack(units.gates, axis=1) if gated else None)

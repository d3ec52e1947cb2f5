"""The compiled model against the interpreter inside every layer: each op on the model's own
inputs (its own error model), and each live slot after the layer (the propagated bound).

Both checks read one layer's residuals (``construct.model.transformer.LayerStep``) and keep
only running statistics (``verify.check.stats``), so a verification streams layer by layer.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from construct.compiler.fusion import folded_inputs
from construct.compiler.error_models import layernorm_energy
from construct.targets.paper.layer_norm import LayerNormRole, layer_norm_use
from construct.compiler.propagate import clearing_factor, propagated_bounds, representable
from construct.language import interpreter
from construct.language.program import Div
from construct.model.assemble import CompiledModel
from construct.model.transformer import LayerStep, decode
from verify.check.stats import ErrorStat


def slot_references(compiled: CompiledModel) -> tuple[dict[str, int], ...]:
    """Per layer, each slot live after it and the op whose result it then holds (-1: the
    input)."""
    program, schedule = compiled.program, compiled.schedule
    inputs = (program.x_slot, program.y_slot, *(name for name, _ in program.prior))
    latest: dict[str, int] = {name: -1 for name in inputs}
    by_layer: dict[int, list[int]] = {}
    for i in range(len(program.ops)):
        by_layer.setdefault(schedule.layer_of(i), []).append(i)
    out = []
    for layer in range(schedule.n_layers):
        for i in by_layer.get(layer, ()):
            latest[program.ops[i].dst] = max(latest.get(program.ops[i].dst, -1), i)
        out.append({name: writer for name, writer in latest.items()
                    if name in compiled.layout.slots
                    and compiled.layout.live_after_layer(name, layer)})
    return tuple(out)


def rolled_index(compiled: CompiledModel, index: int) -> int:
    """The op of the program as written that unrolled op ``index`` is an iteration of."""
    loop = compiled.rolled_program.loop
    return index if loop is None else loop.rolled(index)


@dataclasses.dataclass(frozen=True)
class LocalBound:
    """What op ``i`` is held to on the model's own inputs (``check_ops_in_layer``).

    ``own``: its error model, written at the magnitudes ``M`` its reads have exactly. The rows
    it reads hold what the model made of them, up to ``s M`` with ``s`` observed on the batch;
    every part of a model grows at most like the fourth power of its reads' magnitudes (the
    GeLU product's remainder ``1.5 b eps^2 A B`` with ``eps`` fixed by ``A``), so the op's own
    error at what it reads is at most ``own * s^4``. Where that is vacuous (a read that is
    exactly zero, ``aff s * 0``, whose rows still hold an earlier clear's leak) ``fallback``
    holds: the whole propagated error of the result plus its inherited part again
    (``|op(read) - op(exact)|`` is what propagation charges for the inputs' errors).
    Clearing the op's rows leaves ``clearing_factor`` times what they held
    (``construct.compiler.propagate``): ``own`` charges their exact-value bound, the check adds
    the factor times the magnitude the rows actually hold (``cleared_magnitude``), which
    covers an earlier error sitting there however large.
    ``folded``: ``(j, |W_t|_inf)`` for an affine map folded into the layer, held also to
    ``|W_t|_inf`` times the bound of each folded input ``j``."""

    own: float
    fallback: float
    folded: tuple[tuple[int, float], ...]
    earlier_unbounded: bool = False  # an a-priori error before the op is infinite

    def at_growth(self, growth: float) -> float:
        """The own part where the reads reach ``growth`` times their declared magnitudes."""
        if growth <= 1.0:
            return self.own
        at_reads = self.own * growth ** 4 if growth < 1e75 else math.inf  # no float overflow
        return min(at_reads, max(self.own, self.fallback))


def local_bounds(compiled: CompiledModel, dtype: str) -> tuple[LocalBound, ...]:
    program = compiled.program
    propagated = propagated_bounds(compiled, dtype)
    in_range = representable(compiled, dtype)
    out = []
    for i, op in enumerate(program.ops):
        own = compiled.errors[i].total(dtype) if in_range else float("inf")
        earlier = propagated[i - 1].values() if i > 0 else ()
        out.append(LocalBound(own, 2 * propagated[i][op.dst] - own,
                              tuple(folded_inputs(program, compiled.schedule, i)),
                              not all(math.isfinite(e) for e in earlier)))
    return tuple(out)


PAD_TOLERANCE = 1e-3  # relative: far above any pad rounding the error models charge


def pad_deviation(compiled: CompiledModel, step: LayerStep) -> float:
    """How far a fixed-scale layer's LayerNorm pads sit from ``+-P`` in this batch, relative
    to ``P`` (0 for a layer without that LayerNorm)."""
    use = layer_norm_use(compiled.program, compiled.schedule, step.layer)
    if use is None or use.role is not LayerNormRole.FIXED_SCALE:
        return 0.0
    pad, rows = compiled.config.ln_pad, compiled.layout.fixed
    held = step.middle[..., [rows["ln_pad_pos"], rows["ln_pad_neg"]]].double()
    return float(torch.maximum((held[..., 0] - pad).abs(), (held[..., 1] + pad).abs()).max()
                 / pad)


def residual_energy(compiled: CompiledModel, residual: torch.Tensor) -> float:
    """The largest LayerNorm energy over the columns of ``residual`` (``layernorm_energy``, as
    ``construct.model.assemble`` declares it from the row bounds)."""
    pads = compiled.layout.ln_pad_rows
    keep = [r for r in range(residual.shape[-1]) if r not in pads]
    return float(layernorm_energy(residual[..., keep].double()).max())


def read_growth(compiled: CompiledModel, index: int, state: dict[str, torch.Tensor]) -> float:
    """``max |read| / M`` over the op's reads as the model holds them (``inf``: a read whose
    exact value is 0 holds something else); for a ``div`` also ``m / min |den|`` when the
    model's divisor dips below the floor ``m`` (the quotient grows like ``m / |den|`` and the
    LayerNorm division's error like its square; ``inf`` at 0)."""
    growth = 1.0
    op = compiled.program.ops[index]
    if isinstance(op, Div):
        smallest = float(state[op.den].abs().min())
        floor = float(op.min_abs)
        if smallest < floor:
            growth = floor / smallest if smallest > 0 else math.inf
    for name in op.reads:
        magnitude = compiled.bounds.before[index][name]
        observed = float(state[name].abs().max())
        if magnitude > 0:
            growth = max(growth, observed / magnitude)
        elif observed > 0:
            return math.inf
    return growth


def cleared_magnitude(compiled: CompiledModel, index: int, step: LayerStep) -> float:
    """The largest value the rows op ``index`` clears hold in this batch before the clear
    (an MLP op's rows may be cleared by the attention half or by the MLP itself)."""
    rows = list(compiled.cleared_rows(index))
    if not rows:
        return 0.0
    held = step.start[..., rows].abs().max()
    if compiled.schedule.in_mlp_half(index):
        held = torch.maximum(held, step.middle[..., rows].abs().max())
    return float(held)


def check_ops_in_layer(compiled: CompiledModel, step: LayerStep, kinds: tuple[str, ...],
                       bounds: tuple[LocalBound, ...], stats: dict[int, ErrorStat],
                       cleared: dict[int, float]) -> None:
    """Every op of the layer against the interpreter applied to the compiled model's own
    input state.

    This isolates each lowered op's error from the errors it inherits: the bound is the op's
    own error model, so it stays tight however deep the program (the propagated bounds of
    long recursions such as stacked Sherman–Morrison may be vacuous). An affine map folded
    into its layer takes the values it folds from the interpreter, run on the state before
    the layer, and is held to its own bound plus theirs (``bounds``: ``local_bounds``, taken at
    the magnitudes this batch's reads have, plus ``clearing_factor`` times what its cleared rows
    held). ``cleared``: filled with that magnitude per op, for the a-posteriori bounds."""
    program, layout, schedule = compiled.program, compiled.layout, compiled.schedule
    layer = schedule.layers[step.layer]
    in_layer: dict[str, torch.Tensor] = {}
    held: dict[int, float] = {}  # each op's bound on this batch
    limit = float(torch.finfo(step.start.dtype).max) / 16
    finite_start, finite_middle = (bool(torch.isfinite(r).all()) for r in (step.start, step.middle))
    # LayerNorm squares what its MLP half reads: past the dtype's range at the magnitudes the
    # model really holds there (grown beyond the analysis' bounds by earlier errors), the
    # MLP's ops have no bound (``construct.compiler.propagate.representable`` a priori).
    # LayerNorm's relative error grows with the energy of every row it reads (Lemma 6: E / 2P^2),
    # not only the op's reads: where earlier errors grew other rows past their bounds, the MLP
    # ops' models hold at that growth (rawc fuzz: a float32 gated product 5x over its bound).
    energy_growth, pads_off = 1.0, 0.0
    if any(schedule.in_mlp_half(i) for i in (*layer.attn, *layer.mlp)):
        squares = float(step.middle.abs().max()) ** 2 * step.middle.shape[-1]
        finite_middle = finite_middle and squares < limit
        if compiled.residual_energy > 0:
            energy_growth = math.sqrt(residual_energy(compiled, step.middle)
                                      / compiled.residual_energy)
        pads_off = pad_deviation(compiled, step)
    factor = clearing_factor(compiled.config, str(step.start.dtype).removeprefix("torch."))
    for i in sorted((*layer.attn, *layer.mlp)):
        op = program.ops[i]
        fused, in_mlp = i in schedule.fused, schedule.in_mlp_half(i)
        state = {}
        for name in op.reads:
            if fused and name in in_layer:
                state[name] = in_layer[name]
            else:
                # A div's divisor sets its LayerNorm scale from the attention half's input (the
                # same half may then clear those rows, when the quotient overwrites it).
                divisor = isinstance(op, Div) and name == op.den
                residual = step.middle if in_mlp and not fused and not divisor else step.start
                state[name] = decode(residual, layout.rows(name)).double()
        size = program.slot_map[op.dst].size
        state.setdefault(op.dst, torch.zeros(step.start.shape[:-1] + (size,),
                                             dtype=torch.float64, device=step.start.device))
        exact = interpreter.apply_op(op, state, kinds)
        in_layer[op.dst] = exact
        local = bounds[i]
        cleared[i] = cleared_magnitude(compiled, i, step)
        growth = read_growth(compiled, i, state)
        if in_mlp and not fused:
            growth = max(growth, energy_growth)
        held[i] = local.at_growth(growth) + factor * cleared[i] + sum(
            weight * held.get(j, bounds[j].own) for j, weight in local.folded if weight)
        if in_mlp and local.earlier_unbounded and pads_off > PAD_TOLERANCE:
            # The fixed-scale LayerNorm's pads were rewritten over an earlier divisor's pads
            # holding an unbounded error: its scale is off (rawc fuzz: float32 pads at 2^24
            # for 1e7, a gated product 1e14 off); the models assume it exact but for rounding.
            held[i] = math.inf
        if not finite_start or (in_mlp and not finite_middle):
            # An earlier overflow (caught by its own op's check where that op had a finite
            # bound) leaves inf or NaN in some row, and every head and unit multiplies every
            # row, ``0 * inf = NaN``: no op of the layer is bounded on such a state; nor an MLP
            # op whose LayerNorm squares past the range.
            held[i] = math.inf
        if op.dst in schedule.virtual:
            continue
        key = rolled_index(compiled, i)
        if key not in stats:
            source = compiled.rolled_program.ops[key]
            stats[key] = ErrorStat(f"op {key + 1} {type(source).__name__.lower()} -> "
                                   f"{source.dst} (own error)", 0.0)
        # NaN (inf times a zero) must never shrink a bound: max(0.0, nan) is 0.0; and a
        # bound past the model dtype's range says nothing (its values overflow there)
        bound = held[i] if held[i] < limit else float("inf")
        stats[key].bound = max(stats[key].bound, bound)
        after = step.end if in_mlp else step.middle
        stats[key].update(decode(after, layout.rows(op.dst)), exact)

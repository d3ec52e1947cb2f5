"""Assembly: run every pass and collect the weights of one transformer.

``compile_program(program, config)`` is the compiler's entry point. Its result keeps every
pass output (schedule, layout, bounds, error models) beside the weights, so each stage can be
inspected. Weights use TransformerLens names and shapes (``x @ W``); see ``DESIGN.md``.
"""
from __future__ import annotations

import dataclasses
import functools
import sys

import numpy as np
from tqdm import tqdm

from construct.compiler import analysis

from construct.compiler import error_models as errors
from construct.compiler.config import DTYPES, CompileConfig, MlpTarget, PositionCode
from construct.compiler.layout import Layout, allocate
from construct.compiler.position_codes import position_rows
from construct.compiler.fusion import SELF, layer_forms
from construct.compiler.intervals import check_constants, check_magnitudes, resolve_divisors
from construct.compiler.newton_division import expand_divisions
from construct.compiler.propagate import end_to_end_bound
from construct.compiler.refusal import CompileRefusal, Refusal
from construct.targets.paper.attention import AttentionHalf, affine_size, lower_attention, row_bounds
from construct.targets.paper.mlp import lower_mlp
from construct.targets.architecture import Activation, ModelShape
from construct.targets.paper.layer_norm import LayerNormUse, layer_norm_use
from construct.targets.paper.positions import position_table
from construct.language.program import Div, Program
from construct.compiler.schedule import Schedule, build_schedule


@dataclasses.dataclass(frozen=True)
class CompiledModel:
    """Every pass output beside the weights. ``program`` is what was compiled (its loop
    unrolled: op indices count every iteration); ``source`` is the program as written;
    ``listing``: it is a named algorithm's paper listing (``rawc compile --listing``), which
    the checkpoint records because nothing else in it says so."""

    program: Program
    config: CompileConfig
    schedule: Schedule
    layout: Layout
    bounds: analysis.Bounds
    errors: tuple[errors.ErrorModel, ...]  # one per op, program order
    shape: ModelShape
    weights: dict[str, np.ndarray]
    source: Program | None = None
    listing: bool = False
    # the rolled program as lowered: ``source`` with the gated target's divisions expanded
    # (``construct.compiler.newton_division``); its loop is the one ``program`` unrolls
    lowered: Program | None = None
    # ``E``, the declared energy of what LayerNorm reads besides its pads (every LayerNorm
    # error model rests on it; ``rawc verify`` scales those by the energy a task really has)
    residual_energy: float = 0.0

    @property
    def source_program(self) -> Program:
        return self.source or self.program

    @property
    def rolled_program(self) -> Program:
        return self.lowered or self.source_program

    @property
    def name(self) -> str:
        return self.program.name

    # The checkpoint's sections (``construct.model.checkpoint.Checkpointable``).
    def program_text(self) -> str:
        return self.source_program.text()

    def layout_json(self) -> dict[str, object]:
        return self.layout.to_json()

    def bounds_json(self) -> dict[str, object]:
        """Declared input bound, constants, one error model per op, and the propagated
        end-to-end bound on the prediction per dtype."""
        return {"input_bound": self.config.input_bound, "constants": self.config.to_dict(),
                "ops": [model.to_json() for model in self.errors],
                "predicted": {dtype: float(end_to_end_bound(self, dtype)) for dtype in DTYPES}}

    def compile_json(self) -> dict[str, object]:
        """The compile choices besides the algorithm's parameters that shaped the weights
        (``rawc.algorithm["compile"]``): all of them are in ``config`` but ``listing``."""
        c = self.config
        return {"form": c.form, "schedule": c.schedule, "target": c.target.value,
                "gelu_product": c.gelu_product.value, "listing": self.listing,
                "constants_dtype": c.dtype, "input_bound": c.input_bound, "n_ctx": c.n_ctx}

    @property
    def n_params(self) -> int:
        return int(sum(w.size for w in self.weights.values()))

    @property
    def n_nonzero_params(self) -> int:
        """Entries that are not zero: the uniform ``d_head`` of the format pads most heads."""
        return int(sum(np.count_nonzero(w) for w in self.weights.values()))

    @functools.cached_property
    def first_writes(self) -> frozenset[int]:
        shared = self.rolled_program.loop is not None and self.config.form == "shared"
        return first_writes(self.program, self.rolled_program if shared else None)

    def cleared_rows(self, index: int) -> tuple[int, ...]:
        """Rows op ``index``'s write must clear of an old value (none on unused rows)."""
        dst = self.program.ops[index].dst
        if dst in self.schedule.virtual:
            return ()
        return self.layout.rows_to_clear(dst, index in self.first_writes)

    def layer_norm_use(self, layer: int) -> LayerNormUse | None:
        """What the LayerNorm before ``layer``'s MLP does (``None``: nothing)."""
        return layer_norm_use(self.program, self.schedule, layer)

    def op_bound(self, index: int, dtype: str) -> float:
        return self.errors[index].total(dtype)


def _loop_barriers(source: Program, config: CompileConfig) -> frozenset[int]:
    loop = source.loop
    if loop is None or config.form != "shared":
        return frozenset()
    return frozenset(loop.start + j * loop.length for j in range(loop.times + 1))


def compile_program(program: Program, config: CompileConfig | None = None) -> CompiledModel:
    """Run every pass. A loop is unrolled; in the ``shared`` form each iteration starts a
    fresh layer (so all get one relative schedule) and scales its products by the worst
    iteration's bounds, so the iterations lower to identical layers, stored once."""
    config = config or CompileConfig()
    config = config.replace(position_code=config.code)  # fixed for good: the record says it
    if not program.ops:
        raise CompileRefusal(Refusal.NO_OPERATIONS,
                             f"program {program.name!r} has no operations: a checkpoint needs at "
                             "least one layer (give it an op, e.g. `o = mov x prev`)")
    check_constants(program)
    gated = config.target is MlpTarget.GATED
    written, lowered = program, resolve_divisors(program, config.input_bound)
    if gated:
        lowered = expand_divisions(lowered, config)
    source, program = lowered, lowered.unrolled()
    shared = source.loop is not None and config.form == "shared"
    schedule = build_schedule(program, config.schedule, _loop_barriers(source, config))
    bounds = analysis.magnitude_bounds(program, config.input_bound)
    # the gated target's products are exact: what rows held before is what float32 loses
    layout = allocate(program, schedule, position_rows(config.code, config.n_ctx, program),
                      bounds.overall if gated else None)
    check_magnitudes(program, bounds.results)
    if shared:
        loop = source.loop
        bounds = bounds.uniform_over_loop(loop.start, loop.length, loop.times)
    held = row_bounds(program, layout, bounds)  # what a row holds from layer to layer
    during = held.copy()  # also mid-layer: a folded aff's ready terms before the MLP adds
    for i in schedule.fused:
        if program.ops[i].dst in layout.slots:
            rows = layout.rows(program.ops[i].dst)
            during[rows.start:rows.stop] = np.maximum(
                during[rows.start:rows.stop], affine_size(program.ops[i], bounds.before[i])[0])
    rest = np.delete(during, layout.ln_pad_rows)
    row_sum = float(np.sum(rest))
    energy = float(errors.layernorm_energy(rest))
    den_bounds = [bounds.before[i][op.den] for i, op in enumerate(program.ops)
                  if isinstance(op, Div)]
    pad_bound = max([config.ln_pad] + [config.div_scale * b for b in den_bounds]) + row_sum / 2
    first = first_writes(program, source if shared else None)
    ln_uses = [layer_norm_use(program, schedule, index) for index in range(schedule.n_layers)]
    attn_halves, mlp_halves, models = [], [], {}
    lowering = tqdm(enumerate(ln_uses), total=len(ln_uses), desc="compile: lowering", unit="layer",
                    file=sys.stderr, leave=False, delay=2.0)
    for index, ln_use in lowering:
        forms = layer_forms(program, schedule, layout, index)
        attn = lower_attention(program, schedule, index, forms, layout, bounds, config, ln_use,
                               first, held)
        mlp = lower_mlp(program, schedule, index, forms, layout, bounds, config, ln_use,
                        attn.cleared, energy, held, pad_bound, first,
                        errors.pad_mean_count(layout.d_model, attn.value_terms, pad_bound))
        attn_halves.append(attn)
        mlp_halves.append(mlp)
        models.update({m.op_index: m for m in (*attn.errors, *mlp.errors)})
        models.update(_beside_units(models, forms, schedule, index))
    shape = ModelShape(
        d_model=layout.d_model, n_layers=schedule.n_layers,
        n_heads=max([1] + [len(a.heads) for a in attn_halves]),
        d_head=max([2] + [max(h.w_v.shape[1], h.w_q.shape[1])
                          for a in attn_halves for h in a.heads]),
        d_mlp=max([1] + [m.w_in.shape[1] for m in mlp_halves]),
        n_ctx=config.n_ctx, d_in=program.d + 1, d_out=1,
        act_fn=Activation.RELU if gated else Activation.GELU, gated_mlp=gated, ln1=False,
        ln2=schedule.uses_layernorm, ln_eps=config.ln_eps, prior_column=program.prior_column)
    weights = _weights(program, layout, shape, attn_halves, mlp_halves, config.code)
    for index, ln_use in enumerate(ln_uses):
        if ln_use is not None:
            _balance_pads(weights, layout, index, attn_halves[index])
    if shared:
        shape, weights = _share_loop(source, schedule, shape, weights)
    ordered = tuple(models[i] for i in range(len(program.ops)))
    return CompiledModel(program, config, schedule, layout, bounds, ordered, shape, weights,
                         written, residual_energy=energy, lowered=source)


def _beside_units(models: dict[int, errors.ErrorModel], forms, schedule: Schedule,
                  layer: int) -> dict[int, errors.ErrorModel]:
    """Error models of the affine maps folded beside this layer's MLP ops.

    An aff ``P r_j + ...`` folded into the MLP gets its own ``W_out`` rows, ``P`` times op
    ``j``'s. Both read the same units, so the approximation they share moves them together,
    as the interpreter's ``aff`` of op ``j``'s (erroneous) value assumes; but each row rounds
    its own sum and ``j``'s row alone carries what clearing it left. Against the program run
    on the model's own values, the aff is off by ``|P| (e_j' + e_j)``, ``e`` op ``j``'s
    unshared part (``rawc fuzz`` found an a-posteriori bound exceeded 1.6-fold where two such
    rows' roundings did not cancel through ``mul / (3/2 mul + 1/4)``).
    A product's unit rounding keeps its scaling with the magnitudes the product reads
    (``ScaledPart``; the map then scales by the largest ratio of any product it folds)."""
    out = {}
    for i in (*schedule.layers[layer].attn, *schedule.layers[layer].mlp):
        if i not in schedule.fused or not forms[i].products:
            continue
        extra = {dtype: 0.0 for dtype in DTYPES}
        reads: dict[str, float] = {}
        scaled: list[errors.ScaledPart] = []
        for j, matrix in forms[i].products.items():
            weight = 2 * float(np.abs(matrix).sum(-1).max())
            folded = models[j]
            movable = [part for part in folded.unshared_scaled
                       if not part.result_power and not part.divisor_power]
            for dtype in DTYPES:
                extra[dtype] += weight * folded.unshared_part(dtype)
            # (a bilinear part takes s^power here: the map's reads are every folded
            # product's, no longer one pair)
            scaled += [dataclasses.replace(part, value={dtype: weight * part.value[dtype]
                                                        for dtype in DTYPES}, bilinear=False)
                       for part in movable]
            for name, bound in folded.reads:
                reads[name] = max(reads.get(name, 0.0), bound)
        model = models[i]
        out[i] = dataclasses.replace(
            model, rounding={dtype: model.rounding[dtype] + extra[dtype] for dtype in DTYPES},
            reads=tuple(reads.items()) if scaled else model.reads, scaled=tuple(scaled))
    return out


def first_writes(program: Program, looped: Program | None) -> frozenset[int]:
    """Ops that write their slot for the first time: they clear only its reused rows.

    In the weight-shared form no op of the loop counts: every iteration must lower alike."""
    loop = looped.loop if looped is not None else None
    body = range(loop.start, loop.start + loop.times * loop.length) if loop else range(0)
    seen: set[str] = set()
    out = set()
    for i, op in enumerate(program.ops):
        if op.dst not in seen and i not in body:
            out.add(i)
        seen.add(op.dst)
    return frozenset(out)


def _share_loop(source: Program, schedule: Schedule, shape: ModelShape,
                weights: dict[str, np.ndarray]) -> tuple[ModelShape, dict[str, np.ndarray]]:
    """Keep one copy of the loop's layers; refuse if the iterations' weights differ."""
    loop = source.loop
    first = schedule.layer_of(loop.start)
    length = max(schedule.layer_of(i) for i in range(loop.start, loop.stop)) - first + 1
    total = schedule.n_layers
    starts = [schedule.layer_of(loop.start + j * loop.length) for j in range(loop.times)]
    if starts != [first + j * length for j in range(loop.times)]:
        raise CompileRefusal(Refusal.LOOP_NOT_UNIFORM,
                             f"loop iterations start at layers {starts}, not every {length}")
    for j in range(1, loop.times):
        for offset in range(length):
            a, b = f"blocks.{first + offset}.", f"blocks.{first + j * length + offset}."
            for name in (k for k in weights if k.startswith(a)):
                if not np.array_equal(weights[name], weights[b + name[len(a):]]):
                    raise CompileRefusal(Refusal.LOOP_NOT_UNIFORM,
                                         f"loop iteration {j + 1} does not lower to the same "
                                     f"weights as the first ({b + name[len(a):]})")
    keep = list(range(first + length)) + list(range(first + loop.times * length, total))
    renamed = {f"blocks.{old}.": f"blocks.{new}." for new, old in enumerate(keep)}
    out = {}
    for name, value in weights.items():
        if not name.startswith("blocks."):
            out[name] = value
            continue
        prefix = ".".join(name.split(".")[:2]) + "."
        if prefix in renamed:
            out[renamed[prefix] + name[len(prefix):]] = value
    shape = dataclasses.replace(shape, n_layers=len(keep), loop=(first, length, loop.times))
    return shape, out


def _balance_pads(weights: dict[str, np.ndarray], layout: Layout, layer: int,
                  attn: AttentionHalf) -> None:
    """Make the residual LayerNorm sees sum to zero (``construct.compiler.error_models``, *zero-mean pads*).

    The self head sets each pad afresh; it also subtracts half the sum ``S`` of the other
    rows before the half, and every head (and ``b_O``) subtracts half the sum of what it
    writes to the other rows, so after the half ``pad_± = ±P - S'/2`` with ``S'`` the sum
    of the other rows then: every row sums to zero and LayerNorm's mean is zero up to
    rounding, whatever garbage the rows hold."""
    p = f"blocks.{layer}.attn."
    pads = [layout.fixed["ln_pad_pos"], layout.fixed["ln_pad_neg"]]
    others = np.ones(layout.d_model, dtype=bool)
    others[pads] = False
    w_o, b_o, w_v = weights[p + "W_O"], weights[p + "b_O"], weights[p + "W_V"]
    spill = w_o[:, :, others].sum(axis=2) / 2
    bias_spill = b_o[others].sum() / 2
    head = next(k for k, h in enumerate(attn.heads) if h.read == SELF)
    for pad in pads:
        w_o[:, :, pad] -= spill
        b_o[pad] -= bias_spill
        w_v[head, others, attn.heads[head].out_rows.index(pad)] -= 0.5


def _weights(program: Program, layout: Layout, shape: ModelShape, attn_halves: list,
             mlp_halves: list, code: PositionCode) -> dict[str, np.ndarray]:
    D, H, dh, M = shape.d_model, shape.n_heads, shape.d_head, shape.d_mlp
    w: dict[str, np.ndarray] = {}
    embed = np.zeros((shape.d_in, D))
    embed[0, layout.rows(program.y_slot).start] = 1.0
    for k, row in enumerate(layout.rows(program.x_slot)):
        embed[k + 1, row] = 1.0
    w["embed.W_E"] = embed
    w["pos_embed.W_pos"] = position_table(program, layout, shape.n_ctx, code)
    for l, (attn, mlp) in enumerate(zip(attn_halves, mlp_halves)):
        p = f"blocks.{l}."
        arrays = {name: np.zeros((H, D, dh)) for name in ("W_Q", "W_K", "W_V")}
        w_o = np.zeros((H, dh, D))
        for h, head in enumerate(attn.heads):
            arrays["W_Q"][h, :, :head.w_q.shape[1]] = head.w_q
            arrays["W_K"][h, :, :head.w_k.shape[1]] = head.w_k
            arrays["W_V"][h, :, :head.w_v.shape[1]] = head.w_v
            for j, row in enumerate(head.out_rows):
                w_o[h, j, row] = 1.0
        for name, value in arrays.items():
            w[p + "attn." + name] = value
            w[p + "attn.b_" + name[-1]] = np.zeros((H, dh))
        w[p + "attn.W_O"] = w_o
        w[p + "attn.b_O"] = attn.b_o
        if shape.ln2:
            w[p + "ln2.w"] = np.ones(D)
            w[p + "ln2.b"] = np.zeros(D)
        w_in = np.zeros((D, M))
        w_out = np.zeros((M, D))
        w_in[:, :mlp.w_in.shape[1]] = mlp.w_in
        w_out[:mlp.w_out.shape[0], :] = mlp.w_out
        w[p + "mlp.W_in"], w[p + "mlp.b_in"] = w_in, np.zeros(M)
        w[p + "mlp.W_out"], w[p + "mlp.b_out"] = w_out, np.zeros(D)
        if shape.gated_mlp:
            w_gate = np.zeros((D, M))
            w_gate[:, :mlp.w_gate.shape[1]] = mlp.w_gate
            w[p + "mlp.W_gate"] = w_gate
    unembed = np.zeros((D, 1))
    unembed[layout.rows(program.output).start, 0] = 1.0
    w["unembed.W_U"], w["unembed.b_U"] = unembed, np.zeros(1)
    return w


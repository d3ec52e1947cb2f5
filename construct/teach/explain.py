"""``rawc explain``: a markdown page that shows how a compiled model runs its program.

Every number on the page is read off the compiled model (program, schedule, layout, bounds,
error models, config, weights) or computed from it (``construct.compiler.propagate``); only the prose is
written by hand. Sections: what the algorithm computes, the program, size beside the paper's
counts, the residual-stream layout, what each layer does, the error budget, the constants and,
for named algorithms, a size and error sweep over ``d``. Weights depend only on the program and
the config, so a page is a pure function of the command that made it: ``docs/*.md`` are made
this way (``construct.teach.explain_command`` runs the command), and ``tests/teach/test_course.py``
checks that they are current.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from construct.algorithms.parameters import default_w0
from construct.algorithms.registry import ProgramAlgorithm
from construct.model.assemble import CompiledModel, compile_program
from construct.compiler.config import CompileConfig, MlpTarget, unit_roundoff
from construct.compiler.gelu_products import product_units
from construct.compiler.layout import FOREVER
from construct.compiler.limits import limits
from construct.targets.architecture import ModelShape
from construct.targets.paper.attention import mlp_clears_in_attention
from construct.language.printer import op_text
from construct.language.program import Aff, Div, Mov, Mul, Op, Program, to_fraction
from construct.compiler.propagate import end_to_end_bound, propagated_bounds
from construct.teach.blurbs import BLURBS, CONSTANTS, FIXED_ROWS, dyadic_row

DTYPES = ("float64", "float32")
SWEEP_DS = (1, 2, 4, 8, 16)
# Dense; each d is compiled twice (both dtypes). ridge --method newton at d = 16: 1e9 dense
# parameters (2e6 nonzero), 20 GB to build both.
SWEEP_MAX_PARAMETERS = 1e8
LISTINGS = {"gd-appendix-a": "gd", "sherman-morrison-appendix-b": "sherman-morrison"}
# The paper's counts (reference section 3): theorem, ops of its listing, data rows(d).
PAPER = {"gd": ("Theorem 1 (Appendix A)", 9, "3+4d", lambda d: 3 + 4 * d),
         "sherman-morrison": ("Theorem 2 (Appendix B)", 14, "3+5d+3d²",
                              lambda d: 3 + 5 * d + 3 * d * d)}
SweepRow = tuple[int, CompiledModel, dict[str, float]]  # d, model (float64 constants), bounds


def fmt(value: float) -> str:
    """How the page writes every bound: three significant digits (``inf`` when unbounded)."""
    return f"{value:.3g}"


def _value(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"
                    for row in rows]


def _half(half: int) -> str:
    if half < 0 or half >= FOREVER:
        return "embedding" if half < 0 else "read-out"
    return f"L{half // 2}.{'attn' if half % 2 == 0 else 'mlp'}"


def _known(table: dict[str, object], name: str) -> object:
    """The entry for ``name`` (the paper's own listings share their builder's entry)."""
    return table.get(LISTINGS.get(name, name))


def _op(program: Program, i: int) -> str:
    return f"op {i + 1} `{op_text(program.ops[i])}`"


def mlp_units(program: Program, op: Op, cleared: bool, config: CompileConfig) -> int:
    """MLP units ``lower_mlp`` spends on ``op``: product units (one set per GeLU pre-scale;
    two per scalar product in the gated target), plus in-place old-value removal."""
    if isinstance(op, Mul):
        removal = 0 if cleared else 2 * op.a * op.c
        if config.target is MlpTarget.GATED:
            return 2 * op.a * op.b * op.c + removal
        return product_units(config.gelu_product, op) + removal
    if isinstance(op, Div):
        return 2 * program.slot(op.num).size
    raise TypeError(f"{type(op).__name__} is not an MLP op")


def _section_what(compiled: CompiledModel, params: dict[str, object]) -> list[str]:
    name = compiled.program.name
    blurb = _known(BLURBS, name) or f"the program `{name}` below (no closed-form summary)."
    given = ", ".join(f"{k} = {_value(v)}" for k, v in params.items() if v is not None)
    return ["## What it computes", "", f"The model computes {blurb}", "",
            *([f"Parameters: {given}.", ""] if given else [])]


def _section_program(compiled: CompiledModel) -> list[str]:
    p = compiled.program
    return ["## The program", "", f"{len(p.ops)} ops over {len(p.slots)} slots (`{p.x_slot}` and "
            f"`{p.y_slot}` come from the embedding; the prediction `{p.output}` is read at x-token "
            "columns). Op k on this page is the k-th `dst = ...` line.", "", "```",
            p.text().rstrip("\n"), "```", "", *_assumptions(p)]


def _assumptions(p: Program) -> list[str]:
    """The program's declared result bounds, which cap the magnitude bounds below."""
    declared = [f"op {i + 1} `{p.ops[i].dst}` ≤ {bound}" for i, bound in p.assumptions]
    return [f"Declared result bounds (theorems the interval bounds cannot see; `rawc verify` "
            f"checks each on every task): {', '.join(declared)}.", ""] if declared else []


def _section_size(compiled: CompiledModel) -> list[str]:
    program, shape, layout = compiled.program, compiled.shape, compiled.layout
    theorem, ops, rows_text, rows = _known(PAPER, program.name) or ("—", "—", "", None)
    n = rows(program.d) if rows else 0
    paper = [f"{ops} (one per op, Lemma 1)", f"{rows_text} = {n}",
             f"{n} + scratch 4|t| + |w| per op + 2p position units", "2 per layer",
             "— (scratch sits in residual rows)"] if rows else ["—"] * 5
    bound = limits(program, layout)
    table = _table(["", "this compilation", f"paper, {theorem}"], [
        ("ops", len(program.ops), ops),
        ("layers", f"{shape.depth}{_stored(shape)} (critical path: ≥ {bound.depth})", paper[0]),
        ("data rows", layout.d_model - len(layout.fixed), paper[1]),
        ("d_model", f"{shape.d_model} (data + {len(layout.fixed)} fixed rows; live set: "
                    f"≥ {bound.width})", paper[2]),
        ("heads × d_head", f"{shape.n_heads} × {shape.d_head}", paper[3]),
        ("d_mlp", shape.d_mlp, paper[4]), ("parameters", compiled.n_params, "—")])
    folded = ", ".join(f"`{program.ops[i].dst}`" for i in sorted(compiled.schedule.fused))
    return ["## Size", "", *table, "", "Product scratch lives in the MLP's hidden units "
            "(`d_mlp`), not in residual rows, and slots whose lifetimes do not overlap share rows, "
            "so the residual stream is narrower than the paper's row map. Affine maps cost no "
            "layer: each is folded into the weights of the half that computes its inputs "
            f"({folded or 'none here'}), so depth meets the critical path (attention hops and "
            "MLP nonlinearity levels, `construct/compiler/limits.py`).", ""]


def _stored(shape: ModelShape) -> str:
    return "" if shape.loop is None else f", {shape.n_layers} stored"


def _layer_name(compiled: CompiledModel, l: int) -> str:
    block = compiled.shape.executed_blocks[l]
    return str(l) if block == l else f"{l} (`blocks.{block}`)"


def _section_layout(compiled: CompiledModel) -> list[str]:
    layout, slots = compiled.layout, compiled.program.slot_map
    rows = []
    for name, (start, stop) in sorted(layout.slots.items(), key=lambda kv: (kv[1], kv[0])):
        first, last = layout.lifetimes[name]
        rows.append((f"`{name}`", start if stop == start + 1 else f"{start}..{stop - 1}",
                     stop - start, slots[name].shape_text,
                     f"{first}..{last if last < FOREVER else 'end'}",
                     f"{_half(first)} → {_half(last)}"))
    fixed = [(f"`{name}`", row, FIXED_ROWS.get(name, "") or dyadic_row(name))
             for name, row in layout.fixed.items()]
    return ["## Residual-stream layout", "", f"`d_model = {layout.d_model}`. Half `2l` is the "
            "attention of layer `l` (`blocks.l` in the checkpoint), half `2l+1` its MLP; a slot "
            "lives from the half that first writes it to the half that last reads it.", "",
            *_table(["slot", "rows", "size", "shape", "lifetime (halves)", "from → to"], rows),
            "", "Fixed rows:", "", *_table(["row", "index", "holds"], fixed), ""]


def _attention_cell(compiled: CompiledModel, l: int) -> str:
    program, schedule = compiled.program, compiled.schedule
    layer = schedule.layers[l]
    movs = [i for i in layer.attn if isinstance(program.ops[i], Mov)]
    work = [f"computes {_op(program, i)}" + (" (folded)" if i in schedule.fused else "")
            for i in layer.attn if isinstance(program.ops[i], Aff)]
    work += [f"writes the ready terms of {_op(program, i)}"
             for i in layer.mlp if i in schedule.fused]
    cleared = sorted(mlp_clears_in_attention(program, schedule, layer))
    dsts = dict.fromkeys(f"`{program.ops[i].dst}`" for i in sorted((*movs, *cleared))
                         if compiled.cleared_rows(i))
    work += [f"clears {', '.join(dsts)}"] if dsts else []
    use = compiled.layer_norm_use(l)
    if use is not None:
        work.append(f"sets the LN pads to ±N·`{use.divisor}` − S/2 (the MLP divides by "
                    f"|`{use.divisor}`|)" if use.divides else
                    "sets the LN pads to ±P − S/2 (fixed scale for the products; with half "
                    "the other rows' sum S off each pad, LayerNorm's mean is zero)")
    heads = [f"head 0 (self): {'; '.join(work)}"] if work else []
    reads = dict.fromkeys(program.ops[i].read for i in movs)
    heads += [f"head {len(heads) + k} (reads `{read.text()}`): "
              + ", ".join(_op(program, i) for i in movs if program.ops[i].read == read)
              for k, read in enumerate(reads)]
    return "<br>".join(heads) or "—"


def _mlp_cell(compiled: CompiledModel, l: int) -> str:
    program, schedule = compiled.program, compiled.schedule
    layer = schedule.layers[l]
    cleared = mlp_clears_in_attention(program, schedule, layer)
    parts = [f"{_op(program, i)}: " + ("folded into `W_out`" if i in schedule.fused else
                                       f"{mlp_units(program, program.ops[i], i in cleared, compiled.config)} units")
             + (" (not stored)" if program.ops[i].dst in schedule.virtual else "")
             for i in layer.mlp]
    use = compiled.layer_norm_use(l)
    if use is not None:
        parts.insert(0, f"LayerNorm divides by |`{use.divisor}`|" if use.divides
                     else "LayerNorm at fixed scale")
    return "<br>".join(parts) or "—"


def _section_layers(compiled: CompiledModel) -> list[str]:
    layout = compiled.layout
    rows = [(_layer_name(compiled, l), _attention_cell(compiled, l), _mlp_cell(compiled, l),
             ", ".join(f"`{n}`" for n in layout.slots if layout.live_after_layer(n, l)))
            for l in range(compiled.schedule.n_layers)]
    return ["## Layers", "", "Each layer is `h += Attn(h)` then `h += MLP(LN(h))` (LN only in "
            "models with a `div`). The self head writes `new - old` into the rows it owns, so an "
            "affine map or a clear costs no MLP units; a `mov` head adds the value read at "
            "another column into rows the self head cleared.", "",
            *_table(["layer", "attention half", "MLP half", "live after"], rows), ""]


def _dominance(compiled: CompiledModel, dtype: str, props: tuple[dict[str, float], ...]) -> str:
    program, models = compiled.program, compiled.errors
    n_round = sum(m.rounding[dtype] > m.approx for m in models)
    worst = max(range(len(models)), key=lambda i: models[i].total(dtype))
    share = models[worst].rounding[dtype] / (models[worst].total(dtype) or 1.0)
    text = (f"In {dtype} the rounding term exceeds the approximation term in {n_round} of "
            f"{len(models)} ops. The largest own error is {_op(program, worst)} "
            f"({models[worst].mechanism}), {fmt(models[worst].total(dtype))}, "
            f"{100 * share:.0f}% of it rounding, so "
            f"{'rounding' if share > 0.5 else 'the approximation'} dominates there.")
    if props[-1][program.output] == float("inf"):
        first = next(i for i, p in enumerate(props) if p[program.ops[i].dst] == float("inf"))
        why = ("the error bound on its divisor reaches the declared lower bound on |den|"
               if isinstance(program.ops[first], Div) else "its inputs' error bounds overflow")
        return text + f" The bound becomes infinite at {_op(program, first)}: {why}."
    ratio = props[-1][program.output] / models[-1].total(dtype)
    k, gain = _largest_gain(compiled, dtype, props)
    return text + (f" The end-to-end bound is {fmt(ratio)} times the last op's own error; the "
                   f"rest is inherited from earlier ops. Inherited error grows most at "
                   f"{_op(program, k)} ({models[k].mechanism}), which multiplies the largest "
                   f"error reaching it by {fmt(gain)}.")


def _largest_gain(compiled: CompiledModel, dtype: str,
                  props: tuple[dict[str, float], ...]) -> tuple[int, float]:
    """The op whose inherited error is the largest multiple of its worst input's error."""
    gains = []
    for i, op in enumerate(compiled.program.ops):
        before = props[i - 1] if i else {n: unit_roundoff(dtype) * compiled.config.input_bound
                                         for n in op.reads}
        incoming = max(before.get(n, 0.0) for n in op.reads) if op.reads else 0.0
        inherited = props[i][op.dst] - compiled.errors[i].total(dtype)
        gains.append(inherited / incoming if incoming > 0 else 0.0)
    k = max(range(len(gains)), key=gains.__getitem__)
    return k, gains[k]


def _section_errors(compiled: CompiledModel, tuned: dict[str, float] | None) -> list[str]:
    program, bounds = compiled.program, compiled.bounds
    props = {dt: propagated_bounds(compiled, dt) for dt in DTYPES}
    rows = [(i + 1, f"`{op_text(program.ops[i])}`", m.mechanism, fmt(m.approx),
             *(fmt(m.rounding[dt]) for dt in DTYPES), *(fmt(m.total(dt)) for dt in DTYPES),
             fmt(bounds.of_op_result(i, program)),
             *(fmt(props[dt][i][program.ops[i].dst]) for dt in DTYPES))
            for i, m in enumerate(compiled.errors)]
    header = ["op", "text", "mechanism", "approx", "rounding f64", "rounding f32", "total f64",
              "total f32", "\\|result\\| ≤", "propagated f64", "propagated f32"]
    ends = {dt: end_to_end_bound(compiled, dt) for dt in DTYPES}
    retuned = ([f"With constants tuned for each dtype instead (`--dtype`): float64 "
                f"{fmt(tuned['float64'])}, float32 {fmt(tuned['float32'])}.", ""] if tuned else [])
    return ["## Error budget", "", "Per op: its own error bound for exact inputs (approximation "
            "term plus rounding term), the magnitude bound of its result for inputs "
            f"|x|, |y| ≤ {_value(compiled.config.input_bound)}, and the propagated bound on the "
            "slot it writes (own error plus what the inputs' errors become). Constants as in "
            f"section Constants (tuned for {compiled.config.dtype}).", "", *_table(header, rows),
            "", f"**End-to-end bound on `{program.output}`: float64 {fmt(ends['float64'])}, "
            f"float32 {fmt(ends['float32'])}.**", "", *retuned,
            *(_dominance(compiled, dt, props[dt]) + "\n" for dt in DTYPES)]


def _section_constants(config: CompileConfig) -> list[str]:
    rows = [(f"`{k}`", _value(v), CONSTANTS.get(k, "")) for k, v in config.to_dict().items()]
    return ["## Constants", "", *_table(["field", "value", "controls"], rows), ""]


def sweep_rows(algorithm: ProgramAlgorithm, params: dict[str, object],
               ds: Sequence[int] = SWEEP_DS, form: str = "stacked") -> list[SweepRow]:
    """Compile ``algorithm`` at each ``d`` in ``form`` (other parameters kept; ``w0`` only
    where it fits); stop where the dense size, extrapolated, passes SWEEP_MAX_PARAMETERS."""
    out: list[SweepRow] = []
    for d in ds:
        if len(out) >= 2:
            (d0, m0, _), (d1, m1, _) = out[-2:]
            grown = m1.n_params * (m1.n_params / m0.n_params) ** (math.log(d / d1) /
                                                                  math.log(d1 / d0))
            if grown > SWEEP_MAX_PARAMETERS:
                break
        given = {**params, "d": d}
        if isinstance(given.get("w0"), (list, tuple)) and len(given["w0"]) != d:
            given["w0"] = None
        configs = {dt: dataclasses.replace(CompileConfig.for_dtype(dt), form=form)
                   for dt in DTYPES}
        models = {dt: compile_program(algorithm.program(algorithm.resolve(**given),
                                                        config.input_bound), config)
                  for dt, config in configs.items()}
        out.append((d, models["float64"], {dt: end_to_end_bound(models[dt], dt) for dt in DTYPES}))
    return out


def _sweep_start(params: dict[str, object]) -> str:
    """What ``w0`` the sweep uses: ``resolve`` always fills ``w0`` in (the default start
    included), so only one that differs from the default is the user's, kept at its own ``d``."""
    w0 = params.get("w0")
    if not isinstance(w0, (list, tuple)):
        return ""
    if [to_fraction(v) for v in w0] == default_w0(len(w0)):
        return " (`w0` the default start `(-1)^k / (k+1)` at every `d`)"
    return " (the given `w0` only at its own `d`; the default start elsewhere)"


def _section_sweep(name: str, params: dict[str, object], sweep: Sequence[SweepRow]) -> list[str]:
    paper = _known(PAPER, name)
    w0 = _sweep_start(params)
    rows = [(d, m.shape.d_model, m.shape.d_model - len(m.layout.fixed),
             paper[3](d) if paper else "—", f"{m.shape.depth}{_stored(m.shape)}",
             f"{m.shape.n_heads} × {m.shape.d_head}", m.shape.d_mlp, m.n_params,
             fmt(ends["float64"]), fmt(ends["float32"])) for d, m, ends in sweep]
    return ["## Across d", "", "The same algorithm compiled at other `d`, other parameters as "
            f"above{w0}. Each bound uses constants tuned for its own dtype "
            "(`CompileConfig.for_dtype`)." + "".join(
                f" Not compiled here: d = {', '.join(map(str, beyond))}, whose dense size "
                f"(extrapolated) passes {SWEEP_MAX_PARAMETERS:.0e} parameters."
                for beyond in [[d for d in SWEEP_DS if sweep and d > sweep[-1][0]]] if beyond),
            "",
            *_table(["d", "d_model", "data rows", f"paper data rows ({paper[2] if paper else ''})",
                     "layers", "heads × d_head", "d_mlp", "parameters", "bound f64", "bound f32"],
                    rows), ""]


def explain_markdown(compiled: CompiledModel, title: str, params: dict[str, object], *,
                     command: str | None = None, sweep: Sequence[SweepRow] = (),
                     extra: Sequence[list[str]] = ()) -> str:
    """The explain page of ``compiled``; ``sweep`` (from ``sweep_rows``) adds the d table,
    ``extra`` sections (pictures, proof) go between the layers and the error budget."""
    head = [f"# {title}", ""]
    if command:
        head += [f"_Generated by `{command}`; edit the code, not this page._", ""]
    tuned = next((ends for d, _, ends in sweep if d == compiled.program.d), None)
    parts = [head, _section_what(compiled, params), _section_program(compiled),
             _section_size(compiled), _section_layout(compiled), _section_layers(compiled),
             *extra, _section_errors(compiled, tuned), _section_constants(compiled.config)]
    if sweep:
        parts.append(_section_sweep(compiled.program.name, params, sweep))
    return "\n".join(line for part in parts for line in part).rstrip("\n") + "\n"

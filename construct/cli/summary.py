"""What ``rawc compile`` prints about the model it wrote, for each kind of model.

A compiled program: width, depth, heads, parameters, the lower bounds no compilation can beat
(``construct.compiler.limits``) and the propagated end-to-end error bound per dtype. A
linear-attention construction: its block kind and that it is exact up to rounding.
"""
from __future__ import annotations

import sys
from fractions import Fraction

import numpy as np

from construct.algorithms.registry import PROGRAM_ALGORITHMS
from construct.compiler.config import DTYPES
from construct.compiler.limits import limits
from construct.compiler.propagate import end_to_end_bound
from construct.model.assemble import CompiledModel
from construct.model.linear import LinearConstruction


def compile_summary(name: str, built: CompiledModel | LinearConstruction,
                    params: dict[str, object], listing: bool = False) -> list[str]:
    """The summary lines (for stdout). A configuration that provably diverges on the declared
    input box is warned about here, on stderr, before the summary is printed."""
    if isinstance(built, LinearConstruction):  # no declared box (construct.algorithms.stability)
        return _linear_summary(name, built, params)
    for line in divergence_warnings(name, params, built.config.input_bound):
        print(line, file=sys.stderr)
    return _program_summary(name, built, params, listing)


def divergence_warnings(name: str, params: dict[str, object], input_bound: float) -> list[str]:
    """``warning: ...`` lines for a named algorithm whose resolved ``params`` diverge on the
    box ``|x_j| <= input_bound`` (``ProgramAlgorithm.divergence``). A program file compiled
    under an algorithm's name has none of its parameters: nothing to check."""
    algorithm = PROGRAM_ALGORITHMS.get(name)
    if algorithm is None or any(p.name not in params for p in algorithm.parameters):
        return []
    found = algorithm.divergence(params, input_bound)
    return [] if found is None else [found.warning()]


def _program_summary(name: str, compiled: CompiledModel, params: dict[str, object],
                     listing: bool) -> list[str]:
    shape, config = compiled.shape, compiled.config
    lines = [f"compiled {name} ({'paper listing' if listing else 'builder program'}) with "
             f"{', '.join(f'{k}={_short(v)}' for k, v in params.items() if v is not None)}"]
    stored = ("" if shape.loop is None else
              f" ({shape.n_layers} stored; {shape.loop[1]} shared layers run {shape.loop[2]} "
              "times)")
    lines.append(f"  width d_model = {shape.d_model}, depth = {shape.depth} layers{stored}, "
                 f"heads = {shape.n_heads} x d_head {shape.d_head}, d_mlp = {shape.d_mlp}, "
                 f"parameters = {compiled.n_params} ({compiled.n_nonzero_params} nonzero)")
    bound = limits(compiled.program, compiled.layout)
    lines.append(f"  lower bounds: depth >= {bound.depth} layers (critical path: "
                 f"{bound.critical_halves + 1} halves of attention hops and MLP nonlinearity "
                 f"levels), d_model >= {bound.width} ({len(compiled.layout.fixed)} fixed rows + "
                 f"{bound.live_set} rows live at once); {len(compiled.schedule.fused)} affine "
                 f"maps folded, {len(compiled.schedule.virtual)} slots never stored")
    lines.append(f"  position code: {config.code.value} (n_ctx = {config.n_ctx}; quadratic up "
                 "to 836, dyadic beyond, unless --position-code says)")
    if compiled.source_program.loop is not None and config.form == "stacked":
        loop = compiled.source_program.loop
        lines.append(f"  (a loop of {loop.times} identical stages: --form shared stores one "
                     "stage, so the parameter count does not grow with the repeats)")
    for dtype in DTYPES:
        note = "" if dtype == config.dtype else f", constants tuned for {config.dtype}"
        lines.append(f"  predicted end-to-end error bound ({dtype}{note}, |inputs| <= "
                     f"{config.input_bound:g}): {end_to_end_bound(compiled, dtype):.3g}")
    return lines


def _linear_summary(name: str, built: LinearConstruction,
                    params: dict[str, object]) -> list[str]:
    shape = built.shape
    shown = {k: v for k, v in params.items() if k not in ("Sigma",) and v is not None}
    return [f"compiled {name} with " + ", ".join(f"{k}={_short(v)}" for k, v in shown.items()),
            f"  linear self-attention ({shape.attn_kind}, mask {shape.attn_mask}), width "
            f"d_model = {shape.d_model}, depth = {shape.n_layers} block(s) (one per step, all "
            f"equal, each stored), 1 head x d_head {shape.d_head}, no MLP, no LayerNorm",
            "  exact: no approximation, only floating-point rounding (rawc verify checks 1e-12 "
            "relative in float64)"]


SHOWN_ENTRIES = 8


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list) and all(isinstance(v, Fraction) for v in value):
        if len(value) > SHOWN_ENTRIES:  # the checkpoint records them all
            head = ", ".join(str(v) for v in value[:SHOWN_ENTRIES // 2])
            return f"[{head}, ..., {value[-1]}] ({len(value)} entries)"
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, list):
        return np.array2string(np.asarray(value), precision=4, separator=",").replace("\n", "")
    return str(value)



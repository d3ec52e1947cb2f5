"""``construct.teach.explain``: the markdown pages and the committed docs they generate.

The pages are built from the compiled model only, so the tests check them against the model
(every slot, every layer, the bounds as the page formats them, MLP units and heads against the
weights). ``tests/teach/test_course.py`` checks that the committed docs are current.
"""
from __future__ import annotations

import argparse
import re

import numpy as np
import pytest

from construct.teach import explain

from construct.teach import explain_command
from construct.algorithms.registry import get_algorithm
from construct.model.assemble import compile_program
from construct.language.builder import ProgramBuilder, prev
from construct.compiler.config import CompileConfig
from construct.compiler.limits import limits
from construct.targets.paper.attention import mlp_clears_in_attention
from construct.compiler.propagate import end_to_end_bound




def _args(target: str, **changes: object) -> argparse.Namespace:
    values = dict(target=target, d=2, alpha=None, lam=None, w0=None, dtype="float64", out="docs")
    return argparse.Namespace(**{**values, **changes})


def _section(text: str, title: str) -> str:
    """The body of section ``## title`` (up to the next ``## ``)."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"no section {title!r}"
    return match.group(1)


@pytest.fixture(scope="module", params=["gd", "sherman-morrison"])
def page(request: pytest.FixtureRequest) -> tuple[object, str]:
    algorithm = get_algorithm(request.param)
    compiled = compile_program(algorithm.program(algorithm.resolve(d=2)),
                               CompileConfig.for_dtype("float64"))
    return compiled, explain_command.render(_args(request.param))[1]


def test_page_names_every_slot_and_fixed_row(page):
    compiled, text = page
    layout = _section(text, "Residual-stream layout")
    for name, (start, stop) in compiled.layout.slots.items():
        rows = str(start) if stop == start + 1 else f"{start}..{stop - 1}"
        assert f"| `{name}` | {rows} | {stop - start} |" in layout
    for name, row in compiled.layout.fixed.items():
        assert f"| `{name}` | {row} |" in layout


def test_page_lists_every_layer_and_op(page):
    compiled, text = page
    layers = _section(text, "Layers")
    for l in range(compiled.schedule.n_layers):
        assert f"\n| {l} | " in layers
    assert f"\n| {compiled.schedule.n_layers} | " not in layers
    for i in range(len(compiled.program.ops)):
        assert f"op {i + 1} `" in layers
    assert f"{len(compiled.program.ops)} ops over" in text
    for i, bound in compiled.program.assumptions:
        assert f"op {i + 1} `{compiled.program.ops[i].dst}` ≤ {bound}" in text


def test_page_states_end_to_end_bounds_as_formatted(page):
    compiled, text = page
    e64, e32 = (end_to_end_bound(compiled, dt) for dt in ("float64", "float32"))
    line = (f"**End-to-end bound on `{compiled.program.output}`: float64 {e64:.3g}, "
            f"float32 {e32:.3g}.**")
    assert line in _section(text, "Error budget")
    for i, model in enumerate(compiled.errors):
        assert f"| {i + 1} | " in text and f"| {model.mechanism} | {model.approx:.3g} |" in text


def test_page_size_table_matches_shape_and_paper_counts(page):
    compiled, text = page
    size, d = _section(text, "Size"), compiled.program.d
    shape = compiled.shape
    bound = limits(compiled.program, compiled.layout)
    assert f"| layers | {shape.n_layers} (critical path: ≥ {bound.depth}) |" in size
    assert f"live set: ≥ {bound.width})" in size
    assert f"| heads × d_head | {shape.n_heads} × {shape.d_head} |" in size
    assert f"| d_mlp | {shape.d_mlp} |" in size and f"| parameters | {compiled.n_params} |" in size
    paper = {"gd": "| ops | 6 | 9 |", "sherman-morrison": "| ops | 11 | 14 |"}
    rows = {"gd": f"3+4d = {3 + 4 * d}", "sherman-morrison": f"3+5d+3d² = {3 + 5 * d + 3 * d * d}"}
    assert paper[compiled.program.name] in size and rows[compiled.program.name] in size
    sweep = _section(text, "Across d")
    assert all(f"\n| {k} | " in sweep for k in explain.SWEEP_DS)


def test_layer_cells_agree_with_the_weights(page):
    compiled, text = page
    program = compiled.program
    for l, layer in enumerate(compiled.schedule.layers):
        w_in = compiled.weights[f"blocks.{l}.mlp.W_in"]
        used = int(np.count_nonzero(np.abs(w_in).sum(axis=0)))
        cleared = mlp_clears_in_attention(program, compiled.schedule, layer)
        assert used == sum(explain.mlp_units(program, program.ops[i], i in cleared,
                                             compiled.config)
                           for i in layer.mlp if i not in compiled.schedule.fused)
        w_q = compiled.weights[f"blocks.{l}.attn.W_Q"]
        heads = int(np.count_nonzero(np.abs(w_q).sum(axis=(1, 2))))
        row = next(r for r in text.splitlines() if r.startswith(f"| {l} | "))
        assert row.split(" | ")[1].count("head ") == heads


def test_generic_program_has_generic_text():
    b = ProgramBuilder("toy", 2)
    b.mov("x_y", "x", prev(on="y"))
    b.dot("pred", "x_y", "x")
    compiled = compile_program(b.build(output="pred"))
    text = explain.explain_markdown(compiled, "toy", {})
    assert "no closed-form summary" in text and "| ops | 2 | — |" in text
    assert "## Across d" not in text and text == explain.explain_markdown(compiled, "toy", {})


def test_sweep_stops_where_the_extrapolated_size_passes_the_cap(monkeypatch):
    """ridge --method newton at d = 16 holds 1e9 dense parameters: the page's d table leaves
    such a d out (and says so) instead of building it in both dtypes."""
    algorithm = get_algorithm("gd")
    full = explain.sweep_rows(algorithm, algorithm.resolve(d=2), (1, 2, 4))
    monkeypatch.setattr(explain, "SWEEP_MAX_PARAMETERS", full[1][1].n_params * 1.01)
    capped = explain.sweep_rows(algorithm, algorithm.resolve(d=2), (1, 2, 4))
    assert [d for d, _, _ in capped] == [1, 2]
    text = "\n".join(explain._section_sweep("gd", algorithm.resolve(d=2), capped))
    assert "Not compiled here: d = 4, 8, 16" in text

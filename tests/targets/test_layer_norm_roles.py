"""A slot may be named anything the grammar allows: keyword-like names compile and run right.

The LayerNorm role of a layer was once a string that was either the divisor slot's name or
``"mul"``; a divisor named ``mul`` then compiled as a product layer (off by 2.0 against a
claimed 1e-14). The role is now a typed value. Each keyword-like name is used for the divisor,
the numerator and a product slot of one program; the program survives a round trip through its
text, and the compiled model agrees with the interpreter within the propagated bound.
"""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from construct.compiler.config import CompileConfig
from construct.compiler.propagate import end_to_end_bound
from construct.language import interpreter
from construct.language.builder import ProgramBuilder, prev
from construct.language.parser import parse_program
from construct.model.assemble import compile_program
from construct.model.transformer import Transformer
from construct.targets.paper.layer_norm import LayerNormRole
from verify.tasks import make_tasks

KEYWORDS = ("mul", "div", "mov", "aff", "dot", "mean", "prior", "prev", "self", "back", "col",
            "column", "on", "bias", "slot", "input", "output", "assume", "repeat", "end",
            "groups", "program", "param", "d", "I", "W1", "W2", "b", "x_q", "one", "pos")


def program_named(den: str, num: str) -> object:
    """``out = (x * y) / |x/8 + 1|`` at the query column, with slots ``den`` and ``num``."""
    b = ProgramBuilder("keywords", 1)
    b.mov("x", "x", prev(on="y"))
    b.aff(den, {"x": Fraction(1, 8)}, bias=[1])             # in [1/2, 3/2] for |x| <= 4
    b.mul(num, "x", "y", 1, 1, 1)
    b.div("quotient", num, den, min_abs=Fraction(1, 2))
    b.mov("at_query", "quotient", prev(on="x"))
    return b.build(output="at_query")


@pytest.mark.parametrize("name", KEYWORDS)
@pytest.mark.parametrize("schedule", ["packed", "sequential"])
def test_keyword_slot_names_compile_to_what_the_interpreter_computes(name, schedule):
    other = KEYWORDS[(KEYWORDS.index(name) + 1) % len(KEYWORDS)]
    program = program_named(den=name, num=other)
    assert parse_program(program.text()) == program  # the grammar reads the names back
    compiled = compile_program(program, CompileConfig(schedule=schedule))
    roles = {compiled.layer_norm_use(l) for l in range(compiled.shape.n_layers)} - {None}
    assert {use.role for use in roles} == {LayerNormRole.DIVIDE, LayerNormRole.FIXED_SCALE} \
        or schedule == "packed"
    assert all(use.divisor == name for use in roles if use.role is LayerNormRole.DIVIDE)
    tasks = make_tasks(1, 64, 4.0, seed=3)
    want = interpreter.run(program, tasks.tokens).prediction()[:, 1]
    got = Transformer(compiled.shape, compiled.weights)(tasks.tokens).output[:, 2, 0]
    bound = end_to_end_bound(compiled, "float64")
    assert bound < 1e-6
    assert float((got - want).abs().max()) <= bound
    assert float(want.abs().max()) > 0.1  # a check on values, not on zeros

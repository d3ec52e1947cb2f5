"""Minimized programs that once miscompiled or crashed (issue 16's known failures), each
compiled and run against the interpreter."""
from __future__ import annotations

import pytest
import torch

from construct.language import interpreter
from construct.language.parser import parse_program
from construct.language.program import ProgramError
from construct.model.assemble import compile_program
from construct.model.transformer import Transformer
from verify.tasks import make_tasks

HEADER = """program p
d 1
slot x 1
slot y 1
slot a 1
slot b 1
slot o 1
input x y
"""


def _run(text: str) -> tuple[torch.Tensor, torch.Tensor]:
    program = parse_program(text)
    compiled = compile_program(program)
    tokens = make_tasks(1, 16, 4.0, 0, n_examples=2, prior_column=program.prior_column).tokens
    model = Transformer(compiled.shape, compiled.weights)
    return model.outputs(tokens)[..., 0], interpreter.run(program, tokens).final[program.output][..., 0]


def test_a_prior_no_op_reads_keeps_its_own_rows():
    """Was: ``b``'s (never read) rows were ``a``'s, W_pos[0] held 5 there, the model output 5
    where the program gives 1, against a claimed bound of 4.8e-15."""
    got, want = _run(HEADER + "output o\nprior a [1]\nprior b [5]\no = mov a col 0\n")
    assert torch.allclose(got, want, atol=1e-12) and float(want.abs().max()) == 1.0


def test_an_unwritten_prior_as_the_output_compiles():
    """Was: IndexError in the end-to-end bound."""
    got, want = _run(HEADER + "output a\nprior a [2]\no = mov x prev\n")
    assert torch.allclose(got, want, atol=1e-12)


def test_a_program_without_operations_is_refused_by_name():
    program = parse_program(HEADER + "output a\nprior a [2]\n")
    with pytest.raises(ProgramError, match="no operations"):
        compile_program(program)


def test_explicit_groups_in_a_repeat_body_of_two_groups_compile():
    """Was refused: ``Program.unrolled()`` wrote the groups group-major, out of order."""
    text = ("program p\nd 1\nslot x 1\nslot y 1\nslot a 1\nslot b 1\ninput x y\noutput b\n"
            "groups explicit\nrepeat 2\na = mov x prev\nb = mov a prev\nend repeat\n")
    program = parse_program(text)
    unrolled = program.unrolled()
    assert [g[0] for g in unrolled.groups] == sorted(g[0] for g in unrolled.groups)
    got, want = _run(text)
    assert torch.allclose(got, want, atol=1e-12)


def test_sequential_with_a_shared_group_names_the_schedule():
    """Was: "an input or an earlier write is not ready", blaming the program."""
    from construct.compiler.config import CompileConfig
    from construct.compiler.schedule import ScheduleError

    program = parse_program("program p\nd 1\nslot x 1\nslot y 1\nslot a 1\nslot b 1\n"
                            "input x y\noutput b\na = mov x prev || b = mov x prev on y\n")
    with pytest.raises(ScheduleError, match="sequential schedule places one op per layer"):
        compile_program(program, CompileConfig(schedule="sequential"))
    compile_program(program, CompileConfig(schedule="packed"))

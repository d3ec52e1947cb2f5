"""Refusals: model inputs the bounds do not cover, and malformed programs.

Each failure must say what is wrong, so every case checks its own message fragment (a generic
"invalid input" for all of them would pass a bare ``pytest.raises``).
"""
from __future__ import annotations

import re
from fractions import Fraction

import pytest
import torch

from construct.language.builder import ProgramBuilder
from construct.model.inputs import InputError, validate_tokens
from construct.language.program import Aff, Div, Mul, Program, ProgramError, Slot

D, BOUND, N_CTX = 3, 4.0, 8


def valid_tokens(n_tokens: int = 5) -> torch.Tensor:
    """Two sequences inside the bound, laid out as x-token ``[0, x]``, y-token ``[y, 0]``."""
    generator = torch.Generator().manual_seed(0)
    tokens = (2 * torch.rand(2, n_tokens, D + 1, generator=generator,
                             dtype=torch.float64) - 1) * BOUND
    tokens[:, 0::2, 0] = 0.0
    tokens[:, 1::2, 1:] = 0.0
    return tokens


def test_valid_tokens_pass() -> None:
    validate_tokens(valid_tokens(), D, BOUND, N_CTX)
    edge = valid_tokens()
    edge[0, 0, 1] = BOUND  # the bound itself is allowed
    validate_tokens(edge, D, BOUND, N_CTX)
    validate_tokens(valid_tokens(N_CTX).to(torch.float32), D, BOUND, N_CTX)


def with_entry(position: tuple[int, int, int], value: float) -> torch.Tensor:
    tokens = valid_tokens()
    tokens[position] = value
    return tokens


@pytest.mark.parametrize(("tokens", "fragment"), [
    pytest.param(with_entry((1, 2, 1), float("nan")), "contain NaN", id="nan"),
    pytest.param(with_entry((0, 3, 0), float("inf")), "contain inf", id="inf"),
    pytest.param(with_entry((0, 2, 2), BOUND * 1.001), "exceeds the declared bound",
                 id="beyond-bound"),
    pytest.param(valid_tokens()[..., :D], "shape [..., T, d + 1]", id="last-dim"),
    pytest.param(valid_tokens(N_CTX + 1), "outside 1..n_ctx", id="too-long"),
    pytest.param(with_entry((0, 2, 0), 1.0), "interleaved layout", id="x-token-label"),
    pytest.param(with_entry((0, 1, 2), 1.0), "interleaved layout", id="y-token-feature"),
])
def test_bad_tokens_are_refused(tokens: torch.Tensor, fragment: str) -> None:
    with pytest.raises(InputError, match=re.escape(fragment)):
        validate_tokens(tokens, D, BOUND, N_CTX)


def test_bound_message_names_the_entry() -> None:
    with pytest.raises(InputError, match=r"index \[0, 2, 2\]"):
        validate_tokens(with_entry((0, 2, 2), -5.0), D, BOUND, N_CTX)


# ---------------------------------------------------------------- program errors
def program(slots: tuple[Slot, ...], ops: tuple, output: str = "y") -> Program:
    base = (Slot("x", 2), Slot("y", 1))
    return Program("bad", 2, base + slots, ops, "x", "y", output)


def test_unknown_slot() -> None:
    with pytest.raises(ProgramError, match="unknown slot 'ghost'"):
        program((Slot("a", 2),), (Aff("a", (("ghost", ((Fraction(1),),)),)),))
    b = ProgramBuilder("bad", 2)
    b.dot("p", b.x, "ghost")
    with pytest.raises(ProgramError, match="unknown slot 'ghost'"):
        b.build(output=b.y)


def test_mul_shape_mismatch() -> None:
    with pytest.raises(ProgramError, match=r"shape mismatch: 'x' is 2x1, mul needs 1x3"):
        program((Slot("p", 1),), (Mul("p", "x", "x", 1, 3, 1),))


def test_read_before_write() -> None:
    with pytest.raises(ProgramError, match="reads slot 'a' before anything writes it"):
        program((Slot("a", 1), Slot("p", 1)), (Mul("p", "a", "y", 1, 1, 1),))


def test_div_needs_a_scalar_divisor() -> None:
    b = ProgramBuilder("bad", 2)
    b.div("q", b.x, b.x)
    with pytest.raises(ProgramError, match="divisor 'x' must be a scalar"):
        b.build(output=b.y)


def test_messages_name_the_op() -> None:
    # The op's number and destination locate the problem in a longer program.
    with pytest.raises(ProgramError, match=r"op 2 \(div -> q\)"):
        program((Slot("s", 1), Slot("q", 2)),
                (Aff("s", (("y", ((Fraction(1),),)),)), Div("q", "x", "x")))


def test_model_with_a_declared_bound_refuses_inputs_beyond_it() -> None:
    from construct.algorithms.theorems import gd_program
    from construct.model.assemble import compile_program
    from construct.model.transformer import Transformer

    compiled = compile_program(gd_program(2))
    model = Transformer(compiled.shape, compiled.weights, input_bound=1.0)
    tokens = torch.zeros(1, 3, 3, dtype=torch.float64)
    tokens[0, 0, 1] = 1.5
    with pytest.raises(InputError, match="exceeds the declared bound"):
        model(tokens)
    tokens[0, 0, 1] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        model(tokens)


def test_aff_without_source_or_bias_is_refused() -> None:
    slots = (Slot("x", 2), Slot("y", 1), Slot("p", 1))
    with pytest.raises(ProgramError, match="neither a source nor a bias"):
        Program("empty-aff", 2, slots, (Aff("p", (), None),), "x", "y", "p")

"""The paper's notation as an output: what it can say reads back as the same program."""
from __future__ import annotations

import pytest

from construct.language.paper_printer import (NotExpressible, as_parsed, paper_names,
                                              paper_text, same_up_to_slot_order)
from construct.language.parser import parse_program

SAYABLE = """program p
d 2
slot x 2
slot y 1
slot xy 2
slot den 1
slot q 2
slot o 1
input x y
output o
xy = mov x prev on y
den = aff xy * [[1/2, 0]] + bias [2]
q = div xy den min 1/4
o = mul q x 1x2x1
"""


def test_a_sayable_program_reads_back_as_itself():
    program = parse_program(SAYABLE)
    text = paper_text(program)
    assert "param div_min = 1/4" in text and "1. mov(; 1, 0, (1, 3), (3, 5))" in text
    parsed = parse_program(text)
    assert same_up_to_slot_order(parsed, as_parsed(program))
    assert paper_names(program)["xy"] == "r3_5" and paper_names(program)["y"] == "y"


def test_a_wrong_op_does_not_read_back_as_itself():
    program = parse_program(SAYABLE)
    wrong = parse_program(paper_text(program).replace("1. mov(; 1, 0", "1. mov(; 2, 0"))
    assert not same_up_to_slot_order(wrong, as_parsed(program))


@pytest.mark.parametrize("change, problem", [
    (("xy = mov x prev on y", "xy = mov x mean(y)"), "not a paper mov"),
    (("xy = mov x prev on y", "xy = mov x prev"), "not a paper mov"),
    (("q = div xy den min 1/4", "q = div xy den"), "declares its floor"),
    (("output o\n", "output o\nprior column\n"), "prior column"),
    (("o = mul q x 1x2x1", "o = mul q x 1x2x1\nassume |o| <= 100"), "declared bounds"),
])
def test_what_the_paper_cannot_say_is_named(change, problem):
    program = parse_program(SAYABLE.replace(*change))
    with pytest.raises(NotExpressible, match=problem):
        paper_text(program)

"""verify.proofs and ``rawc prove``: every program equals its closed form exactly; wrong ones
are refused with the term that differs."""
from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from construct import algorithms
from construct.cli import main as cli_main
from construct.parser import parse_program
from verify.proofs import prove_program

WRONG_SIGN_GD = algorithms.GD_LISTING.replace("W2 = lam", "W2 = -lam")  # the paper's misprint
# Appendix B step 10 is A1^-1 = A0^-1 - right; dropping "- right" leaves A1^-1 = I / lam.
DROPPED_TERM_SM = algorithms.SHERMAN_MORRISON_LISTING.replace("W1 = I, W2 = -I", "W1 = I, W2 = 0*I")


@pytest.mark.parametrize("listing", [False, True], ids=["builder", "listing"])
@pytest.mark.parametrize("name", ["gd", "sherman-morrison"])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_named_programs_are_proved(name: str, d: int, listing: bool) -> None:
    algorithm = algorithms.get_algorithm(name)
    params = algorithm.resolve(d=d)
    proof = prove_program(name, params, algorithm.program(params, listing=listing))
    assert proof.proved, proof.render()
    assert proof.offending_term is None
    assert proof.seconds < 10


fractions = st.fractions(min_value=Fraction(-3), max_value=Fraction(3), max_denominator=50)
positive = st.fractions(min_value=Fraction(1, 50), max_value=Fraction(5), max_denominator=50)


@settings(max_examples=10)
@given(st.data())
def test_gd_proved_for_drawn_parameters(data: st.DataObject) -> None:
    d = data.draw(st.integers(1, 2))
    params = {"d": d, "alpha": data.draw(fractions), "lam": data.draw(fractions),
              "w0": data.draw(st.lists(fractions, min_size=d, max_size=d))}
    assert prove_program("gd", params).proved


@settings(max_examples=10)
@given(st.integers(1, 2), positive)
def test_sherman_morrison_proved_for_drawn_lambda(d: int, lam: Fraction) -> None:
    assert prove_program("sherman-morrison", {"d": d, "lam": lam}).proved


def test_paper_sign_misprint_is_refused_with_the_differing_term() -> None:
    params = {"d": 2, "alpha": Fraction(1, 10), "lam": Fraction(1, 100)}
    wrong = parse_program(WRONG_SIGN_GD, {"d": 2, "alpha": params["alpha"], "lam": params["lam"],
                                          "w": algorithms.default_w0(2)})
    proof = prove_program("gd", params, wrong)
    assert not proof.proved
    # w' is off by 4 alpha lam w0 = (1/250, -1/500): the difference is x2_1/250 - x2_2/500.
    assert proof.offending_term in {"x2_1/250", "-x2_2/500"}
    assert f"the difference keeps the term {proof.offending_term}" in proof.render()


def test_dropped_sherman_morrison_term_is_refused() -> None:
    wrong = parse_program(DROPPED_TERM_SM, {"d": 2, "lam": Fraction(1, 2), "div_min": 1})
    proof = prove_program("sherman-morrison", {"d": 2, "lam": Fraction(1, 2)}, wrong)
    assert not proof.proved
    assert "y1" in proof.offending_term and "x1_" in proof.offending_term


def test_unknown_algorithm_has_no_statement() -> None:
    with pytest.raises(ValueError, match="no closed form known"):
        prove_program("no-such-thing")


@pytest.mark.parametrize("argv", [["gd"], ["sherman-morrison", "--d", "3"],
                                  ["gd", "--listing", "--lam", "0.5"], ["lemmas"]])
def test_cli_prove_exits_0_and_shows_the_steps(argv: list[str], capsys) -> None:
    assert cli_main(["prove", *argv]) == 0
    out = capsys.readouterr().out
    assert "all proved" in out and "NOT PROVED" not in out
    if argv[0] == "gd":
        assert "expand(p - c): 0" in out
    if argv[0] == "lemmas":
        assert out.count("Lemma:") == 7


def test_cli_prove_exits_1_on_the_misprinted_listing(monkeypatch, capsys) -> None:
    monkeypatch.setattr(algorithms, "GD_LISTING", WRONG_SIGN_GD)
    assert cli_main(["prove", "gd", "--listing"]) == 1
    out = capsys.readouterr().out
    assert "NOT PROVED: the difference keeps the term" in out

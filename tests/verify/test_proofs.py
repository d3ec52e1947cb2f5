"""verify.proofs.programs and ``rawc prove``: every program equals its closed form exactly; wrong ones
are refused with the term that differs."""
from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from construct.algorithms import theorems as algorithms
from construct.algorithms.parameters import default_w0
from construct.algorithms.registry import get_algorithm
from construct.cli.main import main as cli_main
from construct.language.parser import parse_program
from verify.proofs.programs import prove_program

WRONG_SIGN_GD = algorithms.GD_LISTING.replace("W2 = lam", "W2 = -lam")  # the paper's misprint
# Appendix B step 10 is A1^-1 = A0^-1 - right; dropping "- right" leaves A1^-1 = I / lam.
DROPPED_TERM_SM = algorithms.SHERMAN_MORRISON_LISTING.replace("W1 = I, W2 = -I", "W1 = I, W2 = 0*I")


@pytest.mark.parametrize("listing", [False, True], ids=["builder", "listing"])
@pytest.mark.parametrize("name", ["gd", "sherman-morrison"])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_named_programs_are_proved(name: str, d: int, listing: bool) -> None:
    algorithm = get_algorithm(name)
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
    non_negative = st.fractions(min_value=Fraction(0), max_value=Fraction(3), max_denominator=50)
    params = {"d": d, "alpha": data.draw(fractions), "lam": data.draw(non_negative),
              "w0": data.draw(st.lists(fractions, min_size=d, max_size=d))}
    assert prove_program("gd", params).proved


@settings(max_examples=10)
@given(st.integers(1, 2), positive)
def test_sherman_morrison_proved_for_drawn_lambda(d: int, lam: Fraction) -> None:
    assert prove_program("sherman-morrison", {"d": d, "lam": lam}).proved


def test_paper_sign_misprint_is_refused_with_the_differing_term() -> None:
    params = {"d": 2, "alpha": Fraction(1, 10), "lam": Fraction(1, 100)}
    wrong = parse_program(WRONG_SIGN_GD, {"d": 2, "alpha": params["alpha"], "lam": params["lam"],
                                          "w": default_w0(2)})
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
        assert out.count("Lemma:") == 14 and "gated product (relu gate)" in out
        assert "Polarized GeLU product (erf GeLU)" in out
        assert "gated division (hinge seed, coupled Newton)" in out
        assert "softmax saturation (dyadic position code)" in out


def test_cli_prove_exits_1_on_the_misprinted_listing(monkeypatch, capsys) -> None:
    monkeypatch.setattr(algorithms, "GD_LISTING", WRONG_SIGN_GD)
    assert cli_main(["prove", "gd", "--listing"]) == 1
    out = capsys.readouterr().out
    assert "NOT PROVED: the difference keeps the term" in out


@pytest.mark.parametrize("name, d, n, method", [
    ("ridge", 2, 2, "sherman-morrison"), ("ridge", 2, 3, "sherman-morrison"),
    ("ridge", 1, 3, "sherman-morrison"), ("sgd", 3, 3, None), ("gd-batch", 3, 3, None),
    ("sgd", 2, 1, None)])
def test_learners_are_proved_at_every_prefix(name: str, d: int, n: int, method) -> None:
    algorithm = get_algorithm(name)
    params = algorithm.resolve(d=d, n=n, **({"method": method} if method else {}))
    proof = prove_program(name, params)
    assert proof.proved, proof.render()
    prefixes = {label.split(":")[0] for label, _ in proof.steps if label.startswith("k=")}
    assert prefixes == {f"k={k}" for k in range(n + 1)}
    assert proof.seconds < 10


@pytest.mark.parametrize("d, n", [(1, 3), (2, 3), (3, 2), (3, 4)])
def test_ridge_solve_is_proved_in_two_parts(d: int, n: int) -> None:
    """The statistics on the task at every prefix, the elimination on fresh symbols; d = 3 at
    the default n = 4 in seconds (the whole program run symbolically took over ten minutes)."""
    params = get_algorithm("ridge").resolve(d=d, n=n, method="solve")
    proof = prove_program("ridge", params)
    assert proof.proved, proof.render()
    steps = dict(proof.steps)
    statistics = next(text for label, text in proof.steps if label.startswith("statistics"))
    assert statistics.endswith("at k = " + ", ".join(str(k) for k in range(n + 1)))
    assert steps["  cancel((M + lam r I) w - c)"] == str([0] * d)
    assert proof.seconds < 10


def _ridge_text_with(old: str, new: str) -> str:
    algorithm = get_algorithm("ridge")
    text = algorithm.program(algorithm.resolve(d=2, n=2, method="sherman-morrison")).text()
    assert old in text
    return text.replace(old, new)


@pytest.mark.parametrize("old, new", [
    ("a_inv = aff a_in * 1 + right * -1", "a_inv = aff a_in * 1 + right * 0"),  # dropped term
    ("moment = aff m_in * 1 + xy * 1", "moment = aff xy * 1 + m_in * 0"),  # forgets the past
    ("a_in = mov a_inv back(2) on y", "a_in = mov a_inv back(1) on y"),  # reads an x-column
])
def test_broken_ridge_stage_is_refused_with_the_differing_term(old: str, new: str) -> None:
    wrong = parse_program(_ridge_text_with(old, new))
    proof = prove_program("ridge", {"d": 2, "n": 2, "method": "sherman-morrison"}, wrong)
    assert not proof.proved
    assert proof.offending_term and "x" in proof.offending_term
    assert "NOT PROVED: the difference keeps the term" in proof.render()


def test_sgd_without_the_kept_prior_is_refused() -> None:
    """Dropping the prior's correction term lets w0 decay at the prior column."""
    algorithm = get_algorithm("sgd")
    params = algorithm.resolve(d=2, n=2, lam=Fraction(1, 2), alpha=Fraction(1, 10))
    text = algorithm.program(params).text().replace(" + keep * 1", "")
    proof = prove_program("sgd", params, parse_program(text))
    assert not proof.proved and proof.offending_term



@pytest.mark.parametrize("old, new, part", [
    ("first = mov one back(2)", "first = mov one back(1)", "statistics"),  # the wrong 1 / k
    ("+ bias [-1, 0]", "+ bias [0, 0]", "elimination"),  # the pivot column never becomes e_0
])
def test_broken_ridge_solve_is_refused(old: str, new: str, part: str) -> None:
    algorithm = get_algorithm("ridge")
    text = algorithm.program(algorithm.resolve(d=2, n=2, method="solve")).text()
    assert old in text
    proof = prove_program("ridge", {"d": 2, "n": 2, "method": "solve"},
                          parse_program(text.replace(old, new)))
    assert not proof.proved
    assert "NOT PROVED" in proof.render()
    assert part in proof.steps[-1][0] or any(
        label.startswith(part) for label, _ in proof.steps[-4:])

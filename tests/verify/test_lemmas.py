"""verify.proofs.lemmas: each trick's derivation holds, and construct.compiler.error_models' bounds dominate it.

The error models are numbers; the lemmas are the mathematics. These tests tie them together:
the compiler's bound must be at least the derived leading term, shrink at the derived order,
and (for the GeLU product, in float64) hold for the whole remainder, not just its first term.
"""
from __future__ import annotations

import functools
import math

import pytest
import sympy as sp
import torch
from hypothesis import given
from hypothesis import strategies as st

from construct.compiler import error_models as errors
from construct.compiler import gelu_products
from construct.compiler.config import GeluProduct, PositionCode, unit_roundoff
from construct.compiler.position_codes import point_read_leak
from verify.proofs import lemmas

GELU_KINDS = sorted(lemmas.GELUS)


def _at(expr: sp.Expr, **values: float) -> float:
    """``expr`` with its symbols, found by name, set to ``values``."""
    by_name = {symbol.name: symbol for symbol in expr.free_symbols}
    return float(expr.subs({by_name[name]: v for name, v in values.items() if name in by_name}))


@pytest.mark.parametrize("derivation", lemmas.all_derivations(), ids=lambda d: d.name)
def test_every_derivation_holds(derivation: lemmas.Derivation) -> None:
    assert derivation.holds, derivation.render()
    assert "proved" in derivation.render()


@pytest.mark.parametrize("kind", GELU_KINDS)
def test_gelu_product_bound_dominates_leading_term(kind: str) -> None:
    derivation = lemmas.gelu_product(kind)
    error = functools.partial(gelu_products.gelu_product_error, 1, 1.0, 1.0)
    assert float(derivation.coefficient) <= error(1.0)
    assert error(0.02) / error(0.01) == pytest.approx(4.0)  # eps^2, as in the series


@pytest.mark.parametrize("kind", GELU_KINDS)
def test_gelu_product_leading_term_predicts_the_error(kind: str) -> None:
    """At small eps the exact error (50 digits) is the leading term to within O(eps^2)."""
    derivation = lemmas.gelu_product(kind)
    a, b, e = sp.Rational(3, 4), sp.Rational(-2, 5), sp.Rational(1, 100)
    gelu = lemmas.GELUS[kind]
    exact = sp.sqrt(sp.pi / 2) * (gelu(e * (a + b)) - gelu(e * a) - gelu(e * b)) / e ** 2 - a * b
    by_name = {symbol.name: symbol for symbol in derivation.leading_error.free_symbols}
    leading = derivation.leading_error.subs({by_name["a"]: a, by_name["b"]: b,
                                             by_name["epsilon"]: e})
    ratio = float(sp.N(exact / leading, 50))
    assert abs(ratio - 1) < 10 * float(e) ** 2


def _gelu(z: float) -> float:
    return 0.5 * z * (1 + math.erf(z / math.sqrt(2)))


@given(st.floats(-1, 1), st.floats(-1, 1), st.floats(0.01, 0.5))
def test_gelu_product_whole_remainder_within_model_bound(a: float, b: float, eps: float) -> None:
    approx = math.sqrt(math.pi / 2) * (_gelu(eps * (a + b)) - _gelu(eps * a) - _gelu(eps * b))
    approx /= eps ** 2
    rounding = 8 * 2.2e-16 / eps ** 2  # float64 evaluation of the differences
    assert abs(approx - a * b) <= gelu_products.gelu_product_error(1, 1.0, 1.0, eps) + rounding


EXTRAPOLATED = [GeluProduct.RICHARDSON, GeluProduct.POLARIZED]


@pytest.mark.parametrize("rule", EXTRAPOLATED)
def test_extrapolated_product_bound_dominates_leading_term(rule: GeluProduct) -> None:
    """The compiled (erf) GeLU's eps^4 coefficient, derived in sympy, is the model's at eps -> 0,
    and the model falls as eps^4."""
    derivation = lemmas.gelu_richardson_product("erf", polarized=rule.polarized)
    model = functools.partial(gelu_products.gelu_product_error, 1, 1.0, 1.0, rule=rule)
    assert float(derivation.coefficient) <= model(1e-3) / 1e-12 < 1.001 * float(
        derivation.coefficient)
    assert model(0.02) / model(0.01) == pytest.approx(16.0, rel=1e-3)


@pytest.mark.parametrize("rule", EXTRAPOLATED)
def test_extrapolated_leading_term_predicts_the_error(rule: GeluProduct) -> None:
    derivation = lemmas.gelu_richardson_product("erf", polarized=rule.polarized)
    a, b, e = sp.Rational(3, 4), sp.Rational(-2, 5), sp.Rational(1, 100)
    gelu = lemmas.GELUS["erf"]
    units = lemmas.polarized_product if rule.polarized else lemmas.one_scale_product
    exact = (4 * units(gelu, a, b, e) - units(gelu, a, b, 2 * e)) / 3 - a * b
    leading = _at(derivation.leading_error, a=float(a), b=float(b), epsilon=float(e))
    assert abs(float(sp.N(exact, 50)) / leading - 1) < 100 * float(e) ** 2


@given(st.sampled_from(EXTRAPOLATED), st.floats(-1, 1), st.floats(-1, 1),
       st.floats(0.01, 0.125))
def test_extrapolated_whole_remainder_within_model_bound(rule: GeluProduct, a: float, b: float,
                                                         eps: float) -> None:
    def one_scale(scale: float) -> float:
        x, y = scale * a, scale * b
        if rule.polarized:
            units = _gelu(x + y) + _gelu(-x - y) - _gelu(x - y) - _gelu(y - x)
            return math.sqrt(math.pi / 2) * units / (4 * scale ** 2)
        return math.sqrt(math.pi / 2) * (_gelu(x + y) - _gelu(x) - _gelu(y)) / scale ** 2

    approx = (4 * one_scale(eps) - one_scale(2 * eps)) / 3
    rounding = 16 * 2.2e-16 / eps ** 2  # float64 evaluation of the differences
    bound = gelu_products.gelu_product_error(1, 1.0, 1.0, eps, rule)
    assert abs(approx - a * b) <= bound + rounding
    if a * b > 0.25:  # same signs: the eps^4 term has no cancellation, the bound is not vacuous
        assert abs(approx - a * b) > 1e-3 * bound


def _dot_in(dtype: torch.dtype, rule: GeluProduct, left: torch.Tensor, right: torch.Tensor,
            eps: float) -> torch.Tensor:
    """A GeLU dot product ``sum_k l_k r_k`` (operands in units of their bounds) as an MLP
    computes it in ``dtype``: each unit's input rounded once, ``W_out`` summing every unit."""
    outputs = []
    for s, weight in gelu_products.product_scales(rule):
        x, y = (s * eps * left).to(dtype), (s * eps * right).to(dtype)
        kappa = weight * math.sqrt(math.pi / 2) / (s * eps) ** 2
        if rule.polarized:
            units = [(x + y, 1), (-x - y, 1), (x - y, -1), (y - x, -1)]
            kappa /= 4
        else:
            units = [(x + y, 1), (x, -1), (y, -1)]
        outputs += [torch.nn.functional.gelu(z) * (sign * kappa) for z, sign in units]
    return torch.cat(outputs).sum()


@given(st.sampled_from(list(GeluProduct)), st.sampled_from(["float64", "float32"]),
       st.integers(1, 12), st.floats(1e-3, 0.125), st.integers(0, 2 ** 31 - 1))
def test_gelu_dot_rounding_within_its_model(rule: GeluProduct, dtype: str, inner: int,
                                            eps: float, seed: int) -> None:
    """Each rule's units, evaluated in ``dtype`` in any order, err by no more than the
    remainder plus the rounding term (``gelu_products``, *Rounding*)."""
    generator = torch.Generator().manual_seed(seed)
    left, right = (torch.rand(2, inner, generator=generator, dtype=torch.float64) * 2 - 1)
    observed = abs(float(_dot_in(getattr(torch, dtype), rule, left, right, eps))
                   - float(left @ right))
    bound = (gelu_products.gelu_product_error(inner, 1.0, 1.0, eps, rule)
             + gelu_products.gelu_product_rounding(inner, 1.0, 1.0, eps, rule)
             * unit_roundoff(dtype))
    assert observed <= bound


def test_polarized_units_round_a_quarter_of_richardsons() -> None:
    """Same pre-scales and weights: the polarized outputs ``W_out`` sums are a quarter the
    size, and so is what float32 loses (measured over many dots, not one)."""
    generator = torch.Generator().manual_seed(0)
    left, right = torch.rand(2, 400, 32, generator=generator, dtype=torch.float64) * 2 - 1
    eps = 0.01  # the rounding dominates the eps^4 remainder ~100-fold here
    errors_by_rule = {rule: max(abs(float(_dot_in(torch.float32, rule, l, r, eps)) - float(l @ r))
                                for l, r in zip(left, right))
                      for rule in (GeluProduct.RICHARDSON, GeluProduct.POLARIZED)}
    assert errors_by_rule[GeluProduct.POLARIZED] < errors_by_rule[GeluProduct.RICHARDSON] / 2
    models = {rule: gelu_products.gelu_product_rounding(32, 1.0, 1.0, eps, rule)
              for rule in errors_by_rule}
    assert models[GeluProduct.POLARIZED] < models[GeluProduct.RICHARDSON] / 2.5


@pytest.mark.parametrize("energy,pad", [(1.0, 1e3), (50.0, 1e5), (1e4, 1e9)])
def test_fixed_scale_layernorm_bound_dominates_leading_term(energy: float, pad: float) -> None:
    derivation = lemmas.ln_fixed_scale()
    leading = abs(_at(derivation.leading_error, E=energy, P=pad))
    assert leading <= errors.fixed_scale_ln_error(energy, pad)
    assert errors.fixed_scale_ln_error(energy, 2 * pad) == pytest.approx(
        errors.fixed_scale_ln_error(energy, pad) / 4)  # order P^-2, as derived


@pytest.mark.parametrize("energy,width,ln_eps,scale,c", [
    (1.0, 20, 1e-5, 1e3, 1.0), (100.0, 46, 1e-5, 1e9, 1.0), (5.0, 11, 1e-12, 1e6, 3.0)])
def test_division_bound_dominates_leading_term(energy: float, width: int, ln_eps: float,
                                               scale: float, c: float) -> None:
    derivation = lemmas.ln_division()
    leading = abs(_at(derivation.leading_error, E=energy, L=width, eps_ln=ln_eps, N=scale, c=c))
    # The model takes the declared lower bound m <= |c|; at m = c it must still dominate.
    assert leading <= errors.division_error(energy, width, ln_eps, scale, c)


@pytest.mark.parametrize("hardness", [8.0, 20.0, 64.0])
def test_point_read_leak_is_the_derived_bound_plus_rounding_margin(hardness: float) -> None:
    assert lemmas.softmax_saturation().holds
    derived = float(lemmas.point_read_leak(sp.Float(hardness, 30)))
    model = point_read_leak(PositionCode.QUADRATIC, hardness, n_ctx=2, dtype="float64")
    assert derived <= model <= derived * (1 + 1e-10)


@pytest.mark.parametrize("hardness", [8.0, 20.0, 64.0])
@pytest.mark.parametrize("n_ctx", [2, 300, 8194])
def test_dyadic_leak_is_the_derived_bound_plus_rounding_margin(hardness: float,
                                                                n_ctx: int) -> None:
    derivation = lemmas.dyadic_saturation()
    assert derivation.holds
    derived = float(derivation.leading_error.subs({sp.Symbol("N", positive=True): hardness,
                                                   sp.Symbol("T", positive=True, integer=True):
                                                   n_ctx}))
    model = point_read_leak(PositionCode.DYADIC, hardness, n_ctx=n_ctx, dtype="float64")
    assert derived <= model <= derived * (1 + 1e-9)

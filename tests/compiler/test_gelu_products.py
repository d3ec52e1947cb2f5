"""construct.compiler.gelu_products: each rule's unit count and largest ``W_out`` entry are the
lowering's, and the polarized rule's terms are a quarter of Lemma 4's.

The error terms themselves are tied to the sympy derivations in ``tests/verify/test_lemmas.py``
and to the compiled ops in ``tests/verify/test_ops.py``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from construct.compiler import gelu_products
from construct.compiler.config import CompileConfig, GeluProduct
from construct.language.program import Mul
from verify.check.ops import compile_op

KINDS = ["mul-dot", "mul-outer", "mul-matvec"]


def _product_layer(kind: str, rule: GeluProduct, d: int = 3):
    config = CompileConfig.for_dtype("float64", gelu_product=rule)
    compiled, index = compile_op(kind, d, config)
    op = compiled.program.ops[index]
    assert isinstance(op, Mul)
    layer = compiled.schedule.layer_of(index)
    return compiled, op, compiled.weights[f"blocks.{layer}.mlp.W_in"], \
        compiled.weights[f"blocks.{layer}.mlp.W_out"], index


@pytest.mark.parametrize("rule", list(GeluProduct))
@pytest.mark.parametrize("kind", KINDS)
def test_unit_count_is_the_lowerings(kind: str, rule: GeluProduct) -> None:
    """Every unit the lowering builds reads something (a dead polarized unit of a square is
    left out), and there are exactly ``product_units`` of them."""
    _, op, w_in, _, _ = _product_layer(kind, rule)
    used = int(np.count_nonzero(np.abs(w_in).sum(axis=0)))
    assert used == gelu_products.product_units(rule, op)
    assert w_in.shape[1] == used  # the product is the model's only MLP op: no unit idles


@pytest.mark.parametrize("rule", list(GeluProduct))
@pytest.mark.parametrize("kind", KINDS)
def test_largest_output_weight_is_the_lowerings(kind: str, rule: GeluProduct) -> None:
    """``propagate.representable`` reads ``largest_output_weight`` times ``kappa``: it must be
    the largest ``W_out`` entry the product really stores."""
    compiled, op, _, w_out, index = _product_layer(kind, rule)
    before = compiled.bounds.before[index]
    eps = compiled.config.mul_scale
    kappa = math.sqrt(math.pi / 2) * before[op.left] * before[op.right] / eps ** 2
    largest = float(np.abs(w_out).max())
    assert largest == pytest.approx(gelu_products.largest_output_weight(rule) * kappa,
                                    rel=1e-12)


def test_polarized_terms_are_a_quarter_of_lemma4s() -> None:
    """Same pre-scales, same ``eps``: the units' outputs and so the rounding term a quarter of
    the Richardson product's, up to the count of terms summed (4 against 3 per term)."""
    eps, inner = 0.03, 8
    polarized = gelu_products.gelu_product_rounding(inner, 1.0, 1.0, eps, GeluProduct.POLARIZED)
    richardson = gelu_products.gelu_product_rounding(inner, 1.0, 1.0, eps,
                                                     GeluProduct.RICHARDSON)
    terms = {rule: gelu_products.units_per_term(rule) * 2 * inner + 6
             for rule in (GeluProduct.POLARIZED, GeluProduct.RICHARDSON)}
    assert polarized / richardson == pytest.approx(
        terms[GeluProduct.POLARIZED] / terms[GeluProduct.RICHARDSON] / 4)
    assert gelu_products.input_error_gain(GeluProduct.POLARIZED, eps) == pytest.approx(
        gelu_products.input_error_gain(GeluProduct.RICHARDSON, eps) / 2)


@pytest.mark.parametrize("rule", list(GeluProduct))
def test_rounding_bounds_g_by_phi_at_the_largest_input(rule: GeluProduct) -> None:
    """``|G(z)| <= |z| Phi(z_max)``: at the largest pre-scale the factor passes 1/2 (the old
    0.51 was no bound at float32's eps), and the bound grows with it."""
    small, large = (gelu_products.gelu_product_rounding(1, 1.0, 1.0, eps, rule) * eps
                    for eps in (1e-4, 0.1))
    z = gelu_products.largest_input(rule, 0.1)
    assert large / small == pytest.approx((1 + math.erf(z / math.sqrt(2)))
                                          / (1 + math.erf(1e-4 * z / 0.1 / math.sqrt(2))))
    assert large > small

"""The linear-attention constructions are exact: GD, GD++, preconditioned GD, dual form, MoAttn."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from construct.model.checkpoint import load_checkpoint, save_checkpoint
from construct.model.inputs import concat_xy_tokens as encode
from construct.model.transformer import Transformer
from construct.algorithms.linear_attention import (LSA_ALGORITHMS, ahn_gamma, eta_star, gd_iterates,
                                      iid_one_step, inverse_gamma, one_step_risk,
                                      reference_prediction, step_matrix)
from construct.language.program import ProgramError
from verify.check.linear_attention import block_loop, dual_form_checks, momentum_check, verify_checkpoint

RTOL64 = 1e-12


def tasks(d: int, n: int, seed: int, batch: int = 16, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n, d, generator=g, dtype=torch.float64)
    w = torch.randn(batch, d, generator=g, dtype=torch.float64)
    x_q = torch.randn(batch, d, generator=g, dtype=torch.float64)
    return tuple(t.to(dtype) for t in (x, (x * w[:, None]).sum(-1), x_q))


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-300))


def run(name: str, params: dict[str, object], x, y, x_q):
    model = LSA_ALGORITHMS[name].model(params)
    net = Transformer(model.shape, model.weights(), x.dtype)
    return net, net(encode(x, y, x_q))


sizes = st.tuples(st.integers(1, 5), st.integers(1, 8), st.integers(1, 4))
etas = st.floats(0.01, 1.0)
seeds = st.integers(0, 2 ** 31 - 1)


@given(sizes, etas, st.data(), seeds)
def test_lsa_gd_is_k_gd_steps(size, eta, data, seed):
    d, n, steps = size
    w0 = data.draw(st.lists(st.floats(-2, 2), min_size=d, max_size=d))
    params = LSA_ALGORITHMS["lsa-gd"].resolve(d=d, n=n, steps=steps, eta=eta, w0=w0)
    x, y, x_q = tasks(d, n, seed)
    net, cache = run("lsa-gd", params, x, y, x_q)
    # the reference: an explicit loop of w <- w - eta/n sum_i (w^T x_i - y_i) x_i
    w = torch.tensor(w0, dtype=torch.float64).expand(x.shape[0], d).clone()
    for _ in range(steps):
        w = w - eta / n * sum(((w * x[:, i]).sum(-1) - y[:, i])[:, None] * x[:, i]
                              for i in range(n))
    assert relative(cache.prediction, (w * x_q).sum(-1)) <= RTOL64
    assert all(c.ok for c in dual_form_checks(params, step_matrix(params, d), cache, x, y, x_q,
                                                RTOL64))


@given(sizes, etas, st.floats(0.0, 0.5), seeds)
def test_gd_plus_plus(size, eta, gamma, seed):
    d, n, steps = size
    params = LSA_ALGORITHMS["lsa-gd-plus-plus"].resolve(d=d, n=n, steps=steps, eta=eta,
                                                        gamma=gamma)
    x, y, x_q = tasks(d, n, seed)
    _, cache = run("lsa-gd-plus-plus", params, x, y, x_q)
    assert relative(cache.prediction, reference_prediction(params, x, y,
                                                           x_q)) <= RTOL64
    if gamma == 0:  # GD++ without the input step is GD from 0
        gd = LSA_ALGORITHMS["lsa-gd"].resolve(d=d, n=n, steps=steps, eta=eta)
        assert relative(cache.prediction, reference_prediction(gd, x, y, x_q)) <= RTOL64


@given(sizes, st.data(), seeds)
def test_precond_gd_with_any_gamma(size, data, seed):
    d, n, steps = size
    gamma = data.draw(st.lists(st.floats(-1, 1), min_size=d * d, max_size=d * d))
    gamma = np.asarray(gamma).reshape(d, d).tolist()
    params = LSA_ALGORITHMS["lsa-precond-gd"].resolve(d=d, n=n, steps=steps, Gamma=gamma)
    x, y, x_q = tasks(d, n, seed)
    _, cache = run("lsa-precond-gd", params, x, y, x_q)
    P = torch.tensor(gamma, dtype=torch.float64)
    w = gd_iterates(x, y, P, torch.zeros(d, dtype=torch.float64), steps)[-1]
    assert relative(cache.prediction, (w * x_q).sum(-1)) <= RTOL64
    if steps == 1:  # one step from 0: x_q^T Gamma (1/n) sum_i y_i x_i
        closed = (x_q * ((y[..., None] * x).mean(-2) @ P.T)).sum(-1)
        assert relative(cache.prediction, closed) <= RTOL64


@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 3), st.floats(0.05, 0.95), seeds)
def test_momentum_block(d, n, steps, beta, seed):
    params = LSA_ALGORITHMS["lsa-gd"].resolve(d=d, n=n, steps=steps, momentum=beta)
    x, y, x_q = tasks(d, n, seed)
    net, cache = run("lsa-gd", params, x, y, x_q)
    assert momentum_check(net, cache, RTOL64).ok
    loop = block_loop(net, encode(x, y, x_q), n)
    for l, ref in enumerate(loop[1:]):
        assert relative(cache.after_layer(l), ref) <= RTOL64
    # layer 0 by hand: MoAttn - Attn = sum_{i<t} beta^(t-i) v_i, v_i = W_PV e_i (y-row -eta r_i)
    resid = cache.residuals[0]
    extra = cache.attention[0] - net.attention_output(resid, 0, momentum=False) \
        - net.weight("blocks.0.attn.b_O")
    for t in range(n + 1):
        want = sum((beta ** (t - i) * -params["eta"] * resid[:, i, d] for i in range(min(t, n))),
                   torch.zeros_like(resid[:, 0, d]))
        assert relative(extra[:, t, d], want) <= RTOL64 or float(want.abs().max()) == 0


def test_float32_is_close():
    params = LSA_ALGORITHMS["lsa-gd"].resolve(d=4, n=10, steps=3, eta=0.5, w0=[1, -1, 0.5, 0])
    x, y, x_q = tasks(4, 10, 0, batch=256, dtype=torch.float32)
    _, cache = run("lsa-gd", params, x, y, x_q)
    ref = reference_prediction(params, x.double(), y.double(), x_q.double())
    assert relative(cache.prediction, ref) <= 1e-5


def test_gamma_formulas():
    assert ahn_gamma(np.eye(5), 20) == pytest.approx(eta_star(20, 5) * np.eye(5))
    assert eta_star(20, 5) == pytest.approx(20 / 26)
    sigma = np.diag([0.5, 1.0, 2.0])
    assert inverse_gamma(sigma, 10) == pytest.approx(eta_star(10, 3) * np.linalg.inv(sigma))
    best = one_step_risk(sigma, ahn_gamma(sigma, 10), 10)
    assert best == pytest.approx(np.trace(sigma) - np.trace(sigma @ ahn_gamma(sigma, 10) @ sigma))
    for bump in (0.02, -0.02):  # the formula is the minimiser
        assert one_step_risk(sigma, ahn_gamma(sigma, 10) + bump * np.eye(3), 10) > best
    assert one_step_risk(np.eye(5), eta_star(20, 5) * np.eye(5), 20) == pytest.approx(30 / 26)
    eta, loss = iid_one_step(10, 10, 1 / 12, 1 / 80)        # von Oswald's U(-1/2, 1/2) setting
    assert eta == pytest.approx(6.0606, abs=1e-4) and loss == pytest.approx(0.20623, abs=1e-5)


def test_uniform_one_step_risk_measured():
    """Compiled lsa-gd at eta* on x ~ U(-1/2, 1/2)^10, n = 10: half-MSE near 0.20623."""
    eta, loss = iid_one_step(10, 10, 1 / 12, 1 / 80)
    params = LSA_ALGORITHMS["lsa-gd"].resolve(d=10, n=10, eta=eta)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(50000, 11, 10, generator=g, dtype=torch.float64) - 0.5
    w = torch.randn(50000, 10, generator=g, dtype=torch.float64)
    y = (x * w[:, None]).sum(-1)
    _, cache = run("lsa-gd", params, x[:, :10], y[:, :10], x[:, 10])
    half_mse = 0.5 * float(((cache.prediction - y[:, 10]) ** 2).mean())
    assert half_mse == pytest.approx(loss, rel=0.03)


def test_checkpoint_round_trip(tmp_path):
    algorithm = LSA_ALGORITHMS["lsa-precond-gd"]
    params = algorithm.resolve(d=3, n=6, Sigma="1,2,0.5", steps=2)
    path = tmp_path / "pc.safetensors"
    save_checkpoint(algorithm.construct(params), path, "lsa-precond-gd", params)
    checkpoint = load_checkpoint(path)           # the one loader of every checkpoint
    config = checkpoint.metadata["rawc.config"]
    assert (config["attn_kind"], config["attn_mask"], config["act_fn"]) == ("linear", "context",
                                                                           "none")
    assert config["input_format"]["kind"] == "concat-xy"
    assert checkpoint.shape.attn_kind.is_linear
    net = checkpoint.model()
    x, y, x_q = tasks(3, 6, 1)
    assert relative(net(encode(x, y, x_q)).prediction,
                    reference_prediction(params, x, y, x_q)) <= RTOL64
    report = verify_checkpoint(checkpoint, trials=64)
    assert report["ok"] and len(report["checks"]) == 6


def test_bad_parameters():
    with pytest.raises(ProgramError, match="w0 has 1 entries"):
        LSA_ALGORITHMS["lsa-gd"].resolve(d=2, w0=[1.0])
    with pytest.raises(ProgramError, match="positive definite"):
        LSA_ALGORITHMS["lsa-precond-gd"].resolve(d=2, Sigma="1,-1")
    with pytest.raises(ProgramError, match="momentum"):
        LSA_ALGORITHMS["lsa-gd"].resolve(momentum=1.5)
    with pytest.raises(ProgramError, match="lsa-gd does not take --gamma"):
        LSA_ALGORITHMS["lsa-gd"].resolve(gamma=0.1)

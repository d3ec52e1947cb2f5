"""A trained one-layer LSA is the optimal (preconditioned) GD step (Mahankali; Ahn; ZFB)."""
from __future__ import annotations

import numpy as np

from verify.training.linear_attention import TrainConfig, effective_matrix, train


def test_isotropic_training_finds_eta_star():
    # d = 5, n = 20, noiseless, x ~ N(0, I): G_eff -> n/(n+d+1) I = 0.769 I (1500 steps, ~3 s)
    result = train(TrainConfig(steps=1500, eval_tasks=5000, seed=0))
    assert result.passed(spd_tol=1e-2, g_tol=0.05), (result.spd_over_mse, result.max_deviation)
    assert abs(np.diag(result.g_eff).mean() - 20 / 26) < 0.02


def test_non_isotropic_training_finds_ahn_gamma():
    # x ~ N(0, diag(0.5 .. 2)), w ~ N(0, I): G_eff -> ((1 + 1/n) S + tr S / n I)^-1 (~5 s)
    config = TrainConfig(steps=3000, eval_tasks=5000, seed=0, sigma=(0.5, 0.75, 1.0, 1.5, 2.0))
    result = train(config)
    assert result.passed(spd_tol=1e-2, g_tol=0.05), (result.spd_over_mse, result.max_deviation)
    assert result.mse_trained < 1.01 * result.mse_constructed


def test_effective_matrix_of_the_construction():
    # the compiled block's own G_eff is Gamma^T (read-out sign -1, W_PV[y,y] = -1)
    kq = np.zeros((3, 3)); kq[:2, :2] = [[1.0, 2.0], [3.0, 4.0]]
    pv = np.zeros((3, 3)); pv[2, 2] = -1.0
    assert np.array_equal(effective_matrix(kq, pv), kq[:2, :2])

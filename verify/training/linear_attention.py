"""``rawc train-lsa``: train one linear self-attention layer and compare it with the optimum.

Mahankali, Hashimoto and Ma (2023) prove that the best one-layer LSA on in-context linear
regression with x ~ N(0, I), w ~ N(0, I) is one GD step of size ``eta* = n/(n + d + 1 + s2)``;
for x ~ N(0, Sigma) it is one preconditioned step, ``Gamma = ((1 + 1/n) Sigma + ((tr Sigma +
s2)/n) I)^-1`` (w ~ N(0, I); Ahn et al., Zhang-Frei-Bartlett) or ``eta* Sigma^-1``
(w ~ N(0, Sigma^-1)). This command measures it.

The model is the block of ``construct.targets.linear.block`` with free ``W_KQ, W_PV`` (``(d+1) x (d+1)`` each,
init ``1e-3 N(0, 1)``) and read-out sign ``s = -1``. Its query prediction is

    yhat = s sum_i (W_PV e_i)_y (e_i^T W_KQ e_q) / n
         = (1/n) sum_i y_i x_i^T G_eff x_q + (terms in y_i^2 and x_i x_i^T, zero at the optimum),
    G_eff = s (W_PV[y,y] W_KQ[x,x] + W_PV[y,x]^T W_KQ[y,x])          (outer product),

so ``G_eff`` is the learned ``Gamma^T``. Training: Adam, MSE on the query, fresh tasks every
step. Comparison on fresh tasks: SPD = mean (yhat_trained - yhat_constructed)^2 relative to the
task MSE of the constructed ``lsa-precond-gd``, and ``max |G_eff - Gamma^T|``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from construct.model.checkpoint import save_checkpoint
from construct.model.inputs import concat_xy_tokens
from construct.model.linear import LinearConstruction
from construct.model.transformer import Transformer
from construct.targets.linear.block import LSABlock, LSAModel
from verify.devices import resolve_device
from construct.algorithms.linear_attention import LSA_ALGORITHMS, ahn_gamma, inverse_gamma, one_step_risk

PRIORS = ("identity", "inverse")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    d: int = 5
    n: int = 20
    steps: int = 3000
    batch: int = 512
    lr: float = 1e-3
    init: float = 1e-3
    noise: float = 0.0
    sigma: tuple[float, ...] | None = None   # diagonal of Sigma; None: identity
    prior: str = "identity"                  # w ~ N(0, I), or N(0, Sigma^-1)
    seed: int = 0
    eval_tasks: int = 20000
    device: str = "cpu"

    def sigma_matrix(self) -> np.ndarray:
        return np.eye(self.d) if self.sigma is None else np.diag(np.asarray(self.sigma, float))

    def optimal_gamma(self) -> np.ndarray:
        make = ahn_gamma if self.prior == "identity" else inverse_gamma
        return make(self.sigma_matrix(), self.n, self.noise ** 2)


def sample(config: TrainConfig, batch: int, g: torch.Generator, dtype=torch.float32):
    """``(x, y, x_q, y_q)`` of ``batch`` fresh tasks on the config's device."""
    d, n = config.d, config.n
    scale = torch.as_tensor(np.sqrt(np.diag(config.sigma_matrix())), dtype=torch.float64)
    x = torch.randn(batch, n + 1, d, generator=g, dtype=torch.float64) * scale
    w = torch.randn(batch, d, generator=g, dtype=torch.float64)
    if config.prior == "inverse":
        w = w / scale
    y = (x * w[:, None]).sum(-1) + config.noise * torch.randn(batch, n + 1, generator=g,
                                                              dtype=torch.float64)
    out = (x[:, :n], y[:, :n], x[:, n], y[:, n])
    return tuple(t.to(dtype=dtype, device=config.device) for t in out)


def predict(w_kq: torch.Tensor, w_pv: torch.Tensor, x, y, x_q, sign: float = -1.0):
    """The query prediction of one LSA block (module docstring), batched."""
    tokens = concat_xy_tokens(x, y, x_q)
    context, query = tokens[:, :-1], tokens[:, -1]
    scores = context @ (w_kq @ query[..., None])[..., 0][..., None]        # e_i^T W_KQ e_q
    values = context @ w_pv[-1]                                            # (W_PV e_i)_y
    return sign * (scores[..., 0] * values).sum(-1) / x.shape[-2]


def effective_matrix(w_kq: np.ndarray, w_pv: np.ndarray, sign: float = -1.0) -> np.ndarray:
    """``G_eff = s (W_PV[y,y] W_KQ[x,x] + W_PV[y,x]^T W_KQ[y,x])``."""
    return sign * (w_pv[-1, -1] * w_kq[:-1, :-1] + np.outer(w_pv[-1, :-1], w_kq[-1, :-1]))


@dataclasses.dataclass(frozen=True)
class TrainResult:
    config: TrainConfig
    w_kq: np.ndarray
    w_pv: np.ndarray
    seconds: float
    final_loss: float
    mse_trained: float
    mse_constructed: float
    risk_formula: float
    spd: float
    g_eff: np.ndarray
    gamma: np.ndarray

    @property
    def spd_over_mse(self) -> float:
        return self.spd / self.mse_constructed

    @property
    def max_deviation(self) -> float:
        return float(np.abs(self.g_eff - self.gamma.T).max())

    def passed(self, spd_tol: float = 1e-2, g_tol: float = 0.05) -> bool:
        return self.spd_over_mse < spd_tol and self.max_deviation < g_tol


def train(config: TrainConfig) -> TrainResult:
    g = torch.Generator().manual_seed(config.seed)
    D = config.d + 1
    w_kq = (config.init * torch.randn(D, D, generator=g)).to(config.device).requires_grad_()
    w_pv = (config.init * torch.randn(D, D, generator=g)).to(config.device).requires_grad_()
    optimizer = torch.optim.Adam([w_kq, w_pv], lr=config.lr)
    started = time.perf_counter()
    loss = torch.zeros(())
    for _ in tqdm(range(config.steps), desc="training", unit="step", file=sys.stderr,
                  leave=False, delay=2.0):
        x, y, x_q, y_q = sample(config, config.batch, g)
        loss = ((predict(w_kq, w_pv, x, y, x_q) - y_q) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - started
    kq, pv = (t.detach().cpu().double().numpy() for t in (w_kq, w_pv))
    return evaluate(config, kq, pv, seconds, float(loss.detach()))


def constructed(config: TrainConfig) -> LSAModel:
    """``lsa-precond-gd`` at the optimal Gamma of the config's data."""
    return LSA_ALGORITHMS["lsa-precond-gd"].model(constructed_params(config))


def constructed_params(config: TrainConfig) -> dict[str, object]:
    """The optimal preconditioned GD step the training should find: what a trained
    checkpoint claims to be (``rawc verify`` holds it to this closed form within ``--tol``)."""
    return LSA_ALGORITHMS["lsa-precond-gd"].resolve(d=config.d, n=config.n,
                                                    Gamma=config.optimal_gamma().tolist())


def trained_model(config: TrainConfig, w_kq: np.ndarray, w_pv: np.ndarray) -> LSAModel:
    return LSAModel(config.d, config.n, np.eye(config.d + 1), (LSABlock(w_kq, w_pv),), -1.0)


def evaluate(config: TrainConfig, w_kq: np.ndarray, w_pv: np.ndarray, seconds: float,
             final_loss: float) -> TrainResult:
    """Both models through the same checkpoint forward on fresh tasks (float64, CPU)."""
    g = torch.Generator().manual_seed(config.seed + 1)
    cpu = dataclasses.replace(config, device="cpu")
    x, y, x_q, y_q = sample(cpu, config.eval_tasks, g, torch.float64)
    tokens = concat_xy_tokens(x, y, x_q)
    preds = []
    for model in (trained_model(config, w_kq, w_pv), constructed(config)):
        preds.append(Transformer(model.shape, model.weights())(tokens).prediction)
    gamma = config.optimal_gamma()
    return TrainResult(config, w_kq, w_pv, seconds, final_loss,
                       float(((preds[0] - y_q) ** 2).mean()), float(((preds[1] - y_q) ** 2).mean()),
                       # with w ~ N(0, Sigma^-1), whitening makes the risk that of Sigma = I
                       one_step_risk(config.sigma_matrix(), gamma, config.n, config.noise ** 2)
                       if config.prior == "identity" else
                       one_step_risk(np.eye(config.d), gamma @ config.sigma_matrix(), config.n,
                                     config.noise ** 2),
                       float(((preds[0] - preds[1]) ** 2).mean()),
                       effective_matrix(w_kq, w_pv), gamma)


def side_by_side(left: np.ndarray, right: np.ndarray, titles: tuple[str, str]) -> str:
    rows = [f"{titles[0]:<{9 * left.shape[1]}}    {titles[1]}"]
    for a, b in zip(left, right):
        rows.append(" ".join(f"{v:8.4f}" for v in a) + "    " + " ".join(f"{v:8.4f}" for v in b))
    return "\n".join(rows)


def report(result: TrainResult, spd_tol: float, g_tol: float) -> str:
    c, G = result.config, result.g_eff
    off = G[~np.eye(c.d, dtype=bool)]
    lines = [f"rawc train-lsa: one linear self-attention layer, d = {c.d}, n = {c.n}, "
             f"noise std {c.noise}, x ~ N(0, {'I' if c.sigma is None else 'diag' + str(c.sigma)}), "
             f"w ~ N(0, {'I' if c.prior == 'identity' else 'Sigma^-1'})",
             f"  Adam lr {c.lr}, batch {c.batch}, {c.steps} steps on {c.device}: "
             f"{result.seconds:.2f} s, final batch loss {result.final_loss:.4f}",
             "", side_by_side(G, result.gamma.T, ("learned G_eff", "predicted Gamma^T (optimum)")),
             "",
             f"  G_eff diagonal mean {np.diag(G).mean():.4f} (predicted diagonal mean "
             f"{np.diag(result.gamma).mean():.4f}); off-diagonal mean |.| "
             f"{np.abs(off).mean() if off.size else 0.0:.4f}",
             f"  max |G_eff - Gamma^T| = {result.max_deviation:.4f} (tolerance {g_tol})",
             f"  task MSE on {c.eval_tasks} fresh tasks: trained {result.mse_trained:.4f}, "
             f"constructed lsa-precond-gd {result.mse_constructed:.4f}, formula "
             f"{result.risk_formula:.4f}",
             f"  SPD(trained, constructed) = {result.spd:.3g}; SPD / MSE = "
             f"{result.spd_over_mse:.3g} (tolerance {spd_tol})",
             "result: PASS: the trained layer is the optimal preconditioned GD step"
             if result.passed(spd_tol, g_tol) else "result: FAIL: not within tolerance"]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    if device == "cpu":  # small matrices: extra threads only contend on a busy CPU
        torch.set_num_threads(1)
    sigma = None if args.sigma is None else tuple(float(v) for v in args.sigma.split(","))
    if sigma is not None and len(sigma) != args.d:
        raise ValueError(f"--sigma has {len(sigma)} entries, d = {args.d}")
    config = TrainConfig(d=args.d, n=args.n, steps=args.steps, batch=args.batch, lr=args.lr,
                         noise=args.noise, sigma=sigma, prior=args.prior, seed=args.seed,
                         eval_tasks=args.eval_tasks, device=device)
    result = train(config)
    print(report(result, args.spd_tol, args.g_tol))
    if args.output:
        params = {k: v for k, v in dataclasses.asdict(config).items() if k != "device"}
        trained = LinearConstruction(
            "trained-lsa", trained_model(config, result.w_kq, result.w_pv),
            "# trained-lsa: one linear self-attention block, weights learned by Adam on "
            "in-context linear regression; prediction = -(query y-slot)\n")
        claim = constructed_params(config)
        save_checkpoint(trained, args.output, "trained-lsa", params,
                        {"trained": True, "claims": {"name": "lsa-precond-gd",
                                                     "params": claim}})
        print(f"  wrote {args.output}")
    return 0 if result.passed(args.spd_tol, args.g_tol) else 1

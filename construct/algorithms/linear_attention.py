"""Named linear-self-attention algorithms: GD, GD++ and preconditioned GD, one block per step.

Loss convention (von Oswald et al.): ``L(w) = 1/(2n) sum_i (w^T x_i - y_i)^2``, so a step of
size ``eta`` is ``w <- w - eta grad L(w) = w + (eta/n) sum_i r_i x_i`` with residuals
``r_i = y_i - w^T x_i``; preconditioned GD replaces ``eta`` by a matrix ``P``:
``w <- w + P (1/n) sum_i r_i x_i``.

Derivation of the construction. Embed ``[x, y] -> [x, y - w0^T x]``: every token's y-slot holds
its residual ``r_t = y_t - w_k^T x_t`` (the query's label is 0, so its slot is ``-w_k^T x_q``).
One block with ``W_KQ = [P^T 0; 0 0]`` and ``W_PV = [0 0; 0 -1]`` adds to every y-slot

    -(1/n) sum_i r_i x_i^T P^T x_t = -(w_{k+1} - w_k)^T x_t,

so after the block the slots hold the residuals of ``w_{k+1}``: K blocks are K steps, with the
same weights in every block. The prediction is ``-(query's y-slot) = w_K^T x_q`` (read-out
sign ``-1``). ``lsa-gd`` is ``P = eta I``, stored as ``W_KQ = [I 0; 0 0]``, ``W_PV[y,y] = -eta``.

GD++ (von Oswald): ``W_PV = [-gamma I 0; 0 -eta]`` also moves every x by
``x_t <- (I - gamma S) x_t``, ``S = (1/n) sum_i x_i x_i^T`` (``gamma`` on the mean; von
Oswald's ``gamma`` on the sum is ``gamma / n``), both updates from the tokens before the block.

Preconditioners (x ~ N(0, Sigma), noise variance s2): with ``w ~ N(0, I)`` the one-step risk
``s2 + tr S - 2 tr(S G S) + tr(S G A G^T)``, ``A = E[Shat^2] + s2 S/n = (1 + 1/n) S^2 +
((tr S + s2)/n) S``, is minimised by ``Gamma = ((1 + 1/n) Sigma + ((tr Sigma + s2)/n) I)^-1``
(Ahn et al.; Zhang-Frei-Bartlett; s2 = 0 in the papers); with ``w ~ N(0, Sigma^-1)``
whitening gives ``Gamma = eta* Sigma^-1``, ``eta* = n / (n + d + 1 + s2)`` (Mahankali et al.).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np
import torch

from construct.algorithms.family import Family
from construct.algorithms.parameters import Parameter, given_or_default
from construct.language.program import ProgramError
from construct.model.linear import LinearConstruction
from construct.targets.linear.block import LSABlock, LSAModel

FORMULAS = ("ahn", "inverse")


def eta_star(n: int, d: int, noise_var: float = 0.0) -> float:
    """Optimal one-step size for x ~ N(0, I), w ~ N(0, I): ``n / (n + d + 1 + s2)``."""
    return n / (n + d + 1 + noise_var)


def ahn_gamma(sigma: np.ndarray, n: int, noise_var: float = 0.0) -> np.ndarray:
    """``((1 + 1/n) Sigma + ((tr Sigma + s2)/n) I)^-1``, the optimal one-layer preconditioner."""
    sigma = np.asarray(sigma, dtype=np.float64)
    d = sigma.shape[0]
    return np.linalg.inv((1 + 1 / n) * sigma + (np.trace(sigma) + noise_var) / n * np.eye(d))


def inverse_gamma(sigma: np.ndarray, n: int, noise_var: float = 0.0) -> np.ndarray:
    """``eta* Sigma^-1``: optimal when the task prior is ``w ~ N(0, Sigma^-1)``."""
    sigma = np.asarray(sigma, dtype=np.float64)
    return eta_star(n, sigma.shape[0], noise_var) * np.linalg.inv(sigma)


def one_step_risk(sigma: np.ndarray, gamma: np.ndarray, n: int, noise_var: float = 0.0) -> float:
    """``E (yhat - y)^2`` of ``yhat = x_q^T Gamma (1/n) sum y_i x_i``, x ~ N(0, Sigma), w ~ N(0, I)."""
    S, G = np.asarray(sigma, dtype=np.float64), np.asarray(gamma, dtype=np.float64)
    A = (1 + 1 / n) * S @ S + (np.trace(S) + noise_var) / n * S
    return float(noise_var + np.trace(S) - 2 * np.trace(S @ G @ S) + np.trace(S @ G @ A @ G.T))


def iid_one_step(d: int, n: int, s: float, m4: float) -> tuple[float, float]:
    """``(eta*, half-MSE*)`` of one GD step from 0 for x with i.i.d. coordinates of second moment
    ``s`` and fourth moment ``m4``, w ~ N(0, I), noiseless: ``c = (m4 + (d-1)s^2)/n +
    (1 - 1/n)s^2``, ``eta* = s/c``, loss ``s d (1 - s^2/c) / 2`` (U(-1/2, 1/2): s = 1/12, m4 = 1/80)."""
    c = (m4 + (d - 1) * s * s) / n + (1 - 1 / n) * s * s
    return s / c, 0.5 * s * d * (1 - s * s / c)


# --------------------------------------------------------------------------- weights


def zeros(rows: int, cols: int) -> list[list[object]]:
    return [[0] * cols for _ in range(rows)]


def embed_matrix(d: int, w0: Sequence[object]) -> list[list[object]]:
    """``[[I, 0], [-w0^T, 1]]``: ``[x, y] -> [x, y - w0^T x]`` (entries of any scalar type)."""
    e = zeros(d + 1, d + 1)
    for k in range(d):
        e[k][k] = 1
        e[d][k] = -w0[k]
    e[d][d] = 1
    return e


def block_lists(d: int, kq_x: Sequence[Sequence[object]], pv_y: object,
                pv_x: object = 0) -> tuple[list[list[object]], list[list[object]]]:
    """``W_KQ = [kq_x 0; 0 0]``, ``W_PV = [pv_x I 0; 0 pv_y]`` as nested lists."""
    kq, pv = zeros(d + 1, d + 1), zeros(d + 1, d + 1)
    for i in range(d):
        for j in range(d):
            kq[i][j] = kq_x[i][j]
        pv[i][i] = pv_x
    pv[d][d] = pv_y
    return kq, pv


def _model(d: int, n: int, w0: Sequence[float], kq_x, pv_y: float, pv_x: float, steps: int,
           momentum: float) -> LSAModel:
    kq, pv = block_lists(d, kq_x, pv_y, pv_x)
    block = LSABlock(np.array(kq, dtype=np.float64), np.array(pv, dtype=np.float64))
    return LSAModel(d, n, np.array(embed_matrix(d, w0), dtype=np.float64), (block,) * steps,
                    readout=-1.0, momentum=momentum)


def build_gd(p: dict[str, object]) -> LSAModel:
    d = int(p["d"])
    return _model(d, int(p["n"]), p["w0"], np.eye(d), -float(p["eta"]), 0.0, int(p["steps"]),
                  float(p["momentum"]))


def build_gd_plus_plus(p: dict[str, object]) -> LSAModel:
    d = int(p["d"])
    return _model(d, int(p["n"]), [0.0] * d, np.eye(d), -float(p["eta"]), -float(p["gamma"]),
                  int(p["steps"]), float(p["momentum"]))


def build_precond(p: dict[str, object]) -> LSAModel:
    d = int(p["d"])
    gamma = np.asarray(p["Gamma"], dtype=np.float64)
    return _model(d, int(p["n"]), p["w0"], gamma.T, -1.0, 0.0, int(p["steps"]),
                  float(p["momentum"]))


# --------------------------------------------------------------------------- closed forms


def gd_iterates(x: torch.Tensor, y: torch.Tensor, P: torch.Tensor, w0: torch.Tensor,
                steps: int) -> list[torch.Tensor]:
    """``[w_0, ..., w_K]`` of preconditioned GD on ``L = 1/(2n) sum (w^T x_i - y_i)^2``, an
    explicit loop over steps and exemplars (``x [B, n, d]``, ``y [B, n]``, ``w [B, d]``)."""
    n = x.shape[-2]
    w = w0.expand(x.shape[0], -1).clone()
    out = [w]
    for _ in range(steps):
        grad = torch.zeros_like(w)
        for i in range(n):
            grad = grad + ((w * x[:, i]).sum(-1) - y[:, i])[:, None] * x[:, i] / n
        w = w - grad @ P.T
        out.append(w)
    return out


def gd_plus_plus_reference(x: torch.Tensor, y: torch.Tensor, x_q: torch.Tensor, eta: float,
                           gamma: float, steps: int) -> torch.Tensor:
    """GD++ from ``w0 = 0``: per step, from the tokens before it, ``r <- r - (eta/n) X X^T r``
    (the query's ``r_q <- r_q - (eta/n) x_q^T X^T r``) and ``x <- (I - gamma X^T X / n) x``;
    the prediction is ``-r_q``."""
    n = x.shape[-2]
    X, r, xq, rq = x.clone(), y.clone(), x_q.clone(), torch.zeros_like(y[:, 0])
    for _ in range(steps):
        S = X.transpose(-1, -2) @ X / n
        Xr = (X.transpose(-1, -2) @ r[..., None])[..., 0]                 # X^T r   [B, d]
        r, rq = (r - eta / n * (X @ Xr[..., None])[..., 0],
                 rq - eta / n * (xq * Xr).sum(-1))
        X, xq = X - gamma * X @ S, xq - gamma * (S @ xq[..., None])[..., 0]
    return -rq


def step_matrix(p: dict[str, object], d: int) -> np.ndarray | None:
    """The matrix ``P`` of ``w <- w + P (1/n) sum_i r_i x_i`` for GD (``eta I``) and
    preconditioned GD (``Gamma``); None for GD++ (it also moves the inputs)."""
    if p.get("Gamma") is not None:
        return np.asarray(p["Gamma"], dtype=np.float64)
    if "gamma" in p:
        return None
    return float(p["eta"]) * np.eye(d)


def reference_prediction(p: dict[str, object], x: torch.Tensor, y: torch.Tensor,
                         x_q: torch.Tensor) -> torch.Tensor:
    """The closed-form prediction of the construction with resolved parameters ``p`` (no
    momentum) on a batch: the explicit GD loop, or GD++'s."""
    P = step_matrix(p, x.shape[-1])
    if P is None:
        return gd_plus_plus_reference(x, y, x_q, float(p["eta"]), float(p["gamma"]),
                                      int(p["steps"]))
    P = torch.as_tensor(P, dtype=x.dtype, device=x.device)
    w = gd_iterates(x, y, P, torch.as_tensor(p["w0"], dtype=x.dtype, device=x.device),
                    int(p["steps"]))[-1]
    return (w * x_q).sum(-1)


# --------------------------------------------------------------------------- the registry


def _number(value: object) -> float:
    return float(Fraction(str(value))) if isinstance(value, str) else float(value)


def _matrix(value: object, d: int, what: str) -> np.ndarray:
    """A ``d x d`` matrix from a nested list, or from text ``"a,b;c,d"`` (rows) or ``"a,b"``
    (a diagonal)."""
    if isinstance(value, str):
        rows = [[_number(v) for v in row.split(",")] for row in value.split(";")]
        value = np.diag(rows[0]) if len(rows) == 1 and d > 1 else rows
    out = np.asarray(value, dtype=np.float64)
    if out.shape != (d, d) or not np.isfinite(out).all():
        raise ProgramError(f"{what} must be a finite {d} x {d} matrix, got shape "
                           f"{list(out.shape)}")
    return out


def _gd_update(p: dict[str, object]) -> list[str]:
    return [f"block: y_t <- y_t - (eta/n) sum_i y_i x_i^T x_t, eta = {p['eta']:.17g}"]


def _gd_plus_plus_update(p: dict[str, object]) -> list[str]:
    return [f"block: y_t <- y_t - (eta/n) sum_i y_i x_i^T x_t, eta = {p['eta']:.17g}",
            f"       x_t <- x_t - (gamma/n) sum_i x_i x_i^T x_t, gamma = {p['gamma']:.17g}"]


def _precond_update(p: dict[str, object]) -> list[str]:
    return [f"block: y_t <- y_t - (1/n) sum_i y_i x_i^T Gamma^T x_t, Gamma = {p['Gamma']}"]


@dataclasses.dataclass(frozen=True)
class LSAAlgorithm:
    """A named linear-self-attention construction: parameters, blocks, the update as text."""

    name: str
    summary: str
    parameters: tuple[Parameter, ...]
    build: Callable[[dict[str, object]], LSAModel]
    update: Callable[[dict[str, object]], list[str]]
    family: Family = Family.LINEAR_ATTENTION

    def resolve(self, **given: object) -> dict[str, object]:
        """Every parameter's value (floats, lists), the derived ones filled in."""
        p = given_or_default(self.name, self.parameters, given)
        d, n, steps = int(p["d"]), int(p["n"]), int(p["steps"])
        if d < 1 or n < 1 or steps < 1:
            raise ProgramError(f"d, n and steps must be >= 1, got {d}, {n}, {steps}")
        p.update(d=d, n=n, steps=steps, momentum=_number(p["momentum"]))
        if not 0 <= p["momentum"] < 1:
            raise ProgramError(f"momentum must lie in [0, 1), got {p['momentum']}")
        if "noise" in p:
            p["noise"] = _number(p["noise"])
        if "w0" in p:
            w0 = p["w0"] if p["w0"] is not None else [0.0] * d
            w0 = [_number(v) for v in (w0.split(",") if isinstance(w0, str) else w0)]
            if len(w0) != d:
                raise ProgramError(f"w0 has {len(w0)} entries, d = {d}")
            p["w0"] = w0
        if "eta" in p:
            p["eta"] = (eta_star(n, d, p.get("noise", 0.0) ** 2) if p["eta"] is None
                        else _number(p["eta"]))
        if "gamma" in p:
            p["gamma"] = _number(p["gamma"])
        if "Gamma" in p:
            self._preconditioner(p)
        return p

    @staticmethod
    def _preconditioner(p: dict[str, object]) -> None:
        d, n, s2 = int(p["d"]), int(p["n"]), float(p["noise"]) ** 2
        sigma = np.eye(d) if p["Sigma"] is None else _matrix(p["Sigma"], d, "Sigma")
        if np.any(np.linalg.eigvalsh((sigma + sigma.T) / 2) <= 0) or not np.allclose(sigma, sigma.T):
            raise ProgramError("Sigma must be symmetric positive definite")
        if p["formula"] not in FORMULAS:
            raise ProgramError(f"formula must be one of {', '.join(FORMULAS)}, got {p['formula']!r}")
        p["Sigma"] = sigma.tolist()
        if p["Gamma"] is not None:
            p["Gamma"] = _matrix(p["Gamma"], d, "Gamma").tolist()
        else:
            make = ahn_gamma if p["formula"] == "ahn" else inverse_gamma
            p["Gamma"] = make(sigma, n, s2).tolist()

    def model(self, params: dict[str, object]) -> LSAModel:
        return self.build(params)

    def describe(self, params: dict[str, object]) -> str:
        """The update the model runs, as text (the checkpoint's ``rawc.program``)."""
        d, steps = params["d"], params["steps"]
        lines = [f"# {self.name}: {steps} linear self-attention block(s), all equal; tokens "
                 "[x, y], query [x_q, 0]; y-slot = label - w_k^T x; prediction = -(query "
                 "y-slot)",
                 f"embed: [x, y] -> [x, y - w0^T x], w0 = {params.get('w0', [0.0] * d)}",
                 *self.update(params)]
        if params["momentum"]:
            lines.append(f"momentum: + sum_(i<t) beta^(t-i) v_i, beta = {params['momentum']}")
        return "\n".join(lines) + "\n"

    def construct(self, params: dict[str, object], config: object = None,
                  listing: bool = False) -> LinearConstruction:
        """The blocks for resolved ``params`` (``config``: unused; the blocks are exact)."""
        if listing:
            raise ProgramError(f"{self.name} has no paper listing (drop --listing)")
        return LinearConstruction(self.name, self.model(params), self.describe(params))


_COMMON = (Parameter("d", int, 2, "input dimension"),
           Parameter("n", int, 10, "number of exemplars (the 1/n of the mean loss)"),
           Parameter("steps", int, 1, "GD steps = layers (one block per step, all equal)"))
_MOMENTUM = Parameter("momentum", float, 0.0, "MoAttn beta in [0, 1) (Dai et al.); 0 = plain block")
_W0 = Parameter("w0", list, None, "start weights, comma separated (default 0)")

LSA_ALGORITHMS: dict[str, LSAAlgorithm] = {
    "lsa-gd": LSAAlgorithm(
        "lsa-gd", "K GD steps on 1/(2n) sum (w^T x_i - y_i)^2, one linear-attention layer per "
                  "step (von Oswald et al.)",
        (*_COMMON, Parameter("eta", float, None, "step size on the mean loss; default "
                                                 "n/(n+d+1) (optimal one step, N(0, I) data)"),
         _W0, _MOMENTUM),
        build_gd, _gd_update),
    "lsa-gd-plus-plus": LSAAlgorithm(
        "lsa-gd-plus-plus", "GD++: GD steps that also precondition the inputs, "
                            "x <- (I - gamma S) x (von Oswald et al.)",
        (*_COMMON, Parameter("eta", float, None, "step size on the mean loss; default n/(n+d+1)"),
         Parameter("gamma", float, 0.1, "input step on the mean, x <- (I - gamma S) x"),
         _MOMENTUM),
        build_gd_plus_plus, _gd_plus_plus_update),
    "lsa-precond-gd": LSAAlgorithm(
        "lsa-precond-gd", "preconditioned GD, w <- w - Gamma grad L: the optimal one-layer LSA "
                          "(Ahn et al.; Zhang-Frei-Bartlett; Mahankali et al.)",
        (*_COMMON, Parameter("Gamma", list, None, "preconditioner 'a,b;c,d' (default: from Sigma)",
                   flag="precond"),
         Parameter("Sigma", list, None, "covariance of x, 'a,b;c,d' or a diagonal 'a,b' "
                                        "(default I)", flag="sigma"),
         Parameter("formula", str, "ahn", "ahn: ((1+1/n)S + (trS+s2)/n I)^-1 (w ~ N(0, I)); "
                                          "inverse: eta* S^-1 (w ~ N(0, S^-1))"),
         Parameter("noise", float, 0.0, "label noise std (s2 = noise^2 in the formulas)",
                   flag="noise-std"),
         _W0, _MOMENTUM),
        build_precond, _precond_update),
}


def get_lsa_algorithm(name: str) -> LSAAlgorithm:
    try:
        return LSA_ALGORITHMS[name]
    except KeyError:
        raise ProgramError(f"unknown algorithm {name!r}; linear-attention algorithms: "
                           f"{', '.join(LSA_ALGORITHMS)}") from None

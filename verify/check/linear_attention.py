"""``rawc verify`` for linear-attention checkpoints: closed form, block loop, dual form, momentum.

Checks, on random tasks ``x ~ N(0, I)``, ``w ~ N(0, I)``, ``y = w^T x (+ noise)``:

1. **block loop**: every residual after every block against an explicit per-token loop of the
   block's definition, ``e_t + W_PV sum_{i<n} e_i (e_i^T W_KQ e_t)/n (+ sum_{i<t, i<n}
   beta^(t-i) W_PV e_i)`` with ``(W_KQ, W_PV)`` read back from the tensors (any checkpoint,
   trained ones included);
2. **closed form** (named algorithms): the prediction against the explicit GD / GD++ loop of
   ``construct.algorithms.linear_attention``;
3. **dual form** (Dai et al.; GD and preconditioned GD without momentum): block k's attention
   output at every token t is ``-dW_k x_t`` with ``dW_k = sum_i e_i (P x_i)^T``,
   ``e_i = (y_i - w_k^T x_i)/n`` (for ``P = eta I``: ``e_i = -eta dL/dyhat_i``, ``dW = sum e_i
   x_i^T``), i.e. the layer is ``F(x) = w_k^T x + dW_k x``, and ``w_k + dW_k`` is the next GD
   iterate;
4. **momentum** (linear-momentum blocks): MoAttn minus Attn equals the causal average
   ``m_t = beta (m_{t-1} + v_{t-1})`` over exemplar values, run as a recurrence.

Errors are batch-normwise relative: ``max|err| / max|ref|``. Tolerance ``1e-12`` in float64,
``1e-4`` in float32 (rounding only; the constructions are exact).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np
import torch

from construct.algorithms.linear_attention import (LSA_ALGORITHMS, gd_iterates,
                                                  reference_prediction, step_matrix)
from construct.model.checkpoint import Checkpoint
from construct.model.inputs import concat_xy_tokens
from construct.model.transformer import ForwardCache, Transformer
from construct.targets.linear.block import block_matrices
from verify.check.integrity import Integrity, IntegrityResult, check_integrity
from verify.check.verdict import judge_linear
from verify.devices import resolve_device

TOLERANCE = {"float64": 1e-12, "float32": 1e-4}
DEFAULT_TRAINED_TOL = 0.05  # relative: trained weights approximate their claim
MAX_TRIALS = 4096


@dataclasses.dataclass(frozen=True)
class Check:
    label: str
    max_abs: float
    max_rel: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_rel <= self.tolerance

    @classmethod
    def of(cls, label: str, value: torch.Tensor, reference: torch.Tensor,
           tolerance: float) -> Check:
        err = float((value.double() - reference.double()).abs().max())
        scale = float(reference.double().abs().max())
        return cls(label, err, err / scale if scale else err, tolerance)


def make_tasks(d: int, n: int, trials: int, seed: int, dtype: torch.dtype,
               device: torch.device, noise: float = 0.0):
    """``(x [B, n, d], y [B, n], x_q [B, d])``: x ~ N(0, I), w ~ N(0, I), y = w^T x + noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(trials, n, d, generator=g, dtype=torch.float64)
    w = torch.randn(trials, d, generator=g, dtype=torch.float64)
    y = (x * w[:, None]).sum(-1) + noise * torch.randn(trials, n, generator=g, dtype=torch.float64)
    x_q = torch.randn(trials, d, generator=g, dtype=torch.float64)
    return tuple(t.to(dtype=dtype, device=device) for t in (x, y, x_q))


def block_loop(model: Transformer, tokens: torch.Tensor, n: int) -> list[torch.Tensor]:
    """Residuals after embedding and every block by the block's definition, one token and one
    exemplar at a time (column convention)."""
    w = {k.replace("__", "."): v.double() for k, v in model.params.items()}
    momentum = model.shape.attn_momentum
    resid = tokens @ w["embed.W_E"] + w["pos_embed.W_pos"][:tokens.shape[-2]]
    out = [resid]
    for l in range(model.shape.n_layers):
        kq, pv = (torch.as_tensor(m, dtype=resid.dtype, device=resid.device)
                  for m in block_matrices({k: v.cpu() for k, v in w.items()}, l))
        columns = []
        for t in range(resid.shape[-2]):
            new = resid[:, t].clone()
            for i in range(n):
                score = ((resid[:, i] @ kq) * resid[:, t]).sum(-1) / model.shape.attn_scale
                new = new + score[:, None] * (resid[:, i] @ pv.T)
                if momentum and i < t:
                    new = new + momentum ** (t - i) * (resid[:, i] @ pv.T)
            columns.append(new)
        resid = torch.stack(columns, dim=-2)
        out.append(resid)
    return out


def dual_form_checks(params: dict[str, object], step: np.ndarray, cache, x, y, x_q,
                     tolerance: float) -> list[Check]:
    """Check 3 of the module docstring, block by block."""
    opts = {"dtype": x.dtype, "device": x.device}
    d, n = x.shape[-1], x.shape[-2]
    P = torch.as_tensor(step, **opts)
    iterates = gd_iterates(x, y, P, torch.as_tensor(params["w0"], **opts), int(params["steps"]))
    inputs = torch.cat([x, x_q[:, None]], dim=-2)
    got_w, got_attn, ref_w, ref_attn, ref_next = [], [], [], [], []
    for k, attn in enumerate(cache.attention):
        w_k = iterates[k]
        layer_input = cache.before_layer(k)
        errors = (y - (x * w_k[:, None]).sum(-1)) / n                       # e_i
        delta = (errors[..., None] * (x @ P.T)).sum(-2)                     # sum_i e_i (P x_i)^T
        got_w.append(-layer_input[:, -1, d])
        ref_w.append((w_k * x_q).sum(-1))
        got_attn.append(-attn[..., d])
        ref_attn.append((inputs * delta[:, None]).sum(-1))
        ref_next.append(w_k + delta)
    return [Check.of("dual form: layer input = w_k^T x_q", torch.stack(got_w),
                     torch.stack(ref_w), tolerance),
            Check.of("dual form: attention = dW_k x_t, all t", torch.stack(got_attn),
                     torch.stack(ref_attn), tolerance),
            Check.of("dual form: w_k + dW_k = w_{k+1} (GD loop)", torch.stack(ref_next),
                     torch.stack(iterates[1:]), tolerance)]


def momentum_check(model: Transformer, cache: ForwardCache, tolerance: float) -> Check:
    """MoAttn - Attn against the recurrence ``m_t = beta (m_{t-1} + v_{t-1})`` (exemplars only)."""
    got, ref = [], []
    beta = model.shape.attn_momentum
    for l in range(model.shape.n_layers):
        resid = cache.before_layer(l)
        p = f"blocks.{l}.attn."
        v = torch.einsum("...td,hde->...hte", resid, model.weight(p + "W_V")) \
            + model.weight(p + "b_V")[:, None, :]
        values = torch.einsum("...hte,hed->...td", v, model.weight(p + "W_O"))
        m, terms = torch.zeros_like(values[:, 0]), []
        for t in range(values.shape[-2]):
            terms.append(m)
            if t < values.shape[-2] - 1:                  # the query is no value
                m = beta * (m + values[:, t])
        plain = model.attention_output(resid, l, momentum=False) + model.weight(p + "b_O")
        got.append(cache.attention[l] - plain)
        ref.append(torch.stack(terms, dim=-2))
    return Check.of("momentum: MoAttn - Attn = sum beta^(t-i) v_i", torch.stack(got),
                    torch.stack(ref), tolerance)


def verify_checkpoint(checkpoint: Checkpoint, dtype: str = "float64", device: str = "cpu",
                      trials: int = 256, seed: int = 0, noise: float = 0.0,
                      trained_tol: float = DEFAULT_TRAINED_TOL) -> dict[str, object]:
    started = time.perf_counter()
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    model = checkpoint.model(torch_dtype, device)
    d, n = checkpoint.shape.d_in - 1, checkpoint.shape.n_ctx - 1
    x, y, x_q = make_tasks(d, n, trials, seed, torch_dtype, torch.device(device), noise)
    tokens = concat_xy_tokens(x, y, x_q)
    cache = model(tokens)
    tol = TOLERANCE[dtype]
    loop = block_loop(model, tokens.double(), n)
    checks = [Check.of(f"block loop: residual after layer {l}", cache.after_layer(l), ref, tol)
              for l, ref in enumerate(loop[1:])]
    name, params = checkpoint.algorithm.get("name"), checkpoint.algorithm.get("params") or {}
    if name in LSA_ALGORITHMS:
        params = LSA_ALGORITHMS[name].resolve(**params)
        x64, y64, q64 = (t.double() for t in (x, y, x_q))
        if not params["momentum"]:
            checks.append(Check.of("closed form: prediction", cache.prediction,
                                   reference_prediction(params, x64, y64, q64), tol))
        step = step_matrix(params, d)
        if step is not None and not params["momentum"]:
            checks += dual_form_checks(params, step, cache, x64, y64, q64, tol)
    claim = checkpoint.claim
    if claim and claim.get("name") in LSA_ALGORITHMS:
        # Trained weights: no description to rebuild; held to the claimed algorithm's closed
        # form within the user's tolerance, never to themselves.
        claimed = LSA_ALGORITHMS[claim["name"]].resolve(**claim.get("params", {}))
        x64, y64, q64 = (t.double() for t in (x, y, x_q))
        checks.append(Check.of(f"claimed {claim['name']}: prediction (--tol)", cache.prediction,
                               reference_prediction(claimed, x64, y64, q64), trained_tol))
    if model.shape.attn_momentum:
        checks.append(momentum_check(model, cache, tol))
    path = checkpoint.path
    return {"path": path, "algorithm": name, "params": params, "dtype": dtype, "device": device,
            "trials": trials, "seconds": time.perf_counter() - started,
            "checks": [dataclasses.asdict(c) | {"ok": c.ok} for c in checks],
            "ok": all(c.ok for c in checks)}


def format_report(report: dict[str, object]) -> str:
    head = f"{'check':<48} {'max abs':>10} {'max rel':>10} {'tolerance':>10}  ok"
    lines = [f"rawc verify: {report['algorithm']} (linear self-attention), {report['trials']} "
             f"tasks, {report['dtype']} on {report['device']}, {report['seconds']:.2f} s",
             head, "-" * len(head)]
    lines += [f"{c['label']:<48} {c['max_abs']:>10.3g} {c['max_rel']:>10.3g} "
              f"{c['tolerance']:>10.3g}  {'yes' if c['ok'] else 'NO'}" for c in report["checks"]]
    if "verdict" in report:
        lines += [report["integrity"], f"result: {report['verdict'].replace('_', ' ')}: "
                  f"{report['verdict_reason']}"]
    return "\n".join(lines)


def main(args: argparse.Namespace, checkpoint: Checkpoint) -> int:
    """``rawc verify`` on a linear-attention checkpoint (``verify.check.command``)."""
    device = resolve_device(getattr(args, "device", "cpu"))
    if device == "cpu":  # tiny per-token ops: extra threads only contend (18x on 2 busy cores)
        torch.set_num_threads(1)
    if args.trials > MAX_TRIALS:
        print(f"note: linear-attention verify runs at most {MAX_TRIALS} tasks (the block loop "
              f"is per token); running {MAX_TRIALS} of the {args.trials} asked for",
              file=sys.stderr)
    integrity = (IntegrityResult(Integrity.SKIPPED) if args.no_integrity
                 else check_integrity(checkpoint))
    tol = getattr(args, "tol", None)
    report = verify_checkpoint(checkpoint, args.dtype, device, min(args.trials, MAX_TRIALS),
                               args.seed, getattr(args, "noise", 0.0),
                               DEFAULT_TRAINED_TOL if tol is None else tol)
    judgement = judge_linear(report, integrity)
    report.update(integrity=integrity.line(), verdict=judgement.verdict.name,
                  verdict_reason=judgement.reason)
    print(json.dumps(report, indent=2, default=str) if getattr(args, "json", False)
          else format_report(report))
    return judgement.verdict.exit_code

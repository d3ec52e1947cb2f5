"""``rawc explain lsa-*|PATH``: a markdown page for a linear-self-attention model.

The page states the token layout and the read-out sign, the update each block runs, the
matrices of every block in column convention (``W_KQ``, ``W_PV``) beside the checkpoint tensors
they become (``W_Q = W_KQ^T``, ``W_K = I``, ``W_V = W_PV^T``, ``W_O = I``), the effective matrix
``G_eff`` (the preconditioner the block applies), the dual form, with ``--out`` a picture of
each block (``construct.teach.pictures.write_lsa_pictures``), and for a named algorithm its
sympy proof (``rawc prove``).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib

import numpy as np

from construct.targets.linear.block import block_matrices
from verify.proofs.linear_attention import PROVABLE


def _matrix(m: np.ndarray) -> str:
    rows = ["    " + " ".join(f"{v + 0.0:9.4g}" for v in row) for row in np.asarray(m)]
    return "```\n" + "\n".join(rows) + "\n```"


def explain_page(args: argparse.Namespace, write_pictures: bool = True) -> tuple[str, str]:
    """``(name, markdown)``; with ``args.out`` the page shows each block's picture, written to
    ``out/pictures`` unless ``write_pictures`` is off (``rawc docs --check`` only compares)."""
    from construct.algorithms.registry import algorithm_params, get_algorithm
    from construct.model.checkpoint import load_checkpoint

    if os.path.isfile(args.target):
        checkpoint = load_checkpoint(args.target)
        weights = {k: v.numpy() for k, v in checkpoint.weights.items()}
        shape, text = checkpoint.shape, checkpoint.metadata["rawc.program"]
        algorithm = checkpoint.algorithm.get("name")
        name = os.path.splitext(os.path.basename(args.target))[0]
        params: dict[str, object] = dict(checkpoint.algorithm.get("params") or {})
    else:
        lsa = get_algorithm(args.target)
        params = lsa.resolve(**algorithm_params(args))
        built = lsa.construct(params)
        weights, shape, text = built.weights, built.shape, built.program_text()
        algorithm = lsa.name
        # a momentum block gets its own page (and pictures) beside the plain one
        name = f"{algorithm}-momentum" if params.get("momentum") else algorithm
    d = shape.d_in - 1
    sign = float(weights["unembed.W_U"][d, 0])
    lines = [f"# `{name}` ({algorithm}): linear self-attention", "",
             f"Width d_model = {shape.d_model}, {shape.n_layers} block(s), attention kind "
             f"`{shape.attn_kind}`, mask `{shape.attn_mask}` (keys and values: the n = "
             f"{shape.n_ctx - 1} exemplars; the query is no key), scores divided by "
             f"attn_scale = {shape.attn_scale:g}; no MLP, no LayerNorm.", "",
             "Tokens `[x, y]`, query `[x_q, 0]` (`concat-xy`); the prediction is "
             f"`out[..., 0] = {sign:g} * (query's y-slot)` at the last position.", "",
             "## The update", "", "```", text.rstrip(), "```", "",
             "## Weights (column convention: e_t <- e_t + W_PV sum_i e_i (e_i^T W_KQ e_t) / n)",
             "", "Embedding E (resid = E [x; y]):", "", _matrix(weights["embed.W_E"].T), ""]
    blocks = []
    for l in range(shape.n_layers):
        kq, pv = block_matrices(weights, l)
        g_eff = sign * (pv[-1, -1] * kq[:-1, :-1] + np.outer(pv[-1, :-1], kq[-1, :-1]))
        blocks.append((kq, pv, g_eff))
        lines += [f"### Block {l}", "", "W_KQ (checkpoint: W_Q = W_KQ^T, W_K = I):", "",
                  _matrix(kq), "", "W_PV (checkpoint: W_V = W_PV^T, W_O = I):", "", _matrix(pv),
                  "", "G_eff = s (W_PV[y,y] W_KQ[x,x] + W_PV[y,x]^T W_KQ[y,x]), the "
                  "preconditioner applied to (1/n) sum_i r_i x_i:", "", _matrix(g_eff), ""]
    lines += ["## Dual form (Dai et al.)", "",
              "With the y-slots holding residuals r_i = y_i - w_k^T x_i, block k adds "
              "`-dW_k x_t` to every y-slot, `dW_k = sum_i e_i (P x_i)^T`, `e_i = r_i / n`: "
              "GD on a linear layer, written as linear attention with values e_i and keys "
              "x_i. `rawc verify` checks it on every block.", ""]
    if params.get("momentum"):
        beta = float(params["momentum"])
        lines += ["## Momentum (MoAttn, Dai et al.)", "",
                  f"Attention kind `{shape.attn_kind}` with beta = {beta:g}: each block adds, "
                  "beside the linear-attention sum, the average `sum_{i<t} beta^(t-i) v_i` "
                  "over the exemplars before position `t` (`W_V`, `W_O` as above). On the "
                  "y-slots this is the momentum term of heavy-ball GD: the update of block `k` "
                  "carries `beta`-weighted earlier exemplars' residuals. `rawc verify` checks "
                  "every block against the momentum recurrence written out in float64.", ""]
    out = getattr(args, "out", None)
    if out and importlib.util.find_spec("matplotlib") is not None:
        paths = [pathlib.Path(f"{name}-block{l}.png") for l in range(len(blocks))]
        if write_pictures:
            from construct.teach.pictures import write_lsa_pictures

            paths = write_lsa_pictures(name, blocks, pathlib.Path(out) / "pictures")
        lines += ["## Pictures", "",
                  "Each block's two matrices and the preconditioner they make: GD's `G_eff` "
                  "is a multiple of the identity (its step, the sign folded into the "
                  "read-out), preconditioned GD's is its `Gamma`; a zero row or column is a "
                  "token entry the block leaves alone.", ""]
        for picture in paths:
            lines += [f"![{picture.name}](pictures/{picture.name})", ""]
    if algorithm in PROVABLE and not params.get("momentum"):
        from verify.proofs.linear_attention import report

        proof, _ = report(algorithm, min(d, 2), 2, 1, times=False)
        lines += ["## Proof (`rawc prove " + algorithm + "`, d <= 2, n = 2, symbolic)", "",
                  "```", proof.rstrip(), "```", ""]
    return name, "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Print the page, or write ``<out>/<name>.md`` when ``args.out`` is given."""
    name, text = explain_page(args)
    out = getattr(args, "out", None)
    if not out:
        print(text, end="")
        return 0
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}.md")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    print(f"wrote {path}")
    return 0

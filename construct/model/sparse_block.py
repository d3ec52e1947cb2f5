"""A block's weights cut down to the entries that can contribute: the same function, less work.

Compiled weights are sparse: a ridge layer at d = 8 has 3 heads of 82 dimensions, yet every
head scores with 2 of them, and the MLP reads 17 to 74 of 242 residual rows. A dense forward
spends over 90 % of its multiplications on exact zeros. ``BlockPlan`` keeps, from the weights
alone (never from what the compiler meant them to do):

- per head, the score dimensions ``e`` with a nonzero in ``W_Q[:, e]`` or ``b_Q[e]`` *and* in
  ``W_K[:, e]`` or ``b_K[e]`` (any other ``e`` adds ``q_e k_e = 0`` to every score), and the
  residual rows that feed them;
- per head, the value dimensions with a nonzero in ``W_V[:, e]`` or ``b_V[e]`` *and* in
  ``W_O[e, :]``; the residual rows that feed them; the residual rows ``W_O`` writes;
- the MLP units with a nonzero in ``W_out[u, :]`` (a unit ``W_out`` ignores adds ``0``); the
  rows they read; the rows ``W_out`` writes.

Dropped terms are products with an exact zero weight, so in exact arithmetic nothing changes;
in floating point only the order of the remaining terms of each sum may differ from a dense
BLAS call (whose order is unspecified anyway). A trained model's dense weights keep every
index, and the plan costs what the dense forward costs. (A non-finite activation multiplied
by a dropped zero weight would give NaN densely and nothing here; any non-finite value still
reaches the output through the terms that are kept.)
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

Weight = Callable[[str], torch.Tensor]


def _nonzero(mask: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(mask, as_tuple=False).flatten()


@dataclasses.dataclass(frozen=True)
class HeadScores:
    """One head's score inputs: ``q = resid[:, rows_q] @ w_q + b_q`` (``k`` alike)."""

    rows_q: torch.Tensor
    w_q: torch.Tensor
    b_q: torch.Tensor
    rows_k: torch.Tensor
    w_k: torch.Tensor
    b_k: torch.Tensor

    def scores(self, resid: torch.Tensor) -> torch.Tensor:
        q = resid[..., self.rows_q] @ self.w_q + self.b_q
        k = resid[..., self.rows_k] @ self.w_k + self.b_k
        return q @ k.transpose(-1, -2)


@dataclasses.dataclass(frozen=True)
class BlockPlan:
    """The kept indices and weights of one block (see the module docstring)."""

    heads: tuple[HeadScores, ...]
    value_rows: torch.Tensor
    w_v: torch.Tensor          # [value_rows, sum of kept value dims]
    b_v: torch.Tensor
    value_split: tuple[int, ...]  # kept value dims per head
    w_o: torch.Tensor          # [sum of kept value dims, out_rows]
    out_rows: torch.Tensor
    mlp_in_rows: torch.Tensor
    w_in: torch.Tensor         # [mlp_in_rows, kept units]
    b_in: torch.Tensor
    w_out: torch.Tensor        # [kept units, mlp_out_rows]
    mlp_out_rows: torch.Tensor
    w_gate: torch.Tensor | None = None  # [mlp_in_rows, kept units]: a gated MLP

    @classmethod
    def of_block(cls, weight: Weight, prefix: str, has_mlp: bool, gated: bool = False
                 ) -> BlockPlan:
        """Read ``blocks.{l}.`` weights (``prefix``) and keep what can contribute (a gated
        MLP's unit reads the rows of ``W_gate`` and of ``W_in``)."""
        p = prefix + "attn."
        w_q, w_k, w_v, w_o = (weight(p + n) for n in ("W_Q", "W_K", "W_V", "W_O"))
        b_q, b_k, b_v = (weight(p + n) for n in ("b_Q", "b_K", "b_V"))
        heads, values, biases, outs, split = [], [], [], [], []
        for h in range(w_q.shape[0]):
            dims = _nonzero(((w_q[h] != 0).any(0) | (b_q[h] != 0))
                            & ((w_k[h] != 0).any(0) | (b_k[h] != 0)))
            rows_q = _nonzero((w_q[h][:, dims] != 0).any(1))
            rows_k = _nonzero((w_k[h][:, dims] != 0).any(1))
            heads.append(HeadScores(rows_q, w_q[h][rows_q][:, dims], b_q[h][dims],
                                    rows_k, w_k[h][rows_k][:, dims], b_k[h][dims]))
            kept = _nonzero(((w_v[h] != 0).any(0) | (b_v[h] != 0)) & (w_o[h] != 0).any(1))
            values.append(w_v[h][:, kept])
            biases.append(b_v[h][kept])
            outs.append(w_o[h][kept])
            split.append(len(kept))
        all_values, all_outs = torch.cat(values, 1), torch.cat(outs, 0)
        value_rows = _nonzero((all_values != 0).any(1))
        out_rows = _nonzero((all_outs != 0).any(0))
        if has_mlp:
            w_in, b_in, w_out = (weight(prefix + n) for n in ("mlp.W_in", "mlp.b_in", "mlp.W_out"))
            units = _nonzero((w_out != 0).any(1))
            w_gate = weight(prefix + "mlp.W_gate") if gated else None
            reads = (w_in[:, units] != 0) | ((w_gate[:, units] != 0) if gated else False)
            in_rows = _nonzero(reads.any(1))
            mlp_out_rows = _nonzero((w_out != 0).any(0))
            w_in, b_in, w_out = w_in[in_rows][:, units], b_in[units], w_out[units][:, mlp_out_rows]
            if gated:
                w_gate = w_gate[in_rows][:, units]
        else:
            empty = torch.zeros(0, dtype=torch.long, device=w_q.device)
            in_rows = mlp_out_rows = empty
            w_in = w_out = b_in = w_q.new_zeros(0)
            w_gate = None
        return cls(tuple(heads), value_rows, all_values[value_rows], torch.cat(biases),
                   tuple(split), all_outs[:, out_rows], out_rows, in_rows, w_in, b_in, w_out,
                   mlp_out_rows, w_gate)

    def values(self, resid: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each head's kept values ``[..., T, kept dims]``."""
        v = resid[..., self.value_rows] @ self.w_v + self.b_v
        return torch.split(v, self.value_split, dim=-1)

    def write_heads(self, z: tuple[torch.Tensor, ...], like: torch.Tensor) -> torch.Tensor:
        """``sum_h z_h W_O[h]`` as a full-width residual update."""
        out = like.new_zeros(like.shape)
        out[..., self.out_rows] = torch.cat(z, -1) @ self.w_o
        return out

    def mlp(self, normed: torch.Tensor, act: Callable[[torch.Tensor], torch.Tensor],
            like: torch.Tensor) -> torch.Tensor:
        """``act(normed W_in + b_in) W_out`` over the kept units, full width; gated:
        ``(act(normed W_gate) * (normed W_in) + b_in) W_out``."""
        out = like.new_zeros(like.shape)
        read = normed[..., self.mlp_in_rows]
        if self.w_gate is not None:
            hidden = act(read @ self.w_gate) * (read @ self.w_in) + self.b_in
        else:
            hidden = act(read @ self.w_in + self.b_in)
        out[..., self.mlp_out_rows] = hidden @ self.w_out
        return out

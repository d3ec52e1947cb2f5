"""Checks on the data a compiled model is given: shape, finiteness, the declared bound.

The error bounds hold only for inputs whose entries are at most the declared bound ``B`` in
magnitude, for sequences no longer than ``n_ctx``, laid out as x-token ``[0, x]``, y-token
``[y, 0]``. Anything else is refused with a message that names the problem and where it is.
"""
from __future__ import annotations

import torch


class InputError(ValueError):
    """Model input that the compiled weights are not valid for."""


def validate_tokens(tokens: torch.Tensor, d: int, bound: float, n_ctx: int,
                    prior_column: bool = False) -> None:
    if not isinstance(tokens, torch.Tensor):
        raise InputError(f"tokens must be a torch tensor, got {type(tokens).__name__}")
    if tokens.dim() < 2 or tokens.shape[-1] != d + 1:
        raise InputError(f"tokens must have shape [..., T, d + 1] = [..., T, {d + 1}], "
                         f"got {list(tokens.shape)}")
    n_tokens = tokens.shape[-2]
    if not 1 <= n_tokens <= n_ctx:
        raise InputError(f"sequence length {n_tokens} is outside 1..n_ctx = {n_ctx}")
    if not tokens.is_floating_point():
        raise InputError(f"tokens must be floating point, got {tokens.dtype}")
    bad = ~torch.isfinite(tokens)
    if bad.any():
        where = [int(i) for i in bad.nonzero()[0]]
        kind = "NaN" if torch.isnan(tokens).any() else "inf"
        raise InputError(f"tokens contain {kind} (first at index {where})")
    peak = float(tokens.abs().max())
    if peak > bound:
        where = [int(i) for i in (tokens.abs() == peak).nonzero()[0]]
        raise InputError(f"input entry {peak:.6g} at index {where} exceeds the declared bound "
                         f"{bound:g}; the error bounds do not hold there (compile with a larger "
                         "--bound)")
    first = 1 if prior_column else 0
    if prior_column and (tokens[..., 0, :] != 0).any():
        raise InputError("the prior column (position 0) must be a zero token; its content "
                         "comes from the weights")
    layout = torch.zeros_like(tokens, dtype=torch.bool)
    layout[..., first::2, 0] = True  # x-tokens carry no label
    layout[..., first + 1::2, 1:] = True  # y-tokens carry no features
    if (tokens[layout] != 0).any():
        parity = ("odd", "even") if prior_column else ("even", "odd")
        raise InputError(f"tokens break the interleaved layout: x-tokens ({parity[0]} "
                         f"positions) must be [0, x] and y-tokens ({parity[1]} positions) "
                         "[y, 0]")


def concat_xy_tokens(x: torch.Tensor, y: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
    """``concat-xy`` tokens ``[B, n + 1, d + 1]`` from ``x [B, n, d]``, ``y [B, n]``,
    ``x_q [B, d]``: exemplars ``[x_i, y_i]``, then the query ``[x_q, 0]``."""
    context = torch.cat([x, y[..., None]], dim=-1)
    query = torch.cat([x_q, torch.zeros_like(x_q[..., :1])], dim=-1)[..., None, :]
    return torch.cat([context, query], dim=-2)

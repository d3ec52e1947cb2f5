"""The transformer a target builds: its block kinds and its shape, as typed values.

Every target (the paper's softmax + GeLU + LayerNorm block, linear attention) produces weights
for one ``ModelShape``; the model, the checkpoint reader and writer and the verifier read the
same record. The enums are ``StrEnum`` so each value *is* the string the checkpoint format
(``shared/DESIGN.md``) writes: ``json.dumps(AttnKind.SOFTMAX) == '"softmax"'``.
"""
from __future__ import annotations

import dataclasses
import enum


class AttnKind(enum.StrEnum):
    """How scores become weights: ``softmax`` (the paper's heads) or ``linear`` (raw scores,
    von Oswald et al.); ``linear-momentum`` adds MoAttn's average of earlier values."""

    SOFTMAX = "softmax"
    LINEAR = "linear"
    LINEAR_MOMENTUM = "linear-momentum"

    @property
    def is_linear(self) -> bool:
        return self is not AttnKind.SOFTMAX


class AttnMask(enum.StrEnum):
    """``causal``: position t sees 0..t. ``context``: every position sees the exemplar tokens
    only (all but the last, the query)."""

    CAUSAL = "causal"
    CONTEXT = "context"


class Activation(enum.StrEnum):
    """The MLP nonlinearity; ``none`` says the block has no MLP (attention only)."""

    GELU = "gelu"            # erf GeLU, x Phi(x)
    GELU_NEW = "gelu_new"    # tanh approximation (GPT-2)
    RELU = "relu"
    SILU = "silu"
    NONE = "none"


class InputFormat(enum.StrEnum):
    """How task data become token vectors (``DESIGN.md``, "What goes in and what comes out")."""

    INTERLEAVED_XY = "interleaved-xy"  # x-token [0, x], y-token [y, 0], predictions at x-tokens
    CONCAT_XY = "concat-xy"            # [x, y] per exemplar, query [x_q, 0] last


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """Everything the forward needs besides the tensors (``rawc.config`` in a checkpoint)."""

    d_model: int
    n_layers: int
    n_heads: int
    d_head: int
    d_mlp: int
    n_ctx: int
    d_in: int
    d_out: int
    act_fn: Activation
    ln1: bool
    ln2: bool
    ln_eps: float
    attn_kind: AttnKind = AttnKind.SOFTMAX
    attn_mask: AttnMask = AttnMask.CAUSAL
    attn_scale: float = 1.0
    prior_column: bool = False
    loop: tuple[int, int, int] | None = None  # (first block, blocks, times): a shared stage
    input_format: InputFormat = InputFormat.INTERLEAVED_XY
    attn_momentum: float = 0.0  # MoAttn's beta (linear-momentum only)
    gated_mlp: bool = False  # act(z W_gate) * (z W_in) + b_in (TransformerLens GatedMLP)

    def __post_init__(self) -> None:
        # Typed fields, whatever the caller passed: a bare string from JSON becomes its enum
        # (and an unknown one fails here, naming the field).
        for field, kind in (("act_fn", Activation), ("attn_kind", AttnKind),
                            ("attn_mask", AttnMask), ("input_format", InputFormat)):
            value = getattr(self, field)
            try:
                object.__setattr__(self, field, kind(value))
            except ValueError:
                known = ", ".join(v.value for v in kind)
                raise ValueError(f"{field} {value!r} is not one of {known}") from None

        if self.gated_mlp and not self.has_mlp:
            raise ValueError("gated_mlp needs an MLP (act_fn is none)")
        if self.attn_momentum and self.attn_kind is not AttnKind.LINEAR_MOMENTUM:
            raise ValueError(f"attn_momentum {self.attn_momentum} needs attn_kind "
                             f"{AttnKind.LINEAR_MOMENTUM.value}, not {self.attn_kind.value}")

    @property
    def executed_blocks(self) -> tuple[int, ...]:
        """The stored block each executed layer runs: a loop's blocks repeat ``times`` times."""
        if self.loop is None:
            return tuple(range(self.n_layers))
        first, length, times = self.loop
        body = tuple(range(first, first + length))
        return tuple(range(first)) + body * times + tuple(range(first + length, self.n_layers))

    @property
    def depth(self) -> int:
        return len(self.executed_blocks)

    @property
    def has_mlp(self) -> bool:
        return self.act_fn is not Activation.NONE

    def to_json(self) -> dict[str, object]:
        """The ``rawc.config`` object (enum values as their strings)."""
        out: dict[str, object] = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self)
            if f.name not in ("prior_column", "input_format", "attn_momentum")}
        out = {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in out.items()}
        out["loop"] = (None if self.loop is None else
                       dict(zip(("first", "layers", "times"), self.loop)))
        if self.input_format is InputFormat.INTERLEAVED_XY:
            out["input_format"] = {"kind": self.input_format.value,
                                   "prior_column": self.prior_column}
        else:
            out["input_format"] = {"kind": self.input_format.value, "query": "[x_q, 0]",
                                   "prediction": "out[..., 0] at the last position"}
        if self.attn_kind.is_linear:
            out["attn_momentum"] = float(self.attn_momentum)
        return out

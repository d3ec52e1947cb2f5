"""The constants of a compilation, in one frozen record.

| constant | used by | error term it controls |
|---|---|---|
| ``attn_hardness`` N | every attention head (position codes) | softmax leak ``<= 2 e^-N`` (dyadic code: ``n_ctx e^-2N``) |
| ``mul_scale`` eps | ``mul`` (GeLU product, Lemma 4) | ``1.5 eps^2`` relative (``3.1 eps^4`` with ``richardson``), rounding ``~u/eps`` |
| ``div_scale`` N_div | ``div`` (LayerNorm division, Lemma 8) | ``E / (4 N_div^2 m^2)`` relative |
| ``ln_pad`` P | ``mul`` in models with LayerNorm (bypass, Lemma 6) | ``E / (4 P^2)`` relative |

``for_dtype`` balances the approximation terms against float rounding (unit roundoff ``u``):
the one-scale GeLU product error ``1.5 eps^2 + c u / eps`` is smallest near
``eps = (c u / 3)^(1/3)`` (``1e-5`` in float64, ``1e-2`` in float32); the Richardson product's
``3.1 eps^4 + 1.5 c u / eps`` near ``eps = (c u / 8)^(1/5)``, where a single product measures
(``2e5`` pairs on ``[-1, 1]^2``) ``2.2e-12`` in float64 at ``5e-4`` against ``1.4e-10`` for the
one-scale trick at ``1e-5``, and ``1.1e-5`` in float32 at ``3e-2`` against ``1.3e-4`` at
``1e-2``.
The pads ``P`` only need to dwarf the other rows' energy (``E + S^2/2`` with zero-mean pads):
their own rounding, ``u P``, enters LayerNorm's mean divided by the width and the scale
relatively, so float32 takes ``P = 1e7`` (SM float32 error at d = 4: ``6.2e-4`` with
``1e5``, ``3.6e-4`` with ``1e7``; ``rawc bench``).
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Literal

import torch

DType = Literal["float64", "float32"]
DTYPES: tuple[str, ...] = ("float64", "float32")
SCHEDULES = ("packed", "sequential")
FORMS = ("stacked", "shared")


class MlpTarget(enum.StrEnum):
    """The MLP a compilation lowers ``mul`` and ``div`` into (``shared/DESIGN.md``).

    ``paper``: ``GeLU(z W_in + b_in) W_out``, products by the GeLU trick (Lemma 4, error
    ``O(eps^2)`` plus rounding ``~u / eps``). ``gated``: TransformerLens's ``GatedMLP``,
    ``(relu(z W_gate) * (z W_in) + b_in) W_out``, products exact up to rounding
    (``relu(a) b - relu(-a) b = a b``)."""

    PAPER = "paper"
    GATED = "gated"


class GeluProduct(enum.StrEnum):
    """How the ``paper`` target's GeLU units multiply (``construct.compiler.error_models``).

    ``lemma4``: the paper's trick at one pre-scale ``eps``, error ``O(eps^2)``.
    ``richardson``: the same units at ``eps`` and ``2 eps``, combined as
    ``(4 P(eps) - P(2 eps)) / 3`` so the ``eps^2`` terms cancel: error ``O(eps^4)``, twice the
    units, rounding ``1.5`` times the one-scale trick's at the same ``eps``.
    ``polarized`` (the default): four units per scalar product,
    ``G(x+y) + G(-x-y) - G(x-y) - G(y-x)``, whose linear parts cancel pair by pair, at
    ``eps`` and ``2 eps`` like ``richardson``: no unit is shared across a matrix product, but
    the outputs ``W_out`` sums are a quarter as large and so is their rounding (float32
    sherman-morrison d = 32, ``rawc bench targets --trials 256``: ``2.6e-4`` against
    ``1.9e-3``)."""

    LEMMA4 = "lemma4"
    RICHARDSON = "richardson"
    POLARIZED = "polarized"

    @property
    def polarized(self) -> bool:
        """Whether the units are the four-unit polarization (else Lemma 4's three)."""
        return self is GeluProduct.POLARIZED


class PositionCode(enum.StrEnum):
    """The position code of point reads (``construct.compiler.position_codes``).

    ``quadratic``: keys ``(j, j^2)``, gap ``N``, two rows; its scores grow as ``N n_ctx^2``.
    ``dyadic``: keys ``cos, sin(2 pi j / 2^f)``, gap ``2 N`` at every length, ``2F - 1`` rows
    per point read map (``2^F >= n_ctx``)."""

    QUADRATIC = "quadratic"
    DYADIC = "dyadic"

    @classmethod
    def for_context(cls, n_ctx: int, hardness: float) -> PositionCode:
        """Quadratic while float32 rounds its scores (``4 u 3 N n_ctx^2``) by less than half
        its gap ``N`` (``n_ctx <= 836``), dyadic beyond."""
        rounding = 4 * unit_roundoff("float32") * 3 * hardness * n_ctx ** 2
        return cls.QUADRATIC if rounding <= hardness / 2 else cls.DYADIC


def unit_roundoff(dtype: str) -> float:
    return {"float64": 2.0 ** -53, "float32": 2.0 ** -24}[dtype]


def torch_dtype(dtype: str) -> torch.dtype:
    try:
        return {"float64": torch.float64, "float32": torch.float32}[dtype]
    except KeyError:
        raise ValueError(f"dtype must be float64 or float32, got {dtype!r}") from None


@dataclasses.dataclass(frozen=True)
class CompileConfig:
    """Every constant the weights depend on besides the program.

    ``input_bound`` is the declared bound ``B`` on every input entry; ``n_ctx`` the longest
    sequence the position table holds; ``schedule`` is ``packed`` (independent ops share a
    layer, Lemma 7, an MLP op may follow an attention op in the same layer, and affine maps
    fold into the weights of the half that computes their inputs) or
    ``sequential`` (one op per layer, the paper's Lemma 1 layout). ``form`` matters for
    programs with a loop: ``stacked`` compiles the unrolled program (every layer its own
    weights, packed across stage boundaries); ``shared`` gives every iteration the same layers
    and stores them once, so the parameter count does not grow with the repeat count.
    """

    input_bound: float = 4.0
    n_ctx: int = 256
    attn_hardness: float = 64.0
    mul_scale: float = 5e-4
    div_scale: float = 1e9
    ln_pad: float = 1e9
    ln_eps: float = 1e-5
    schedule: str = "packed"
    dtype: DType = "float64"
    form: str = "stacked"
    target: MlpTarget = MlpTarget.PAPER
    gelu_product: GeluProduct = GeluProduct.POLARIZED
    position_code: PositionCode | None = None  # None: the one n_ctx calls for (``code``)
    # Newton steps of the gated target's division (``construct.compiler.newton_division``);
    # None: the dtype's (``division_steps``)
    newton_steps: int | None = None

    def __post_init__(self) -> None:
        # A checkpoint's constants arrive as JSON: a string or null where a number belongs
        # is named here, not compared.
        for name in ("input_bound", "attn_hardness", "mul_scale", "div_scale", "ln_pad",
                     "ln_eps", "n_ctx"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if not 0 < self.input_bound < float("inf"):
            raise ValueError(f"input bound must be a finite number > 0, got {self.input_bound}")
        if self.n_ctx < 2:
            raise ValueError(f"n_ctx must be >= 2, got {self.n_ctx}")
        for name in ("attn_hardness", "mul_scale", "div_scale", "ln_pad"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        try:
            object.__setattr__(self, "gelu_product", GeluProduct(self.gelu_product))
        except ValueError:
            raise ValueError("gelu_product must be one of "
                             f"{', '.join(g.value for g in GeluProduct)}, "
                             f"got {self.gelu_product!r}") from None
        largest_scale = 0.25 / (1 if self.gelu_product is GeluProduct.LEMMA4 else 2)
        if self.mul_scale > largest_scale:
            raise ValueError(f"mul_scale must be <= {largest_scale} with the "
                             f"{self.gelu_product.value} product (the GeLU series bound needs "
                             "|z| <= 1 at every pre-scale)")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {self.form!r}")
        try:
            object.__setattr__(self, "target", MlpTarget(self.target))
        except ValueError:
            raise ValueError(f"target must be one of {', '.join(t.value for t in MlpTarget)}, "
                             f"got {self.target!r}") from None
        torch_dtype(self.dtype)
        if self.newton_steps is not None and (isinstance(self.newton_steps, bool) or not
                                              isinstance(self.newton_steps, int)
                                              or not 1 <= self.newton_steps <= 8):
            raise ValueError(f"newton_steps must be an integer from 1 to 8, got "
                             f"{self.newton_steps!r}")
        try:
            if self.position_code is not None:
                object.__setattr__(self, "position_code", PositionCode(self.position_code))
        except ValueError:
            raise ValueError("position_code must be one of "
                             f"{', '.join(c.value for c in PositionCode)}, "
                             f"got {self.position_code!r}") from None

    @classmethod
    def for_dtype(cls, dtype: DType = "float64", **overrides: object) -> CompileConfig:
        """Defaults tuned so the approximation terms sit near the dtype's rounding floor."""
        try:
            rule = GeluProduct(overrides.get("gelu_product", GeluProduct.POLARIZED))
        except ValueError:  # the constructor names the bad value
            rule = GeluProduct.POLARIZED
        mul_scale = {("float64", GeluProduct.LEMMA4): 1e-5, ("float32", GeluProduct.LEMMA4): 1e-2,
                     ("float64", GeluProduct.RICHARDSON): 5e-4,
                     ("float32", GeluProduct.RICHARDSON): 3e-2,
                     ("float64", GeluProduct.POLARIZED): 5e-4,
                     ("float32", GeluProduct.POLARIZED): 3e-2}[dtype, rule]
        tuned = {"float64": dict(div_scale=1e9, ln_pad=1e9),
                 "float32": dict(div_scale=1e6, ln_pad=1e7)}[dtype]
        return cls(**{**tuned, "mul_scale": mul_scale, "dtype": dtype, **overrides})

    @property
    def division_steps(self) -> int:
        """Newton steps after the gated division's hinge seed: 3 in float64, 2 in float32
        (each squares the seed's relative error ``eps0``; ``eps0^(2^k) <= u / 16``, so fewer
        steps take more knots, and a sum of more knots rounds more:
        ``construct.compiler.newton_division``)."""
        if self.newton_steps is not None:
            return self.newton_steps
        return {"float64": 3, "float32": 2}[self.dtype]

    @property
    def code(self) -> PositionCode:
        """The position code in force: the one given, else the one ``n_ctx`` calls for; the
        gated target's is dyadic at any length (its table holds cosines, where the quadratic
        code's ``W_K`` holds ``n_ctx^2``: 6.6e4 at ``n_ctx = 256``, and the gated target
        promises weights below ``1e4``)."""
        if self.position_code is not None:
            return self.position_code
        if self.target is MlpTarget.GATED:
            return PositionCode.DYADIC
        return PositionCode.for_context(self.n_ctx, self.attn_hardness)

    def replace(self, **changes: object) -> CompileConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "target": self.target.value,
                "gelu_product": self.gelu_product.value,
                "position_code": self.code.value}

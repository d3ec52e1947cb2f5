"""The ``rawc.checkpoint/1`` format: which tensors a config implies, and the config's JSON.

``expected_shapes`` is the DESIGN.md tensor table; ``check_tensors`` holds a state dict to it;
``shape_from_config`` reads ``rawc.config`` back into a ``ModelShape``, every field checked, so
a bad file fails with a message that names the field. JSON values are strict: fractions become
``"p/q"``, non-finite floats the strings ``"Infinity"``, ``"-Infinity"``, ``"NaN"``.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import math
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from construct.targets.architecture import InputFormat, ModelShape

SCHEMA = "rawc.checkpoint/1"

_INT_FIELDS = ("d_model", "n_layers", "n_heads", "d_head", "d_mlp", "n_ctx", "d_in", "d_out")
_BOOL_FIELDS = ("ln1", "ln2")
_FLOAT_FIELDS = ("ln_eps", "attn_scale")


PROGRAM_FILE_SOURCE = "program-file"
"""``rawc.algorithm["source"]`` of a user's own program (absent for a named algorithm): no
closed form exists, so ``rawc verify`` holds the model to the interpreter alone."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or read; the message names the problem."""


def expected_shapes(shape: ModelShape) -> dict[str, tuple[int, ...]]:
    """Every tensor a checkpoint of this shape holds, with its shape (DESIGN.md table)."""
    D, H, dh, M = shape.d_model, shape.n_heads, shape.d_head, shape.d_mlp
    out: dict[str, tuple[int, ...]] = {
        "embed.W_E": (shape.d_in, D),
        "pos_embed.W_pos": (shape.n_ctx, D),
    }
    for l in range(shape.n_layers):
        p = f"blocks.{l}."
        for name in ("W_Q", "W_K", "W_V"):
            out[p + "attn." + name] = (H, D, dh)
            out[p + "attn.b_" + name[-1]] = (H, dh)
        out[p + "attn.W_O"] = (H, dh, D)
        out[p + "attn.b_O"] = (D,)
        for ln in ("ln1", "ln2"):
            if getattr(shape, ln):
                out[p + ln + ".w"] = (D,)
                out[p + ln + ".b"] = (D,)
        out[p + "mlp.W_in"] = (D, M)
        if shape.gated_mlp:
            out[p + "mlp.W_gate"] = (D, M)
        out[p + "mlp.b_in"] = (M,)
        out[p + "mlp.W_out"] = (M, D)
        out[p + "mlp.b_out"] = (D,)
    out["unembed.W_U"] = (D, shape.d_out)
    out["unembed.b_U"] = (shape.d_out,)
    return out


def check_tensors(shape: ModelShape, weights: dict[str, torch.Tensor], where: str) -> None:
    """Names, shapes and finiteness of ``weights`` against ``shape``; raise on the first problem."""
    expected = expected_shapes(shape)
    missing = [name for name in expected if name not in weights]
    if missing:
        raise CheckpointError(f"{where}: missing tensor(s) {', '.join(missing)}")
    extra = sorted(name for name in weights if name not in expected)
    if extra:
        raise CheckpointError(f"{where}: unexpected tensor(s) {', '.join(extra)} "
                              "(not part of a model with this config)")
    for name, want in expected.items():
        found = tuple(weights[name].shape)
        if found != want:
            raise CheckpointError(f"{where}: tensor {name} has shape {list(found)}, "
                                  f"expected {list(want)} from the config")
    for name, value in weights.items():
        if not value.is_floating_point():
            raise CheckpointError(f"{where}: tensor {name} has dtype {value.dtype}, "
                                  "expected floating point")
        if not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{where}: tensor {name} has non-finite entries (NaN or inf)")


def _to_json_value(value: Any) -> Any:
    """Fractions to ``"p/q"`` strings, arrays to lists, non-finite floats to strings."""
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (np.generic, np.ndarray, torch.Tensor)):
        return _to_json_value(value.tolist())
    if isinstance(value, dict):
        return {str(k): _to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json_value(v) for v in value]
    return str(value)


def dumps(value: Any) -> str:
    """Strict JSON text for a metadata value."""
    return json.dumps(_to_json_value(value), allow_nan=False)


def _field_ok(name: str, value: object) -> bool:
    if name in _INT_FIELDS:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if name in _BOOL_FIELDS:
        return isinstance(value, bool)
    if name in _FLOAT_FIELDS:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    return isinstance(value, str)


def shape_from_config(config: dict[str, object], where: str) -> ModelShape:
    """``ModelShape`` from a ``rawc.config`` object, every field checked."""
    kind, prior_column = _input_format(config, where)
    fields: dict[str, object] = {"prior_column": prior_column, "input_format": kind,
                                 "loop": _loop(config, where),
                                 "attn_momentum": _momentum(config, where),
                                 "gated_mlp": _gated(config, where)}
    for field in dataclasses.fields(ModelShape):
        if field.name in fields:
            continue
        if field.name not in config:
            raise CheckpointError(f"{where}: metadata key rawc.config lacks field {field.name!r}")
        value = config[field.name]
        if not _field_ok(field.name, value):
            raise CheckpointError(f"{where}: metadata key rawc.config has invalid "
                                  f"{field.name} = {value!r}")
        fields[field.name] = value
    try:
        return ModelShape(**fields)
    except ValueError as exc:  # an enum field outside its values
        raise CheckpointError(f"{where}: metadata key rawc.config has invalid {exc}") from None


def _input_format(config: dict[str, object], where: str) -> tuple[InputFormat, bool]:
    """``input_format``: ``{"kind": ..., "prior_column": bool}`` (kind defaults to
    ``interleaved-xy``, the compiled programs' format)."""
    fmt = config.get("input_format")
    kinds = {k.value for k in InputFormat}
    if (not isinstance(fmt, dict) or not isinstance(fmt.get("prior_column", False), bool)
            or fmt.get("kind", InputFormat.INTERLEAVED_XY.value) not in kinds):
        raise CheckpointError(f"{where}: metadata key rawc.config has invalid input_format "
                              f"{fmt!r} (kind one of {', '.join(sorted(kinds))})")
    return (InputFormat(fmt.get("kind", InputFormat.INTERLEAVED_XY.value)),
            bool(fmt.get("prior_column", False)))


def _gated(config: dict[str, object], where: str) -> bool:
    """``gated_mlp``: absent or false for the plain MLP, true for the gated one."""
    value = config.get("gated_mlp", False)
    if not isinstance(value, bool):
        raise CheckpointError(f"{where}: metadata key rawc.config has invalid gated_mlp "
                              f"{value!r} (expected true or false)")
    return value


def _momentum(config: dict[str, object], where: str) -> float:
    value = config.get("attn_momentum", 0.0)
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not 0 <= value < 1):
        raise CheckpointError(f"{where}: metadata key rawc.config has invalid attn_momentum "
                              f"{value!r} (expected a number in [0, 1))")
    return float(value)


def _loop(config: dict[str, object], where: str) -> tuple[int, int, int] | None:
    """``loop``: absent or null for a plain stack, else ``{first, layers, times}``."""
    loop = config.get("loop")
    if loop is None:
        return None
    keys = ("first", "layers", "times")
    values = [loop.get(k) if isinstance(loop, dict) else None for k in keys]
    n_layers = config.get("n_layers")
    if (not all(isinstance(v, int) and not isinstance(v, bool) for v in values)
            or values[0] < 0 or values[1] < 1 or values[2] < 1
            or not isinstance(n_layers, int) or values[0] + values[1] > n_layers):
        raise CheckpointError(f"{where}: metadata key rawc.config has invalid loop {loop!r} "
                              "(expected first >= 0, layers >= 1, times >= 1 within n_layers)")
    return tuple(values)  # type: ignore[return-value]



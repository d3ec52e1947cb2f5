"""Checkpoints: a compiled model as one self-describing safetensors file (``rawc.checkpoint/1``).

The file is written with ``safetensors.torch.save_file``. Tensors are float64, named and shaped
as in TransformerLens' ``HookedTransformer`` (right-multiplying, ``x @ W``)::

    embed.W_E                      [d_in, d_model]
    pos_embed.W_pos                [n_ctx, d_model]
    blocks.{l}.attn.W_Q, W_K, W_V  [n_heads, d_model, d_head]
    blocks.{l}.attn.b_Q, b_K, b_V  [n_heads, d_head]
    blocks.{l}.attn.W_O            [n_heads, d_head, d_model]
    blocks.{l}.attn.b_O            [d_model]
    blocks.{l}.ln1.w, ln1.b        [d_model]          (only when ``ln1``)
    blocks.{l}.ln2.w, ln2.b        [d_model]          (only when ``ln2``)
    blocks.{l}.mlp.W_in, b_in      [d_model, d_mlp], [d_mlp]
    blocks.{l}.mlp.W_out, b_out    [d_mlp, d_model], [d_model]
    unembed.W_U, unembed.b_U       [d_model, d_out], [d_out]

The safetensors header metadata (all values strings; JSON where structured):

- ``format``: ``"pt"``; ``rawc.schema``: ``"rawc.checkpoint/1"``; ``rawc.version``: the rawc
  version that wrote the file.
- ``rawc.config`` (JSON): ``d_model, n_layers, n_heads, d_head, d_mlp, n_ctx, d_in, d_out,
  act_fn, ln1, ln2, ln_eps, attn_kind, attn_mask, attn_scale, input_format, loop``; everything
  the forward needs besides the tensors. ``input_format.prior_column``: position 0 is a zero
  token whose content comes from ``W_pos[0]``. ``loop`` (null, or ``{first, layers, times}``):
  ``n_layers`` blocks are stored and blocks ``first .. first + layers - 1`` run ``times`` times
  in a row (a weight-shared stage), so the model executes ``n_layers + (times - 1) * layers``
  layers.
- ``rawc.algorithm`` (JSON): ``{"name": ..., "params": {...}}``, fractions as ``"1/10"``.
- ``rawc.program``: the op program as text (``Program.text()``; ``parser.parse_program``
  reads it back).
- ``rawc.layout`` (JSON): slot -> residual rows, the fixed rows, ``d_model``.
- ``rawc.bounds`` (JSON): ``input_bound``, ``constants`` (the ``CompileConfig``), ``ops`` (one
  error model per op, program order) and, when ``construct.compiler.propagate`` is available,
  ``predicted`` (dtype -> end-to-end error bound on the prediction).

Non-finite floats inside JSON values are written as the strings ``"Infinity"``,
``"-Infinity"``, ``"NaN"`` so every value is strict JSON.

``save_checkpoint`` writes atomically (a temporary file in the same directory, then
``os.replace``). ``load_checkpoint`` checks the schema, the metadata, every tensor's presence,
shape and finiteness, and fails with a ``CheckpointError`` that names what is wrong.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import construct
from construct.model.assemble import CompiledModel, ModelShape
from construct.compiler.config import CompileConfig
from construct.language.program import Program

SCHEMA = "rawc.checkpoint/1"
JSON_KEYS = ("rawc.config", "rawc.algorithm", "rawc.layout", "rawc.bounds")
TEXT_KEYS = ("rawc.program", "rawc.version")
DTYPES = ("float64", "float32")

_INT_FIELDS = ("d_model", "n_layers", "n_heads", "d_head", "d_mlp", "n_ctx", "d_in", "d_out")
_BOOL_FIELDS = ("ln1", "ln2")
_FLOAT_FIELDS = ("ln_eps", "attn_scale")
_STR_FIELDS = ("act_fn", "attn_kind", "attn_mask")


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or read; the message names the problem."""


# --------------------------------------------------------------------------- shapes


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


# --------------------------------------------------------------------------- JSON helpers


def _to_json_value(value: Any) -> Any:
    """Fractions to ``"p/q"`` strings, arrays to lists, non-finite floats to strings."""
    if isinstance(value, Fraction):
        return str(value)
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


def _dumps(value: Any) -> str:
    return json.dumps(_to_json_value(value), allow_nan=False)


def _predicted_bounds(compiled: CompiledModel) -> dict[str, float] | None:
    try:
        from construct.compiler.propagate import end_to_end_bound
    except ImportError:
        return None
    return {dtype: float(end_to_end_bound(compiled, dtype)) for dtype in DTYPES}


def build_metadata(compiled: CompiledModel, algorithm: str | None = None,
                   params: dict[str, object] | None = None) -> dict[str, str]:
    """The safetensors metadata (every value a string) for ``compiled``."""
    bounds: dict[str, object] = {
        "input_bound": compiled.config.input_bound,
        "constants": compiled.config.to_dict(),
        "ops": [model.to_json() for model in compiled.errors],
    }
    predicted = _predicted_bounds(compiled)
    if predicted is not None:
        bounds["predicted"] = predicted
    return {
        "format": "pt",
        "rawc.schema": SCHEMA,
        "rawc.config": _dumps(compiled.shape.to_json()),
        "rawc.algorithm": _dumps({"name": algorithm or compiled.program.name,
                                  "params": params or {}}),
        "rawc.program": compiled.source_program.text(),
        "rawc.layout": _dumps(compiled.layout.to_json()),
        "rawc.bounds": _dumps(bounds),
        "rawc.version": construct.__version__,
    }


# --------------------------------------------------------------------------- save


def _as_float64(name: str, value: object) -> torch.Tensor:
    try:
        array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value,
                           dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot save tensor {name}: not convertible to float64 "
                              f"({exc})") from exc
    return torch.from_numpy(np.ascontiguousarray(array)).contiguous()


def save_checkpoint(compiled: CompiledModel, path: str | os.PathLike[str],
                    algorithm: str | None = None,
                    params: dict[str, object] | None = None) -> None:
    """Write ``compiled`` to ``path`` as a ``rawc.checkpoint/1`` safetensors file.

    Nothing is written unless everything succeeds: the file goes to a temporary name in the
    target directory and is renamed over ``path`` at the end. The directory must exist.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CheckpointError(f"cannot write {path}: directory {directory} does not exist")
    if os.path.isdir(path):
        raise CheckpointError(f"cannot write {path}: it is a directory")
    tensors = {name: _as_float64(name, value) for name, value in compiled.weights.items()}
    check_tensors(compiled.shape, tensors, f"cannot save {path}")
    write_atomically(tensors, path, build_metadata(compiled, algorithm, params))


def write_atomically(tensors: dict[str, torch.Tensor], path: str,
                     metadata: dict[str, str]) -> None:
    """``save_file`` to a temporary name in ``path``'s directory, then rename over ``path``:
    a failure leaves nothing half-written."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(dir=directory, prefix=".rawc-", suffix=".tmp")
    os.close(handle)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# --------------------------------------------------------------------------- load


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the model's shape, its weights and the parsed metadata.

    ``metadata`` maps each key to its parsed value: JSON for ``rawc.config``,
    ``rawc.algorithm``, ``rawc.layout``, ``rawc.bounds``; strings for the others.
    """

    shape: ModelShape
    weights: dict[str, torch.Tensor]
    metadata: dict[str, object]
    path: str

    @property
    def algorithm(self) -> dict[str, object]:
        """``{"name": ..., "params": {...}}`` as saved (fractions are strings)."""
        return self.metadata["rawc.algorithm"]  # type: ignore[return-value]

    @property
    def bounds(self) -> dict[str, object]:
        return self.metadata["rawc.bounds"]  # type: ignore[return-value]

    def program(self) -> Program:
        """The op program, parsed back from its text."""
        from construct.language.parser import parse_program

        return parse_program(self.metadata["rawc.program"])

    def config(self) -> CompileConfig:
        return CompileConfig(**self.bounds["constants"])  # type: ignore[arg-type]

    def predicted_bound(self, dtype: str) -> float | None:
        """The recorded end-to-end error bound for ``dtype``, or None when not recorded."""
        value = self.bounds.get("predicted", {}).get(dtype)  # type: ignore[union-attr]
        return None if value is None else float(value)


def _read_file(path: str) -> tuple[dict[str, str] | None, dict[str, torch.Tensor]]:
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            metadata = handle.metadata()
            weights = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as exc:  # safetensors raises its own error types, OSError, ...
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or "
                              f"corrupted?): {exc}") from exc
    return metadata, weights


def _parse_metadata(path: str, raw: dict[str, str] | None) -> dict[str, object]:
    if not raw or "rawc.schema" not in raw:
        raise CheckpointError(f"{path}: not a rawc checkpoint (no rawc.schema metadata)")
    schema = raw["rawc.schema"]
    if schema != SCHEMA:
        raise CheckpointError(f"{path}: schema {schema!r} is not supported; this rawc reads "
                              f"{SCHEMA}")
    parsed: dict[str, object] = dict(raw)
    for key in JSON_KEYS:
        if key not in raw:
            raise CheckpointError(f"{path}: metadata key {key} is missing")
        try:
            parsed[key] = json.loads(raw[key])
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: metadata key {key} is not valid JSON ({exc})") from exc
        if not isinstance(parsed[key], dict):
            raise CheckpointError(f"{path}: metadata key {key} must be a JSON object")
    for key in TEXT_KEYS:
        if key not in raw:
            raise CheckpointError(f"{path}: metadata key {key} is missing")
    if not isinstance(parsed["rawc.bounds"].get("constants"), dict):  # type: ignore[union-attr]
        raise CheckpointError(f"{path}: metadata key rawc.bounds has no 'constants' object")
    return parsed


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
    fields: dict[str, object] = {"prior_column": _prior_column(config, where),
                                 "loop": _loop(config, where)}
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
    return ModelShape(**fields)


def _prior_column(config: dict[str, object], where: str) -> bool:
    fmt = config.get("input_format")
    if not isinstance(fmt, dict) or not isinstance(fmt.get("prior_column", False), bool):
        raise CheckpointError(f"{where}: metadata key rawc.config has invalid input_format "
                              f"{fmt!r}")
    return bool(fmt.get("prior_column", False))


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


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and check a ``rawc.checkpoint/1`` file; ``CheckpointError`` names any problem."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: not a file")
    raw, weights = _read_file(path)
    metadata = _parse_metadata(path, raw)
    shape = shape_from_config(metadata["rawc.config"], path)  # type: ignore[arg-type]
    check_tensors(shape, weights, path)
    return Checkpoint(shape, weights, metadata, path)

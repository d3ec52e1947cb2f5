"""Checkpoints: any model rawc builds as one self-describing safetensors file (``rawc.checkpoint/1``).

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
    blocks.{l}.mlp.W_gate          [d_model, d_mlp] (only with gated_mlp: true)
    blocks.{l}.mlp.W_out, b_out    [d_mlp, d_model], [d_model]
    unembed.W_U, unembed.b_U       [d_model, d_out], [d_out]

The safetensors header metadata (all values strings; JSON where structured):

- ``format``: ``"pt"``; ``rawc.schema``: ``"rawc.checkpoint/1"``; ``rawc.version``: the rawc
  version that wrote the file.
- ``rawc.config`` (JSON): ``d_model, n_layers, n_heads, d_head, d_mlp, n_ctx, d_in, d_out,
  act_fn, gated_mlp, ln1, ln2, ln_eps, attn_kind, attn_mask, attn_scale, input_format,
  loop``; everything
  the forward needs besides the tensors. ``input_format.prior_column``: position 0 is a zero
  token whose content comes from ``W_pos[0]``. ``loop`` (null, or ``{first, layers, times}``):
  ``n_layers`` blocks are stored and blocks ``first .. first + layers - 1`` run ``times`` times
  in a row (a weight-shared stage), so the model executes ``n_layers + (times - 1) * layers``
  layers.
- ``rawc.algorithm`` (JSON): ``{"name": ..., "params": {...}, "compile": {...}}``, fractions
  as ``"1/10"``. ``params`` holds every effective parameter, defaults included (``w0`` too),
  in the form the algorithm's ``resolve`` reads back, so the file alone says what it computes.
  ``compile`` holds the other choices that shaped the weights: for a compiled program
  ``form``, ``schedule``, ``listing``, ``constants_dtype`` (the dtype the constants were tuned
  for), ``input_bound`` and ``n_ctx``; empty for linear-attention blocks, which are written
  down exactly. Files written before ``compile`` existed lack it (their ``rawc.bounds``
  constants hold the same choices) and may lack a defaulted ``w0``: readers take the defaults.
- ``rawc.program``: the op program as text (``Program.text()``; ``parser.parse_program``
  reads it back).
- ``rawc.layout`` (JSON): slot -> residual rows, the fixed rows, ``d_model``.
- ``rawc.bounds`` (JSON): ``input_bound``, ``constants`` (the ``CompileConfig``), ``ops`` (one
  error model per op, program order) and ``predicted`` (dtype -> end-to-end error bound on the prediction).

Non-finite floats inside JSON values are written as the strings ``"Infinity"``,
``"-Infinity"``, ``"NaN"`` so every value is strict JSON.

One writer and one reader for every target: a compiled program (``CompiledModel``), a
linear-attention construction or trained weights (``LinearConstruction``) all provide the
``Checkpointable`` sections. ``save_checkpoint`` writes atomically (a temporary file in the same directory, then
``os.replace``). ``load_checkpoint`` checks the schema, the metadata, every tensor's presence,
shape and finiteness, and fails with a ``CheckpointError`` that names what is wrong.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import construct
from construct.compiler.config import CompileConfig
from construct.language.program import Program
from construct.model.assemble import CompiledModel
from construct.model.checkpoint_format import (SCHEMA, CheckpointError, check_tensors, dumps,
                                               shape_from_config)
from construct.model.transformer import Transformer
from construct.targets.architecture import ModelShape

JSON_KEYS = ("rawc.config", "rawc.algorithm", "rawc.layout", "rawc.bounds")
TEXT_KEYS = ("rawc.program", "rawc.version")


class Checkpointable(Protocol):
    """What a checkpoint holds besides the algorithm's name and parameters."""

    @property
    def name(self) -> str: ...

    @property
    def shape(self) -> ModelShape: ...

    @property
    def weights(self) -> dict[str, np.ndarray]: ...

    def program_text(self) -> str: ...

    def layout_json(self) -> dict[str, object]: ...

    def bounds_json(self) -> dict[str, object]: ...


def compile_choices(model: Checkpointable) -> dict[str, object]:
    """``rawc.algorithm["compile"]``: what besides the parameters shaped ``model``'s weights
    (``CompiledModel.compile_json``); nothing for linear-attention blocks (no constants)."""
    return model.compile_json() if isinstance(model, CompiledModel) else {}


def build_metadata(model: Checkpointable, algorithm: str,
                   params: dict[str, object] | None = None) -> dict[str, str]:
    """The safetensors metadata (every value a string) for ``model``."""
    record = {"name": algorithm, "params": params or {}, "compile": compile_choices(model)}
    return {
        "format": "pt",
        "rawc.schema": SCHEMA,
        "rawc.config": dumps(model.shape.to_json()),
        "rawc.algorithm": dumps(record),
        "rawc.program": model.program_text(),
        "rawc.layout": dumps(model.layout_json()),
        "rawc.bounds": dumps(model.bounds_json()),
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


def save_checkpoint(model: Checkpointable, path: str | os.PathLike[str],
                    algorithm: str | None = None,
                    params: dict[str, object] | None = None,
                    record: dict[str, object] | None = None) -> None:
    """Write ``model`` to ``path`` as a ``rawc.checkpoint/1`` safetensors file.

    Nothing is written unless everything succeeds: the file goes to a temporary name in the
    target directory and is renamed over ``path`` at the end. The directory must exist.
    ``algorithm`` defaults to the program's name; ``record``'s keys are added to
    ``rawc.algorithm`` (a program file's ``source`` and ``file``).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CheckpointError(f"cannot write {path}: directory {directory} does not exist")
    if os.path.isdir(path):
        raise CheckpointError(f"cannot write {path}: it is a directory")
    tensors = {name: _as_float64(name, value) for name, value in model.weights.items()}
    check_tensors(model.shape, tensors, f"cannot save {path}")
    metadata = build_metadata(model, algorithm or model.name, params)
    if record:
        metadata["rawc.algorithm"] = dumps({**json.loads(metadata["rawc.algorithm"]), **record})
    write_atomically(tensors, path, metadata)


def write_atomically(tensors: dict[str, torch.Tensor], path: str,
                     metadata: dict[str, str]) -> None:
    """``save_file`` to a temporary name in ``path``'s directory, then rename over ``path``:
    a failure leaves nothing half-written."""
    replace_atomically(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def current_umask() -> int:
    """The process umask (read without changing it: ``os.umask`` sets as it reads)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _new_file_mode() -> int:
    """``0o666`` under the process umask, as ``open`` would create a file."""
    return 0o666 & ~current_umask()


def replace_atomically(path: str, write: Callable[[str], None]) -> None:
    """``write(tmp)`` to a temporary name beside ``path``'s target, then rename it over that
    target: a failure leaves nothing half-written.

    A symlink is written through (its target is replaced, the link stays); an existing file
    keeps its mode, a new one gets ``0o666`` under the umask (``mkstemp``'s private ``0600``
    is not a checkpoint's mode). The temporary file is removed on every exit Python sees
    (an exception, Ctrl-C); only SIGKILL can leave a ``.rawc-*.tmp`` beside the target, and
    never a damaged target, which is replaced by one rename."""
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    mode = os.stat(target).st_mode & 0o7777 if os.path.exists(target) else _new_file_mode()
    handle, tmp = tempfile.mkstemp(dir=directory, prefix=".rawc-", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
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
        """``{"name": ..., "params": {...}, "compile": {...}}`` as saved (fractions are
        strings; ``compile`` absent in older files)."""
        return self.metadata["rawc.algorithm"]  # type: ignore[return-value]

    @property
    def bounds(self) -> dict[str, object]:
        return self.metadata["rawc.bounds"]  # type: ignore[return-value]

    @property
    def trained(self) -> bool:
        """Weights learned, not compiled (``rawc train``, ``rawc train-lsa``)."""
        return bool(self.algorithm.get("trained"))

    @property
    def claim(self) -> dict[str, object] | None:
        """The named algorithm trained weights claim to implement (None: no claim, or not
        trained)."""
        return self.algorithm.get("claims") if self.trained else None  # type: ignore[return-value]

    @property
    def training_config(self) -> dict[str, object]:
        """How trained weights were trained (``rawc train``'s record; empty otherwise)."""
        return (self.algorithm.get("training") or {}).get("config") or {}  # type: ignore[union-attr]

    def program(self) -> Program:
        """The op program, parsed back from its text."""
        from construct.language.parser import parse_program

        return parse_program(self.metadata["rawc.program"])

    def config(self) -> CompileConfig:
        # Files written before the Richardson product record no rule: the one-scale trick.
        constants = {"gelu_product": "lemma4", **self.bounds["constants"]}
        return CompileConfig(**constants)  # type: ignore[arg-type]

    @property
    def input_bound(self) -> float | None:
        """The declared bound on every input entry (None: the weights promise none)."""
        value = self.bounds.get("input_bound")  # type: ignore[union-attr]
        return None if value is None else float(value)

    def model(self, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu",
              check_inputs: bool = True) -> Transformer:
        """The checkpoint's transformer (``check_inputs``: refuse inputs outside the bound)."""
        return Transformer(self.shape, self.weights, dtype, device,
                           self.input_bound if check_inputs else None)

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

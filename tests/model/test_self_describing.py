"""A checkpoint says what it computes: ``rawc.algorithm`` holds every effective parameter.

A reader with only the safetensors metadata (parsed by the ``safetensors`` library, not by
rawc) and a few lines of numpy closed form reproduces the model's predictions, defaults
included (``w0`` is recorded even when the user gave none). Compiling with the defaults and
with the recorded values passed explicitly writes the same file, bit for bit, and files from
before the record was complete still load and verify.
"""
from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from construct.algorithms.registry import ALGORITHMS, get_algorithm
from construct.cli.main import main as rawc
from construct.model.checkpoint import load_checkpoint
from verify.check.integrity import Integrity, check_integrity


def compiled(tmp_path, name: str, *flags: str) -> str:
    path = str(tmp_path / f"{name}.safetensors")
    assert rawc(["compile", name, *flags, "-o", path]) == 0
    return path


def metadata(path: str) -> dict[str, str]:
    with safe_open(path, framework="pt") as handle:
        return handle.metadata()


# ---------------------------------------------------------------- the closed form, from metadata


def closed_form(record: dict, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Predictions ``[tasks, prefixes]`` from ``rawc.algorithm`` alone (x ``[N, n + 1, d]``, the
    last row the query; y ``[N, n]``): entry ``k`` predicts ``x_{k+1}`` from exemplars 1..k."""
    p = record["params"]
    frac = lambda key: float(Fraction(p[key]))  # noqa: E731
    d = int(p["d"])
    if record["name"] == "gd":  # one step on exemplar 1 from w0 (Theorem 1), at the query
        w0 = np.array([float(Fraction(v)) for v in p["w0"]])
        x1, r = x[:, 0], x[:, 0] @ w0 - y[:, 0]
        w = w0 - 2 * frac("alpha") * (x1 * r[:, None] + frac("lam") * w0)
        return np.einsum("nd,nd->n", w, x[:, 1])[:, None]
    out = []
    if record["name"] == "sgd":  # one pass, w_i = w_{i-1} - 2 alpha (x_i r_i + lam w_{i-1})
        w = np.tile([float(Fraction(v)) for v in p["w0"]], (len(x), 1))
        for k in range(int(p["n"]) + 1):
            out.append(np.einsum("nd,nd->n", w, x[:, k]))
            if k < int(p["n"]):
                r = np.einsum("nd,nd->n", w, x[:, k]) - y[:, k]
                w = w - 2 * frac("alpha") * (x[:, k] * r[:, None] + frac("lam") * w)
        return np.stack(out, axis=1)
    assert record["name"] == "ridge"  # (X^T X + lam I)^-1 X^T y after each prefix
    for k in range(int(p["n"]) + 1):
        X, t = x[:, :k], y[:, :k]
        w = np.linalg.solve(np.swapaxes(X, 1, 2) @ X + frac("lam") * np.eye(d),
                            np.einsum("nkd,nk->nd", X, t)[..., None])[..., 0]
        out.append(np.einsum("nd,nd->n", w, x[:, k]))
    return np.stack(out, axis=1)


def tokens(config: dict, x: np.ndarray, y: np.ndarray) -> torch.Tensor:
    """``[prior?] x1 y1 ... xn yn x_q`` (DESIGN.md): x-token ``[0, x]``, y-token ``[y, 0]``."""
    prior = int(config["input_format"]["prior_column"])
    N, m, d = x.shape
    out = np.zeros((N, prior + 2 * m - 1, d + 1))
    out[:, prior::2, 1:] = x
    out[:, prior + 1::2, 0] = y
    return torch.from_numpy(out)


@pytest.mark.parametrize("name,flags", [("gd", ()), ("sgd", ()),
                                        ("ridge", ("--n", "2", "--lam", "2"))])
def test_a_reader_of_the_metadata_alone_reproduces_the_predictions(tmp_path, name, flags):
    path = compiled(tmp_path, name, *flags)
    meta = metadata(path)
    record, bounds = json.loads(meta["rawc.algorithm"]), json.loads(meta["rawc.bounds"])
    config = json.loads(meta["rawc.config"])
    if name != "ridge":
        assert "w0" in record["params"]  # the default start, recorded: no rawc needed
    B, bound = float(bounds["input_bound"]), float(bounds["predicted"]["float64"])
    assert np.isfinite(bound)
    d, n = int(record["params"]["d"]), int(record["params"].get("n", 1))
    rng = np.random.default_rng(7)
    x, y = rng.uniform(-B, B, (64, n + 1, d)), rng.uniform(-B, B, (64, n))
    expected = closed_form(record, x, y)
    output = load_checkpoint(path).model()(tokens(config, x, y)).output[..., 0].numpy()
    prior = int(config["input_format"]["prior_column"])
    got = output[:, prior::2] if name != "gd" else output[:, -1:]  # gd predicts at the query
    assert got.shape == expected.shape
    assert np.all(np.abs(got - expected) <= bound + 1e-10 * (1 + np.abs(expected)))


# ------------------------------------------------------------ defaults and explicit values


def flags_of(name: str, params: dict) -> list[str]:
    """The command line that passes every recorded parameter explicitly."""
    out = []
    for p in get_algorithm(name).parameters:
        value = params[p.name]
        if isinstance(value, list) and value and isinstance(value[0], list):
            value = ";".join(",".join(repr(v) for v in row) for row in value)
        elif isinstance(value, list):
            value = ",".join(str(v) for v in value)
        out += [p.option, repr(value) if isinstance(value, float) else str(value)]
    return out


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_defaults_and_the_same_values_given_write_the_same_file(tmp_path, name):
    default = compiled(tmp_path / "", name)
    record = json.loads(metadata(default)["rawc.algorithm"])
    assert {p.name for p in get_algorithm(name).parameters} <= set(record["params"])
    (tmp_path / "explicit").mkdir()
    explicit = compiled(tmp_path / "explicit", name, *flags_of(name, record["params"]))
    assert metadata(explicit) == metadata(default)
    with safe_open(default, framework="pt") as a, safe_open(explicit, framework="pt") as b:
        assert set(a.keys()) == set(b.keys())
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())
    algorithm = get_algorithm(name)  # the record is what resolve reads back
    assert algorithm.resolve(**record["params"]) == algorithm.resolve()


def test_compile_choices_are_recorded(tmp_path):
    path = compiled(tmp_path, "gd", "--listing", "--dtype", "float32", "--schedule",
                    "sequential", "--bound", "2")
    choices = json.loads(metadata(path)["rawc.algorithm"])["compile"]
    assert choices == {"form": "stacked", "schedule": "sequential", "target": "paper",
                       "gelu_product": "polarized",
                       "listing": True,
                       "constants_dtype": "float32", "input_bound": 2.0, "n_ctx": 256}
    lsa = compiled(tmp_path, "lsa-gd", "--steps", "2")
    assert json.loads(metadata(lsa)["rawc.algorithm"])["compile"] == {}


# ---------------------------------------------------------------- files from before the record


def as_old_file(path: str) -> str:
    """The file as an older rawc wrote it: no ``compile``, no defaulted ``w0``."""
    meta = metadata(path)
    record = json.loads(meta["rawc.algorithm"])
    record.pop("compile")
    if get_algorithm(record["name"]).family.name == "PROGRAM":
        record["params"].pop("w0", None)
    meta["rawc.algorithm"] = json.dumps(record)
    with safe_open(path, framework="pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    old = path.replace(".safetensors", "-old.safetensors")
    save_file(tensors, old, metadata=meta)
    return old


@pytest.mark.parametrize("name", ["gd", "sgd", "lsa-gd"])
def test_older_files_still_load_and_verify(tmp_path, name, capsys):
    old = as_old_file(compiled(tmp_path, name))
    assert "w0" not in load_checkpoint(old).algorithm["params"] or name == "lsa-gd"
    assert check_integrity(load_checkpoint(old)).status is Integrity.MATCH
    assert rawc(["verify", old, "--trials", "64"]) == 0, capsys.readouterr().out

"""The house: imports run one way down the pipeline, and no module outgrows one concern.

Layers, lowest first (``shared/DESIGN.md``, "Where the code lives"): the language, the
compiler's passes, the targets (op -> weights per block kind), the model (assembly, the torch
transformer, checkpoints), the named algorithms, the verifier, and on top the command line
and the teaching pages: the only code that imports both ``construct`` and ``verify``. A
module may import its own layer and the layers below it, never one above, lazily or not.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAYERS = ("construct.language", "construct.compiler", "construct.targets", "construct.model",
          "construct.algorithms", "verify", "construct.cli|construct.teach")
MAX_LINES = 400


def layer_of(module: str) -> int | None:
    for rank, names in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in names.split("|")):
            return rank
    return None  # the package root (``construct.__version__``) or a third-party module


def modules() -> list[tuple[str, pathlib.Path]]:
    out = []
    for package in ("construct", "verify"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out.append((name.removesuffix(".__init__"), path))
    return out


def imported(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_every_module_belongs_to_a_layer():
    loose = [name for name, _ in modules()
             if layer_of(name) is None and name not in ("construct", "verify")]
    assert not loose, f"modules outside the pipeline's packages: {loose}"


@pytest.mark.parametrize("name,path", modules(), ids=[name for name, _ in modules()])
def test_imports_run_down_the_layers(name, path):
    own = layer_of(name)
    if own is None:
        return
    upward = sorted(target for target in imported(path)
                    if (rank := layer_of(target)) is not None and rank > own)
    assert not upward, f"{name} (layer {LAYERS[own]}) imports from above: {upward}"


def test_only_the_top_layer_imports_verify_from_construct():
    offenders = sorted(name for name, path in modules()
                       if name.startswith("construct") and layer_of(name) != len(LAYERS) - 1
                       and any(t == "verify" or t.startswith("verify.") for t in imported(path)))
    assert not offenders


def test_no_module_is_over_the_size_limit():
    big = {name: n for name, path in modules()
           if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"

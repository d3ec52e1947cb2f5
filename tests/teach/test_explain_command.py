"""``construct.teach.explain_command``: named and checkpoint targets, the files ``--out`` writes."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from construct.model import checkpoint

from construct.teach import explain_command
from construct.algorithms.registry import get_algorithm
from construct.model.assemble import compile_program
from construct.compiler.config import CompileConfig
from construct.compiler.propagate import end_to_end_bound


def _args(target: str, **changes: object) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(explain_command.page_args(target, 2)), **changes})


def test_main_writes_page(tmp_path, capsys):
    out = tmp_path / "pages"
    assert explain_command.main(_args("gd", d=1, out=str(out), alpha="1/5")) == 0
    text = (out / "gd.md").read_text(encoding="utf-8")
    assert "alpha = 1/5" in text and f"--alpha 1/5 --out {out}" in text
    assert explain_command.main(_args("gd", d=1, out=None)) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("| 16 | ")


def test_checkpoint_target(tmp_path):
    algorithm = get_algorithm("gd")
    params = algorithm.resolve(d=2)
    compiled = compile_program(algorithm.program(params), CompileConfig.for_dtype("float64"))
    path = tmp_path / "gd2.safetensors"
    checkpoint.save_checkpoint(compiled, str(path), algorithm="gd", params=params)
    name, text = explain_command.render(_args(str(path), out=None))
    assert name == "gd2" and text.startswith("# `gd2` (gd)")
    e64 = end_to_end_bound(compiled, "float64")
    assert f"float64 {e64:.3g}," in text


def test_checkpoint_with_foreign_weights_is_refused(tmp_path):
    algorithm = get_algorithm("gd")
    params = algorithm.resolve(d=1)
    compiled = compile_program(algorithm.program(params), CompileConfig.for_dtype("float64"))
    compiled.weights["unembed.b_U"] = np.ones(1)
    path = tmp_path / "edited.safetensors"
    checkpoint.save_checkpoint(compiled, str(path), algorithm="gd", params=params)
    with pytest.raises(ValueError, match="differ from a fresh compile"):
        explain_command.render(_args(str(path), out=None))

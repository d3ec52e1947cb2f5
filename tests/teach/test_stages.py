"""construct.teach.stages and ``explain --form shared``: the per-stage view of a shared loop."""
from __future__ import annotations

import argparse
import dataclasses

import pytest

from construct.algorithms.registry import get_algorithm
from construct.compiler.config import CompileConfig
from construct.model.assemble import compile_program
from construct.teach import explain_command
from construct.teach.stages import stage_rows, stage_section


def _compiled(name: str, form: str, **params: object):
    algorithm = get_algorithm(name)
    config = dataclasses.replace(CompileConfig.for_dtype("float64"), form=form)
    return compile_program(algorithm.program(algorithm.resolve(**params)), config)


def _span(text: str) -> range:
    first, _, last = text.partition("..")
    return range(int(first), int(last or first) + 1)


@pytest.mark.parametrize("n", [1, 3])
def test_stages_cover_every_executed_layer_once_and_share_blocks(n):
    compiled = _compiled("sgd", "shared", d=2, n=n)
    rows = stage_rows(compiled)
    layers = [l for _, executed, _, _ in rows for l in _span(executed)]
    assert layers == list(range(compiled.shape.depth))
    stages = [r for r in rows if r[0].startswith("stage")]
    assert len(stages) == n and len({blocks for _, _, blocks, _ in stages}) == 1
    ops = [i for *_, span in rows if span != "—" for i in _span(span)]
    assert ops == list(range(1, len(compiled.program.ops) + 1))  # each op in one part, in order


def test_section_sets_shared_parameters_beside_stacked():
    shared, stacked = _compiled("sgd", "shared", d=2, n=4), _compiled("sgd", "stacked", d=2, n=4)
    text = "\n".join(stage_section(shared))
    assert f"{shared.n_params} ({shared.n_nonzero_params} nonzero) here" in text
    assert f"{stacked.n_params} ({stacked.n_nonzero_params} nonzero) in the stacked form" in text
    assert shared.n_params < stacked.n_params
    assert stage_section(stacked) == []


def _args(target: str, **changes: object) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(explain_command.page_args(target, 2)), **changes})


def test_explain_form_shared_names_its_page_and_command():
    name, text = explain_command.render(_args("sgd", n=2, form="shared"))
    assert name == "sgd-shared"
    assert "--form shared" in text.splitlines()[2] and "## Stages" in text
    assert "| 1 (`blocks.1`) |" in text or "| 2 (`blocks.0`) |" in text


def test_explain_form_refused_where_it_does_not_apply(tmp_path):
    with pytest.raises(ValueError, match="--form shared does not apply to gd"):
        explain_command.render(_args("gd", form="shared"))
    from construct.model.checkpoint import save_checkpoint

    path = tmp_path / "sgd.safetensors"
    save_checkpoint(_compiled("sgd", "shared", d=2, n=2), str(path), algorithm="sgd",
                    params=get_algorithm("sgd").resolve(d=2, n=2))
    with pytest.raises(ValueError, match="does not apply to a checkpoint"):
        explain_command.render(_args(str(path), form="shared"))


def test_every_shared_block_caption_says_where_it_runs():
    """Blocks 0 and 1 of sgd-shared are drawn at layers 0 and 1, their own indices: their
    captions lost "run at layers 0, 2, 4, 6" once (only a block drawn elsewhere kept a note)."""
    from construct.teach.course import pictures_section

    compiled = _compiled("sgd", "shared", d=2, n=4)
    text = "\n".join(pictures_section("s", compiled))
    assert "Layer 0 (`blocks.0`, run at layers 0, 2, 4, 6" in text
    assert "Layer 1 (`blocks.1`, run at layers 1, 3, 5, 7" in text
    assert "Layer 8 (`blocks.2`)" in text

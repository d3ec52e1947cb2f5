"""``construct.teach.pictures``: the teaching pictures are written, readable, deterministic and right."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib import image  # noqa: E402

from construct.algorithms.registry import get_algorithm  # noqa: E402
from construct.model.assemble import CompiledModel, compile_program  # noqa: E402
from construct.compiler.config import CompileConfig  # noqa: E402
from construct.teach.example_picture import attention_pattern, run_example  # noqa: E402
from construct.teach.pictures import row_labels, write_pictures  # noqa: E402

ALGORITHMS = ("gd", "sherman-morrison")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _compile(name: str) -> CompiledModel:
    algorithm = get_algorithm(name)
    return compile_program(algorithm.program(algorithm.resolve(d=2)),
                           CompileConfig.for_dtype("float64"))


@pytest.fixture(scope="module", params=ALGORITHMS)
def compiled(request: pytest.FixtureRequest) -> CompiledModel:
    return _compile(request.param)


@pytest.fixture(scope="module")
def written(compiled: CompiledModel,
            tmp_path_factory: pytest.TempPathFactory) -> list[pathlib.Path]:
    # Rendering dominates this file's run time, so each set is written once and shared.
    return write_pictures(compiled, tmp_path_factory.mktemp("pictures"), compiled.program.name)


def test_writes_one_picture_per_layer_plus_layout_and_example(
        compiled: CompiledModel, written: list[pathlib.Path]) -> None:
    stem = compiled.program.name
    expected = ([f"{stem}-layout.png"]
                + [f"{stem}-layer{l}.png" for l in range(compiled.shape.n_layers)]
                + [f"{stem}-example.png"])
    assert [p.name for p in written] == expected
    assert sorted(p.name for p in written[0].parent.iterdir()) == sorted(expected)


def test_pictures_are_readable_pngs(written: list[pathlib.Path]) -> None:
    for path in written:
        assert path.read_bytes()[:8] == PNG_SIGNATURE, path
        pixels = image.imread(path)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100, path


@pytest.mark.parametrize("compiled", ["gd"], indirect=True)  # one suffices; renders are slow
def test_writing_twice_gives_identical_bytes(compiled: CompiledModel,
                                             written: list[pathlib.Path],
                                             tmp_path: pathlib.Path) -> None:
    again = write_pictures(compiled, tmp_path, "gd")
    for first, second in zip(written, again, strict=True):
        assert first.read_bytes() == second.read_bytes(), first.name


def test_row_labels_name_every_row_of_every_live_slot(compiled: CompiledModel) -> None:
    layout = compiled.layout
    for layer in range(compiled.shape.n_layers):
        labels = row_labels(compiled, layer)
        assert len(labels) == layout.d_model
        for name, row in layout.fixed.items():
            assert labels[row] == name
        for name in (n for n in layout.slots if layout.live_after_layer(n, layer)):
            rows = layout.rows(name)
            for k, row in enumerate(rows):
                entry = name if len(rows) == 1 else f"{name}[{k}]"
                assert entry in labels[row].split(" / "), (layer, name, labels[row])


def test_first_head_is_a_hard_point_read_on_the_example(compiled: CompiledModel) -> None:
    tokens, cache = run_example(compiled, seed=0)
    pattern = attention_pattern(compiled, cache.residuals[0].numpy(), 0, 0)
    assert pattern.shape == (len(tokens), len(tokens))
    np.testing.assert_allclose(pattern.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(pattern.max(axis=1) > 0.999)
    assert np.all(np.triu(pattern, 1) == 0)  # causal: no weight on later keys


def test_shared_loop_is_drawn_once_per_stored_block(tmp_path: pathlib.Path) -> None:
    import dataclasses

    algorithm = get_algorithm("sgd")
    config = dataclasses.replace(CompileConfig.for_dtype("float64"), form="shared")
    shared = compile_program(algorithm.program(algorithm.resolve(d=2, n=3)), config)
    paths = write_pictures(shared, tmp_path, "s", n_examples=3)
    first, length, times = shared.shape.loop
    drawn = list(range(first + length)) + list(  # the prologue, the stage once, the rest
        range(first + times * length, shared.shape.depth))
    assert [p.name for p in paths] == ["s-layout.png", *(f"s-layer{l}.png" for l in drawn),
                                       "s-example.png"]
    assert len(drawn) == shared.shape.n_layers

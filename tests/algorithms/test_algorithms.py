"""construct.algorithms.theorems: the paper's listing and the builder program compile to models that agree."""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from construct.language import interpreter
from construct.algorithms.registry import PROGRAM_ALGORITHMS as ALGORITHMS, get_algorithm
from construct.model.assemble import compile_program
from construct.compiler.config import CompileConfig
from construct.model.transformer import Transformer
from construct.language.program import ProgramError
from construct.compiler.propagate import end_to_end_bound
from verify.solvers import closed_form_prediction
from verify.tasks import make_tasks

PARAMS = {"gd": {"alpha": Fraction(1, 10), "lam": Fraction(1, 100)},
          "sherman-morrison": {"lam": Fraction(1, 2)}}


LISTED = sorted(name for name, algorithm in ALGORITHMS.items() if algorithm.listing)


@pytest.mark.parametrize("name", LISTED)
@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_listing_and_builder_compile_to_models_that_agree(name: str, d: int) -> None:
    algorithm = get_algorithm(name)
    params = algorithm.resolve(d=d, **PARAMS[name])
    tasks = make_tasks(d, 200, 4.0, seed=d)
    predictions, bounds = [], []
    for listing in (False, True):
        program = algorithm.program(params, listing=listing)
        compiled = compile_program(program, CompileConfig())
        model = Transformer(compiled.shape, compiled.weights)
        predictions.append(model(tasks.tokens).output[:, 2, 0])
        bounds.append(end_to_end_bound(compiled, "float64"))
    closed = closed_form_prediction(name, params, tasks)[:, -1]
    scale = float(closed.abs().max())
    # The builder meets the 1e-6 target; the listing (no declared bounds, so its GeLU
    # products are scaled by looser interval bounds) is held to its own propagated bound.
    assert float((predictions[0] - closed).abs().max()) <= 1e-6 * scale
    assert float((predictions[1] - closed).abs().max()) <= bounds[1]
    assert float((predictions[0] - predictions[1]).abs().max()) <= bounds[0] + bounds[1]


@pytest.mark.parametrize("name", LISTED)
def test_listing_is_the_paper_op_count(name: str) -> None:
    algorithm = get_algorithm(name)
    listing = algorithm.program(algorithm.resolve(d=3), listing=True)
    assert len(listing.ops) == {"gd": 9, "sherman-morrison": 14}[name]
    sequential = compile_program(listing, CompileConfig(schedule="sequential"))
    assert sequential.shape.n_layers == len(listing.ops)  # Lemma 1: one layer per op


def test_builder_programs_equal_their_closed_form_on_the_interpreter() -> None:
    for name in LISTED:  # the multi-exemplar learners: tests/algorithms/test_learners.py
        algorithm = get_algorithm(name)
        params = algorithm.resolve(d=4, **PARAMS[name])
        tasks = make_tasks(4, 100, 4.0, seed=1)
        exact = interpreter.run(algorithm.program(params), tasks.tokens).prediction()[:, 1]
        closed = closed_form_prediction(name, params, tasks)[:, -1]
        torch.testing.assert_close(exact, closed, rtol=1e-12, atol=1e-12)


def test_unknown_algorithm_and_parameter_are_named() -> None:
    with pytest.raises(ProgramError, match="unknown algorithm 'sgdd'"):
        get_algorithm("sgdd")
    with pytest.raises(ProgramError, match="gd does not take --beta; it takes --alpha"):
        get_algorithm("gd").resolve(d=2, beta=1)
    with pytest.raises(ProgramError, match="gd does not take --precond; "):  # the flag of Gamma
        get_algorithm("gd").resolve(d=2, Gamma="1,0;0,1")
    with pytest.raises(ProgramError, match="lam must be > 0"):
        get_algorithm("sherman-morrison").resolve(d=2, lam=0)

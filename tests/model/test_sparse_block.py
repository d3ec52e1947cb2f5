"""construct.model.sparse_block: the cut-down block computes what the dense weights compute.

The reference is the dense numpy forward written from DESIGN.md
(``tests/model/test_transformer_activations.numpy_forward``), run on compiled weights (sparse:
most entries are exact zeros) and on the same weights with every zero replaced by a tiny
random value (nothing can be cut: the plan must keep every index)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from construct.algorithms.registry import get_algorithm
from construct.compiler.config import CompileConfig
from construct.model.assemble import compile_program
from construct.model.sparse_block import BlockPlan
from construct.model.transformer import Transformer
from tests.model.test_transformer_activations import numpy_forward
from verify.tasks import make_tasks


def _compiled(name: str, **params):
    algorithm = get_algorithm(name)
    resolved = algorithm.resolve(**params)
    return compile_program(algorithm.program(resolved), CompileConfig())


@pytest.mark.parametrize("name,params", [("gd", {"d": 3}), ("sherman-morrison", {"d": 2}),
                                         ("ridge", {"d": 2, "n": 3}), ("sgd", {"d": 2, "n": 3})])
def test_compiled_weights_forward_equals_the_dense_forward(name, params):
    compiled = _compiled(name, **params)
    model = Transformer(compiled.shape, compiled.weights)
    tasks = make_tasks(compiled.program.d, 4, 4.0, 0, n_examples=params.get("n", 1),
                       prior_column=compiled.program.prior_column)
    got = model.outputs(tasks.tokens).numpy()
    for b in range(4):
        want = numpy_forward(compiled.shape, compiled.weights, tasks.tokens[b].numpy())
        scale = np.abs(want).max()
        # Same terms, another summation order: rounding differences of ~1e-16 relative, which
        # the GeLU products' scale kappa ~ 1/eps^2 amplifies to ~1e-9 in the values; far
        # below any construction error (compare a 1 % weight change: ~1e-2).
        assert np.abs(got[b] - want).max() <= 1e-7 * max(scale, 1.0)


def test_the_plan_keeps_far_less_than_the_dense_block_of_a_compiled_model():
    compiled = _compiled("ridge", d=4, n=2)
    model = Transformer(compiled.shape, compiled.weights)
    plan = model.plan(0)
    dense = compiled.shape.n_heads * compiled.shape.d_model * compiled.shape.d_head
    kept = sum(head.w_q.numel() + head.w_k.numel() for head in plan.heads)
    assert kept < dense / 10


def test_dense_weights_keep_every_index():
    rng = np.random.default_rng(0)
    compiled = _compiled("gd", d=2)
    weights = {k: np.where(v == 0, 1e-3 * rng.standard_normal(np.shape(v)), v)
               for k, v in compiled.weights.items()}
    model = Transformer(compiled.shape, weights)
    plan = model.plan(0)
    shape = compiled.shape
    assert all(len(head.rows_q) == shape.d_model and head.w_q.shape[1] == shape.d_head
               for head in plan.heads)
    assert plan.w_in.shape == (shape.d_model, shape.d_mlp)
    tokens = make_tasks(2, 1, 4.0, 1).tokens
    want = numpy_forward(shape, weights, tokens[0].numpy())
    assert np.abs(model.outputs(tokens)[0].numpy() - want).max() <= 1e-9 * np.abs(want).max()


def test_a_plan_reads_only_what_the_weights_say():
    """The plan is built from the tensors alone: a weight set to zero after compilation is
    cut, one made nonzero is kept."""
    compiled = _compiled("gd", d=2)
    weights = {k: np.array(v, copy=True) for k, v in compiled.weights.items()}
    w_q = weights["blocks.0.attn.W_Q"]
    dims_before = len(BlockPlan.of_block(lambda n: torch.as_tensor(weights[n]),
                                         "blocks.0.", True).heads[0].b_q)
    w_q[0, :, :] = 0.0
    weights["blocks.0.attn.b_Q"][0, :] = 0.0
    dims_after = len(BlockPlan.of_block(lambda n: torch.as_tensor(weights[n]),
                                        "blocks.0.", True).heads[0].b_q)
    assert dims_before > 0 and dims_after == 0


@pytest.mark.parametrize("name,params", [("gd", {"d": 3}), ("sgd", {"d": 2, "n": 3}),
                                         ("ridge", {"d": 2, "n": 3})])
def test_position_scored_heads_use_one_pattern_for_every_task(name, params):
    """Compiled heads score with position rows nothing writes: the pattern is computed once,
    from ``W_pos``, and the forward equals the per-task one."""
    compiled = _compiled(name, **params)
    model = Transformer(compiled.shape, compiled.weights)
    tasks = make_tasks(compiled.program.d, 8, 4.0, 3, n_examples=params.get("n", 1),
                       prior_column=compiled.program.prior_column)
    n_tokens = tasks.tokens.shape[-2]
    assert all(model.position_pattern(l, n_tokens) is not None
               for l in range(compiled.shape.n_layers))
    cached = model.outputs(tasks.tokens)
    model._position_patterns = {key: None for key in model._position_patterns}
    assert torch.equal(cached, model.outputs(tasks.tokens))


def test_position_patterns_past_the_budget_are_used_not_kept(monkeypatch):
    """A long context's patterns (1.6 GB a layer at n = 4096) are not all kept: past
    ``PATTERN_CACHE_BYTES`` each is computed where it is used; the outputs do not change."""
    from construct.model import transformer

    compiled = _compiled("ridge", d=2, n=3)
    tasks = make_tasks(2, 4, 4.0, 1, n_examples=3, prior_column=compiled.program.prior_column)
    n_tokens = tasks.tokens.shape[-2]
    kept_all = Transformer(compiled.shape, compiled.weights)
    expected = kept_all.outputs(tasks.tokens)
    one = kept_all.position_pattern(0, n_tokens)
    monkeypatch.setattr(transformer, "PATTERN_CACHE_BYTES", one.numel() * one.element_size())
    budgeted = Transformer(compiled.shape, compiled.weights)
    assert torch.equal(budgeted.outputs(tasks.tokens), expected)
    kept = [p for p in budgeted._position_patterns.values() if p is not None]
    assert len(kept) == 1 < sum(p is not None for p in kept_all._position_patterns.values())


def test_a_head_reading_a_written_row_scores_per_task():
    """Once a block writes a row a head's query reads (here ``b_O`` of block 0 adds to it),
    the scores depend on the task and no pattern is shared."""
    compiled = _compiled("gd", d=2)
    model = Transformer(compiled.shape, compiled.weights)
    row = int(model.plan(0).heads[0].rows_q[0])
    assert model.position_pattern(0, 4) is not None
    weights = {k: np.array(v, copy=True) for k, v in compiled.weights.items()}
    weights["blocks.0.attn.b_O"][row] = 1e-3
    assert Transformer(compiled.shape, weights).position_pattern(0, 4) is None
    noisy = {k: np.where(v == 0, 1e-3, v) for k, v in compiled.weights.items()}
    assert Transformer(compiled.shape, noisy).position_pattern(0, 4) is None

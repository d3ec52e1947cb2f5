"""construct.algorithms.learners: sgd, ridge and gd-batch at every prefix, at the three levels of truth.

Closed form (verify.solvers) <= interpreter (exact semantics) <= compiled transformer (each
op checked against its own bound, every prefix against the closed form), in both forms.
"""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from hypothesis import given, strategies as st

from construct.language import interpreter
from construct.algorithms.registry import get_algorithm
from construct.model.assemble import compile_program
from construct.compiler.config import CompileConfig, torch_dtype
from construct.model.inputs import InputError, validate_tokens
from construct.model.transformer import Transformer
from construct.algorithms.ridge_solve import RidgeMethod
from construct.language.parser import ParseError, parse_program
from verify.check.runner import verify_model
from verify.solvers import closed_form_prediction
from verify.tasks import make_tasks

LEARNERS = ("sgd", "ridge", "gd-batch")
CPU = torch.device("cpu")


def draw_params(data: st.DataObject, name: str, d: int, n: int, bound: float) -> dict:
    params: dict[str, object] = {"d": d, "n": n}
    if name == "ridge":
        params["lam"] = data.draw(st.fractions(Fraction(1, 10), Fraction(4), max_denominator=50),
                                  label="lam")
        params["method"] = data.draw(st.sampled_from(list(RidgeMethod)), label="method")
        return params
    params["lam"] = data.draw(st.fractions(Fraction(0), Fraction(1), max_denominator=50),
                              label="lam")
    # SGD stays inside its worst-case bound when alpha d B^2 <= 1 (learners.sgd_weight_bound)
    top = Fraction(1, 4) if name == "gd-batch" else Fraction(1) / (d * Fraction(bound) ** 2)
    params["alpha"] = data.draw(st.fractions(Fraction(0), top, max_denominator=1000),
                                label="alpha")
    params["w0"] = data.draw(st.lists(st.fractions(-1, 1, max_denominator=10), min_size=d,
                                      max_size=d), label="w0")
    return params


@given(data=st.data())
def test_interpreter_equals_closed_form_at_every_prefix(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(LEARNERS), label="name")
    d, n = data.draw(st.integers(1, 8), label="d"), data.draw(st.integers(1, 32), label="n")
    algorithm = get_algorithm(name)
    params = algorithm.resolve(**draw_params(data, name, d, n, 4.0))
    program = algorithm.program(params)
    tasks = make_tasks(d, 16, 4.0, data.draw(st.integers(0, 10 ** 6), label="seed"),
                       n_examples=n, prior_column=program.prior_column)
    exact = interpreter.run(program, tasks.tokens).prediction()
    closed = closed_form_prediction(name, params, tasks)
    assert exact.shape == closed.shape == (16, n + 1)
    scale = max(float(closed.abs().max()), 1.0)
    assert float((exact - closed).abs().max()) <= 1e-9 * scale


def _verify(name: str, params: dict, dtype: str, form: str, trials: int = 32,
            seed: int = 0, bound: float = 4.0) -> dict:
    algorithm = get_algorithm(name)
    params = algorithm.resolve(**params)
    config = CompileConfig.for_dtype(dtype, input_bound=bound, form=form)
    compiled = compile_program(algorithm.program(params, bound), config)
    model = Transformer(compiled.shape, compiled.weights, torch_dtype(dtype))
    return verify_model(compiled, model, name, params, dtype=dtype, device=CPU, trials=trials,
                        seed=seed, metric_tasks=4)


@given(data=st.data())
def test_compiled_learners_verify(data: st.DataObject) -> None:
    """Every op within its own bound, every prefix within the propagated bound, and the
    nearest reference learner (SPD) is the algorithm itself."""
    name = data.draw(st.sampled_from(LEARNERS), label="name")
    d, n = data.draw(st.integers(1, 3), label="d"), data.draw(st.integers(1, 4), label="n")
    bound = data.draw(st.sampled_from([1.0, 2.0, 4.0]), label="bound")
    params = draw_params(data, name, d, n, bound)
    dtype = data.draw(st.sampled_from(["float64", "float32"]), label="dtype")
    form = data.draw(st.sampled_from(["stacked", "shared"]), label="form")
    report = _verify(name, params, dtype, form, seed=data.draw(st.integers(0, 10 ** 6)),
                     bound=bound)
    assert report["ok"], [r for r in report["rows"] if not r["ok"]] or report["metrics"]
    prefixes = [r for r in report["rows"] if r["check"].startswith("prefix ")]
    assert len(prefixes) == n + 1
    if dtype == "float64":
        assert max(r["max_rel"] for r in prefixes) <= 1e-5


@pytest.mark.parametrize("method", list(RidgeMethod))
def test_ridge_meets_the_float64_target_at_every_prefix(method: RidgeMethod) -> None:
    """Issue target: ridge with d = 4, n = 16, lam >= 0.1, float64 relative error <= 1e-5."""
    params = {"d": 4, "n": 16, "lam": Fraction(1, 10), "method": method}
    report = _verify("ridge", params, "float64", "shared", trials=64)
    assert report["ok"]
    prefixes = [r for r in report["rows"] if r["check"].startswith("prefix ")]
    assert max(r["max_rel"] for r in prefixes) <= 1e-5
    assert report["metrics"]["nearest"].startswith("ridge") and report["metrics"]["margin"] > 1e6
    own = [r for r in report["rows"] if r["check"].startswith("op ")]
    program = get_algorithm("ridge").program(get_algorithm("ridge").resolve(**params))
    virtual = compile_program(program, CompileConfig(form="shared")).schedule.virtual
    stored = [op for op in program.ops if op.dst not in virtual]
    assert len(own) == len(stored) and all(r["ok"] and r["bound"] < float("inf") for r in own)


@pytest.mark.parametrize("name", ["sgd", "ridge"])
def test_shared_form_keeps_parameters_constant_in_n(name: str) -> None:
    algorithm = get_algorithm(name)
    sizes = {}
    method = {"method": RidgeMethod.SHERMAN_MORRISON} if name == "ridge" else {}
    for n in (2, 6):
        params = algorithm.resolve(d=2, n=n, **method)
        for form in ("stacked", "shared"):
            compiled = compile_program(algorithm.program(params), CompileConfig(form=form))
            sizes[form, n] = (compiled.n_params, compiled.shape.depth, compiled.shape.n_layers)
            stage = compiled.shape.loop[1] if form == "shared" else None
    assert sizes["shared", 2][0] == sizes["shared", 6][0]
    # stacked: every stage stores its own blocks (4 more stages, 4 more stage blocks)
    assert sizes["stacked", 6][2] - sizes["stacked", 2][2] == 4 * stage
    assert sizes["stacked", 6][0] > 1.5 * sizes["stacked", 2][0]
    assert sizes["shared", 6][1] > sizes["shared", 2][1]  # depth still grows with n
    assert sizes["shared", 6][2] == sizes["shared", 2][2]  # stored blocks do not


@pytest.mark.parametrize("method", list(RidgeMethod))
def test_shared_and_stacked_forms_agree(method: RidgeMethod) -> None:
    algorithm = get_algorithm("ridge")
    params = algorithm.resolve(d=3, n=5, method=method)
    tasks = make_tasks(3, 64, 4.0, 3, n_examples=5, prior_column=True)
    outputs = []
    for form in ("stacked", "shared"):
        compiled = compile_program(algorithm.program(params), CompileConfig(form=form))
        model = Transformer(compiled.shape, compiled.weights)
        outputs.append(model(tasks.tokens).output[:, tasks.x_columns, 0])
    closed = closed_form_prediction("ridge", params, tasks)
    for out in outputs:
        assert float((out - closed).abs().max()) <= 1e-6 * float(closed.abs().max())


@pytest.mark.parametrize("name", LEARNERS)
def test_program_text_round_trips_with_prior_and_loop(name: str) -> None:
    algorithm = get_algorithm(name)
    program = algorithm.program(algorithm.resolve(d=3, n=3))
    assert parse_program(program.text()) == program
    unrolled = program.unrolled()
    assert unrolled.loop is None and parse_program(unrolled.text()) == unrolled
    if program.loop is not None:
        assert len(unrolled.ops) == len(program.ops) + 2 * program.loop.length
        assert len(unrolled.assumptions) > len(program.assumptions)


@pytest.mark.parametrize("text, message", [
    ("repeat 2\na = mov x prev\n", "without `end repeat`"),
    ("end repeat\n", "without `repeat`"),
    ("prior a [1, 2, 3]\n", "flat list of 2"),
    ("prior nope [1]\n", "unknown slot"),
    ("repeat 0\na = mov x prev\nend repeat\n", "repeat count must be an integer >= 1"),
])
def test_malformed_prior_and_loop_are_located(text: str, message: str) -> None:
    head = "program p\nd 2\nslot x 2\nslot y 1\nslot a 2\nslot o 1\ninput x y\noutput o\n"
    body = "o = dot a x\n"
    with pytest.raises(ParseError, match=message) as caught:
        parse_program(head + text + body)
    assert caught.value.line >= 9


def test_prior_column_token_must_be_zero() -> None:
    tasks = make_tasks(2, 4, 4.0, 0, n_examples=2, prior_column=True)
    validate_tokens(tasks.tokens, 2, 4.0, 64, prior_column=True)
    bad = tasks.tokens.clone()
    bad[1, 0, 2] = 0.5
    with pytest.raises(InputError, match="prior column"):
        validate_tokens(bad, 2, 4.0, 64, prior_column=True)
    with pytest.raises(InputError, match="interleaved layout"):
        validate_tokens(tasks.tokens, 2, 4.0, 64, prior_column=False)


def test_sgd_bound_is_declared_for_unstable_steps_too() -> None:
    """Beyond alpha d B^2 <= 1 the worst-case |w| bound grows geometrically in n."""
    from construct.algorithms.learners import sgd_weight_bound

    stable = sgd_weight_bound(4, 16, Fraction(1, 100), Fraction(0), [0.5] * 4, 2.0)
    unstable = sgd_weight_bound(4, 16, Fraction(1, 10), Fraction(0), [0.5] * 4, 2.0)
    assert stable < 10 < 1e5 < unstable

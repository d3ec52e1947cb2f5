"""Minimized programs that once miscompiled or crashed (issue 16's known failures), each
compiled and run against the interpreter."""
from __future__ import annotations

import pathlib

import pytest
import torch

from construct.language import interpreter
from construct.language.parser import parse_program
from construct.language.program import ProgramError
from construct.model.assemble import compile_program
from construct.model.transformer import Transformer
from verify.tasks import make_tasks

HEADER = """program p
d 1
slot x 1
slot y 1
slot a 1
slot b 1
slot o 1
input x y
"""


def _run(text: str) -> tuple[torch.Tensor, torch.Tensor]:
    program = parse_program(text)
    compiled = compile_program(program)
    tokens = make_tasks(1, 16, 4.0, 0, n_examples=2, prior_column=program.prior_column).tokens
    model = Transformer(compiled.shape, compiled.weights)
    return model.outputs(tokens)[..., 0], interpreter.run(program, tokens).final[program.output][..., 0]


def test_a_prior_no_op_reads_keeps_its_own_rows():
    """Was: ``b``'s (never read) rows were ``a``'s, W_pos[0] held 5 there, the model output 5
    where the program gives 1, against a claimed bound of 4.8e-15."""
    got, want = _run(HEADER + "output o\nprior a [1]\nprior b [5]\no = mov a col 0\n")
    assert torch.allclose(got, want, atol=1e-12) and float(want.abs().max()) == 1.0


def test_an_unwritten_prior_as_the_output_compiles():
    """Was: IndexError in the end-to-end bound."""
    got, want = _run(HEADER + "output a\nprior a [2]\no = mov x prev\n")
    assert torch.allclose(got, want, atol=1e-12)


def test_a_program_without_operations_is_refused_by_name():
    program = parse_program(HEADER + "output a\nprior a [2]\n")
    with pytest.raises(ProgramError, match="no operations"):
        compile_program(program)


def test_explicit_groups_in_a_repeat_body_of_two_groups_compile():
    """Was refused: ``Program.unrolled()`` wrote the groups group-major, out of order."""
    text = ("program p\nd 1\nslot x 1\nslot y 1\nslot a 1\nslot b 1\ninput x y\noutput b\n"
            "groups explicit\nrepeat 2\na = mov x prev\nb = mov a prev\nend repeat\n")
    program = parse_program(text)
    unrolled = program.unrolled()
    assert [g[0] for g in unrolled.groups] == sorted(g[0] for g in unrolled.groups)
    got, want = _run(text)
    assert torch.allclose(got, want, atol=1e-12)


def test_sequential_with_a_shared_group_names_the_schedule():
    """Was: "an input or an earlier write is not ready", blaming the program."""
    from construct.compiler.config import CompileConfig
    from construct.compiler.schedule import ScheduleError

    program = parse_program("program p\nd 1\nslot x 1\nslot y 1\nslot a 1\nslot b 1\n"
                            "input x y\noutput b\na = mov x prev || b = mov x prev on y\n")
    with pytest.raises(ScheduleError, match="sequential schedule places one op per layer"):
        compile_program(program, CompileConfig(schedule="sequential"))
    compile_program(program, CompileConfig(schedule="packed"))


# ---------------------------------------------------------------- found by rawc fuzz (issue 16)
from construct.compiler.refusal import CompileRefusal, Refusal  # noqa: E402
from verify.check.stats import ErrorStat  # noqa: E402
from verify.fuzz.generator import KEYWORD_NAMES  # noqa: E402
from verify.fuzz.oracle import Outcome, check_program  # noqa: E402


def _program_file(name: str) -> str:
    """A minimized program too long to inline, from ``tests/compiler/programs``."""
    return (pathlib.Path(__file__).parent / "programs" / name).read_text()


def _outcomes(text: str) -> set[Outcome]:
    return {t.outcome for t in check_program(parse_program(text))}


def test_a_div_into_its_own_divisor_is_checked_on_the_divisor_it_read():
    """Was: the own-error check read the divisor after the attention half had cleared its rows
    for the quotient, divided by 0 and reported an infinite error against 6e-15."""
    text = ("program p\nd 1\nslot x 1\nslot y 1\nslot pi 1\nslot s1 1\nslot s4 1\ninput x y\n"
            "output s4\nprior pi [1/2]\ns1 = mul pi pi 1x1x1\npi = aff pi * 2 + bias [1/4]\n"
            "pi = div s1 pi\ns4 = mov pi self\n")
    assert _outcomes(text) == {Outcome.AGREE}


def test_an_exactly_zero_read_still_bounds_the_rows_it_reads():
    """Was: ``s2 = 0 * s2`` leaves the leak of clearing the prior value (1e-28) in its rows;
    the mov's own bound, written at magnitude 0, was 0 and the mean read's 1.9e-56 failed."""
    text = ("program p\nd 1\nslot x 1\nslot y 1\nslot s2 1\nslot s3 1\ninput x y\noutput s3\n"
            "prior s2 [-3/4]\ns2 = aff s2 * 0\nrepeat 2\ns3 = mov s2 mean(y)\nend repeat\n")
    assert _outcomes(text) == {Outcome.AGREE}


def test_a_constant_output_has_an_a_posteriori_bound():
    """Was: RuntimeError in autograd, the output (a bias alone) needing no gradient."""
    text = HEADER.replace("slot a 1\nslot b 1\nslot o 1\n", "slot o 1\n") + \
        "output o\no = aff bias [1/3]\n"
    assert _outcomes(text) == {Outcome.AGREE}


def test_a_product_of_zeros_keeps_layernorms_mean_shift_in_its_a_posteriori_bound():
    """Was: in float32 the product's LayerNorm mean-shift rounding (set by the pads, not by the
    operands) was scaled away where the operands are 0: observed 3.6e-7 over a bound of
    9.7e-8."""
    text = ("program p\nd 1\nslot x 1\nslot y 1\nslot s2 1\nslot s3 1\nslot den 1\nslot q 1\n"
            "slot on 1\nslot o 1\ninput x y\noutput o\nprior s2 [-1/2]\n"
            "s3 = mul s2 s2 1x1x1\nden = aff s3 * 3/2 + bias [1/4]\nq = div s2 den\n"
            "on = mul s3 s3 1x1x1\no = mul on s2 1x1x1\n")
    assert _outcomes(text) == {Outcome.AGREE}
    compiled = compile_program(parse_program(text), __import__(
        "construct.compiler.config", fromlist=["CompileConfig"]).CompileConfig.for_dtype("float32"))
    product = compiled.errors[-1]
    assert product.mechanism.startswith("GeLU product through fixed-scale LayerNorm")
    assert product.at_magnitude("float32", 0.0) > 0


@pytest.mark.parametrize("constant", ["1e300", "1e200"])
def test_constants_past_the_range_are_refused_by_name(constant):
    """Was: OverflowError (1e300) and ZeroDivisionError (1e200) inside the lowering."""
    program = parse_program(HEADER + f"output o\na = aff x * {constant}\no = mul a a 1x1x1\n")
    with pytest.raises(CompileRefusal, match="beyond 1e\\+100") as refused:
        compile_program(program)
    assert refused.value.reason is Refusal.OUT_OF_RANGE


def test_magnitudes_past_the_range_are_refused_by_name():
    squares = "".join("a = mul a a 1x1x1\n" for _ in range(9))
    program = parse_program(HEADER + "output a\na = aff x * 4\n" + squares)
    with pytest.raises(CompileRefusal, match="op 8 .*may reach 1.34e\\+154") as refused:
        compile_program(program)
    assert refused.value.reason is Refusal.OUT_OF_RANGE


def test_a_divisor_that_can_be_zero_is_refused_by_name():
    """Was: compiled without a word (the floor defaulted to 1 and nothing checked it)."""
    program = parse_program(HEADER + "output o\na = mov y prev\no = div x a\n")
    with pytest.raises(CompileRefusal, match=r"op 2 \(div -> o\): cannot prove \|a\| > 0") as e:
        compile_program(program)
    assert e.value.reason is Refusal.DIVISOR_MAY_BE_ZERO
    declared = parse_program(HEADER + "output o\na = mov y prev\no = div x a min 1/2\n")
    compile_program(declared)  # declared: an assumption rawc verify checks per task
    proven = parse_program(HEADER + "output o\nb = mul y y 1x1x1\na = aff b * 1 + bias [1/2]\n"
                                    "o = div x a\n")
    assert compile_program(proven).program.ops[-1].min_abs == pytest.approx(0.5, rel=1e-8)


def test_a_declared_floor_no_input_can_reach_is_refused():
    program = parse_program(HEADER + "output o\na = aff bias [1/4]\no = div x a min 1\n")
    with pytest.raises(CompileRefusal) as refused:
        compile_program(program)
    assert refused.value.reason is Refusal.DIVISOR_BELOW_DECLARED


def test_a_nan_error_is_never_within_a_bound():
    """Was: ``max(0.0, nan)`` is 0.0, so a NaN output passed every bound."""
    stat = ErrorStat("end-to-end", 1.0)
    stat.update(torch.tensor([float("nan"), 0.5]), torch.tensor([0.0, 0.5]))
    assert not stat.ok


@pytest.mark.parametrize("name", [n for n in KEYWORD_NAMES if n not in ("x", "y")])
def test_every_keyword_like_name_works_as_a_divisor(name):
    """Known failure 2: a divisor slot named `mul` compiled as a multiply layer."""
    text = (f"program p\nd 1\nslot x 1\nslot y 1\nslot {name} 1\nslot o 1\ninput x y\n"
            f"output o\n{name} = aff bias [2]\no = div y {name}\n")
    assert _outcomes(text) == {Outcome.AGREE}


def test_a_divisor_below_its_floor_in_the_model_voids_the_ops_own_bound():
    """Was (float32, a 72-op program): the model's divisor, carrying earlier errors, fell to
    ~0 and the quotient overflowed (1.8e308) against an own bound of 1.6e16 written for
    ``|den| >= m``. The own bound now grows like ``m / min |den|`` (infinite at 0)."""
    from verify.check.layers import read_growth

    program = parse_program(HEADER + "output o\nb = mul y y 1x1x1\na = aff b * 1 + bias [1/2]\n"
                                     "o = div x a\n")
    compiled = compile_program(program)
    index = len(compiled.program.ops) - 1
    shape = (1, 3, 1)
    state = {"x": torch.full(shape, 1.0), "a": torch.full(shape, 0.5)}
    assert read_growth(compiled, index, state) == pytest.approx(1.0, rel=1e-6)
    state["a"] = torch.tensor([[[0.5], [0.125], [1.0]]])
    assert read_growth(compiled, index, state) == pytest.approx(4.0, rel=1e-6)
    state["a"] = torch.tensor([[[0.5], [0.0], [1.0]]])
    assert read_growth(compiled, index, state) == float("inf")


def test_pads_written_over_a_large_division_keep_their_rounding_in_the_bound():
    """Was (gated, float32): after a div layer whose pads reach ``N |c|`` (6.6e10), the next
    layer's self head writes the pads back to ``P = 1e7`` with rounding ``u N |c|``, which
    moved LayerNorm's scale and the products read through it 4x past their bounds."""
    text = ("program p\nd 1\nslot x 1\nslot y 1\nslot s1 1\nslot s2 1\nslot s3 1\nslot s4 1\n"
            "slot s5 1\nslot s6 1\ninput x y\noutput s6\ns1 = mul x x 1x1x1\n"
            "s2 = aff s1 * 0 + bias [1/4]\ns3 = div x s2\nrepeat 2\ns2 = mul s1 s1 1x1x1\n"
            "s4 = mul s2 s2 1x1x1\ns5 = aff s4 * 1/2 + bias [1/4]\ns6 = div s1 s5\n"
            "end repeat\n")
    assert not {t.outcome for t in check_program(parse_program(text))} & {Outcome.DISAGREE,
                                                                           Outcome.CRASHED}


def test_a_product_of_exact_zeros_keeps_its_operands_errors_in_the_a_posteriori_bound():
    """Was (gated): ``s3`` is 0 outside the prior column but holds a mov's leak (1e-28); its
    square's first-order a-posteriori bound was 0 against an observed 1e-56."""
    text = ("program p\nd 1\nslot x 1\nslot y 1\nslot s1 1\nslot s3 1\nslot s6 1\ninput x y\n"
            "output s6\nprior s1 [1/4]\ns3 = mov s1 self\ns6 = mul s3 s3 1x1x1\n")
    assert _outcomes(text) == {Outcome.AGREE}


def test_clearing_rows_that_held_an_earlier_error_keeps_its_leak_in_the_bound():
    """Was: every exact value 0, yet a mov's rows kept 1e-55 of an earlier product's error
    (its 2 leak |old| charged only the old value's magnitude, 0), against an own bound of 0."""
    text = ("program p\nd 2\nslot x 2\nslot y 1\nslot mul 1\nslot s1 1\nslot s2 1\nslot s3 1\n"
            "slot s4 1\nslot s5 1\nslot s20 1\nslot s21 1\ninput x y\noutput s21\n"
            "prior s1 [0]\nprior s2 [0]\nmul = mul s1 s1 1x1x1\ns3 = aff mul * 0 + bias [1/4]\n"
            "s4 = div s2 s3\ns5 = mul mul mul 1x1x1\nmul = mov mul self\ns20 = mov mul self\n"
            "s21 = mov mul self\n")
    for seed in range(3):
        outcomes = {t.outcome for t in check_program(parse_program(text), seed=seed)}
        assert not outcomes & {Outcome.DISAGREE, Outcome.CRASHED}, seed


def test_a_bound_past_float32_range_is_no_bound_in_float32():
    """Was: a float32 model overflowed to inf under a 'finite' bound of 1.7e292."""
    from construct.compiler.propagate import end_to_end_bound

    squares = "".join("a = mul a a 1x1x1\n" for _ in range(5))
    program = parse_program(HEADER + "output a\na = aff x * 4\n" + squares)
    compiled = compile_program(program)
    assert compiled.bounds.results[-1] > 3.4e38
    assert end_to_end_bound(compiled, "float32") == float("inf")


def test_a_division_after_larger_pads_keeps_their_rounding_in_its_bound():
    """Was (float32, paper and gated): the div layer writes its pads ``+-N c`` over pads up to
    ``N |c|max`` of an earlier division; their rounding moved the quotient 1.05-2x past its
    own bound."""
    text = ("program p\nd 1\nslot x 1\nslot y 1\nslot sq 1\nslot big 1\nslot q1 1\nslot q2 1\n"
            "slot small 1\ninput x y\noutput q2\nsq = mul x x 1x1x1\n"
            "big = aff sq * 8 + bias [1]\nq1 = div x big\nsmall = aff sq * 0 + bias [1/4]\n"
            "q2 = div q1 small\n")
    compiled = compile_program(parse_program(text),
                               __import__("construct.compiler.config", fromlist=["x"])
                               .CompileConfig.for_dtype("float32"))
    second = compiled.errors[-1]
    assert second.mechanism.startswith("LayerNorm division")
    for seed in range(3):
        outcomes = {t.outcome for t in check_program(parse_program(text), seed=seed)}
        assert not outcomes & {Outcome.DISAGREE, Outcome.CRASHED}, seed


def test_a_model_past_float32s_range_has_no_float32_bound():
    """Was: float32 models overflowed to inf (LayerNorm squaring pads of 1e6 |c|, products
    storing A B / eps^2) under finite bounds from 8e6 to 1e255; the checks read inf > bound.
    Now every float32 bound is infinite there (no guarantee), float64 keeps its own."""
    from construct.compiler.propagate import end_to_end_bound, representable

    text = (HEADER + "output o\nb = mul x x 1x1x1\nb = mul b b 1x1x1\nb = mul b b 1x1x1\n"
            "b = mul b b 1x1x1\na = aff b * 1 + bias [1]\no = div x a\n")
    compiled = compile_program(parse_program(text))
    assert not representable(compiled, "float32") and representable(compiled, "float64")
    assert end_to_end_bound(compiled, "float32") == float("inf")
    outcomes = {t.target.dtype: t.outcome for t in check_program(parse_program(text))
                if t.target.target == "paper" and t.target.schedule == "packed"}
    assert outcomes["float32"] is Outcome.NO_GUARANTEE


def test_a_float32_overflow_inside_a_shared_loop_is_no_guarantee():
    """Was: a float32 model of a weight-shared loop (magnitudes to 2e16, errors unbounded)
    overflowed in a division; the NaN reached every later head through zero weights
    (``0 * inf``) and a later mov, whose own reads were finite, failed its bound (1.4e17). No
    op is bounded on a residual that already holds inf or NaN."""
    text = ("program fuzz\nd 1\nslot input 1\nslot output 1\nslot s1 1\nslot alpha 1\n"
            "slot s2 1\nslot b 1\nslot mov 1\nslot s3 1\nslot div 1\nslot s4 1\nslot s5 1\n"
            "slot s6 1\ninput input output\noutput div\nrepeat 3\n"
            "s1 = mul input input 1x1x1\nalpha = aff s1 * 1 + bias [1/4]\n"
            "s2 = div input alpha\nb = div alpha alpha\ninput = mul alpha input 1x1x1\n"
            "mov = div alpha alpha\nend repeat\ns3 = mov alpha self\n"
            "div = mul output output 1x1x1\ns4 = mov alpha self\ns5 = div b alpha\n"
            "s6 = mov alpha self\n")
    outcomes = {t.outcome for t in check_program(parse_program(text))}
    assert not outcomes & {Outcome.DISAGREE, Outcome.CRASHED}


def test_a_quotient_of_a_product_and_its_folded_affine_map_is_within_its_a_posteriori_bound():
    """Was (seed 1, 10,000 programs): ``s10 = mul / (3/2 mul + 1/4)`` with the affine map folded
    beside the product: both rows read the same GeLU units but round their own sums, and the
    first-order bound assumed one error for both (exceeded 1.6-fold). The folded map now
    carries twice the product's unshared (rounding and clearing) part."""
    text = ("program fuzz\nd 1\nslot mul 1\nslot prev 1\nslot div 1\nslot s4 1\nslot s5 1\n"
            "slot s6 1\nslot s9 1\nslot s10 1\ninput mul prev\noutput s10\nprior column\n"
            "prior div [0]\ns4 = mul div div 1x1x1\ns5 = aff s4 * 0 + bias [1/4]\n"
            "s6 = div div s5\nmul = mul mul mul 1x1x1\ns9 = aff mul * 3/2 + bias [1/4]\n"
            "s10 = div mul s9\n")
    for seed in range(4):
        outcomes = {t.outcome for t in check_program(parse_program(text), seed=seed)}
        assert outcomes == {Outcome.AGREE}, seed


def test_a_float32_clear_under_an_earlier_slots_error_is_bounded_by_what_the_rows_held():
    """Was (seed 1, 10,000 programs; minimized to 30 ops): in float32 a row reused by
    ``mul = aff s26 * 1 + bias [3/4]`` held ``1e8`` of an earlier slot's (unbounded) error;
    clearing it rounded away the bias (error 0.75 against an own bound of 0.24). The own
    check now adds what the cleared rows actually held, the a-priori bound the occupants'
    error bounds."""
    text = _program_file("float32_clear_under_an_earlier_error.raw")
    outcomes = {t.outcome for t in check_program(parse_program(text))}
    assert not outcomes & {Outcome.DISAGREE, Outcome.CRASHED}


def test_a_float32_loop_that_runs_off_is_no_guarantee_not_a_disagreement():
    """Was (seed 0, 10,000 programs): in a float32 weight-shared loop earlier errors grew the
    model's divisor past the analysis' bound until its LayerNorm squared past the range (inf
    against a local bound of 1e25), and its values ran off where the program's were 0 (over
    a first-order a-posteriori bound). An MLP op whose LayerNorm input squares past the range
    has no bound, and a task whose reads its running error bounds may carry past their
    magnitudes has no a-posteriori bound there (``a_posteriori.within_magnitudes``)."""
    text = ("program fuzz\nd 1\nslot mul 1\nslot prev 1\nslot s1 1\nslot mov 1\nslot s2 1\n"
            "slot dot 1\nslot s3 1\nslot s4 1\nslot s5 1\nslot s6 1\ninput mul prev\n"
            "output s6\nrepeat 3\ns1 = mul mul mul 1x1x1\nmov = aff s1 * 1 + bias [1/4]\n"
            "s2 = div mul mov\ndot = div prev mov\nmul = mul dot mov 1x1x1\nend repeat\n"
            "s3 = div dot mov\ns4 = mov dot self\ns5 = aff bias [0]\ns6 = mov dot col(0)\n")
    for seed in range(2):
        trials = check_program(parse_program(text), seed=seed)
        assert not {t.outcome for t in trials} & {Outcome.DISAGREE, Outcome.CRASHED}, seed


def test_fixed_scale_pads_rewritten_over_an_unbounded_divisor_are_no_guarantee():
    """Was (seed 1, 10,000 programs; minimized to 21 ops): in float32 a division by a slot
    with an unbounded error left pads of ``~1e14``; rewriting them to ``+-P = 1e7`` kept
    ``2^24``, the next fixed-scale LayerNorm's scale was off by 68 % and a gated ``x * x``
    came out ``1.7e14`` off against its finite own bound. Where an earlier a-priori error is
    infinite and the pads are off, an MLP op has no bound."""
    text = _program_file("float32_gated_pads_over_unbounded_divisor.raw")
    outcomes = {t.outcome for t in check_program(parse_program(text))}
    assert not outcomes & {Outcome.DISAGREE, Outcome.CRASHED}


def test_a_float32_gated_product_holds_at_the_mean_the_rounded_pads_leave():
    """Was (seed 11, 1,500 programs, 59 ops): in float32 a gated ``s15 * s22`` (2.06 times
    1e-5) through a fixed-scale LayerNorm came out 1.45e-8 off against an own bound of
    8.6e-9: the pads, rewritten at 1e7 over old pads in sums of every row and every head's
    output, left the residual a mean of 0.092 (the bound took 0.068), and each operand read
    through LayerNorm rounds four times, not once. Both counts are now derived
    (``error_models.pad_mean_count``, ``gated_shift_rounding``)."""
    text = _program_file("float32_gated_layernorm_mean_of_rounded_pads.raw")
    outcomes = {t.outcome for t in check_program(parse_program(text))}
    assert not outcomes & {Outcome.DISAGREE, Outcome.CRASHED}


def test_a_divisor_exactly_at_its_proven_floor_is_inside_the_seeds_domain():
    """Was (seed 20261215, 600 programs; minimized to 39 ops): a divisor proven ``>= 29/56``
    that equals it computes a hair below it in the float64 interpreter, and verify's check of
    the gated seed's declared domain crashed (``AssumptionError``) on the exact value."""
    outcomes = _outcomes(_program_file("gated_divisor_at_its_floor.raw"))
    assert not outcomes & {Outcome.DISAGREE, Outcome.CRASHED}

"""The differential oracle: one program, every way it can be compiled, against the interpreter.

For every target (``targets_for``: MLP target and GeLU product rule x schedule x form x
dtype) the program is compiled and run by ``verify.check.runner.verify_model`` on random tasks inside the declared
input bound, with no closed form: every op against the interpreter on the model's own inputs,
every live slot after every layer against the propagated bound, the output at every prefix
end to end, and each task against its a-posteriori bound. Each run ends in one ``Outcome``:

- ``AGREE``: every error within its finite bound (the end-to-end ``observed / bound`` is kept
  for the tightness report);
- ``NO_GUARANTEE``: no error beyond a finite bound, but some bound is infinite: not an
  agreement;
- ``DISAGREE``: an error beyond the checkpoint's own finite bound (a silent miscompile);
- ``REFUSED``: a ``CompileRefusal``, whose named reason is then checked against the program
  (``refusal_is_true``); a reason that is not true is a ``DISAGREE``;
- ``CRASHED``: any other exception.

Two checks do not compile: the text front ends (``parse_program(program.text()) == program``,
and the paper notation's text where the program can be said in it)
and, on small programs, the interpreter's float64 run against its exact run on sympy
rationals (``EXACT_TOLERANCE`` relative to the output's magnitude bound).
"""
from __future__ import annotations

import dataclasses
import enum
import math
import traceback

import numpy as np
import sympy
import torch

from construct.compiler import analysis
from construct.compiler.config import CompileConfig, GeluProduct, MlpTarget, PositionCode, torch_dtype
from construct.compiler.intervals import MAX_MAGNITUDE, resolve_divisors
from construct.compiler.refusal import CompileRefusal, Refusal
from construct.language import interpreter
from construct.language.paper_printer import (NotExpressible, as_parsed, paper_text,
                                              same_up_to_slot_order)
from construct.language.parser import parse_program
from construct.language.program import Div, Program
from construct.model.assemble import compile_program
from construct.model.transformer import Transformer
from verify.check.runner import verify_model
from verify.tasks import make_tasks

EXACT_TOLERANCE = 1e-9
N_EXAMPLES = 3  # x1 y1 x2 y2 x3 y3 x_q: seven columns, so `col 4` and `back 3` read real ones
EXACT_MAX_OPS = 12


class Outcome(enum.Enum):
    AGREE = "agree"
    NO_GUARANTEE = "no guarantee (an infinite bound)"
    DISAGREE = "disagree beyond bound"
    REFUSED = "refused"
    CRASHED = "crashed"

    @property
    def failed(self) -> bool:
        return self in (Outcome.DISAGREE, Outcome.CRASHED)


@dataclasses.dataclass(frozen=True)
class Target:
    """One way to compile a program (``target``: the MLP, ``paper`` or ``gated``;
    ``gelu_product``: the paper target's product rule; ``position_code``: the point reads')."""

    schedule: str
    form: str
    dtype: str
    target: str = "paper"
    gelu_product: str = GeluProduct.POLARIZED.value
    position_code: str = PositionCode.QUADRATIC.value

    def config(self) -> CompileConfig:
        return CompileConfig.for_dtype(self.dtype, schedule=self.schedule, form=self.form,
                                       target=self.target, gelu_product=self.gelu_product,
                                       position_code=self.position_code)

    @property
    def label(self) -> str:
        other_rule = (self.target == "paper"
                      and self.gelu_product != GeluProduct.POLARIZED.value)
        dyadic = self.position_code == PositionCode.DYADIC.value
        return (f"{self.target}{f'-{self.gelu_product}' if other_rule else ''}"
                f"{'-dyadic' if dyadic else ''}/{self.schedule}/{self.form}/{self.dtype}")


FRONT_END = Target("-", "-", "-", "front-end")
EXACT = Target("-", "-", "float64", "interpreter-exact")


@dataclasses.dataclass(frozen=True)
class Trial:
    """What happened to one program under one target."""

    target: Target
    outcome: Outcome
    reason: str = ""  # the refusal's name, the failing check, or the exception
    ratio: float | None = None  # end-to-end observed / bound, for an agreement
    bound: float | None = None  # the end-to-end bound, for an agreement
    kind: str = ""  # what failed, without the numbers: a finding's class while shrinking

    def to_json(self) -> dict[str, object]:
        return {"target": self.target.label, "outcome": self.outcome.name,
                "reason": self.reason, "ratio": self.ratio, "bound": self.bound}


def targets_for(program: Program) -> tuple[Target, ...]:
    """Each MLP target under both schedules, forms and dtypes with the quadratic code (the
    paper target's other product rules under the packed schedule: a rule changes the MLP
    units, not the schedule); the dyadic code under the packed schedule with either MLP
    target (the code changes the heads' queries and keys and the leak, not the MLP or the
    schedule)."""
    forms = ("stacked", "shared") if program.loop is not None else ("stacked",)
    quadratic, dyadic = PositionCode.QUADRATIC, PositionCode.DYADIC
    default = GeluProduct.POLARIZED
    lowerings = tuple((target, default, quadratic, schedule)
                      for target in (MlpTarget.PAPER, MlpTarget.GATED)
                      for schedule in ("packed", "sequential"))
    lowerings += tuple((MlpTarget.PAPER, rule, quadratic, "packed")
                       for rule in (GeluProduct.RICHARDSON, GeluProduct.LEMMA4))
    lowerings += tuple((target, default, dyadic, "packed")
                       for target in (MlpTarget.PAPER, MlpTarget.GATED))
    return tuple(Target(schedule, form, dtype, target.value, rule.value, code.value)
                 for target, rule, code, schedule in lowerings
                 for form in forms for dtype in ("float64", "float32"))


def check_program(program: Program, tasks: int = 8, seed: int = 0) -> tuple[Trial, ...]:
    """Every trial of ``program``: the front end, the exact interpreter, every target."""
    trials = [_guarded(FRONT_END, lambda: _front_end(program))]
    if len(program.unrolled().ops) <= EXACT_MAX_OPS:
        trials.append(_guarded(EXACT, lambda: _exact_interpreter(program, seed)))
    for target in targets_for(program):
        trials.append(_guarded(target, lambda t=target: _compiled(program, t, tasks, seed)))
    return tuple(trials)


def _guarded(target: Target, run) -> Trial:
    try:
        return run()
    except CompileRefusal as refusal:
        return Trial(target, Outcome.CRASHED, f"refused outside compilation: {refusal}",
                     kind="refused outside compilation")
    except Exception as exc:  # noqa: BLE001 - any other exception is the finding
        where = traceback.extract_tb(exc.__traceback__)[-1]
        place = f"{where.filename.split('/')[-1]}:{where.lineno}"
        return Trial(target, Outcome.CRASHED, f"{type(exc).__name__}: {exc} (at {place})",
                     kind=f"{type(exc).__name__} at {place}")


def _front_end(program: Program) -> Trial:
    """Both text forms read back as the program: the native one exactly, the paper one (where
    the program can be said in it) up to the slots' names, shapes and order."""
    again = parse_program(program.text())
    if again != program:
        return Trial(FRONT_END, Outcome.DISAGREE, "parse(text(p)) != p", kind="front end")
    try:
        paper = paper_text(program)
    except NotExpressible:
        return Trial(FRONT_END, Outcome.AGREE)
    if not same_up_to_slot_order(parse_program(paper), as_parsed(program)):
        return Trial(FRONT_END, Outcome.DISAGREE, "parse(paper_text(p)) != p",
                     kind="paper front end")
    return Trial(FRONT_END, Outcome.AGREE, "paper")


def _exact_interpreter(program: Program, seed: int) -> Trial:
    """The float64 interpreter against the same interpreter on sympy rationals (one task)."""
    tasks = make_tasks(program.d, 1, 4.0, seed, n_examples=N_EXAMPLES,
                       prior_column=program.prior_column)
    tokens = tasks.tokens[0]
    floating = interpreter.run(program, tokens).final[program.output].numpy()
    exact_tokens = np.vectorize(sympy.Rational, otypes=[object])(tokens.numpy())
    exact = interpreter.run(program, exact_tokens).final[program.output]
    exact = np.array([[complex(v).real if v.is_finite else np.nan for v in row]
                      for row in exact])
    undefined = np.isnan(exact)  # a division by zero on this task: no value to compare
    if not np.array_equal(undefined, ~np.isfinite(floating)):
        return Trial(EXACT, Outcome.DISAGREE, "float64 and exact runs differ in where the "
                                              "value is undefined", kind="interpreter exact")
    exact, floating = exact[~undefined], floating[~undefined]
    if exact.size == 0:
        return Trial(EXACT, Outcome.AGREE)
    scale = max(1.0, float(np.abs(exact).max()))
    error = float(np.abs(floating - exact).max())
    if not error <= EXACT_TOLERANCE * scale:
        return Trial(EXACT, Outcome.DISAGREE, f"float64 vs exact: {error:.3g} at scale {scale:.3g}",
                     kind="interpreter exact")
    return Trial(EXACT, Outcome.AGREE)


def _compiled(program: Program, target: Target, tasks: int, seed: int) -> Trial:
    config = target.config()
    try:
        compiled = compile_program(program, config)
    except CompileRefusal as refusal:
        problem = refusal_problem(program, config, refusal)
        if problem:
            return Trial(target, Outcome.DISAGREE,
                         f"refused as {refusal.reason.name}, which is not true: {problem}",
                         kind=f"untrue refusal {refusal.reason.name}")
        return Trial(target, Outcome.REFUSED, refusal.reason.name)
    model = Transformer(compiled.shape, compiled.weights, torch_dtype(target.dtype))
    report = verify_model(compiled, model, "fuzz", {"n": N_EXAMPLES}, closed=False,
                          dtype=target.dtype, device=torch.device("cpu"), trials=tasks,
                          seed=seed, batch=tasks, scale=2.0)
    beyond = [row for row in report["rows"] if not row["ok"] and row["bound"] < math.inf]
    if beyond:
        row = max(beyond, key=lambda r: r["max_abs"] / max(r["bound"], 1e-300))
        return Trial(target, Outcome.DISAGREE, f"{row['check']}: error {row['max_abs']:.3g} > "
                                               f"bound {row['bound']:.3g}",
                     kind=_check_kind(row["check"]))
    posterior = report["a_posteriori"]
    if not posterior["ok"]:  # (an infinite bound has ratio 0: RatioStat)
        return Trial(target, Outcome.DISAGREE,
                     f"a-posteriori bound exceeded {posterior['worst_ratio']:.3g}-fold",
                     kind="a-posteriori bound")
    end = next(r for r in report["rows"] if r["check"].startswith("end-to-end"))
    if any(not row["bound"] < math.inf for row in report["rows"]):
        return Trial(target, Outcome.NO_GUARANTEE, "an infinite bound")
    ratio = end["max_abs"] / end["bound"] if end["bound"] > 0 else \
        (0.0 if end["max_abs"] == 0 else math.inf)
    return Trial(target, Outcome.AGREE, ratio=ratio, bound=end["bound"])


def _check_kind(label: str) -> str:
    """A report row's label without its op, slot or layer: ``op own error``, ``slot after a
    layer``, ``end to end``."""
    if label.endswith("(own error)"):
        return "op own error"
    if label.startswith("layer "):
        return "slot after a layer"
    return "end to end"


def refusal_problem(program: Program, config: CompileConfig, refusal: CompileRefusal) -> str:
    """Why the refusal's reason is *not* true of ``program`` ("" when it is)."""
    ops = program.unrolled().ops
    groups = program.groups
    match refusal.reason:
        case Refusal.NO_OPERATIONS:
            return "" if not program.ops else f"it has {len(program.ops)} ops"
        case Refusal.DIV_OVERWRITES_NUMERATOR:
            return "" if any(isinstance(op, Div) and op.dst == op.num for op in ops) \
                else "no div writes its numerator"
        case Refusal.SEQUENTIAL_GROUPS:
            return "" if config.schedule == "sequential" and groups and \
                any(len(g) > 1 for g in groups) else "no explicit group of several ops"
        case Refusal.GROUP_NOT_READY | Refusal.GROUP_LAYERNORM_CONFLICT:
            return "" if groups is not None else "the program has no explicit groups"
        case Refusal.GROUPED_GATED_DIVISION:
            return "" if config.target is MlpTarget.GATED and groups is not None and any(
                isinstance(op, Div) for op in ops) else "not a gated division in explicit groups"
        case Refusal.LOOP_NOT_UNIFORM:
            return "" if program.loop is not None and config.form == "shared" \
                else "no weight-shared loop"
        case Refusal.DIVISOR_MAY_BE_ZERO:
            return "" if any(isinstance(op, Div) and op.min_abs is None for op in ops) \
                else "every divisor declares its floor"
        case Refusal.DIVISOR_BELOW_DECLARED:
            return "" if any(isinstance(op, Div) and op.min_abs is not None for op in ops) \
                else "no divisor declares a floor"
        case Refusal.OUT_OF_RANGE:
            try:  # the interval analysis itself overflowing is the reason, or a bound
                resolved = resolve_divisors(program, config.input_bound).unrolled()
            except CompileRefusal as again:
                return "" if again.reason is Refusal.OUT_OF_RANGE else \
                    f"the intervals refuse it as {again.reason.name}"
            bounds = analysis.magnitude_bounds(resolved, config.input_bound)
            return "" if max(bounds.results) > MAX_MAGNITUDE else \
                f"its largest magnitude bound is {max(bounds.results):.3g}"
    return f"unknown reason {refusal.reason}"

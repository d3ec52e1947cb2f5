"""Every named algorithm, one registry: ``rawc list``, ``compile``, ``explain``, ``prove``.

Two families build weights in two ways, behind one interface (``resolve`` the parameters,
``construct`` the model the checkpoint writer takes):

- ``Family.PROGRAM``: a RAW program (``theorems``, ``learners``) run through the compiler to
  the paper's softmax + GeLU + LayerNorm blocks (``CompiledModel``);
- ``Family.LINEAR_ATTENTION``: linear self-attention blocks written down directly
  (``linear_attention``; ``LinearConstruction``).

Commands look an algorithm up here and ask it; the verifier and the course pages pick their
checks and sections by its ``family``.
"""
from __future__ import annotations

import dataclasses
import enum
import inspect
from collections.abc import Callable
from fractions import Fraction

from construct.algorithms import learners, stability, theorems
from construct.algorithms.family import Family
from construct.algorithms.linear_attention import LSA_ALGORITHMS, LSAAlgorithm
from construct.algorithms.ridge_newton import newton_steps, ridge_newton_program
from construct.algorithms.ridge_solve import RidgeMethod, ridge_solve_program
from construct.algorithms.parameters import Parameter, given_or_default, start_weights
from construct.algorithms.stability import Divergence
from construct.compiler.config import CompileConfig
from construct.language.program import Program, ProgramError, to_fraction
from construct.model.assemble import CompiledModel, compile_program


class LamRule(enum.Enum):
    """What a ridge penalty must satisfy for the algorithm to be defined."""

    ANY = "any real"
    NON_NEGATIVE = ">= 0"
    POSITIVE = "> 0"

    def admits(self, lam: Fraction) -> bool:
        return {LamRule.ANY: True, LamRule.NON_NEGATIVE: lam >= 0,
                LamRule.POSITIVE: lam > 0}[self]


@dataclasses.dataclass(frozen=True)
class ProgramAlgorithm:
    """A named RAW program: its builder (and the paper's listing, where there is one)."""

    name: str
    summary: str
    parameters: tuple[Parameter, ...]
    build: Callable[..., Program]
    listing: Callable[..., Program] | None = None
    lam_rule: LamRule = LamRule.ANY
    family: Family = Family.PROGRAM
    stability: Callable[[dict[str, object], float], Divergence | None] | None = None
    # Parameters derived from the others and the input bound, made explicit for the record
    # (ridge's automatic Newton-Schulz step count).
    derive: Callable[[dict[str, object], float], dict[str, object]] | None = None

    def effective(self, params: dict[str, object], input_bound: float) -> dict[str, object]:
        """``params`` with every derived value written out: what a checkpoint records, so a
        reader (and the integrity check) rebuilds the same program from the record alone."""
        return params if self.derive is None else self.derive(dict(params), input_bound)

    def resolve(self, **given: object) -> dict[str, object]:
        """Every parameter's value: given ones parsed (command-line text included) and
        checked, the others defaulted. Coefficients are exact fractions."""
        values = given_or_default(self.name, self.parameters, given,
                                  {spec["dest"]: option
                                   for option, spec in parameter_options().items()})
        option = {p.name: p.option for p in self.parameters}  # messages name the flag
        for p in self.parameters:
            if p.kind is int:
                values[p.name] = _integer(p.option, values[p.name])
            elif p.kind is Fraction:
                values[p.name] = to_fraction(values[p.name])
            elif isinstance(p.kind, type) and issubclass(p.kind, enum.Enum):
                values[p.name] = _choice(p.kind, p.option, values[p.name])
        if int(values["d"]) < 1:
            raise ProgramError(f"--d must be >= 1, got {values['d']}")
        if "w0" in values:  # recorded even when defaulted: a checkpoint names its start
            values["w0"] = start_weights(int(values["d"]), values["w0"])
        if "lam" in values and not self.lam_rule.admits(values["lam"]):
            raise ProgramError(f"{option['lam']} must be {self.lam_rule.value} for {self.name}, "
                               f"got {values['lam']}")
        if "n" in values and int(values["n"]) < 1:
            raise ProgramError(f"{option['n']} (the number of exemplars) must be >= 1, got "
                               f"{values['n']}")
        return values

    def program(self, params: dict[str, object], input_bound: float = 4.0,
                listing: bool = False) -> Program:
        """The builder program (or the paper listing) for resolved ``params``.

        Builders that declare bounds on their results get the input bound those depend on.
        """
        if listing:
            if self.listing is None:
                raise ProgramError(f"{self.name} has no paper listing; compile its builder "
                                   "program (drop --listing)")
            return self.listing(**params)
        if "input_bound" in inspect.signature(self.build).parameters:
            return self.build(**params, input_bound=input_bound)
        return self.build(**params)

    def divergence(self, params: dict[str, object], input_bound: float) -> Divergence | None:
        """Whether resolved ``params`` provably diverge on the box ``|x_j| <= input_bound``
        (``construct.algorithms.stability``; None: they do not, or the algorithm has no
        repeated step to diverge)."""
        return None if self.stability is None else self.stability(params, input_bound)

    def construct(self, params: dict[str, object], config: CompileConfig,
                  listing: bool = False) -> CompiledModel:
        compiled = compile_program(self.program(params, config.input_bound, listing), config)
        return dataclasses.replace(compiled, listing=True) if listing else compiled


def _integer(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise ProgramError(f"{name} must be an integer, got {value!r}")
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ProgramError(f"{name} must be an integer, got {value!r}") from None


def _choice(kind: type[enum.Enum], name: str, value: object) -> enum.Enum:
    if isinstance(value, kind):
        return value
    try:
        return kind(value)
    except ValueError:
        raise ProgramError(f"{name} must be one of {', '.join(m.value for m in kind)}, got "
                           f"{value!r}") from None


def _ridge(d: int, n: int, lam: Fraction, method: RidgeMethod, newton_steps: int,
           input_bound: float = 4.0) -> Program:
    """Ridge at every prefix by the chosen method (``RidgeMethod``)."""
    if newton_steps and method is not RidgeMethod.NEWTON:
        raise ProgramError(f"--newton-steps applies to --method newton only, not {method}")
    if method is RidgeMethod.SOLVE:
        return ridge_solve_program(d, n, lam, input_bound)
    if method is RidgeMethod.NEWTON:
        return ridge_newton_program(d, n, lam, input_bound, newton_steps)
    return learners.ridge_program(d, n, lam, input_bound)


def _ridge_derived(params: dict[str, object], input_bound: float) -> dict[str, object]:
    if params["method"] is RidgeMethod.NEWTON and not params["newton_steps"]:
        params["newton_steps"] = newton_steps(int(params["d"]), int(params["n"]),
                                              params["lam"], input_bound)
    return params


def _step_parameters(alpha: Fraction) -> tuple[Parameter, ...]:
    """The parameters of the gradient learners over n exemplars (``sgd``, ``gd-batch``)."""
    return (Parameter("d", int, 2, "input dimension"),
            Parameter("n", int, 4, "number of exemplars"),
            Parameter("alpha", Fraction, alpha, "step size"),
            Parameter("lam", Fraction, Fraction(0), "ridge penalty (>= 0)"),
            Parameter("w0", list, None, "start weights (default (-1)^k/(k+1))"))


Algorithm = ProgramAlgorithm | LSAAlgorithm

PROGRAM_ALGORITHMS: dict[str, ProgramAlgorithm] = {
    "gd": ProgramAlgorithm(
        "gd", "one gradient-descent step on one exemplar (Theorem 1, O(d) width)",
        (Parameter("d", int, 2, "input dimension"),
         Parameter("alpha", Fraction, Fraction(1, 10), "step size"),
         Parameter("lam", Fraction, Fraction(1, 100), "ridge penalty (>= 0)"),
         Parameter("w0", list, None, "start weights (default (-1)^k/(k+1))")),
        theorems.gd_program, theorems.gd_listing, lam_rule=LamRule.NON_NEGATIVE),
    "sherman-morrison": ProgramAlgorithm(
        "sherman-morrison",
        "one Sherman-Morrison ridge update on one exemplar (Theorem 2, O(d^2) width)",
        (Parameter("d", int, 2, "input dimension"),
         Parameter("lam", Fraction, Fraction(1, 2), "ridge penalty (> 0)")),
        theorems.sherman_morrison_program, theorems.sherman_morrison_listing,
        lam_rule=LamRule.POSITIVE),
    "sgd": ProgramAlgorithm(
        "sgd", "one pass of SGD over n exemplars, predicting at every prefix (O(n) depth)",
        _step_parameters(alpha=Fraction(1, 100)),
        learners.sgd_program, lam_rule=LamRule.NON_NEGATIVE,
        stability=stability.sgd_divergence),
    "ridge": ProgramAlgorithm(
        "ridge", "ridge regression at every prefix: statistics and an in-token Gauss-Jordan "
        "solve (--method solve: 2d + 3 layers for any n) or n stacked Sherman-Morrison updates "
        "(--method sherman-morrison: O(n) depth); O(d^2) width",
        (Parameter("d", int, 2, "input dimension"),
         Parameter("n", int, 4, "number of exemplars"),
         Parameter("lam", Fraction, Fraction(1, 2), "ridge penalty (> 0)"),
         Parameter("method", RidgeMethod, RidgeMethod.SOLVE,
                   "ridge: solve (statistics and Gauss-Jordan, 2d + 3 layers for any n; the "
                   "default), newton (statistics and Newton-Schulz, 2k + 5 layers) or "
                   "sherman-morrison (the paper's stack, 3n + 2 layers)"),
         Parameter("newton_steps", int, 0, "Newton-Schulz steps k (0: from lam and the bound, "
                   "enough for float64 rounding over the declared box)", flag="newton-steps")),
        _ridge, lam_rule=LamRule.POSITIVE, derive=_ridge_derived),
    "gd-batch": ProgramAlgorithm(
        "gd-batch", "one full-batch GD step (mean loss) on the exemplars before each query "
        "(constant depth)",
        _step_parameters(alpha=Fraction(1, 10)),
        learners.gd_batch_program, lam_rule=LamRule.NON_NEGATIVE),
}

ALGORITHMS: dict[str, Algorithm] = {**PROGRAM_ALGORITHMS, **LSA_ALGORITHMS}


def get_algorithm(name: str) -> Algorithm:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ProgramError(f"unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)}") from None


def get_program_algorithm(name: str) -> ProgramAlgorithm:
    """A named algorithm that is a RAW program (the interpreter, solvers and proofs need one)."""
    algorithm = get_algorithm(name)
    if not isinstance(algorithm, ProgramAlgorithm):
        raise ProgramError(f"{name} is a {algorithm.family.value} construction, not a RAW "
                           "program")
    return algorithm


def parameter_options() -> dict[str, dict[str, object]]:
    """One command-line option per parameter flag, over every registered algorithm."""
    options: dict[str, dict[str, object]] = {}
    for algorithm in ALGORITHMS.values():
        for p in algorithm.parameters:
            spec = options.setdefault(p.option, {"dest": p.name, "users": [], "help": p.help,
                                                 "type": int if p.kind is int else str})
            if isinstance(p.kind, type) and issubclass(p.kind, enum.Enum):
                spec["choices"] = [m.value for m in p.kind]
            spec["users"].append(algorithm.name)  # type: ignore[union-attr]
    return options


def algorithm_params(args: object) -> dict[str, object]:
    """The parameters given on a command line (``args``: its namespace), unparsed:
    ``algorithm.resolve`` parses them and names any that it does not take."""
    given = {name: getattr(args, name, None) for name in
             {spec["dest"] for spec in parameter_options().values()}}
    return {name: value for name, value in given.items() if value is not None}

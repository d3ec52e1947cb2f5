"""``rawc bench targets``: the paper and the gated MLP targets side by side, in one run.

For gd (d up to 64), sherman-morrison (d up to 32), and the learners ridge and sgd (d = 4,
n up to 64, the weight-shared form): layers, width, MLP width, parameters, the largest weight
magnitude, and the end-to-end relative error against the closed form (``max |err| / max
|ref|`` over ``trials`` tasks and every predicted prefix), each dtype with the constants tuned
for it. The model runs alone (``Transformer.outputs``): the full ``rawc verify`` of each is
``rawc bench sizes`` and ``rawc bench bounds``' business.

The paper target is measured with each GeLU product rule (``--gelu-product``): the paper's
one-scale trick (``lemma4``), the Richardson product (``richardson``) and the polarized one
(``polarized``, the default).

Goals (issue 17): gated float64 error <= 1e-12 and float32 <= 1e-5; the largest gated weight
<= 1e4; the paper target's float32 sherman-morrison error <= 1e-3 at d <= 32. Beside the
float32 errors, the program's own (``prog f32``: the reference interpreter in float32 on the
same tasks), which a compiled model computing the same ops cannot be expected to beat.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch
from tqdm import tqdm

from construct.algorithms.registry import get_algorithm
from construct.compiler.config import CompileConfig, GeluProduct, MlpTarget, torch_dtype
from construct.language import interpreter
from construct.model.assemble import compile_program
from construct.model.transformer import Transformer
from verify.bench.options import listed
from verify.solvers import checked_prefixes, closed_form_prediction
from verify.tasks import make_tasks

GOALS = {"float64": 1e-12, "float32": 1e-5}
GOAL_WEIGHT = 1e4
GOAL_PAPER_SM_FLOAT32 = 1e-3
LEARNER_D = 4


def configurations(max_d: int, max_n: int) -> list[tuple[str, int, int | None]]:
    out: list[tuple[str, int, int | None]] = []
    for name, top in (("gd", 64), ("sherman-morrison", 32)):
        out += [(name, d, None) for d in (1, 2, 4, 8, 16, 32, 64) if d <= min(top, max_d)]
    for name in ("ridge", "sgd"):
        out += [(name, LEARNER_D, n) for n in (4, 16, 64) if n <= max_n]
    return out


def _tasks_and_exact(program, name: str, params: dict[str, object], bound: float,
                     trials: int, seed: int):
    """The tasks both measures share, and the closed form's predictions on them."""
    tasks = make_tasks(program.d, trials, bound, seed, n_examples=int(params.get("n", 1)),
                       prior_column=program.prior_column)
    return tasks, closed_form_prediction(name, params, tasks)


def _relative(predicted: torch.Tensor, exact: torch.Tensor) -> float:
    return float((predicted - exact).abs().max() / exact.abs().max())


def relative_error(compiled, name: str, params: dict[str, object], dtype: str, trials: int,
                   seed: int, batch: int | None = None) -> float:
    """``max |err| / max |ref|`` of ``compiled`` (run in ``dtype``) against algorithm ``name``'s
    closed form over ``trials`` tasks and every predicted prefix, ``batch`` tasks per forward
    (default all: a long context needs fewer at once)."""
    program = compiled.program
    tasks, exact = _tasks_and_exact(program, name, params, compiled.config.input_bound, trials,
                                    seed)
    model = Transformer(compiled.shape, compiled.weights, torch_dtype(dtype))
    n = int(params.get("n", 1))
    columns = [program.first_x_column + 2 * k for k in checked_prefixes(name, n)]
    predicted = torch.cat([model.outputs(chunk.to(torch_dtype(dtype)))[:, columns, 0].double()
                           for chunk in tasks.tokens.split(batch or trials)])
    return _relative(predicted, exact)


def program_error(program, name: str, params: dict[str, object], dtype: str, bound: float,
                  trials: int, seed: int) -> float:
    """``relative_error``'s measure of the program itself run in ``dtype`` (the reference
    interpreter: every op exact up to the dtype's rounding) on the same tasks: what no
    lowering of it can be expected to beat, since the model computes the same ops."""
    tasks, exact = _tasks_and_exact(program, name, params, bound, trials, seed)
    trace = interpreter.run(program, tasks.tokens.to(torch_dtype(dtype)))
    prefixes = checked_prefixes(name, int(params.get("n", 1)))
    return _relative(trace.prediction()[:, prefixes].double(), exact)


def measure(name: str, d: int, n: int | None, target: MlpTarget, trials: int,
            seed: int, rule: GeluProduct = GeluProduct.POLARIZED) -> dict[str, object]:
    algorithm = get_algorithm(name)
    params = algorithm.resolve(d=d) if n is None else algorithm.resolve(d=d, n=n)
    program = algorithm.program(params)
    form = "stacked" if n is None else "shared"
    row: dict[str, object] = {"algorithm": name, "d": d, "n": n, "target": target.value,
                              "product": "exact" if target is MlpTarget.GATED else rule.value}
    for dtype in ("float64", "float32"):
        compiled = compile_program(program, CompileConfig.for_dtype(
            dtype, target=target, form=form, gelu_product=rule))
        row[f"error_{dtype}"] = relative_error(compiled, name, params, dtype, trials, seed)
        if dtype == "float32":
            row["program_float32"] = program_error(program, name, params, dtype,
                                                   compiled.config.input_bound, trials, seed)
        if dtype == "float64":
            row.update(layers=compiled.shape.depth, d_model=compiled.shape.d_model,
                       d_mlp=compiled.shape.d_mlp, params=compiled.n_params,
                       max_weight=max(float(abs(w).max()) for w in compiled.weights.values()),
                       max_mlp_weight=max([0.0] + [float(abs(w).max()) for name, w
                                                   in compiled.weights.items()
                                                   if ".mlp." in name]))
    return row


def format_table(rows: list[dict[str, object]]) -> str:
    head = (f"{'algorithm':<17}{'d':>3}{'n':>4} {'target':<6} {'product':<11}{'layers':>7}"
            f"{'d_model':>8}"
            f"{'d_mlp':>7}{'params':>10}{'max|w|':>9}{'mlp|w|':>9}{'err f64':>10}"
            f"{'err f32':>10}{'prog f32':>10}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['algorithm']:<17}{r['d']:>3}{r['n'] or '':>4} {r['target']:<6} "
                     f"{r['product']:<11}{r['layers']:>7}{r['d_model']:>8}{r['d_mlp']:>7}{r['params']:>10}"
                     f"{r['max_weight']:>9.1e}{r['max_mlp_weight']:>9.1e}"
                     f"{r['error_float64']:>10.1e}"
                     f"{r['error_float32']:>10.1e}{r['program_float32']:>10.1e}")
    return "\n".join(lines)


def goals(rows: list[dict[str, object]]) -> list[str]:
    gated = [r for r in rows if r["target"] == MlpTarget.GATED.value]
    out = []
    for dtype, goal in GOALS.items():
        worst = max(gated, key=lambda r: r[f"error_{dtype}"], default=None)
        if worst is not None:
            met = worst[f"error_{dtype}"] <= goal
            where = f"{worst['algorithm']} d={worst['d']}" + (
                "" if worst["n"] is None else f" n={worst['n']}")
            floor = (f"; the program's own float32 run there: {worst['program_float32']:.3g}"
                     if dtype == "float32" else "")
            out.append(f"gated {dtype} error <= {goal:g}: {'yes' if met else 'no'} (worst "
                       f"{worst[f'error_{dtype}']:.3g}, {where}{floor})")
    for key, what in (("max_weight", "weight"), ("max_mlp_weight", "MLP weight")):
        heaviest = max(gated, key=lambda r: r[key], default=None)
        if heaviest is not None:
            out.append(f"largest gated {what} <= {GOAL_WEIGHT:g}: "
                       f"{'yes' if heaviest[key] <= GOAL_WEIGHT else 'no'} (largest "
                       f"{heaviest[key]:.2g}, {heaviest['algorithm']} d={heaviest['d']})")
    sm = [r for r in rows if r["target"] == MlpTarget.PAPER.value
          and r["algorithm"] == "sherman-morrison"]
    for rule in GeluProduct:
        worst = max((r for r in sm if r["product"] == rule.value),
                    key=lambda r: r["error_float32"], default=None)
        if worst is not None:
            met = worst["error_float32"] <= GOAL_PAPER_SM_FLOAT32
            out.append(f"paper ({rule.value}) float32 sherman-morrison error <= "
                       f"{GOAL_PAPER_SM_FLOAT32:g}: {'yes' if met else 'no'} (worst "
                       f"{worst['error_float32']:.2g}, d={worst['d']})")
    return out


def lowerings(targets: list[MlpTarget], rules: list[GeluProduct]
              ) -> list[tuple[MlpTarget, GeluProduct]]:
    """Each target once, the paper target once per GeLU product rule."""
    return [(t, r) for t in targets
            for r in (rules if t is MlpTarget.PAPER else [GeluProduct.POLARIZED])]


def main(args: argparse.Namespace) -> int:
    targets = listed(args.target, MlpTarget)
    rules = listed(args.gelu_product, GeluProduct)
    rows = []
    work = [(c, t, r) for c in configurations(args.max_d, args.max_n)
            for t, r in lowerings(targets, rules)]
    if not args.json:
        print("\n".join(format_table([]).splitlines()[:2]))
    for (name, d, n), target, rule in tqdm(work, desc="configurations", file=sys.stderr,
                                           disable=args.json, leave=False):
        rows.append(measure(name, d, n, target, args.trials, args.seed, rule))
        if not args.json:
            tqdm.write(format_table(rows[-1:]).splitlines()[-1], file=sys.stdout)
    if args.json:
        print(json.dumps({"rows": rows, "goals": goals(rows)}, indent=2))
    else:
        print("\n".join(goals(rows)))
    return 0

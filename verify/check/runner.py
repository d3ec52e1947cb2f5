"""``rawc verify``: a checkpoint against the interpreter (layer by layer) and the closed form.

Three levels of truth are compared on the same random tasks:

1. closed form (``verify.solvers``, torch.linalg) vs the interpreter in float64: the program
   computes the algorithm (tolerance ``REFERENCE_TOLERANCE`` relative, float64 rounding);
2. interpreter vs compiled model after **every layer**: each slot live after the layer is
   decoded from the residual and compared with the interpreter's value of that slot version,
   against the propagated bound (``construct.compiler.propagate``);
3. compiled prediction vs the closed form, against the end-to-end bound plus (1), at every
   prefix the algorithm predicts (the query for Theorems 1 and 2; every x-column for the
   multi-exemplar learners).

Besides, every op is checked *locally*: the interpreter applied to the compiled model's own
state before the op's half-layer, against the op's own error model. Propagated first-order
bounds compound through deep recursions (stacked Sherman–Morrison: the interval factor is
about ``d^2 B^2 / lam`` per stage, so they turn vacuous after a few stages, reported as "no
finite bound"), while the local check stays tight at any depth. For multi-exemplar learners
the report adds SPD / MSPD / ILWD (``verify.metrics``) against OLS, ridge, GD and SGD; the
nearest must be the algorithm itself.

Relative errors are batch-normwise: ``max|err| / max|ref|`` and ``mean|err| / mean|ref|``
(a per-task ratio is meaningless where the reference is near zero).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import torch

from construct.language import interpreter
from construct.model.assemble import CompiledModel, compile_program
from construct.compiler.config import torch_dtype
from construct.compiler.fusion import folded_inputs
from construct.model.inputs import validate_tokens
from construct.model.checkpoint import Checkpoint
from construct.model.transformer import Transformer, decode
from verify import metrics
from verify.check.integrity import Integrity, IntegrityResult, compare_compiled
from verify.check.report import format_report
from verify.check.verdict import Judgement, Verdict, judge_program
from construct.compiler.propagate import initial_errors, propagated_bounds
from verify.solvers import checked_prefixes, closed_form_prediction
from verify.tasks import make_tasks

REFERENCE_TOLERANCE = 1e-10


class AssumptionError(ValueError):
    """A bound the program declares (an assumption or a divisor minimum) fails on a task."""


@dataclasses.dataclass
class ErrorStat:
    """Running max/mean of |compiled - reference| and |reference| over tasks and columns."""

    label: str
    bound: float
    max_abs: float = 0.0
    sum_abs: float = 0.0
    max_ref: float = 0.0
    sum_ref: float = 0.0
    count: int = 0

    def update(self, value: torch.Tensor, reference: torch.Tensor) -> None:
        err = (value.double() - reference.double()).abs()
        self.max_abs = max(self.max_abs, float(err.max()))
        self.sum_abs += float(err.sum())
        self.max_ref = max(self.max_ref, float(reference.abs().max()))
        self.sum_ref += float(reference.abs().sum())
        self.count += err.numel()

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.bound

    def row(self) -> dict[str, object]:
        mean_abs = self.sum_abs / max(self.count, 1)
        mean_ref = self.sum_ref / max(self.count, 1)
        return {"check": self.label, "max_abs": self.max_abs, "mean_abs": mean_abs,
                "max_ref": self.max_ref,
                "max_rel": self.max_abs / self.max_ref if self.max_ref else 0.0,
                "mean_rel": mean_abs / mean_ref if mean_ref else 0.0,
                "bound": self.bound, "ok": self.ok}


def _slot_reference(compiled: CompiledModel, layer: int) -> dict[str, int]:
    """For each slot live after ``layer``: the op whose result it holds (-1: the input)."""
    program, schedule = compiled.program, compiled.schedule
    out = {}
    inputs = (program.x_slot, program.y_slot, *(name for name, _ in program.prior))
    for name in compiled.layout.slots:
        if not compiled.layout.live_after_layer(name, layer):
            continue
        writers = [i for i, op in enumerate(program.ops)
                   if op.dst == name and schedule.layer_of(i) <= layer]
        if writers or name in inputs:
            out[name] = max(writers, default=-1)
    return out


def rolled_index(compiled: CompiledModel, index: int) -> int:
    """The op of the program as written that unrolled op ``index`` is an iteration of."""
    loop = compiled.source_program.loop
    if loop is None or index < loop.start:
        return index
    if index < loop.start + loop.times * loop.length:
        return loop.start + (index - loop.start) % loop.length
    return index - (loop.times - 1) * loop.length


def local_bounds(compiled: CompiledModel, dtype: str) -> tuple[float, ...]:
    """Each op's bound for the model's own inputs: its own error model, plus, for an affine
    map folded into its layer, ``|W_t|_inf`` times the bound of each folded input."""
    out: list[float] = []
    for i in range(len(compiled.program.ops)):
        inherited = sum(weight * out[j]
                        for j, weight in folded_inputs(compiled.program, compiled.schedule, i))
        out.append(compiled.errors[i].total(dtype) + inherited)
    return tuple(out)


def _check_halves(compiled: CompiledModel, cache, kinds: tuple[str, ...], dtype: str,
                  bounds: tuple[float, ...], stats: dict[int, ErrorStat]) -> None:
    """Every op against the interpreter applied to the compiled model's own input state.

    This isolates each lowered op's error from the errors it inherits: the bound is the op's
    own error model, so it stays tight however deep the program (the propagated bounds of
    long recursions such as stacked Sherman–Morrison may be vacuous). An affine map folded
    into its layer takes the values it folds from the interpreter, run on the state before
    the layer, and is held to its own bound plus theirs (``bounds``: ``local_bounds``)."""
    program, layout, schedule = compiled.program, compiled.layout, compiled.schedule
    for layer_index, layer in enumerate(schedule.layers):
        start, middle, end = cache.residuals[2 * layer_index:2 * layer_index + 3]
        in_layer: dict[str, torch.Tensor] = {}
        for i in sorted((*layer.attn, *layer.mlp)):
            op = program.ops[i]
            fused, in_mlp = i in schedule.fused, schedule.in_mlp_half(i)
            state = {}
            for name in op.reads:
                if fused and name in in_layer:
                    state[name] = in_layer[name]
                else:
                    residual = middle if in_mlp and not fused else start
                    state[name] = decode(residual, layout.rows(name)).double()
            size = program.slot_map[op.dst].size
            state.setdefault(op.dst, torch.zeros(start.shape[:-1] + (size,), dtype=torch.float64,
                                                 device=start.device))
            exact = interpreter.apply_op(op, state, kinds)
            in_layer[op.dst] = exact
            if op.dst in schedule.virtual:
                continue
            key = rolled_index(compiled, i)
            if key not in stats:
                source = compiled.source_program.ops[key]
                stats[key] = ErrorStat(f"op {key + 1} {type(source).__name__.lower()} -> "
                                       f"{source.dst} (own error)", 0.0)
            stats[key].bound = max(stats[key].bound, bounds[i])
            after = end if in_mlp else middle
            stats[key].update(decode(after, layout.rows(op.dst)), exact)


def verify_model(compiled: CompiledModel, model: Transformer, algorithm: str,
                 params: dict[str, object], *, dtype: str, device: torch.device, trials: int,
                 seed: int, batch: int = 4096, noise: float = 0.0, scale: float = 1.0,
                 progress: bool = False, metric_tasks: int = 32) -> dict[str, object]:
    """Run ``trials`` tasks and return the report (rows of ``ErrorStat.row``)."""
    program, config = compiled.program, compiled.config
    n_examples = int(params.get("n", 1))
    prefixes = checked_prefixes(algorithm, n_examples)
    bounds = propagated_bounds(compiled, dtype)
    input_errors = initial_errors(compiled, dtype)
    own_bounds = local_bounds(compiled, dtype)
    stats: dict[tuple[int, str], ErrorStat] = {}
    local: dict[int, ErrorStat] = {}
    end_interp = ErrorStat("end-to-end: compiled vs interpreter", bounds[-1][program.output])
    reference = ErrorStat("closed form vs interpreter (float64)", 0.0)
    end_closed = ErrorStat("end-to-end: compiled vs closed form", 0.0)
    per_prefix = [ErrorStat(f"prefix {k}: compiled vs closed form", 0.0) for k in prefixes]
    references = metrics.reference_learners(algorithm, params, program.d)
    spd_sums = {r.name: torch.zeros(n_examples + 1, dtype=torch.float64) for r in references}
    started, done = time.perf_counter(), 0
    while done < trials:
        n = min(batch, trials - done)
        tasks = make_tasks(program.d, n, config.input_bound, seed + done, scale=scale,
                           noise=noise, device=device, n_examples=n_examples,
                           prior_column=program.prior_column)
        validate_tokens(tasks.tokens, program.d, config.input_bound, config.n_ctx,
                        program.prior_column)
        trace = interpreter.run(program, tasks.tokens)
        _check_declared_bounds(program, trace)
        cache = model(tasks.tokens.to(torch_dtype(dtype)))
        for layer in range(compiled.schedule.n_layers):
            resid = cache.after_layer(layer)
            for name, writer in _slot_reference(compiled, layer).items():
                key = (layer, name)
                if key not in stats:
                    bound = input_errors[name] if writer < 0 else bounds[writer][name]
                    stats[key] = ErrorStat(f"layer {layer} {name}", bound)
                stats[key].update(decode(resid, compiled.layout.rows(name)),
                                  trace.states[writer + 1][name])
        _check_halves(compiled, cache, program.column_kinds(tasks.tokens.shape[-2]), dtype,
                      own_bounds, local)
        columns = [program.first_x_column + 2 * k for k in prefixes]
        exact = trace.final[program.output][:, columns, 0]
        closed = closed_form_prediction(algorithm, params, tasks)
        prediction = cache.output[:, columns, 0]
        end_interp.update(prediction, exact)
        reference.update(exact, closed)
        end_closed.update(prediction, closed)
        for j, stat in enumerate(per_prefix):
            stat.update(prediction[:, j], closed[:, j])
        if len(prefixes) == n_examples + 1:
            for r in references:
                spd_sums[r.name] += metrics.spd(prediction, r.predict(tasks.xs, tasks.ys),
                                                program.d).cpu() * n
        done += n
        if progress:
            _progress(done, trials, started)
    reference.bound = REFERENCE_TOLERANCE * max(reference.max_ref, 1.0)
    end_closed.bound = end_interp.bound + reference.bound
    for stat in per_prefix:
        stat.bound = end_closed.bound
    elapsed = time.perf_counter() - started
    rows = ([s.row() for s in stats.values()] + [local[k].row() for k in sorted(local)]
            + [end_interp.row(), reference.row(), end_closed.row()]
            + [s.row() for s in per_prefix])
    report = {"algorithm": algorithm, "params": {k: str(v) for k, v in params.items()},
              "dtype": dtype, "device": str(device), "trials": trials, "seed": seed,
              "seconds": elapsed, "tasks_per_second": trials / elapsed if elapsed else None,
              "rows": rows, "ok": all(r["ok"] for r in rows)}
    if len(prefixes) == n_examples + 1:
        report["metrics"] = agreement(compiled, model, algorithm, references,
                                      {k: v / trials for k, v in spd_sums.items()}, dtype,
                                      device, seed, metric_tasks)
        report["ok"] = report["ok"] and report["metrics"]["nearest_is_own"]
    return report


def _check_declared_bounds(program, trace) -> None:
    for index, declared in program.assumptions:
        peak = float(trace.states[index + 1][program.ops[index].dst].abs().max())
        if peak > float(declared):
            raise AssumptionError(
                f"op {index + 1} declares |{program.ops[index].dst}| <= {declared} but the "
                f"interpreter reached {peak:.6g}; the error bounds built on it do not hold")
    for index, smallest in enumerate(trace.min_divisors):
        if smallest is not None and smallest < float(program.ops[index].min_abs):
            raise AssumptionError(f"op {index + 1}: |divisor| reached {smallest:.3g}, below "
                                  f"its declared bound {program.ops[index].min_abs}")


def agreement(compiled: CompiledModel, model: Transformer, algorithm: str,
              references: list, spd_by_reference: dict[str, torch.Tensor], dtype: str,
              device: torch.device, seed: int, n_tasks: int) -> dict[str, object]:
    """SPD (all trials), MSPD and ILWD with R^2 (``n_tasks`` tasks, ``d + 4`` probes) of the
    compiled model against every reference learner, per prefix, divided by d."""
    program, config = compiled.program, compiled.config
    d, n_examples = program.d, next(iter(spd_by_reference.values())).shape[0] - 1
    tasks = make_tasks(d, n_tasks, config.input_bound, seed + 10 ** 6, n_examples=n_examples,
                       device=device)
    probes = make_tasks(d, n_tasks * (d + 4), config.input_bound, seed + 2 * 10 ** 6,
                        device=device).x.reshape(n_tasks, d + 4, d)

    def predict_at_end(tokens: torch.Tensor) -> torch.Tensor:
        return model(tokens.to(torch_dtype(dtype))).output[:, -1, 0]

    ilwd = {r.name: [] for r in references}
    r2 = []
    for k in range(n_examples + 1):
        weights, fit = metrics.implicit_weights(predict_at_end, tasks.xs, tasks.ys, k, probes,
                                                program.prior_column)
        r2.append(float(fit.min()))
        for r in references:
            other = metrics.reference_weights(r, tasks.xs, tasks.ys, k, probes)
            ilwd[r.name].append(float(((weights - other) ** 2).sum(-1).mean()) / d)
    means = {name: float(v.mean()) for name, v in spd_by_reference.items()}
    ranked = sorted(means, key=means.get)
    own = metrics.own_reference(algorithm)
    own_name = next((r.name for r in references if r.algorithm == own), None)
    margin = means[ranked[1]] / max(means[ranked[0]], 1e-300)
    return {"spd": {name: v.tolist() for name, v in spd_by_reference.items()},
            "mspd": {name: metrics.mspd(v, d) for name, v in spd_by_reference.items()},
            "spd_mean": means, "ilwd": ilwd, "r2_min": r2, "nearest": ranked[0],
            "own": own_name, "margin": margin,
            "nearest_is_own": own_name is None or ranked[0] == own_name}


def _progress(done: int, total: int, started: float) -> None:
    width = 30
    filled = int(width * done / total)
    rate = done / max(time.perf_counter() - started, 1e-9)
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} tasks "
          f"({rate:,.0f}/s)", end="" if done < total else "\n", file=sys.stderr, flush=True)


def _device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def main(args: argparse.Namespace, checkpoint: Checkpoint) -> int:
    """``rawc verify`` on a compiled program's checkpoint (``verify.check.command``): integrity
    first, then the tasks; the exit code is the verdict's (``verify.check.verdict``)."""
    compiled = compile_program(checkpoint.program(), checkpoint.config())
    integrity = compare_compiled(compiled, checkpoint)
    if compiled.shape != checkpoint.shape:  # the layer-by-layer checks would read wrong rows
        print(Judgement(Verdict.FAIL, integrity.line()).line())
        return Verdict.FAIL.exit_code
    if args.no_integrity:
        integrity = IntegrityResult(Integrity.SKIPPED)
    if checkpoint.config().dtype != args.dtype:
        print(f"note: {args.path} has constants tuned for {checkpoint.config().dtype}; verifying "
              f"in {args.dtype} (compile with --dtype {args.dtype} for the best {args.dtype} "
              "accuracy)", file=sys.stderr)
    device = _device(args.device)
    model = checkpoint.model(torch_dtype(args.dtype), device, check_inputs=False)
    algorithm = checkpoint.metadata["rawc.algorithm"]
    report = verify_model(compiled, model, algorithm["name"], algorithm["params"],
                          dtype=args.dtype, device=device, trials=args.trials, seed=args.seed,
                          batch=args.batch, noise=args.noise, scale=args.scale,
                          progress=not args.json and args.trials > args.batch,
                          metric_tasks=args.metric_tasks)
    judgement = judge_program(report, integrity)
    report.update(integrity=integrity.line(), verdict=judgement.verdict.name,
                  verdict_reason=judgement.reason)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return judgement.verdict.exit_code

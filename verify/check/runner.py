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

Every op is also checked *locally* (``verify.check.layers``), and every task's prediction
against its own a-posteriori bound (``verify.check.a_posteriori``): the op error models
through the Jacobians that task actually has, finite and informative where the a-priori box
bound compounds into nothing. A user's own program has no closed form: (1) and (3) are left
out and the model is held to the interpreter alone.

Nothing of a task is kept: the model runs layer by layer (``Transformer.steps``), the
interpreter op by op (``interpreter.steps``), and each comparison keeps a running maximum
(``verify.check.stats``), so memory depends on the batch, never on ``--trials``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Iterator

import torch
from tqdm import tqdm

from construct.compiler.config import torch_dtype
from construct.compiler.propagate import initial_errors, propagated_bounds
from construct.language import interpreter
from construct.language.program import Hinge
from construct.model.assemble import CompiledModel, compile_program
from construct.model.checkpoint import Checkpoint
from construct.model.checkpoint_format import PROGRAM_FILE_SOURCE
from construct.model.inputs import validate_tokens
from construct.model.transformer import Transformer, decode
from verify import metrics
from verify.check.a_posteriori import a_posteriori_bounds, left_out_terms
from verify.check.agreement import agreement
from verify.check.integrity import Integrity, IntegrityResult, compare_compiled
from verify.check.layers import check_ops_in_layer, local_bounds, slot_references
from verify.check.report import format_report
from verify.check.stats import ErrorStat, RatioStat
from verify.check.verdict import Judgement, Verdict, judge_program
from verify.devices import resolve_device
from verify.solvers import (checked_prefixes, closed_form_prediction, has_closed_form,
                            sampled_prefixes)
from verify.tasks import Tasks, make_tasks

REFERENCE_TOLERANCE = 1e-10
BATCH_BYTES = 192 * 2 ** 20  # what one batch's tensors may take (model, interpreter, Jacobians)


TASK_PHASES = ("model, interpreter, layer checks", "a-posteriori bounds", "closed form and SPD")


class AssumptionError(ValueError):
    """A bound the program declares (an assumption or a divisor minimum) fails on a task."""


class Phases:
    """Wall time of each phase of a command, in order (the report's time is their sum)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._since = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._since
        self._since = now


def auto_batch(compiled: CompiledModel, n_tokens: int) -> int:
    """Tasks per batch so the model's few live residuals (and the layer checks' decoded
    slots) stay near ``BATCH_BYTES``."""
    per_task = 8 * n_tokens * 16 * compiled.shape.d_model
    return max(1, min(4096, BATCH_BYTES // per_task))


def a_posteriori_batch(compiled: CompiledModel, n_tokens: int) -> int:
    """Tasks per a-posteriori pass: its autograd graph keeps every op's result (and about
    two saved tensors per op) of every task at once."""
    slots = sum(compiled.program.slot_map[op.dst].size for op in compiled.program.ops)
    return max(1, BATCH_BYTES // (8 * n_tokens * 3 * slots))


def verify_model(compiled: CompiledModel, model: Transformer, algorithm: str,
                 params: dict[str, object], *, dtype: str, device: torch.device, trials: int,
                 seed: int, batch: int | None = None, noise: float = 0.0, scale: float = 1.0,
                 progress: bool = False, metric_tasks: int = 32,
                 phases: Phases | None = None, closed: bool | None = None,
                 every_prefix: bool = False) -> dict[str, object]:
    """Run ``trials`` tasks and return the report (rows of ``ErrorStat.row``). ``closed``:
    whether to compare with the named algorithm's closed form (default: when one is known;
    a user's own program file never has one, whatever its name). The a-posteriori bound costs
    one backward pass per column: it is taken at ``sampled_prefixes`` (about ``5 + log2 n``
    prefixes; ``every_prefix``: at all), the a-priori bound and the closed form at every one."""
    phases = phases or Phases()
    program, config = compiled.program, compiled.config
    n_examples = int(params.get("n", 1))
    closed = has_closed_form(algorithm) if closed is None else closed
    prefixes = checked_prefixes(algorithm, n_examples) if closed else list(range(n_examples + 1))
    bounds = propagated_bounds(compiled, dtype)
    input_errors = initial_errors(compiled, dtype)
    own_bounds = local_bounds(compiled, dtype)
    references_by_layer = slot_references(compiled)
    last_use: dict[tuple[str, int], int] = {}
    for layer, refs in enumerate(references_by_layer):
        for name, writer in refs.items():
            last_use[(name, writer)] = layer
    stats: dict[tuple[int, str], ErrorStat] = {}
    local: dict[int, ErrorStat] = {}
    end_interp = ErrorStat("end-to-end: compiled vs interpreter", bounds[-1][program.output])
    reference = ErrorStat("closed form vs interpreter (float64)", 0.0)
    end_closed = ErrorStat("end-to-end: compiled vs closed form", 0.0)
    per_prefix = [ErrorStat(f"prefix {k}: compiled vs {'closed form' if closed else 'interpreter'}",
                            0.0) for k in prefixes]
    posterior = RatioStat("end-to-end: compiled vs interpreter, a-posteriori bound per task")
    references = metrics.reference_learners(algorithm, params, program.d) if closed else []
    spd_sums = {r.name: torch.zeros(n_examples + 1, dtype=torch.float64) for r in references}
    columns = [program.first_x_column + 2 * k for k in prefixes]
    sampled = set(sampled_prefixes(n_examples))
    posterior_at = [j for j, k in enumerate(prefixes) if every_prefix or k in sampled]
    n_tokens = program.first_x_column + 2 * n_examples + 1
    batch = batch or auto_batch(compiled, n_tokens)
    posterior_batch = min(batch, a_posteriori_batch(compiled, n_tokens))
    phases.lap("set-up")
    bar = tqdm(total=trials, desc="tasks", unit="task", disable=not progress, file=sys.stderr,
               leave=False)
    done = 0
    while done < trials:
        n = min(batch, trials - done)
        tasks = make_tasks(program.d, n, config.input_bound, seed + done, scale=scale,
                           noise=noise, device=device, n_examples=n_examples,
                           prior_column=program.prior_column)
        validate_tokens(tasks.tokens, program.d, config.input_bound, config.n_ctx,
                        program.prior_column)
        cleared: dict[int, float] = {}
        prediction, exact = _check_batch(compiled, model, tasks, dtype, references_by_layer,
                                         last_use, bounds, input_errors, own_bounds, stats,
                                         local, cleared, columns)
        end_interp.update(prediction, exact)
        phases.lap("model, interpreter, layer checks")
        left_out = left_out_terms(compiled, cleared, dtype)
        posterior_bound = torch.cat([
            a_posteriori_bounds(program, chunk, compiled.errors,
                                [columns[j] for j in posterior_at], dtype, left_out,
                                compiled.bounds.before)
            for chunk in tasks.tokens.split(posterior_batch)])
        posterior.update(prediction[:, posterior_at].double() - exact[:, posterior_at],
                         posterior_bound, exact[:, posterior_at])
        phases.lap("a-posteriori bounds")
        if closed:
            closed_values = closed_form_prediction(algorithm, params, tasks)
            reference.update(written_prediction(compiled, tasks.tokens, columns, exact),
                             closed_values)
            end_closed.update(prediction, closed_values)
        for j, stat in enumerate(per_prefix):
            stat.update(prediction[:, j], closed_values[:, j] if closed else exact[:, j])
        if references and len(prefixes) == n_examples + 1:
            for r in references:
                spd_sums[r.name] += metrics.spd(prediction, r.predict(tasks.xs, tasks.ys),
                                                program.d).cpu() * n
        done += n
        bar.update(n)
        phases.lap("closed form and SPD")
    bar.close()
    reference.bound = REFERENCE_TOLERANCE * max(reference.max_ref, 1.0)
    end_closed.bound = end_interp.bound + reference.bound
    for stat in per_prefix:
        stat.bound = end_closed.bound if closed else end_interp.bound
    rows = ([s.row() for s in stats.values()] + [local[k].row() for k in sorted(local)]
            + [end_interp.row()]
            + ([reference.row(), end_closed.row()] if closed else [])
            + [s.row() for s in per_prefix])
    report = {"algorithm": algorithm, "params": {k: str(v) for k, v in params.items()},
              "closed_form": closed, "dtype": dtype, "device": str(device), "trials": trials,
              "seed": seed, "batch": batch, "a_posteriori_batch": posterior_batch,
              "rows": rows,
              "a_posteriori": {"prefixes": [prefixes[j] for j in posterior_at],
                               "worst_ratio": posterior.worst_ratio,
                               "max_bound": posterior.max_bound,
                               "max_observed": posterior.max_observed,
                               "max_relative_bound": posterior.max_relative_bound,
                               "tightness": posterior.tightness, "ok": posterior.ok},
              "a_priori": {"bound": end_interp.bound, "max_ref": end_interp.max_ref,
                           "output_bound": compiled.bounds.final[program.output]},
              "ok": all(r["ok"] for r in rows) and posterior.ok}
    if references and len(prefixes) == n_examples + 1:
        report["metrics"] = agreement(compiled, model, algorithm, references,
                                      {k: v / trials for k, v in spd_sums.items()}, dtype,
                                      device, seed, metric_tasks, progress)
        phases.lap("agreement metrics")
    report["phases"] = dict(phases.seconds)
    report["seconds"] = sum(phases.seconds.values())
    task_seconds = sum(phases.seconds.get(name, 0.0) for name in TASK_PHASES)
    report["tasks_per_second"] = trials / task_seconds if task_seconds else None
    return report


def _check_batch(compiled: CompiledModel, model: Transformer, tasks: Tasks, dtype: str,
                 references_by_layer, last_use, bounds, input_errors, own_bounds,
                 stats: dict, local: dict, cleared: dict, columns: list[int]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch, layer by layer: the model's layer, then the interpreter advanced to the
    slot versions that layer must hold. Returns (prediction, exact) at ``columns``."""
    program = compiled.program
    kinds = program.column_kinds(tasks.tokens.shape[-2])
    versions: dict[tuple[str, int], torch.Tensor] = {}
    wanted = set(last_use)
    assumptions = dict(program.assumptions)
    run = interpreter.steps(program, tasks.tokens)
    position = -2
    state: dict[str, torch.Tensor] = {}

    def advance(to: int) -> None:
        nonlocal position, state
        while position < to:
            step = next(run)
            position, state = step.index, step.state
            _check_declared(program, assumptions, step)
            if position >= 0:
                key = (program.ops[position].dst, position)
                if key in wanted:
                    versions[key] = state[key[0]]
            else:
                for key in wanted:
                    if key[1] == -1:
                        versions[key] = state[key[0]]

    end = None
    for step in model.steps(tasks.tokens.to(torch_dtype(dtype))):
        check_ops_in_layer(compiled, step, kinds, own_bounds, local, cleared)
        refs = references_by_layer[step.layer]
        advance(max(refs.values(), default=-1))
        for name, writer in refs.items():
            key = (step.layer, name)
            if key not in stats:
                bound = input_errors[name] if writer < 0 else bounds[writer][name]
                stats[key] = ErrorStat(f"layer {step.layer} {name}", bound)
            stats[key].update(decode(step.end, compiled.layout.rows(name)),
                              versions[(name, writer)])
            if last_use[(name, writer)] == step.layer:
                del versions[(name, writer)]
        end = step.end
    advance(len(program.ops) - 1)
    output = model.read_out(model.embed(tasks.tokens.to(torch_dtype(dtype))) if end is None
                            else end)
    return output[:, columns, 0], state[program.output][:, columns, 0]


def written_prediction(compiled: CompiledModel, tokens: torch.Tensor, columns: list[int],
                       lowered: torch.Tensor) -> torch.Tensor:
    """The program as written at ``columns`` (float64): ``lowered`` (the interpreter of the
    compiled program) unless the compiler rewrote ops (the gated target's divisions), whose
    Newton truncation the closed-form comparison must not absorb: it is charged to the
    model's own bound instead (``construct.compiler.newton_division``)."""
    written = compiled.source_program
    if not any(isinstance(op, Hinge) for op in compiled.rolled_program.ops):
        return lowered
    for step in interpreter.steps(written, tokens.double()):
        state = step.state
    return state[written.output][:, columns, 0]


def _check_declared(program, assumptions: dict, step: interpreter.Step) -> None:
    """The bounds the program declares, on this batch: an op's ``|dst| <= A`` assumption and
    a ``div``'s ``|den| >= m``; the error models are built on them."""
    if step.index < 0:
        return
    op = program.ops[step.index]
    declared = assumptions.get(step.index)
    if declared is not None:
        peak = float(step.state[op.dst].abs().max())
        if peak > float(declared):
            raise AssumptionError(
                f"op {step.index + 1} declares |{op.dst}| <= {declared} but the interpreter "
                f"reached {peak:.6g}; the error bounds built on it do not hold")
    if step.min_divisor is not None and step.min_divisor < float(op.min_abs):
        raise AssumptionError(f"op {step.index + 1}: |divisor| reached {step.min_divisor:.3g}, "
                              f"below its declared bound {op.min_abs}")
    if isinstance(op, Hinge) and op.domain is not None:  # a gated division's floor
        low, high = (float(v) for v in op.domain)
        values = step.state[op.src]
        # (both ends within the float64 interpreter's own rounding of the exact value: a
        # divisor proven >= 29/56 computes a hair below it; rawc fuzz)
        if float(values.min()) < low * (1 - 1e-9) or float(values.max()) > high * (1 + 1e-9):
            raise AssumptionError(
                f"op {step.index + 1} (hinge -> {op.dst}): its input {op.src} reached "
                f"[{float(values.min()):.6g}, {float(values.max()):.6g}], outside the declared "
                f"[{low:.6g}, {high:.6g}] (a divisor below its floor, or past its bound)")


def main(args: argparse.Namespace, checkpoint: Checkpoint) -> int:
    """``rawc verify`` on a compiled program's checkpoint (``verify.check.command``): integrity
    first, then the tasks; the exit code is the verdict's (``verify.check.verdict``)."""
    phases = Phases()
    compiled = compile_program(checkpoint.program(), checkpoint.config())
    integrity = compare_compiled(compiled, checkpoint)
    phases.lap("compile and integrity")
    if compiled.shape != checkpoint.shape:  # the layer-by-layer checks would read wrong rows
        print(Judgement(Verdict.FAIL, integrity.line()).line())
        return Verdict.FAIL.exit_code
    if args.no_integrity:
        integrity = IntegrityResult(Integrity.SKIPPED)
    # The fresh build's weights served the comparison; the checks read the checkpoint's own
    # (a stacked ridge d = 8, n = 32 holds 245 MB of them per copy).
    compiled = dataclasses.replace(compiled, weights={})
    if checkpoint.config().dtype != args.dtype:
        print(f"note: {args.path} has constants tuned for {checkpoint.config().dtype}; verifying "
              f"in {args.dtype} (compile with --dtype {args.dtype} for the best {args.dtype} "
              "accuracy)", file=sys.stderr)
    device = torch.device(resolve_device(args.device))
    model = checkpoint.model(torch_dtype(args.dtype), device, check_inputs=False)
    algorithm = checkpoint.metadata["rawc.algorithm"]
    own_program = algorithm.get("source") == PROGRAM_FILE_SOURCE
    report = verify_model(compiled, model, algorithm["name"], algorithm["params"],
                          closed=not own_program and has_closed_form(algorithm["name"]),
                          dtype=args.dtype, device=device, trials=args.trials, seed=args.seed,
                          batch=args.batch, noise=args.noise, scale=args.scale,
                          progress=not args.json, metric_tasks=args.metric_tasks,
                          phases=phases, every_prefix=args.every_prefix)
    judgement = judge_program(report, integrity)
    report.update(integrity=integrity.line(), verdict=judgement.verdict.name,
                  verdict_reason=judgement.reason)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return judgement.verdict.exit_code

"""The per-stage view of a weight-shared loop on an explain page (``--form shared``).

A program's ``repeat N`` marks a stage (ops ``start .. stop - 1``) that runs ``N`` times with
identical coefficients. ``compile_program`` starts every iteration in a fresh layer, scales
each iteration's products by the worst iteration's magnitude bounds and then checks that all
iterations lowered to the same weights (``_share_loop``): the checkpoint stores the stage's
blocks once and ``ModelShape.loop`` says how often they run. This section lays the executed
layers out stage by stage, each with the stored blocks it runs and the program ops it
computes, and sets the parameter count beside the stacked form's.
"""
from __future__ import annotations

import dataclasses

from construct.model.assemble import CompiledModel, compile_program


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}..{last}"


def stage_rows(compiled: CompiledModel) -> list[tuple[str, str, str, str]]:
    """``(part, executed layers, stored blocks, program ops)`` for the prologue, each iteration
    and the epilogue of the shared loop (op numbers of the unrolled program, from 1)."""
    shape, loop = compiled.shape, compiled.source_program.loop
    first, length, times = shape.loop
    schedule = compiled.schedule
    executed = shape.executed_blocks

    def ops_of(layers: range) -> str:
        ops = [i for l in layers for i in (*schedule.layers[l].attn, *schedule.layers[l].mlp)]
        return _span(min(ops) + 1, max(ops) + 1) if ops else "—"

    def row(part: str, layers: range) -> tuple[str, str, str, str]:
        blocks = sorted({executed[l] for l in layers})
        return (part, _span(layers[0], layers[-1]), _span(blocks[0], blocks[-1]),
                ops_of(layers))

    rows = [row("prologue", range(first))] if first else []
    rows += [row(f"stage {k + 1} of {times}", range(first + k * length, first + (k + 1) * length))
             for k in range(loop.times)]
    if shape.depth > first + times * length:
        rows.append(row("epilogue", range(first + times * length, shape.depth)))
    return rows


def stage_section(compiled: CompiledModel) -> list[str]:
    """The page's "Stages" section; empty for a model without a shared loop."""
    shape = compiled.shape
    if shape.loop is None:
        return []
    first, length, times = shape.loop
    loop = compiled.source_program.loop
    stacked = compile_program(compiled.source_program,
                              dataclasses.replace(compiled.config, form="stacked"))
    lines = ["## Stages (the weight-shared loop)", "",
             f"The program repeats ops {loop.start + 1}..{loop.stop} {times} times (`repeat "
             f"{times}`). Every iteration starts a fresh layer and its products are scaled by "
             "the largest magnitudes any iteration reaches, so all iterations lower to the "
             f"same weights: the checkpoint stores the stage's {length} block(s) "
             f"(`blocks.{_span(first, first + length - 1)}`) once, and `loop = [{first}, "
             f"{length}, {times}]` in its config runs them {times} times. The model executes "
             f"{shape.depth} layers from {shape.n_layers} stored blocks; the pictures below "
             "show each stored block once.", "",
             "| part | executed layers | stored blocks | program ops |", "|---|---|---|---|",
             *(f"| {' | '.join(r)} |" for r in stage_rows(compiled)), "",
             f"Parameters: {compiled.n_params} ({compiled.n_nonzero_params} nonzero) here, "
             f"{stacked.n_params} ({stacked.n_nonzero_params} nonzero) in the stacked form "
             f"(`--form stacked`, every layer its own weights); the shared count stays the same "
             "for every n. The price is the uniform scaling: every iteration's error bound is "
             "the worst iteration's (see the error budget).", ""]
    return lines

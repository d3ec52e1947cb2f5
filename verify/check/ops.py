"""Single-operation programs: each lowered operation measured in isolation, on exact inputs.

``op_program(kind, d)`` builds a small program whose **last** op is the op under test; the ops
before it only prepare its inputs, with ``mov``/``aff`` (exact up to the softmax leak, about
``e^-64`` with the default hardness) or, for ``div``, a ``dot`` that keeps the divisor
``>= 1``. ``measure`` compiles the program with one op per layer (``schedule="sequential"``),
so the op under test owns a layer, and compares that layer's output with the exact op:

1. random tokens, entries uniform in ``[-B, B]`` (``B = config.input_bound``), laid out as
   x-token ``[0, x]``, y-token ``[y, 0]``; the model runs in ``dtype`` (float32 tokens for a
   float32 model);
2. every slot the op reads is decoded from the compiled residual **before** the op's layer and
   cast to float64;
3. the reference is ``interpreter.apply_op`` on those decoded inputs, in float64;
4. ``observed`` is the largest ``|compiled - reference|`` of the op's destination rows after
   its layer, over every column and every sequence of the batch.

Because the reference starts from what the compiled model actually holds, errors of earlier
layers do not count: ``observed`` is the op's own error, which ``predicted =
compiled.errors[index].total(dtype)`` bounds (``construct.compiler.error_models``).
"""
from __future__ import annotations

import dataclasses
import functools
from fractions import Fraction

import torch

from construct.language import interpreter
from construct.model.assemble import CompiledModel, compile_program
from construct.language.builder import ProgramBuilder, column, mean_of, prev
from construct.compiler.config import CompileConfig, torch_dtype
from construct.model.inputs import validate_tokens
from construct.model.transformer import Transformer, decode
from construct.language.program import Program

OP_KINDS = ("mov-prev", "mov-back", "mov-fixed", "mov-mean", "aff", "mul-dot", "mul-outer",
            "mul-matvec", "div")


@dataclasses.dataclass(frozen=True)
class OpMeasurement:
    kind: str
    d: int
    dtype: str
    observed: float  # max |compiled - exact op| over destination rows, columns, batch
    predicted: float  # the op's error bound, ErrorModel.total(dtype)

    @property
    def ratio(self) -> float:
        return self.observed / self.predicted if self.predicted > 0 else float("inf")

    @property
    def holds(self) -> bool:
        return self.observed <= self.predicted

    def to_json(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "ratio": self.ratio}


def _coefficient(i: int, j: int, modulus: int, denominator: int) -> Fraction:
    """A fixed, irregular small rational (both signs, some zeros) for test coefficients."""
    return Fraction((3 * i + 5 * j + 1) % modulus - modulus // 2, denominator)


def op_program(kind: str, d: int) -> tuple[Program, int]:
    """A program ending in the op under test, and that op's index.

    The output slot is the label ``y`` (always written, never touched), so the op under test
    may write a slot of any shape.
    """
    b = ProgramBuilder(f"op-{kind}", d)
    match kind:
        case "mov-prev":
            b.mov("m", b.x, prev())
        case "mov-back":
            b.mov("m", b.x, prev(k=2))
        case "mov-fixed":
            b.mov("m", b.x, column(1))  # column 0 reads itself: the clamp is exercised too
        case "mov-mean":
            b.mov("m", b.x, mean_of("x"))
        case "aff":
            weights = [[_coefficient(i, j, 7, 4) for j in range(d)] for i in range(d)]
            b.aff("a", {b.x: weights, b.y: [[_coefficient(i, d, 5, 2)] for i in range(d)]},
                  bias=[_coefficient(i, 2, 9, 8) for i in range(d)])
        case "mul-dot":
            b.dot("p", b.x, b.x)
        case "mul-outer":
            b.mul("o", b.x, b.x, d, 1, d)  # x (d x 1) times x read as 1 x d
        case "mul-matvec":
            coefficients = [[_coefficient(r, k, 5, 2) for k in range(d)] for r in range(d * d)]
            b.aff("M", {b.x: coefficients}, rows=d, cols=d)
            b.mul("v", "M", b.x, d, d, 1)
        case "div":
            b.dot("sq", b.x, b.x)
            b.aff("den", {"sq": 1}, bias=[1])  # 1 + |x|^2 >= 1, so min_abs = 1 holds
            b.div("q", b.x, "den", min_abs=1)
        case _:
            raise ValueError(f"unknown op kind {kind!r}; kinds are {', '.join(OP_KINDS)}")
    program = b.build(output=b.y)
    return program, len(program.ops) - 1


@functools.lru_cache(maxsize=128)
def compile_op(kind: str, d: int, config: CompileConfig) -> tuple[CompiledModel, int]:
    """``op_program`` compiled one op per layer (cached: configs are frozen, hence hashable)."""
    program, index = op_program(kind, d)
    return compile_program(program, config.replace(schedule="sequential")), index


def random_tokens(d: int, n_tokens: int, batch: int, bound: float, seed: int) -> torch.Tensor:
    """``[batch, n_tokens, d + 1]`` float64, entries uniform in ``[-bound, bound]``, laid out."""
    generator = torch.Generator().manual_seed(seed)
    tokens = (2 * torch.rand(batch, n_tokens, d + 1, generator=generator,
                             dtype=torch.float64) - 1) * bound
    tokens[:, 0::2, 0] = 0.0  # x-tokens carry no label
    tokens[:, 1::2, 1:] = 0.0  # y-tokens carry no features
    return tokens


def measure_compiled(compiled: CompiledModel, index: int, dtype: str, seed: int,
                     n_tokens: int = 5, batch: int = 256) -> tuple[float, float]:
    """``(observed, predicted)`` for op ``index`` of a sequentially compiled model."""
    program, config = compiled.program, compiled.config
    layer = compiled.schedule.layer_of(index)
    if sorted((*compiled.schedule.layers[layer].attn, *compiled.schedule.layers[layer].mlp)) \
            != [index]:
        raise ValueError(f"op {index + 1} does not have a layer of its own; compile with "
                         "schedule='sequential'")
    tokens = random_tokens(program.d, n_tokens, batch, config.input_bound, seed)
    model_tokens = tokens.to(torch_dtype(dtype))
    validate_tokens(model_tokens, program.d, config.input_bound, config.n_ctx)
    model = Transformer(compiled.shape, compiled.weights, torch_dtype(dtype))
    cache = model(model_tokens)
    before, after = cache.residuals[2 * layer], cache.after_layer(layer)
    op = program.ops[index]
    # The exact op applied to what the compiled model holds before the layer: earlier
    # layers' errors are in the inputs of both sides and cancel out of the difference.
    state = {name: decode(before, compiled.layout.rows(name)).to(torch.float64)
             for name in (*op.reads, op.dst)}
    reference = interpreter.apply_op(op, state, interpreter.column_kinds(n_tokens))
    compiled_value = decode(after, compiled.layout.rows(op.dst)).to(torch.float64)
    observed = float((compiled_value - reference).abs().max())
    return observed, compiled.errors[index].total(dtype)


def measure(kind: str, d: int, dtype: str, config: CompileConfig, seed: int,
            n_tokens: int = 5, batch: int = 256) -> OpMeasurement:
    """Observed error of op ``kind`` (isolated, see the module docstring) and its bound.

    ``config`` is used with ``schedule="sequential"`` whatever it says, so the op under test
    has a layer of its own; ``dtype`` is the dtype the model runs in.
    """
    compiled, index = compile_op(kind, d, config)
    observed, predicted = measure_compiled(compiled, index, dtype, seed, n_tokens, batch)
    return OpMeasurement(kind, d, dtype, observed, predicted)

"""Picture 3 of ``construct.teach.pictures``: one random prompt through the model.

At the top is every head's attention pattern (each row sums to 1 and sits on one key: the
point read). At the bottom are the live slots after each layer at every token, with the
largest difference from the reference interpreter in the titles: the network and the program
agree to within the approximation and rounding errors that the error models bound.
"""
from __future__ import annotations

import numpy as np
import torch

from construct.language.interpreter import Trace, run
from construct.model.assemble import CompiledModel
from construct.model.transformer import ForwardCache, Transformer, decode
from construct.teach.pictures import (STYLE, Figure, _entry, _heatmap, block_of, colors,
                                      head_roles, matplotlib, token_names)
from verify.tasks import make_tasks


def run_example(compiled: CompiledModel, seed: int = 0, n_examples: int = 1
                ) -> tuple[torch.Tensor, ForwardCache]:
    """One random prompt ``[P] x1, y1, ..., x_q`` with ``n_examples`` exemplars (``[T, d + 1]``,
    inside the input bound; the prior column where the program has one) and the model's
    residuals on it."""
    tasks = make_tasks(compiled.program.d, 1, compiled.config.input_bound, seed=seed,
                       n_examples=n_examples, prior_column=compiled.program.prior_column)
    tokens = tasks.tokens[0]
    return tokens, Transformer(compiled.shape, compiled.weights)(tokens)


def attention_pattern(compiled: CompiledModel, resid: np.ndarray, layer: int,
                      head: int) -> np.ndarray:
    """The causal softmax pattern ``[T, T]`` of one head on the residual entering its layer."""
    model = Transformer(compiled.shape, compiled.weights)
    return model.attention_pattern(torch.as_tensor(resid), layer)[head].numpy()


def slot_values(compiled: CompiledModel, trace: Trace, cache: ForwardCache,
                layer: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Entry names, compiled and interpreter values ``[entries, T]`` of the slots live after
    ``layer`` (``trace`` and ``cache`` from the same tokens)."""
    layout, program, schedule = compiled.layout, compiled.program, compiled.schedule
    names, ours, theirs = [], [], []
    for name in (n for n in layout.slots if layout.live_after_layer(n, layer)):
        # Writes to one slot keep program order, so its last writer by this layer holds it.
        writers = [i for i, op in enumerate(program.ops)
                   if op.dst == name and schedule.layer_of(i) <= layer]
        rows = layout.rows(name)
        names += [_entry(name, k, len(rows)) for k in range(len(rows))]
        ours.append(decode(cache.after_layer(layer), rows).numpy().T)
        theirs.append(np.asarray(trace.states[writers[-1] + 1 if writers else 0][name]).T)
    return names, np.concatenate(ours), np.concatenate(theirs)


def _prompt_text(tokens: torch.Tensor, prior_column: bool) -> str:
    """``x1 = (..), y1 = .., x2 = (..)``: the label of a y-token, else the features (first 4);
    the prior column (a zero token) is left out."""
    parts = []
    for name, token in zip(token_names(len(tokens), prior_column), tokens.tolist()):
        if name == "P":
            continue
        values = token[:1] if name[0] == "y" else token[1:]
        text = ", ".join(f"{v:.3g}" for v in values[:4]) + (", …" if len(values) > 4 else "")
        parts.append(f"{name} = {text}" if name[0] == "y" else f"{name} = ({text})")
    return ", ".join(parts)


def example_figure(compiled: CompiledModel, seed: int = 0, n_examples: int = 1) -> Figure:
    tokens, cache = run_example(compiled, seed, n_examples)
    prior = compiled.program.prior_column
    n_layers, names = compiled.schedule.n_layers, token_names(len(tokens), prior)
    roles = [head_roles(compiled, l) for l in range(n_layers)]
    n_heads = max([1] + [len(r) for r in roles])
    leak = 0.0
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(1.0 + 2.2 * n_layers, 2.2 * n_heads + 4.8), layout="constrained")
        top, bottom = figure.subfigures(2, 1, height_ratios=[2.2 * n_heads + 0.3, 4.0])
        grid = top.subplots(n_heads, n_layers, squeeze=False)
        for l, layer_roles in enumerate(roles):
            for ax in grid[len(layer_roles):, l]:
                ax.set_axis_off()
            for ax, (head, short, _) in zip(grid[:, l], layer_roles):
                pattern = attention_pattern(compiled, cache.residuals[2 * l].numpy(),
                                            block_of(compiled, l), head)
                # Summed directly: 1 - max would round the e^-N leak away. A mean read spreads
                # its weight on purpose: only point reads have a leak.
                if not short.startswith("mean"):
                    leak = max(leak, float(np.sort(pattern, axis=1)[:, :-1].sum(axis=1).max()))
                _heatmap(ax, pattern, names, names, norm=colors.Normalize(0, 1), cmap="Greens",
                         colorbar=False, hide_below=1e-3)
                ax.set_title(f"L{l} head {head}: {short}")
        grid[0][0].set(ylabel="query position t", xlabel="key position j")
        top.suptitle(f"{compiled.program.name}, prompt {_prompt_text(tokens, prior)}\nattention "
                     "pattern of every head (softmax over keys j ≤ t, rows sum to 1): a point "
                     f"read puts its weight on one key, off it ≤ {leak:.1e}; a mean read spreads "
                     "it evenly over the columns of its kind")
        worst, trace = 0.0, run(compiled.program, tokens.numpy())
        for l, ax in enumerate(bottom.subplots(1, n_layers, squeeze=False)[0]):
            entries, ours, theirs = slot_values(compiled, trace, cache, l)
            diff = float(np.max(np.abs(ours - theirs)))
            worst, scale = max(worst, diff), float(np.max(np.abs(ours))) or 1.0
            _heatmap(ax, ours, entries, names, norm=colors.Normalize(-scale, scale),
                     fmt="{:.3g}", colorbar=False)
            ax.set_title(f"after layer {l}: compiled vs\ninterpreter, max |diff| = {diff:.1e}")
        prediction = float(cache.output[-1, 0])
        bottom.suptitle(f"live slots after each layer at every token (numbers: the compiled "
                        f"model's values; prediction {compiled.program.output} at "
                        f"{names[-1]} = {prediction:.4g})\ncompiled vs interpreter, "
                        f"max |diff| = {worst:.1e}")
    return figure

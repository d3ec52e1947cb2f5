"""Pictures of a compiled model for teaching: see the proof in the weights.

``write_pictures(compiled, out_dir, stem)`` writes three kinds of PNG.

``{stem}-layout.png``: the residual stream over time. Rows run down (row 0 on top), layer
halves run right (embedding, ``L0 attn``, ``L0 mlp``, ...). Each slot is a box over its rows
and over the halves where it is live (from the half that writes it to the half that last
reads it); the fixed position and LayerNorm rows are grey bands. Look for boxes that share a
row band at different times: once a slot's last read is past, the allocator gives its rows
to a later slot, which is why the stream is narrower than the paper's row map.

``{stem}-layer{l}.png``: the weights of layer ``l``. Per attention head, the score
``q_t·k_j`` that the position rows alone give on the first positions, each row shifted so its
largest score is 0 (softmax ignores such a shift). The one 0 per row (bright) is the column the
head reads: the self head is the diagonal; a ``mov`` that reads the previous column makes a
bright sub-diagonal at the y-tokens. The quadratic code ``k_j = (j, j²)`` puts every other key
at least ``N`` (``attn_hardness``) lower, so the softmax is a hard pick. Beside it is the head's
value-output map ``W_V·W_O``, from the rows it reads to the rows it writes; a -1 on a row is the
self head writing ``new - old``. Below are the MLP's ``W_in`` and ``W_out`` over the units it
uses: a ``mul`` is a few GeLU units per product term, kept in GeLU's nearly quadratic range by
small effective input weights and scaled back by huge output weights; in a ``div`` layer the
self head writes ``±N·den`` into the LayerNorm pad rows, so LayerNorm divides by ``|den|``.
Colours: red positive, blue negative, on a symmetric log scale where the weights span many
decades (1e-9 to 1e12).

``{stem}-example.png``: one random prompt run through the model. At the top is every head's
attention pattern (each row sums to 1 and sits on one key: the point read). At the bottom
are the live slots after each layer at every token, with the largest difference from the
reference interpreter in the titles: the network and the program agree to within the
approximation and rounding errors that the error models bound.
"""
from __future__ import annotations

import pathlib
import textwrap

import numpy as np
import torch

try:
    import matplotlib
    from matplotlib import colors, patheffects
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
except ImportError as error:  # an optional extra: the compiler itself never needs it
    raise ImportError("rawc explain --out needs matplotlib: pip install 'rawc[pictures]'") \
        from error

from construct.teach import explain  # module import: explain may import this module in turn
from construct.model.assemble import CompiledModel
from construct.language.interpreter import column_kinds
from construct.model.transformer import Transformer
from construct.language.printer import op_text
from construct.language.program import PRIOR_KIND, Mov

STYLE = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7,
         "ytick.labelsize": 7, "figure.titlesize": 9}
SCORE_POSITIONS = 9  # x1..x5: enough to see the pattern repeat at both kinds of column
ANNOTATE_CELLS = 100  # write the numbers into heat maps up to this many cells
HALO = [patheffects.withStroke(linewidth=1.5, foreground="white")]
HeadRole = tuple[int, str, str]  # head index, its read map in short, what it does


def write_pictures(compiled: CompiledModel, out_dir: pathlib.Path, stem: str, *,
                   seed: int = 0, n_examples: int = 1) -> list[pathlib.Path]:
    """Write the layout, per-layer and example pictures; return their paths in that order.
    The example prompt holds ``n_examples`` exemplars (a learner over ``n`` needs all ``n``)."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = [("layout", layout_figure(compiled))]
    # One picture per stored block, drawn at the first layer that runs it: in the shared form
    # a loop's blocks are drawn once, as the stage every iteration runs.
    figures += [(f"layer{l}", layer_figure(compiled, l)) for l in drawn_layers(compiled)]
    from construct.teach.example_picture import example_figure  # it draws with this module

    figures.append(("example", example_figure(compiled, seed, n_examples)))
    paths = [out_dir / f"{stem}-{suffix}.png" for suffix, _ in figures]
    for path, (_, figure) in zip(paths, figures):
        # No "Software" chunk: the bytes then depend on the model alone, not on versions.
        figure.savefig(path, dpi=100, metadata={"Software": None})
    return paths


# ------------------------------------------------------------------ names of rows and columns
def token_names(n_tokens: int, prior_column: bool = False) -> list[str]:
    """``x1, y1, x2, ...``: the interleaved prompt (``P`` first where it has a prior column)."""
    offset = int(prior_column)
    return ["P" if kind == PRIOR_KIND else f"{kind}{(t - offset) // 2 + 1}"
            for t, kind in enumerate(column_kinds(n_tokens, prior_column))]


def half_names(n_layers: int) -> list[str]:
    return ["embedding"] + [f"L{l} {part}" for l in range(n_layers) for part in ("attn", "mlp")]


def _entry(name: str, k: int, size: int) -> str:
    return name if size == 1 else f"{name}[{k}]"


def row_labels(compiled: CompiledModel, layer: int) -> list[str]:
    """A name for every residual row as layer ``layer`` sees it.

    A fixed row has its own name; a data row the entries of the slots live in that layer
    (``old / new`` where a slot takes over another's rows there), else of any slot that ever
    uses the row.
    """
    layout = compiled.layout
    by_age = sorted(layout.slots, key=lambda n: (layout.lifetimes[n], n))

    def entries(names: list[str]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for name in names:
            rows = layout.rows(name)
            for k, row in enumerate(rows):
                out.setdefault(row, []).append(_entry(name, k, len(rows)))
        return out

    live = entries([n for n in by_age if layout.live_in_layer(n, layer)])
    ever = entries(by_age)
    fixed = {row: [name] for name, row in layout.fixed.items()}
    return [" / ".join(fixed.get(r) or live.get(r) or ever.get(r) or [f"row {r}"])
            for r in range(layout.d_model)]


def _ticks(labels: list[str], rows: np.ndarray) -> list[str]:
    return [f"r{r} {labels[r]}" for r in rows]


# ------------------------------------------------------------------ heat maps
def symmetric_norm(values: np.ndarray) -> colors.Normalize:
    """Centred at 0; logarithmic when the magnitudes span more than two decades."""
    magnitudes = np.abs(values[np.isfinite(values) & (values != 0)])
    top, small = (magnitudes.max(), magnitudes.min()) if magnitudes.size else (1.0, 1.0)
    if top / small < 100:
        return colors.Normalize(-top, top)
    # linthresh a decade below the smallest weight, so that weight is still visibly coloured.
    return colors.SymLogNorm(linthresh=small / 10, linscale=0.3, vmin=-top, vmax=top, base=10)


def _colour_ticks(norm: colors.Normalize) -> list[float] | None:
    """At most three decades each side of 0 on a log scale (the default ticks crowd at 0)."""
    if not isinstance(norm, colors.SymLogNorm):
        return None
    decades = np.arange(np.ceil(np.log10(norm.linthresh * 10)), np.floor(np.log10(norm.vmax)) + 1)
    chosen = 10.0 ** decades[::-int(np.ceil(len(decades) / 3))][::-1]
    return [*(-chosen[::-1]), 0.0, *chosen]


def _heatmap(ax: Axes, matrix: np.ndarray, ylabels: list[str], xlabels: list[str], *,
             norm: colors.Normalize | None = None, cmap: str = "RdBu_r", fmt: str = "{:.2g}",
             colorbar: bool = True, hide_below: float = 0.0) -> None:
    """``matrix`` with its numbers written in (those with ``|v| > hide_below``) when small."""
    palette = matplotlib.colormaps[cmap].with_extremes(bad="white")
    norm = norm or symmetric_norm(matrix)
    image = ax.imshow(matrix, cmap=palette, norm=norm, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(ylabels)), ylabels)
    ax.set_xticks(range(len(xlabels)), xlabels, rotation=90 if max(map(len, xlabels)) > 3 else 0)
    cells = np.ndenumerate(matrix) if matrix.size <= ANNOTATE_CELLS else ()
    for (i, j), value in cells:
        if np.isfinite(value) and abs(value) > hide_below:
            # "7.9e+02" -> "7.9e2" to fit a cell; white ink on dark cells.
            text = fmt.format(value).replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")
            red, green, blue, _ = palette(norm(value))
            ink = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
            ax.text(j, i, text, ha="center", va="center", fontsize=6, color=ink)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, shrink=0.9, ticks=_colour_ticks(norm))


def _message(ax: Axes, title: str, text: str) -> None:
    ax.set_title(title, loc="left")
    ax.text(0.5, 0.5, textwrap.fill(text, 60), ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


# ------------------------------------------------------------------ picture 1: layout
def layout_figure(compiled: CompiledModel) -> Figure:
    layout, halves = compiled.layout, half_names(compiled.schedule.n_layers)
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(2.0 + 0.8 * len(halves), 1.6 + 0.3 * layout.d_model),
                        layout="constrained")
        ax = figure.add_subplot()
        for name, row in layout.fixed.items():
            _band(ax, 0, len(halves), row, row + 1, "0.85", name)
        palette = matplotlib.colormaps["tab20"]
        for k, name in enumerate(sorted(layout.slots, key=lambda n: (layout.lifetimes[n], n))):
            first, last = layout.lifetimes[name]
            # Column h + 1 is half h. A half reads the stream before it and writes after, so a
            # box runs from mid-column (written) to mid-column (last read): a slot that takes
            # over rows in the half that last reads the old one then touches it, not overlaps.
            left = 0 if first < 0 else first + 1.5
            right = len(halves) if last >= len(halves) - 1 else last + 1.5
            _band(ax, left, right, *layout.slots[name], palette((2 * k + k // 10) % 20), name)
        ax.set_xlim(0, len(halves))
        ax.set_ylim(layout.d_model, 0)
        ax.set_xticks(np.arange(len(halves)) + 0.5, halves)
        ax.set_yticks(np.arange(layout.d_model) + 0.5, range(layout.d_model))
        ax.set_xlabel("layer half: a box starts mid-column in the half that writes the slot and "
                      "ends mid-column in the half that last reads it")
        ax.set_ylabel("residual-stream row")
        n_data = layout.d_model - len(layout.fixed)
        ax.set_title(f"{compiled.program.name}: which slot holds each residual row, half by half "
                     f"({len(layout.slots)} slots in {n_data} data rows; grey = fixed rows)\n"
                     "boxes in the same row band at different times reuse rows freed by a "
                     "slot's last read", loc="left")
    return figure


def _band(ax: Axes, left: float, right: float, top: int, bottom: int, colour: object,
          label: str) -> None:
    inset = 0.05  # a gap, so neighbouring boxes stay distinguishable
    ax.add_patch(Rectangle((left + inset, top + inset), right - left - 2 * inset,
                           bottom - top - 2 * inset, facecolor=colour, edgecolor="0.3",
                           linewidth=0.6, alpha=0.85))
    ax.text((left + right) / 2, (top + bottom) / 2, label, ha="center", va="center",
            fontsize=7, path_effects=HALO)


# ------------------------------------------------------------------ picture 2: one layer
def block_of(compiled: CompiledModel, layer: int) -> int:
    """The stored block (``blocks.{b}`` in the checkpoint) that executed layer ``layer`` runs."""
    return compiled.shape.executed_blocks[layer]


def drawn_layers(compiled: CompiledModel) -> list[int]:
    """The executed layer each stored block is drawn at: the first that runs it."""
    executed = compiled.shape.executed_blocks
    return [executed.index(b) for b in range(compiled.shape.n_layers)]


def stage_note(compiled: CompiledModel, block: int) -> str:
    """Where a stored block runs, when a shared loop runs it more than once (else "")."""
    runs = [l for l, b in enumerate(compiled.shape.executed_blocks) if b == block]
    if len(runs) == 1:
        return ""
    return f"run at layers {', '.join(map(str, runs))}: one block of the shared loop stage"


def head_roles(compiled: CompiledModel, layer: int) -> list[HeadRole]:
    """The heads with weights, in ``lower_attention``'s order: the self head (when the layer
    has one) first, then one head per read map of the layer's ``mov`` ops."""
    w, p = compiled.weights, f"blocks.{block_of(compiled, layer)}.attn."
    used = [h for h in range(compiled.shape.n_heads)
            if any(np.any(w[p + name][h]) for name in ("W_Q", "W_K", "W_V"))]
    ops = [compiled.program.ops[i] for i in compiled.schedule.layers[layer].attn]
    movs = [op for op in ops if isinstance(op, Mov)]
    reads = sorted(dict.fromkeys(op.read for op in movs), key=lambda r: r.text())
    roles = [(read.text(), "; ".join(f"`{op_text(op)}`" for op in movs if op.read == read)
              + f": reads via {read.text()}") for read in reads]
    if len(used) > len(roles):
        roles.insert(0, ("self", "self head: reads its own column"))
    return [(head, short, text) for head, (short, text) in zip(used, roles)]


def position_scores(compiled: CompiledModel, layer: int, head: int,
                    n_positions: int) -> np.ndarray:
    """``q_t·k_j / attn_scale`` from the position rows alone; ``nan`` where causality masks."""
    model = Transformer(compiled.shape, compiled.weights)
    positions = model.weight("pos_embed.W_pos")[:n_positions]
    scores = model.attention_scores(positions, block_of(compiled, layer))[head].numpy()
    scores[np.triu_indices(n_positions, 1)] = np.nan
    return scores


def _draw_scores(ax: Axes, compiled: CompiledModel, layer: int, role: HeadRole) -> None:
    n = min(SCORE_POSITIONS, compiled.shape.n_ctx)
    shifted = position_scores(compiled, layer, role[0], n)
    shifted -= np.nanmax(shifted, axis=1, keepdims=True)
    gaps = [np.diff(np.sort(row[np.isfinite(row)]))[-1] for row in shifted[1:]]
    gap = min(gaps) if gaps else compiled.config.attn_hardness
    names = token_names(n, compiled.program.prior_column)
    _heatmap(ax, shifted, names, names, norm=colors.Normalize(-2 * gap, 0), cmap="viridis",
             fmt="{:.0f}", colorbar=False, hide_below=-1.0)
    ax.set(ylabel="query position t", xlabel="key position j")
    ax.set_title(f"layer {layer} attention, head {role[0]}: softmax score q_t·k_j from the "
                 f"position rows\n({role[2]})\neach row minus its max: 0 (bright) = the key read, "
                 f"every other key ≥ {gap:.3g} lower", loc="left")


def _draw_value_output(ax: Axes, compiled: CompiledModel, layer: int, role: HeadRole,
                       labels: list[str]) -> None:
    w, p = compiled.weights, f"blocks.{block_of(compiled, layer)}.attn."
    title = f"head {role[0]}: value-output map W_V·W_O (row read → row written)"
    vo = w[p + "W_V"][role[0]] @ w[p + "W_O"][role[0]]
    reads, writes = np.flatnonzero(vo.any(axis=1)), np.flatnonzero(vo.any(axis=0))
    if not reads.size:
        bias = "; the layer's constant b_O does this half's work" if w[p + "b_O"].any() else ""
        _message(ax, title, f"W_V·W_O = 0: this head moves no value{bias}")
        return
    _heatmap(ax, vo[np.ix_(reads, writes)], _ticks(labels, reads), _ticks(labels, writes))
    ax.set(ylabel="reads residual row", xlabel="writes residual row")
    how = ("-1 on a row: the self head writes new - old, replacing the old value"
           if role[1] == "self" else "copies the value read at the key into rows the self "
           "head cleared")
    ax.set_title(f"{title}\n{how}", loc="left")


def _draw_mlp(axes: tuple[Axes, Axes], compiled: CompiledModel, layer: int,
              labels: list[str]) -> None:
    w, p = compiled.weights, f"blocks.{block_of(compiled, layer)}.mlp."
    w_in, w_out = w[p + "W_in"], w[p + "W_out"]
    w_gate = w.get(p + "W_gate")  # the gated target: relu(z W_gate) * (z W_in)
    units = np.flatnonzero(w_in.any(axis=0) | w_out.any(axis=1))
    if not units.size:
        _message(axes[0], f"layer {layer} MLP: no units in this layer",
                 "no mul or div is scheduled in this MLP half")
        axes[1].set_axis_off()
        return
    use = compiled.layer_norm_use(layer)
    norm = ("" if use is None else f", LayerNorm divides by |{use.divisor}|" if use.divides
            else ", LayerNorm at fixed scale P")
    writes = np.flatnonzero(w_out[units].any(axis=0))
    unit_names = [str(u) for u in units]
    kind = "GeLU" if w_gate is None else "gated"
    if w_gate is None:
        reads = np.flatnonzero(w_in[:, units].any(axis=1))
        _heatmap(axes[0], w_in[np.ix_(reads, units)], _ticks(labels, reads), unit_names)
        title = f"layer {layer} MLP W_in: residual row → unit{norm}"
    else:  # each unit's gate column beside its value column
        reads = np.flatnonzero(w_in[:, units].any(axis=1) | w_gate[:, units].any(axis=1))
        pairs = np.stack([w_gate[np.ix_(reads, units)], w_in[np.ix_(reads, units)]], axis=2)
        _heatmap(axes[0], pairs.reshape(len(reads), -1), _ticks(labels, reads),
                 [f"{name}{side}" for name in unit_names for side in ("g", "v")])
        title = (f"layer {layer} MLP W_gate (g) | W_in (v): unit = relu(z·g) × (z·v)"
                 f"{norm}")
    axes[0].set(xlabel=f"hidden {kind} unit", ylabel="reads residual row")
    axes[0].set_title(title, loc="left")
    _heatmap(axes[1], w_out[np.ix_(units, writes)], unit_names, _ticks(labels, writes))
    axes[1].set(xlabel="writes residual row", ylabel=f"hidden {kind} unit")
    axes[1].set_title(f"layer {layer} MLP W_out: unit → residual row", loc="left")


def layer_figure(compiled: CompiledModel, layer: int) -> Figure:
    roles, labels = head_roles(compiled, layer), row_labels(compiled, layer)
    program, scheduled = compiled.program, compiled.schedule.layers[layer]
    # An MLP half with no units gets a thin row: its panel only says so.
    heights = [3.6] * max(1, len(roles)) + [3.6 if scheduled.mlp else 0.8]
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(12, sum(heights) + 0.4), layout="constrained")
        grid = figure.subplots(len(heights), 2, squeeze=False,
                               gridspec_kw={"height_ratios": heights})
        for role, (score_ax, vo_ax) in zip(roles, grid):
            _draw_scores(score_ax, compiled, layer, role)
            _draw_value_output(vo_ax, compiled, layer, role, labels)
        if not roles:
            _message(grid[0][0], f"layer {layer} attention", "no heads in this layer")
            grid[0][1].set_axis_off()
        _draw_mlp(tuple(grid[-1]), compiled, layer, labels)
        ops = lambda indices: "; ".join(f"`{op_text(program.ops[i])}`" for i in indices) or "—"
        unused = compiled.shape.n_heads - len(roles)
        note = f"\n({unused} unused head(s) omitted: all heads share one shape)" if unused else ""
        block = block_of(compiled, layer)
        stage = stage_note(compiled, block)
        stage = f"\n(blocks.{block} is {stage}; the ops shown are its first run's)" if stage else ""
        figure.suptitle(f"{program.name}, layer {layer} (blocks.{block}): attention "
                        f"{ops(scheduled.attn)} | MLP {ops(scheduled.mlp)}{note}{stage}")
    return figure


# ------------------------------------------------------------- linear self-attention blocks
def lsa_block_figure(name: str, layer: int, kq: np.ndarray, pv: np.ndarray,
                     g_eff: np.ndarray) -> Figure:
    """One linear-self-attention block: ``W_KQ`` (which token directions a query compares),
    ``W_PV`` (what each key's token writes), and ``G_eff``, the preconditioner they apply to
    ``(1/n) sum_i r_i x_i``: ``-eta I`` for GD, ``Gamma`` for preconditioned GD."""
    d = kq.shape[0] - 1
    tokens = [f"x{k + 1}" for k in range(d)] + ["y"]
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(12, 3.4), layout="constrained")
        axes = figure.subplots(1, 3)
        for ax, matrix, title, rows, cols in (
                (axes[0], kq, "W_KQ: key entry × query entry", tokens, tokens),
                (axes[1], pv, "W_PV: written entry × key entry", tokens, tokens),
                (axes[2], g_eff, "G_eff (acts on x-space)", tokens[:-1], tokens[:-1])):
            _heatmap(ax, matrix, rows, cols, fmt="{:.3g}")
            ax.set_title(title, loc="left")
        figure.suptitle(f"{name}, block {layer}")
    return figure


def write_lsa_pictures(name: str, blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                       out_dir: pathlib.Path) -> list[pathlib.Path]:
    """``{name}-block{l}.png`` for every block's ``(W_KQ, W_PV, G_eff)``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for layer, (kq, pv, g_eff) in enumerate(blocks):
        path = out_dir / f"{name}-block{layer}.png"
        lsa_block_figure(name, layer, kq, pv, g_eff).savefig(path, dpi=100,
                                                             metadata={"Software": None})
        paths.append(path)
    return paths

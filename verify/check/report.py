"""The text form of a ``rawc verify`` report: what was checked, against which bound.

Sections: each op against the interpreter on the model's own input state (its own error
model), each slot after every layer (the propagated bound; one line per slot, its worst
layer), the end-to-end checks, the prediction at every prefix with the agreement metrics
(SPD, ILWD, MSPD, divided by d) against the reference learners.
"""
from __future__ import annotations

HEAD = (f"{'check':<44} {'max abs':>10} {'mean abs':>10} {'max rel':>10} {'mean rel':>10} "
        f"{'bound':>10}  ok")


def _line(row: dict[str, object]) -> str:
    return (f"{row['check']:<44} {row['max_abs']:>10.3g} {row['mean_abs']:>10.3g} "
            f"{row['max_rel']:>10.3g} {row['mean_rel']:>10.3g} {row['bound']:>10.3g}  "
            f"{_verdict(row)}")


def _verdict(row: dict[str, object]) -> str:
    if not row["ok"]:
        return "NO"
    # An infinite propagated bound (an earlier error may reach a divisor's declared minimum)
    # says nothing: no guarantee, never a pass.
    return "yes" if row["bound"] != float("inf") else "no guarantee"


def _worst_per_slot(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """One row per slot: the layer where error / bound is largest (a failing one first)."""
    best: dict[str, dict[str, object]] = {}

    def badness(row: dict[str, object]) -> tuple[bool, float]:
        bound = row["bound"]
        ratio = row["max_abs"] / bound if 0 < bound < float("inf") else 0.0
        return (not row["ok"], ratio)

    for row in rows:
        slot = row["check"].split()[2]
        if slot not in best or badness(row) > badness(best[slot]):
            best[slot] = row
    return list(best.values())


def format_report(report: dict[str, object]) -> str:
    rows = report["rows"]
    layer_rows = [r for r in rows if r["check"].startswith("layer ")]
    op_rows = [r for r in rows if r["check"].startswith("op ")]
    prefix_rows = [r for r in rows if r["check"].startswith("prefix ")]
    end_rows = [r for r in rows if r not in (*layer_rows, *op_rows, *prefix_rows)]
    phases = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in report["phases"].items())
    lines = [f"rawc verify: {report['algorithm']} "
             f"({', '.join(f'{k}={v}' for k, v in report['params'].items())}), "
             f"{report['trials']} tasks in batches of {report['batch']}, {report['dtype']} on "
             f"{report['device']}, {report['seconds']:.2f} s ({phases})",
             "" if report["closed_form"] else
             "a program file: no closed form; the model is held to the interpreter alone", ""]
    if op_rows:
        lines += ["each op vs the interpreter on the model's own inputs (bound: the op's own "
                  "error model; every iteration of a loop)", HEAD, "-" * len(HEAD)]
        lines += [_line(r) for r in op_rows] + [""]
    lines += [f"each slot vs the interpreter after every layer ({len(layer_rows)} checks; "
              "bound: propagated; the worst layer of each slot)", HEAD, "-" * len(HEAD)]
    lines += [_line(r) for r in _worst_per_slot(layer_rows)] + ["", HEAD, "-" * len(HEAD)]
    lines += [_line(r) for r in end_rows]
    lines += _bounds_lines(report)
    lines += _prefix_table(report, prefix_rows)
    if "verdict" in report:
        lines += [report["integrity"], f"result: {report['verdict'].replace('_', ' ')}: "
                  f"{report['verdict_reason']}"]
    return "\n".join(lines)


def _bounds_lines(report: dict[str, object]) -> list[str]:
    """The two end-to-end bounds: a priori over the declared box, a posteriori per task."""
    prior, posterior = report["a_priori"], report["a_posteriori"]
    return ["", f"a-priori end-to-end bound (declared box): {prior['bound']:.3g}, "
            f"{prior['bound'] / prior['output_bound'] if prior['output_bound'] else float('inf'):.3g}"
            f" of the output's magnitude bound {prior['output_bound']:.3g}",
            f"a-posteriori bound (per task{_posterior_scope(posterior)}): largest "
            f"{posterior['max_bound']:.3g}, "
            f"{posterior['tightness']:.3g} times the largest error "
            f"{posterior['max_observed']:.3g}; worst error / bound {posterior['worst_ratio']:.3g}"
            f" ({'yes' if posterior['ok'] else 'NO'})"]


def _posterior_scope(posterior: dict[str, object]) -> str:
    prefixes = posterior.get("prefixes") or []
    return f", at prefixes {', '.join(map(str, prefixes))}" if len(prefixes) > 1 else ""


def _prefix_table(report: dict[str, object], prefix_rows: list[dict[str, object]]) -> list[str]:
    if len(prefix_rows) < 2:
        return [""]
    metrics = report.get("metrics")
    names = list(metrics["spd"]) if metrics else []
    head = (f"{'k':>3} {'max abs':>10} {'max rel':>10} {'bound':>10}  ok "
            + "".join(f"{'SPD ' + n:>18}" for n in names)
            + (f" {'ILWD own':>10} {'R2 min':>8}" if metrics else ""))
    against = "the closed form" if report["closed_form"] else "the interpreter"
    lines = ["", f"prediction at every prefix k (k exemplars before the query) vs {against}"
             + ("; SPD and ILWD divided by d" if metrics else ""), head, "-" * len(head)]
    own = metrics.get("own") if metrics else None
    for k, row in enumerate(prefix_rows):
        line = (f"{k:>3} {row['max_abs']:>10.3g} {row['max_rel']:>10.3g} {row['bound']:>10.3g}"
                f"  {'yes' if row['ok'] else 'NO':<3}")
        if metrics:
            line += "".join(f"{metrics['spd'][n][k]:>18.3g}" for n in names)
            ilwd = metrics["ilwd"][own][k] if own else None
            line += (f" {ilwd:>10.3g} {metrics['r2_min'][k]:>8.5f}" if ilwd is not None
                     else f" {'-':>10} {'-':>8}")
        lines.append(line)
    if metrics:
        lines += ["", "mean SPD/d over prefixes: " + ", ".join(
            f"{n} {v:.3g}" for n, v in metrics["spd_mean"].items()),
            "MSPD/d (k < d): " + ", ".join(f"{n} {v:.3g}" for n, v in metrics["mspd"].items()),
            f"nearest reference: {metrics['nearest']} (own: {own}); the next is "
            f"{metrics['margin']:.3g} times farther", ""]
    return lines

"""SPD, MSPD and ILWD of a compiled in-context learner against the reference learners.

SPD is accumulated over every verification task (``spd_sums``), at every prefix. ILWD fits
each learner's implicit weights on ``d + 4`` probe queries (``verify.metrics``): a prefix
``k`` costs ``d + 4`` sequences of ``2k + 2`` tokens per task, so every prefix would cost
``(d + 4) n^2`` tokens per task (650 verification tasks' worth for sgd at d = 16, n = 64).
ILWD is therefore taken at ``sampled_prefixes(n)``: every ``k <= 4`` (the under-determined
start, where learners differ most), the powers of two and ``n``, about ``4 + log2 n``
prefixes. All probe sequences of one prefix go through the model in chunks of at most
``CHUNK`` sequences, each forward holding one residual at a time
(``Transformer.outputs``), so memory does not grow with probes, prefixes or layers.
"""
from __future__ import annotations

import sys

import torch
from tqdm import tqdm

from construct.compiler.config import torch_dtype
from construct.model.assemble import CompiledModel
from construct.model.transformer import Transformer
from verify import metrics
from verify.solvers import sampled_prefixes
from verify.tasks import make_tasks

CHUNK = 128
TIE = 1e-6  # SPDs this close (relative) do not tell their learners apart


def agreement(compiled: CompiledModel, model: Transformer, algorithm: str,
              references: list, spd_by_reference: dict[str, torch.Tensor], dtype: str,
              device: torch.device, seed: int, n_tasks: int, progress: bool = False
              ) -> dict[str, object]:
    """SPD (all trials), MSPD and ILWD with R^2 (``n_tasks`` tasks, ``d + 4`` probes) of the
    compiled model against every reference learner, per prefix, divided by d."""
    program, config = compiled.program, compiled.config
    d, n_examples = program.d, next(iter(spd_by_reference.values())).shape[0] - 1
    tasks = make_tasks(d, n_tasks, config.input_bound, seed + 10 ** 6, n_examples=n_examples,
                       device=device)
    probes = make_tasks(d, n_tasks * (d + 4), config.input_bound, seed + 2 * 10 ** 6,
                        device=device).x.reshape(n_tasks, d + 4, d)

    def predict_at_end(tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.to(torch_dtype(dtype))
        return torch.cat([model.outputs(chunk)[:, -1, 0] for chunk in tokens.split(CHUNK)])

    ilwd: dict[str, list[float | None]] = {r.name: [None] * (n_examples + 1) for r in references}
    r2: list[float | None] = [None] * (n_examples + 1)  # None: a prefix ILWD skips
    for k in tqdm(sampled_prefixes(n_examples), desc="ILWD prefixes", unit="prefix",
                  disable=not progress, file=sys.stderr, leave=False):
        weights, fit = metrics.implicit_weights(predict_at_end, tasks.xs, tasks.ys, k, probes,
                                                program.prior_column)
        r2[k] = float(fit.min())
        for r in references:
            other = metrics.reference_weights(r, tasks.xs, tasks.ys, k, probes)
            ilwd[r.name][k] = float(((weights - other) ** 2).sum(-1).mean()) / d
    means = {name: float(v.mean()) for name, v in spd_by_reference.items()}
    ranked = sorted(means, key=means.get)
    own = metrics.own_reference(algorithm)
    own_name = next((r.name for r in references if r.algorithm == own), None)
    margin = means[ranked[1]] / max(means[ranked[0]], 1e-300)
    # A tie is no evidence against the algorithm: diverging tasks (sgd past its stable step)
    # make every reference's SPD the same huge number.
    own_is_nearest = own_name is None or means[own_name] <= means[ranked[0]] * (1 + TIE)
    return {"spd": {name: v.tolist() for name, v in spd_by_reference.items()},
            "mspd": {name: metrics.mspd(v, d) for name, v in spd_by_reference.items()},
            "spd_mean": means, "ilwd": ilwd, "r2_min": r2, "nearest": ranked[0],
            "own": own_name, "margin": margin,
            "nearest_is_own": own_is_nearest}

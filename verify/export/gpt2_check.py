"""An export, run by the real ``transformers`` or TransformerLens, against
rawc's own forward and the closed form, on the same random tasks.

The goal (issue 19): in float64 the export agrees with rawc's forward to ``1e-7`` of the
output's scale at every position; in float32 it stays within rawc's float32 bound. The check
never compares a model with itself: ``GPT2LMHeadModel.from_pretrained`` builds its own modules
from the directory's files, and rawc's ``Transformer`` runs the checkpoint's tensors.
"""
from __future__ import annotations

import dataclasses

import torch

from construct.compiler.config import torch_dtype
from construct.model.transformer import Transformer
from verify.check.verdict import Verdict
from verify.solvers import checked_prefixes, closed_form_prediction
from verify.tasks import Tasks, make_tasks

AGREEMENT_GOAL = {"float64": 1e-7}  # of the output's scale
INFORMATIVE = 0.01  # a bound says something under 1 % of the output's scale


@dataclasses.dataclass(frozen=True)
class ExportCheck:
    loader: str
    dtype: str
    tasks: int
    max_difference: float  # exported vs rawc, every position
    output_scale: float  # max |rawc output| over the same positions
    closed_form: float | None  # the export's relative error against the closed form
    rawc_closed_form: float | None  # rawc's own, on the same tasks

    @property
    def relative_difference(self) -> float:
        return self.max_difference / max(self.output_scale, 1e-300)

    def verdict(self, bound: float | None) -> Verdict:
        """float64: within the goal's fraction of the output scale; float32: within rawc's own
        float32 bound, which must be informative (under 1 % of the output scale) for a pass."""
        goal = AGREEMENT_GOAL.get(self.dtype)
        if goal is not None:
            return Verdict.PASS if self.relative_difference <= goal else Verdict.FAIL
        if bound is not None and self.max_difference > bound:
            return Verdict.FAIL
        if bound is None or not bound < INFORMATIVE * self.output_scale:
            return Verdict.NO_GUARANTEE
        return Verdict.PASS

    def lines(self) -> list[str]:
        out = [f"{self.loader} ({self.dtype}, {self.tasks} tasks): max |export - rawc| = "
               f"{self.max_difference:.2e} ({self.relative_difference:.2e} of the output scale "
               f"{self.output_scale:.3g})"]
        if self.closed_form is not None:
            out.append(f"  against the closed form: export {self.closed_form:.2e}, rawc "
                       f"{self.rawc_closed_form:.2e} (relative)")
        return out


def _tokens(checkpoint, trials: int, seed: int) -> tuple[Tasks, int]:
    """The random tasks of a check (inside the declared bound) and their exemplar count."""
    program = checkpoint.program()
    n = int(checkpoint.algorithm.get("params", {}).get("n", 1) or 1)
    tasks = make_tasks(program.d, trials, checkpoint.input_bound or 1.0, seed, n_examples=n,
                       prior_column=program.prior_column)
    return tasks, n


def check_gpt2(directory: str, checkpoint, dtype: str, trials: int = 64, seed: int = 0,
               loader: str = "transformers") -> ExportCheck:
    """``loader``: ``transformers`` (``GPT2LMHeadModel.from_pretrained``),
    ``transformer-lens-gpt2`` (TL 4's ``TransformerBridge.boot_transformers`` on the GPT-2
    directory) or ``transformer-lens`` (TL 4's native bridge, ``rawc export --to
    transformer-lens``)."""
    torch_type = torch_dtype(dtype)
    tasks, n = _tokens(checkpoint, trials, seed)
    tokens = tasks.tokens.to(torch_type)
    shape = checkpoint.shape
    ours = Transformer(shape, checkpoint.weights, torch_type).outputs(tokens)
    exported = run_export(directory, tokens, shape.d_in, shape.d_out, torch_type, loader)
    name = checkpoint.algorithm.get("name")
    closed = rawc_closed = None
    if checkpoint.algorithm.get("source") is None and name:
        params = checkpoint.algorithm.get("params", {})
        try:
            exact = closed_form_prediction(name, params, tasks)
        except (KeyError, ValueError):
            exact = None
        if exact is not None:
            program = checkpoint.program()
            columns = [program.first_x_column + 2 * k for k in checked_prefixes(name, n)]
            scale = exact.abs().max()
            closed = float((exported[:, columns, 0].double() - exact).abs().max() / scale)
            rawc_closed = float((ours[:, columns, 0].double() - exact).abs().max() / scale)
    return ExportCheck(loader, dtype, trials, float((exported - ours).abs().max()),
                       float(ours.abs().max()), closed, rawc_closed)


@torch.no_grad()
def run_export(directory: str, tokens: torch.Tensor, d_in: int, d_out: int,
               dtype: torch.dtype, loader: str) -> torch.Tensor:
    """The exported model's prediction ``[..., T, d_out]`` for rawc tokens, as a user would
    get it: ``inputs_embeds = X @ wte[:d_in]``, ``logits[..., :d_out]``."""
    if loader == "transformers":
        from transformers import GPT2LMHeadModel

        model = GPT2LMHeadModel.from_pretrained(directory, dtype=dtype).eval()
        embeds = tokens @ model.transformer.wte.weight[:d_in]
        return model(inputs_embeds=embeds).logits[..., :d_out]
    if loader == "transformer-lens-gpt2":  # TL 4 booting the GPT-2 directory
        from transformer_lens.model_bridge import TransformerBridge

        bridge = TransformerBridge.boot_transformers(directory, device="cpu", dtype=dtype)
        wte = bridge.original_model.transformer.wte.weight
        return bridge(tokens @ wte[:d_in])[..., :d_out]
    if loader == "transformer-lens":  # TL 4's native bridge from tl_config / tl_weights
        import json
        import os

        from safetensors.torch import load_file
        from transformer_lens.config.transformer_bridge_config import TransformerBridgeConfig
        from transformer_lens.model_bridge import TransformerBridge
        from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

        with open(os.path.join(directory, "tl_config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
        bridge = TransformerBridge.boot_native(config, dtype=dtype)
        weights = load_file(os.path.join(directory, "tl_weights.safetensors"))
        converted = convert_tl_checkpoint(weights, TransformerBridgeConfig.from_dict(config))
        loaded = bridge.load_state_dict(converted, strict=True)
        if loaded.missing_keys or loaded.unexpected_keys:
            raise ValueError(f"TransformerLens did not take the weights whole: {loaded}")
        return bridge(tokens @ weights["embed.W_E"][:d_in].to(dtype))[..., :d_out]
    raise ValueError(f"unknown loader {loader!r} (transformers, transformer-lens, "
                     "transformer-lens-gpt2)")

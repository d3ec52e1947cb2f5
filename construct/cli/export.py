"""``rawc export CHECKPOINT --to hf-gpt2|transformer-lens DIR``: a compiled checkpoint as a
stock GPT-2 directory (``construct.model.export_gpt2``) or a TransformerLens native bridge
(``construct.model.export_tl``), optionally run through the real library and compared
(``verify.export.gpt2_check``)."""
from __future__ import annotations

import argparse

import numpy as np

TARGETS = ("hf-gpt2", "transformer-lens")
LOADERS = {"hf-gpt2": "transformers", "transformer-lens": "transformer-lens"}


def add_export_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="write a compiled checkpoint for Hugging Face GPT-2 or TransformerLens",
        description="Write CHECKPOINT as a directory that transformers' GPT2LMHeadModel (and "
                    "GPT2Model) loads unmodified and offline (config.json, model.safetensors, "
                    "rawc_io.json), with no hooks: an always-zero anchor row absorbs the mean "
                    "GPT-2's LayerNorms subtract, and either a huge LayerNorm epsilon (no "
                    "LayerNorm in rawc) or +-P pad rows (switched off around rawc's own "
                    "LayerNorm) make the others the identity; heads are zero-padded and the "
                    "score scale folded into W_Q; a shared loop is unrolled. --to "
                    "transformer-lens writes the same weights as a TransformerLens 4 native "
                    "bridge (tl_config.json, tl_weights.safetensors; gated MLPs included), "
                    "loaded with TransformerBridge.boot_native and convert_tl_checkpoint (the "
                    "README has the snippet). Feed the model "
                    "inputs_embeds = X @ wte[:d_in] and read logits[..., :d_out]. Never apply "
                    "TransformerLens weight processing to it. Linear attention and the context "
                    "mask have no such form and are refused by name (exit 2), as are gated "
                    "MLPs for GPT-2 and gated MLPs with LayerNorm for TransformerLens. "
                    "--check runs the export through the real library on random tasks and "
                    "compares it with rawc's forward and the closed form (exit 1 if it "
                    "disagrees: float64 beyond 1e-7 of the output scale, float32 beyond "
                    "rawc's float32 bound; 3 where that bound says nothing).")
    p.add_argument("checkpoint", help="a rawc.checkpoint/1 file")
    p.add_argument("--to", choices=TARGETS, required=True, dest="to",
                   help="hf-gpt2 (a GPT2LMHeadModel directory) or transformer-lens (a "
                        "TransformerLens 4 native bridge's config and weights)")
    p.add_argument("directory", help="directory to write (replaced whole if it exists)")
    p.add_argument("--dtype", choices=("float64", "float32"),
                   help="dtype of the exported weights (default: the dtype the checkpoint's "
                        "constants were tuned for)")
    p.add_argument("--check", action="store_true",
                   help="load the export with the real library and compare (needs "
                        "transformers; transformer-lens for --to transformer-lens)")
    p.add_argument("--trials", type=int, default=64, help="tasks for --check (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --check tasks (default 0)")
    p.set_defaults(run=run)


def largest_residual(checkpoint, compiled) -> float:
    """A data-free bound on every residual entry: the compile-time bounds of every slot and
    pad, the position table, and the embedding of inputs inside the declared bound."""
    from construct.compiler.propagate import largest_value

    w_e = np.abs(np.asarray(checkpoint.weights["embed.W_E"], dtype=np.float64))
    w_pos = np.abs(np.asarray(checkpoint.weights["pos_embed.W_pos"], dtype=np.float64))
    bound = checkpoint.input_bound or 1.0
    return float(max(largest_value(compiled), w_pos.max() + bound * w_e.sum(axis=0).max()))


def run(args: argparse.Namespace) -> int:
    from construct.model.assemble import compile_program
    from construct.model.checkpoint import load_checkpoint
    from construct.model.export_gpt2 import gpt2_files, gpt2_refusal
    from construct.model.export_stock import refusal_reason, to_stock, write_directory
    from construct.model.export_tl import tl_files

    if args.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {args.trials}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    checkpoint = load_checkpoint(args.checkpoint)
    reason = (gpt2_refusal if args.to == "hf-gpt2" else refusal_reason)(checkpoint.shape)
    if reason is not None:
        raise ValueError(f"{args.checkpoint}: no {args.to} form: {reason}")
    if "rawc.program" not in checkpoint.metadata:
        raise ValueError(f"{args.checkpoint}: no program recorded (trained weights?): the pad "
                         "size rests on the compiled program's bounds")
    from verify.check.integrity import compare_compiled

    compiled = compile_program(checkpoint.program(), checkpoint.config())
    integrity = compare_compiled(compiled, checkpoint)
    if integrity.failed:
        raise ValueError(f"{args.checkpoint}: its weights differ from a fresh compile of its "
                         f"program and constants ({integrity.detail}); the export's constants "
                         "rest on that compile's bounds")
    dtype = args.dtype or checkpoint.config().dtype
    stock = to_stock(checkpoint.shape, checkpoint.weights,
                     largest_residual(checkpoint, compiled), dtype)
    files = write_directory(gpt2_files(stock, dtype) if args.to == "hf-gpt2" else
                            tl_files(stock), args.directory, dtype)
    kind = "GPT-2" if args.to == "hf-gpt2" else "TransformerLens native"
    print(f"exported {args.checkpoint} to {args.directory} ({', '.join(files)}): {kind} with "
          f"d_model = {stock.width}, {stock.n_layers} layers, {stock.n_heads} heads of "
          f"{stock.head_dim}, {dtype}; LayerNorms neutralised by "
          + ("epsilon 2^100" if stock.pad is None else f"pads +-{stock.pad:.0e}"))
    if not args.check:
        return 0
    from verify.check.verdict import Verdict
    from verify.export.gpt2_check import check_gpt2

    try:
        result = check_gpt2(args.directory, checkpoint, dtype, args.trials, args.seed,
                            LOADERS[args.to])
    except ImportError as missing:  # the export is written; the check needs the library
        raise ValueError(f"--check needs {LOADERS[args.to]} ({missing}); install it with "
                         "pip install -e '.[export]' (the export itself is written)") from None
    for line in result.lines():
        print(line)
    bound = checkpoint.predicted_bound(dtype)
    verdict = result.verdict(bound)
    print({Verdict.PASS: "PASS: the export agrees with rawc",
           Verdict.FAIL: "FAIL: the export disagrees with rawc",
           Verdict.NO_GUARANTEE: f"NO GUARANTEE: within rawc's {dtype} bound "
                                 f"({bound if bound is not None else 'none'}), which says "
                                 "nothing at this output scale"}[verdict])
    return verdict.exit_code

"""``rawc explain NAME|PATH [--out DIR]``: resolve what the page describes, render, write.

``construct.teach.explain`` builds a page from a compiled model; this module turns the command line
into that model (a named algorithm compiled at the given parameters, or a checkpoint, which must
match a fresh compile of its own program so the page fits its weights), adds the sections that
need more than the model (the proof of a named algorithm; the pictures when ``--out`` is given
and matplotlib is installed) and writes the files.
"""
from __future__ import annotations

import argparse
import importlib.util
import dataclasses
import os
import pathlib
import sys

from construct.algorithms.family import Family
from construct.algorithms.registry import (ProgramAlgorithm, algorithm_params, get_algorithm,
                                           get_program_algorithm)
from construct.model.assemble import CompiledModel, compile_program
from construct.cli.compile_options import refuse_shared_without_loop
from construct.compiler.config import CompileConfig
from construct.teach.stages import stage_section
from construct.teach.explain import SWEEP_DS, SweepRow, explain_markdown, sweep_rows
from verify.check.integrity import compare_compiled


def _parameter_flags() -> list[tuple[str, str]]:
    """``(flag without --, args attribute)`` of every algorithm parameter but ``d``."""
    from construct.algorithms.registry import parameter_options

    return [(option[2:], spec["dest"]) for option, spec in parameter_options().items()
            if option != "--d"]


def command_line(args: argparse.Namespace) -> str:
    """The command that regenerates the page for ``args`` (stated at the top of the page)."""
    words = [".venv/bin/python -m construct.cli explain", args.target]
    words += [] if os.path.isfile(args.target) else [f"--d {args.d}"]
    words += [f"--{spec_option} {getattr(args, name)}"
              for spec_option, name in _parameter_flags() if getattr(args, name, None) is not None]
    words += [f"--form {args.form}"] if getattr(args, "form", None) else []
    words += [f"--dtype {args.dtype}"] if getattr(args, "dtype", "float64") != "float64" else []
    return " ".join(words + ([f"--out {args.out}"] if getattr(args, "out", None) else []))


@dataclasses.dataclass(frozen=True)
class Target:
    """What a page describes: a named algorithm at given parameters, or a checkpoint."""

    name: str
    title: str
    compiled: CompiledModel
    params: dict[str, object]
    algorithm: ProgramAlgorithm | None


def resolve_target(args: argparse.Namespace) -> Target:
    form = getattr(args, "form", None)
    if os.path.isfile(args.target):
        from construct.model.checkpoint import load_checkpoint

        if form is not None:
            raise ValueError(f"--form {form} does not apply to a checkpoint ({args.target}): "
                             "its config fixes the form it was compiled in")
        checkpoint = load_checkpoint(args.target)
        compiled = compile_program(checkpoint.program(), checkpoint.config())
        integrity = compare_compiled(compiled, checkpoint)
        if integrity.failed:
            raise ValueError(f"{args.target}: its weights differ from a fresh compile of its "
                             "program and constants, so a page made from them would not fit "
                             f"({integrity.detail})")
        name = os.path.splitext(os.path.basename(args.target))[0]
        title = f"`{name}` ({checkpoint.algorithm.get('name') or compiled.program.name})"
        return Target(name, title, compiled, dict(checkpoint.algorithm.get("params") or {}), None)
    algorithm = get_program_algorithm(args.target)
    params = algorithm.resolve(**algorithm_params(args))
    config = CompileConfig.for_dtype(getattr(args, "dtype", "float64"))
    program = algorithm.program(params, config.input_bound)
    refuse_shared_without_loop(args, algorithm.name, program)
    config = dataclasses.replace(config, form=form or config.form)
    compiled = compile_program(program, config)
    name = page_name(algorithm, params, config.form)
    method = "".join(f" (--{flag} {value})" for flag, value in
                     (("method", params.get("method")), ("form", form))
                     if value is not None and f"-{value}" in name)
    return Target(name, f"`{algorithm.name}`{method}: {algorithm.summary}", compiled, params,
                  algorithm)


def render(args: argparse.Namespace, target: Target | None = None) -> tuple[str, str]:
    """``(page name, markdown)`` for the command line's arguments (``target``: already
    resolved from them, so a caller that also draws the pictures compiles once)."""
    from construct.teach import course

    target = target or resolve_target(args)
    extra = [stage_section(target.compiled)]
    if getattr(args, "out", None) and pictures_available():
        extra.append(course.pictures_section(target.name, target.compiled))
    sweep: list[SweepRow] = []
    if target.algorithm is not None:
        extra.append(course.proof_section(target.algorithm.name, target.params))
        sweep = sweep_rows(target.algorithm, target.params,
                           sorted({*SWEEP_DS, int(target.params["d"])}),
                           target.compiled.config.form)
    return target.name, explain_markdown(target.compiled, target.title, target.params,
                                         command=command_line(args), extra=extra, sweep=sweep)


def page_args(name: str, d: int, out: str | None = None, method: str | None = None,
              form: str | None = None) -> argparse.Namespace:
    """The arguments of ``rawc explain name --d d [--method m] [--form f] [--out out]`` at
    default parameters."""
    return argparse.Namespace(target=name, d=d, alpha=None, lam=None, w0=None, method=method,
                              form=form, dtype="float64", out=out)


def page_name(algorithm: ProgramAlgorithm, params: dict[str, object],
              form: str = "stacked") -> str:
    """The page's file stem: the algorithm's name, its method where that is not the default
    one (``ridge-newton``) and ``-shared`` for the weight-shared form (``sgd-shared``), so that
    the pages of one algorithm do not overwrite each other."""
    method = params.get("method")
    default = algorithm.resolve(d=int(params["d"])).get("method")
    name = algorithm.name if method is None or str(method) == str(default) else \
        f"{algorithm.name}-{method}"
    return name if form == "stacked" else f"{name}-{form}"


def pictures_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def write_page_pictures(target: Target, out: str | os.PathLike) -> list[str]:
    """The pictures of ``target``'s page, written to ``out/pictures``."""
    from construct.teach.pictures import write_pictures

    paths = write_pictures(target.compiled, pathlib.Path(out) / "pictures", target.name,
                           n_examples=int(target.params.get("n", 1)))
    return [str(p) for p in paths]


def family_of(target: str) -> Family:
    """What kind of model ``target`` (a checkpoint path or an algorithm name) is."""
    if os.path.isfile(target):
        from construct.model.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(target)
        if checkpoint.trained and not checkpoint.claim:
            raise ValueError(f"{target} holds trained weights "
                             f"({checkpoint.algorithm.get('name')}) that claim no "
                             "construction, so there is no program to explain; read them "
                             f"with rawc compare {target} and rawc probe {target}")
        linear = checkpoint.shape.attn_kind.is_linear
        return Family.LINEAR_ATTENTION if linear else Family.PROGRAM
    return get_algorithm(target).family


def main(args: argparse.Namespace) -> int:
    """Print the page, or write ``<out>/<name>.md`` and its pictures when ``args.out`` is given."""
    if family_of(args.target) is Family.LINEAR_ATTENTION:
        from construct.teach.linear_attention import main as linear_main

        return linear_main(args)
    target = resolve_target(args)
    name, text = render(args, target)
    out = getattr(args, "out", None)
    if not out:
        print(text, end="")
        return 0
    os.makedirs(out, exist_ok=True)
    if pictures_available():
        for path in write_page_pictures(target, out):
            print(f"wrote {path}")
    else:
        print("rawc explain: matplotlib is not installed, so no pictures were written "
              "(pip install 'rawc[pictures]')", file=sys.stderr)
    path = os.path.join(out, f"{name}.md")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    print(f"wrote {path}")
    return 0

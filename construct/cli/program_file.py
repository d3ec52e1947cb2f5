"""``rawc compile PROGRAM_FILE``: compile the user's own program text to a checkpoint.

The argument of ``rawc compile`` names a registered algorithm or a file: ``looks_like_file``
decides which (a known algorithm name wins over a file of the same name; write ``./NAME`` for
the file). A program file is parsed with ``parse_program`` (native or paper notation; errors
keep their line and column), compiled with the options that apply to any program (``--dtype``,
``--bound``, ``--n-ctx``, ``--schedule``, ``--form``) and written atomically. The program
fixes ``d`` and every coefficient, so the algorithms' parameter flags are refused, except
``--n``: how many exemplars the verification tasks carry (``[prior] x1 y1 ... xn yn x_q``;
default the program's ``repeat N``, one stage per exemplar as in ``sgd`` and ``ridge``, else 1).

The checkpoint's ``rawc.algorithm`` says the program is not a named algorithm, so that
``rawc verify`` knows there is no closed form (the program text is in ``rawc.program``)::

    {"name": <the program's own name from its `program NAME` line>, "params": {"d": ...,
     "n": ...}, "source": "program-file", "file": <the file's base name>, ...}

plus whatever ``build_metadata`` records for every compiled program (the compile choices); the
constants are in ``rawc.bounds`` as for any checkpoint.
"""
from __future__ import annotations

import argparse
import os


from construct.compiler.config import CompileConfig
from construct.language.parser import ParseError, parse_program
from construct.language.program import Program, ProgramError
from construct.model.assemble import CompiledModel, compile_program
from construct.model.checkpoint_format import PROGRAM_FILE_SOURCE

def looks_like_file(argument: str) -> bool:
    """Whether ``argument`` names a program file rather than an algorithm: an existing path, a
    path with a directory part, or a name with a suffix (``prog.raw``)."""
    return (os.path.exists(argument) or os.sep in argument
            or (os.altsep is not None and os.altsep in argument)
            or os.path.splitext(argument)[1] != "")


def read_program(path: str) -> Program:
    """The program in ``path``; a ``ProgramError`` (one line, located) names any problem."""
    if not os.path.exists(path):
        raise ProgramError(f"program file {path} does not exist")
    if not os.path.isfile(path):
        raise ProgramError(f"program file {path} is not a file")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError as exc:
        raise ProgramError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return parse_program(text)
    except ParseError as exc:
        raise ProgramError(f"{path}: {_one_line(str(exc))}") from None
    except ProgramError as exc:  # the parser locates its errors; this is a safety net
        raise ProgramError(f"{path}: {_one_line(str(exc))}") from None


def refuse_algorithm_flags(path: str, given: dict[str, object]) -> None:
    """A program file fixes ``d`` and its coefficients: every parameter flag but ``--n`` is an
    error (``given``: the flags on the command line, ``--listing`` included)."""
    refused = sorted(name for name, value in given.items()
                     if name != "n" and value not in (None, False))
    if refused:
        flags = ", ".join("--" + name.replace("_", "-") for name in refused)
        raise ProgramError(f"{flags} cannot be used with a program file: {path} fixes d and "
                           "every coefficient (edit its `d` and `param` lines); only --n (the "
                           "exemplars per verification task) and the compile options apply")


def exemplars(program: Program, n: int | None, n_ctx: int) -> int:
    """The exemplars per verification task: ``n``, else the program's repeat count, else 1;
    checked to fit ``n_ctx`` positions (``[prior] x1 y1 ... xn yn x_q``)."""
    if n is None:
        n = program.loop.times if program.loop is not None else 1
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ProgramError(f"--n (the number of exemplars) must be an integer >= 1, got {n!r}")
    tokens = program.first_x_column + 2 * n + 1
    if tokens > n_ctx:
        raise ProgramError(f"--n {n} needs {tokens} positions "
                           f"({'prior, ' if program.prior_column else ''}{n} exemplars and the "
                           f"query) but --n-ctx is {n_ctx}; raise --n-ctx or lower --n")
    return n


def compile_file(path: str, args: argparse.Namespace,
                 given: dict[str, object]) -> tuple[Program, CompiledModel, dict[str, object]]:
    """Parse and compile the program in ``path`` with the options in ``args``; returns the
    program, the compiled model and the ``rawc.algorithm`` record."""
    refuse_algorithm_flags(path, given)
    program = read_program(path)
    from construct.algorithms.family import Family
    from construct.cli.compile_options import lowering_choices, refuse_shared_without_loop

    config = CompileConfig.for_dtype(args.dtype, input_bound=args.bound, n_ctx=args.n_ctx,
                                     **lowering_choices(args, path, Family.PROGRAM))
    refuse_shared_without_loop(args, path, program)
    n = exemplars(program, given.get("n"), config.n_ctx)
    compiled = compile_program(program, config)
    record = {"name": program.name, "params": {"d": program.d, "n": n},
              "source": PROGRAM_FILE_SOURCE,
              "file": os.path.basename(path)}
    return program, compiled, record


def _one_line(text: str) -> str:
    return " ".join(text.split())

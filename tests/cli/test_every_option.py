"""Every numeric option of every subcommand, given a negative value, is refused: exit 2, one
line naming the option, no traceback, nothing written (issue 20's sweep, kept)."""
from __future__ import annotations

import argparse

import pytest

from construct.cli.main import build_parser, main

# Options where a negative number is meaningful would be listed here; there are none.
POSITIONAL = {"compile": ["gd"], "explain": ["gd"], "prove": ["gd"], "bench": ["ops"]}
NEEDS_CHECKPOINT = ("verify", "export", "compare", "probe")
NEEDS_OUTPUT = ("compile", "train")


def numeric_options() -> list[tuple[str, str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(name, action.option_strings[-1]) for name, p in sub.choices.items()
            for action in p._actions
            if action.option_strings and action.type in (int, float)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("ck") / "gd.safetensors")
    assert main(["compile", "gd", "--d", "2", "-o", path]) == 0
    return path


def _run(command: str, option: str, value: str, checkpoint: str, tmp_path, capsys
         ) -> tuple[list[str], int, str]:
    """``rawc COMMAND [its positionals] OPTION=VALUE [-o ...]``: the argv, exit code, stderr."""
    argv = [command, *POSITIONAL.get(command, [])]
    if command in NEEDS_CHECKPOINT:
        argv.append(checkpoint)
    if command == "export":
        argv += ["--to", "hf-gpt2", str(tmp_path / "out")]
    argv.append(f"{option}={value}")
    if command in NEEDS_OUTPUT:
        argv += ["-o", str(tmp_path / "out.safetensors")]
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    return argv, code, capsys.readouterr().err


@pytest.mark.parametrize("command, option", numeric_options(), ids=lambda v: str(v))
def test_a_negative_value_is_refused(command, option, checkpoint, tmp_path, capsys,
                                    monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default output folder (phases, transience) lands here
    argv, code, err = _run(command, option, "-7", checkpoint, tmp_path, capsys)
    assert code == 2, (argv, err)
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert option.lstrip("-").split("-")[0] in last or "must be" in last, last
    assert not list(tmp_path.iterdir())


# Options whose value is a path the user names (any text is a valid name); --out of explain
# and docs is a directory, refused below when it cannot be one.
PATHS = {("compile", "--output"), ("fuzz", "--out"), ("train-lsa", "--output"),
         ("train", "--output"), ("compare", "--plot"), ("probe", "--plot"), ("phases", "--out"),
         ("transience", "--out")}


def value_options() -> list[tuple[str, str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(name, action.option_strings[-1]) for name, p in sub.choices.items()
            for action in p._actions
            if action.option_strings and action.nargs != 0
            and (name, action.option_strings[-1]) not in PATHS]


@pytest.mark.parametrize("command, option", value_options(), ids=lambda v: str(v))
def test_a_garbage_value_is_refused(command, option, checkpoint, tmp_path, capsys,
                                    monkeypatch):
    """Every option that takes a value, given text no option accepts (a file of that name is
    in the way of a directory), exits 2 with one error line (argparse's own refusals print
    the usage above it) naming the option or the value, and no traceback."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bogus@value").write_text("in the way")
    argv, code, err = _run(command, option, "bogus@value", checkpoint, tmp_path, capsys)
    assert code == 2, (argv, err)
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert option.lstrip("-") in last or "bogus@value" in last, last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bogus@value"]

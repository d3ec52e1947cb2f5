"""``rawc compile PROGRAM_FILE``: the user's own program text, native or paper notation, to a
checkpoint; parse errors, refused flags and unknown names exit 2 with one line and write nothing."""
from __future__ import annotations

import pathlib

import pytest

from construct.algorithms.registry import get_algorithm
from construct.cli.main import main
from construct.cli.program_file import looks_like_file
from construct.model.checkpoint_format import PROGRAM_FILE_SOURCE
from construct.language.parser import parse_program
from construct.model.checkpoint import load_checkpoint
from verify.check.integrity import Integrity, check_integrity

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "one_gd_step.raw"

# The paper's Appendix A listing (one GD step; reference section 3.2, step 6 corrected to
# W2 = +λ), with its notation (λ, α, −) and the params it reads.
PAPER = """\
program appendix-a
d 2
param alpha = 1/10
param lam = 1/100
param w = [1, -1/2]
output (3+3d, 4+3d)          # w'^T x_2
1. mov(; 1, 0, (1,1+d), (1,1+d))
2. aff(; (1,1+d), (), (1+d,2+d), W1 = w)
3. aff(; (1+d,2+d), (0,1), (2+d,3+d), W1 = I, W2 = −I)
4. mul(; d, 1, 1, (1,1+d), (2+d,3+d), (3+d,3+2d))
5. aff(; (), (), (3+2d,3+3d), b = w)
6. aff(; (3+d,3+2d), (3+2d,3+3d), (3+3d,3+4d), W1 = I, W2 = +λ)
7. aff(; (3+2d,3+3d), (3+3d,3+4d), (3+2d,3+3d), W1 = I, W2 = −2α)
8. mov(; 2, 1, (3+2d,3+3d), (3+2d,3+3d))
9. mul(; 1, d, 1, (3+2d,3+3d), (1,1+d), (3+3d,4+3d))
"""


def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rawc compile: error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def _nothing_written(directory: pathlib.Path, *keep: str) -> None:
    assert sorted(p.name for p in directory.iterdir()) == sorted(keep)


def test_example_compiles_and_records_its_program(tmp_path, capsys):
    out = tmp_path / "prog.safetensors"
    assert main(["compile", str(EXAMPLE), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"compiled one-gd-step (program file {EXAMPLE}) with d=2, n=1\n")
    assert "width d_model = " in printed and "predicted end-to-end error bound (float64" in printed
    assert printed.rstrip().endswith(f"wrote {out}")
    checkpoint = load_checkpoint(out)
    assert checkpoint.program() == parse_program(EXAMPLE.read_text(encoding="utf-8"))
    record = checkpoint.algorithm
    assert (record["name"], record["source"], record["file"]) == (
        "one-gd-step", PROGRAM_FILE_SOURCE, "one_gd_step.raw")
    assert record["params"] == {"d": 2, "n": 1}
    assert check_integrity(checkpoint).status is Integrity.MATCH


def test_example_is_the_gd_builder_program():
    gd = get_algorithm("gd")
    program = parse_program(EXAMPLE.read_text(encoding="utf-8"))
    assert program.text().split("\n", 1)[1] == gd.program(gd.resolve(d=2)).text().split("\n", 1)[1]


def test_paper_notation_file_compiles_with_compile_options(tmp_path, capsys):
    source, out = tmp_path / "appendix_a.txt", tmp_path / "a.safetensors"
    source.write_text(PAPER, encoding="utf-8")
    argv = ["compile", str(source), "-o", str(out), "--dtype", "float32", "--bound", "2",
            "--n-ctx", "16", "--schedule", "sequential"]
    assert main(argv) == 0
    assert "compiled appendix-a (program file" in capsys.readouterr().out
    checkpoint = load_checkpoint(out)
    assert checkpoint.program() == parse_program(PAPER)
    assert checkpoint.algorithm["params"] == {"d": 2, "n": 1}
    config = checkpoint.config()
    assert (config.dtype, config.input_bound, config.n_ctx, config.schedule) == (
        "float32", 2.0, 16, "sequential")


def test_parse_error_exits_2_with_its_line_and_writes_nothing(tmp_path, capsys):
    text = EXAMPLE.read_text(encoding="utf-8").replace("grad = mul x err 2x1x1",
                                                       "grad = mul x err 2x2x1")
    lines = text.splitlines()
    line = next(i for i, s in enumerate(lines, start=1) if s.startswith("grad = mul"))
    source = tmp_path / "bad.raw"
    source.write_text(text, encoding="utf-8")
    assert main(["compile", str(source), "-o", str(tmp_path / "bad.safetensors")]) == 2
    message = _error_line(capsys)
    assert f"bad.raw: line {line}, column " in message and "shape mismatch" in message
    _nothing_written(tmp_path, "bad.raw")


@pytest.mark.parametrize("flags,named", [
    (["--alpha", "1/5"], "--alpha"),
    (["--d", "3"], "--d"),
    (["--lam", "1", "--w0", "1,2"], "--lam, --w0"),
    (["--listing"], "--listing"),
])
def test_algorithm_flags_are_refused(tmp_path, capsys, flags, named):
    out = tmp_path / "x.safetensors"
    assert main(["compile", str(EXAMPLE), "-o", str(out), *flags]) == 2
    message = _error_line(capsys)
    assert f"error: {named} cannot be used with a program file" in message and "--n" in message
    _nothing_written(tmp_path)


def test_n_defaults_to_the_repeat_count_and_must_fit_n_ctx(tmp_path, capsys):
    sgd = get_algorithm("sgd")
    source = tmp_path / "sgd3.raw"
    source.write_text(sgd.program(sgd.resolve(d=2, n=3)).text(), encoding="utf-8")
    assert main(["compile", str(source), "-o", str(tmp_path / "a.safetensors")]) == 0
    assert "with d=2, n=3\n" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "a.safetensors").algorithm["params"]["n"] == 3
    assert main(["compile", str(source), "--n", "5", "-o", str(tmp_path / "b.safetensors")]) == 0
    assert load_checkpoint(tmp_path / "b.safetensors").algorithm["params"]["n"] == 5
    # prior column + 2 * 4 exemplars + the query = 10 positions > 9
    assert main(["compile", str(source), "--n", "4", "--n-ctx", "9",
                 "-o", str(tmp_path / "c.safetensors")]) == 2
    assert "--n 4 needs 10 positions" in _error_line(capsys)
    assert main(["compile", str(source), "--n", "0", "-o", str(tmp_path / "c.safetensors")]) == 2
    assert ">= 1" in _error_line(capsys)
    _nothing_written(tmp_path, "sgd3.raw", "a.safetensors", "b.safetensors")


def test_unknown_name_exits_2_naming_both_possibilities(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["compile", "gradient-descent", "-o", "x.safetensors"]) == 2
    message = _error_line(capsys)
    assert "unknown algorithm 'gradient-descent' (known: gd, " in message
    assert "and no program file of that name" in message
    assert main(["compile", "missing.raw", "-o", "x.safetensors"]) == 2
    assert "program file missing.raw does not exist" in _error_line(capsys)
    _nothing_written(tmp_path)


def test_file_or_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "myprog").write_text("program p\n", encoding="utf-8")
    assert looks_like_file("myprog") and looks_like_file("prog.raw")
    assert looks_like_file("dir/prog") and not looks_like_file("gd")

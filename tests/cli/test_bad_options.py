"""Bad options exit 2 with one line naming the problem, and write nothing."""
from __future__ import annotations

import pytest

from construct.cli.main import main


@pytest.mark.parametrize("argv, problem", [
    (["compile", "gd", "--bound", "inf"], "input bound must be a finite number"),
    (["compile", "gd", "--bound", "nan"], "input bound must be a finite number"),
    (["compile", "gd", "--n-ctx", "2"], "needs 3 positions"),
    (["compile", "ridge", "--n", "4", "--n-ctx", "8"], "needs 10 positions"),
    (["train-lsa", "--n", "0"], "--n must be >= 1"),
    (["train-lsa", "--lr", "0"], "--lr must be > 0"),
    (["compile", "gd", "--form", "shared"], "--form shared does not apply to gd"),
    (["compile", "lsa-gd", "--target", "gated"], "--target does not apply to lsa-gd"),
    (["compile", "lsa-gd", "--schedule", "sequential"], "--schedule does not apply to lsa-gd"),
    (["compile", "gd", "--target", "gated", "--gelu-product", "lemma4"],
     "does not apply to --target gated"),
    (["compile", "gd", "--lam=-1/2"], "--lam must be >= 0 for gd"),
    (["bench", "bounds", "--seed=-1"], "--seed must be >= 0"),
    (["bench", "ops", "--target", "gated"], "--target does not apply to `rawc bench ops`"),
])
def test_bad_options_exit_2_with_one_line(argv, problem, tmp_path, capsys):
    out = tmp_path / "x.safetensors"
    extra = ["-o", str(out)] if argv[0] == "compile" else []
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert problem in err and len(err.splitlines()) == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def _list_raising(monkeypatch, error: BaseException):
    """The CLI module, its ``rawc list`` made to raise ``error``."""
    from construct.cli import main as cli

    def run(args):
        raise error

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["list"].set_defaults(run=run)
    return cli


def test_ctrl_c_exits_130_without_a_traceback(monkeypatch, capsys):
    cli = _list_raising(monkeypatch, KeyboardInterrupt())
    assert cli.main(["list"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


def test_an_internal_error_is_one_line_and_debug_shows_it(monkeypatch, capsys):
    cli = _list_raising(monkeypatch, RuntimeError("boom"))
    assert cli.main(["list"]) == 70
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: boom" in err and "Traceback" not in err
    monkeypatch.setenv("RAWC_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(["list"])
    monkeypatch.delenv("RAWC_DEBUG")
    with pytest.raises(RuntimeError):
        cli.main(["--debug", "list"])


@pytest.mark.parametrize("option, value, problem", [
    ("--seed", "-1", "--seed must be >= 0"),
    ("--noise", "-0.5", "--noise (a standard deviation) must be"),
    ("--noise", "inf", "--noise (a standard deviation) must be"),
    ("--scale", "0", "--scale must be a finite number > 0"),
    ("--scale", "-2", "--scale must be a finite number > 0"),
])
def test_verify_refuses_bad_task_options(option, value, problem, tmp_path, capsys):
    path = str(tmp_path / "gd.safetensors")
    assert main(["compile", "gd", "--d", "2", "-o", path]) == 0
    capsys.readouterr()
    assert main(["verify", path, f"{option}={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert problem in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_compile_too_large_for_memory_is_refused_before_it_starts(tmp_path, capsys,
                                                                   monkeypatch):
    """Was: `compile gd --d 10000` ran 278 s, then died of a MemoryError. Pilot compiles now
    estimate the size first (gd at d = 2000: 3e8 parameters and 36 s estimated, 3.3e8 and 43 s
    measured); what cannot fit in the memory available is refused, naming the size."""
    from construct.cli import size_estimate

    monkeypatch.setattr(size_estimate, "available_bytes", lambda: 2.0 ** 30)
    out = tmp_path / "gd.safetensors"
    assert main(["compile", "gd", "--d", "3000", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "estimate: about" in err and "dense parameters" in err
    assert "gd at d = 3000 would hold about" in err and "more than the 1.0 GB" in err
    assert "Traceback" not in err and not out.exists()


def test_the_estimate_grows_as_the_construction_does():
    """gd's parameters grow as d^2 (width 2d + const, dense d_model^2 blocks): the estimate
    from pilots at d <= 256 lands within 20 % of the compiled count at d = 512. Where a slow
    machine stops the pilots at d = 64, the last local exponent is 1.81 (24 % short with the
    polarized product's wider MLP, found by CI); it is rising, so the estimate takes 2."""
    from construct.algorithms.registry import get_algorithm
    from construct.cli import size_estimate
    from construct.compiler.config import CompileConfig

    algorithm, config = get_algorithm("gd"), CompileConfig()

    def build(params):
        return algorithm.construct(algorithm.resolve(d=params["d"]), config).n_params

    estimate = size_estimate.estimate(build, {"d": 512})
    actual = build({"d": 512})
    assert 0.8 * actual <= estimate.parameters <= 1.2 * actual, (estimate, actual)
    assert size_estimate.estimate(build, {"d": 8}) is None  # small: no pilots


def test_pilots_stopped_early_still_estimate_within_a_fifth(monkeypatch):
    """The pilot sweep stops on time, so a slower machine extrapolates from smaller pilots:
    with a clock that stops it after d = 64 (as on a CI run), gd's local exponent there is
    1.81 and rising; taken as is, the d = 512 estimate fell 24 % short."""
    import types

    from construct.algorithms.registry import get_algorithm
    from construct.cli import size_estimate
    from construct.compiler.config import CompileConfig

    algorithm, config, clock = get_algorithm("gd"), CompileConfig(), [0.0]
    monkeypatch.setattr(size_estimate, "time", types.SimpleNamespace(
        perf_counter=lambda: clock[0]))

    def build(params):
        clock[0] += size_estimate.PILOT_SECONDS * params["d"] / 64  # d = 64 is the last
        return algorithm.construct(algorithm.resolve(d=params["d"]), config).n_params

    estimate = size_estimate.estimate(build, {"d": 512})
    assert max(p["d"] for p in estimate.pilots) == 64
    actual = algorithm.construct(algorithm.resolve(d=512), config).n_params
    assert 0.8 * actual <= estimate.parameters <= 1.2 * actual, (estimate, actual)


@pytest.mark.parametrize("value", ["abc", None, True])
def test_a_checkpoint_constant_that_is_not_a_number_is_named(value, tmp_path, capsys):
    """Found by the issue's bad-input sweep: a string constant reached a comparison and left
    as an internal error (exit 70)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    good, bad = str(tmp_path / "gd.safetensors"), str(tmp_path / "bad.safetensors")
    assert main(["compile", "gd", "-o", good]) == 0
    with safe_open(good, "pt") as handle:
        metadata = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    bounds = json.loads(metadata["rawc.bounds"])
    bounds["constants"]["ln_pad"] = value
    save_file(tensors, bad, metadata={**metadata, "rawc.bounds": json.dumps(bounds)})
    capsys.readouterr()
    assert main(["verify", bad]) == 2
    assert f"ln_pad must be a number, got {value!r}" in capsys.readouterr().err

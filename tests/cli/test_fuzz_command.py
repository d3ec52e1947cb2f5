"""``rawc fuzz``: its report, its exit codes, its refusals of bad options."""
from __future__ import annotations

import json

import pytest

from construct.cli.main import main


def test_fuzz_reports_and_writes_json(tmp_path, capsys):
    out = tmp_path / "fuzz.json"
    assert main(["fuzz", "--programs", "6", "--seed", "3", "--quiet", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "rawc fuzz: 6 programs (seed 3, 1 job)" in text and "no disagreement" in text
    report = json.loads(out.read_text())
    assert report["programs"] == 6 and report["ok"] is True and report["findings"] == []
    assert sum(report["trials"].values()) >= 6
    assert not list(tmp_path.glob(".rawc-*"))


def test_fuzz_in_ray_workers_matches_one_process(tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    assert main(["fuzz", "--programs", "4", "--seed", "9", "--quiet", "--out", str(one)]) == 0
    assert main(["fuzz", "--programs", "4", "--seed", "9", "--quiet", "--jobs", "2", "--out",
                 str(two)]) == 0
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert a["trials"] == b["trials"] and a["refusals"] == b["refusals"]


def test_fuzz_exits_1_on_a_failure(monkeypatch, capsys):
    import verify.fuzz.campaign as campaign
    from verify.fuzz.oracle import FRONT_END, Outcome, Trial

    monkeypatch.setattr(campaign, "check_program", lambda program, tasks=8, seed=0: (
        Trial(FRONT_END, Outcome.CRASHED, "planted", kind="planted"),))
    assert main(["fuzz", "--programs", "3", "--quiet", "--max-findings", "1"]) == 1
    out = capsys.readouterr().out
    assert "CRASHED front-end" in out and "program fuzz" in out


@pytest.mark.parametrize("argv, problem", [
    (["--programs", "0"], "--programs must be >= 1"),
    (["--jobs", "0"], "--jobs must be >= 1"),
    (["--tasks", "-1"], "--tasks must be >= 1"),
    (["--max-findings", "-1"], "--max-findings must be >= 0"),
    (["--out", "/no/such/dir/f.json"], "does not exist"),
])
def test_bad_options_exit_2_with_one_line(argv, problem, capsys):
    assert main(["fuzz", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert problem in err and len(err.splitlines()) == 1

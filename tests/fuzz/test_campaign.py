"""Campaigns: the suite's profile of programs passes; failures shrink to minimal programs; the
chunks are the same whatever the number of jobs."""
from __future__ import annotations

import pytest
from hypothesis import settings

import verify.fuzz.campaign as campaign_module
from construct.language.parser import parse_program
from construct.language.program import Mul
from verify.fuzz.campaign import Campaign, run_campaign, run_chunk
from verify.fuzz.oracle import FRONT_END, Outcome, Trial, check_program

# The CI profile (Hypothesis max_examples 100) runs 300 programs, `thorough` (500) 1500, the
# developers' default 60.
PROFILE_PROGRAMS = 3 * settings().max_examples


def test_the_profiles_programs_compile_without_disagreement_or_crash():
    tally, _ = run_campaign(Campaign(PROFILE_PROGRAMS, seed=20261130), progress=False)
    assert tally.programs == PROFILE_PROGRAMS
    assert tally.failures == 0, [(f.target, f.reason, f.program) for f in tally.findings]
    assert tally.outcomes[Outcome.AGREE.name] > tally.programs  # most trials compile and agree
    tightness = tally.tightness()
    assert tightness["max"] <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_ten_thousand_programs(seed):
    tally, _ = run_campaign(Campaign(10_000, seed=seed, jobs=2), progress=False)
    assert tally.programs == 10_000
    assert tally.failures == 0, [(f.target, f.reason, f.program) for f in tally.findings]


def test_a_failure_shrinks_to_a_minimal_program(monkeypatch):
    """A planted bug (every program with a mul 'disagrees') comes back as a tiny program with
    a mul: no prior, no loop, no groups, at most one other op."""
    def planted(program, tasks=8, seed=0):
        if any(isinstance(op, Mul) for op in program.ops):
            return (Trial(FRONT_END, Outcome.DISAGREE, "planted", kind="planted"),)
        return (Trial(FRONT_END, Outcome.AGREE),)

    monkeypatch.setattr(campaign_module, "check_program", planted)
    tally = run_chunk(40, chunk_seed=3)
    assert tally.programs == 40 and tally.findings
    minimal = parse_program(tally.findings[0].program)
    assert len(minimal.ops) <= 2 and any(isinstance(op, Mul) for op in minimal.ops), \
        tally.findings[0].program
    assert minimal.prior == () and minimal.loop is None and minimal.groups is None
    assert tally.outcomes[Outcome.DISAGREE.name] >= 1


def test_chunks_do_not_depend_on_jobs():
    one, two = Campaign(120, seed=7, jobs=1), Campaign(120, seed=7, jobs=2)
    assert one.chunks() == two.chunks() and sum(n for n, _ in one.chunks()) == 120


def test_the_same_seed_draws_the_same_programs(monkeypatch):
    seen: list[list[str]] = [[], []]
    target = [0]

    def record(program, tasks=8, seed=0):
        seen[target[0]].append(program.text())
        return check_program.__wrapped__(program) if hasattr(check_program, "__wrapped__") \
            else (Trial(FRONT_END, Outcome.AGREE),)

    monkeypatch.setattr(campaign_module, "check_program", record)
    run_chunk(15, chunk_seed=11)
    target[0] = 1
    run_chunk(15, chunk_seed=11)
    assert seen[0] == seen[1] and len(set(seen[0])) > 5

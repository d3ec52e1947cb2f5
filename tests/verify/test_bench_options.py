"""verify.bench.options: each benchmark takes the options it reads, and no other."""
from __future__ import annotations

import argparse

import pytest

from verify.bench.options import DEFAULTS, USES, settle


def namespace(what: str, **given) -> argparse.Namespace:
    return argparse.Namespace(what=what, **{option: given.get(option) for option in DEFAULTS})


@pytest.mark.parametrize("what", sorted(USES))
def test_defaults_fill_what_is_not_given(what):
    args = settle(namespace(what))
    assert all(getattr(args, option) == value for option, value in DEFAULTS.items())


@pytest.mark.parametrize("what, option, value", [("ops", "target", "gated"),
                                                 ("ops", "trials", 5),
                                                 ("verify", "max_d", 3),
                                                 ("ridge", "gelu_product", "lemma4"),
                                                 ("sizes", "max_n", 8)])
def test_an_option_the_benchmark_does_not_read_is_refused(what, option, value):
    with pytest.raises(ValueError, match=f"--{option.replace('_', '-')} does not apply to "
                                         f"`rawc bench {what}`"):
        settle(namespace(what, **{option: value}))


@pytest.mark.parametrize("option, value, fragment", [
    ("target", "paper,bogus", "'bogus' is not one of paper, gated"),
    ("trials", 0, "--trials must be >= 1"), ("seed", -1, "--seed must be >= 0")])
def test_bad_values_are_named(option, value, fragment):
    with pytest.raises(ValueError, match=fragment):
        settle(namespace("targets", **{option: value}))

"""Shared test set-up: import guard, Hypothesis profiles, one torch thread."""
from __future__ import annotations

import os
import pathlib

import pytest
import torch
from hypothesis import HealthCheck, settings

REPO = pathlib.Path(__file__).resolve().parents[1]


def _guard_import(name: str) -> None:
    module = __import__(name)
    location = pathlib.Path(module.__file__).resolve()
    if not location.is_relative_to(REPO):
        pytest.exit(
            f"'{name}' resolves to {location}, outside this repository ({REPO}). An unrelated "
            f"PyPI distribution also installs a top-level '{name}' package; install rawc into a "
            "fresh virtual environment (see README) and run the tests from the repository root.",
            returncode=4)


_guard_import("construct")
_guard_import("verify")

torch.set_num_threads(1)

settings.register_profile("dev", max_examples=20, deadline=None)
settings.register_profile("ci", settings.get_profile("ci"), max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                      or ("ci" if os.environ.get("CI") else "dev"))

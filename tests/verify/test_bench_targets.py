"""verify.bench.targets: each row beside the program's own float32 error on the same tasks,
and the goals read off the rows."""
from __future__ import annotations

from construct.algorithms.registry import get_algorithm
from construct.compiler.config import GeluProduct, MlpTarget
from verify.bench import targets


def test_a_row_sets_the_model_beside_the_programs_own_float32_run():
    row = targets.measure("sherman-morrison", 4, None, MlpTarget.GATED, 16, 0)
    algorithm = get_algorithm("sherman-morrison")
    params = algorithm.resolve(d=4)
    own = targets.program_error(algorithm.program(params), "sherman-morrison", params,
                                "float32", 4.0, 16, 0)
    assert row["program_float32"] == own
    assert 0 < own < 1e-4  # float32 rounding of the program, not a wrong reference
    assert targets.program_error(algorithm.program(params), "sherman-morrison", params,
                                 "float64", 4.0, 16, 0) < 1e-12
    # the gated model computes the same ops: within a small factor of the program's own run
    assert row["error_float32"] < 10 * own


def test_the_float32_goal_names_the_programs_floor_where_it_is_missed():
    rows = [{"algorithm": "sherman-morrison", "d": 32, "n": None, "target": "gated",
             "product": "exact", "error_float64": 1e-14, "error_float32": 1.08e-5,
             "program_float32": 1.003e-5, "max_weight": 64.0, "max_mlp_weight": 2.0},
            {"algorithm": "sherman-morrison", "d": 32, "n": None, "target": "paper",
             "product": GeluProduct.POLARIZED.value, "error_float64": 2e-11,
             "error_float32": 2.6e-4, "program_float32": 1.003e-5, "max_weight": 1e9,
             "max_mlp_weight": 1e8}]
    lines = targets.goals(rows)
    assert ("gated float32 error <= 1e-05: no (worst 1.08e-05, sherman-morrison d=32; the "
            "program's own float32 run there: 1e-05)") in lines
    assert "paper (polarized) float32 sherman-morrison error <= 0.001: yes (worst 0.00026, d=32)" \
        in lines

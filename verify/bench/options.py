"""``rawc bench``'s options: which benchmark reads which, their defaults, their values.

One parser serves every benchmark, so an option one of them ignores would be taken silently
by another (``bench ops --target gated`` measured nothing of the kind). Each option is refused
where its benchmark does not read it, then given its default, then checked.
"""
from __future__ import annotations

import argparse

from construct.compiler.config import GeluProduct, MlpTarget, PositionCode

_SWEEP = frozenset({"json", "max_d", "max_n", "max_stack_layers", "seed", "target", "trials"})
USES: dict[str, frozenset[str]] = {
    "sizes": frozenset({"json", "max_d", "seed", "trials"}),
    "ops": frozenset({"json", "seed"}),
    "bounds": frozenset({"json", "max_d", "max_n", "seed", "target", "trials"}),
    "verify": frozenset({"json", "trials"}),
    "targets": frozenset({"gelu_product", "json", "max_d", "max_n", "seed", "target", "trials"}),
    "ridge": _SWEEP,
    "horizon": _SWEEP | {"position_code"},
}
DEFAULTS: dict[str, object] = {"target": "paper,gated", "gelu_product": "polarized,richardson,lemma4",
                               "seed": 0, "trials": 1000, "max_d": 64, "max_n": 4096,
                               "max_stack_layers": 800, "json": False,
                               "position_code": "quadratic,dyadic"}
POSITIVE = ("trials", "max_d", "max_n", "max_stack_layers")


def flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def settle(args: argparse.Namespace) -> argparse.Namespace:
    """Refuse an option the chosen benchmark does not read, fill in the defaults, check the
    values (``ValueError`` with one line naming the option, the value and what is allowed)."""
    uses = USES[args.what]
    for option, default in DEFAULTS.items():
        value = getattr(args, option)
        if value not in (None, False) and option not in uses:
            readers = [what for what, names in USES.items() if option in names]
            raise ValueError(f"{flag(option)} does not apply to `rawc bench {args.what}`; it is "
                             f"read by `bench {'`, `bench '.join(readers)}`")
        if value is None:
            setattr(args, option, default)
    for option in POSITIVE:
        if getattr(args, option) < 1:
            raise ValueError(f"{flag(option)} must be >= 1, got {getattr(args, option)}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    _check_names("target", args.target, MlpTarget)
    _check_names("gelu_product", args.gelu_product, GeluProduct)
    _check_names("position_code", args.position_code, PositionCode)
    return args


def listed(text: str, kind: type) -> list:
    """The members a comma-separated option names, in order (``settle`` has checked them)."""
    return [kind(name.strip()) for name in text.split(",")]


def _check_names(option: str, text: str, kind: type) -> None:
    allowed = [member.value for member in kind]
    for name in text.split(","):
        if name.strip() not in allowed:
            raise ValueError(f"{flag(option)} {text!r}: {name.strip()!r} is not one of "
                             f"{', '.join(allowed)} (give one or more, comma separated)")

"""``docs/`` as a short course, and the two sections ``rawc explain`` adds for it.

The course is ``docs/index.md`` (hand-written, the lecture order), ``docs/operations.md``
(hand-written prose about the four operations, with the lemma derivations of ``rawc prove
lemmas`` pasted in generated blocks) and one page per construction, which is the whole output of
``rawc explain NAME --d 2 --out docs``: statement, program, layout, layers, pictures, proof,
error budget. ``rawc docs`` regenerates all of it in one go; ``rawc docs --check`` (and
``tests/teach/test_course.py``) fails when a committed page differs from what the code makes today.

A generated block in a hand-written page is delimited by marker comments naming its command::

    <!-- rawc prove lemmas -->
    ```text
    ...output of the command, timings left out...
    ```
    <!-- end rawc -->
"""
from __future__ import annotations

import argparse
import pathlib
import re
import sys
from collections.abc import Sequence

from tqdm import tqdm

from construct.model.assemble import CompiledModel
from verify.proofs.prove import report

PAGES = {"gd": 2, "sherman-morrison": 2, "ridge": 2, "sgd": 2, "gd-batch": 2}  # -> d
METHOD_PAGES = {"ridge-newton": ("ridge", "newton"),  # -> (algorithm, method), at d = 2
                "ridge-sherman-morrison": ("ridge", "sherman-morrison")}
FORM_PAGES = {"sgd-shared": ("sgd", "shared")}  # -> (algorithm, form), at d = 2
LSA_PAGES = {"lsa-gd": [], "lsa-precond-gd": [], "lsa-gd-plus-plus": [],  # linear attention
             "lsa-gd-momentum": ["--momentum", "0.5"]}  # -> (page: extra flags), at d = 2
PROOF_MAX_D = 3  # symbolic proofs above this d take too long for a page
BLOCK = re.compile(r"(<!-- rawc (?P<command>[^>]*?) -->\n```text\n)(?P<body>.*?)(```\n"
                   r"<!-- end rawc -->)", re.S)


def picture_names(name: str, layers: Sequence[int]) -> list[str]:
    """The files ``construct.teach.pictures.write_pictures`` writes: the layout, one per
    stored block, named after the first executed layer that runs it (``layers``,
    ``drawn_layers``), the example."""
    return [f"{name}-layout.png", *(f"{name}-layer{l}.png" for l in layers),
            f"{name}-example.png"]


def pictures_section(name: str, compiled: CompiledModel, folder: str = "pictures") -> list[str]:
    """Links to the pictures of ``write_pictures``: the layout, one per stored block (a shared
    loop's blocks once, drawn at their first run), the example prompt."""
    from construct.teach.pictures import drawn_layers, stage_note

    layers = drawn_layers(compiled)
    files = picture_names(name, layers)
    captions = ["The residual stream: which slot holds which rows in which half-layer (rows of "
                "slots that are dead are handed to later slots)."]
    notes = [stage_note(compiled, b) for b in range(len(layers))]
    captions += [f"Layer {l}" + (f" (`blocks.{b}`, {notes[b]})" if notes[b] else
                                 "" if l == b else f" (`blocks.{b}`)")
                 + ": each head's score matrix from the position rows (the bright cell "
                 "in each row is the column the head reads), its value-output map between "
                 "slots, and the MLP's input and output weights between slots and units."
                 for b, l in enumerate(layers)]
    captions += ["One prompt: the attention pattern of every head, and every live slot after "
                 "every layer, compiled beside the interpreter."]
    lines = ["## Pictures", "", f"Written by the command above into `{folder}/`.", ""]
    for file, caption in zip(files, captions):
        lines += [f"![{file}]({folder}/{file})", "", caption, ""]
    return lines


def proof_section(name: str, params: dict[str, object]) -> list[str]:
    d = int(params["d"])
    if d > PROOF_MAX_D:
        return ["## Proof", "", f"Run `rawc prove {name} --d {min(d, PROOF_MAX_D)}`: the symbolic "
                f"proof is printed for d <= {PROOF_MAX_D} only.", ""]
    if str(params.get("method")) == "newton":
        return ["## Proof", "", "No exact identity to prove: Newton-Schulz approximates the "
                "inverse (after `k` steps its relative error is at most `(1 - 1/K)^(2^k)`, "
                "`K` the condition bound; `construct.algorithms.ridge_newton`). "
                "`rawc prove ridge --method solve` proves the same statistics exactly.", ""]
    text, _ = report(name, params, times=False)
    method = params.get("method")
    command = f"rawc prove {name}" + (f" --method {method}" if method else "") + f" --d {d}"
    return ["## Proof", "", f"`{command}` (timings left out): the interpreter runs "
            "the program on symbols and the result is compared with the closed form by "
            "`expand`/`cancel`; then every lowering trick the program uses is derived with its "
            "leading error term.", "", "```text", text.rstrip("\n"), "```", ""]


# Pictures of the trained-vs-compiled page, drawn again from the stored runs:
# picture -> (stored run, its record under docs/)
RECORD_PICTURES = {"trained-phases.png": ("phases", "trained/phases.json"),
                   "trained-transience.png": ("transience", "trained/transience.json")}


def _command_output(command: str, root: pathlib.Path) -> str:
    """The output of the command a block names, timings left out: ``rawc prove ...``, or
    ``rawc phases --from RECORD`` / ``rawc transience --from RECORD`` (the table of a stored
    run, ``RECORD`` relative to the repository root ``root``)."""
    from construct.algorithms.registry import algorithm_params
    from construct.cli.main import build_parser

    from verify.training.records import RUNS

    words = command.split()
    if words[:1] and words[0] in RUNS and words[1:2] == ["--from"] and len(words) == 3:
        run = RUNS[words[0]]
        return run.text(run.read(str(root / words[2]))) + "\n"
    if words[:1] != ["prove"]:
        raise ValueError(f"generated block runs {command!r}; known: `prove NAME [--d D]`, "
                         "`phases --from RECORD`, `transience --from RECORD`")
    args = build_parser().parse_args(words)
    return report(args.name, algorithm_params(args), listing=args.listing, times=False)[0]


def refresh_blocks(text: str, root: pathlib.Path = pathlib.Path(".")) -> str:
    """``text`` with every generated block's body replaced by its command's output today."""
    return BLOCK.sub(lambda m: m.group(1) + _command_output(m.group("command"), root)
                     + m.group(4), text)


def draw_record_pictures(source: pathlib.Path, out: pathlib.Path) -> None:
    """The trained-vs-compiled page's pictures, from the runs stored under ``source``."""
    from verify.training.records import RUNS

    for picture, (name, record) in RECORD_PICTURES.items():
        run = RUNS[name]
        run.draw(run.read(str(source / record)), str(out / "pictures" / picture))


def build_docs(out: pathlib.Path, source: pathlib.Path, pictures: bool = True,
               ) -> dict[pathlib.Path, str]:
    """Every course page as it should read: ``{path under out: text}``. Writes pictures to
    ``out/pictures`` when ``pictures`` is set (pages are returned, not written)."""
    from construct.teach import explain_command as explain

    pages: dict[pathlib.Path, str] = {}
    generated = {*PAGES, *METHOD_PAGES, *FORM_PAGES, *LSA_PAGES}
    for page in sorted(source.glob("*.md")):
        if page.stem not in generated:
            pages[out / page.name] = refresh_blocks(page.read_text(encoding="utf-8"),
                                                    source.resolve().parent)
    programs = [(name, name, d, None, None) for name, d in PAGES.items()]
    programs += [(page, name, 2, method, None) for page, (name, method) in METHOD_PAGES.items()]
    programs += [(page, name, 2, None, form) for page, (name, form) in FORM_PAGES.items()]
    for page, name, d, method, form in tqdm(programs, desc="course pages", unit="page",
                                            file=sys.stderr, leave=False, delay=2.0):
        args = explain.page_args(name, d, out="docs", method=method, form=form)
        target = explain.resolve_target(args)
        pages[out / f"{page}.md"] = explain.render(args, target)[1]
        if pictures:
            explain.write_page_pictures(target, out)
    if pictures:
        draw_record_pictures(source, out)
    from construct.cli.main import build_parser
    from construct.teach.linear_attention import explain_page

    for page, flags in LSA_PAGES.items():
        name = page.removesuffix("-momentum")
        words = ["explain", name, "--d", "2", *flags, "--out"]
        args = build_parser().parse_args([*words, "docs"])
        pages[out / f"{page}.md"] = explain_page(args, write_pictures=False)[1]
        if pictures:
            explain_page(build_parser().parse_args([*words, str(out)]))
    return pages


def main(args: argparse.Namespace) -> int:
    out = pathlib.Path(args.out)
    pages = build_docs(out, out, pictures=not args.check)
    stale = [path for path, text in pages.items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    if args.check:
        for path in stale:
            print(f"out of date: {path} (regenerate with `rawc docs`)")
        print("docs are current" if not stale else f"{len(stale)} page(s) out of date")
        return 1 if stale else 0
    for path, text in pages.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0

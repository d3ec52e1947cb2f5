"""construct.teach.course and ``rawc docs``: the committed course is what the code makes today."""
from __future__ import annotations

import pathlib
import re

import pytest

from construct.teach import course

from construct.teach import explain_command
from construct.cli.main import main as cli_main

REPO = pathlib.Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> dict[pathlib.Path, str]:
    out = tmp_path_factory.mktemp("docs")
    return course.build_docs(out, DOCS, pictures=False)


def test_every_committed_page_is_current(regenerated) -> None:
    assert {path.name for path in regenerated} == {p.name for p in DOCS.glob("*.md")}
    for path, text in regenerated.items():
        committed = (DOCS / path.name).read_text(encoding="utf-8")
        assert committed == text, f"docs/{path.name} is out of date; run `.venv/bin/rawc docs`"


def test_course_pages_have_statement_program_pictures_proof_errors() -> None:
    for name in (*course.PAGES, *course.METHOD_PAGES, *course.FORM_PAGES):
        text = (DOCS / f"{name}.md").read_text(encoding="utf-8")
        for section in ("## What it computes", "## The program", "## Pictures", "## Proof",
                        "## Error budget"):
            assert section in text, f"docs/{name}.md lacks {section!r}"
        links = re.findall(r"\]\(pictures/([^)]+)\)", text)
        layers = [int(m) for m in re.findall(rf"{re.escape(name)}-layer(\d+)\.png", " ".join(links))]
        assert layers and links == course.picture_names(name, layers)
        for link in links:
            assert (DOCS / "pictures" / link).is_file(), f"docs/pictures/{link} is missing"


def test_index_links_every_page_in_lecture_order() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    positions = [index.index(f"]({page}.md)") for page in ("operations", *course.PAGES)]
    assert positions == sorted(positions)
    for page in (*course.METHOD_PAGES, *course.FORM_PAGES, *course.LSA_PAGES):
        assert f"]({page}.md)" in index


def test_generated_block_is_refreshed() -> None:
    stale = "<!-- rawc prove lemmas -->\n```text\nold output\n```\n<!-- end rawc -->\n"
    fresh = course.refresh_blocks(stale)
    assert "old output" not in fresh and "Lemma: softmax saturation" in fresh
    assert fresh.endswith("all proved\n```\n<!-- end rawc -->\n")


def test_unknown_block_command_is_refused() -> None:
    with pytest.raises(ValueError, match="known: `prove NAME"):
        course.refresh_blocks("<!-- rawc bench ops -->\n```text\n```\n<!-- end rawc -->\n")


def test_a_stored_run_block_is_its_table_again(tmp_path) -> None:
    """The trained-vs-compiled page's tables come from the runs' records, not from training."""
    from verify.training import phases

    point = phases.PhasePoint(layers=1, noise=0.0, loss=1.5, spd={"ols": 0.5, "gd1*": 0.25},
                              mse=0.7, checkpoint="p.safetensors")
    phases.write_json([point], str(tmp_path / "run.json"))
    stale = "<!-- rawc phases --from run.json -->\n```text\nold\n```\n<!-- end rawc -->\n"
    fresh = course.refresh_blocks(stale, tmp_path)
    assert "old" not in fresh and phases.table([point]) + "\n```" in fresh


def test_docs_check_reports_a_stale_page(tmp_path, capsys, monkeypatch) -> None:
    # the generated pages are checked above; here only the hand-written page with a block
    for pages in ("PAGES", "METHOD_PAGES", "FORM_PAGES", "LSA_PAGES"):
        monkeypatch.setattr(course, pages, {})
    (tmp_path / "notes.md").write_text("<!-- rawc prove lemmas -->\n```text\nstale\n```\n"
                                       "<!-- end rawc -->\n", encoding="utf-8")
    assert cli_main(["docs", "--out", str(tmp_path), "--check"]) == 1
    assert "out of date" in capsys.readouterr().out
    assert (tmp_path / "notes.md").read_text(encoding="utf-8").count("stale") == 1


def test_explain_works_for_every_named_algorithm(capsys) -> None:
    from construct.algorithms.registry import PROGRAM_ALGORITHMS as ALGORITHMS

    for name in ALGORITHMS:
        assert explain_command.main(explain_command.page_args(name, 1)) == 0
        assert "## Proof" in capsys.readouterr().out

"""construct.model.checkpoint.replace_atomically: what writing a checkpoint does to files."""
from __future__ import annotations

import os
import stat

import pytest

from construct.model.checkpoint import replace_atomically


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_file_gets_the_umask_mode_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        replace_atomically(str(tmp_path / "new.safetensors"), lambda tmp: open(tmp, "w").write("x"))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "new.safetensors") == 0o644


def test_an_existing_file_keeps_its_mode(tmp_path):
    path = tmp_path / "kept.safetensors"
    path.write_text("old")
    os.chmod(path, 0o640)
    replace_atomically(str(path), lambda tmp: open(tmp, "w").write("new"))
    assert path.read_text() == "new" and _mode(path) == 0o640


def test_a_symlink_is_written_through_and_stays_a_link(tmp_path):
    target = tmp_path / "real.safetensors"
    target.write_text("old")
    link = tmp_path / "link.safetensors"
    link.symlink_to(target)
    replace_atomically(str(link), lambda tmp: open(tmp, "w").write("new"))
    assert link.is_symlink() and target.read_text() == "new"


def test_a_failed_write_leaves_the_target_and_no_temporary_file(tmp_path):
    path = tmp_path / "kept.safetensors"
    path.write_text("old")

    def fail(tmp: str) -> None:
        open(tmp, "w").write("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replace_atomically(str(path), fail)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.safetensors"]

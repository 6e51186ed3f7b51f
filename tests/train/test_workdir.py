"""A workdir holds one run: conflicts are refused, overwrites move the old run aside."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from genjax_models.runs.workdir import WorkdirError, check_workdir, prepare_workdir

IDENTITY = {"kind": "gan", "dataset": "digits", "model": {"base_width": 8}, "seed": 0}


def _with_checkpoint(workdir: Path) -> None:
    (workdir / "checkpoints" / "10").mkdir(parents=True)


def test_new_workdir_records_the_run(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    assert prepare_workdir(str(workdir), IDENTITY, resume=False, overwrite=False) == (False, None)
    saved = json.loads((workdir / "run.json").read_text())
    assert saved["identity"] == IDENTITY


def test_different_config_is_refused_naming_the_difference(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    prepare_workdir(str(workdir), IDENTITY, resume=False, overwrite=False)
    other = {**IDENTITY, "model": {"base_width": 16}}
    with pytest.raises(WorkdirError, match="model.base_width: saved 8, requested 16.*--overwrite"):
        check_workdir(str(workdir), other, resume=True, overwrite=False)


def test_existing_checkpoints_need_resume(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    prepare_workdir(str(workdir), IDENTITY, resume=False, overwrite=False)
    _with_checkpoint(workdir)
    with pytest.raises(WorkdirError, match="already has checkpoints.*--resume"):
        check_workdir(str(workdir), IDENTITY, resume=False, overwrite=False)
    assert check_workdir(str(workdir), IDENTITY, resume=True, overwrite=False) is True


def test_overwrite_moves_the_old_run_aside_and_loses_nothing(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    prepare_workdir(str(workdir), IDENTITY, resume=False, overwrite=False)
    _with_checkpoint(workdir)
    other = {**IDENTITY, "seed": 1}
    resuming, backup = prepare_workdir(str(workdir), other, resume=False, overwrite=True)
    assert not resuming and backup is not None
    assert (Path(backup) / "checkpoints" / "10").is_dir()
    assert json.loads((Path(backup) / "run.json").read_text())["identity"] == IDENTITY
    assert json.loads((workdir / "run.json").read_text())["identity"] == other


@pytest.mark.parametrize(
    "setup,kwargs,message",
    [
        ("empty", {"resume": True, "overwrite": False}, "no checkpoints to resume"),
        ("foreign", {"resume": False, "overwrite": False}, "holds no genjax-models run"),
        ("empty", {"resume": True, "overwrite": True}, "contradict"),
    ],
)
def test_bad_workdir_requests_are_clear_errors(tmp_path: Path, setup, kwargs, message) -> None:
    workdir = tmp_path / "run"
    if setup == "foreign":
        workdir.mkdir()
        (workdir / "notes.txt").write_text("mine")
    with pytest.raises(WorkdirError, match=message):
        check_workdir(str(workdir), IDENTITY, **kwargs)
    if setup == "foreign":
        assert (workdir / "notes.txt").read_text() == "mine"


def test_attempt_without_checkpoint_is_not_overwritten_silently(tmp_path: Path) -> None:
    """A run stopped before its first checkpoint left samples behind: re-running the same command
    must not write over them without --overwrite (which moves them aside)."""
    workdir = tmp_path / "run"
    prepare_workdir(str(workdir), IDENTITY, resume=False, overwrite=False)
    assert check_workdir(str(workdir), IDENTITY, resume=False, overwrite=False) is False
    (workdir / "samples").mkdir()
    (workdir / "samples" / "step_000500.png").write_bytes(b"png")
    with pytest.raises(WorkdirError, match=r"earlier attempt of this run \(samples\).*--overwrite"):
        check_workdir(str(workdir), IDENTITY, resume=False, overwrite=False)
    _, backup = prepare_workdir(str(workdir), IDENTITY, resume=False, overwrite=True)
    assert (Path(backup) / "samples" / "step_000500.png").read_bytes() == b"png"


def test_workdir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "run"
    path.write_text("not a directory")
    with pytest.raises(WorkdirError, match="is a file: choose a directory"):
        check_workdir(str(path), IDENTITY, resume=False, overwrite=False)


@pytest.mark.parametrize(
    "text, reason",
    [('{"name": "my experiment"}', "it has no 'identity' object"), ("{", "unreadable: Expect")],
)
def test_foreign_or_damaged_run_file_is_a_clear_error(tmp_path: Path, text, reason) -> None:
    from genjax_models.runs.workdir import read_run

    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "run.json").write_text(text)
    message = re.escape(f"run.json' is not a genjax-models run file ({reason}")
    with pytest.raises(WorkdirError, match=message):
        check_workdir(str(workdir), IDENTITY, resume=False, overwrite=False)
    with pytest.raises(WorkdirError, match=message):
        read_run(str(workdir))
    assert (workdir / "run.json").read_text() == text
    assert prepare_workdir(str(workdir), IDENTITY, resume=False, overwrite=True)[1] is not None


def test_overwrite_of_the_current_directory_is_refused(tmp_path: Path, monkeypatch) -> None:
    prepare_workdir(str(tmp_path), IDENTITY, resume=False, overwrite=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkdirError, match="'.' is the current directory"):
        check_workdir(".", IDENTITY, resume=False, overwrite=True)
    assert json.loads((tmp_path / "run.json").read_text())["identity"] == IDENTITY


def test_a_relative_workdir_is_moved_aside_next_to_itself(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    prepare_workdir("run/", IDENTITY, resume=False, overwrite=False)
    _, backup = prepare_workdir("run/", IDENTITY, resume=False, overwrite=True)
    assert Path(backup).parent == tmp_path and Path(backup).name.startswith("run.bak-")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run", Path(backup).name])

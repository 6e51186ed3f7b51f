"""Unreadable checkpoints fall back to the newest readable step; mismatches and newer formats don't.

In-process, on a three-array pytree: every way a file of the newest step directory can be broken
on disk (truncated, emptied, deleted) that Orbax notices is skipped with one warning line naming
the directory and the step used instead; a checkpoint of another model still raises the
"does not match" :class:`CheckpointError`; unfinished saves (``*.orbax-checkpoint-tmp``) are
never checkpoints.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_models.train.checkpoint import TMP_SUFFIX, Checkpointer, CheckpointError

# Orbax's reader coroutines of a failed restore report "Event loop is closed" when collected.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _state(step: int) -> dict:
    return {
        "params": {"w": jnp.arange(12.0).reshape(3, 4) * step, "b": jnp.full((3,), step / 7)},
        "step": jnp.int32(step),
    }


def _assert_state_equal(restored: dict, step: int) -> None:
    expected = _state(step)
    assert jax.tree.structure(restored) == jax.tree.structure(expected)
    for x, y in zip(jax.tree.leaves(restored), jax.tree.leaves(expected), strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y)), (step, x, y)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Checkpoints of steps 1, 2 and 3 (never modified: tests copy it)."""
    directory = tmp_path_factory.mktemp("ckpt") / "checkpoints"
    with Checkpointer(str(directory)) as checkpointer:
        for step in (1, 2, 3):
            checkpointer.save(step, _state(step), {"data_position": step})
    return directory


@pytest.fixture
def copy(saved: Path, tmp_path: Path) -> Path:
    target = tmp_path / "checkpoints"
    shutil.copytree(saved, target)
    return target


def _largest_array_file(step_dir: Path) -> Path:
    """The biggest file under ``state/d/``: where Orbax keeps the arrays' bytes."""
    files = [p for p in (step_dir / "state" / "d").iterdir() if p.is_file()]
    return max(files, key=lambda p: p.stat().st_size)


BREAKS = {
    "arrays_truncated": lambda d: _truncate(_largest_array_file(d), 0.5),
    "arrays_deleted": lambda d: _largest_array_file(d).unlink(),
    "manifest_emptied": lambda d: _truncate(d / "state" / "manifest.ocdbt", 0.0),
    "tree_metadata_truncated": lambda d: _truncate(d / "state" / "_METADATA", 0.5),
    "meta_json_truncated": lambda d: _truncate(d / "meta" / "metadata", 0.5),
    "meta_json_deleted": lambda d: (d / "meta" / "metadata").unlink(),
    "step_dir_emptied": lambda d: [shutil.rmtree(d), d.mkdir()],
}


def _truncate(path: Path, fraction: float) -> None:
    size = path.stat().st_size
    assert size > 0
    with open(path, "r+b") as f:
        f.truncate(int(size * fraction))


@pytest.mark.parametrize("how", sorted(BREAKS))
def test_unreadable_newest_checkpoint_falls_back_with_one_warning(copy: Path, how: str) -> None:
    BREAKS[how](copy / "3")
    lines: list[str] = []
    with Checkpointer(str(copy), log=lines.append) as checkpointer:
        restored, meta = checkpointer.restore(_state(0))
        assert checkpointer.all_steps() == [1, 2]
        assert checkpointer.latest_step() == 2
    _assert_state_equal(restored, 2)
    assert meta["step"] == meta["data_position"] == 2
    assert len(lines) == 1, lines
    assert f"checkpoint {copy / '3'} is unreadable" in lines[0]
    assert lines[0].endswith("using step 2 instead")
    assert "\n" not in lines[0]


def test_restore_arrays_and_read_metadata_fall_back_too(copy: Path) -> None:
    BREAKS["arrays_truncated"](copy / "3")
    lines: list[str] = []
    with Checkpointer(str(copy), log=lines.append) as checkpointer:
        arrays, meta = checkpointer.restore_arrays()
        assert meta["step"] == 2 and int(arrays["step"]) == 2
        np.testing.assert_array_equal(arrays["params"]["w"], _state(2)["params"]["w"])
        assert checkpointer.read_metadata()["step"] == 2  # step 3 is now known unreadable
    with Checkpointer(str(copy), log=pytest.fail) as checkpointer:
        assert checkpointer.read_metadata()["step"] == 3  # reads only the (intact) JSON
    BREAKS["meta_json_deleted"](copy / "3")
    with Checkpointer(str(copy), log=lines.append) as checkpointer:
        assert checkpointer.read_metadata()["step"] == 2
    assert len(lines) == 2 and all(line.endswith("using step 2 instead") for line in lines)


def test_several_unreadable_steps_are_named_in_one_line(copy: Path) -> None:
    BREAKS["arrays_deleted"](copy / "3")
    BREAKS["meta_json_truncated"](copy / "2")
    lines: list[str] = []
    with Checkpointer(str(copy), log=lines.append) as checkpointer:
        restored, _ = checkpointer.restore(_state(0))
    _assert_state_equal(restored, 1)
    assert len(lines) == 1 and "and so are steps [2]; using step 1 instead" in lines[0]


def test_no_readable_checkpoint_is_an_error_naming_the_directory(copy: Path) -> None:
    for step in (1, 2, 3):
        BREAKS["arrays_truncated"](copy / str(step))
    with Checkpointer(str(copy), log=lambda line: None) as checkpointer:
        with pytest.raises(CheckpointError, match="no readable checkpoint in .*--overwrite") as err:
            checkpointer.restore(_state(0))
    assert str(copy) in str(err.value) and "[1, 2, 3]" in str(err.value)


def test_an_explicit_unreadable_step_is_an_error_not_a_fallback(copy: Path) -> None:
    BREAKS["arrays_truncated"](copy / "3")
    with Checkpointer(str(copy), log=pytest.fail) as checkpointer:
        with pytest.raises(CheckpointError, match=r"checkpoints/3 is unreadable .*\[1, 2, 3\]"):
            checkpointer.restore(_state(0), step=3)
        with pytest.raises(CheckpointError, match=r"no checkpoint of step 7 .*\[1, 2, 3\]"):
            checkpointer.restore(_state(0), step=7)
        restored, _ = checkpointer.restore(_state(0), step=2)
    _assert_state_equal(restored, 2)


def test_another_models_checkpoint_is_a_mismatch_not_a_fallback(copy: Path) -> None:
    wider = {**_state(0), "params": {"w": jnp.zeros((3, 5)), "b": jnp.zeros(3)}}
    extra = {**_state(0), "ema": {"w": jnp.zeros((3, 4))}}
    with Checkpointer(str(copy), log=pytest.fail) as checkpointer:
        with pytest.raises(
            CheckpointError, match=r"3 does not match .*params.w has shape \(3, 4\), this model"
        ):
            checkpointer.restore(wider)
        with pytest.raises(CheckpointError, match="ema.w is missing from the checkpoint"):
            checkpointer.restore(extra)
        assert checkpointer.all_steps() == [1, 2, 3]  # nothing was marked unreadable


def test_newer_format_version_is_an_error_not_a_fallback(copy: Path) -> None:
    meta_file = copy / "3" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "format_version": 99}))
    with Checkpointer(str(copy), log=pytest.fail) as checkpointer:
        with pytest.raises(CheckpointError, match="format_version=99, newer than .*upgrade"):
            checkpointer.restore(_state(0))
        with pytest.raises(CheckpointError, match="format_version=99"):
            checkpointer.read_metadata()


def test_unfinished_saves_are_never_checkpoints_and_are_cleared(copy: Path) -> None:
    # What a SIGKILL during the save of step 4 leaves: a complete-looking copy, under a tmp name.
    shutil.copytree(copy / "3", copy / f"4{TMP_SUFFIX}")
    with Checkpointer(str(copy), log=pytest.fail) as checkpointer:
        assert checkpointer.all_steps() == [1, 2, 3]
        restored, _ = checkpointer.restore(_state(0))
        _assert_state_equal(restored, 3)
        checkpointer.save(5, _state(5), {})
        checkpointer.wait()
    # The tmp dir is gone; step 1 went by max_to_keep=3 rotation.
    assert sorted(os.listdir(copy)) == ["2", "3", "5"]


def test_unreadable_step_is_moved_aside_when_training_saves_it_again(copy: Path) -> None:
    BREAKS["arrays_truncated"](copy / "3")
    lines: list[str] = []
    with Checkpointer(str(copy), log=lines.append) as checkpointer:
        restored, _ = checkpointer.restore(_state(0))
        _assert_state_equal(restored, 2)
        checkpointer.save(3, _state(3), {})  # the resumed run reaches step 3 again
        checkpointer.wait()
        assert checkpointer.all_steps() == [1, 2, 3]
    assert (copy / "3.corrupt").is_dir()  # kept for inspection, not deleted
    with Checkpointer(str(copy), log=pytest.fail) as checkpointer:
        restored, meta = checkpointer.restore(_state(0))
    _assert_state_equal(restored, 3)
    assert meta["step"] == 3 and len(lines) == 1

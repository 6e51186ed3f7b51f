"""``train gan --data-fraction``: the limited-data regime (a seeded, per-class subset of the images)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genjax_models.cli import main
from genjax_models.data.pipeline import ImageArrays
from genjax_models.runs.gan import image_fraction


def _arrays(labels: np.ndarray, num_classes: int | None) -> ImageArrays:
    images = np.arange(len(labels), dtype=np.float32).reshape(-1, 1, 1, 1) / len(labels)
    return ImageArrays(images, labels.astype(np.int32), num_classes, "toy", "train")


def test_a_labelled_split_keeps_the_fraction_of_every_class_seeded_and_in_order() -> None:
    labels = np.repeat(np.arange(3), [100, 50, 10])
    arrays = _arrays(labels, 3)
    subset = image_fraction(arrays, 0.1, seed=0)
    assert np.bincount(subset.labels).tolist() == [10, 5, 1]
    rows = np.rint(subset.images[:, 0, 0, 0] * len(labels)).astype(int)
    assert np.all(np.diff(rows) > 0)  # split order kept
    assert np.array_equal(labels[rows], subset.labels)  # each image keeps its own label
    assert np.array_equal(image_fraction(arrays, 0.1, seed=0).images, subset.images)
    assert not np.array_equal(image_fraction(arrays, 0.1, seed=1).images, subset.images)
    assert image_fraction(arrays, 1.0, seed=0) is arrays


def test_an_unlabelled_split_keeps_a_seeded_fraction_of_its_images() -> None:
    arrays = _arrays(np.zeros(200), None)
    subset = image_fraction(arrays, 0.25, seed=3)
    assert len(subset.images) == len(subset.labels) == 50
    rows = np.rint(subset.images[:, 0, 0, 0] * 200).astype(int)
    expected = np.sort(np.random.default_rng(3).permutation(200)[:50])
    assert rows.tolist() == expected.tolist()


@pytest.mark.parametrize("fraction", ["0", "-0.5", "1.5"])
def test_a_fraction_outside_0_1_is_one_line_before_any_data(
    fraction: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "gan", "--workdir", str(tmp_path / "w"), "--data-fraction", fraction,
                 "--data-dir", str(tmp_path / "no_data")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"genjax-models: error: --data-fraction {float(fraction):g} is invalid: "
                   "expected a number in (0, 1]"]  # fmt: skip
    assert not (tmp_path / "w").exists()


def test_a_run_on_a_tenth_of_digits_trains_on_it_and_resume_needs_the_same_fraction(
    digits_data_dir: Path,
    tiny_gan_flags: tuple[str, ...],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    workdir = str(tmp_path / "w")
    flags = ["train", "gan", "--workdir", workdir, "--data-dir", str(digits_data_dir),
             *tiny_gan_flags, "--batch-size", "16"]  # fmt: skip
    assert main([*flags, "--steps", "2", "--data-fraction", "0.1"]) == 0
    out = capsys.readouterr().out
    # digits has 1,437 training images, 141-147 per class; a tenth of each class (rounded) is kept.
    assert "genjax-models: training on 143 images (0.1 of the split)" in out
    saved = json.loads((tmp_path / "w" / "run.json").read_text())
    assert saved["identity"]["data_fraction"] == 0.1
    code = main([*flags, "--steps", "4", "--resume"])  # the whole split: another run
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "data_fraction" in err[0], err

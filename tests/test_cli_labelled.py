"""CLI for labelled data: classifiers p(y|x), class-conditional p(x|y)p(y), conditional GAN."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from genjax_models.cli import main


def _assert_one_line_error(done, *needles: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    last = done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr and last.startswith("genjax-models: error: ")
    for needle in needles:
        assert needle in last


@pytest.mark.slow
def test_train_classifier_and_class_conditional_on_elephants_mice(
    cli, elephants_mice_data_dir, tmp_path: Path
) -> None:
    classifier = tmp_path / "classifier"
    done = cli(
        "train", "classifier", "--dataset", "elephants_mice", "--workdir", str(classifier),
        "--steps", "200", "--log-every", "100", "--set", "hidden_layers=0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    model = json.loads((classifier / "run.json").read_text())["identity"]["model"]
    assert (model["architecture"], model["hidden_layers"], model["num_features"]) == ("mlp", 0, 2)
    assert model["num_classes"] == 2
    result = json.loads((classifier / "test_metrics.json").read_text())
    assert result["test_accuracy"] > 0.9 and result["num_labels"] == 2000

    generative = tmp_path / "generative"
    done = cli(
        "train", "class_conditional", "--workdir", str(generative), "--steps", "200",
        "--log-every", "100", "--label-fraction", "0.1", "--batch-size", "32",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads((generative / "test_metrics.json").read_text())
    assert result["num_labels"] == 200 and result["test_accuracy"] > 0.9
    assert -6.0 < result["test_log_likelihood"] < -4.3  # the true distributions: -4.31
    assert "log-likelihood" in done.stdout
    identity = json.loads((generative / "run.json").read_text())["identity"]
    assert identity["label_fraction"] == 0.1 and identity["optim"]["learning_rate"] == 0.01


@pytest.mark.slow
def test_conditional_gan_trains_samples_by_label_and_evaluates(
    cli, tiny_gan_flags, tmp_path: Path
) -> None:
    workdir = tmp_path / "cgan"
    done = cli(
        "train", "gan", "--conditional", "--workdir", str(workdir), "--steps", "4",
        "--log-every", "2", "--sample-every", "4", *tiny_gan_flags,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads((workdir / "run.json").read_text())["identity"]["model"]["num_classes"] == 10
    # The training grid: one row per digit, 8 columns of 16 px tiles (2 px padding), scaled 2x.
    grid = Image.open(workdir / "samples" / "step_000004.png")
    assert grid.size == (2 * (8 * 18 + 2), 2 * (10 * 18 + 2))
    sevens = tmp_path / "sevens.png"
    done = cli("sample", "gan", "--workdir", str(workdir), "--label", "7", "--num", "4",
               "--out", str(sevens))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert Image.open(sevens).size == (2 * (2 * 18 + 2), 2 * (2 * 18 + 2))
    done = cli("sample", "gan", "--workdir", str(workdir), "--label", "10")
    _assert_one_line_error(done, "label 10 is invalid", "0..9")
    done = cli(
        "eval", "gan", "--workdir", str(workdir), "--num-samples", "40", "--classifier-steps", "10"
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((workdir / "eval_n40_seed0.json").read_text())
    assert 0.0 <= result["label_agreement"] <= 1.0 and result["frechet_distance"] > 0


BAD_COMMANDS = [
    (["train", "classifier", "--workdir", "w", "--set", "bogus=1"], "no field 'bogus'"),
    (["train", "classifier", "--workdir", "w", "--label-fraction", "0"], "label fraction 0.0"),
    (["train", "class_conditional", "--workdir", "w", "--label-fraction", "2"], "(0, 1]"),
    (
        ["train", "class_conditional", "--workdir", "w", "--set", "covariance_prior=-1"],
        "covariance_prior=-1.0 is invalid",
    ),
    (["train", "classifier", "--workdir", "w", "--set", "architecture=svm"], "cnn, mlp"),
    (["train", "gan", "--workdir", "w", "--conditional", "--set", "num_classes=-2"], "-2"),
]


@pytest.mark.parametrize("argv,needle", BAD_COMMANDS)
def test_bad_labelled_commands_fail_in_one_line_before_any_io(
    argv, needle, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genjax-models: error: ")
    assert needle in err[0]
    assert not (tmp_path / "w").exists() and not (tmp_path / "tfds").exists()


def test_label_for_an_unconditional_gan_is_a_one_line_error(tmp_path, capsys) -> None:
    workdir = tmp_path / "gan"
    workdir.mkdir()
    identity = {"kind": "gan", "dataset": "digits", "model": {"num_classes": 0}}
    (workdir / "run.json").write_text(json.dumps({"identity": identity}))
    assert main(["sample", "gan", "--workdir", str(workdir), "--label", "3"]) == 2
    err = capsys.readouterr().err
    assert "label 3 given but the GAN" in err and "--conditional" in err


def test_feature_dataset_mismatches_name_the_fix(elephants_mice_data_dir, tmp_path, capsys) -> None:
    data = ["--data-dir", str(elephants_mice_data_dir)]
    argv = ["train", "classifier", "--dataset", "elephants_mice", "--workdir", str(tmp_path / "a")]
    assert main([*argv, *data, "--set", "architecture=cnn"]) == 2
    assert "architecture=mlp" in capsys.readouterr().err
    argv = ["train", "gan", "--conditional", "--dataset", "elephants_mice"]
    assert main([*argv, "--workdir", str(tmp_path / "b"), *data]) == 2
    assert "has no 'image' feature" in capsys.readouterr().err
    argv = ["train", "classifier", "--dataset", "elephants_mice", "--batch-size", "64"]
    assert main([*argv, "--label-fraction", "0.01", "--workdir", str(tmp_path / "c"), *data]) == 2
    assert "exceeds the 20 labelled examples" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abc")

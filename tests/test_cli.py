"""The CLI end to end: train, sample, eval; user errors are one line with a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from genjax_models.cli import main


def _assert_one_line_error(done, *needles: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("genjax-models: error: ")
    for needle in needles:
        assert needle in last


@pytest.mark.slow
def test_train_then_sample_then_eval(cli, tiny_gan_flags, tmp_path: Path) -> None:
    workdir = tmp_path / "gan"
    flags = [*tiny_gan_flags, "--log-every", "2", "--sample-every", "4", "--checkpoint-every", "4"]
    done = cli("train", "gan", "--workdir", str(workdir), "--steps", "8", *flags)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (workdir / "samples").iterdir()) == [
        "step_000004.png",
        "step_000008.png",
    ]
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [2, 4, 6, 8]
    assert {"d_loss", "g_loss", "d_real", "d_fake", "steps_per_sec"} <= set(rows[-1])
    assert rows[-1]["devices"] == 1
    assert list((workdir / "tb").iterdir())  # TensorBoard event file
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [
        "4",
        "8",
    ]

    grid = tmp_path / "grid.png"
    done = cli("sample", "gan", "--workdir", str(workdir), "--num", "9", "--out", str(grid))
    assert done.returncode == 0, done.stderr
    # 3x3 tiles of 16 px with 2 px padding, enlarged 2x.
    assert Image.open(grid).size == (2 * (3 * 18 + 2), 2 * (3 * 18 + 2))
    saved = grid.read_bytes()  # an existing picture is replaced only with --overwrite
    done = cli("sample", "gan", "--workdir", str(workdir), "--num", "4", "--out", str(grid))
    assert done.returncode == 2 and "exists: pass --overwrite" in done.stderr
    assert grid.read_bytes() == saved
    done = cli(
        "sample", "gan", "--workdir", str(workdir), "--num", "4", "--out", str(grid), "--overwrite"
    )
    assert done.returncode == 0 and grid.read_bytes() != saved
    done = cli(
        "sample", "gan", "--workdir", str(workdir), "--num", "4", "--out", str(grid), "--overwrite",
        "--truncation", "0.5",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    done = cli(
        "eval", "gan", "--workdir", str(workdir), "--num-samples", "64", "--classifier-steps", "20"
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((workdir / "eval_n64_seed0.json").read_text())
    assert result["step"] == 8 and result["num_samples"] == 64 and result["seed"] == 0
    assert result["frechet_distance"] > 0 and result["classifier_steps"] == 20
    assert 0.0 <= result["recognisable_rate"] <= 1.0
    assert json.loads(done.stdout[done.stdout.index("{") :]) == result
    # KID, precision/recall, density/coverage on the same features, with the counts they used:
    # the 360 test digits against 64 samples, 100 KID subsets of min(1000, 360, 64) rows, k=3.
    assert result["truncation"] is None
    assert (result["real_samples"], result["fake_samples"]) == (360, 64)
    assert (result["kid_subsets"], result["kid_subset_size"], result["nearest_k"]) == (100, 64, 3)
    assert result["kid_mean"] > 0 and result["kid_std"] > 0  # 8 steps: far from the data
    for name in ("precision", "recall", "coverage"):
        assert 0.0 <= result[name] <= 1.0
    assert result["density"] >= 0.0
    done = cli(
        "eval", "gan", "--workdir", str(workdir), "--num-samples", "64", "--truncation", "0.5"
    )  # its own file; the untruncated result stays
    assert done.returncode == 0, done.stderr
    truncated = json.loads((workdir / "eval_n64_seed0_psi0.5.json").read_text())
    assert truncated["truncation"] == 0.5 and truncated["fake_samples"] == 64
    assert truncated["kid_mean"] != result["kid_mean"]
    assert json.loads((workdir / "eval_n64_seed0.json").read_text()) == result
    # Other settings get their own file; the existing classifier is reused and says so.
    done = cli(
        "eval", "gan", "--workdir", str(workdir), "--num-samples", "32", "--seed", "3",
        "--classifier-steps", "40",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "trained for 20 steps (--classifier-steps 40 applies only when" in done.stdout
    other = json.loads((workdir / "eval_n32_seed3.json").read_text())
    assert other["num_samples"] == 32 and other["seed"] == 3 and other["classifier_steps"] == 20
    assert json.loads((workdir / "eval_n64_seed0.json").read_text()) == result  # kept
    done = cli("eval", "gan", "--workdir", str(workdir), "--classifier-steps", "0")
    assert done.returncode == 2 and "--classifier-steps 0 is invalid" in done.stderr

    # A conflicting run in the same workdir is refused; --overwrite keeps the old one aside.
    done = cli("train", "gan", "--workdir", str(workdir), "--steps", "8", "--seed", "1", *flags)
    _assert_one_line_error(done, "holds a different run", "seed: saved 0, requested 1")
    done = cli("train", "gan", "--workdir", str(workdir), "--steps", "8", *flags)
    _assert_one_line_error(done, "already has checkpoints", "--resume")
    done = cli(
        "train", "gan", "--workdir", str(workdir), "--steps", "2", "--seed", "1", "--overwrite",
        *flags,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    backups = list(tmp_path.glob("gan.bak-*"))
    assert len(backups) == 1 and (backups[0] / "checkpoints" / "8").is_dir()


BAD_COMMANDS = [
    (["train", "gan", "--workdir", "w", "--bogus"], "unrecognized arguments: --bogus"),
    (["train", "gan"], "--workdir"),
    (["train", "gan", "--workdir", "w", "--steps", "ten"], "invalid int value: 'ten'"),
    (["train", "gan", "--workdir", "w", "--steps", "0"], "TrainConfig.steps=0"),
    (["train", "gan", "--workdir", "w", "--batch-size", "-2"], "TrainConfig.batch_size=-2"),
    (["train", "gan", "--workdir", "w", "--loss", "wgan"], "invalid choice: 'wgan'"),
    (["train", "gan", "--workdir", "w", "--set", "base_widht=3"], "no field 'base_widht'"),
    (["train", "gan", "--workdir", "w", "--set", "image_size=28"], "image_size=28"),
    (["train", "gan", "--workdir", "w", "--resume", "--overwrite"], "contradict"),
    (["train", "vae", "--workdir", "w"], "invalid choice: 'vae'"),
    (["sample", "gan", "--workdir", "nowhere"], "not a genjax-models run"),
    (["eval", "gan", "--workdir", "nowhere"], "not a genjax-models run"),
    (["sample", "gan", "--workdir", "nowhere", "--truncation", "0"], "--truncation 0.0 is invalid"),
    (["eval", "gan", "--workdir", "nowhere", "--truncation", "-1"], "--truncation -1.0 is invalid"),
    (
        ["eval", "gan", "--workdir", "nowhere", "--truncation", "inf"],
        "expected a finite number > 0",
    ),
    (["eval", "gan", "--workdir", "w", "--truncation", "half"], "invalid float value: 'half'"),
]


@pytest.mark.parametrize("argv,needle", BAD_COMMANDS)
def test_bad_commands_get_one_line_errors(argv, needle, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genjax-models: error: ")
    assert needle in err[0]
    assert not (tmp_path / "w").exists()  # nothing was created before the error


def test_missing_dataset_is_one_line_error_without_network(cli, tmp_path: Path) -> None:
    done = cli(
        "train", "gan", "--workdir", str(tmp_path / "w"), "--dataset", "mnist",
        "--data-dir", str(tmp_path / "empty"),
    )  # fmt: skip
    _assert_one_line_error(done, "'mnist' is not prepared", "tfds build mnist")
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_train_classifier_reports_test_accuracy_and_log_loss(cli, tmp_path: Path) -> None:
    workdir = tmp_path / "classifier"
    done = cli(
        "train", "classifier", "--dataset", "digits", "--workdir", str(workdir),
        "--steps", "300", "--log-every", "100", "--checkpoint-every", "300",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads((workdir / "test_metrics.json").read_text())
    assert result["step"] == 300
    assert result["test_accuracy"] > 0.95  # 360 held-out real digits
    assert 0.0 < result["test_log_loss"] < 0.2
    assert "test accuracy" in done.stdout


def test_bench_command_runs_a_benchmark_script(tmp_path) -> None:
    """`genjax-models bench decode ...` runs benchmarks/bench_decode.py with the flags given."""
    import json
    import subprocess
    import sys

    out = tmp_path / "decode.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "genjax_models.cli", "bench", "decode", "--batch-size", "2",
            "--lengths", "4", "--source-length", "4", "--repeats", "1", "--out", str(out),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [row["method"] for row in result["results"]] == ["greedy", "beam-4"]
    # The console script set up the CPU runtime before JAX started (genjax_models.parallel.cpu_runtime).
    assert result["cpu_runtime"] == "scratch reuse (cpu_runtime.py)"
    assert all(row["cached"]["tokens_per_sec"] > 0 for row in result["results"])
    assert all(row["cached"]["recompilations_after_warmup"] == 0 for row in result["results"])


def test_ctrl_c_outside_the_training_loop_is_one_line(monkeypatch, capsys) -> None:
    import genjax_models.cli as cli_module
    from genjax_models.cli import commands

    def interrupted(args) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "run_sample", interrupted)
    code = cli_module.main(["sample", "gan", "--workdir", "w", "--out", "a.png"])
    err = capsys.readouterr().err
    assert code == cli_module.EXIT_INTERRUPTED == 130
    assert err == "genjax-models: interrupted\n"


def test_dataset_versions_and_configs_keep_their_channel_count(cli, tiny_gan_flags, tmp_path):
    """``digits:1.0.0`` is the one-channel digits dataset (was looked up by the exact string and
    given 3 channels, then refused for its 1-channel images)."""
    workdir = tmp_path / "versioned"
    done = cli(
        "train", "gan", "--dataset", "digits:1.0.0", "--workdir", str(workdir), "--steps", "1",
        *tiny_gan_flags,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((workdir / "run.json").read_text())["identity"]["model"]["channels"] == 1

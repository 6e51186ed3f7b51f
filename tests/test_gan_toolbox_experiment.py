"""experiments/gan_toolbox: PacGAN's mode metrics on samples with known answers, the mixtures'
own samples, and a tiny end-to-end run of the script (reproducible, reused from results.json)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "gan_toolbox"


@pytest.fixture(scope="module")
def experiment(request):
    """Imports a module of the experiment; ``run`` under a name no other script's run.py has."""
    sys.path.insert(0, str(EXPERIMENT))
    request.addfinalizer(lambda: sys.path.remove(str(EXPERIMENT)))

    def load(name: str):
        if name != "run":
            return importlib.import_module(name)  # toy_*: names unique to this experiment
        if "gan_toolbox_run" not in sys.modules:
            spec = importlib.util.spec_from_file_location("gan_toolbox_run", EXPERIMENT / "run.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules["gan_toolbox_run"] = module  # dataclasses look their module up
            spec.loader.exec_module(module)
        return sys.modules["gan_toolbox_run"]

    return load


def test_ring_and_grid_have_the_papers_mode_centres(experiment) -> None:
    toy = experiment("toy_mixtures")
    ring, grid = toy.DISTRIBUTIONS["ring"], toy.DISTRIBUTIONS["grid"]
    assert ring.num_modes == 8 and ring.std == 0.02
    np.testing.assert_allclose(np.linalg.norm(ring.means_array(), axis=1), 2.0, rtol=1e-6)
    np.testing.assert_allclose(ring.means_array()[2], [0.0, 2.0], atol=1e-6)
    assert grid.num_modes == 25 and grid.std == 0.05
    assert sorted(set(grid.means_array().ravel().tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]


def test_samples_at_five_of_eight_ring_modes_cover_five_all_high_quality(experiment) -> None:
    toy = experiment("toy_mixtures")
    ring = toy.DISTRIBUTIONS["ring"]
    samples = np.repeat(ring.means_array()[[0, 1, 3, 4, 6]], 100, axis=0)  # (500, 2)
    metrics = toy.mode_metrics(samples, ring)
    assert metrics["modes"] == 5 and metrics["high_quality"] == 1.0
    assert metrics["reverse_kl"] == pytest.approx(math.log(8 / 5), rel=1e-12)  # p uniform on 5


def test_uniform_over_all_modes_has_zero_reverse_kl_and_one_mode_has_log_k(experiment) -> None:
    toy = experiment("toy_mixtures")
    grid = toy.DISTRIBUTIONS["grid"]
    means = grid.means_array()
    uniform = toy.mode_metrics(np.tile(means, (4, 1)), grid)
    assert uniform == {"modes": 25, "high_quality": 1.0, "reverse_kl": 0.0}
    collapsed = toy.mode_metrics(np.repeat(means[:1], 50, axis=0), grid)
    assert collapsed["modes"] == 1
    assert collapsed["reverse_kl"] == pytest.approx(math.log(25), rel=1e-12)


def test_high_quality_means_within_three_std_of_the_nearest_mode(experiment) -> None:
    """Points at 2.9 and 3.1 std from a mode, the ring's centre and a NaN: only the first counts;
    the histogram is that of the high-quality samples only (reverse KL log 8), NaN without any."""
    toy = experiment("toy_mixtures")
    ring = toy.DISTRIBUTIONS["ring"]
    mode = ring.means_array()[5]
    step = np.array([ring.std, 0.0], np.float32)
    samples = np.stack([mode + 2.9 * step, mode + 3.1 * step, [0.0, 0.0], [np.nan, 0.0]])
    assert toy.mode_counts(samples, ring).tolist() == [0, 0, 0, 0, 0, 1, 0, 0]
    metrics = toy.mode_metrics(samples.reshape(4, 1, 1, 2), ring)  # image layout accepted too
    assert metrics["modes"] == 1 and metrics["high_quality"] == 0.25
    assert metrics["reverse_kl"] == pytest.approx(math.log(8), rel=1e-12)
    assert math.isnan(toy.mode_metrics(samples[1:], ring)["reverse_kl"])
    with pytest.raises(ValueError, match=r"shape \(4, 3\)"):
        toy.mode_metrics(np.zeros((4, 3)), ring)


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_the_mixtures_own_samples_score_the_gaussian_three_sigma_mass(experiment, name) -> None:
    """2,500 draws of the true mixture: every mode covered and P(chi2_2 < 9) = 1 - e^-4.5 =
    98.89% high quality (binomial std 0.2%)."""
    toy = experiment("toy_mixtures")
    dist = toy.DISTRIBUTIONS[name]
    samples = toy.sample(dist, jax.random.PRNGKey(0), 2500)
    metrics = toy.mode_metrics(samples, dist)
    assert metrics["modes"] == dist.num_modes
    assert metrics["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.01)
    assert 0.0 < metrics["reverse_kl"] < 0.02  # multinomial noise around 0
    np.testing.assert_array_equal(samples, toy.sample(dist, jax.random.PRNGKey(0), 2500))


def test_pack_sizes_add_rows_whose_step_gets_the_pack_argument(experiment) -> None:
    run = experiment("run")
    args = run._parser().parse_args(["--only", "grid", "--regularisers", "R1", "--packs", "1,2"])
    rows = run.planned_runs(args)
    assert [(r.loss, r.pack) for r in rows] == [
        ("non_saturating", 1), ("non_saturating", 2), ("hinge", 1), ("hinge", 2),
    ]  # fmt: skip
    assert rows[0].step_kwargs() == {"loss": "non_saturating", "r1_gamma": 0.1}
    assert rows[1].step_kwargs() == {"loss": "non_saturating", "r1_gamma": 0.1, "pack": 2}


def test_tiny_end_to_end_run_is_reproducible_and_reused(experiment, tmp_path, capsys) -> None:
    """Two seeds, 4 steps, widths 8 through run.main on the grid (whose centre mode an untrained
    generator already hits): the JSON and table are consistent, a rerun reuses the row, and a
    fresh rerun gives bit-identical samples and metrics."""
    run = experiment("run")
    argv = [
        "--out", str(tmp_path), "--only", "grid", "--losses", "hinge", "--regularisers", "R1",
        "--steps", "4", "--eval-every", "2", "--g-width", "8", "--d-width", "8",
        "--batch-size", "16", "--seeds", "0,1", "--no-plot",
    ]  # fmt: skip
    results = run.main(argv)
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(
        json.dumps(run._no_nan(results))
    )
    (row,) = results["runs"]
    assert (row["loss"], row["regulariser"], row["step_kwargs"]) == (
        "hinge", "R1", {"loss": "hinge", "r1_gamma": 0.1},
    )  # fmt: skip
    assert [e["step"] for e in row["trajectory"]] == [2, 4]
    hq = [m["high_quality"] for m in row["per_seed"]["raw"]]
    assert len(hq) == 2 and row["summary"]["raw"]["high_quality"]["mean"] == pytest.approx(
        np.mean(hq)
    )
    assert "| hinge | R1 0.1 | 1 |" in (tmp_path / "results.md").read_text()
    assert row["summary"]["raw"]["high_quality"]["mean"] > 0  # a number to reproduce
    with np.load(tmp_path / "samples.npz") as samples:
        first_samples = samples["run0"]
    assert first_samples.shape == (2500, 2)

    capsys.readouterr()
    run.main(argv)
    assert "reused Run(dataset='grid', loss='hinge'" in capsys.readouterr().out
    fresh = run.main([*argv, "--fresh"])["runs"][0]
    assert run._no_nan(fresh["trajectory"]) == run._no_nan(row["trajectory"])
    with np.load(tmp_path / "samples.npz") as samples:
        np.testing.assert_array_equal(samples["run0"], first_samples)


def test_an_interrupted_run_keeps_every_finished_row_and_tables_them_in_order(
    experiment, tmp_path, monkeypatch
) -> None:
    """A run that plans rows already in results.json, interrupted before reaching them, keeps
    them; the table lists rows by loss, regulariser, then pack, whatever order they ran in."""
    run = experiment("run")
    argv = [
        "--out", str(tmp_path), "--only", "grid", "--losses", "hinge", "--regularisers", "none,R1",
        "--steps", "2", "--eval-every", "2", "--g-width", "8", "--d-width", "8",
        "--batch-size", "16", "--seeds", "0", "--no-plot",
    ]  # fmt: skip
    run.main(argv)
    before = {r["key"] for r in json.loads((tmp_path / "results.json").read_text())["runs"]}
    assert len(before) == 2
    real_execute, calls = run.execute, []

    def interrupted_after_one(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:  # hinge + none, pack 2 ran; hinge + R1, pack 2 is next
            raise KeyboardInterrupt
        return real_execute(*args, **kwargs)

    monkeypatch.setattr(run, "execute", interrupted_after_one)
    with pytest.raises(KeyboardInterrupt):
        run.main([*argv, "--packs", "1,2"])
    saved = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert before <= {r["key"] for r in saved} and len(saved) == 3
    monkeypatch.setattr(run, "execute", real_execute)
    run.main([*argv, "--packs", "2,1"])  # pack 2 planned first
    table = (tmp_path / "results.md").read_text()
    order = ["| hinge | none | 1 |", "| hinge | none | 2 |", "| hinge | R1 0.1 | 1 |",
             "| hinge | R1 0.1 | 2 |"]  # fmt: skip
    positions = [table.index(row) for row in order]
    assert positions == sorted(positions)

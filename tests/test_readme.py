"""The README's set-up commands and Python example stay true."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_opens_with_the_two_setup_commands_and_ci_runs_the_second() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    assert blocks[0].strip().startswith("pip install -e '.[data]' && genjax-models train gan")
    test_command = "pip install -e '.[test]' && python -m pytest -n 2 --dist loadfile"
    assert blocks[1].strip() == test_command
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert test_command in ci


def test_readme_python_example_trains() -> None:
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", README, re.S) if "make_gan_step" in c]
    code = code.replace("GANConfig(base_width=32)", "GANConfig(base_width=4, latent_dim=8)")
    rng = np.random.default_rng(0)
    batches = [rng.uniform(-1, 1, (8, 32, 32, 1)).astype(np.float32) for _ in range(3)]
    namespace: dict = {"my_batches": batches}
    exec(compile(code, "README.md", "exec"), namespace)
    assert int(namespace["state"].step) == 3
    assert np.isfinite(float(namespace["metrics"]["g_loss"]))


def test_readme_transformer_example_runs() -> None:
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", README, re.S) if "beam_search" in c]
    code = code.replace("d_model=128, mlp_dim=512", "d_model=16, mlp_dim=32, num_heads=2")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["logits"].shape == (1, 3, 259)
    assert namespace["tokens"].shape == (1, 4, 16) and namespace["scores"].shape == (1, 4)
    assert np.all(np.diff(np.asarray(namespace["scores"])[0]) <= 0)  # best first


def test_benchmark_guide_table_is_generated_from_the_results_json() -> None:
    """`python benchmarks/report.py --write` keeps the Benchmarks guide's table (the README links
    to it) equal to benchmarks/results/*.json."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "report.py"
    spec = importlib.util.spec_from_file_location("report", path)
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    rows = report.markdown(report.load_results())
    guide = (Path(__file__).resolve().parents[1] / "docs" / "guides" / "benchmarks.md").read_text()
    assert report.table_block(guide) == rows
    assert "docs/guides/benchmarks.md" in README
    assert rows.count("\n") >= 4  # header, separator and at least two measured rows


@pytest.mark.parametrize(
    ("guide", "key"),
    [
        ("gan.md", "make_gan_step"),
        ("discriminative_generative.md", "sample_class_conditional"),
        ("translation.md", "beam_search"),
    ],
)
def test_the_guides_show_the_readme_python_examples_that_these_tests_run(guide, key) -> None:
    """The documentation's guides repeat the README's examples word for word, so the tests above
    also prove the guides' code."""
    guides = Path(__file__).resolve().parents[1] / "docs" / "guides"
    blocks = re.findall(r"```python\n(.*?)```", (guides / guide).read_text(), re.S)
    (readme_code,) = [c for c in re.findall(r"```python\n(.*?)```", README, re.S) if key in c]
    assert readme_code in blocks


def test_readme_generative_classifier_example_fits_classifies_and_samples() -> None:
    (code,) = [
        c
        for c in re.findall(r"```python\n(.*?)```", README, re.S)
        if "sample_class_conditional" in c
    ]
    code = code.replace("range(500)", "range(200)")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400).astype(np.int32)
    centres = np.where(labels[:, None] == 0, [10.0, 3.0], [12.0, 1.0])
    features = (rng.normal(size=(400, 2)) * [3.0, 0.5] + centres).astype(np.float32)
    namespace: dict = {"features": features, "labels": labels}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["log_joint"].shape == (400, 2)
    posterior = np.asarray(namespace["posterior"])
    np.testing.assert_allclose(posterior.sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean(posterior.argmax(axis=1) == labels) > 0.95
    assert namespace["samples"].shape == (2, 2)

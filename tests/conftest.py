"""Shared fixtures: the ``digits`` dataset is generated once per session into a tmp dir.

Every process of a test session (this one and the training runs the end-to-end tests start:
train, kill, resume) shares one persistent XLA compilation cache, so a tiny model's step compiled
by one process is loaded by the next instead of compiled again. A cache hit returns the program
that was compiled, so results are unchanged; tests that count compilations remove the variable.
The test processes themselves keep JAX's default CPU runtime (see below).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _XLA_CACHE = tempfile.mkdtemp(prefix="genjax-tests-xla-cache-")
    atexit.register(shutil.rmtree, _XLA_CACHE, True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _XLA_CACHE
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"

import jax  # noqa: E402

# Start JAX's backends now, so that configure_cpu_runtime (called by cli.main, which some tests
# call in-process) is a no-op in every test process whichever test runs first; the training
# processes that tests start get it, as users' runs do.
jax.devices()


@pytest.fixture(scope="session")
def digits_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TFDS data_dir with ``digits`` prepared through the public loader (offline)."""
    pytest.importorskip("tensorflow_datasets")
    from genjax_models.data import load_image_dataset

    data_dir = tmp_path_factory.mktemp("tfds")
    load_image_dataset("digits", "test", data_dir=data_dir)
    return data_dir


@pytest.fixture(scope="session")
def number_words_data_dir(digits_data_dir: Path) -> Path:
    """The session data_dir with ``number_words/en_fr`` prepared too (offline, a few seconds)."""
    from genjax_models.data import load_text_pairs

    load_text_pairs("number_words/en_fr", "validation", data_dir=digits_data_dir)
    return digits_data_dir


@pytest.fixture(scope="session")
def elephants_mice_data_dir(digits_data_dir: Path) -> Path:
    """The session data_dir with ``elephants_mice`` (default ``photos`` config) prepared too."""
    from genjax_models.data.features import load_feature_dataset

    load_feature_dataset("elephants_mice", "test", data_dir=digits_data_dir)
    return digits_data_dir


@pytest.fixture(scope="session")
def digits_classifier_32(digits_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The CNN digits classifier (32x32, 300 steps) that GAN quality tests measure samples with."""
    from genjax_models.runs.gan_evaluation import ensure_eval_classifier

    return ensure_eval_classifier(
        "digits", (32, 32, 1), 10, str(tmp_path_factory.mktemp("digits_classifier")),
        data_dir=str(digits_data_dir), steps=300, log=lambda line: None,
    )  # fmt: skip


@pytest.fixture(scope="session")
def python_docs_data_dir(digits_data_dir: Path) -> Path:
    """The session data_dir with ``python_docs`` prepared too (offline, a few seconds)."""
    from genjax_models.data import load_texts

    load_texts("python_docs", "validation", data_dir=digits_data_dir)
    return digits_data_dir


@pytest.fixture(scope="session")
def digits_raw(digits_data_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{split: {'image': uint8[N, 32, 32, 1], 'label': int64[N]}}`` straight from TFDS."""
    return read_digits_splits(digits_data_dir)


@pytest.fixture(scope="session")
def digits_reader() -> Callable[[Path], dict[str, dict[str, np.ndarray]]]:
    """The function that reads both splits of a prepared ``digits`` data_dir."""
    return read_digits_splits


def read_digits_splits(data_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """Reads both splits of a prepared ``digits`` data_dir as uint8/int64 numpy arrays."""
    import tensorflow_datasets as tfds

    import genjax_models.data.builders.digits  # noqa: F401  (registers the builder)

    builder: Any = tfds.builder("digits", data_dir=str(data_dir))
    assert builder.is_prepared()
    return {
        split: tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        for split in ("train", "test")
    }


TINY_GAN_FLAGS = (
    "--set", "latent_dim=16",
    "--set", "base_width=8",
    "--set", "image_size=16",
    "--batch-size", "16",
)  # fmt: skip


@pytest.fixture(scope="session")
def cli(digits_data_dir: Path) -> Callable[..., Any]:
    """Runs ``genjax-models ARGS`` in a fresh process with the session's digits data_dir.

    Returns the ``subprocess.CompletedProcess`` (text stdout/stderr). ``--data-dir`` is appended
    for ``train`` commands.
    """
    import os
    import subprocess
    import sys

    def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        argv = list(args)
        if argv and argv[0] == "train" and "--data-dir" not in argv:
            argv += ["--data-dir", str(digits_data_dir)]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        return subprocess.run(
            [sys.executable, "-m", "genjax_models.cli", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )

    return run


@pytest.fixture(scope="session")
def tiny_gan_flags() -> tuple[str, ...]:
    """CLI flags for a DCGAN small enough to train in seconds (16x16 digits, width 8)."""
    return TINY_GAN_FLAGS

"""Fuzzing with bad inputs: every bad value gets one clear error, never a traceback from a library.

One table of bad CLI command lines (``CLI_CASES``, run in-process through ``cli.main``) and one of
bad Python API calls (``API_CASES``: configs, models' ``apply``, decoding functions, step functions
and the run entry points). Every CLI case must exit with status 2 and print exactly one line
``genjax-models: error: ...`` that names the bad value, with no traceback; every API case must
raise a ``ValueError``/``TypeError`` subclass of our own (not a ``jax``/``flax`` error type) from
a frame inside ``genjax_models`` (validation before jax/flax/tfds/orbax see the value), whose
one-line message names the bad value. The number of bad inputs tried is printed at the end.

Placeholders in CLI argv: ``{w}`` a fresh workdir, ``{nowhere}`` a missing directory, ``{data}``
the session TFDS data_dir (digits, number_words, python_docs prepared), ``{lm}`` / ``{s2s}`` tiny
trained LM / seq2seq runs (1 step, built once per module), ``{long}`` a 700-character text.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_models.cli import main
from genjax_models.configs import (
    ClassifierConfig,
    GANConfig,
    LMConfig,
    TransformerConfig,
)
from genjax_models.data.pipeline import ImageArrays

TRIED = {"cli": 0, "api": 0}
LIBRARY_DIRS = ("jax", "jaxlib", "flax", "optax", "orbax", "tensorflow", "tensorflow_datasets")
LONG = "one two three four five six seven " * 20  # 700 bytes: longer than the tiny max_len

TINY_LM = (
    "--set", "d_model=16", "--set", "num_heads=2", "--set", "num_layers=1",
    "--set", "mlp_dim=32", "--set", "max_len=64",
)  # fmt: skip
TINY_S2S = (
    "--set", "d_model=16", "--set", "num_heads=2", "--set", "num_encoder_layers=1",
    "--set", "num_decoder_layers=1", "--set", "mlp_dim=32", "--set", "max_len=96",
)  # fmt: skip
ONE_STEP = ("--steps", "1", "--batch-size", "2", "--log-every", "1", "--checkpoint-every", "1")


@pytest.fixture(scope="module", autouse=True)
def report_counts() -> Any:
    yield
    total = TRIED["cli"] + TRIED["api"]
    print(
        f"\nbad inputs tried: {total} ({TRIED['cli']} CLI command lines, "
        f"{TRIED['api']} Python API calls), each a one-line error"
    )


@pytest.fixture(scope="module")
def runs(python_docs_data_dir: Path, number_words_data_dir: Path, tmp_path_factory) -> dict:
    """Tiny LM and seq2seq runs (one step each), trained through the CLI in-process."""
    root = tmp_path_factory.mktemp("bad_input_runs")
    data = str(python_docs_data_dir)
    del number_words_data_dir  # the same data_dir, with number_words prepared too
    lm, s2s = root / "lm", root / "s2s"
    common = ("--data-dir", data, *ONE_STEP)
    assert main(["train", "lm", "--workdir", str(lm), *common, *TINY_LM]) == 0
    assert main(
        ["train", "seq2seq", "--workdir", str(s2s), "--train-split", "train[:2%]", *common,
         *TINY_S2S]
    ) == 0  # fmt: skip
    return {"lm": str(lm), "s2s": str(s2s), "data": data}


# (case id, argv, text the one-line error must contain: the bad value)
T = ["train"]
W = ["--workdir", "{w}"]
CLI_CASES: list[tuple[str, list[str], str]] = [
    # argument parsing
    ("no-command", [], "command"),
    ("unknown-command", ["fit"], "'fit'"),
    ("unknown-model", [*T, "vae", *W], "'vae'"),
    ("train-without-workdir", [*T, "gan"], "--workdir"),
    ("unknown-flag", [*T, "gan", *W, "--bogus"], "--bogus"),
    ("steps-not-int", [*T, "gan", *W, "--steps", "ten"], "'ten'"),
    ("batch-not-int", [*T, "lm", *W, "--batch-size", "1.5"], "'1.5'"),
    ("seed-not-int", [*T, "classifier", *W, "--seed", "x"], "'x'"),
    ("bad-gan-loss", [*T, "gan", *W, "--loss", "wgan"], "'wgan'"),
    (
        "cudnn-attention-on-cpu",
        [
            *T,
            "seq2seq",
            *W,
            "--set",
            "attention=cudnn",
            "--set",
            "attention_dropout_rate=0",
            "--set",
            "dtype=bfloat16",
        ],
        "attention='cudnn' needs an NVIDIA GPU",
    ),  # fmt: skip
    (
        "gan-loss-twice",
        [*T, "gan", *W, "--loss", "hinge", "--set", "loss=minimax"],
        "--loss and --set loss=... both given",
    ),
    ("bad-parallel", [*T, "gan", *W, "--parallel", "ddp"], "'ddp'"),
    ("bad-on-nan", [*T, "seq2seq", *W, "--on-nan", "explode"], "'explode'"),
    ("bad-benchmark", ["bench", "resnet"], "'resnet'"),
    ("label-fraction-not-float", [*T, "classifier", *W, "--label-fraction", "half"], "'half'"),
    ("max-new-not-int", ["generate", *W, "--max-new", "many"], "'many'"),
    ("temperature-not-float", ["generate", *W, "--temperature", "hot"], "'hot'"),
    # TrainConfig
    ("zero-steps", [*T, "gan", *W, "--steps", "0"], "steps=0"),
    ("negative-steps", [*T, "lm", *W, "--steps", "-5"], "steps=-5"),
    ("zero-batch", [*T, "seq2seq", *W, "--batch-size", "0"], "batch_size=0"),
    ("negative-log-every", [*T, "gan", *W, "--log-every", "-1"], "log_every=-1"),
    ("zero-checkpoint-every", [*T, "classifier", *W, "--checkpoint-every", "0"], "=0"),
    ("zero-sample-every", [*T, "gan", *W, "--sample-every", "0"], "sample_every=0"),
    ("negative-seed", [*T, "span_corruption", *W, "--seed", "-3"], "--seed: '-3' is invalid"),
    ("huge-seed", [*T, "gan", *W, "--seed", "99999999999999999999"], "'99999999999999999999'"),
    ("sample-negative-seed", ["sample", "gan", *W, "--seed", "-5"], "--seed: '-5'"),
    ("generate-huge-seed", ["generate", *W, "--seed", str(2**31)], f"'{2**31}' is invalid"),
    ("eval-gan-seed", ["eval", "gan", *W, "--seed", "1e3"], "'1e3' is invalid"),
    ("sample-out-not-png", ["sample", "gan", "--workdir", "{lm}", "--out", "s3"], "--out 's3'"),
    ("sample-out-is-dir", ["sample", "gan", "--workdir", "{lm}", "--out", "{lm}"], "a .png file"),
    (
        "workdir-under-a-file",
        [*T, "gan", "--workdir", "{lm}/run.json/w"],
        "run.json' is a file, not a directory",
    ),
    ("data-dir-is-a-file", [*T, "gan", *W, "--data-dir", "{lm}/run.json"], "is a file: pass a"),
    (
        "resume-and-overwrite",
        [*T, "gan", *W, "--resume", "--overwrite"],
        "--resume and --overwrite",
    ),
    ("resume-nothing", [*T, "gan", *W, "--resume", "--steps", "2"], "has no checkpoints"),
    # devices
    ("zero-devices", [*T, "gan", *W, "--devices", "0"], "devices=0"),
    ("too-many-devices", [*T, "lm", *W, "--devices", "4096"], "devices=4096"),
    # --set: keys and values, per model kind
    ("set-not-key-value", [*T, "gan", *W, "--set", "base_width"], "'base_width'"),
    ("gan-unknown-key", [*T, "gan", *W, "--set", "widht=3"], "'widht'"),
    ("gan-image-size-28", [*T, "gan", *W, "--set", "image_size=28"], "image_size=28"),
    ("gan-image-size-4", [*T, "gan", *W, "--set", "image_size=4"], "image_size=4"),
    ("gan-latent-zero", [*T, "gan", *W, "--set", "latent_dim=0"], "latent_dim=0"),
    ("gan-dtype-float64", [*T, "gan", *W, "--set", "dtype=float64"], "'float64'"),
    ("gan-ema-decay-1", [*T, "gan", *W, "--set", "ema_decay=1.0"], "ema_decay=1.0"),
    ("gan-width-not-int", [*T, "gan", *W, "--set", "base_width=wide"], "'wide'"),
    ("gan-n-critic-zero", [*T, "gan", *W, "--set", "n_critic=0"], "n_critic=0"),
    ("gan-augment-unknown", [*T, "gan", *W, "--set", "augment=color,zoom"], "'color,zoom'"),
    ("gan-augment-p", [*T, "gan", *W, "--set", "augment_p=2"], "augment_p=2.0"),
    ("gan-ada-interval", [*T, "gan", *W, "--set", "ada_interval=0"], "ada_interval=0"),
    ("gan-pack-zero", [*T, "gan", *W, "--set", "pack=0"], "pack=0"),
    ("gan-pack-batch", [*T, "gan", *W, "--set", "pack=3", "--batch-size", "8"], "pack=3"),
    ("gan-sn-maybe", [*T, "gan", *W, "--set", "spectral_norm_d=maybe"], "'maybe'"),
    ("gan-negative-classes", [*T, "gan", *W, "--set", "num_classes=-2"], "num_classes=-2"),
    ("classifier-unknown-key", [*T, "classifier", *W, "--set", "depth=3"], "'depth'"),
    ("classifier-architecture", [*T, "classifier", *W, "--set", "architecture=rnn"], "'rnn'"),
    ("classifier-hidden-layers", [*T, "classifier", *W, "--set", "hidden_layers=-1"], "=-1"),
    ("classifier-lr-zero", [*T, "classifier", *W, "--set", "learning_rate=0"], "=0.0"),
    ("classifier-label-fraction-0", [*T, "classifier", *W, "--label-fraction", "0"], "0.0"),
    ("generative-label-fraction", [*T, "class_conditional", *W, "--label-fraction", "2"], "2.0"),
    ("generative-prior", [*T, "class_conditional", *W, "--set", "covariance_prior=-1"], "-1.0"),
    ("generative-b1", [*T, "class_conditional", *W, "--set", "b1=1.5"], "b1=1.5"),
    ("s2s-heads", [*T, "seq2seq", *W, "--set", "d_model=100", "--set", "num_heads=3"], "=3"),
    ("s2s-dropout", [*T, "seq2seq", *W, "--set", "dropout_rate=1.0"], "dropout_rate=1.0"),
    ("s2s-positions", [*T, "seq2seq", *W, "--set", "positions=rotary"], "'rotary'"),
    ("s2s-lr-negative", [*T, "seq2seq", *W, "--set", "learning_rate=-1e-3"], "-0.001"),
    ("s2s-lr-inf", [*T, "seq2seq", *W, "--set", "learning_rate=inf"], "inf"),
    ("s2s-clip-nan", [*T, "seq2seq", *W, "--set", "clip_norm=nan"], "nan"),
    ("s2s-share-maybe", [*T, "seq2seq", *W, "--set", "share_embeddings=maybe"], "'maybe'"),
    ("s2s-warmup-zero", [*T, "seq2seq", *W, "--set", "warmup_steps=0"], "warmup_steps=0"),
    ("s2s-dtype", [*T, "seq2seq", *W, "--set", "dtype=int8"], "'int8'"),
    ("s2s-unknown-key", [*T, "seq2seq", *W, "--set", "layers=2"], "'layers'"),
    (
        "lm-rotary-odd-head",
        [*T, "lm", *W, "--set", "positions=rotary", "--set", "d_model=6", "--set", "num_heads=2"],
        "'rotary'",
    ),  # fmt: skip
    ("lm-unknown-key", [*T, "lm", *W, "--set", "num_decoder_layers=2"], "'num_decoder_layers'"),
    ("span-unknown-key", [*T, "span_corruption", *W, "--set", "noise=0.2"], "'noise'"),
    ("generative-unknown-key", [*T, "class_conditional", *W, "--set", "width=8"], "'width'"),
    ("lm-activation", [*T, "lm", *W, "--set", "activation=tanh"], "'tanh'"),
    ("lm-vocab-3", [*T, "lm", *W, "--set", "vocab_size=3"], "vocab_size=3"),
    ("lm-max-len-0", [*T, "lm", *W, "--set", "max_len=0"], "max_len=0"),
    ("lm-layers-negative", [*T, "lm", *W, "--set", "num_layers=-2"], "num_layers=-2"),
    ("lm-tie-yes", [*T, "lm", *W, "--set", "tie_embeddings=yes"], "'yes'"),
    ("lm-weight-decay", [*T, "lm", *W, "--set", "weight_decay=-0.1"], "-0.1"),
    ("span-density", [*T, "span_corruption", *W, "--set", "noise_density=1.5"], "=1.5"),
    ("span-mean-length", [*T, "span_corruption", *W, "--set", "mean_span_length=0.5"], "=0.5"),
    ("span-piece-1", [*T, "span_corruption", *W, "--set", "piece_length=1"], "piece_length=1"),
    ("span-copies", [*T, "span_corruption", *W, "--set", "copies=0"], "copies=0"),
    # datasets and splits
    (
        "gan-unknown-dataset",
        [*T, "gan", *W, "--dataset", "no_such_images", "--data-dir", "{data}"],
        "'no_such_images'",
    ),  # fmt: skip
    (
        "lm-unknown-dataset",
        [*T, "lm", *W, "--dataset", "no_such_text", "--data-dir", "{data}"],
        "no_such_text",
    ),  # fmt: skip
    (
        "s2s-bad-train-split",
        [*T, "seq2seq", *W, "--train-split", "tra1n", "--data-dir", "{data}", *TINY_S2S],
        "tra1n",
    ),  # fmt: skip
    ("s2s-init-from-nowhere", [*T, "seq2seq", *W, "--init-from", "{nowhere}"], "nowhere"),
    # sample / eval / translate / generate: missing workdirs, runs of another kind, bad flags
    ("sample-missing-workdir", ["sample", "gan", "--workdir", "{nowhere}"], "nowhere"),
    ("sample-num-zero", ["sample", "gan", "--workdir", "{nowhere}", "--num", "0"], "num=0"),
    ("sample-lm-run", ["sample", "gan", "--workdir", "{lm}"], "'lm'"),
    (
        "sample-label-unconditional",
        ["sample", "gan", "--workdir", "{lm}", "--label", "3"],
        "label 3",
    ),  # fmt: skip
    ("eval-gan-missing-workdir", ["eval", "gan", "--workdir", "{nowhere}"], "nowhere"),
    (
        "eval-gan-num-samples",
        ["eval", "gan", "--workdir", "{lm}", "--num-samples", "1"],
        "num_samples=1",
    ),  # fmt: skip
    ("eval-gan-s2s-run", ["eval", "gan", "--workdir", "{s2s}"], "'seq2seq'"),
    ("eval-s2s-missing-workdir", ["eval", "seq2seq", "--workdir", "{nowhere}"], "nowhere"),
    ("eval-s2s-lm-run", ["eval", "seq2seq", "--workdir", "{lm}"], "'lm'"),
    (
        "eval-s2s-beam-zero",
        ["eval", "seq2seq", "--workdir", "{s2s}", "--beam-size", "0"],
        "--beam-size 0",
    ),  # fmt: skip
    (
        "eval-s2s-limit-zero",
        ["eval", "seq2seq", "--workdir", "{s2s}", "--limit", "0"],
        "--limit 0",
    ),  # fmt: skip
    (
        "eval-s2s-bad-split",
        ["eval", "seq2seq", "--workdir", "{s2s}", "--split", "tset", "--data-dir", "{data}"],
        "tset",
    ),  # fmt: skip
    ("translate-missing-workdir", ["translate", "--workdir", "{nowhere}", "hello"], "nowhere"),
    ("translate-lm-run", ["translate", "--workdir", "{lm}", "hello"], "'lm'"),
    (
        "translate-beam-negative",
        ["translate", "--workdir", "{s2s}", "--beam-size", "-1", "hi"],
        "--beam-size -1",
    ),  # fmt: skip
    ("translate-too-long", ["translate", "--workdir", "{s2s}", "{long}"], "max_len"),
    (
        "translate-length-penalty-nan",
        ["translate", "--workdir", "{s2s}", "--length-penalty", "nan", "hi"],
        "nan",
    ),  # fmt: skip
    ("generate-missing-workdir", ["generate", "--workdir", "{nowhere}"], "nowhere"),
    ("generate-s2s-run", ["generate", "--workdir", "{s2s}"], "'seq2seq'"),
    (
        "generate-prompt-too-long",
        ["generate", "--workdir", "{lm}", "--prompt", "{long}", "--max-new", "4"],
        "max_len",
    ),  # fmt: skip
    (
        "generate-max-new-past-max-len",
        ["generate", "--workdir", "{lm}", "--max-new", "500"],
        "--max-new is 500",
    ),  # fmt: skip
    ("generate-max-new-zero", ["generate", "--workdir", "{lm}", "--max-new", "0"], "--max-new 0"),
    ("generate-temperature", ["generate", "--workdir", "{lm}", "--temperature", "-1"], "-1.0"),
    ("generate-temperature-nan", ["generate", "--workdir", "{lm}", "--temperature", "nan"], "nan"),
    ("generate-top-k", ["generate", "--workdir", "{lm}", "--top-k", "-3"], "--top-k -3"),
    ("generate-top-p-zero", ["generate", "--workdir", "{lm}", "--top-p", "0"], "--top-p 0.0"),
    ("generate-top-p-big", ["generate", "--workdir", "{lm}", "--top-p", "1.5"], "--top-p 1.5"),
    ("generate-num-zero", ["generate", "--workdir", "{lm}", "--num", "0"], "--num 0"),
]


def _fill(argv: list[str], request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    values: dict[str, str] = {
        "w": str(tmp_path / "w"),
        "nowhere": str(tmp_path / "nowhere"),
        "long": LONG,
    }
    text = " ".join(argv)
    if "{lm}" in text or "{s2s}" in text:
        values.update(request.getfixturevalue("runs"))
    if "{data}" in text:  # every dataset prepared, so TFDS prints no progress bars
        request.getfixturevalue("number_words_data_dir")
        values["data"] = str(request.getfixturevalue("python_docs_data_dir"))
    return [arg.format(**values) if "{" in arg else arg for arg in argv]


def _assert_one_line_cli_error(argv: list[str], needle: str, capsys) -> str:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse exits itself only for --help/--version
        code = exit_.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, (code, captured.err[-2000:])
    assert "Traceback" not in captured.err + captured.out
    assert len(lines) == 1, lines
    assert lines[0].startswith("genjax-models: error: "), lines
    assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.mark.parametrize("argv,needle", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_bad_command_line_is_one_line_error(argv, needle, request, tmp_path, capsys) -> None:
    TRIED["cli"] += 1
    argv = _fill(argv, request, tmp_path)
    capsys.readouterr()  # drop what preparing a dataset or a run printed
    _assert_one_line_cli_error(argv, needle, capsys)
    assert not (tmp_path / "w").exists()  # refused before the workdir was created


def test_batch_not_divisible_by_devices_is_one_line_error(tmp_path: Path) -> None:
    """Needs several devices, which are fixed when JAX starts: a fresh process with 4 CPUs."""
    TRIED["cli"] += 1
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    argv = ["train", "gan", "--workdir", str(tmp_path / "w"), "--devices", "4"]
    done = subprocess.run(
        [sys.executable, "-m", "genjax_models.cli", *argv, "--batch-size", "10"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("genjax-models: error: "), lines
    assert "batch_size=10 is not divisible by the 4 devices" in lines[0]
    assert "--batch-size 12" in lines[0]


# ---------------------------------------------------------------------------------------------
# Python API


class Env:
    """What API cases may use: tmp dirs, the data_dir and tiny trained runs (built lazily)."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.request, self.tmp = request, tmp_path

    @property
    def data(self) -> str:
        return str(self.request.getfixturevalue("python_docs_data_dir"))

    @property
    def runs(self) -> dict[str, str]:
        return self.request.getfixturevalue("runs")

    def train(self, **fields: Any) -> Any:
        from genjax_models import TrainConfig

        return TrainConfig(**{"workdir": str(self.tmp / "w"), "steps": 1, **fields})


def _cfg(name: str, **fields: Any) -> Callable[[Env], Any]:
    def build(env: Env) -> Any:
        import genjax_models

        return getattr(genjax_models, name)(**fields)

    return build


_MODELS: dict[str, Any] = {}


def tiny_lm(**fields: Any) -> tuple[Any, Any]:
    """``(model, params)`` of a tiny LM (vocab 259, max_len 16)."""
    from genjax_models import LMConfig, make_lm

    config = LMConfig(d_model=16, num_heads=2, num_layers=1, mlp_dim=32, max_len=16, **fields)
    if config not in _MODELS:
        model = make_lm(config)
        _MODELS[config] = (
            model,
            nn.unbox(model.init(jax.random.PRNGKey(0), jnp.ones((1, 4), jnp.int32))),
        )
    model, variables = _MODELS[config]
    return model, variables["params"]


def tiny_transformer() -> tuple[Any, Any]:
    from genjax_models import TransformerConfig, make_transformer

    config = TransformerConfig(
        d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, mlp_dim=32, max_len=16
    )
    if config not in _MODELS:
        model = make_transformer(config)
        x = jnp.ones((1, 4), jnp.int32)
        _MODELS[config] = (model, nn.unbox(model.init(jax.random.PRNGKey(0), x, x)))
    model, variables = _MODELS[config]
    return model, variables["params"]


def lm_apply(tokens: Any) -> Callable[[Env], Any]:
    def run(env: Env) -> Any:
        model, params = tiny_lm()
        return model.apply({"params": params}, tokens)

    return run


def s2s_apply(inputs: Any, targets: Any) -> Callable[[Env], Any]:
    def run(env: Env) -> Any:
        model, params = tiny_transformer()
        return model.apply({"params": params}, inputs, targets)

    return run


def tiny_gan(conditional: bool = False) -> tuple[Any, Any, Any]:
    from genjax_models import GANConfig, make_dcgan

    config = GANConfig(latent_dim=8, base_width=4, image_size=8, num_classes=3 * conditional)
    return (config, *make_dcgan(config))


def gan_apply(which: str, x: Any, labels: Any = None) -> Callable[[Env], Any]:
    def run(env: Env) -> Any:
        _, generator, discriminator = tiny_gan(labels is not None)
        module = generator if which == "G" else discriminator
        extra = () if labels is None else (labels,)
        return nn.unbox(module.init(jax.random.PRNGKey(0), x, *extra, train=False))

    return run


def classifier_apply(x: Any, **fields: Any) -> Callable[[Env], Any]:
    def run(env: Env) -> Any:
        from genjax_models import ClassifierConfig, make_classifier

        config = ClassifierConfig(image_size=8, width=4, feature_dim=8, **fields)
        return make_classifier(config).apply({"params": {}}, x)  # checked before any param

    return run


def gaussian_apply(x: Any) -> Callable[[Env], Any]:
    def run(env: Env) -> Any:
        from genjax_models import ClassConditionalConfig, make_class_conditional

        config = ClassConditionalConfig(num_features=3)
        return make_class_conditional(config).apply({"params": {}}, x)

    return run


def toy_decode(function: str, batch: int = 2, cache_batch: int | None = None, **kwargs: Any):
    """A decoding function on a 5-token toy step function (uniform logits)."""

    def run(env: Env) -> Any:
        from genjax_models import decoding

        def step_fn(cache: Any, tokens: jax.Array) -> tuple[jax.Array, Any]:
            return jnp.zeros((tokens.shape[0], 5)), cache

        cache = {"state": jnp.zeros((cache_batch or batch, 1))}
        args = (jax.random.PRNGKey(0),) if function == "sample_decode" else ()
        options = {"batch_size": batch, "max_len": 4, **kwargs}
        return getattr(decoding, function)(step_fn, cache, *args, **options)

    return run


def abstract_step(make_step: Callable[[], tuple[Any, Callable[[], Any]]], batch: dict[str, Any]):
    """Calls a step function on ``batch`` with a state that is only traced (``jax.eval_shape``:
    nothing is initialised or compiled); the batch stays concrete, so token values are checked."""

    def run(env: Env) -> Any:
        step, init_state = make_step()
        return jax.eval_shape(lambda: step(init_state(), batch, jax.random.PRNGKey(0)))

    return run


def _lm_step() -> tuple[Any, Callable[[], Any]]:
    from genjax_models.configs import TransformerOptimConfig
    from genjax_models.runs.lm import init_lm_state
    from genjax_models.train import make_lm_step

    model, _ = tiny_lm()
    return make_lm_step(model), lambda: init_lm_state(model.config, TransformerOptimConfig(), 0)


def _seq2seq_step() -> tuple[Any, Callable[[], Any]]:
    from genjax_models.configs import TransformerOptimConfig
    from genjax_models.runs.seq2seq import init_seq2seq_state
    from genjax_models.train import make_seq2seq_step

    model, _ = tiny_transformer()
    init = lambda: init_seq2seq_state(model.config, TransformerOptimConfig(), 0)  # noqa: E731
    return make_seq2seq_step(model), init


def _classifier_step() -> tuple[Any, Callable[[], Any]]:
    import optax

    from genjax_models import ClassifierConfig, make_classifier
    from genjax_models.train import init_train_state, make_classifier_step

    model = make_classifier(ClassifierConfig(image_size=8, width=4, feature_dim=8))
    key, example = jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1))
    return make_classifier_step(model), lambda: init_train_state(
        key, model, optax.sgd(0.1), example
    )


def gan_step(**kwargs: Any) -> Callable[[Env], Any]:
    def run(env: Env) -> Any:
        from genjax_models.train import make_gan_step

        _, generator, discriminator = tiny_gan()
        return make_gan_step(generator, discriminator, **kwargs)

    return run


def with_lm_run(call: Callable[[Any], Any]) -> Callable[[Env], Any]:
    def run(env: Env) -> Any:
        from genjax_models.runs import load_lm

        return call(load_lm(env.runs["lm"]))

    return run


def with_s2s_run(call: Callable[[Any], Any]) -> Callable[[Env], Any]:
    def run(env: Env) -> Any:
        from genjax_models.runs import load_seq2seq

        return call(load_seq2seq(env.runs["s2s"]))

    return run


def generate(**kwargs: Any) -> Callable[[Env], Any]:
    def call(run: Any) -> Any:
        from genjax_models.runs import generate_text

        options = {"prompt": "def ", "max_new": 4, **kwargs}
        return generate_text(run.model, run.state.params, run.tokenizer, **options)

    return with_lm_run(call)


def translate(texts: list[str], **kwargs: Any) -> Callable[[Env], Any]:
    def call(run: Any) -> Any:
        from genjax_models.runs import translate_texts

        return translate_texts(run.model, run.state.params, run.tokenizer, texts, **kwargs)

    return with_s2s_run(call)


def call(path: str, *args: Any, **kwargs: Any) -> Callable[[Env], Any]:
    """``module.function(*args, **kwargs)``; the strings ``"{nowhere}"``/``"{lm}"``/``"{s2s}"``/
    ``"{data}"``/``"{train}"`` (a TrainConfig) are filled in from the environment."""

    def run(env: Env) -> Any:
        import importlib

        module, name = path.rsplit(".", 1)
        function = getattr(importlib.import_module(module), name)

        def fill(value: Any) -> Any:
            if not isinstance(value, str):
                return value
            if value == "{nowhere}":
                return str(env.tmp / "nowhere")
            if value in ("{lm}", "{s2s}"):
                return env.runs[value[1:-1]]
            if value == "{data}":
                return env.data
            if value == "{train}":
                return env.train()
            return value

        return function(*map(fill, args), **{k: fill(v) for k, v in kwargs.items()})

    return run


I32 = np.int32
API_CASES: list[tuple[str, Callable[[Env], Any], str]] = [
    # configs
    ("GANConfig-image-size", _cfg("GANConfig", image_size=28), "image_size=28"),
    ("GANConfig-dtype", _cfg("GANConfig", dtype="float64"), "'float64'"),
    ("GANConfig-latent-str", _cfg("GANConfig", latent_dim="100"), "'100'"),
    ("GANConfig-ema-nan", _cfg("GANConfig", ema_decay=float("nan")), "nan"),
    ("ClassifierConfig-one-class", _cfg("ClassifierConfig", num_classes=1), "num_classes=1"),
    ("ClassifierConfig-cnn-features", _cfg("ClassifierConfig", num_features=2), "'cnn'"),
    ("ClassConditional-prior", _cfg("ClassConditionalConfig", covariance_prior=-0.5), "-0.5"),
    ("TransformerConfig-heads", _cfg("TransformerConfig", d_model=100, num_heads=3), "=3"),
    ("TransformerConfig-float-width", _cfg("TransformerConfig", d_model=256.0), "256.0"),
    ("TransformerConfig-smoothing", _cfg("TransformerConfig", label_smoothing=-0.1), "-0.1"),
    ("LMConfig-rotary-odd", _cfg("LMConfig", positions="rotary", d_model=6, num_heads=2), "rotary"),
    ("LMConfig-max-len", _cfg("LMConfig", max_len=0), "max_len=0"),
    ("LMConfig-dtype", _cfg("LMConfig", dtype="fp8"), "'fp8'"),
    ("SpanCorruption-density", _cfg("SpanCorruptionConfig", noise_density=0.0), "=0.0"),
    ("TrainConfig-steps-zero", _cfg("TrainConfig", steps=0), "steps=0"),
    ("TrainConfig-steps-float", _cfg("TrainConfig", steps=2.5), "steps=2.5"),
    ("TrainConfig-batch-bool", _cfg("TrainConfig", batch_size=True), "batch_size=True"),
    ("TrainConfig-on-nan", _cfg("TrainConfig", on_nan="ignore"), "'ignore'"),
    ("TrainConfig-workdir", _cfg("TrainConfig", workdir=""), "workdir=''"),
    ("OptimConfig-lr-zero", _cfg("OptimConfig", learning_rate=0.0), "learning_rate=0.0"),
    ("OptimConfig-lr-inf", _cfg("OptimConfig", learning_rate=float("inf")), "inf"),
    ("OptimConfig-eps-str", _cfg("OptimConfig", eps="1e-8"), "'1e-8'"),
    ("TransformerOptim-clip-nan", _cfg("TransformerOptimConfig", clip_norm=float("nan")), "nan"),
    (
        "TransformerOptim-decay-inf",
        _cfg("TransformerOptimConfig", weight_decay=float("inf")),
        "inf",
    ),
    ("from_dict-unknown", call("genjax_models.configs.from_dict", GANConfig, {"x": 1}), "'x'"),
    (
        "override-bad-int",
        call("genjax_models.configs.override", TransformerConfig(), ["d_model=big"]),
        "'big'",
    ),
    # devices
    ("make_mesh-zero", call("genjax_models.parallel.plans.make_mesh", 0), "devices=0"),
    (
        "make_mesh-too-many",
        call("genjax_models.parallel.plans.make_mesh", 4096),
        "devices=4096",
    ),
    (
        "DataParallel-kind",
        call("genjax_models.parallel.plans.DataParallel", "ddp"),
        "'ddp'",
    ),
    # models' apply / init
    ("Generator-z-shape", gan_apply("G", jnp.zeros((2, 7))), "(2, 7)"),
    ("Discriminator-image-shape", gan_apply("D", jnp.zeros((2, 28, 28, 1))), "(2, 28, 28, 1)"),
    (
        "ConditionalGenerator-labels",
        gan_apply("G", jnp.zeros((2, 8)), jnp.zeros((3,), I32)),
        "(3,)",
    ),
    (
        "ProjectionD-float-labels",
        gan_apply("D", jnp.zeros((2, 8, 8, 1)), jnp.zeros((2,))),
        "float32",
    ),
    ("CNNClassifier-image-shape", classifier_apply(jnp.zeros((2, 16, 16, 1))), "(2, 16, 16, 1)"),
    ("CNNClassifier-flat-images", classifier_apply(jnp.zeros((2, 64))), "(2, 64)"),
    (
        "MLPClassifier-features",
        classifier_apply(jnp.zeros((2, 3)), architecture="mlp", num_features=2),
        "(2, 3)",
    ),  # fmt: skip
    ("Gaussian-features", gaussian_apply(jnp.zeros((2, 4))), "(2, 4)"),
    ("LM-float-tokens", lm_apply(jnp.ones((2, 4), jnp.float32)), "float32"),
    ("LM-1d-tokens", lm_apply(jnp.ones((4,), I32)), "(4,)"),
    ("LM-too-long", lm_apply(jnp.ones((1, 17), I32)), "17"),
    ("LM-out-of-vocab", lm_apply(jnp.full((1, 4), 259, I32)), "259"),
    ("LM-negative-id", lm_apply(jnp.full((1, 4), -1, I32)), "-1"),
    ("EncoderDecoder-long-inputs", s2s_apply(jnp.ones((1, 20), I32), jnp.ones((1, 4), I32)), "20"),
    (
        "EncoderDecoder-oov-targets",
        s2s_apply(jnp.ones((1, 4), I32), jnp.full((1, 4), 999, I32)),
        "999",
    ),  # fmt: skip
    (
        "EncoderDecoder-batch-mismatch",
        s2s_apply(jnp.ones((2, 4), I32), jnp.ones((3, 4), I32)),
        "(3, 4)",
    ),  # fmt: skip
    # decoding functions
    ("greedy-batch-zero", toy_decode("greedy_decode", batch=0), "batch_size=0"),
    ("greedy-max-len-float", toy_decode("greedy_decode", max_len=4.0), "max_len=4.0"),
    ("greedy-eos-out-of-vocab", toy_decode("greedy_decode", eos_id=5), "eos_id=5"),
    ("greedy-cache-batch", toy_decode("greedy_decode", cache_batch=3), "3"),
    ("sample-temperature", toy_decode("sample_decode", temperature=-1.0), "-1.0"),
    ("sample-top-p", toy_decode("sample_decode", top_p=0.0), "top_p=0.0"),
    ("sample-top-k-float", toy_decode("sample_decode", top_k=2.5), "top_k=2.5"),
    ("sample-temperature-str", toy_decode("sample_decode", temperature="hot"), "'hot'"),
    ("beam-size-zero", toy_decode("beam_search", beam_size=0), "beam_size=0"),
    ("beam-pad-negative", toy_decode("beam_search", beam_size=2, pad_id=-1), "pad_id=-1"),
    (
        "filter-logits-top-k",
        call("genjax_models.decoding.filter_logits", jnp.zeros((2, 5)), top_k=-1),
        "top_k=-1",
    ),  # fmt: skip
    (
        "filter-logits-temperature-0",
        call("genjax_models.decoding.filter_logits", jnp.zeros((2, 5)), temperature=0.0),
        "temperature=0.0",
    ),
    # step functions
    ("gan-step-loss", gan_step(loss="relativistic"), "'relativistic'"),
    ("gan-step-n-critic", gan_step(n_critic=0), "n_critic=0"),
    ("gan-step-ema", gan_step(ema_decay=1.0), "ema_decay=1.0"),
    (
        "classifier-step-objective",
        call("genjax_models.train.make_classifier_step", None, objective="marginal"),
        "'marginal'",
    ),  # fmt: skip
    (
        "classifier-step-image-shape",
        abstract_step(
            _classifier_step, {"image": jnp.zeros((2, 9, 9, 1)), "label": jnp.zeros((2,), I32)}
        ),
        "(2, 9, 9, 1)",
    ),
    ("lm-step-missing-key", abstract_step(_lm_step, {"tokens": jnp.ones((2, 4), I32)}), "'inputs'"),
    ("lm-step-float-inputs", abstract_step(_lm_step, {"inputs": jnp.ones((2, 4))}), "float32"),
    ("lm-step-oov", abstract_step(_lm_step, {"inputs": jnp.full((2, 4), 300, I32)}), "300"),
    (
        "seq2seq-step-missing-targets",
        abstract_step(_seq2seq_step, {"inputs": jnp.ones((2, 4), I32)}),
        "'targets'",
    ),
    (
        "seq2seq-step-too-long",
        abstract_step(
            _seq2seq_step, {"inputs": jnp.ones((2, 40), I32), "targets": jnp.ones((2, 4), I32)}
        ),
        "40",
    ),
    # runs: training, loading, generating, translating
    (
        "train_gan-unknown-dataset",
        call(
            "genjax_models.runs.train_gan",
            GANConfig(),
            "{train}",
            dataset="nope",
            data_dir="{data}",
        ),
        "'nope'",
    ),
    (
        "train_classifier-fraction",
        call(
            "genjax_models.runs.train_classifier",
            ClassifierConfig(),
            "{train}",
            label_fraction=0.0,
        ),
        "0.0",
    ),
    (
        "train_lm-vocab",
        call(
            "genjax_models.runs.train_lm",
            LMConfig(vocab_size=300),
            "{train}",
            dataset="python_docs",
            data_dir="{data}",
        ),
        "vocab_size=300",
    ),
    ("load_lm-nowhere", call("genjax_models.runs.load_lm", "{nowhere}"), "nowhere"),
    ("load_seq2seq-lm-run", call("genjax_models.runs.load_seq2seq", "{lm}"), "'lm'"),
    ("load_gan-s2s-run", call("genjax_models.runs.load_gan", "{s2s}"), "'seq2seq'"),
    ("sample_gan-num", call("genjax_models.runs.sample_gan", "{nowhere}", num=-4), "num=-4"),
    (
        "evaluate_gan-num",
        call("genjax_models.runs.evaluate_gan", "{nowhere}", num_samples=0),
        "num_samples=0",
    ),  # fmt: skip
    (
        "evaluate_seq2seq-beam",
        call("genjax_models.runs.evaluate_seq2seq", "{s2s}", beam_size=0),
        "beam_size=0",
    ),  # fmt: skip
    ("generate_text-prompt-too-long", generate(prompt=LONG), "max_len"),
    ("generate_text-max-new", generate(max_new=0), "0"),
    ("generate_text-top-k-float", generate(top_k=1.5), "top_k=1.5"),
    ("generate_text-num", generate(num=0), "num=0"),
    ("translate_texts-beam-zero", translate(["one"], beam_size=0), "beam_size=0"),
    ("translate_texts-too-long", translate(["one", LONG]), "input 1"),
    ("translate_texts-not-strings", translate([b"one"]), "b'one'"),
    (
        "ImageArrays-uint8",
        call(
            "genjax_models.data.pipeline.ImageArrays",
            np.zeros((2, 8, 8, 1), np.uint8),
            np.zeros((2,), I32),
            10,
            "digits",
            "train",
        ),
        "uint8",
    ),  # fmt: skip
    (
        "EpochBatcher-seed",
        lambda env: __import__("genjax_models.data").data.EpochBatcher(
            ImageArrays(np.zeros((8, 8, 8, 1), np.float32), np.zeros((8,), I32), 10, "d", "train"),
            4,
            -1,
        ),
        "seed=-1",
    ),  # fmt: skip
]


def _innermost_frame(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    return frames[-1].filename if frames else ""


def assert_clean_api_error(err: BaseException, needle: str) -> None:
    """Our own ValueError/TypeError, raised in genjax_models code, one line naming ``needle``."""
    assert isinstance(err, (ValueError, TypeError)), repr(err)
    module = type(err).__module__
    assert module.split(".")[0] not in LIBRARY_DIRS, f"{module}.{type(err).__name__}: {err}"
    innermost = Path(_innermost_frame(err)).parts
    assert "genjax_models" in innermost, f"raised in {'/'.join(innermost)}: {err}"
    assert not any(part in LIBRARY_DIRS for part in innermost), "/".join(innermost)
    message = str(err)
    assert "\n" not in message.strip(), message
    assert needle in message, (needle, message)


@pytest.mark.parametrize(
    "factory,needle", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES]
)
def test_bad_api_call_raises_clear_error(factory, needle, request, tmp_path) -> None:
    TRIED["api"] += 1
    env = Env(request, tmp_path)
    with pytest.raises(Exception) as info:  # noqa: PT011 (checked below)
        factory(env)
    assert_clean_api_error(info.value, needle)
    assert not (tmp_path / "w").exists()


def test_case_table_is_large_and_has_unique_ids() -> None:
    ids = [c[0] for c in CLI_CASES] + [c[0] for c in API_CASES]
    assert len(set(ids)) == len(ids)
    assert len(CLI_CASES) >= 40 and len(API_CASES) >= 40

"""``genjax-models train lm`` on python_docs and ``generate``: a tiny LM learns, then writes."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_models.models.decoder_only import uncached_lm_fn
from genjax_models.models.transformer import BOS_ID, EOS_ID
from genjax_models.runs.lm import load_lm

TINY_LM_FLAGS = (
    "--set", "d_model=64", "--set", "num_heads=4", "--set", "num_layers=2", "--set", "mlp_dim=256",
    "--set", "max_len=64", "--set", "dropout_rate=0", "--set", "learning_rate=3e-3",
    "--set", "warmup_steps=100", "--batch-size", "16",
)  # fmt: skip
PROMPT = "The for statement"


def _validation_rows(workdir: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row for row in rows if row["split"] == "validation"}


@pytest.fixture(scope="module")
def lm_workdir(cli, python_docs_data_dir, tmp_path_factory) -> Path:
    """A 400-step byte-level LM (2 layers, width 64) trained on python_docs (about 30 s)."""
    del python_docs_data_dir  # prepared in the data_dir that `cli` passes
    workdir = tmp_path_factory.mktemp("lm") / "run"
    done = cli(
        "train", "lm", "--dataset", "python_docs", "--workdir", str(workdir), "--steps", "400",
        "--log-every", "100", "--sample-every", "200", "--checkpoint-every", "400", *TINY_LM_FLAGS,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "genjax-models: validation loss" in done.stdout and "perplexity" in done.stdout
    return workdir


LLAMA_FLAGS = (
    "--set", "preset=llama", "--set", "d_model=64", "--set", "num_heads=4", "--set", "num_layers=2",
    "--set", "max_len=64", "--set", "dropout_rate=0", "--set", "learning_rate=3e-3",
    "--set", "warmup_steps=100", "--set", "scan_layers=true", "--set", "remat=minimal",
    "--batch-size", "16",
)  # fmt: skip


@pytest.fixture(scope="module")
def llama_workdir(cli, python_docs_data_dir, tmp_path_factory) -> Path:
    """A 300-step Llama-shaped LM (``--set preset=llama``, scanned, minimal remat) on python_docs."""
    del python_docs_data_dir
    workdir = tmp_path_factory.mktemp("llama") / "run"
    done = cli(
        "train", "lm", "--dataset", "python_docs", "--workdir", str(workdir), "--steps", "300",
        "--log-every", "100", "--sample-every", "150", "--checkpoint-every", "300", *LLAMA_FLAGS,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


@pytest.mark.slow
def test_llama_preset_trains_a_scanned_gqa_swiglu_rmsnorm_lm(llama_workdir) -> None:
    """The preset fills what the user left unset (the SwiGLU width from d_model 64, one KV head
    for 4 query heads), the layers are one scanned stack without biases, and it learns."""
    run = load_lm(str(llama_workdir))
    config = dataclasses.asdict(run.config)
    assert {k: config[k] for k in ("norm", "activation", "positions", "num_kv_heads")} == {
        "norm": "rmsnorm", "activation": "swiglu", "positions": "rotary", "num_kv_heads": 1
    }  # fmt: skip
    assert config["use_bias"] is False and config["mlp_dim"] == 192 and config["scan_layers"]
    params = run.state.params["decoder"]
    layers = params["layers"]
    assert jax.tree.leaves(layers)[0].shape[0] == 2 and not any(
        k.startswith("layer_") for k in params
    )
    names = [
        "/".join(str(k.key) for k in path)
        for path, _ in jax.tree_util.tree_leaves_with_path(layers)
    ]
    assert not [n for n in names if n.endswith("bias")], names
    assert layers["self_attention"]["key_value"]["kernel"].shape == (
        2,
        64,
        2,
        1,
        16,
    )  # (layers, d, k|v, G, Dh)
    rows = _validation_rows(llama_workdir)
    assert (
        rows[300]["nll"] < 0.8 * run.info["unigram_entropy"] and rows[300]["nll"] < rows[150]["nll"]
    )


@pytest.mark.slow
def test_tiny_lm_lowers_validation_loss_well_below_the_unigram_entropy(lm_workdir) -> None:
    info = json.loads((lm_workdir / "run.json").read_text())["info"]
    entropy = info["unigram_entropy"]
    assert 3.0 < entropy < 3.6  # bytes of English prose and code: about 3.3 nats
    rows = _validation_rows(lm_workdir)
    assert set(rows) == {200, 400}
    final = rows[400]
    print(f"validation nll {final['nll']:.3f} vs unigram entropy {entropy:.3f} nats/token")
    assert final["nll"] < 0.8 * entropy
    assert final["nll"] < info["unigram_cross_entropy"] - 0.6
    assert final["nll"] < rows[200]["nll"]
    assert final["perplexity"] == pytest.approx(math.exp(final["nll"]), rel=1e-6)
    assert final["bits_per_token"] == pytest.approx(final["nll"] / math.log(2), rel=1e-6)
    sample = (lm_workdir / "samples" / "step_000400.txt").read_text()
    assert sample.startswith(PROMPT) and len(sample) > len(PROMPT) + 20


@pytest.mark.slow
@pytest.mark.parametrize("run", ["lm_workdir", "llama_workdir"])
def test_generate_cli_greedy_equals_the_uncached_model(cli, run, request) -> None:
    lm_workdir = request.getfixturevalue(run)
    args = ("generate", "--workdir", str(lm_workdir), "--prompt", PROMPT, "--max-new", "40")
    greedy = cli(*args, "--temperature", "0")
    assert greedy.returncode == 0, greedy.stderr[-3000:]
    assert greedy.stdout.startswith(PROMPT)
    assert cli(*args, "--temperature", "0", "--seed", "7").stdout == greedy.stdout
    # Reference: re-run the whole model on BOS + prompt + generated bytes at every step.
    run = load_lm(str(lm_workdir))
    full_fn = jax.jit(uncached_lm_fn(run.model, run.state.params))
    tokens = [BOS_ID, *run.tokenizer.encode(PROMPT, add_eos=False)]
    for _ in range(40):
        buffer = np.zeros((1, 64), np.int32)
        buffer[0, : len(tokens)] = tokens
        chosen = int(np.argmax(np.asarray(full_fn(jnp.asarray(buffer)))[0, len(tokens) - 1]))
        tokens.append(chosen)
        if chosen == EOS_ID:
            break
    assert greedy.stdout.rstrip("\n") == PROMPT + run.tokenizer.decode(tokens[1 + len(PROMPT) :])
    sampled = cli(*args, "--num", "3", "--seed", "1")
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    texts = sampled.stdout.rstrip("\n").split("\n\n")
    assert len(texts) >= 3 and sampled.stdout.count(PROMPT) == 3


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (
            ("--max-new", "60"),
            "the prompt is 17 tokens and --max-new is 60, but the model's "
            "max_len is 64 positions: use --max-new 47 or less",
        ),  # fmt: skip
        (("--top-p", "1.5"), "--top-p 1.5 is invalid: expected 0 < p <= 1 (1 = off)"),
        (("--temperature", "-1"), "--temperature -1.0 is invalid: expected >= 0"),
    ],
)
def test_bad_generate_flags_are_one_line_errors(cli, lm_workdir, args, message) -> None:
    done = cli("generate", "--workdir", str(lm_workdir), "--prompt", PROMPT, *args)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"genjax-models: error: {message}"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("--set", "positions=alibi"), "LMConfig.positions='alibi' is invalid"),
        (("--dataset", "python_docs@source"), "has no Text feature 'source'"),
        (("--set", "vocab_size=300"), "vocab_size=300 but the tokenizer has 259 ids"),
    ],
)
def test_bad_train_lm_flags_are_one_line_errors(
    cli, python_docs_data_dir, tmp_path, args, message
) -> None:
    del python_docs_data_dir
    done = cli("train", "lm", "--workdir", str(tmp_path / "w"), "--steps", "2", *args)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_sample_length_fills_max_len_behind_the_prompt_without_eos() -> None:
    from genjax_models.data import ByteTokenizer
    from genjax_models.runs.lm import (
        SAMPLE_PROMPT,
        SAMPLE_TOKENS,
        check_generation_length,
        sample_length,
    )

    tokenizer = ByteTokenizer()
    prompt = len(SAMPLE_PROMPT.encode("utf-8"))
    assert sample_length(prompt + 1, tokenizer) == 1  # one free position: one token
    assert sample_length(prompt + 40, tokenizer) == 40
    assert sample_length(prompt, tokenizer) == 0 and sample_length(prompt - 5, tokenizer) == 0
    assert sample_length(10_000, tokenizer) == SAMPLE_TOKENS
    check_generation_length(prompt, sample_length(prompt + 1, tokenizer), prompt + 1)

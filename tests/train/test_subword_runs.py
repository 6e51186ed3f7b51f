"""``--tokenizer sentencepiece --vocab-size N``: the vocabulary is trained on the run's training
text, saved in the workdir, and what generate, translate, --resume and --init-from use."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("sentencepiece")

from genjax_models.data import load_tokenizer
from genjax_models.data.sentencepiece_tokenizer import SentencePieceTokenizer
from genjax_models.models.decoder_only import uncached_lm_fn
from genjax_models.models.transformer import BOS_ID, EOS_ID
from genjax_models.runs.lm import load_lm
from genjax_models.runs.seq2seq import load_seq2seq
from genjax_models.runs.translation import translate_texts

SUBWORDS = ("--tokenizer", "sentencepiece", "--vocab-size", "512")
TINY_LM = (
    "--set", "d_model=32", "--set", "num_heads=2", "--set", "num_layers=2", "--set", "mlp_dim=64",
    "--set", "max_len=64", "--set", "dropout_rate=0", "--set", "learning_rate=3e-3",
    "--set", "warmup_steps=20", "--batch-size", "8", "--log-every", "20",
)  # fmt: skip
TINY_SEQ2SEQ = (
    "--set", "d_model=16", "--set", "mlp_dim=32", "--set", "num_heads=2",
    "--set", "num_encoder_layers=1", "--set", "num_decoder_layers=1", "--set", "max_len=80",
    "--batch-size", "16", "--log-every", "2", "--sample-every", "4", "--checkpoint-every", "4",
)  # fmt: skip
PROMPT = "The for statement"
TRAINED = "SentencePiece vocabulary of 512 ids"


@pytest.fixture(scope="module")
def lm_workdir(cli, python_docs_data_dir, tmp_path_factory) -> Path:
    """A 40-step LM on a 512-id vocabulary trained on python_docs' training split."""
    del python_docs_data_dir
    workdir = tmp_path_factory.mktemp("subword_lm") / "run"
    done = cli(
        "train", "lm", "--workdir", str(workdir), "--steps", "40", "--sample-every", "40",
        "--checkpoint-every", "20", *SUBWORDS, *TINY_LM,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert TRAINED in done.stdout
    return workdir


@pytest.mark.slow
def test_lm_run_saves_its_trained_vocabulary_and_scores_bits_per_byte(lm_workdir) -> None:
    tokenizer = load_tokenizer(lm_workdir / "tokenizer.json")
    assert isinstance(tokenizer, SentencePieceTokenizer) and tokenizer.vocab_size == 512
    run = load_lm(str(lm_workdir))
    assert run.tokenizer == tokenizer and run.config.vocab_size == 512
    assert run.identity["tokenizer"] == {
        "kind": "sentencepiece", "vocab_size": 512, "model_type": "unigram"
    }  # fmt: skip
    rows = [json.loads(line) for line in (lm_workdir / "metrics.jsonl").read_text().splitlines()]
    (last,) = [row for row in rows if row["split"] == "validation"]
    # bits per byte = bits per token / bytes per token; 512 ids give over 1.5 bytes per token
    assert 0 < last["bits_per_byte"] < last["bits_per_token"] / 1.5


@pytest.mark.slow
def test_generate_uses_the_run_vocabulary(cli, lm_workdir) -> None:
    """Greedy ``generate`` equals re-running the uncached model on the subword ids of the prompt
    and of its own output, decoded with the workdir's SentencePiece model."""
    greedy = cli("generate", "--workdir", str(lm_workdir), "--prompt", PROMPT,
                 "--max-new", "20", "--temperature", "0")  # fmt: skip
    assert greedy.returncode == 0, greedy.stderr[-3000:]
    run = load_lm(str(lm_workdir))
    prompt_ids = run.tokenizer.encode(PROMPT, add_eos=False)
    assert len(prompt_ids) < len(PROMPT.encode())  # subwords, not bytes
    full_fn = jax.jit(uncached_lm_fn(run.model, run.state.params))
    tokens = [BOS_ID, *prompt_ids]
    for _ in range(20):
        buffer = np.zeros((1, 64), np.int32)
        buffer[0, : len(tokens)] = tokens
        chosen = int(np.argmax(np.asarray(full_fn(jnp.asarray(buffer)))[0, len(tokens) - 1]))
        tokens.append(chosen)
        if chosen == EOS_ID:
            break
    expected = PROMPT + run.tokenizer.decode(tokens[1 + len(prompt_ids) :])
    assert greedy.stdout.rstrip("\n") == expected


@pytest.mark.slow
def test_resume_reuses_the_saved_vocabulary(cli, lm_workdir) -> None:
    before = (lm_workdir / "tokenizer.json").read_text()
    done = cli("train", "lm", "--workdir", str(lm_workdir), "--steps", "60", "--resume",
               "--sample-every", "60", "--checkpoint-every", "60", *SUBWORDS, *TINY_LM)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming" in done.stdout and TRAINED not in done.stdout
    assert (lm_workdir / "tokenizer.json").read_text() == before
    other = cli("train", "lm", "--workdir", str(lm_workdir), "--steps", "80", "--resume",
                "--tokenizer", "sentencepiece", "--vocab-size", "600", *TINY_LM)  # fmt: skip
    assert other.returncode == 2
    assert "holds a different run (model.vocab_size: saved 512, requested 600)" in other.stderr


@pytest.fixture(scope="module")
def pretrained(cli, number_words_data_dir, python_docs_data_dir, tmp_path_factory) -> Path:
    """4 steps of span corruption on python_docs with a 512-id vocabulary."""
    del number_words_data_dir, python_docs_data_dir
    workdir = tmp_path_factory.mktemp("subword_span") / "run"
    done = cli("train", "span_corruption", "--workdir", str(workdir), "--steps", "4",
               "--set", "piece_length=79", *SUBWORDS, *TINY_SEQ2SEQ)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert TRAINED in done.stdout
    return workdir


@pytest.mark.slow
def test_finetuning_takes_the_pretrained_vocabulary_and_translate_uses_it(
    cli, pretrained, tmp_path
) -> None:
    workdir = tmp_path / "finetune"
    done = cli("train", "seq2seq", "--init-from", str(pretrained), "--train-split", "train[:2%]",
               "--workdir", str(workdir), "--steps", "4", *SUBWORDS, *TINY_SEQ2SEQ)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert TRAINED not in done.stdout  # not retrained: the pretrained run's vocabulary
    assert (workdir / "tokenizer.json").read_text() == (pretrained / "tokenizer.json").read_text()
    texts = ["four hundred and twelve", "seven"]
    translated = cli("translate", "--workdir", str(workdir), *texts)
    assert translated.returncode == 0, translated.stderr[-3000:]
    run = load_seq2seq(str(workdir))
    assert isinstance(run.tokenizer, SentencePieceTokenizer)
    expected = translate_texts(run.model, run.state.params, run.tokenizer, texts)
    assert translated.stdout.splitlines() == expected


@pytest.mark.slow
def test_finetuning_with_another_vocabulary_is_one_line_error(cli, pretrained, tmp_path) -> None:
    done = cli("train", "seq2seq", "--init-from", str(pretrained), "--workdir",
               str(tmp_path / "w"), "--steps", "2", *TINY_SEQ2SEQ)  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pass --tokenizer sentencepiece --vocab-size 512" in lines[0]
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--tokenizer", "sentencepiece"), "--tokenizer sentencepiece needs --vocab-size N"),
        (("--vocab-size", "512"), "--vocab-size 512 is for a trained vocabulary"),
        (("--tokenizer", "sentencepiece", "--vocab-size", "100"), "vocab_size=100 is invalid"),
        (("--tokenizer", "sentencepiece", "--vocab-size", "90000"),
         "vocab_size=90000 is more than SentencePiece can reach on python_docs train: use "
         "--vocab-size"),
        (("--tokenizer", "sentencepiece", "--vocab-size", "512", "--set", "vocab_size=259"),
         "vocab_size=259 but the tokenizer has 512 ids: use --set vocab_size=512"),
    ],
)  # fmt: skip
def test_bad_tokenizer_flags_are_one_line_errors(
    cli, python_docs_data_dir, tmp_path, flags, message
) -> None:
    del python_docs_data_dir
    done = cli("train", "lm", "--workdir", str(tmp_path / "w"), "--steps", "2", *flags)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "w").exists()

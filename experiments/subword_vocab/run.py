"""Bytes vs a trained SentencePiece vocabulary, at equal training time, on both text tasks.

For number_words/en_fr (encoder-decoder) and python_docs (decoder-only LM), each tokenizer in
``ARMS`` gets the same wall-clock budget: a short calibration run measures its steps/s after
compilation, then a fresh run trains for ``budget x steps/s`` steps. Reported per arm: tokens per
example, steps/s, the steps that fit the budget, and quality: test BLEU and exact match (greedy,
``--limit`` test numbers) for translation, validation bits per byte for the LM (nats over all
tokens / ln 2 / UTF-8 bytes of the text, so vocabularies compare).

Every step is a ``genjax-models`` command in a fresh process (printed before it runs). Writes
``results.json`` and ``results.md`` next to this file.

    python experiments/subword_vocab/run.py --root runs/subword_vocab
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SEQ2SEQ_MODEL = (
    "d_model=128", "mlp_dim=512", "num_heads=4", "max_len=80", "attention_dropout_rate=0",
    "learning_rate=2e-3", "warmup_steps=100",
)  # fmt: skip
LM_MODEL = (
    "d_model=128", "mlp_dim=512", "num_heads=4", "num_layers=4", "max_len=256",
    "learning_rate=2e-3", "warmup_steps=100",
)  # fmt: skip
TASKS = {
    "translation": {
        "command": "seq2seq", "dataset": "number_words/en_fr", "model": SEQ2SEQ_MODEL,
        "batch_size": 64, "arms": {"bytes": None, "sentencepiece-384": 384},
    },
    "lm": {
        "command": "lm", "dataset": "python_docs", "model": LM_MODEL, "batch_size": 16,
        "arms": {"bytes": None, "sentencepiece-1024": 1024, "sentencepiece-2048": 2048},
    },
}  # fmt: skip
CALIBRATION_STEPS = 60


def _sets(values) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


def run_command(argv: list[str]) -> float:
    """Runs ``genjax-models ARGV`` in a new process; returns its wall seconds."""
    print("$ genjax-models " + " ".join(argv), flush=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "genjax_models.cli", *argv])
    if done.returncode:
        raise SystemExit(f"command failed with status {done.returncode}")
    return time.perf_counter() - start


def rows(workdir: str, split: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [row for row in map(json.loads, f) if row["split"] == split]


def tokens_per_example(task: str, workdir: str, data_dir: str | None) -> dict[str, float]:
    """Mean ids per training example (EOS included) under the run's saved tokenizer."""
    from genjax_models.data import load_text_pairs, load_texts, load_tokenizer

    tokenizer = load_tokenizer(os.path.join(workdir, "tokenizer.json"))
    if task == "translation":
        pairs = load_text_pairs("number_words/en_fr", "train", data_dir=data_dir)
        return {
            "source_tokens": statistics.fmean(len(tokenizer.encode(t)) for t in pairs.sources),
            "target_tokens": statistics.fmean(len(tokenizer.encode(t)) for t in pairs.targets),
        }
    texts = [t for t in load_texts("python_docs", "train", data_dir=data_dir) if t]
    tokens = [len(tokenizer.encode(t)) for t in texts]
    return {
        "document_tokens": statistics.fmean(tokens),
        "bytes_per_token": sum(len(t.encode()) for t in texts) / sum(tokens),
    }


def run_arm(task: str, arm: str, args: argparse.Namespace) -> dict:
    spec = TASKS[task]
    vocab = spec["arms"][arm]
    tokenizer = ["--tokenizer", "sentencepiece", "--vocab-size", str(vocab)] if vocab else []
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    base = [
        "train", spec["command"], "--dataset", spec["dataset"],
        "--batch-size", str(spec["batch_size"]), *tokenizer, *data, *_sets(spec["model"]),
    ]  # fmt: skip
    calibration = os.path.join(args.root, f"{task}_{arm}_calibration")
    run_command([*base, "--workdir", calibration, "--overwrite", "--steps",
                 str(CALIBRATION_STEPS), "--log-every", "20", "--sample-every", "100000",
                 "--checkpoint-every", "100000"])  # fmt: skip
    # windows 2 and 3: after the first compilations
    rate = statistics.fmean(r["steps_per_sec"] for r in rows(calibration, "train")[1:])
    budget = args.seq2seq_seconds if task == "translation" else args.lm_seconds
    steps = max(int(budget * rate), 20)
    workdir = os.path.join(args.root, f"{task}_{arm}")
    seconds = run_command([*base, "--workdir", workdir, "--overwrite", "--steps", str(steps),
                           "--log-every", str(max(steps // 10, 1)), "--sample-every", str(steps),
                           "--checkpoint-every", str(steps)])  # fmt: skip
    result = {
        "task": task, "arm": arm, "vocab_size": vocab or 259, "calibrated_steps_per_sec": rate,
        "steps": steps, "run_seconds": round(seconds, 1),
        **tokens_per_example(task, workdir, args.data_dir),
    }  # fmt: skip
    (validation,) = rows(workdir, "validation")[-1:]
    if task == "translation":
        run_command(["eval", "seq2seq", "--workdir", workdir, "--split", "test",
                     "--limit", str(args.limit)])  # fmt: skip
        with open(os.path.join(workdir, f"eval_test_beam1_limit{args.limit}.json")) as f:
            evaluation = json.load(f)
        result.update(test_examples=evaluation["examples"], bleu=evaluation["bleu"],
                      exact_match=evaluation["exact_match"])  # fmt: skip
    else:
        result.update(bits_per_byte=validation["bits_per_byte"],
                      bits_per_token=validation["bits_per_token"])  # fmt: skip
    return result


def table(results: list[dict]) -> str:
    lines = []
    for task in TASKS:
        chosen = [r for r in results if r["task"] == task]
        if task == "translation":
            lines += [
                "| tokenizer | ids | tokens/source | tokens/target | steps/s | steps in budget "
                "| test BLEU | exact match |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |",
            ]
            lines += [
                f"| {r['arm']} | {r['vocab_size']} | {r['source_tokens']:.1f} | "
                f"{r['target_tokens']:.1f} | {r['calibrated_steps_per_sec']:.2f} | {r['steps']} | "
                f"{r['bleu']:.2f} | {100 * r['exact_match']:.1f}% |"
                for r in chosen
            ]
        else:
            lines += [
                "",
                "| tokenizer | ids | tokens/document | bytes/token | steps/s | steps in budget "
                "| validation bits/byte |",
                "| --- | --- | --- | --- | --- | --- | --- |",
            ]
            lines += [
                f"| {r['arm']} | {r['vocab_size']} | {r['document_tokens']:.0f} | "
                f"{r['bytes_per_token']:.2f} | {r['calibrated_steps_per_sec']:.2f} | "
                f"{r['steps']} | {r['bits_per_byte']:.3f} |"
                for r in chosen
            ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs/subword_vocab", help="where the runs go")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seq2seq-seconds", type=float, default=300.0)
    parser.add_argument("--lm-seconds", type=float, default=240.0)
    parser.add_argument("--limit", type=int, default=1000, help="test numbers translated")
    parser.add_argument("--tasks", default="translation,lm")
    args = parser.parse_args()
    results = []
    for task in args.tasks.split(","):
        for arm in TASKS[task]["arms"]:
            results.append(run_arm(task, arm, args))
            with open(os.path.join(HERE, "results.json"), "w") as f:
                json.dump({"budget_seconds": {"translation": args.seq2seq_seconds,
                                              "lm": args.lm_seconds},
                           "results": results}, f, indent=2)  # fmt: skip
    with open(os.path.join(HERE, "results.md"), "w") as f:
        f.write(table(results))
    print(table(results))


if __name__ == "__main__":
    main()

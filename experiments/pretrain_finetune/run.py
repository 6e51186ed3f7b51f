"""Pretrain without labels, then fine-tune: number_words/en_fr with 1%, 10%, 100% of the pairs.

Every step is a ``genjax-models`` command (printed before it runs, so the log is the exact list of
commands), run in a fresh process:

1. ``train span_corruption`` of the encoder-decoder on unlabeled text: the python_docs topics plus
   the English and the French sides of the number_words training split as separate documents
   (their pairing is never used).
2. Learning-rate search, the same for both arms: ``train seq2seq`` on 10% of the pairs from scratch
   and ``--init-from`` the pretrained run, for every learning rate in ``--lrs``; each arm keeps the
   rate with the best validation BLEU (greedy, first 256 validation numbers).
3. Both arms at 1% and 100% of the pairs with their chosen rate (same steps for all runs), and a
   control: from scratch on 1% for as many steps as pretraining and fine-tuning together.
4. ``eval seq2seq --split test`` (greedy, all 5,000 test numbers) of these seven runs.

Then writes ``results.json``, ``results.md`` (the table) and ``curves.png`` next to this file.
Finished runs are reused, so an interrupted experiment continues where it stopped.

    python experiments/pretrain_finetune/run.py --root runs/pretrain_finetune
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = (
    "d_model=64", "num_heads=4", "num_encoder_layers=2", "num_decoder_layers=2", "mlp_dim=256",
    "max_len=128", "attention_dropout_rate=0",
)  # fmt: skip
CORPUS = "python_docs,number_words/en_fr@source,number_words/en_fr@target"
FRACTIONS = {"1%": "train[:1%]", "10%": "train[:10%]", "100%": "train"}
ARMS = ("scratch", "pretrained")


def _sets(values) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


SECONDS_FILE = os.path.join(HERE, "seconds.json")


def run_command(argv: list[str], timings: dict, key: str) -> None:
    """Runs ``genjax-models ARGV`` in a new process; the printed line is the exact command.

    Its wall time is added to ``timings`` and saved to ``seconds.json`` at once.
    """
    print("$ genjax-models " + " ".join(argv), flush=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "genjax_models.cli", *argv])
    if done.returncode:
        raise SystemExit(f"command failed with status {done.returncode}")
    timings[key] = round(time.perf_counter() - start, 1)
    with open(SECONDS_FILE, "w") as f:
        json.dump(timings, f, indent=2)


def fresh(workdir: str) -> list[str]:
    """``--overwrite`` for a workdir left by an interrupted run (moved aside, not deleted)."""
    return ["--overwrite"] if os.path.exists(workdir) else []


def finished(workdir: str, steps: int) -> bool:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    return any(row["split"] == "validation" and row["step"] == steps for row in rows)


def validation_rows(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [row for row in map(json.loads, f) if row["split"] == "validation"]


def train_rows(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [row for row in map(json.loads, f) if row["split"] == "train"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs/pretrain_finetune", help="where the runs go")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--pretrain-steps", type=int, default=1500)
    parser.add_argument("--finetune-steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--lrs", default="1e-3,3e-3,6e-3,1.2e-2", help="learning rates searched per arm"
    )
    args = parser.parse_args()
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    common = ["--batch-size", str(args.batch_size), *data]
    timings: dict[str, float] = {}  # seconds per command, kept from earlier invocations
    if os.path.exists(SECONDS_FILE):
        with open(SECONDS_FILE) as f:
            timings = json.load(f)
    pretrained = os.path.join(args.root, "pretrained")
    if not finished(pretrained, args.pretrain_steps):
        run_command(
            ["train", "span_corruption", "--dataset", CORPUS, "--workdir", pretrained,
             *fresh(pretrained),
             "--steps", str(args.pretrain_steps), "--log-every", "50",
             "--sample-every", str(args.pretrain_steps // 3),
             "--checkpoint-every", str(args.pretrain_steps), *common, *_sets(MODEL),
             *_sets(("piece_length=127", "learning_rate=2e-3", "warmup_steps=300"))],
            timings, "pretrain",
        )  # fmt: skip

    def finetune(arm: str, fraction: str, lr: str, steps: int = args.finetune_steps) -> str:
        workdir = os.path.join(args.root, f"{arm}_{fraction.rstrip('%')}pct_lr{lr}")
        if steps != args.finetune_steps:
            workdir += f"_steps{steps}"
        if not finished(workdir, steps):
            init = ["--init-from", pretrained] if arm == "pretrained" else []
            run_command(
                ["train", "seq2seq", "--dataset", "number_words/en_fr",
                 "--train-split", FRACTIONS[fraction], *init, "--workdir", workdir,
                 *fresh(workdir),
                 "--steps", str(steps), "--log-every", "20", "--sample-every", str(steps // 2),
                 "--checkpoint-every", str(steps), *common, *_sets(MODEL),
                 *_sets((f"learning_rate={lr}", "warmup_steps=100"))],
                timings, os.path.basename(workdir),
            )  # fmt: skip
        return workdir

    lrs = args.lrs.split(",")
    search: dict[str, dict[str, float]] = {arm: {} for arm in ARMS}
    for arm in ARMS:
        for lr in lrs:
            search[arm][lr] = validation_rows(finetune(arm, "10%", lr))[-1]["bleu"]
    chosen = {arm: max(lrs, key=lambda lr, arm=arm: search[arm][lr]) for arm in ARMS}
    print(f"learning rates by validation BLEU (10% of the pairs): {search} -> {chosen}")
    results = []
    # The control: from scratch for as many steps as pretraining + fine-tuning together.
    control = ("1%", "scratch", args.pretrain_steps + args.finetune_steps)
    runs = [(f, arm, args.finetune_steps) for f in FRACTIONS for arm in ARMS] + [control]
    for fraction, arm, steps in runs:
        workdir = finetune(arm, fraction, chosen[arm], steps)
        eval_path = os.path.join(workdir, "eval_test_beam1.json")
        if not os.path.exists(eval_path):
            run_command(["eval", "seq2seq", "--workdir", workdir, "--split", "test", *data],
                        timings, f"eval {os.path.basename(workdir)}")  # fmt: skip
        with open(eval_path) as f:
            test = json.load(f)
        with open(os.path.join(workdir, "run.json")) as f:
            run = json.load(f)
        results.append({
            "fraction": fraction, "arm": arm, "learning_rate": float(chosen[arm]),
            "steps": steps,
            "workdir": workdir, "test_bleu": test["bleu"],
            "test_exact_match": test["exact_match"], "test_examples": test["examples"],
            "validation": validation_rows(workdir)[-1], "samples": test["samples"][:3],
            "identity": run["identity"],
        })  # fmt: skip
    write_outputs(args, search, chosen, results, timings)


def write_outputs(args, search, chosen, results, timings) -> None:
    summary = {
        "corpus": CORPUS, "model": list(MODEL), "pretrain_steps": args.pretrain_steps,
        "finetune_steps": args.finetune_steps, "batch_size": args.batch_size,
        "lr_search_validation_bleu": search, "chosen_learning_rate": chosen,
        "results": results, "seconds": timings,
    }  # fmt: skip
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    lines = [
        "| pairs | arm | fine-tuning steps | learning rate | test exact match | test BLEU |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['fraction']} | {r['arm']} | {r['steps']:,} | {r['learning_rate']:g} | "
            f"{100 * r['test_exact_match']:.2f}% | {r['test_bleu']:.2f} |"
        )
    table = "\n".join(lines)
    with open(os.path.join(HERE, "results.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    plot_curves(args.root, results, os.path.join(HERE, "curves.png"))


def plot_curves(root: str, results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fractions = list(FRACTIONS)
    fig, axes = plt.subplots(1, len(fractions) + 1, figsize=(4.2 * (len(fractions) + 1), 3.6))
    pretrain = train_rows(os.path.join(root, "pretrained"))
    axes[0].plot([r["step"] for r in pretrain], [r["nll"] for r in pretrain], color="k")
    axes[0].set(title="span-corruption pretraining", xlabel="step", ylabel="train NLL (nats/token)")
    colors = {"scratch": "tab:blue", "pretrained": "tab:orange"}
    long_colors = {"scratch": "tab:green", "pretrained": "tab:red"}
    for ax, fraction in zip(axes[1:], fractions, strict=True):
        for r in results:
            if r["fraction"] != fraction:
                continue
            rows = train_rows(r["workdir"])
            label = f"{r['arm']} (lr {r['learning_rate']:g}, {r['steps']} steps)"
            color = (colors if r["steps"] == results[0]["steps"] else long_colors)[r["arm"]]
            ax.plot([x["step"] for x in rows], [x["nll"] for x in rows], color=color,
                    alpha=0.6, label=f"{label}, train")  # fmt: skip
            val = validation_rows(r["workdir"])
            ax.plot([x["step"] for x in val], [x["nll"] for x in val], "o--",
                    color=color, label=f"{label}, validation")  # fmt: skip
        ax.set(title=f"fine-tuning on {fraction} of the pairs", xlabel="step", yscale="log",
               ylabel="NLL (nats/token)")  # fmt: skip
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

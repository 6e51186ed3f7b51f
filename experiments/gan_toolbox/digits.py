"""DCGAN vs ResNet on digits, plain and with spectral norm, R1, DiffAugment or ADA, on 100% and 10%
of the training images: the Frechet distance, KID, precision/recall and density/coverage of
``eval gan``.

Every row is two commands of the library's CLI, run as a user would:

    genjax-models train gan --workdir W --steps 2000 --set architecture=... [--set option=...]
        [--data-fraction 0.1]
    genjax-models eval gan --workdir W --classifier-workdir C

with one evaluation classifier ``C`` for all rows (its features define every metric, so the rows
are comparable), trained by the first ``eval``.

    python experiments/gan_toolbox/digits.py                 # all 18 rows (about 45 min on 2 cores)
    python experiments/gan_toolbox/digits.py --archs dcgan --fractions 0.1 --variants plain,DiffAugment

Writes ``digits_results.json`` (every row's settings, metrics and wall times), ``digits_results.md``
(the table), ``digits_metrics.png`` (FD and KID per row) and ``digits_samples/<row>.png`` (each row's
final EMA samples) into ``--out`` (default: this directory); workdirs go under ``--runs`` (default
``runs/gan_toolbox_digits``). A row already in the JSON with the same settings is reused, so an
interrupted table continues (``--fresh`` reruns the rows asked for).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STEPS = 2000
ARCHS = {
    # 16x16 (digits are 8x8 scans): the ResNet at 32x32 costs ~1 s a step on 2 CPU cores
    "dcgan": ["--set", "base_width=32", "--set", "image_size=16"],  # the main job's width
    # SNGAN's ResNet at an eighth of its CIFAR width: G 32 channels per block, D 16
    "resnet": ["--set", "architecture=resnet", "--set", "base_width=8", "--set", "image_size=16"],
}
VARIANTS = {
    "plain": [],
    "SN": ["--set", "spectral_norm_d=true"],
    # R1 with StyleGAN2's lazy regularisation (every 16th critic step, scaled by 16)
    "R1": ["--set", "r1_gamma=0.2", "--set", "r1_interval=16"],
    "DiffAugment": ["--set", "augment=color,translation,cutout"],
    # the same augmentations with ADA's probability: from 0, towards r_t = 0.6 (p can reach 1
    # within 100 kimg, about 1,600 steps of 64)
    "ADA": [
        "--set",
        "augment=color,translation,cutout",
        "--set",
        "augment_p=0",
        "--set",
        "ada_target=0.6",
        "--set",
        "ada_kimg=100",
    ],  # fmt: skip
}
RUN_ORDER = ("plain", "DiffAugment", "SN", "R1", "ADA")
FRACTIONS = (1.0, 0.1)
METRICS = ("frechet_distance", "kid_mean", "kid_std", "precision", "recall", "density", "coverage",
           "recognisable_rate")  # fmt: skip


def row_name(arch: str, variant: str, fraction: float) -> str:
    return f"{arch}_{variant}_{round(fraction * 100)}pct"


def train_flags(arch: str, variant: str, fraction: float) -> list[str]:
    flags = ["--steps", str(STEPS), *ARCHS[arch], *VARIANTS[variant]]
    return [*flags, "--data-fraction", f"{fraction:g}"] if fraction != 1 else flags


def run_cli(args: list[str], log: Path) -> float:
    """``genjax-models ARGS`` in a subprocess, its output appended to ``log``; the wall seconds."""
    start = time.perf_counter()
    with log.open("a") as out:
        done = subprocess.run([sys.executable, "-m", "genjax_models.cli", *args], stdout=out,
                              stderr=subprocess.STDOUT, check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"genjax-models {' '.join(args)} failed ({done.returncode}): see {log}")
    return time.perf_counter() - start


def train_images(log: Path) -> int:
    """How many training images the run used: its own line for a fraction, else all 1,437."""
    found = re.search(r"training on (\d+) images", log.read_text())
    return int(found.group(1)) if found else 1437


def run_row(arch: str, variant: str, fraction: float, runs: Path, out: Path) -> dict[str, Any]:
    name = row_name(arch, variant, fraction)
    workdir, log = runs / name, runs / f"{name}.log"
    classifier = runs / "eval_classifier"
    flags = train_flags(arch, variant, fraction)
    if workdir.exists():
        shutil.rmtree(workdir)
    log.unlink(missing_ok=True)
    train_s = run_cli(["train", "gan", "--workdir", str(workdir), *flags], log)
    eval_s = run_cli(["eval", "gan", "--workdir", str(workdir), "--classifier-workdir",
                      str(classifier)], log)  # fmt: skip
    metrics = json.loads((workdir / "eval.json").read_text())
    samples = out / "digits_samples"
    samples.mkdir(exist_ok=True)
    shutil.copyfile(workdir / "samples" / f"step_{STEPS:06d}.png", samples / f"{name}.png")
    return {
        "arch": arch, "variant": variant, "fraction": fraction, "flags": flags,
        "train_images": train_images(log),
        **{key: metrics[key] for key in METRICS},
        "floor": metrics["real_train_vs_test_frechet_distance"],
        "classifier_test_accuracy": metrics["classifier_test_accuracy"],
        "train_seconds": round(train_s, 1), "eval_seconds": round(eval_s, 1),
    }  # fmt: skip


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| arch | variant | images | FD | KID (mean +- std) | precision | recall | density | "
            "coverage | recognisable | train s |")  # fmt: skip
    lines = [head, "|" + " --- |" * 11]
    for r in rows:
        lines.append(
            f"| {r['arch']} | {r['variant']} | {r['train_images']:,} | {r['frechet_distance']:.1f} "
            f"| {r['kid_mean']:,.0f} +- {r['kid_std']:,.0f} | {r['precision']:.3f} "
            f"| {r['recall']:.3f} | {r['density']:.3f} | {r['coverage']:.3f} "
            f"| {r['recognisable_rate']:.1%} | {r['train_seconds']:.0f} |"
        )
    floor = rows[0]["floor"] if rows else float("nan")
    lines.append("")
    lines.append(f"Floor (1,000 real train digits vs the test digits): FD {floor:.1f}.")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [(a, v) for a in ARCHS for v in VARIANTS if any((r["arch"], r["variant"]) == (a, v)
                                                             for r in rows)]  # fmt: skip
    labels = [f"{a}\n{v}" for a, v in pairs]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    for axis, key, title in ((axes[0], "frechet_distance", "Frechet distance (lower is better)"),
                             (axes[1], "kid_mean", "KID (lower is better)")):  # fmt: skip
        for offset, fraction in ((-0.2, 1.0), (0.2, 0.1)):
            values = []
            for arch, variant in pairs:
                found = [r[key] for r in rows if (r["arch"], r["variant"], r["fraction"])
                         == (arch, variant, fraction)]  # fmt: skip
                values.append(found[0] if found else float("nan"))
            axis.bar([i + offset for i in range(len(labels))], values, width=0.4,
                     label=f"{fraction:.0%} of the images")  # fmt: skip
        if key == "frechet_distance" and rows:
            axis.axhline(rows[0]["floor"], color="k", linestyle="--", linewidth=1, label="floor")
        axis.set_xticks(range(len(labels)), labels, fontsize=8)
        axis.set_title(title)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--variants", default=",".join(RUN_ORDER))
    parser.add_argument("--fractions", default=",".join(f"{f:g}" for f in FRACTIONS))
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--runs", type=Path, default=Path("runs/gan_toolbox_digits"))
    parser.add_argument("--fresh", action="store_true", help="rerun rows already in the JSON")
    args = parser.parse_args()
    archs, variants = args.archs.split(","), args.variants.split(",")
    fractions = [float(f) for f in args.fractions.split(",")]
    unknown = [a for a in archs if a not in ARCHS] + [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(
            f"unknown arch or variant {unknown[0]!r}: expected {list(ARCHS)}, {list(VARIANTS)}"
        )
    args.runs.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "digits_results.json"
    saved = json.loads(results_path.read_text()) if results_path.exists() else {"rows": {}}
    for variant in variants:  # the most telling rows first, should the table be cut short
        for fraction in fractions:
            for arch in archs:
                name = row_name(arch, variant, fraction)
                old = saved["rows"].get(name)
                if old and old["flags"] == train_flags(arch, variant, fraction) and not args.fresh:
                    print(f"{name}: reused", flush=True)
                    continue
                print(f"{name}: training ...", flush=True)
                saved["rows"][name] = row = run_row(arch, variant, fraction, args.runs, args.out)
                print(f"{name}: FD {row['frechet_distance']:.1f}, KID {row['kid_mean']:,.0f}, "
                      f"precision {row['precision']:.3f}, recall {row['recall']:.3f} "
                      f"({row['train_seconds']:.0f} s)", flush=True)  # fmt: skip
                saved["steps"] = STEPS
                results_path.write_text(json.dumps(saved, indent=1) + "\n")
    order = [row_name(a, v, f) for a in ARCHS for f in FRACTIONS for v in VARIANTS]
    rows = [saved["rows"][name] for name in order if name in saved["rows"]]
    (args.out / "digits_results.md").write_text(markdown(rows))
    plot(rows, args.out / "digits_metrics.png")
    print(markdown(rows))


if __name__ == "__main__":
    main()

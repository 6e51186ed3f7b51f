"""Summaries over seeds, the markdown table, and the sample plots of the toy experiment."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import toy_mixtures as toy

METRICS = ("modes", "high_quality", "reverse_kl")


def regulariser_label(run: dict[str, Any]) -> str:
    """``"none"``, ``"R1 0.1"`` (``r1_gamma``) or ``"GP 0.1"`` (``gp_weight``) of a run record."""
    kwargs = run["step_kwargs"]
    parts = [f"R1 {kwargs['r1_gamma']:g}"] if "r1_gamma" in kwargs else []
    parts += [f"GP {kwargs['gp_weight']:g}"] if "gp_weight" in kwargs else []
    return " + ".join(parts) or "none"


def summarise(per_seed: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """``{metric: {"mean", "min", "max", "defined"}}`` over seeds; NaN values (reverse KL without
    any high-quality sample) are left out of the statistics and counted in ``defined``."""
    out = {}
    for name in METRICS:
        values = [m[name] for m in per_seed if not math.isnan(m[name])]
        out[name] = {
            "mean": float(np.mean(values)) if values else float("nan"),
            "min": float(np.min(values)) if values else float("nan"),
            "max": float(np.max(values)) if values else float("nan"),
            "defined": len(values),
        }
    return out


def _cell(stats: dict[str, float], scale: float, digits: int, count: int) -> str:
    if not stats["defined"]:
        return "n/a"
    mean, low, high = (scale * stats[k] for k in ("mean", "min", "max"))
    text = f"{mean:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"
    if stats["defined"] < count:
        text += f" [{stats['defined']} of {count}]"
    return text


def markdown_table(runs: list[dict[str, Any]], dataset: str) -> str:
    """One markdown table of ``dataset``'s runs: mean (min-max) over seeds of the final metrics of
    the generator (raw) and of its EMA."""
    k = toy.DISTRIBUTIONS[dataset].num_modes
    lines = [
        f"| loss | regulariser | pack | modes (of {k}) | high quality % | reverse KL | "
        "EMA modes | EMA high quality % | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        if run["dataset"] != dataset:
            continue
        raw, ema, n = run["summary"]["raw"], run["summary"]["ema"], len(run["seeds"])
        lines.append(
            f"| {run['loss']} | {regulariser_label(run)} | {run['pack']} | "
            f"{_cell(raw['modes'], 1, 1, n)} | {_cell(raw['high_quality'], 100, 1, n)} | "
            f"{_cell(raw['reverse_kl'], 1, 3, n)} | {_cell(ema['modes'], 1, 1, n)} | "
            f"{_cell(ema['high_quality'], 100, 1, n)} | {run['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def acceptance(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets: on the ring 8/8 modes and >= 90% high quality (mean over seeds) with
    a regulariser; on the grid >= 24 of 25 modes. Returns the runs that reach each."""

    def mean(run, name):
        return run["summary"]["raw"][name]["mean"]

    def label(run):
        pack = f", pack {run['pack']}" if run.get("pack", 1) != 1 else ""
        return f"{run['loss']} + {regulariser_label(run)}{pack}"

    ring = [
        label(r)
        for r in runs
        if r["dataset"] == "ring"
        and r["regulariser"] != "none"
        and mean(r, "modes") == 8
        and mean(r, "high_quality") >= 0.9
    ]
    grid = [label(r) for r in runs if r["dataset"] == "grid" and mean(r, "modes") >= 24]
    return {"ring_8_modes_90pct_hq": ring, "grid_24_modes": grid}


def plot_samples(runs: list[dict[str, Any]], dataset: str, path: Path) -> None:
    """A panel per run of ``dataset``: the final samples of its first seed (grey dots) over the
    mode centres (red crosses), titled with that seed's modes and high-quality fraction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [r for r in runs if r["dataset"] == dataset]
    if not chosen:
        return
    dist = toy.DISTRIBUTIONS[dataset]
    rows = sorted({r["loss"] for r in chosen}, key=[r["loss"] for r in chosen].index)
    labels = [regulariser_label(r) for r in chosen]
    cols = sorted(set(labels), key=labels.index)
    fig, axes = plt.subplots(
        len(rows), len(cols), figsize=(2.4 * len(cols), 2.4 * len(rows)), squeeze=False
    )
    means = dist.means_array()
    limit = 1.4 * float(np.abs(means).max())
    for ax in axes.ravel():
        ax.set_axis_off()
    for run in chosen:
        ax = axes[rows.index(run["loss"]), cols.index(regulariser_label(run))]
        ax.set_axis_on()
        points = np.asarray(run["samples_seed0"])
        ax.scatter(points[:, 0], points[:, 1], s=1, c="0.3", alpha=0.4, linewidths=0)
        ax.scatter(means[:, 0], means[:, 1], s=12, c="red", marker="x", linewidths=0.8)
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        final = run["per_seed"]["raw"][0]
        pack = f", pack {run['pack']}" if run["pack"] != 1 else ""
        ax.set_title(
            f"{run['loss']} + {regulariser_label(run)}{pack}\n"
            f"{final['modes']}/{dist.num_modes} modes, {100 * final['high_quality']:.0f}% HQ",
            fontsize=7,
        )
    fig.suptitle(
        f"{dataset}: final samples of seed 0 ({len(points)} points) and mode centres", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

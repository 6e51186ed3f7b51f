"""Losses x regularisers on the two toy mixtures (PacGAN Table 1's metrics), user MLPs.

A user's generator and discriminator (``toy_mixtures.py``, plain ``flax.linen``) trained by the library's
public step, ``genjax_models.train.make_gan_step``, with every loss and with no regulariser, R1 or
the gradient penalty, 3 seeds each, on the ring of 8 Gaussians; a subset on the grid of 25.

    python experiments/gan_toolbox/run.py            # the whole table (about 35 min on 2 cores)
    python experiments/gan_toolbox/run.py --only ring --losses hinge --regularisers R1

Writes ``results.json`` (every number, per seed and per evaluation), ``results.md`` (the tables),
``samples.npz`` (seed 0's final samples) and ``samples_ring.png`` / ``samples_grid.png`` into
``--out`` (default: this directory). A row already in ``results.json`` with the same settings is
reused, so an interrupted grid continues and a changed row reruns alone (``--fresh``: rerun
them); rows the command does not ask for stay in ``results.json`` and the tables.

Adding PacGAN packing is one option: ``--packs 1,2`` runs every row with ``pack=1`` (no packing,
no ``pack`` argument passed) and ``pack=2`` (``make_gan_step(..., pack=2)`` and
``init_gan_state(..., pack=2)``), for a library version that has them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # toy_mixtures.py, toy_training.py, toy_report.py

import numpy as np  # noqa: E402
import toy_mixtures as toy  # noqa: E402
import toy_report as report  # noqa: E402
from toy_training import EVAL_SAMPLES, TrainSettings, train_seeds  # noqa: E402

LOSSES = ("minimax", "non_saturating", "hinge", "wasserstein", "least_squares")
REGULARISERS = {
    "none": {},
    "R1": {"r1_gamma": 0.1},
    "GP": {"gp_weight": 0.1},
}
"""Regulariser name -> the ``make_gan_step`` arguments that switch it on."""
GRID_LOSSES = ("non_saturating", "hinge")
"""The grid of 25 is trained with these losses only (and every regulariser)."""
SETTINGS = {
    "ring": TrainSettings(steps=4000, eval_every=1000),
    "grid": TrainSettings(steps=9000, eval_every=1500),
}
SEEDS = (0, 1, 2)


@dataclasses.dataclass(frozen=True)
class Run:
    """One row of the table: a dataset and the ``make_gan_step`` arguments, for every seed."""

    dataset: str
    loss: str
    regulariser: str
    pack: int = 1
    weight: float | None = None
    """The regulariser's weight (``r1_gamma`` or ``gp_weight``); None: :data:`REGULARISERS`'."""

    def step_kwargs(self) -> dict[str, Any]:
        penalty = dict(REGULARISERS[self.regulariser])
        if self.weight is not None:
            penalty = {name: self.weight for name in penalty}
        kwargs: dict[str, Any] = {"loss": self.loss, **penalty}
        if self.pack != 1:
            kwargs["pack"] = self.pack
        return kwargs


def planned_runs(args: argparse.Namespace) -> list[Run]:
    """Every row the arguments ask for, ring first, in the table's order."""
    runs = []
    for dataset in ("ring", "grid"):
        if args.only not in (None, dataset):
            continue
        losses = LOSSES if dataset == "ring" else GRID_LOSSES
        for loss in losses:
            if args.losses and loss not in args.losses:
                continue
            for regulariser in REGULARISERS:
                if args.regularisers and regulariser not in args.regularisers:
                    continue
                weight = {"R1": args.r1_gamma, "GP": args.gp_weight}.get(regulariser)
                runs.extend(Run(dataset, loss, regulariser, pack, weight) for pack in args.packs)
    return runs


def settings_for(dataset: str, args: argparse.Namespace) -> TrainSettings:
    """The dataset's :data:`SETTINGS` with the command line's overrides."""
    overrides = {
        name: getattr(args, name)
        for name in ("g_width", "d_width", "batch_size", "learning_rate")
        if getattr(args, name) is not None
    }
    steps = args.steps or SETTINGS[dataset].steps
    eval_every = args.eval_every or SETTINGS[dataset].eval_every
    return dataclasses.replace(
        SETTINGS[dataset], steps=steps, eval_every=min(eval_every, steps), **overrides
    )


def _row(dataset: str, step_kwargs: dict[str, Any]) -> str:
    """A table row's identity: the dataset and the step's arguments (settings may differ)."""
    return json.dumps([dataset, step_kwargs], sort_keys=True)


def _key(run: Run, settings: TrainSettings, seeds: tuple[int, ...]) -> str:
    return json.dumps(
        [
            {"dataset": run.dataset, "loss": run.loss, "regulariser": run.regulariser},
            run.pack,
            run.step_kwargs(),
            dataclasses.asdict(settings),
            list(seeds),
        ]
    )


def execute(run: Run, settings: TrainSettings, seeds: tuple[int, ...]) -> dict[str, Any]:
    """Trains one row for every seed; returns its JSON record (final metrics, trajectory)."""
    out = train_seeds(toy.DISTRIBUTIONS[run.dataset], settings, seeds, run.step_kwargs())
    final = out["evals"][-1]
    return {
        **dataclasses.asdict(run),
        "step_kwargs": run.step_kwargs(),
        "settings": dataclasses.asdict(settings),
        "seeds": list(seeds),
        "per_seed": {"raw": final["raw"], "ema": final["ema"]},
        "summary": {"raw": report.summarise(final["raw"]), "ema": report.summarise(final["ema"])},
        "trajectory": out["evals"],
        "seconds": out["seconds"],
        "chunk_seconds": out["chunk_seconds"],
        "samples_seed0": out["samples"][0],
    }


def _parser() -> argparse.ArgumentParser:
    def names(text: str) -> tuple[str, ...]:
        return tuple(part for part in text.split(",") if part)

    def ints(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in names(text))

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE, help="directory of the outputs")
    p.add_argument("--only", choices=("ring", "grid"), help="one dataset only")
    p.add_argument("--losses", type=names, default=(), help="comma-separated subset of LOSSES")
    p.add_argument("--regularisers", type=names, default=(), help="subset of none,R1,GP")
    p.add_argument("--packs", type=ints, default=(1,), help="PacGAN pack sizes, e.g. 1,2")
    p.add_argument("--r1-gamma", type=float, help="override R1's r1_gamma (default 0.1)")
    p.add_argument("--gp-weight", type=float, help="override GP's gp_weight (default 0.1)")
    p.add_argument("--seeds", type=ints, default=SEEDS)
    p.add_argument("--steps", type=int, help="override both datasets' steps")
    p.add_argument("--eval-every", type=int)
    p.add_argument("--g-width", type=int)
    p.add_argument("--d-width", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--fresh", action="store_true", help="rerun rows found in results.json")
    p.add_argument("--no-plot", action="store_true")
    return p


def _check(args: argparse.Namespace) -> None:
    bad = [x for x in args.losses if x not in LOSSES]
    bad += [x for x in args.regularisers if x not in REGULARISERS]
    if bad:
        raise SystemExit(
            f"unknown loss or regulariser {bad[0]!r}: losses {','.join(LOSSES)}; "
            f"regularisers {','.join(REGULARISERS)}"
        )
    if not args.seeds or any(p < 1 for p in args.packs):
        raise SystemExit(f"--seeds {args.seeds} / --packs {args.packs}: need seeds and packs >= 1")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the planned rows, writes the outputs, prints the tables; returns results.json's dict."""
    args = _parser().parse_args(argv)
    _check(args)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, npz_path = args.out / "results.json", args.out / "samples.npz"
    cached: dict[str, dict[str, Any]] = {}
    if json_path.exists() and npz_path.exists() and not args.fresh:
        with np.load(npz_path) as samples:
            for i, record in enumerate(json.loads(json_path.read_text())["runs"]):
                if f"run{i}" in samples:
                    record["samples_seed0"] = samples[f"run{i}"].astype(np.float32)
                    cached[record["key"]] = record

    planned = planned_runs(args)
    # rows of results.json that this command does not plan stay in it (other datasets, losses...)
    planned_rows = {_row(run.dataset, run.step_kwargs()) for run in planned}
    kept = [r for r in cached.values() if _row(r["dataset"], r["step_kwargs"]) not in planned_rows]
    records = []
    settings_of = [settings_for(run.dataset, args) for run in planned]
    keys = [
        _key(run, settings, args.seeds) for run, settings in zip(planned, settings_of, strict=True)
    ]
    for index, (run, settings, key) in enumerate(zip(planned, settings_of, keys, strict=True)):
        # What an interruption after this row must keep: the finished rows planned after it too.
        unreached = [cached[later] for later in keys[index + 1 :] if later in cached]
        if key in cached:
            records.append(cached[key])
            print(f"reused {run}", flush=True)
            continue
        tic = time.perf_counter()
        record = {**execute(run, settings, args.seeds), "key": key}
        records.append(record)
        raw = record["summary"]["raw"]
        print(
            f"{run.dataset} {run.loss} {run.regulariser} pack={run.pack}: "
            f"modes {raw['modes']['mean']:.2f}, HQ {100 * raw['high_quality']['mean']:.1f}%, "
            f"reverse KL {raw['reverse_kl']['mean']:.3f} ({time.perf_counter() - tic:.0f} s)",
            flush=True,
        )
        _write(records + unreached + kept, json_path, npz_path)  # interruptions keep every row

    records = sorted(records + kept, key=_table_order)
    results = _write(records, json_path, npz_path)
    tables = ""
    for dataset in ("ring", "grid"):
        if any(r["dataset"] == dataset for r in records):
            settings = settings_for(dataset, args)
            tables += (
                f"\n### {dataset} ({toy.DISTRIBUTIONS[dataset].num_modes} modes), "
                f"{settings.steps} steps, seeds {', '.join(map(str, args.seeds))}\n\n"
            )
            tables += report.markdown_table(records, dataset)
            if not args.no_plot:
                report.plot_samples(records, dataset, args.out / f"samples_{dataset}.png")
    tables += f"\nTargets reached: {json.dumps(results['acceptance'])}\n"
    (args.out / "results.md").write_text(tables.lstrip())
    print(tables)
    return results


def _table_order(record: dict[str, Any]) -> tuple:
    """Rows by dataset, loss, regulariser (as in :data:`LOSSES`, :data:`REGULARISERS`), pack."""
    names = list(REGULARISERS)
    return (
        ("ring", "grid").index(record["dataset"]),
        LOSSES.index(record["loss"]) if record["loss"] in LOSSES else len(LOSSES),
        names.index(record["regulariser"]) if record["regulariser"] in names else len(names),
        record.get("pack", 1),
        record.get("weight") or 0.0,
    )


def _no_nan(tree: Any) -> Any:
    """``tree`` with every NaN float replaced by ``None`` (JSON has no NaN)."""
    if isinstance(tree, dict):
        return {k: _no_nan(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [_no_nan(v) for v in tree]
    if isinstance(tree, float) and math.isnan(tree):
        return None
    return tree


def _write(records: list[dict[str, Any]], json_path: Path, npz_path: Path) -> dict[str, Any]:
    runs = [{k: v for k, v in r.items() if k != "samples_seed0"} for r in records]
    results = {
        "description": "PacGAN Table 1 metrics of user MLP GANs; definitions in README.md",
        "eval_samples": EVAL_SAMPLES,
        "acceptance": report.acceptance(records),
        "runs": runs,
    }
    json_path.write_text(json.dumps(_no_nan(results), indent=1, allow_nan=False) + "\n")
    arrays = {f"run{i}": np.asarray(r["samples_seed0"], np.float16) for i, r in enumerate(records)}
    np.savez_compressed(npz_path, **arrays)
    return results


if __name__ == "__main__":
    main()

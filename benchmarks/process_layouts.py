"""Processes x devices rows for ``bench_parallel.py --layouts 1x8,2x4,4x2``: one global mesh of 8
CPU devices split over 1, 2 or 4 local processes under ``jax.distributed`` (gloo collectives).

Each layout trains the DCGAN through the command line exactly as a user would
(``genjax-models launch --processes P --devices-per-process D -- train gan ...`` on the embedded
``digits`` data, global batch ``--batch-size``) and reads steps/s from the run's
``metrics.jsonl``: the rows after the first (which includes compilation). Every process shares
the same CPU cores, so on a CPU host the ratio to 1x8 is the overhead of cross-process
collectives and coordination, not a speed-up; on a host with several GPUs per process, pass the
real device count instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

NOTE = (
    "processes x devices: every process shares this host's CPU cores, so the ratio to 1x8 is the "
    "overhead of cross-process (gloo) collectives, not a speed-up"
)


def parse_layouts(text: str) -> list[tuple[int, int]]:
    """``"1x8,2x4"`` -> ``[(1, 8), (2, 4)]``."""
    layouts = []
    for part in text.split(","):
        processes, _, devices = part.strip().partition("x")
        if not (processes.isdigit() and devices.isdigit()):
            raise SystemExit(f"--layouts {text!r}: expected PROCESSESxDEVICES,... e.g. 1x8,2x4")
        layouts.append((int(processes), int(devices)))
    return layouts


def run_layout(processes: int, devices: int, *, steps: int, batch_size: int, width: int,
               data_dir: str, root: str) -> dict:  # fmt: skip
    """Trains ``steps`` DCGAN steps on ``processes`` x ``devices``; returns its row."""
    workdir = os.path.join(root, f"{processes}x{devices}")
    log_every = max(1, steps // 4)
    command = [
        sys.executable, "-m", "genjax_models.cli", "launch", "--processes", str(processes),
        "--devices-per-process", str(devices), "--", "train", "gan", "--workdir", workdir,
        "--data-dir", data_dir, "--steps", str(steps), "--batch-size", str(batch_size),
        "--log-every", str(log_every), "--sample-every", str(10 * steps),
        "--checkpoint-every", str(10 * steps), "--set", f"base_width={width}",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{processes}x{devices} failed:\n{done.stdout[-3000:]}")
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if '"split": "train"' in line]
    rates = [row["steps_per_sec"] for row in rows[1:]] or [rows[-1]["steps_per_sec"]]
    return {
        "layout": f"{processes}x{devices}",
        "processes": processes,
        "devices_per_process": devices,
        "global_devices": processes * devices,
        "steps_per_sec": sum(rates) / len(rates),
        "wall_s": wall,
    }


def benchmark_layouts(layouts: list[tuple[int, int]], *, steps: int, batch_size: int,
                      width: int) -> dict:  # fmt: skip
    """Every layout's row, and each one's steps/s as a ratio to the first layout's."""
    with tempfile.TemporaryDirectory() as root:
        data_dir = os.path.join(root, "tfds")
        from genjax_models.data import load_image_dataset

        load_image_dataset("digits", "test", data_dir=data_dir)  # generated once, offline
        rows = []
        for processes, devices in layouts:
            row = run_layout(processes, devices, steps=steps, batch_size=batch_size,
                             width=width, data_dir=data_dir, root=root)  # fmt: skip
            rows.append(row)
            print(
                f"{row['layout']:>6} {row['steps_per_sec']:9.2f} steps/s "
                f"({row['wall_s']:.0f} s wall)",
                flush=True,
            )
    base = rows[0]["steps_per_sec"]
    for row in rows:
        row["ratio_to_first"] = row["steps_per_sec"] / base
    return {"note": NOTE, "model": f"gan base_width={width}", "steps": steps, "rows": rows}

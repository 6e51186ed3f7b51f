"""Data-parallel training throughput: the three ``DataParallel`` plans on 1, 2, 4 and 8 devices.

    python benchmarks/bench_parallel.py [--steps 20] [--out benchmarks/results/parallel_cpu.json]

For the DCGAN (``base_width=32``, 32x32x1 images, latent 100) and the CNN classifier
(``ClassifierConfig()``), global batch 64 of synthetic data, and every device count in
``--devices`` (default 1, 2, 4, 8; those the host has) times every plan (``jit``, ``shard_map``,
``pmap``), it runs the step as the training loop does: ``plan.put_state``, ``plan.wrap(step)``,
then ``fn(state, plan.put_batch(batch))`` per step. ``--warmup`` calls (default 2: the pmap
plan's second call may compile again) are followed by ``--steps`` timed calls, blocking on the
final state and metrics; steps/s includes ``put_batch`` (host-to-device copies), as in training.
Compile time is the sum of XLA backend compilations (``jax.monitoring`` events) during warm-up;
compilations during the timed steps are counted too (should be 0). A baseline row per model is
``jit_step`` on one device without a plan.

On a host with one CPU device it re-executes itself with 8 simulated CPU devices
(``--xla_force_host_platform_device_count=8``). Those devices share the host's CPU cores, so on
CPU this measures the plans' overhead (collectives, dispatch, smaller per-device work), not a
speed-up; on a multi-GPU host the real devices are used and the speed-up is real.

Prints a table and writes JSON (``--out``, default ``benchmarks/results/parallel_<platform>.json``)
with the device kind, versions, config and the numbers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

CHILD_ENV = "GENJAX_BENCH_PARALLEL_CHILD"
SIMULATED_DEVICES = 8
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
KINDS = ("jit", "shard_map", "pmap")
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per case (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch (default 64)")
    parser.add_argument("--gan-width", type=int, default=32, help="DCGAN base_width (default 32)")
    parser.add_argument(
        "--devices", default="1,2,4,8", help="device counts, comma-separated (default 1,2,4,8)"
    )
    parser.add_argument("--kinds", default=",".join(KINDS), help="plans (default all three)")
    parser.add_argument("--models", default="gan,classifier", help="default gan,classifier")
    parser.add_argument(
        "--out", default=None, help="JSON path (default results/parallel_<platform>.json)"
    )
    parser.add_argument(
        "--layouts",
        default="1x8,2x4,4x2",
        help="processes x devices rows, trained through `genjax-models launch` (default "
        "1x8,2x4,4x2; '' for none)",
    )
    parser.add_argument(
        "--layout-steps", type=int, default=40, help="DCGAN steps per layout (default 40)"
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be >= 1")
    return args


def reexec_with_simulated_devices(argv: list[str] | None) -> int:
    """Runs this script again with 8 simulated CPU devices; returns its exit status."""
    flags = os.environ.get("XLA_FLAGS", "")
    env = {
        **os.environ,
        CHILD_ENV: "1",
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={SIMULATED_DEVICES}".strip(),
    }
    print(
        f"bench_parallel: one CPU device here; re-running with {SIMULATED_DEVICES} simulated CPU "
        "devices (they share this host's cores: this measures overhead, not speed-up)",
        flush=True,
    )
    return subprocess.run(
        [sys.executable, os.path.abspath(__file__), *(sys.argv[1:] if argv is None else argv)],
        env=env,
    ).returncode


class CompileClock:
    """Counts XLA backend compilations and sums their durations (``jax.monitoring``)."""

    def __init__(self) -> None:
        import jax

        self.count, self.seconds = 0, 0.0
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event: str, duration: float, **kwargs: object) -> None:
        del kwargs
        if event == BACKEND_COMPILE_EVENT:
            self.count += 1
            self.seconds += duration

    def read(self) -> tuple[int, float]:
        return self.count, self.seconds


def build_model(model: str, args: argparse.Namespace):
    """``(config dict, host initial state, make_step(batch_norm_axis_name), batches)``."""
    import jax
    import numpy as np

    from genjax_models.configs import ClassifierConfig, GANConfig, to_dict
    from genjax_models.models.classifier import make_classifier
    from genjax_models.models.gan import make_dcgan
    from genjax_models.runs.classifier import CLASSIFIER_OPTIM
    from genjax_models.runs.execution import adam
    from genjax_models.runs.gan import GAN_OPTIM
    from genjax_models.train.state import init_gan_state, init_train_state
    from genjax_models.train.steps import make_classifier_step, make_gan_step

    rng = np.random.default_rng(0)
    if model == "gan":
        cfg = GANConfig(base_width=args.gan_width)
        state = init_gan_state(
            jax.random.PRNGKey(0),
            *make_dcgan(cfg),
            adam(GAN_OPTIM),
            adam(GAN_OPTIM),
            cfg.image_shape,
        )

        def make_step(axis_name):
            return make_gan_step(
                *make_dcgan(cfg, batch_norm_axis_name=axis_name),
                loss=cfg.loss,
                n_critic=cfg.n_critic,
                ema_decay=cfg.ema_decay,
            )

        batches = [
            {"image": rng.uniform(-1, 1, (args.batch_size, *cfg.image_shape)).astype(np.float32)}
            for _ in range(4)
        ]
    else:
        cfg = ClassifierConfig()
        net = make_classifier(cfg)
        shape = (cfg.image_size, cfg.image_size, cfg.channels)
        state = init_train_state(
            jax.random.PRNGKey(0), net, adam(CLASSIFIER_OPTIM), np.zeros((1, *shape), np.float32)
        )

        def make_step(axis_name):
            del axis_name  # no BatchNorm
            return make_classifier_step(net)

        batches = [
            {
                "image": rng.uniform(-1, 1, (args.batch_size, *shape)).astype(np.float32),
                "label": rng.integers(0, cfg.num_classes, args.batch_size).astype(np.int32),
            }
            for _ in range(4)
        ]
    return to_dict(cfg), jax.device_get(state), make_step, batches


def fresh(tree):
    """A numpy copy of every leaf: each case donates its own buffers, never shared ones."""
    import jax
    import numpy as np

    return jax.tree.map(np.array, tree)


def run_case(fn, state, put_batch, batches, args, clock: CompileClock) -> dict:
    """Warm-up then timed steps of ``fn``; compile and throughput numbers."""
    import jax

    count0, seconds0 = clock.read()
    start = time.perf_counter()
    for i in range(args.warmup):
        state, metrics = fn(state, put_batch(batches[i % len(batches)]))
        jax.block_until_ready((state, metrics))
        if i == 0:
            first_call = time.perf_counter() - start
    count1, seconds1 = clock.read()
    start = time.perf_counter()
    for i in range(args.steps):
        state, metrics = fn(state, put_batch(batches[i % len(batches)]))
    jax.block_until_ready((state, metrics))
    elapsed = time.perf_counter() - start
    count2, _ = clock.read()
    return {
        "steps_per_sec": args.steps / elapsed,
        "ms_per_step": 1000 * elapsed / args.steps,
        "examples_per_sec": args.steps * args.batch_size / elapsed,
        "compile_s": seconds1 - seconds0,
        "warmup_compiles": count1 - count0,
        "first_call_s": first_call,
        "timed_compiles": count2 - count1,
    }


def benchmark(args: argparse.Namespace) -> dict:
    import flax
    import jax
    import jaxlib
    import optax

    from genjax_models.parallel.plans import DataParallel, make_mesh
    from genjax_models.train.steps import jit_step

    clock = CompileClock()
    devices = jax.devices()
    simulated = devices[0].platform == "cpu" and len(devices) > 1
    counts = [int(n) for n in args.devices.split(",") if int(n) <= len(devices)]
    counts = [n for n in counts if args.batch_size % n == 0]
    kinds = [k for k in args.kinds.split(",") if k]
    note = (
        f"{len(devices)} SIMULATED CPU devices sharing {os.cpu_count()} host cores: this measures "
        "the data-parallel plans' overhead, NOT a speed-up (every device count runs on the same "
        "cores; a gain from 1 to 2 devices only means one XLA CPU device left a core idle)"
        if devices[0].platform == "cpu"
        else f"{len(devices)} real {devices[0].device_kind} devices"
    )
    report = {
        "benchmark": "bench_parallel",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "note": note,
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "simulated_devices": simulated,
        "host_cpu_count": os.cpu_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "versions": {
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "flax": flax.__version__,
            "optax": optax.__version__,
            "python": platform.python_version(),
        },
        "config": {
            "batch_size": args.batch_size,
            "steps": args.steps,
            "warmup": args.warmup,
            "device_counts": counts,
            "kinds": kinds,
            "timing": "steps/s over the timed steps after warm-up, put_batch included, blocking "
            "on the final state and metrics; compile_s = XLA backend compile time in warm-up",
            "models": {},
        },
        "results": [],
    }
    print(note, flush=True)
    for model in [m for m in args.models.split(",") if m]:
        config, host_state, make_step, batches = build_model(model, args)
        report["config"]["models"][model] = config
        # Baseline: the single-device jit_step, no plan (batches go to the default device).
        result = run_case(
            jit_step(make_step(None)),
            jax.device_put(fresh(host_state)),
            jax.device_put,
            batches,
            args,
            clock,
        )
        report["results"].append({"model": model, "kind": "jit_step", "devices": 1, **result})
        print_row(report["results"][-1], flush=True)
        for n in counts:
            for kind in kinds:
                plan = DataParallel(kind, make_mesh(n))
                fn = plan.wrap(make_step(plan.batch_norm_axis_name))
                result = run_case(
                    fn, plan.put_state(fresh(host_state)), plan.put_batch, batches, args, clock
                )
                report["results"].append({"model": model, "kind": kind, "devices": n, **result})
                print_row(report["results"][-1], flush=True)
    for row in report["results"]:
        one = next(
            (
                r
                for r in report["results"]
                if r["model"] == row["model"] and r["kind"] == row["kind"] and r["devices"] == 1
            ),
            None,
        )  # None when --devices leaves out 1
        row["relative_to_1_device"] = one and row["steps_per_sec"] / one["steps_per_sec"]
    return report


HEADER = (
    f"{'model':<11}{'plan':<10}{'devices':>8}{'steps/s':>10}{'ms/step':>10}{'ex/s':>9}"
    f"{'compile s':>11}{'compiles':>10}{'vs 1 dev':>10}"
)


def print_row(row: dict, flush: bool = False) -> None:
    relative = row.get("relative_to_1_device")
    print(
        f"{row['model']:<11}{row['kind']:<10}{row['devices']:>8}{row['steps_per_sec']:>10.2f}"
        f"{row['ms_per_step']:>10.1f}{row['examples_per_sec']:>9.0f}{row['compile_s']:>11.2f}"
        f"{row['warmup_compiles']:>5}+{row['timed_compiles']:<4}"
        + (f"{relative:>10.2f}" if relative is not None else ""),
        flush=flush,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.environ.get(CHILD_ENV) != "1":
        import jax

        if jax.devices()[0].platform == "cpu" and jax.device_count() == 1:
            return reexec_with_simulated_devices(argv)
    report = benchmark(args)
    print()
    print(report["note"])
    print(
        f"{report['device_kind']} x{report['device_count']}, jax {report['versions']['jax']}, "
        f"batch {args.batch_size}, {args.steps} timed steps after {args.warmup} warm-up; "
        "compiles = warm-up + timed"
    )
    print(HEADER)
    for row in report["results"]:
        print_row(row)
    if args.layouts:
        from process_layouts import benchmark_layouts, parse_layouts

        print(f"\nprocesses x devices (DCGAN base_width={args.gan_width}, batch {args.batch_size})")
        report["process_layouts"] = layouts = benchmark_layouts(
            parse_layouts(args.layouts),
            steps=args.layout_steps,
            batch_size=args.batch_size,
            width=args.gan_width,
        )
        print(layouts["note"])
        for row in layouts["rows"]:
            print(
                f"{row['layout']:>6}  x{row['ratio_to_first']:.2f} of {layouts['rows'][0]['layout']}"
            )
    out = args.out or os.path.join(RESULTS, f"parallel_{report['platform']}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""DCGAN training throughput: genjax_models vs the same DCGAN in PyTorch, in one run.

    python benchmarks/bench_gan.py [--width 64] [--batch-size 64] [--steps 10] [--windows 5]

Synthetic batches (no data pipeline, no TensorFlow). Prints a table and writes
``benchmarks/results/gan-<device>-<date>.json``: device, versions, config, compile time, steps/s and
images/s (median of timed windows after warm-up, blocking on results; JAX and PyTorch windows
alternate), XLA's FLOPs per step, the achieved FLOP/s, the fraction of a large matmul's FLOP/s
measured in the same run, the number of recompilations after warm-up, and the ratio to PyTorch when
torch is installed (``.[bench]``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax_models.configs import GANConfig
from genjax_models.flops import gan_train_flops
from genjax_models.models.gan import make_dcgan
from genjax_models.parallel.cpu_runtime import configure_cpu_runtime
from genjax_models.train import init_gan_state, make_gan_step

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    TORCH_WARMUP_STEPS,
    Placement,
    Prepared,
    add_devices_flag,
    argument_parser,
    check_devices,
    device_facts,
    devices_tag,
    measured_gemm,
    peak_flops,
    peak_memory_bytes,
    placement_devices,
    positive_int,
    prepare_train_step,
    time_against_torch,
    torch_device,
    torch_facts,
    write_result,
)


def prepare_jax(config: GANConfig, batch_size: int, devices: Placement = None) -> Prepared:
    generator, discriminator = make_dcgan(config)
    tx = optax.adam(2e-4, b1=0.5)
    state = init_gan_state(
        jax.random.PRNGKey(0), generator, discriminator, tx, tx, config.image_shape
    )
    gan_step = make_gan_step(generator, discriminator, loss=config.loss)
    images = np.random.default_rng(0).uniform(-1, 1, (batch_size, *config.image_shape))
    batch = {"image": jnp.asarray(images, jnp.float32)}
    prepared = prepare_train_step(gan_step, state, batch, devices)

    def facts() -> dict:
        timing = prepared.facts()
        timing.pop("final_state")
        return {**timing, "peak_memory_bytes": peak_memory_bytes()}

    return dataclasses.replace(prepared, facts=facts)


def prepare_torch(config: GANConfig, batch_size: int) -> Prepared | None:
    try:
        import torch
    except ImportError:
        return None
    from torch_reference.dcgan import make_step

    torch.manual_seed(0)
    device = torch_device(torch)
    step, _, _ = make_step(
        config.latent_dim,
        config.base_width,
        config.image_size,
        config.channels,
        batch_size,
        device=device,
        compute_dtype=None if config.dtype == "float32" else getattr(torch, config.dtype),
    )
    shape = (batch_size, config.channels, config.image_size, config.image_size)
    real = torch.rand(*shape, device=device) * 2 - 1
    for _ in range(TORCH_WARMUP_STEPS):
        step(real)

    def run(n: int) -> None:
        for _ in range(n):
            d_loss, _ = step(real)
        float(d_loss)

    return Prepared(run, lambda: torch_facts(torch, device))


def make_config(args: argparse.Namespace) -> GANConfig:
    """The benchmarked DCGAN: ``--width``, ``--image-size`` and ``--dtype``."""
    return GANConfig(base_width=args.width, image_size=args.image_size, dtype=args.dtype)


def main(argv: list[str] | None = None) -> dict:
    parser = argument_parser(__doc__)
    parser.add_argument("--width", type=positive_int, default=64)
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=positive_int, default=10, help="steps per timed window")
    parser.add_argument("--windows", type=positive_int, default=5)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--no-torch", action="store_true")
    add_devices_flag(parser)
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/...)")
    args = parser.parse_args(argv)
    configure_cpu_runtime()  # before the first computation: XLA:CPU reuses step scratch memory
    placement = check_devices(args.devices, args.mesh)

    config = make_config(args)
    device = jax.devices()[0]
    ours, reference = time_against_torch(
        prepare_jax(config, args.batch_size, placement),
        None if args.no_torch or placement else prepare_torch(config, args.batch_size),
        args.steps,
        args.windows,
    )
    gemm = measured_gemm(args.dtype)
    peak, peak_source = peak_flops(args.dtype, gemm, placement)
    flops = gan_train_flops(config, args.batch_size)
    achieved = flops * ours["steps_per_sec"]
    result = {
        "benchmark": "gan",
        **device_facts(),
        "command": "python benchmarks/bench_gan.py " + " ".join(argv or sys.argv[1:]),
        "config": {**dataclasses.asdict(config), "batch_size": args.batch_size},
        "devices_used": placement_devices(placement) or 1,
        "mesh": args.mesh,
        "jax": ours,
        "images_per_sec": ours["steps_per_sec"] * args.batch_size,
        "model_flops_per_step": flops,
        "achieved_flops_per_sec": achieved,
        "peak_flops_per_sec": peak,
        "peak_source": peak_source,
        "mfu": None if not peak else achieved / peak,
        "measured_gemm": gemm,
        "torch": reference,
        "jax_over_torch": None
        if reference is None
        else ours["steps_per_sec"] / reference["steps_per_sec"],
    }
    rows = [
        ("genjax_models (JAX)", ours["steps_per_sec"], ours["compile_seconds"]),
    ]
    if reference:
        rows.append((f"PyTorch {reference['torch_version']}", reference["steps_per_sec"], 0.0))
    print(
        f"DCGAN width {args.width}, {args.image_size}x{args.image_size}, batch {args.batch_size} on {device.device_kind}"
    )
    print(f"{'implementation':<24}{'steps/s':>10}{'images/s':>10}{'compile s':>11}")
    for name, rate, compile_s in rows:
        print(f"{name:<24}{rate:>10.2f}{rate * args.batch_size:>10.0f}{compile_s:>11.1f}")
    if result["jax_over_torch"] is not None:
        print(f"JAX / PyTorch throughput: {result['jax_over_torch']:.2f}x")
    if peak:
        print(
            f"model FLOPs/step {flops / 1e9:.2f} G (XLA counts {ours['xla_flops_per_step'] / 1e9:.2f} G); "
            f"achieved {achieved / 1e9:.1f} GFLOP/s = MFU {result['mfu']:.0%} of "
            f"{peak / 1e9:.0f} GFLOP/s ({peak_source})"
        )
    print(f"recompilations after warm-up: {ours['recompilations_after_warmup']}")
    batch_tag = "" if args.batch_size == 64 else f"-b{args.batch_size}"
    name = f"gan-w{args.width}-{args.dtype}{batch_tag}{devices_tag(placement)}"
    write_result(result, name, args.out)
    return result


if __name__ == "__main__":
    main()

"""What each GAN toolbox option costs: step time relative to the plain DCGAN step, one process.

    python benchmarks/bench_gan_options.py [--width 16] [--batch-size 64] [--steps 16] [--windows 9]
        [--options plain,gp,r1,lazy_r1_16,...]

Every option is the DCGAN step of ``train gan`` (``runs.gan.gan_step_from_config``) with one
``GANConfig`` change: WGAN-GP, R1 every step, lazy R1 (every 4th / 16th critic update), R1 + R2,
spectral norm on D (which drops D's BatchNorm) or on D and G, DiffAugment (all three), DiffAugment
with ADA, PacGAN packing of 2. All are compiled ahead of time, warmed up, and timed in alternating
windows (A B C ..., then reversed) so a shared machine's load reaches every option alike; each
window is 16 steps (one lazy-R1 update at interval 16, four at interval 4); the table gives the
median steps/s and the ratio of step *time* to the plain step's. Writes
``benchmarks/results/gan-options-w<width>-<platform>-<date>.json``.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import jax
import numpy as np
import optax

from genjax_models.configs import GANConfig
from genjax_models.models.gan import make_dcgan
from genjax_models.parallel.cpu_runtime import configure_cpu_runtime
from genjax_models.runs.gan import gan_step_from_config
from genjax_models.train.state import init_gan_state

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    argument_parser,
    compare_windows,
    device_facts,
    measured_gemm,
    positive_int,
    prepare_train_step,
    write_result,
)

OPTIONS: dict[str, dict] = {
    "plain": {},
    "gp": {"loss": "wasserstein", "gp_weight": 10.0},
    "r1": {"r1_gamma": 10.0},
    "lazy_r1_4": {"r1_gamma": 10.0, "r1_interval": 4},
    "lazy_r1_16": {"r1_gamma": 10.0, "r1_interval": 16},
    "r1_r2": {"r1_gamma": 10.0, "r2_gamma": 10.0},
    "spectral_norm_d": {"spectral_norm_d": True},
    "spectral_norm_dg": {"spectral_norm_d": True, "spectral_norm_g": True},
    "diffaugment": {"augment": "color,translation,cutout"},
    "diffaugment_ada": {"augment": "color,translation,cutout", "ada_target": 0.6},
    "pack_2": {"pack": 2},
}
"""Option name -> the ``GANConfig`` fields it changes from the plain DCGAN."""


def prepare(config: GANConfig, batch_size: int):
    """The compiled, warmed-up step of ``config`` on one synthetic batch."""
    generator, discriminator = make_dcgan(config)
    tx = optax.adam(2e-4, b1=0.5)
    state = init_gan_state(
        jax.random.PRNGKey(0), generator, discriminator, tx, tx, config.image_shape,
        pack=config.pack, ada_p=config.augment_p if config.ada_target > 0 else None,
    )  # fmt: skip
    images = np.random.default_rng(0).uniform(-1, 1, (batch_size, *config.image_shape))
    batch = {"image": images.astype(np.float32)}
    return prepare_train_step(gan_step_from_config(config, generator, discriminator), state, batch)


def _names(text: str) -> list[str]:
    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in OPTIONS]
    if unknown or not names:
        raise SystemExit(
            f"--options {text!r}: unknown {', '.join(unknown) or 'none given'}; "
            f"expected some of {', '.join(OPTIONS)}"
        )
    return ["plain", *[n for n in names if n != "plain"]]


def main(argv: list[str] | None = None) -> dict:
    parser = argument_parser(__doc__)
    parser.add_argument("--width", type=positive_int, default=16, help="GANConfig.base_width")
    parser.add_argument("--image-size", type=positive_int, default=32)
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument(
        "--steps", type=positive_int, default=16,
        help="steps per timed window: keep it a multiple of the largest lazy interval (16), so "
        "that every window holds its share of regularised updates and the median is unbiased",
    )  # fmt: skip
    parser.add_argument("--windows", type=positive_int, default=9)
    parser.add_argument("--options", default=",".join(OPTIONS), help="comma-separated names")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    names = _names(args.options)
    configure_cpu_runtime()
    base = GANConfig(base_width=args.width, image_size=args.image_size, latent_dim=100)
    configs = {name: dataclasses.replace(base, **OPTIONS[name]) for name in names}
    timings = compare_windows(
        [prepare(configs[name], args.batch_size) for name in names], args.steps, args.windows
    )
    plain = timings[0]["steps_per_sec"]
    rows = []
    print(f"DCGAN width {args.width}, {args.image_size}x{args.image_size}, batch {args.batch_size}")
    print(f"{'option':<18}{'steps/s':>10}{'ms/step':>10}{'time vs plain':>15}")
    for name, timing in zip(names, timings, strict=True):
        timing.pop("final_state", None)
        rate = timing["steps_per_sec"]
        row = {"option": name, "changes": OPTIONS[name], "steps_per_sec": rate,
               "time_vs_plain": plain / rate, "window_steps_per_sec": timing["window_steps_per_sec"],
               "recompilations_after_warmup": timing["recompilations_after_warmup"]}  # fmt: skip
        rows.append(row)
        print(f"{name:<18}{rate:>10.2f}{1000 / rate:>10.1f}{plain / rate:>14.2f}x")
    result = {
        "benchmark": "gan_options",
        **device_facts(),
        "command": "python benchmarks/bench_gan_options.py " + " ".join(argv or sys.argv[1:]),
        "config": {**dataclasses.asdict(base), "batch_size": args.batch_size},
        "steps_per_window": args.steps,
        "windows": args.windows,
        "measured_gemm": measured_gemm("float32"),
        "rows": rows,
    }
    write_result(result, f"gan-options-w{args.width}", args.out)
    return result


if __name__ == "__main__":
    main()

"""The image commands (``train gan|classifier|class_conditional``, ``sample gan``, ``eval gan``),
the dispatch of ``train`` to every model family, and ``bench``.

Each command checks its flags, then imports the run it calls (JAX loads only here).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any

from genjax_models.cli.parser import UsageError
from genjax_models.configs import GANConfig, TrainConfig, override
from genjax_models.configs.overrides import sets_field

# Channels of common image datasets; others take --set channels=N.
DATASET_CHANNELS = {"digits": 1, "mnist": 1, "fashion_mnist": 1, "emnist": 1, "kmnist": 1}


def run_bench(args: argparse.Namespace) -> None:
    """``bench NAME [flags]``: a script of the checkout's ``benchmarks/``."""
    from genjax_models.cli.bench import BENCHMARKS, run_benchmark

    if not run_benchmark(args.benchmark, args.options):
        raise UsageError(
            f"benchmarks/{BENCHMARKS[args.benchmark]} not found: `genjax-models bench` runs the "
            "scripts of a source checkout (pip install -e .)"
        )


def _train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        log_every=args.log_every,
        sample_every=args.sample_every,
        checkpoint_every=args.checkpoint_every,
        workdir=args.workdir,
        on_nan=args.on_nan,
        inject_nan_at_step=args.inject_nan_at,
        barrier_timeout_s=args.barrier_timeout,
        heartbeat_timeout_s=args.heartbeat_timeout,
        grad_accum=args.grad_accum,
    )


def placement_from_flags(args: argparse.Namespace) -> Any:
    """The ``DataParallel`` plan of ``--parallel``, ``--devices``, ``--mesh`` and ``--rules``
    (one-line errors for settings that cannot work, before any data is read)."""
    from genjax_models.parallel.plans import DataParallel, make_mesh
    from genjax_models.parallel.sharding import DEFAULT_RULES, make_named_mesh, parse_rules

    mesh_text, rules_text = getattr(args, "mesh", None), getattr(args, "rules", None)
    if mesh_text is None and rules_text is None:
        return DataParallel(args.parallel, make_mesh(args.devices))
    if args.devices is not None:
        raise UsageError("--devices and --mesh both given: a mesh spans every device; pass one")
    rules = DEFAULT_RULES if rules_text is None else parse_rules(rules_text)
    return DataParallel(args.parallel, make_named_mesh(mesh_text or "data=-1"), rules=rules)


def run_train(args: argparse.Namespace) -> None:
    """``train gan|classifier|class_conditional|seq2seq|lm|span_corruption``."""
    from genjax_models.data.tfds_access import dataset_base_name
    from genjax_models.runs import train_classifier, train_gan

    train = _train_config(args)
    parallel = placement_from_flags(args)
    channels = DATASET_CHANNELS.get(dataset_base_name(args.dataset), 3)
    common = dict(
        dataset=args.dataset,
        data_dir=args.data_dir,
        resume=args.resume,
        overwrite=args.overwrite,
        parallel=parallel,
    )
    if args.model == "seq2seq":
        from genjax_models.cli.text import tokenizer_and_config
        from genjax_models.configs import TransformerConfig, TransformerOptimConfig, override_all
        from genjax_models.runs import train_seq2seq

        config, optim = override_all((TransformerConfig(), TransformerOptimConfig()), args.set)
        spec, config = tokenizer_and_config(args, config)
        train_seq2seq(
            config, train, optim=optim, pack=args.pack, train_split=args.train_split,
            init_from=args.init_from, tokenizer=spec, **common,
        )  # fmt: skip
    elif args.model in ("lm", "span_corruption"):
        from genjax_models.cli.text import run_text_train

        run_text_train(args, train, common)
    elif args.model == "gan":
        if args.loss and sets_field(args.set, "loss"):
            raise UsageError("--loss and --set loss=... both given: pass one of them")
        if not 0 < args.data_fraction <= 1:
            raise UsageError(
                f"--data-fraction {args.data_fraction:g} is invalid: expected a number in (0, 1]"
            )
        config = GANConfig(channels=channels, **({"loss": args.loss} if args.loss else {}))
        config = override(config, args.set)  # bad --set values fail before any data is read
        if args.conditional and not config.num_classes:
            from genjax_models.data.features import describe_labelled_dataset

            classes = describe_labelled_dataset(args.dataset, args.data_dir)["num_classes"]
            if classes < 2:
                raise UsageError(f"--conditional needs labels but {args.dataset!r} has none")
            config = dataclasses.replace(config, num_classes=classes)
        train_gan(config, train, data_fraction=args.data_fraction, **common)
    else:
        from genjax_models.data.features import check_label_fraction
        from genjax_models.runs import train_class_conditional
        from genjax_models.runs.labelled_configs import labelled_configs

        check_label_fraction(args.label_fraction)
        config, optim = labelled_configs(
            args.model, args.dataset, data_dir=args.data_dir, channels=channels,
            assignments=args.set,
        )  # fmt: skip
        run = train_classifier if args.model == "classifier" else train_class_conditional
        run(config, train, optim=optim, label_fraction=args.label_fraction, **common)
    print(f"genjax-models: done; outputs in {train.workdir}")


def run_sample(args: argparse.Namespace) -> None:
    """``sample gan``: a PNG grid of samples of the latest checkpoint."""
    from genjax_models.runs.gan import sample_gan_grid
    from genjax_models.runs.images import save_image_grid

    if os.path.isdir(args.out) or not args.out.lower().endswith(".png"):
        raise UsageError(f"--out {args.out!r} is invalid: expected a .png file path")
    if os.path.exists(args.out) and not args.overwrite:
        raise UsageError(
            f"--out {args.out} exists: pass --overwrite to replace it, or another --out"
        )
    images, columns = sample_gan_grid(
        args.workdir,
        args.num,
        args.seed,
        use_ema=not args.no_ema,
        label=args.label,
        truncation=args.truncation,
    )
    print(f"genjax-models: wrote {save_image_grid(images, args.out, columns=columns)}")


def run_eval(args: argparse.Namespace) -> None:
    """``eval gan``: Frechet distance, KID, precision/recall, density/coverage and recognisable
    rate, with the sample counts, as JSON on stdout."""
    from genjax_models.runs import evaluate_gan

    result = evaluate_gan(
        args.workdir,
        num_samples=args.num_samples,
        seed=args.seed,
        classifier_workdir=args.classifier_workdir,
        classifier_steps=args.classifier_steps,
        data_dir=args.data_dir,
        truncation=args.truncation,
    )
    print(json.dumps(result, indent=2))

"""The GAN training step: ``gan_step(state, batch, rng, *, axis_name=None) -> (GANState, metrics)``.

One jitted call does ``n_critic`` discriminator updates, then one generator update against the
updated discriminator, then the EMA of G. Every loss of :data:`genjax_models.configs.GAN_LOSSES`
composes with every discriminator regulariser of :mod:`genjax_models.regularizers` (WGAN-GP's
gradient penalty, R1 on reals, R2 on fakes, lazily or not).

BatchNorm policy (as PyTorch's DCGAN): the discriminator sees the real and the fake batch in two
separate train-mode passes, each normalised by its own batch statistics; the running statistics
are updated by every train-mode pass (D: real, fake, and the generator update's fake pass; G: every
forward). The regularisers' passes (interpolates, reals, fakes) are train-mode too, so they
penalise the function the loss trains (batch statistics of the batch they see, cross-replica with
``batch_norm_axis_name``), but the running statistics they compute are discarded: they leave
``d_batch_stats`` as without the penalty.

The toolbox (:mod:`genjax_models.train.gan_inputs`): every image D sees, real or fake, in the D
and in the G update, goes through DiffAugment (a fresh key per pass) and PacGAN packing first;
the regularisers see those same inputs (R1 on augmented, packed reals, as StyleGAN2-ADA). With
ADA the augmentation probability is ``state.ada["p"]``, adjusted at the end of the step.
Spectral normalisation is the modules' (``make_dcgan``): its power-iteration vectors are
BatchNorm-like statistics in ``d_batch_stats`` / ``g_batch_stats``, updated by the same passes.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from genjax_models.configs import GAN_LOSSES
from genjax_models.losses import discriminator_loss, generator_loss
from genjax_models.regularizers import (
    check_penalty_weight,
    gradient_penalty,
    lazy_penalty,
    r1_penalty,
)
from genjax_models.train.gan_inputs import AUGMENT_STREAM, DiscriminatorInputs, global_batch_size
from genjax_models.train.state import GANState, PyTree, resolve_latent_dim
from genjax_models.train.step_parts import (
    Batch,
    Metrics,
    Step,
    apply_train,
    as_varying,
    mean_over,
    per_example_normal,
    per_example_uniform,
)
from genjax_models.validation import check_batch_keys


def ema_decay_at(step: jax.Array, decay: float) -> jax.Array:
    """EMA decay with warm-up, ``min(decay, (1 + step) / (10 + step))``, so early EMA tracks G."""
    step = step.astype(jnp.float32)
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def _check_arguments(
    loss: str,
    n_critic: int,
    ema_decay: float,
    penalties: dict[str, float],
    r1_interval: int,
) -> None:
    """One-line ValueErrors for bad arguments of :func:`make_gan_step`, before any tracing."""
    if loss not in GAN_LOSSES:
        raise ValueError(
            f"loss={loss!r} is not a GAN loss: expected one of {', '.join(GAN_LOSSES)}"
        )
    if isinstance(n_critic, bool) or not isinstance(n_critic, int) or n_critic < 1:
        raise ValueError(f"n_critic={n_critic!r} is invalid: expected an integer >= 1")
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay={ema_decay!r} is invalid: expected a float in [0, 1)")
    for name, value in penalties.items():
        check_penalty_weight(name, value)
    if isinstance(r1_interval, bool) or not isinstance(r1_interval, int) or r1_interval < 1:
        raise ValueError(
            f"r1_interval={r1_interval!r} is invalid: expected an integer >= 1 (1: every update)"
        )


def make_gan_step(
    generator: nn.Module,
    discriminator: nn.Module,
    loss: str = "non_saturating",
    n_critic: int = 1,
    ema_decay: float = 0.999,
    latent_dim: int | None = None,
    conditional: bool = False,
    gp_weight: float = 0.0,
    r1_gamma: float = 0.0,
    r2_gamma: float = 0.0,
    r1_interval: int = 1,
    pack: int = 1,
    augment: str | tuple[str, ...] = (),
    augment_p: float = 1.0,
    ada_target: float = 0.0,
    ada_interval: int = 4,
    ada_kimg: float = 500.0,
) -> Step:
    """Builds ``gan_step(state, batch, rng, *, axis_name=None) -> (GANState, metrics)``.

    One call does ``n_critic`` discriminator updates on real vs ``G(z)``, then one generator update
    against the updated discriminator, then the EMA update of G. The last critic update and the
    generator update share one generator forward pass (``jax.vjp``), as PyTorch's DCGAN does.

    ``batch["image"]``: float32[batch, H, W, C] real images in [-1, 1].
    ``conditional=True``: also ``batch["label"]``: int32[batch]; the modules are called as
    ``generator(z, labels, train=...)`` and ``discriminator(x, labels, train=...)``, and the fake
    of example ``i`` is generated for the real example's label ``labels[i]`` (fakes follow the
    data's class frequencies; no extra randomness).

    Discriminator regularisers (all off at 0; any combination, with any loss), added to the
    loss of every critic update (:mod:`genjax_models.regularizers`):

    - ``gp_weight``: ``gp_weight * mean_i (||grad_x D(x_hat_i)||_2 - 1)^2`` (WGAN-GP) with
      ``x_hat_i = eps_i real_i + (1 - eps_i) fake_i``, ``eps_i ~ U[0, 1)`` per example from the
      step's key (per global example index, so any device count draws the same ``eps``).
    - ``r1_gamma`` / ``r2_gamma``: ``gamma / 2 * mean_i sum |grad_x D(x_i)|^2`` on the reals (R1)
      / on the fakes (R2), StyleGAN2-ADA's convention.
    - ``r1_interval`` k (lazy regularisation, StyleGAN2): R1 and R2 are applied, multiplied by
      k, only on the critic updates whose index ``c = state.step * n_critic + i`` (``i`` in
      ``0..n_critic-1``, the update within this call) is a multiple of k, so the first update of a
      run has them; on the others a ``lax.cond`` skips their computation. The index is a
      function of ``state.step``, so a resumed run applies them where an uninterrupted one does.
      The gradient penalty is applied on every critic update.

    Metrics (float32 scalars): ``d_loss`` (the adversarial loss alone), ``g_loss``, ``d_real``
    (mean sigmoid of the real logits), ``d_fake`` (of the fake logits before the D update),
    ``d_fake_after`` (after it), ``d_acc_real`` and ``d_acc_fake`` (real logits above, fake
    logits below the threshold: 0, or 0.5 for ``least_squares`` whose targets are 0 and 1); these
    are of the last critic update. With a regulariser on, also the terms it adds to D's loss,
    weights and lazy factor included (0 on an update that skips them), averaged over the call's
    ``n_critic`` updates: ``d_gp``, ``d_r1``, ``d_r2``; D minimises ``d_loss`` plus these.

    The toolbox (off by default; :mod:`genjax_models.train.gan_inputs`):

    - ``pack`` m (PacGAN): D sees ``float32[batch / m, H, W, m * C]``, m consecutive reals (or
      fakes) along channels; build D for ``m * C`` channels and initialise the state with
      ``init_gan_state(..., pack=m)``. m must divide the (per-device) batch.
    - ``augment``: DiffAugment policy (names among ``color``, ``translation``, ``cutout``, or
      one comma-separated string), each transform applied per example with probability
      ``augment_p``, to every image D sees. Keys: ``fold_in(rng, AUGMENT_STREAM)`` folded with
      ``2 i`` / ``2 i + 1`` for the reals / fakes of critic update ``i`` and ``2 n_critic`` for
      the generator update's fakes; per example by global index.
    - ``ada_target`` > 0 (ADA): ``augment_p`` is adapted every ``ada_interval`` steps, at the
      rate ``ada_kimg`` (thousand images for p to move by 1); the state needs
      ``init_gan_state(..., ada_p=<start>)``. Metrics then also have ``aug_p`` (the p this step
      used) and ``ada_rt`` (its ``E[sign(D(real) - threshold)]``).
    """
    weights = {"gp_weight": gp_weight, "r1_gamma": r1_gamma, "r2_gamma": r2_gamma}
    _check_arguments(loss, n_critic, ema_decay, weights, r1_interval)
    view = DiscriminatorInputs.checked(
        pack=pack, augment=augment, augment_p=augment_p, ada_target=ada_target,
        ada_interval=ada_interval, ada_kimg=ada_kimg, conditional=conditional,
    )  # fmt: skip
    latent_dim = resolve_latent_dim(generator, latent_dim)
    threshold = 0.5 if loss == "least_squares" else 0.0

    def gan_step(
        state: GANState, batch: Batch, rng: jax.Array, *, axis_name: str | None = None
    ) -> tuple[GANState, Metrics]:
        check_batch_keys("gan_step", batch, ("image", "label") if conditional else ("image",))
        mean = mean_over(axis_name)
        real = batch["image"]
        batch_size = real.shape[0]
        view.check(state, batch_size, axis_name)
        p = view.probability_of(state)
        augment_root = jax.random.fold_in(rng, AUGMENT_STREAM)

        def seen(images: jax.Array, use: int) -> jax.Array:
            """What D sees of ``images`` in pass ``use`` (augmented, packed; else themselves)."""
            return view(images, jax.random.fold_in(augment_root, use), p, axis_name)

        labels = (batch["label"],) if conditional else ()  # extra inputs of G and D
        g_params, d_params = state.g_params, state.d_params
        g_stats, d_stats = state.g_batch_stats, state.d_batch_stats
        d_opt_state = state.d_opt_state

        def generate(params: PyTree, key: jax.Array) -> tuple[jax.Array, PyTree]:
            z = per_example_normal(key, batch_size, latent_dim, axis_name)
            return apply_train(generator, params, g_stats, z, *labels)

        def critic_of(params: PyTree):
            """D as the penalties see it: train mode, its running statistics discarded."""
            return lambda x: apply_train(discriminator, params, d_stats, x, *labels)[0]

        def d_loss_fn(
            params: PyTree, real: jax.Array, fake: jax.Array, key: jax.Array | None
        ) -> tuple[jax.Array, Any]:
            """Adversarial loss (+ the gradient penalty, drawn with ``key`` when it is on), of
            D's inputs ``real`` and ``fake`` (augmented and packed)."""
            real_logits, stats = apply_train(discriminator, params, d_stats, real, *labels)
            fake_logits, stats = apply_train(discriminator, params, stats, fake, *labels)
            adversarial = discriminator_loss(loss, real_logits, fake_logits)
            terms: dict[str, jax.Array] = {}
            if key is not None:
                eps = per_example_uniform(key, real.shape[0], axis_name)  # one per pack
                terms["d_gp"] = gp_weight * gradient_penalty(critic_of(params), real, fake, eps)
            total = sum(terms.values(), adversarial)  # exactly ``adversarial`` when all off
            return total, (stats, real_logits, fake_logits, adversarial, terms)

        def r1_r2_loss(
            params: PyTree, real: jax.Array, fake: jax.Array
        ) -> tuple[jax.Array, dict[str, jax.Array]]:
            """R1 on the reals and R2 on the fakes: ``(their sum, {"d_r1": ..., "d_r2": ...})``."""
            critic, terms = critic_of(params), {}
            if r1_gamma:
                terms["d_r1"] = r1_penalty(critic, real, r1_gamma)
            if r2_gamma:
                terms["d_r2"] = r1_penalty(critic, fake, r2_gamma)
            return sum(terms.values(), jnp.zeros((), jnp.float32)), terms

        # Keys: critic_keys[i] draws the noise of critic update i; the spare last key is split
        # into the gradient penalty's eps keys (drawn only when gp_weight > 0).
        critic_keys = jax.random.split(rng, n_critic + 1)
        eps_keys = jax.random.split(critic_keys[n_critic], n_critic) if gp_weight else None
        first_update = state.step.astype(jnp.int32) * n_critic

        def critic_update(fake: jax.Array, i: int) -> tuple[Any, ...]:
            """Discriminator update ``i`` against ``fake``: ``(d_loss, logits, ..., terms)``."""
            nonlocal d_params, d_stats, d_opt_state
            key = None if eps_keys is None else eps_keys[i]
            params = as_varying(d_params, axis_name)
            real_in, fake_in = seen(real, 2 * i), seen(fake, 2 * i + 1)
            (_, (stats, real_logits, fake_logits, d_loss, terms)), d_grads = jax.value_and_grad(
                d_loss_fn, has_aux=True
            )(params, real_in, fake_in, key)
            if r1_gamma or r2_gamma:
                # R1/R2 and their gradient inside one lax.cond (lazy_penalty): a skipped update
                # computes neither, and no residual of the double backward crosses the cond.
                lazy_grads, lazy_terms = lazy_penalty(
                    lambda: jax.grad(r1_r2_loss, has_aux=True)(params, real_in, fake_in),
                    first_update + i,
                    r1_interval,
                    axis_name,
                )
                d_grads = jax.tree.map(jnp.add, d_grads, lazy_grads)
                terms = {**terms, **lazy_terms}
            d_grads, d_stats = mean((d_grads, stats))
            updates, d_opt_state = state.d_tx.update(d_grads, d_opt_state, d_params)
            d_params = optax.apply_updates(d_params, updates)
            return d_loss, real_logits, fake_logits, terms

        penalty_terms = []  # the regularisers' terms of each critic update, for the metrics
        real_signs = []  # E[sign(D(real) - threshold)] of each critic update, for ADA
        for i in range(n_critic - 1):
            fake, g_stats = generate(g_params, critic_keys[i])
            _, logits, _, terms = critic_update(fake, i)
            penalty_terms.append(terms)
            real_signs.append(jnp.mean(jnp.sign(logits - threshold)))
        # the last critic update keeps the vjp of its generator forward for the generator update
        fake, g_vjp, g_stats = jax.vjp(
            lambda p, k=critic_keys[n_critic - 1]: generate(p, k),
            as_varying(g_params, axis_name),
            has_aux=True,
        )
        d_loss, real_logits, fake_logits, terms = critic_update(fake, n_critic - 1)
        penalty_terms.append(terms)
        real_signs.append(jnp.mean(jnp.sign(real_logits - threshold)))
        terms = jax.tree.map(lambda *values: sum(values) / n_critic, *penalty_terms)

        def g_loss_fn(fake: jax.Array) -> tuple[jax.Array, Any]:
            fake_in = seen(fake, 2 * n_critic)
            logits, stats = apply_train(discriminator, d_params, d_stats, fake_in, *labels)
            return generator_loss(loss, logits), (stats, logits)

        (g_loss, (d_stats, fake_logits_after)), fake_grad = jax.value_and_grad(
            g_loss_fn, has_aux=True
        )(fake)
        (g_grads,) = g_vjp(fake_grad)
        g_grads, g_stats, d_stats = mean((g_grads, g_stats, d_stats))
        updates, g_opt_state = state.g_tx.update(g_grads, state.g_opt_state, g_params)
        g_params = optax.apply_updates(g_params, updates)

        decay = ema_decay_at(state.step, ema_decay)
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_g_params, g_params)
        metrics = {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
            "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
            "d_fake_after": jnp.mean(jax.nn.sigmoid(fake_logits_after)),
            "d_acc_real": jnp.mean((real_logits > threshold).astype(jnp.float32)),
            "d_acc_fake": jnp.mean((fake_logits < threshold).astype(jnp.float32)),
            **terms,
        }
        ada = state.ada
        if view.adaptive:
            signs = mean(sum(real_signs) / n_critic)  # over the global batch
            metrics = {**metrics, "aug_p": jnp.asarray(p, jnp.float32), "ada_rt": signs}
            images = global_batch_size(batch_size, axis_name)
            ada = view.ada_update(state.ada, state.step, signs, images)
        new_state = state.replace(
            step=state.step + 1,
            g_params=g_params,
            g_batch_stats=g_stats,
            d_params=d_params,
            d_batch_stats=d_stats,
            g_opt_state=g_opt_state,
            d_opt_state=d_opt_state,
            ema_g_params=ema,
            ada=ada,
        )
        return new_state, mean(metrics)

    return gan_step

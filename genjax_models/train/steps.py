"""Pure training steps: ``step(state, batch, rng, *, axis_name=None) -> (state, metrics)``.

Steps are plain functions of arrays; callers jit them (see :func:`jit_step`) or wrap them for
data parallelism. With ``axis_name`` set (inside ``shard_map`` or ``pmap``) the parameters are cast
to device-varying before differentiation, and gradients, BatchNorm statistics and metrics are
``lax.pmean``-ed over that axis, which is exact under both ``shard_map`` and ``pmap``. Noise is
drawn per example from ``fold_in(key, global_example_index)``, so N devices draw exactly the
noise one device draws for the same global batch.

GAN BatchNorm policy (as PyTorch's DCGAN): the discriminator sees the real and the fake batch in
two separate train-mode passes, each normalised by its own batch statistics; the running statistics
are updated by every train-mode pass (D: real, fake, and the generator update's fake pass; G: every
forward).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.sharding import PartitionSpec as P

from genjax_models.configs import GAN_LOSSES
from genjax_models.losses import classification_loss, discriminator_loss, generator_loss
from genjax_models.train.accumulation import accumulate_gradients, check_grad_accum
from genjax_models.train.state import GANState, PyTree, TrainState, resolve_latent_dim, step_rng
from genjax_models.validation import check_batch_keys

DATA_AXIS = "data"
"""The mesh axis that batches are split over (:mod:`genjax_models.parallel.plans`)."""

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]
Step = Callable[..., tuple[Any, Metrics]]


def mean_over(axis_name: str | None) -> Callable[[PyTree], PyTree]:
    if axis_name is None:
        return lambda tree: tree
    return lambda tree: lax.pmean(tree, axis_name)


def as_varying(tree: PyTree, axis_name: str | None) -> PyTree:
    """Marks replicated params device-varying so ``grad`` gives the local (unsummed) gradient."""
    if axis_name is None:
        return tree
    return lax.pcast(tree, axis_name, to="varying")


def global_example_index(batch_size: int, axis_name: str | None) -> jax.Array:
    """int32[batch_size] index of each local example in the global batch."""
    offset = 0 if axis_name is None else lax.axis_index(axis_name) * batch_size
    return offset + jnp.arange(batch_size, dtype=jnp.int32)


def shard_like_batch(x: jax.Array) -> jax.Array:
    """Splits ``x``'s leading dimension over the mesh's ``"data"`` axis, as the batch is.

    Applies under a mesh with that axis (the jit data-parallel plan traces inside
    ``jax.set_mesh``); elsewhere returns ``x`` unchanged. Values the step makes from no input
    (iota, noise) are otherwise replicated, and XLA would then run everything computed from them
    (the whole generator) on the full global batch on every device.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or DATA_AXIS not in mesh.axis_names or x.shape[0] % mesh.shape[DATA_AXIS]:
        return x
    return lax.with_sharding_constraint(x, P(DATA_AXIS))


def per_example_normal(
    key: jax.Array, batch_size: int, dim: int, axis_name: str | None
) -> jax.Array:
    """float32[batch_size, dim] standard normal noise, one key per global example index."""
    index = global_example_index(batch_size, axis_name)
    if axis_name is None:
        index = shard_like_batch(index)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(index)
    return jax.vmap(lambda k: jax.random.normal(k, (dim,), jnp.float32))(keys)


def _apply_train(
    module: nn.Module, params: PyTree, stats: PyTree, *inputs: jax.Array
) -> tuple[jax.Array, PyTree]:
    """Train-mode forward; returns the output and the updated BatchNorm statistics."""
    out, mutated = module.apply(
        {"params": params, "batch_stats": stats}, *inputs, train=True, mutable=["batch_stats"]
    )
    return out, mutated.get("batch_stats", {})


def ema_decay_at(step: jax.Array, decay: float) -> jax.Array:
    """EMA decay with warm-up, ``min(decay, (1 + step) / (10 + step))``, so early EMA tracks G."""
    step = step.astype(jnp.float32)
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def make_gan_step(
    generator: nn.Module,
    discriminator: nn.Module,
    loss: str = "non_saturating",
    n_critic: int = 1,
    ema_decay: float = 0.999,
    latent_dim: int | None = None,
    conditional: bool = False,
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
    Metrics (float32 scalars): ``d_loss``, ``g_loss``, ``d_real`` (mean D(x)), ``d_fake`` (mean
    D(G(z)) before the D update), ``d_fake_after`` (after it), ``d_acc_real``, ``d_acc_fake``.
    """
    if loss not in GAN_LOSSES:
        raise ValueError(
            f"loss={loss!r} is not a GAN loss: expected one of {', '.join(GAN_LOSSES)}"
        )
    if isinstance(n_critic, bool) or not isinstance(n_critic, int) or n_critic < 1:
        raise ValueError(f"n_critic={n_critic!r} is invalid: expected an integer >= 1")
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay={ema_decay!r} is invalid: expected a float in [0, 1)")
    latent_dim = resolve_latent_dim(generator, latent_dim)

    def gan_step(
        state: GANState, batch: Batch, rng: jax.Array, *, axis_name: str | None = None
    ) -> tuple[GANState, Metrics]:
        check_batch_keys("gan_step", batch, ("image", "label") if conditional else ("image",))
        mean = mean_over(axis_name)
        real = batch["image"]
        batch_size = real.shape[0]
        labels = (batch["label"],) if conditional else ()  # extra inputs of G and D
        g_params, d_params = state.g_params, state.d_params
        g_stats, d_stats = state.g_batch_stats, state.d_batch_stats
        d_opt_state = state.d_opt_state

        def generate(params: PyTree, key: jax.Array) -> tuple[jax.Array, PyTree]:
            z = per_example_normal(key, batch_size, latent_dim, axis_name)
            return _apply_train(generator, params, g_stats, z, *labels)

        def d_loss_fn(params: PyTree, fake: jax.Array) -> tuple[jax.Array, Any]:
            real_logits, stats = _apply_train(discriminator, params, d_stats, real, *labels)
            fake_logits, stats = _apply_train(discriminator, params, stats, fake, *labels)
            return discriminator_loss(loss, real_logits, fake_logits), (
                stats,
                real_logits,
                fake_logits,
            )

        def critic_update(fake: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
            """One discriminator update against ``fake``: ``(d_loss, real_logits, fake_logits)``."""
            nonlocal d_params, d_stats, d_opt_state
            (d_loss, (d_stats, real_logits, fake_logits)), d_grads = jax.value_and_grad(
                d_loss_fn, has_aux=True
            )(as_varying(d_params, axis_name), fake)
            d_grads, d_stats = mean((d_grads, d_stats))
            updates, d_opt_state = state.d_tx.update(d_grads, d_opt_state, d_params)
            d_params = optax.apply_updates(d_params, updates)
            return d_loss, real_logits, fake_logits

        critic_keys = jax.random.split(rng, n_critic + 1)
        for i in range(n_critic - 1):
            fake, g_stats = generate(g_params, critic_keys[i])
            critic_update(fake)
        # the last critic update keeps the vjp of its generator forward for the generator update
        fake, g_vjp, g_stats = jax.vjp(
            lambda p, k=critic_keys[n_critic - 1]: generate(p, k),
            as_varying(g_params, axis_name),
            has_aux=True,
        )
        d_loss, real_logits, fake_logits = critic_update(fake)

        def g_loss_fn(fake: jax.Array) -> tuple[jax.Array, Any]:
            logits, stats = _apply_train(discriminator, d_params, d_stats, fake, *labels)
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
            "d_acc_real": jnp.mean((real_logits > 0).astype(jnp.float32)),
            "d_acc_fake": jnp.mean((fake_logits < 0).astype(jnp.float32)),
        }
        new_state = state.replace(
            step=state.step + 1,
            g_params=g_params,
            g_batch_stats=g_stats,
            d_params=d_params,
            d_batch_stats=d_stats,
            g_opt_state=g_opt_state,
            d_opt_state=d_opt_state,
            ema_g_params=ema,
        )
        return new_state, mean(metrics)

    return gan_step


CLASSIFIER_OBJECTIVES = ("conditional", "joint")


def _has_batch_norm(batch_stats: PyTree) -> bool:
    """Whether ``batch_stats`` holds a BatchNorm's running statistics (Flax names its variance
    ``var``; fixed input statistics such as ``Standardize``'s mean and scale do not count)."""
    paths = jax.tree_util.tree_leaves_with_path(batch_stats)
    return any(str(getattr(path[-1], "key", path[-1])) == "var" for path, _ in paths)


def make_classifier_step(
    model: nn.Module,
    *,
    input_key: str = "image",
    objective: str = "conditional",
    grad_accum: int = 1,
) -> Step:
    """Builds ``classifier_step(state, batch, rng, *, axis_name=None) -> (TrainState, metrics)``.

    ``batch[input_key]``: float32[batch, ...] inputs (``"image"``: [batch, H, W, C];
    ``"features"``: [batch, D]); ``batch["label"]``: int32[batch]. The model is called as
    ``model(x, train=True)`` and returns float32[batch, classes] scores. The ``objective`` is
    the log-likelihood that one step of gradient descent increases:

    - ``"conditional"`` (discriminative): ``log p(y | x)``, the scores are logits and the loss
      is their mean cross-entropy;
    - ``"joint"`` (generative): ``log p(x, y)``, the scores are ``log p(x, y=k)`` (e.g.
      :class:`~genjax_models.models.class_conditional.ClassConditionalGaussian`) and the loss
      is ``-mean log p(x, y)``, the negative log-likelihood of the labelled examples.

    Metrics: ``loss`` and ``accuracy`` (argmax of the scores, the Bayes decision for ``joint``).
    ``grad_accum=K`` averages the gradients of K microbatches in one update
    (:mod:`genjax_models.train.accumulation`), equal to the full batch's to round-off; models
    with BatchNorm statistics refuse it.
    """
    check_grad_accum(grad_accum)
    if objective not in CLASSIFIER_OBJECTIVES:
        raise ValueError(
            f"objective={objective!r} is invalid: expected one of {', '.join(CLASSIFIER_OBJECTIVES)}"
        )

    def classifier_step(
        state: TrainState, batch: Batch, rng: jax.Array, *, axis_name: str | None = None
    ) -> tuple[TrainState, Metrics]:
        check_batch_keys("classifier_step", batch, (input_key, "label"))
        mean = mean_over(axis_name)

        if grad_accum > 1 and _has_batch_norm(state.batch_stats):
            raise ValueError(
                f"--grad-accum {grad_accum} with BatchNorm: a microbatch's statistics are not "
                "the batch's; use --grad-accum 1 or a model without BatchNorm"
            )

        def grads_and_sums(params: PyTree, part: Batch, key: jax.Array) -> tuple[Any, Any]:
            del key

            def loss_fn(p: PyTree) -> tuple[jax.Array, Any]:
                logits, stats = _apply_train(model, p, state.batch_stats, part[input_key])
                if objective == "joint":
                    log_joint = jnp.take_along_axis(logits, part["label"][:, None], axis=-1)
                    loss = -jnp.mean(log_joint)
                else:
                    loss = classification_loss(logits, part["label"])
                return loss / grad_accum, (stats, logits)

            (loss, (stats, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            hits = jnp.mean((jnp.argmax(logits, -1) == part["label"]).astype(jnp.float32))
            return grads, (loss, hits / grad_accum) if grad_accum > 1 else (loss, hits, stats)

        params = as_varying(state.params, axis_name)
        if grad_accum == 1:
            grads, (loss, accuracy, stats) = grads_and_sums(params, batch, rng)
        else:  # only fixed statistics (Standardize) are left: BatchNorm is refused above
            grads, (loss, accuracy) = accumulate_gradients(
                grads_and_sums, params, batch, rng, grad_accum
            )
            stats = state.batch_stats
        grads, stats = mean((grads, stats))
        updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(
            step=state.step + 1, params=params, batch_stats=stats, opt_state=opt_state
        )
        return new_state, mean({"loss": loss, "accuracy": accuracy})

    return classifier_step


def make_classifier_eval_step(
    model: nn.Module, *, input_key: str = "image"
) -> Callable[[TrainState, Batch], Metrics]:
    """``eval_step(state, batch) -> {"loss", "accuracy", "count", "log_joint", "log_marginal"}``
    summed over the batch.

    ``loss`` is the cross-entropy of ``softmax(scores)``, i.e. ``-log p(y | x)``. For a
    generative model (scores ``log p(x, y=k)``) ``log_joint`` sums ``log p(x, y)`` and
    ``log_marginal`` sums ``log p(x) = logsumexp_k log p(x, k)``; for a discriminative one they
    carry no meaning. Returns sums (not means) so callers can add up uneven batches exactly; an
    optional ``batch["mask"]: bool[batch]`` excludes padding examples.
    """

    def eval_step(state: TrainState, batch: Batch) -> Metrics:
        check_batch_keys("classifier eval_step", batch, (input_key, "label"))
        # Module.apply is typed "output or (output, variables)": no mutable=, the output
        logits = cast(
            jax.Array,
            model.apply(
                {"params": state.params, "batch_stats": state.batch_stats},
                batch[input_key],
                train=False,
            ),
        )
        losses = optax.softmax_cross_entropy_with_integer_labels(
            logits.astype(jnp.float32), batch["label"]
        )
        mask = batch.get("mask", jnp.ones(losses.shape, bool)).astype(jnp.float32)
        correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
        log_joint = jnp.take_along_axis(logits, batch["label"][:, None], axis=-1)[:, 0]
        return {
            "loss": jnp.sum(losses * mask),
            "accuracy": jnp.sum(correct * mask),
            "count": jnp.sum(mask),
            "log_joint": jnp.sum(log_joint * mask),
            "log_marginal": jnp.sum(jax.nn.logsumexp(logits, axis=-1) * mask),
        }

    return eval_step


def jit_step(step: Step) -> Callable[[Any, Batch], tuple[Any, Metrics]]:
    """Single-device jitted ``(state, batch) -> (state, metrics)`` with ``rng = step_rng(state)``.

    The old state's buffers are donated, so a step needs no second copy of the parameters.
    """
    return jax.jit(lambda state, batch: step(state, batch, step_rng(state)), donate_argnums=0)

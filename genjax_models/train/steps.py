"""Pure training steps: ``step(state, batch, rng, *, axis_name=None) -> (state, metrics)``.

Steps are plain functions of arrays; callers jit them (see :func:`jit_step`) or wrap them for
data parallelism. With ``axis_name`` set (inside ``shard_map`` or ``pmap``) the parameters are cast
to device-varying before differentiation, and gradients, BatchNorm statistics and metrics are
``lax.pmean``-ed over that axis, which is exact under both ``shard_map`` and ``pmap``
(:mod:`genjax_models.train.step_parts`). This module holds the classifier steps and
:func:`jit_step`; the GAN step is :func:`genjax_models.train.gan_steps.make_gan_step` (also
importable from here), the sequence steps are in :mod:`genjax_models.train.sequence_steps`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from genjax_models.losses import classification_loss
from genjax_models.train.accumulation import accumulate_gradients, check_grad_accum
from genjax_models.train.gan_steps import make_gan_step as make_gan_step  # re-exported
from genjax_models.train.state import PyTree, TrainState, step_rng
from genjax_models.train.step_parts import DATA_AXIS as DATA_AXIS  # re-exported
from genjax_models.train.step_parts import (
    Batch,
    Metrics,
    Step,
    apply_train,
    as_varying,
    mean_over,
)
from genjax_models.validation import check_batch_keys

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
                logits, stats = apply_train(model, p, state.batch_stats, part[input_key])
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

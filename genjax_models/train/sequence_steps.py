"""Pure steps for token sequences: teacher-forced seq2seq and causal LM training, eval steps.

Seq2seq batches (``int32`` numpy or jax arrays, Flax-WMT field names):
  ``inputs: [batch, src_len]``, ``targets: [batch, tgt_len]`` (each example ends with EOS, then
  PAD = 0); for packed rows also ``inputs_segmentation``, ``targets_segmentation`` (1, 2, ... per
  example, 0 = padding) and ``inputs_position``, ``targets_position`` (restarting at 0).
LM batches (Flax-lm1b field names): ``inputs: [batch, length]``, the tokens to predict, with
  optional ``inputs_segmentation`` / ``inputs_position`` for packed documents.

Both steps are one function, :func:`make_token_step`, over a forward function and the batch's
target tokens and weights: the same label-smoothed loss, metrics and normalisation.

The loss is normalised by the number of real target tokens in the *global* batch: with
``axis_name`` set each device divides its token sum by the mean token count over devices, so the
``pmean`` of the gradients equals one device's gradient on the whole batch even when devices hold
different numbers of real tokens. Dropout keys are ``fold_in(step_key, device_index)`` under an
axis (so devices draw different masks); only dropout-free models give the single-device result
bit-for-bit across device counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax

from genjax_models.losses import smoothed_token_cross_entropy
from genjax_models.models.transformer import PAD_ID
from genjax_models.train.accumulation import accumulate_gradients, check_grad_accum
from genjax_models.train.state import PyTree, TrainState
from genjax_models.train.step_parts import Batch, Metrics, Step, as_varying, mean_over
from genjax_models.validation import check_batch_keys

PACKING_FIELDS = (
    "inputs_segmentation",
    "targets_segmentation",
    "inputs_position",
    "targets_position",
)
LM_PACKING_FIELDS = ("inputs_segmentation", "inputs_position")


def target_weights(batch: Batch) -> jax.Array:
    """float32[batch, tgt_len]: 1 for real target tokens, 0 for padding."""
    if "targets_segmentation" in batch:
        return (batch["targets_segmentation"] > 0).astype(jnp.float32)
    return (batch["targets"] != PAD_ID).astype(jnp.float32)


def lm_weights(batch: Batch) -> jax.Array:
    """float32[batch, length]: 1 for real LM tokens (``inputs``), 0 for padding."""
    if "inputs_segmentation" in batch:
        return (batch["inputs_segmentation"] > 0).astype(jnp.float32)
    return (batch["inputs"] != PAD_ID).astype(jnp.float32)


Forward = Callable[..., jax.Array]
"""``forward(params, batch, train=..., rngs=...) -> logits float32[batch, length, vocab]``."""


def _seq2seq_forward(model: nn.Module) -> Forward:
    def forward(params: PyTree, batch: Batch, **kwargs: Any) -> jax.Array:
        packing = {name: batch[name] for name in PACKING_FIELDS if name in batch}
        # Module.apply is typed "output or (output, variables)": no mutable=, the output
        logits = model.apply(
            {"params": params}, batch["inputs"], batch["targets"], **packing, **kwargs
        )
        return cast(jax.Array, logits)

    return forward


def _lm_forward(model: nn.Module) -> Forward:
    def forward(params: PyTree, batch: Batch, **kwargs: Any) -> jax.Array:
        packing = {name: batch[name] for name in LM_PACKING_FIELDS if name in batch}
        logits = model.apply({"params": params}, batch["inputs"], **packing, **kwargs)
        return cast(jax.Array, logits)

    return forward


def _token_sums(
    logits: jax.Array, targets: jax.Array, weights: jax.Array, label_smoothing: float
) -> dict[str, jax.Array]:
    loss, nll = smoothed_token_cross_entropy(logits, targets, label_smoothing)
    correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
    return {
        "loss": jnp.sum(loss * weights),
        "nll": jnp.sum(nll * weights),
        "accuracy": jnp.sum(correct * weights),
    }


def make_token_step(
    forward: Forward,
    targets_key: str,
    weights_fn: Callable[[Batch], jax.Array],
    label_smoothing: float,
    grad_accum: int = 1,
) -> Step:
    """``step(state, batch, rng, *, axis_name=None) -> (TrainState, metrics)`` for any model
    whose ``forward`` gives logits for the tokens ``batch[targets_key]`` weighted by
    ``weights_fn(batch)``.

    Metrics (float32 scalars, per real target token): ``loss`` (label-smoothed, the optimised
    objective), ``nll`` (plain cross-entropy), ``accuracy`` (teacher-forced token accuracy) and
    ``tokens`` (real target tokens in the global batch).

    ``grad_accum=K`` splits each (per-device) batch into K microbatches inside the step
    (:func:`accumulate_gradients`) and applies one update; the token sums of every microbatch
    are divided by the whole batch's real-token count, so the update equals the full batch's to
    float32 round-off (dropout masks are drawn per microbatch).
    """
    required = tuple(dict.fromkeys(("inputs", targets_key)))
    check_grad_accum(grad_accum)

    def token_step(
        state: TrainState, batch: Batch, rng: jax.Array, *, axis_name: str | None = None
    ) -> tuple[TrainState, Metrics]:
        check_batch_keys("train step", batch, required)
        mean = mean_over(axis_name)
        weights = weights_fn(batch)
        tokens = mean(jnp.sum(weights))  # global count / number of devices
        devices = 1 if axis_name is None else lax.psum(1, axis_name)
        # at least one global token (a batch of padding gives 0, not NaN), whatever the devices
        normaliser = jnp.maximum(tokens, 1.0 / devices)
        if axis_name is not None:
            rng = jax.random.fold_in(rng, lax.axis_index(axis_name))

        def grads_and_sums(params: PyTree, part: Batch, key: jax.Array) -> tuple[Any, Any]:
            def loss_fn(params: PyTree) -> tuple[jax.Array, dict[str, jax.Array]]:
                logits = forward(params, part, train=True, rngs={"dropout": key})
                sums = _token_sums(logits, part[targets_key], weights_fn(part), label_smoothing)
                return sums["loss"] / normaliser, sums

            (_, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            return grads, sums

        params = as_varying(state.params, axis_name)
        if grad_accum == 1:
            grads, sums = grads_and_sums(params, batch, rng)
        else:
            grads, sums = accumulate_gradients(grads_and_sums, params, batch, rng, grad_accum)
        grads = mean(grads)
        updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {name: value / normaliser for name, value in sums.items()}
        metrics["tokens"] = tokens
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        metrics = mean(metrics)
        metrics["tokens"] = metrics["tokens"] * devices
        return new_state, metrics

    return token_step


def make_token_eval_step(
    forward: Forward,
    targets_key: str,
    weights_fn: Callable[[Batch], jax.Array],
    label_smoothing: float,
):
    """``eval_step(state, batch) -> {"loss", "nll", "accuracy", "tokens"}`` summed over tokens.

    Sums, not means, so callers add up batches exactly and divide by ``tokens`` at the end.
    """
    required = tuple(dict.fromkeys(("inputs", targets_key)))

    def eval_step(state: TrainState, batch: Batch) -> Metrics:
        check_batch_keys("eval step", batch, required)
        weights = weights_fn(batch)
        logits = forward(state.params, batch, train=False)
        sums = _token_sums(logits, batch[targets_key], weights, label_smoothing)
        return {**sums, "tokens": jnp.sum(weights)}

    return eval_step


def _label_smoothing(model: nn.Module, label_smoothing: float | None) -> float:
    """``label_smoothing``, or ``model.config.label_smoothing`` when it is ``None``."""
    if label_smoothing is None:
        return model.config.label_smoothing
    return label_smoothing


def make_seq2seq_step(
    model: nn.Module, label_smoothing: float | None = None, grad_accum: int = 1
) -> Step:
    """Builds ``seq2seq_step(state, batch, rng, *, axis_name=None) -> (TrainState, metrics)``.

    Teacher forcing: the model (an ``EncoderDecoder``) feeds ``shift_right(targets)`` to the
    decoder. ``label_smoothing`` defaults to ``model.config.label_smoothing``. Metrics as
    :func:`make_token_step`, per real target token; ``grad_accum`` microbatches per update.
    """
    label_smoothing = _label_smoothing(model, label_smoothing)
    return make_token_step(
        _seq2seq_forward(model), "targets", target_weights, label_smoothing, grad_accum
    )


def make_seq2seq_eval_step(model: nn.Module, label_smoothing: float | None = None):
    """``eval_step(state, batch) -> {"loss", "nll", "accuracy", "tokens"}`` summed over tokens.

    Sums, not means, so callers add up batches exactly and divide by ``tokens`` at the end.
    """
    label_smoothing = _label_smoothing(model, label_smoothing)
    return make_token_eval_step(_seq2seq_forward(model), "targets", target_weights, label_smoothing)


def make_lm_step(
    model: nn.Module, label_smoothing: float | None = None, grad_accum: int = 1
) -> Step:
    """Builds ``lm_step(state, batch, rng, *, axis_name=None) -> (TrainState, metrics)``.

    The model (a ``DecoderOnlyLM``) reads ``batch["inputs"]`` shifted right behind ``BOS``
    (restarting at every packed document) under a causal segment mask and predicts every token;
    padding (segment 0) weighs 0. Same loss, metrics and global-token normalisation as
    :func:`make_seq2seq_step`; ``label_smoothing`` defaults to ``model.config.label_smoothing``;
    ``grad_accum`` microbatches per update.
    """
    label_smoothing = _label_smoothing(model, label_smoothing)
    return make_token_step(_lm_forward(model), "inputs", lm_weights, label_smoothing, grad_accum)


def make_lm_eval_step(model: nn.Module, label_smoothing: float | None = None):
    """``eval_step(state, batch) -> {"loss", "nll", "accuracy", "tokens"}`` summed over tokens."""
    label_smoothing = _label_smoothing(model, label_smoothing)
    return make_token_eval_step(_lm_forward(model), "inputs", lm_weights, label_smoothing)

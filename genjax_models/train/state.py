"""Training states: immutable pytrees of arrays (plus the static optax transformations).

Everything a run needs to continue bit-identically lives here: parameters, BatchNorm statistics,
optimizer states, the EMA generator, the step counter and the base RNG key. The per-step key is
``jax.random.fold_in(state.rng, state.step)`` (see :func:`step_rng`), so no key is ever reused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import flax.core
import flax.linen as nn
import flax.struct
import flax.traverse_util
import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

if TYPE_CHECKING:
    from typing import Self

PyTree = Any

ParamAxes = tuple[tuple[tuple[str, ...], tuple[str | None, ...]], ...]
"""The logical axis names of every parameter: ``((path, names), ...)`` sorted by path, e.g.
``(("decoder", "mlp", "wi", "kernel"), ("embed", "mlp"))``; a parameter created without names
has ``None`` for each dimension. Static (hashable) state metadata, never saved: rebuilt with the
model, and read by the sharding plans of :mod:`genjax_models.parallel`."""


@flax.struct.dataclass
class TrainState:
    """State of a single-model run (classifier, seq2seq, LM).

    Attributes:
      step: int32[] number of updates applied.
      rng: uint32[2] base PRNG key of the run.
      params: float32 parameter pytree.
      batch_stats: BatchNorm running statistics (``{}`` when the model has none).
      opt_state: the optax state of ``tx``.
      tx: the optax transformation (static, not saved: rebuilt from the config).
      param_axes: the logical axis names of ``params`` (static, see :data:`ParamAxes`).
    """

    step: jax.Array
    rng: jax.Array
    params: PyTree
    batch_stats: PyTree
    opt_state: PyTree
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
    param_axes: ParamAxes = flax.struct.field(pytree_node=False, default=())

    if TYPE_CHECKING:  # added by ``flax.struct.dataclass``, which type checkers cannot see

        def replace(self, **updates: Any) -> Self: ...


@flax.struct.dataclass
class GANState:
    """State of a GAN run.

    Attributes:
      step: int32[] number of generator updates applied.
      rng: uint32[2] base PRNG key of the run.
      g_params, g_batch_stats: generator parameters and BatchNorm statistics.
      d_params, d_batch_stats: discriminator parameters and BatchNorm statistics.
      g_opt_state, d_opt_state: optax states of ``g_tx`` and ``d_tx``.
      ema_g_params: exponential moving average of ``g_params``, used for sampling.
      g_tx, d_tx: optax transformations (static, not saved: rebuilt from the config).
      g_param_axes, d_param_axes: logical axis names of ``g_params`` (and ``ema_g_params``) and
        ``d_params`` (static, see :data:`ParamAxes`).
      ada: adaptive augmentation state, ``{}`` unless ADA is on; then ``{"p": float32[]
        augmentation probability, "signs": float32[] sum of the steps' E[sign D(real)] since
        the last adjustment}`` (:func:`init_ada_state`; updated by the GAN step).
    """

    step: jax.Array
    rng: jax.Array
    g_params: PyTree
    g_batch_stats: PyTree
    d_params: PyTree
    d_batch_stats: PyTree
    g_opt_state: PyTree
    d_opt_state: PyTree
    ema_g_params: PyTree
    g_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
    d_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
    g_param_axes: ParamAxes = flax.struct.field(pytree_node=False, default=())
    d_param_axes: ParamAxes = flax.struct.field(pytree_node=False, default=())
    ada: PyTree = flax.struct.field(default_factory=dict)

    if TYPE_CHECKING:  # added by ``flax.struct.dataclass``, which type checkers cannot see

        def replace(self, **updates: Any) -> Self: ...


def step_rng(state: TrainState | GANState) -> jax.Array:
    """The key for the update that ``state`` is about to take: ``fold_in(state.rng, state.step)``."""
    return jax.random.fold_in(state.rng, state.step)


def param_axes(boxed_params: PyTree) -> ParamAxes:
    """The :data:`ParamAxes` of a parameter tree as ``model.init`` makes it (leaves boxed in
    ``nn.Partitioned`` where the model named their axes; arrays or shape structs elsewhere)."""
    flat = flax.traverse_util.flatten_dict(
        flax.core.unfreeze(boxed_params), is_leaf=lambda _, v: not isinstance(v, dict)
    )
    axes = []
    for path, leaf in flat.items():
        if isinstance(leaf, nn.Partitioned):
            names = tuple(leaf.names)
        else:
            names = (None,) * len(jnp.shape(leaf))  # pyright: ignore[reportArgumentType]
        axes.append((tuple(str(p) for p in path), names))
    return tuple(sorted(axes))


def init_variables(
    module: nn.Module, key: jax.Array, example: ArrayLike | tuple[ArrayLike, ...]
) -> tuple[PyTree, PyTree, ParamAxes]:
    """``(params, batch_stats, param_axes)`` of ``module.init(key, *example, train=False)``:
    plain float32 arrays (the ``nn.Partitioned`` boxes stripped) and their logical axis names."""
    examples = example if isinstance(example, tuple) else (example,)

    def init(k: jax.Array, xs: tuple) -> Any:
        return module.init(k, *xs, train=False)

    boxed = jax.eval_shape(init, key, examples)
    variables = jax.jit(lambda k, xs: nn.unbox(init(k, xs)))(key, examples)
    return variables["params"], variables.get("batch_stats", {}), param_axes(boxed["params"])


def init_gan_state(
    rng: jax.Array,
    generator: nn.Module,
    discriminator: nn.Module,
    g_tx: optax.GradientTransformation,
    d_tx: optax.GradientTransformation,
    image_shape: tuple[int, int, int],
    latent_dim: int | None = None,
    conditional: bool = False,
    pack: int = 1,
    ada_p: float | None = None,
) -> GANState:
    """Initialises a :class:`GANState` for any pair of Linen modules.

    Args:
      rng: uint32[2] PRNG key (``jax.random.PRNGKey(seed)``).
      generator: module called as ``generator(z, train=...)`` with ``z: float32[batch, latent_dim]``
        returning ``float32[batch, *image_shape]``.
      discriminator: module called as ``discriminator(x, train=...)`` returning ``float32[batch]``
        logits.
      g_tx, d_tx: optax transformations for the generator and the discriminator.
      image_shape: (height, width, channels) of real images.
      latent_dim: noise size; defaults to ``generator.latent_dim``.
      conditional: the modules also take labels, ``generator(z, labels, train=...)`` and
        ``discriminator(x, labels, train=...)`` with ``labels: int32[batch]``.
      pack: PacGAN's packing: the discriminator is initialised on ``[1, H, W, pack * C]``.
      ada_p: with ADA on, the starting augmentation probability (``state.ada``).
    """
    latent_dim = resolve_latent_dim(generator, latent_dim)
    g_key, d_key, run_key = jax.random.split(rng, 3)
    labels = (jnp.zeros((1,), jnp.int32),) if conditional else ()
    g_params, g_stats, g_axes = init_variables(
        generator, g_key, (jnp.zeros((1, latent_dim), jnp.float32), *labels)
    )
    height, width, channels = image_shape
    d_input = jnp.zeros((1, height, width, pack * channels), jnp.float32)
    d_params, d_stats, d_axes = init_variables(discriminator, d_key, (d_input, *labels))
    ada = {} if ada_p is None else init_ada_state(ada_p)
    return GANState(
        step=jnp.zeros((), jnp.int32),
        rng=run_key,
        g_params=g_params,
        g_batch_stats=g_stats,
        d_params=d_params,
        d_batch_stats=d_stats,
        g_opt_state=jax.jit(g_tx.init)(g_params),
        d_opt_state=jax.jit(d_tx.init)(d_params),
        ema_g_params=jax.tree.map(jnp.copy, g_params),
        g_tx=g_tx,
        d_tx=d_tx,
        g_param_axes=g_axes,
        d_param_axes=d_axes,
        ada=ada,
    )


def init_train_state(
    rng: jax.Array,
    model: nn.Module,
    tx: optax.GradientTransformation,
    example_input: ArrayLike | tuple[ArrayLike, ...],
) -> TrainState:
    """Initialises a :class:`TrainState` for ``model(example_input, train=...)``.

    A tuple ``example_input`` gives several positional inputs, e.g. ``(inputs, targets)`` of an
    encoder-decoder.
    """
    init_key, run_key = jax.random.split(rng)
    params, batch_stats, axes = init_variables(model, init_key, example_input)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        rng=run_key,
        params=params,
        batch_stats=batch_stats,
        opt_state=jax.jit(tx.init)(params),
        tx=tx,
        param_axes=axes,
    )


def resolve_latent_dim(generator: nn.Module, latent_dim: int | None) -> int:
    """``latent_dim`` if given, else ``generator.latent_dim``; a clear error when neither exists."""
    if latent_dim is None:
        latent_dim = getattr(generator, "latent_dim", None)
    if not isinstance(latent_dim, int) or latent_dim <= 0:
        raise ValueError(
            f"latent_dim={latent_dim!r}: pass latent_dim=<positive int> or give the generator "
            "module a `latent_dim` attribute"
        )
    return latent_dim


def init_ada_state(p: float) -> dict[str, jax.Array]:
    """ADA's state at the start of a run: probability ``p``, nothing accumulated."""
    return {"p": jnp.asarray(p, jnp.float32), "signs": jnp.zeros((), jnp.float32)}

"""Initialising a model from another run's checkpoint: partial restore of matching parameters.

Parameters are matched by name (their path in the params tree, e.g.
``encoder/layer_0/self_attention/qkv/kernel``): a parameter present in both with the same shape
is loaded; one only in the new model keeps its fresh initialisation; one only in the checkpoint
is unused. The same name with different shapes is an error (the configs disagree), never
silently skipped. Optimizer state is never loaded: fine-tuning starts a fresh optimizer.
A checkpoint of unrolled layers (``layer_0``, ``layer_1``, ...) loads into a model with
``scan_layers=True`` (one stacked ``layers`` subtree) and the reverse: the source is restacked
first (:func:`~genjax_models.nn.stack.stack_layers`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import numpy as np

from genjax_models.nn.stack import stack_layers, unstack_layers
from genjax_models.runs.execution import checkpointer_for
from genjax_models.runs.workdir import has_checkpoints, read_run

PyTree = Any


class ParameterShapeError(ValueError):
    """A parameter has the same name but a different shape in the checkpoint."""


@dataclasses.dataclass(frozen=True)
class RestoreReport:
    """What :func:`merge_matching_params` loaded: parameter names (``/``-joined paths).

    Attributes:
      loaded: in both, same shape: taken from the checkpoint.
      missing: only in the new model: kept at their fresh initialisation.
      unused: only in the checkpoint: ignored.
      loaded_values, total_values: numbers of scalars loaded and in the new model.
      source, step: the workdir and checkpoint step the values came from (if known).
    """

    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unused: tuple[str, ...]
    loaded_values: int
    total_values: int
    source: str = ""
    step: int | None = None

    def summary(self) -> str:
        """A few human-readable lines (what was and was not loaded)."""
        where = f" from {self.source} (step {self.step})" if self.source else ""
        lines = [
            f"genjax-models: initialised {len(self.loaded)} of "
            f"{len(self.loaded) + len(self.missing)} parameter arrays{where}: "
            f"{self.loaded_values:,} of {self.total_values:,} values"
        ]
        for label, names in (("not in the checkpoint, kept fresh", self.missing),
                             ("in the checkpoint but not in this model, unused", self.unused)):  # fmt: skip
            shown = ", ".join(names[:8]) + (
                f", ... ({len(names)} in all)" if len(names) > 8 else ""
            )
            lines.append(f"genjax-models:   {label}: {shown or 'none'}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field."""
        return dataclasses.asdict(self)


def _flatten(tree: PyTree) -> dict[str, Any]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path): leaf for path, leaf in leaves}


def _has_scanned_layers(tree: PyTree) -> bool:
    if not isinstance(tree, dict):
        return False
    return "layers" in tree or any(_has_scanned_layers(value) for value in tree.values())


def match_layer_layout(target: PyTree, source: PyTree) -> PyTree:
    """``source`` restacked to ``target``'s layer layout (scanned ``layers`` or unrolled
    ``layer_i``), unchanged where the two already agree."""
    scanned_target, scanned_source = _has_scanned_layers(target), _has_scanned_layers(source)
    if scanned_target and not scanned_source:
        return stack_layers(source)
    if scanned_source and not scanned_target:
        return unstack_layers(source)
    return source


def merge_matching_params(target: PyTree, source: PyTree) -> tuple[PyTree, RestoreReport]:
    """``target`` with every leaf whose name and shape are also in ``source`` replaced by it.

    Args:
      target: the freshly initialised params (nested dicts of arrays).
      source: params from a checkpoint (nested dicts of arrays), any model, its layers scanned
        or not.

    Returns:
      ``(params, report)``: params with ``target``'s structure and dtypes.

    Raises:
      ParameterShapeError: a name in both with different shapes (one line, naming it).
    """
    sources, targets = _flatten(match_layer_layout(target, source)), _flatten(target)
    loaded, missing = [], []
    for name, leaf in targets.items():
        if name not in sources:
            missing.append(name)
            continue
        wanted, found = np.shape(leaf), np.shape(sources[name])
        if wanted != found:
            raise ParameterShapeError(
                f"parameter {name} has shape {found} in the checkpoint but {wanted} in this "
                "model: use the pretrained run's model config (--set) for the fine-tuning run"
            )
        loaded.append(name)
    chosen = set(loaded)

    def pick(path, leaf):
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        return np.asarray(sources[name], dtype=leaf.dtype) if name in chosen else leaf

    params = jax.tree_util.tree_map_with_path(pick, target)
    sizes = {name: int(np.size(leaf)) for name, leaf in targets.items()}
    report = RestoreReport(
        loaded=tuple(loaded),
        missing=tuple(missing),
        unused=tuple(name for name in sources if name not in targets),
        loaded_values=sum(sizes[name] for name in loaded),
        total_values=sum(sizes.values()),
    )
    return params, report


INIT_SOURCE_KINDS = ("seq2seq", "span_corruption", "lm")
"""Run kinds whose params a seq2seq run can start from (``--init-from``)."""


def check_init_source(workdir: str) -> None:
    """One-line errors, before any data is read or model built, when ``workdir`` cannot be an
    ``--init-from`` source: not a run, a run of another kind, or a run with no checkpoint."""
    kind = read_run(workdir)["identity"].get("kind")
    if kind not in INIT_SOURCE_KINDS:
        raise ValueError(
            f"{workdir!r} holds a {kind!r} run: --init-from needs a "
            f"{', '.join(INIT_SOURCE_KINDS[:-1])} or {INIT_SOURCE_KINDS[-1]} run"
        )
    if not has_checkpoints(workdir):
        raise ValueError(
            f"{workdir!r} holds a {kind} run with no checkpoint yet: train it first "
            "(or wait for its first checkpoint)"
        )


def load_checkpoint_params(workdir: str) -> tuple[PyTree, int]:
    """``(params, step)`` of the latest checkpoint of any run in ``workdir`` (no target needed).

    Raises:
      WorkdirError / CheckpointError: not a run, or no checkpoint.
      ValueError: the run's state has no ``params`` (e.g. a GAN run).
    """
    identity = read_run(workdir)["identity"]
    with checkpointer_for(workdir) as checkpointer:
        state, meta = checkpointer.restore_arrays()
    if "params" not in state:
        raise ValueError(
            f"{workdir!r} holds a {identity.get('kind')!r} run without a 'params' tree: "
            "--init-from needs a seq2seq, span_corruption or lm run"
        )
    return state["params"], int(meta["step"])


def init_params_from(target: PyTree, workdir: str) -> tuple[PyTree, RestoreReport]:
    """:func:`merge_matching_params` of ``target`` and the latest params saved in ``workdir``."""
    source, step = load_checkpoint_params(workdir)
    params, report = merge_matching_params(target, source)
    return params, dataclasses.replace(report, source=os.path.abspath(workdir), step=step)


def write_report(report: RestoreReport, path: str) -> None:
    """Writes ``report`` as JSON (``DIR/init_from.json`` in a fine-tuning run)."""
    with open(path, "w") as f:
        json.dump(report.to_dict(), f, indent=2)

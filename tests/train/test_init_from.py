"""Partial restore: exactly the parameters whose names and shapes match are loaded, and reported."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from genjax_models.configs import TrainConfig, TransformerConfig, TransformerOptimConfig
from genjax_models.runs.execution import checkpointer_for, run_identity
from genjax_models.runs.init_from import (
    ParameterShapeError,
    init_params_from,
    merge_matching_params,
)
from genjax_models.runs.seq2seq import init_seq2seq_state
from genjax_models.runs.workdir import prepare_workdir

TINY = TransformerConfig(
    d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, mlp_dim=32, max_len=32
)


def test_merge_loads_matching_names_and_shapes_only() -> None:
    target = {"a": {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)},
              "c": np.ones(4, np.float32)}  # fmt: skip
    source = {"a": {"w": np.full((2, 3), 7.0), "extra": np.ones(5)}, "d": np.ones(1)}
    params, report = merge_matching_params(target, source)
    np.testing.assert_array_equal(params["a"]["w"], np.full((2, 3), 7.0))
    assert params["a"]["w"].dtype == np.float32  # the target's dtype
    np.testing.assert_array_equal(params["a"]["b"], np.zeros(3))  # kept fresh
    np.testing.assert_array_equal(params["c"], np.ones(4))
    assert report.loaded == ("a/w",)
    assert report.missing == ("a/b", "c")
    assert set(report.unused) == {"a/extra", "d"}
    assert (report.loaded_values, report.total_values) == (6, 13)
    summary = report.summary()
    assert "initialised 1 of 3 parameter arrays" in summary and "a/extra" in summary


def test_same_name_with_another_shape_is_an_error() -> None:
    target = {"a": {"w": np.zeros((2, 3), np.float32)}}
    with pytest.raises(ParameterShapeError, match=r"parameter a/w has shape \(3, 3\)") as err:
        merge_matching_params(target, {"a": {"w": np.zeros((3, 3))}})
    assert "\n" not in str(err.value)


def _save_run(workdir, config: TransformerConfig, seed: int = 1) -> dict:
    """A seq2seq workdir holding one checkpoint of a freshly initialised state."""
    train = TrainConfig(workdir=str(workdir), seed=seed)
    identity = run_identity("span_corruption", "python_docs", train, model=config)
    prepare_workdir(str(workdir), identity, resume=False, overwrite=False)
    state = init_seq2seq_state(config, TransformerOptimConfig(), seed)
    with checkpointer_for(str(workdir)) as checkpointer:
        checkpointer.save(5, state, {"identity": identity})
    return state.params


def _names(tree) -> set[str]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(str(k.key) for k in path) for path, _ in leaves}


def test_init_from_a_checkpoint_with_fewer_decoder_layers(tmp_path) -> None:
    saved = _save_run(tmp_path / "pretrained", TINY)
    bigger = dataclasses.replace(TINY, num_decoder_layers=2)
    fresh = init_seq2seq_state(bigger, TransformerOptimConfig(), seed=0).params
    params, report = init_params_from(fresh, str(tmp_path / "pretrained"))
    assert report.step == 5 and report.source.endswith("pretrained")
    assert set(report.missing) == {n for n in _names(fresh) if n.startswith("decoder/layer_1/")}
    assert set(report.loaded) == _names(saved) and not report.unused
    np.testing.assert_array_equal(
        params["decoder"]["layer_0"]["mlp"]["wi"]["kernel"],
        saved["decoder"]["layer_0"]["mlp"]["wi"]["kernel"],
    )
    np.testing.assert_array_equal(params["decoder"]["layer_1"]["mlp"]["wi"]["kernel"],
                                  fresh["decoder"]["layer_1"]["mlp"]["wi"]["kernel"])  # fmt: skip
    assert not np.array_equal(saved["embed"]["embedding"], fresh["embed"]["embedding"])
    np.testing.assert_array_equal(params["embed"]["embedding"], saved["embed"]["embedding"])
    json.dumps(report.to_dict())  # what init_from.json holds


def test_init_from_a_wider_model_is_a_shape_error(tmp_path) -> None:
    _save_run(tmp_path / "pretrained", dataclasses.replace(TINY, d_model=32))
    fresh = init_seq2seq_state(TINY, TransformerOptimConfig(), seed=0).params
    with pytest.raises(ParameterShapeError, match="has shape"):
        init_params_from(fresh, str(tmp_path / "pretrained"))


@pytest.mark.parametrize(
    "kind, checkpoint, message",
    [
        ("gan", True, "holds a 'gan' run: --init-from needs a seq2seq, span_corruption or lm run"),
        ("lm", False, "holds a lm run with no checkpoint yet: train it first"),
    ],
)
def test_a_wrong_init_source_is_refused_before_any_data_is_read(
    tmp_path, monkeypatch, kind, checkpoint, message
) -> None:
    from genjax_models.runs import seq2seq as seq2seq_run

    source = tmp_path / "source"
    (source / "checkpoints" / ("4" if checkpoint else "tmp")).mkdir(parents=True)
    (source / "run.json").write_text(json.dumps({"identity": {"kind": kind}}))

    def no_data(*args, **kwargs):
        raise AssertionError("data was read before the --init-from source was checked")

    monkeypatch.setattr(seq2seq_run, "_tokenized", no_data)
    train = TrainConfig(steps=1, batch_size=2, workdir=str(tmp_path / "new"))
    with pytest.raises(ValueError, match=message):
        seq2seq_run.train_seq2seq(TransformerConfig(), train, init_from=str(source))

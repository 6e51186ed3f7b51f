"""benchmarks/profiling.py and profile_step.py: op kinds from real HLO and from the kernel names
of a real H200 trace, model parts from JAX op names, and tiny end-to-end profiles on CPU."""

from __future__ import annotations

import glob
import json
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from genjax_models import cli

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def modules(request):
    sys.path.insert(0, str(BENCHMARKS))
    request.addfinalizer(lambda: sys.path.remove(str(BENCHMARKS)))
    import profile_step
    import profiling

    return profiling, profile_step


def test_kinds_of_compiled_cpu_hlo(modules) -> None:
    profiling, _ = modules

    def f(x, w, table, ids):
        h = x @ w  # matmul
        s = jnp.sum(jnp.exp(x), axis=-1)  # reduction
        t = jnp.transpose(x).copy()  # data movement
        g = table[ids]  # gather
        return h, s, t, g, jnp.sin(x) * 2.0  # elementwise

    args = (jnp.ones((64, 32)), jnp.ones((32, 48)), jnp.ones((10, 4)), jnp.arange(3))
    text = jax.jit(f).lower(*args).compile().as_text()
    index = profiling.HloIndex(text)
    kinds = {}  # primitive of the op's metadata -> kinds of the executed (ENTRY) ops
    for name in index.computations[index.entry]:
        if index.op_name(name):
            primitive = index.op_name(name).rsplit("/", 1)[-1]
            kinds.setdefault(primitive, set()).add(index.kind(name))
    assert kinds["dot_general"] == {"matmul"}
    assert kinds["reduce_sum"] == {"reduction"}
    assert kinds["mul"] == {"elementwise"}
    assert kinds["transpose"] <= {"data movement"}
    assert "gather/scatter" in set().union(*kinds.values())


def test_kinds_from_h200_kernel_names(modules) -> None:
    profiling, _ = modules
    expected = {
        "cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26_64x64x64": "attention",
        "void cudnn::fusion::compute_dot_do_o_specialized<true, 64>(void const*)": "attention",
        "nvjet_sm90_tst_128x160_64x5_2x1_v_bz_NNT": "matmul",
        "sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc": "convolution",
        "sm80_xmma_wgrad_implicit_gemm_indexed_tf32f32": "convolution",
        "loop_convert_fusion_20": "elementwise",  # "convert" is not a convolution
        "input_reduce_select_fusion_9": "reduction",
        "input_scatter_fusion_1": "gather/scatter",
        "Memset 0": "data movement",
        "loop_add_fusion": "elementwise",
    }
    assert {name: profiling.kind_from_kernel_name(name) for name in expected} == expected


def test_model_part_drops_transforms_primitive_and_layer_index(modules) -> None:
    profiling, _ = modules
    backward = (
        "jit(f)/transpose(jvp(EncoderDecoder))/EncoderDecoder.decode/decoder/layer_5/mlp/wi/"
        "reduce_sum"
    )
    forward = (
        "jit(f)/jvp(EncoderDecoder)/EncoderDecoder.encode/encoder/layer_0/mlp/Dropout_0/"
        "jit(_where)/select_n"
    )
    assert profiling.model_part(backward) == "decoder/layer_N/mlp/wi (backward)"
    assert profiling.model_part(forward) == "encoder/layer_N/mlp/Dropout_0"
    assert profiling.model_part("jit(f)/add") == "(top level)"


def test_breakdown_divides_by_steps_and_shares_sum_to_one(modules) -> None:
    profiling, _ = modules
    executions = [("nvjet_gemm", 0.004), ("loop_add_fusion", 0.001)] * 2 + [("Memset", 0.002)]
    result = profiling.breakdown(executions, None, steps=2, top=5)
    kinds = {row["name"]: row["seconds_per_step"] for row in result["by_kind"]}
    assert kinds == pytest.approx({"matmul": 0.004, "elementwise": 0.001, "data movement": 0.001})
    assert result["op_seconds_per_step"] == pytest.approx(0.006)
    assert result["ops_per_step"] == 2.5
    assert math.fsum(row["share"] for row in result["by_kind"]) == pytest.approx(1.0)
    assert result["top_ops"][0] == {
        "name": "nvjet_gemm",
        "seconds_per_step": pytest.approx(0.004),
        "share": pytest.approx(2 / 3),
        "kind": "matmul",
        "part": "(unnamed)",
        "calls_per_step": 1.0,
    }


def test_cpu_ops_span_to_their_end_events(modules) -> None:
    """An asynchronous op (an Eigen convolution) lasts until its ``end:`` event of the same flow
    id, on whichever thread that is; a synchronous op, its own event."""
    profiling, _ = modules
    from types import SimpleNamespace as Event

    def event(name, start, duration, **stats):
        return Event(name=name, start_ns=start, duration_ns=duration, stats=list(stats.items()))

    queued = event("convolution.5", 1_000, 150, hlo_op="convolution.5", _p=7)
    inline = event("fusion.2", 2_000, 400, hlo_op="fusion.2", _p=8)
    lines = [
        Event(
            name="tf_XLAEigen/1", events=[queued, inline, event("end: fusion.2", 2_390, 10, _c=8)]
        ),
        Event(name="tf_XLAEigen/2", events=[event("end: convolution.5", 9_000, 100, _c=7)]),
    ]
    profile = Event(planes=[], find_plane_with_name=lambda name: Event(lines=lines))
    platform, executions = profiling.op_executions(profile)
    assert platform == "cpu"
    assert executions == [("convolution.5", 8_100 / 1e9), ("fusion.2", 400 / 1e9)]


def test_profile_seq2seq_step_on_cpu(modules, tmp_path) -> None:
    _, profile_step = modules
    out = tmp_path / "profile.json"
    argv = ["seq2seq", "--batch-size", "2", "--length", "8", "--steps", "2", "--top", "50"]
    result = profile_step.main([*argv, "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["platform"] == "cpu" and result["steps"] == 2
    kinds = {row["name"]: row["share"] for row in result["by_kind"]}
    assert kinds["matmul"] > 0.1 and "reduction" in kinds and "elementwise" in kinds
    assert math.fsum(kinds.values()) == pytest.approx(1.0)
    # Every op is found in the step's HLO, so parts are Flax module paths.
    parts = [row["name"] for row in result["by_part"]]
    assert not any(part.startswith("(unnamed)") for part in parts)
    assert any(part.startswith("encoder/layer_N/mlp/wi (backward)") for part in parts)
    assert any(part.startswith("decoder/layer_N/self_attention") for part in parts)


def test_profile_lm_step_on_cpu(modules, tmp_path) -> None:
    _, profile_step = modules
    argv = ["lm", "--batch-size", "2", "--length", "8", "--steps", "1", "--top", "50"]
    result = profile_step.main([*argv, "--out", str(tmp_path / "lm.json")])
    assert {row["name"] for row in result["by_kind"]} >= {"matmul", "reduction", "elementwise"}
    parts = [row["name"] for row in result["by_part"]]
    assert any(part.startswith("decoder/layer_N/self_attention/qkv") for part in parts), parts


def test_profile_gan_step_finds_convolutions(modules, tmp_path) -> None:
    _, profile_step = modules
    argv = ["gan", "--width", "8", "--batch-size", "4", "--steps", "1"]
    result = profile_step.main([*argv, "--out", str(tmp_path / "gan.json")])
    kinds = {row["name"]: row["share"] for row in result["by_kind"]}
    assert kinds["convolution"] > 0.1


def test_profile_of_a_saved_trace(modules, tmp_path) -> None:
    _, profile_step = modules
    f = jax.jit(lambda x: jnp.tanh(x @ x).sum())
    x = jnp.ones((256, 256))
    f(x).block_until_ready()
    with jax.profiler.trace(str(tmp_path / "trace")):
        for _ in range(3):
            f(x).block_until_ready()
    (xplane,) = glob.glob(str(tmp_path / "trace" / "plugins" / "profile" / "*" / "*.xplane.pb"))
    hlo = tmp_path / "step.txt"
    hlo.write_text(f.lower(x).compile().as_text())
    out = tmp_path / "saved.json"
    # Through the console script, as `genjax-models bench profile --xplane ...`.
    argv = ["--xplane", xplane, "--hlo", str(hlo), "--steps", "3", "--out", str(out)]
    assert cli.main(["bench", "profile", *argv]) == 0
    result = json.loads(out.read_text())
    assert "matmul" in {row["name"] for row in result["by_kind"]}
    assert result["ops_per_step"] >= 1  # 3 calls of at least one op, over --steps 3
    assert all(row["part"] != "(unnamed)" for row in result["top_ops"])  # found in --hlo
    assert result["steps"] == 3 and result["command"].endswith("--out " + str(out))


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "name a workload"),
        (["seq2seq", "--xplane", "x.pb"], "name a workload"),
        (["--xplane", "/nonexistent/trace.xplane.pb"], "no such file"),
        (["gan", "--steps", "0"], "argument --steps: '0' is invalid: expected an integer >= 1"),
    ],
)
def test_bad_arguments_are_one_line_errors(modules, capsys, argv, message) -> None:
    _, profile_step = modules
    with pytest.raises(SystemExit) as exit_info:
        profile_step.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err

"""benchmarks/conv_shapes.py: its rows are the DCGAN step's convolutions (the model's kernels,
each pass as often as the jitted step runs it), each pass computes what it names (the adjoint
identities, XLA's own FLOP count, PyTorch's result), and a tiny run writes the JSON it prints,
also through `genjax-models bench convs`."""

from __future__ import annotations

import collections
import json
import re
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax_models import cli
from genjax_models.configs import GANConfig
from genjax_models.models.gan import make_dcgan
from genjax_models.train import init_gan_state, make_gan_step

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = GANConfig(base_width=4, image_size=32)  # 1 channel: every kernel shape distinct


@pytest.fixture(scope="module")
def convs(request):
    sys.path.insert(0, str(BENCHMARKS))
    request.addfinalizer(lambda: sys.path.remove(str(BENCHMARKS)))
    import conv_shapes

    return conv_shapes


def kernel_shape(layer) -> tuple[int, ...]:
    return (4, 4, layer.features_in, layer.features_out)


def test_layers_are_the_models_kernels_and_calls_are_the_steps_convolutions(convs) -> None:
    generator, discriminator = make_dcgan(TINY)
    tx = optax.adam(2e-4, b1=0.5)
    state = init_gan_state(
        jax.random.PRNGKey(0), generator, discriminator, tx, tx, TINY.image_shape
    )
    layers = convs.dcgan_layers(TINY)
    kernels = [
        leaf.shape
        for params in (state.d_params, state.g_params)
        for path, leaf in jax.tree_util.tree_leaves_with_path(params)
        if path[-1].key == "kernel" and leaf.ndim == 4
    ]
    assert sorted(kernels) == sorted(kernel_shape(layer) for layer in layers)
    assert len(set(kernels)) == len(kernels)  # so a convolution's kernel names its layer

    step = make_gan_step(generator, discriminator)
    batch = {"image": jnp.zeros((2, *TINY.image_shape), jnp.float32)}
    text = jax.jit(step).lower(state, batch, jax.random.PRNGKey(1)).as_text()
    signature = re.compile(
        r"stablehlo\.convolution.*: \(tensor<([\dx]+)xf32>, tensor<([\dx]+)xf32>\)"
    )
    by_kernel = {kernel_shape(layer): layer for layer in layers}
    counted: collections.Counter = collections.Counter()
    for match in signature.finditer(text):
        lhs, rhs = (tuple(int(d) for d in s.split("x")) for s in match.groups())
        result = re.search(r"-> tensor<([\dx]+)xf32>", text[match.end() : match.end() + 80])
        out = tuple(int(d) for d in result.group(1).split("x"))
        if out in by_kernel:
            counted[by_kernel[out].name, "weight gradient"] += 1
        else:
            layer = by_kernel[rhs]
            which = "forward" if lhs[1] == layer.size else "input gradient"
            counted[layer.name, which] += 1
    expected = {
        (layer.name, which): calls
        for layer in layers
        for which, calls in convs.step_calls(layer, first=layer is layers[0]).items()
    }
    assert dict(counted) == expected
    assert sum(expected.values()) == 39


@pytest.mark.parametrize("index", range(7))
def test_each_pass_is_the_adjoint_it_names_with_xlas_flop_count(convs, index) -> None:
    layer = convs.dcgan_layers(TINY)[index]
    x, kernel, dy = convs.operands(layer, batch=2, kernel_scale=1.0)
    args = tuple(jnp.asarray(a) for a in (x, kernel, dy))
    y = convs.jax_pass(layer, "forward")(*args)
    dx = convs.jax_pass(layer, "input gradient")(*args)
    dkernel = convs.jax_pass(layer, "weight gradient")(*args)
    assert y.shape == dy.shape and dx.shape == x.shape and dkernel.shape == kernel.shape
    # bilinear: <f(x, k), dy> = <x, df/dx^T dy> = <k, df/dk^T dy>
    inner = float(jnp.vdot(y, dy))
    np.testing.assert_allclose(float(jnp.vdot(x, dx)), inner, rtol=1e-4)
    np.testing.assert_allclose(float(jnp.vdot(kernel, dkernel)), inner, rtol=1e-4)
    # XLA counts the taps inside the image; flops() counts all 16 (with the zero padding)
    strided = layer.size if layer.transposed else layer.output_size
    valid = 16 * strided**2 if layer.logit else (4 * strided - 2) ** 2
    for which in convs.PASSES:
        analysis = convs.jax_pass(layer, which).lower(*args).compile().cost_analysis()
        analysis = analysis[0] if isinstance(analysis, list) else analysis
        expected = layer.flops(2) * valid / (16 * strided**2)
        assert analysis["flops"] == pytest.approx(expected, rel=1e-6), which


@pytest.mark.parametrize("index", [0, 2, 3, 4, 6])
def test_torch_passes_compute_the_jax_passes(convs, index) -> None:
    torch = pytest.importorskip("torch")
    layer = convs.dcgan_layers(TINY)[index]
    x, kernel, dy = convs.operands(layer, batch=2, seed=index, kernel_scale=1.0)
    t_x, t_w, t_dy = convs.torch_operands(torch, layer, x, kernel, dy)
    for which in convs.PASSES:
        ours = np.asarray(convs.jax_pass(layer, which)(*(jnp.asarray(a) for a in (x, kernel, dy))))
        theirs = convs.torch_pass(torch, layer, which)(t_x, t_w, t_dy).numpy()
        if which != "weight gradient":
            theirs = theirs.transpose(0, 2, 3, 1)  # NCHW -> NHWC
        elif layer.transposed:  # [in, out, 4, 4], flipped -> HWIO
            theirs = theirs.transpose(2, 3, 0, 1)[::-1, ::-1]
        else:  # [out, in, 4, 4] -> HWIO
            theirs = theirs.transpose(2, 3, 1, 0)
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4, err_msg=which)


def test_kernel_names_from_hlo(convs) -> None:
    assert convs.xla_kernel('fusion(), backend_config={"kind":"__ynn_fusion"}') == "YNNPACK fusion"
    eigen = "%c = f32[64,16,16,64] convolution(%x, %k), dim_labels=b01f_01io->b01f"
    assert convs.xla_kernel(eigen) == "Eigen convolution"
    assert convs.xla_kernel("%c = convolution(%x, %k), dim_labels=f01b_i01o->01bf") == (
        "XLA loop emitter"
    )
    assert convs.xla_kernel("%dot = f32[256,1] dot(%a, %b)") == "XLA dot"


def test_torch_profiler_events_by_kind(convs) -> None:
    assert convs.torch_kind("aten::mul_", ["Optimizer.step#Adam.step"]) == "optimizer"
    assert convs.torch_kind("aten::mkldnn_convolution", ["aten::conv2d"]) == "convolution"
    assert convs.torch_kind("aten::add_", ["aten::convolution_backward"]) == "convolution"
    assert convs.torch_kind("aten::native_batch_norm", []) == "batch norm"
    assert convs.torch_kind("aten::addmm", ["aten::linear"]) == "matmul"
    assert convs.torch_kind("aten::leaky_relu", []) == "elementwise"


@pytest.mark.slow
def test_tiny_run_through_the_console_script(tmp_path, capsys) -> None:
    out = tmp_path / "convs.json"
    rows = ["D down 1: weight gradient", "G up 0: forward"]
    argv = ["--width", "4", "--batch-size", "2", "--windows", "1", "--profile-steps", "1"]
    cli.main(["bench", "convs", *argv, "--out", str(out), "--rows", *rows])
    result = json.loads(out.read_text())
    assert result["benchmark"] == "conv_shapes" and result["platform"] == "cpu"
    assert [f"{r['layer']}: {r['pass']}" for r in result["rows"]] == rows
    assert [r["calls_per_step"] for r in result["rows"]] == [2, 1]
    assert result["rows"][0]["flops"] == 2 * 2 * 8 * 8 * 4 * 8 * 16
    assert result["measured_gemm"]["flops_per_sec"] > 0
    totals = result["conv_ms_per_step"]["jax"]
    assert totals["all"] == pytest.approx(
        2 * result["rows"][0]["jax_ms"] + result["rows"][1]["jax_ms"]
    )
    step = result["step"]
    assert step["jax_step_ms"] > 0 and step["jax_ms_by_kind"]["convolution"] > 0
    if "torch" in result:  # the .[bench] extra installed
        assert step["torch_ms_by_kind"]["convolution"] > 0
        for row in result["rows"]:
            assert row["jax_over_torch_time"] == pytest.approx(row["jax_ms"] / row["torch_ms"])
    printed = capsys.readouterr().out
    assert "D down 1: weight gradient" in printed and f"wrote {out}" in printed


def test_unknown_row_is_a_one_line_error(convs, capsys) -> None:
    with pytest.raises(SystemExit):
        convs.main(["--rows", "D down 9: forward"])
    err = capsys.readouterr().err
    assert "--rows 'D down 9: forward' is not a row; choose from ['D down 0: forward'" in err
    assert len(err.strip().splitlines()) == 1

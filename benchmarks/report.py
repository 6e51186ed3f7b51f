"""Builds the benchmark tables of the Benchmarks guide from ``benchmarks/results/*.json``.

    python benchmarks/report.py           # print the markdown
    python benchmarks/report.py --write   # rewrite the block between docs/guides/benchmarks.md's markers

A test checks that the guide's block equals what this script generates from the committed JSON.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
GUIDE = os.path.join(os.path.dirname(HERE), "docs", "guides", "benchmarks.md")
BEGIN, END = "<!-- benchmarks:begin -->", "<!-- benchmarks:end -->"


def load_results(directory: str = os.path.join(HERE, "results")) -> list[dict]:
    """Every training/decoding/blocks benchmark JSON (not the data-parallel sweep), by name."""
    results = []
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path) as f:
            result = json.load(f)
        if result.get("benchmark") in ("gan", "seq2seq", "lm", "decode", "blocks"):
            results.append({**result, "file": os.path.basename(path)})
    return results


def _device(r: dict) -> str:
    cores = f", {r['cpu_count']} cores" if r["platform"] == "cpu" else ""
    return f"{r['device_kind']}{cores}"


def _model(r: dict) -> str:
    c = r["config"]
    if c.get("attention", "xla") != "xla":
        return _model({**r, "config": {**c, "attention": "xla"}}) + f", {c['attention']} attention"
    if r["benchmark"] == "gan":
        return f"DCGAN width {c['base_width']}, {c['image_size']}x{c['image_size']}, batch {c['batch_size']}"
    if r["benchmark"] == "seq2seq":
        layers = f"{c['num_encoder_layers']}+{c['num_decoder_layers']}"
        return f"seq2seq d{c['d_model']} {layers} layers, batch {c['batch_size']} x {c['length']}"
    return f"LM d{c['d_model']} {c['num_layers']} layers, batch {c['batch_size']} x {c['length']}"


def _throughput(r: dict) -> str:
    rate = r["jax"]["steps_per_sec"]
    if r["benchmark"] == "gan":
        return f"{rate:.2f} steps/s ({r['images_per_sec']:,.0f} img/s)"
    return f"{rate:.2f} steps/s ({r['tokens_per_sec']:,.0f} tok/s)"


def _mfu(r: dict, mfu: float | None) -> str:
    """MFU against the peak; on accelerators also against the GEMM rate measured in the run."""
    if mfu is None:
        return "n/a"
    gemm = r.get("measured_gemm")
    if r["platform"] == "cpu" or not gemm:
        return f"{mfu:.0%}"
    share = r["achieved_flops_per_sec"] / gemm["flops_per_sec"]
    return f"{mfu:.0%} ({share:.0%} of measured GEMM)"


def _command(r: dict) -> str:
    if "command" in r:
        return r["command"].strip()
    return f"python benchmarks/bench_gan.py --width {r['config']['base_width']}"


def markdown(results: list[dict]) -> str:
    lines = [
        "| device | model | dtype | JAX throughput | MFU | JAX / PyTorch | command |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in (r for r in results if r["benchmark"] not in ("decode", "blocks")):
        mfu = r.get("mfu", r.get("fraction_of_matmul_flops"))
        ratio = r.get("jax_over_torch")
        lines.append(
            f"| {_device(r)} | {_model(r)} | {r['config'].get('dtype', 'float32')} | "
            f"{_throughput(r)} | {_mfu(r, mfu)} | "
            f"{'n/a' if ratio is None else f'{ratio:.2f}x'} | `{_command(r)}` |"
        )
    decode = [r for r in results if r["benchmark"] == "decode"]
    if decode:
        lines += [
            "",
            "| device | decoding | output length | cached tok/s | uncached tok/s | speed-up | command |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in decode:
            for row in r["results"]:
                lines.append(
                    f"| {_device(r)} | {row['method']} | {row['length']} | "
                    f"{row['cached']['tokens_per_sec']:,.0f} | {row['uncached']['tokens_per_sec']:,.0f} | "
                    f"{row['speedup']:.1f}x | `{_command(r)}` |"
                )
    for r in (r for r in results if r["benchmark"] == "blocks"):
        lines += blocks_tables(r)
    return "\n".join(lines) + "\n"


def blocks_tables(r: dict) -> list[str]:
    """The tables of one ``bench_blocks.py`` result: compile time vs depth, remat policies,
    KV-cache bytes (each section present in the JSON)."""
    lines: list[str] = []
    command = _command(r)
    if "compile" in r:
        lines += [
            "",
            "| device | LM step compile | layers | seconds | vs shallowest | command |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for row in r["compile"]:
            stack = "scanned" if row["scan_layers"] else "unrolled"
            lines.append(
                f"| {_device(r)} | {stack} | {row['num_layers']} | {row['compile_seconds']:.2f} | "
                f"{row['vs_shallowest']:.2f}x | `{command}` |"
            )
    if "remat" in r:
        length = r["remat_config"]["length"]
        lines += [
            "",
            f"| device | LM at length {length}: remat | stack | temporary memory | vs none "
            "| steps/s | vs none | command |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in r["remat"]:
            stack = "scanned" if row["scan_layers"] else "unrolled"
            lines.append(
                f"| {_device(r)} | {row['remat']} | {stack} | {row['temp_bytes'] / 2**20:,.0f} MiB | "
                f"{row['temp_vs_none']:.2f}x | {row['steps_per_sec']:.3f} | "
                f"{row['speed_vs_none']:.2f}x | `{command}` |"
            )
    if "kv_cache" in r:
        lines += [
            "",
            "| device | KV cache, 8 query heads | KV heads | bytes | vs multi-head | command |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for row in r["kv_cache"]:
            kind = {8: "multi-head", 1: "multi-query"}.get(row["num_kv_heads"], "grouped-query")
            lines.append(
                f"| {_device(r)} | {kind} | {row['num_kv_heads']} | "
                f"{row['kv_cache_bytes'] / 2**20:,.0f} MiB | {row['vs_multi_head']:.3f}x | `{command}` |"
            )
    return lines


def table_block(text: str) -> str:
    """The text between the benchmark markers of a markdown page."""
    match = re.search(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), text, re.S)
    if match is None:
        raise ValueError(f"no {BEGIN} ... {END} block")
    return match.group(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--write", action="store_true", help="rewrite the block in docs/guides/benchmarks.md"
    )
    args = parser.parse_args(argv)
    table = markdown(load_results())
    if not args.write:
        print(table, end="")
        return
    with open(GUIDE) as f:
        guide = f.read()
    old = table_block(guide)
    with open(GUIDE, "w") as f:
        f.write(guide.replace(BEGIN + "\n" + old + END, BEGIN + "\n" + table + END))
    print(f"updated {GUIDE}")


if __name__ == "__main__":
    main()

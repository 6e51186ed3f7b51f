"""Where a compiled step's time goes, read from a ``jax.profiler`` trace (pure functions).

:func:`op_executions` lists every XLA operation the trace saw run (a GPU kernel, or an HLO op on a
CPU thread), :class:`HloIndex` reads the optimized HLO text of the same program, and
:func:`breakdown` sums the time per step by *kind* of operation and by *model part*:

- kind: ``matmul``, ``convolution``, ``attention`` (fused attention kernels), ``reduction``,
  ``elementwise``, ``data movement`` (copy, transpose, slice, concatenate, pad, memset, memcpy),
  ``gather/scatter``, ``rng``. From the HLO of the op (the opcodes of a fusion's body) where the
  op is found in it, else from the kernel's name (cuBLAS ``nvjet``/``gemm``, cuDNN ``sdpa``/
  ``fprop``/``dgrad``/``wgrad`` kernels inside CUDA graphs carry no HLO name).
- model part: the ``op_name`` XLA keeps in each op's metadata with JAX's transforms and the layer
  index dropped, e.g. ``decoder/layer_N/mlp/Dropout_0 (backward)``; ``(unnamed)`` where the op is
  not in the HLO.

Times are summed over every stream or thread, so on a multi-threaded CPU the per-step total can
exceed the wall time (and ops that ran concurrently each count in full). On a GPU, XLA compiles
one kernel for identical fusions and names it after the first; a part there is that first
fusion's.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable

_DATA_MOVEMENT = {
    "bitcast",
    "broadcast",
    "concatenate",
    "constant",
    "copy",
    "dynamic-slice",
    "dynamic-update-slice",
    "get-tuple-element",
    "iota",
    "pad",
    "parameter",
    "reshape",
    "slice",
    "transpose",
    "tuple",
}
# Kernel names of vendor libraries, for ops that have no HLO name in the trace.
_KERNEL_PATTERNS = (
    ("attention", re.compile(r"sdpa|flash|fmha|dot_do_o|convert_dq|dot_product_attention")),
    ("convolution", re.compile(r"fprop|dgrad|wgrad|conv2d|implicit_gemm|convolution")),
    ("matmul", re.compile(r"nvjet|gemm|cublas|cutlass|xmma|matmul|dot")),
    ("data movement", re.compile(r"memset|memcpy|copy|transpose|concatenate|slice|pad")),
    ("gather/scatter", re.compile(r"scatter|gather")),
    ("rng", re.compile(r"rng|threefry|philox")),
    ("reduction", re.compile(r"reduce")),
)


def kind_from_opcodes(opcodes: Iterable[str], custom_call_targets: Iterable[str] = ()) -> str:
    """The kind of an op whose HLO (body included) holds ``opcodes``."""
    ops, targets = set(opcodes), " ".join(custom_call_targets).lower()
    if re.search(r"fmha|attention|flash", targets):
        return "attention"
    if "convolution" in ops or "conv" in re.sub(r"convert", "", targets):
        return "convolution"
    if ops & {"dot", "dot-general"} or re.search(r"gemm|matmul", targets):
        return "matmul"
    if ops & {"scatter", "gather"}:
        return "gather/scatter"
    if ops & {"rng", "rng-bit-generator", "rng-get-and-update-state"}:
        return "rng"
    if ops & {"reduce", "reduce-window", "select-and-scatter"}:
        return "reduction"
    if ops <= _DATA_MOVEMENT:
        return "data movement"
    return "elementwise"


def kind_from_kernel_name(name: str) -> str:
    """The kind of a kernel known only by its name (vendor-library kernels)."""
    lowered = name.lower()
    for kind, pattern in _KERNEL_PATTERNS:
        if pattern.search(lowered):
            return kind
    return "elementwise"


def model_part(op_name: str) -> str:
    """``'transpose(jvp(EncoderDecoder))/EncoderDecoder.decode/decoder/layer_5/mlp/wi/reduce_sum'``
    -> ``'decoder/layer_N/mlp/wi (backward)'``: the module path of a JAX ``op_name``, without the
    primitive, the ``jit(...)`` wrappers, Flax method scopes and layer indices."""
    backward = "transpose(" in op_name
    parts = [
        p
        for p in op_name.split("/")[:-1]
        if not re.match(r"^(jit|jvp|transpose|vmap|remat|checkpoint|pjit)\(", p) and "." not in p
    ]
    path = re.sub(r"layer_\d+", "layer_N", "/".join(parts)) or "(top level)"
    return f"{path} (backward)" if backward else path


class HloIndex:
    """Optimized HLO text -> per instruction: its opcodes (with those of the computations it
    calls, recursively), custom-call targets and ``op_name`` metadata."""

    _INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*")
    _COMPUTATION = re.compile(r"^\s*(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")

    def __init__(self, hlo_text: str):
        self.instructions: dict[str, tuple[str, list[str], str, str]] = {}
        self.computations: dict[str, list[str]] = collections.defaultdict(list)
        self.entry: str | None = None  # the ENTRY computation's name
        current = None
        for line in hlo_text.splitlines():
            match = self._INSTRUCTION.match(line)
            if match is None:
                computation = self._COMPUTATION.match(line)
                if computation:
                    current = computation.group(1)
                    if line.lstrip().startswith("ENTRY"):
                        self.entry = current
                continue
            opcode = _opcode(line[match.end() :])
            if opcode is None:
                continue
            calls = re.findall(r"(?:calls|to_apply|body|condition)=%?([\w.\-]+)", line)
            target = re.search(r'custom_call_target="([^"]*)"', line)
            op_name = re.search(r'op_name="([^"]*)"', line)
            self.instructions[match.group(1)] = (
                opcode,
                calls,
                target.group(1) if target else "",
                op_name.group(1) if op_name else "",
            )
            if current is not None:
                self.computations[current].append(match.group(1))

    def lookup(self, op: str) -> str | None:
        """The instruction name of a trace op: itself, or a GPU kernel name (``fusion_12`` for
        ``fusion.12``)."""
        for candidate in (op, re.sub(r"_(\d+)$", r".\1", op)):
            if candidate in self.instructions:
                return candidate
        return None

    def kind(self, name: str) -> str:
        opcodes, targets, seen = [], [], set()
        pending = [name]
        while pending:
            current = pending.pop()
            if current in seen or current not in self.instructions:
                continue
            seen.add(current)
            opcode, calls, target, _ = self.instructions[current]
            opcodes.append(opcode)
            targets.append(target)
            for computation in calls:
                pending.extend(self.computations.get(computation, []))
        return kind_from_opcodes(opcodes, targets)

    def op_name(self, name: str) -> str:
        return self.instructions[name][3]


def _opcode(rest: str) -> str | None:
    """The opcode after ``name = ``: skips the shape (a tuple shape is in parentheses)."""
    if rest.startswith("("):
        depth = 0
        for i, char in enumerate(rest):
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0:
                rest = rest[i + 1 :]
                break
    else:
        rest = rest.split(" ", 1)[1] if " " in rest else ""
    match = re.match(r"\s*([\w-]+)\(", rest)
    return match.group(1) if match else None


def op_executions(profile) -> tuple[str, list[tuple[str, float]]]:
    """``(platform, [(op name, seconds), ...])`` from a ``jax.profiler.ProfileData``: kernels on
    the first accelerator plane's streams, else HLO ops on the host's XLA threads (``cpu``), each
    from its start to its end (for an asynchronous op, its ``end:`` event's)."""
    for plane in profile.planes:
        if plane.name.startswith("/device:"):
            platform = plane.name.split(":")[1].lower()
            return platform, [
                (event.name, event.duration_ns / 1e9)
                for line in plane.lines
                if not line.name.startswith(("XLA Modules", "XLA Ops", "Command Buffers"))
                for event in line.events
            ]
    host = profile.find_plane_with_name("/host:CPU")
    # An op that XLA:CPU runs asynchronously (an Eigen convolution: the thunk returns once the
    # work is queued on Eigen's threads) ends at an "end: <op>" event whose flow id ("_c")
    # is its start event's ("_p"); the start event alone spans only the queueing.
    ends: dict[object, float] = {}
    starts = []
    for line in host.lines:
        for event in line.events:
            stats = dict(event.stats)
            if event.name.startswith("end: ") and "_c" in stats:
                ends[stats["_c"]] = event.start_ns + event.duration_ns
            elif stats.get("hlo_op") is not None and event.name == stats["hlo_op"]:
                starts.append((event, stats.get("_p")))
    executions = []
    for event, flow in starts:
        end = max(ends.get(flow, 0.0), event.start_ns + event.duration_ns)
        executions.append((event.name, (end - event.start_ns) / 1e9))
    return "cpu", executions


def breakdown(
    executions: list[tuple[str, float]], hlo: HloIndex | None, steps: int, top: int = 15
) -> dict:
    """Seconds per step by kind, by model part and kind (``'mlp/wi (backward) [matmul]'``) and
    for the ``top`` slowest ops.

    ``executions`` come from :func:`op_executions` over ``steps`` traced steps; shares are of
    the summed op time.
    """
    by_kind: collections.Counter = collections.Counter()
    by_part: collections.Counter = collections.Counter()
    by_op: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    described: dict[str, tuple[str, str]] = {}
    for op, seconds in executions:
        if op not in described:
            name = hlo.lookup(op) if hlo is not None else None
            if name is None:
                described[op] = (kind_from_kernel_name(op), "(unnamed)")
            else:
                described[op] = (hlo.kind(name), model_part(hlo.op_name(name)))
        kind, part = described[op]
        by_kind[kind] += seconds / steps
        by_part[f"{part} [{kind}]"] += seconds / steps
        by_op[op] += seconds / steps
        calls[op] += 1
    total = sum(by_kind.values())

    def rows(counter: collections.Counter, limit: int | None = None) -> list[dict]:
        return [
            {"name": key, "seconds_per_step": value, "share": value / total if total else 0.0}
            for key, value in counter.most_common(limit)
        ]

    return {
        "op_seconds_per_step": total,
        "ops_per_step": len(executions) / steps,
        "by_kind": rows(by_kind),
        "by_part": rows(by_part, top),
        "top_ops": [
            {
                **row,
                "kind": described[row["name"]][0],
                "part": described[row["name"]][1],
                "calls_per_step": calls[row["name"]] / steps,
            }
            for row in rows(by_op, top)
        ],
    }


def format_breakdown(result: dict) -> str:
    """The tables :func:`breakdown`'s result prints as."""
    lines = [
        f"op time per step {result['op_seconds_per_step'] * 1e3:.2f} ms over "
        f"{result['ops_per_step']:.0f} ops (summed over streams/threads)",
        "",
        f"{'kind':<16}{'ms/step':>10}{'share':>8}",
    ]
    lines += [
        f"{r['name']:<16}{r['seconds_per_step'] * 1e3:>10.2f}{r['share']:>8.1%}"
        for r in result["by_kind"]
    ]
    lines += ["", f"{'model part [kind]':<66}{'ms/step':>10}{'share':>8}"]
    lines += [
        f"{r['name'][:65]:<66}{r['seconds_per_step'] * 1e3:>10.2f}{r['share']:>8.1%}"
        for r in result["by_part"]
    ]
    lines += ["", f"{'op':<44}{'kind':<15}{'calls':>6}{'ms/step':>9}  model part"]
    lines += [
        f"{r['name'][:43]:<44}{r['kind']:<15}{r['calls_per_step']:>6.0f}"
        f"{r['seconds_per_step'] * 1e3:>9.2f}  {r['part']}"
        for r in result["top_ops"]
    ]
    return "\n".join(lines)

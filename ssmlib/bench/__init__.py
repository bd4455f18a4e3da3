"""Benchmarks: ``python -m ssmlib.bench SUITE [--sweep] [--out DIR]``.

One submodule per kernel (``ssmlib.bench.recurrence``, ...); each has a
``run(ceil, sweep) -> list[dict]`` that ``python -m ssmlib.bench`` finds by name.
This module holds what they share.

Every benchmark times with ``triton.testing.do_bench`` (CUDA events, median
of many runs after warm-up), measures the device's ceilings in the same run
(device-to-device copy bandwidth, float32 matmul rate), counts the bytes and
flops the work needs at minimum, and writes a JSON file under
``book/results/`` that the book plots when it is built without a GPU:

``{"benchmark", "device", "torch", "triton", "python", "date",
"ceilings": {"copy_GBps", "fp32_TFLOPs", "tf32_TFLOPs", "bf16_TFLOPs"}, "rows": [{"impl", "N", "batch", "H",
"L", "dtype", "median_ms", "bytes", "flops", "roofline_ms",
"fraction_of_roofline"}, ...]}``

``fraction_of_roofline`` is roofline_ms / median_ms: 1.0 would be a kernel
that moves the minimal bytes at copy speed, or does the minimal flops at the
measured float32 rate, whichever takes longer.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import triton

RESULTS = Path(__file__).resolve().parents[2] / "book" / "results"


def environment() -> dict:
    """Device, versions and date, recorded with every result."""
    return {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def median_ms(fn, warmup: int = 25, rep: int = 100) -> float:
    """Median time of ``fn()`` in milliseconds (CUDA events, after warm-up)."""
    return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


def graph_ms(fn, rep: int = 100) -> float:
    """Median time of ``fn()`` replayed from a CUDA graph, in milliseconds: the kernels' time without
    the host's (argument checks, allocations, launches), which back-to-back calls of a short
    ``fn`` measure instead (see :func:`host_ms`)."""
    return float(triton.testing.do_bench_cudagraph(fn, rep=rep, return_mode="median"))


def host_ms(fn, calls: int = 50) -> float:
    """Host time of one ``fn()`` in milliseconds: ``calls`` calls issued back to back without
    waiting for the GPU (argument checks, allocations, launches), after a synchronisation.
    When it exceeds the kernel time, back-to-back timings measure the host, not the kernel."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    t = (time.perf_counter() - t0) / calls * 1e3
    sync()
    return t


def ceilings() -> dict:
    """Measure copy bandwidth (read + write bytes / s) and the matmul rates of float32 on FMA units
    (no TF32), float32 inputs on tensor cores (TF32), and bfloat16."""
    src = torch.randn(2**30 // 4 * 2, device="cuda")          # 2 GiB, far beyond L2
    dst = torch.empty_like(src)
    t = median_ms(lambda: dst.copy_(src))
    copy_GBps = 2 * src.numel() * 4 / (t * 1e-3) / 1e9
    del src, dst
    n = 8192
    a, b = torch.randn(n, n, device="cuda"), torch.randn(n, n, device="cuda")
    rates = {}
    tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        for name, dtype, allow_tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                                        ("bf16", torch.bfloat16, False)):
            torch.backends.cuda.matmul.allow_tf32 = allow_tf32
            x, w = a.to(dtype), b.to(dtype)
            rates[f"{name}_TFLOPs"] = 2 * n**3 / (median_ms(lambda: x @ w, rep=200) * 1e-3) / 1e12
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return {"copy_GBps": copy_GBps, **rates}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ (Frobenius, in float32): how far a configuration's result is from the reference."""
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30))


def roofline_ms(nbytes: float, flops: float, ceil: dict, rate: str = "fp32_TFLOPs") -> float:
    """max(bytes at copy speed, flops at the measured ``rate``), in milliseconds."""
    return max(nbytes / (ceil["copy_GBps"] * 1e9), flops / (ceil[rate] * 1e12)) * 1e3


def save(result: dict, directory: Path = RESULTS) -> Path:
    """Write ``result`` to ``<directory>/<benchmark>.json``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result['benchmark']}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


def load(name: str, directory: Path = RESULTS) -> dict:
    """Read a committed result, e.g. ``load("linear_recurrence")``."""
    return json.loads((Path(directory) / f"{name}.json").read_text())



def sass_loop_stats(cubin: bytes) -> dict:
    """Instruction counts of the innermost-heavy loop of a cubin's SASS: the longest span between a
    label and a backward branch to it (the chunk loop); MUFU.EX2 and BAR counted in it and in total."""
    nvdisasm = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "nvdisasm"
    with tempfile.NamedTemporaryFile("wb", suffix=".cubin", delete=False) as f:
        f.write(cubin)
    try:
        sass = subprocess.run([str(nvdisasm), "-c", f.name], capture_output=True, text=True).stdout
    finally:
        os.unlink(f.name)
    lines = sass.splitlines()
    insts, labels = [], {}
    for ln in lines:
        m = re.match(r"\s*(\.L_x_\d+):", ln)
        if m:
            labels[m.group(1)] = len(insts)
            continue
        m = re.match(r"\s*/\*[0-9a-f]+\*/\s+(.*?);", ln)
        if m:
            insts.append(m.group(1))
    best = (0, 0)
    for i, ins in enumerate(insts):
        m = re.search(r"\bBRA\b.*?(\.L_x_\d+)", ins)
        if m and m.group(1) in labels and labels[m.group(1)] <= i:
            if i + 1 - labels[m.group(1)] > best[1] - best[0]:
                best = (labels[m.group(1)], i + 1)
    loop = insts[best[0]:best[1]]
    real = [x for x in loop if not x.startswith("NOP")]

    def count(seq, pat):
        return sum(1 for x in seq if re.search(pat, x))
    return {"sass_total": len([x for x in insts if not x.startswith("NOP")]), "loop_sass": len(real),
            "loop_ex2": count(real, r"MUFU\.EX2"), "loop_bar": count(real, r"\bBAR\b"),
            "loop_shfl": count(real, r"\bSHFL\b"), "loop_ldg": count(real, r"\bLDG\b"),
            "loop_lds_sts": count(real, r"\b(LDS|STS)\b"), "loop_stg": count(real, r"\bSTG\b"),
            "loop_mma": count(real, r"\b(HMMA|HGMMA)\b"),
            "bar_total": count(insts, r"\bBAR\b")}


def import_from_mamba_sdist(root, module: str, env: str = "root"):
    """``mamba_ssm.<module>`` (e.g. ``"ops.triton.ssd_combined"``) from mamba_ssm's unpacked source
    distribution at ``root`` (the folder that holds its ``mamba_ssm/`` package), for benchmarking
    beside it. ``import mamba_ssm`` fails without its CUDA build, so this registers empty stub
    packages ``mamba_ssm``, ``mamba_ssm.ops``, ``mamba_ssm.ops.triton`` and ``mamba_ssm.utils``
    whose ``__path__`` points into that folder, then imports the module. Without ``root`` (``env``
    names the setting that gives it, for the message), an installed mamba_ssm."""
    import importlib
    import types
    if not root:
        try:
            return importlib.import_module(f"mamba_ssm.{module}")
        except Exception as e:  # noqa: BLE001
            raise ImportError(f"{env} not set and mamba_ssm not importable ({e!r})") from e
    pkg = Path(root) / "mamba_ssm"
    path = pkg / (module.replace(".", "/") + ".py")
    if not path.is_file():
        raise ImportError(f"{path} not found ({env}={root})")
    for name, sub in (("mamba_ssm", ""), ("mamba_ssm.ops", "ops"), ("mamba_ssm.ops.triton", "ops/triton"),
                      ("mamba_ssm.utils", "utils")):
        if name not in sys.modules:
            m = types.ModuleType(name)
            m.__path__ = [str(pkg / sub)]
            sys.modules[name] = m
    return importlib.import_module(f"mamba_ssm.{module}")


def compile_error(e: Exception) -> str:
    """A failed compilation for a compile-only report: the exception's type and the end of its
    message (Triton's CompilationError prints the kernel's source first and the cause last)."""
    return f"{type(e).__name__}: {str(e)[-1500:]}"


def compile_sm90(kernel, signature: dict, constexprs: dict, divisible=(), num_warps: int = 4,
                 num_stages: int | None = None, maxnreg: int | None = None):
    """Compile a ``@triton.jit`` kernel for an H100/H200 (sm_90a) without a GPU, and read ptxas.

    ``signature`` types the runtime arguments (``"*bf16"``, ``"i32"``, …; the
    others are constexprs, given in ``constexprs``); ``divisible`` names the
    arguments Triton may assume are multiples of 16, as it does for a real call
    whose pointers and sizes are; ``maxnreg`` caps the registers a thread (as the launch
    option does). Needs ``TRITON_INTERPRET=0`` (see
    :func:`in_compiler_subprocess`). Returns the compiled kernel (``.asm`` holds
    ttgir, ptx, cubin) and ``{"registers", "spill_store_bytes",
    "spill_load_bytes", "shared_bytes"}``.
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = kernel.arg_names
    sig = {n: signature.get(n, "constexpr") for n in names}
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in divisible}
    options = ({"num_warps": num_warps} | ({} if num_stages is None else {"num_stages": num_stages})
               | ({} if maxnreg is None else {"maxnreg": maxnreg}))
    c = triton.compile(ASTSource(fn=kernel, signature=sig, attrs=attrs,
                                 constexprs={(names.index(n),): v for n, v in constexprs.items()}),
                       target=GPUTarget("cuda", 90, 32), options=options)
    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(c.asm["ptx"])
    info = subprocess.run([str(ptxas), "-v", "--gpu-name=sm_90a", f.name, "-o", "/dev/null"],
                          capture_output=True, text=True).stderr
    os.unlink(f.name)
    regs = re.search(r"Used (\d+) registers", info)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", info)
    return c, {"registers": int(regs.group(1)) if regs else None,
               "spill_store_bytes": int(spill.group(1)) if spill else None,
               "spill_load_bytes": int(spill.group(2)) if spill else None,
               "shared_bytes": c.metadata.shared}


def in_compiler_subprocess(function: str, *args):
    """``module:function(*args)`` in a fresh Python with ``TRITON_INTERPRET=0``, so that its
    kernels are compiled rather than interpreted (this process may have imported them for the
    interpreter). Arguments and result travel as JSON."""
    module, name = function.split(":")
    code = (f"import json, sys; from {module} import {name}; "
            f"print('@@' + json.dumps({name}(*json.loads(sys.argv[1]))))")
    res = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True,
                         env=dict(os.environ, TRITON_INTERPRET="0"))
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("@@")), None)
    if line is None:
        raise RuntimeError(f"{function} failed in the compiler subprocess:\n{res.stderr[-3000:]}")
    return json.loads(line[2:])


#: How :func:`plot` names the implementations it knows; others keep their own name.
LABELS = {"torch_loop": "PyTorch loop", "triton": "Triton kernel", "roofline": "roofline"}


def plot(result: dict, x: str = "N", ax=None, title: str | None = None):
    """Bar chart of median time per implementation (one bar colour each) and
    value of the row key ``x`` (one group each), log scale.

    Each bar is labelled with its time; the Triton kernel's bar also with its
    fraction of the roofline. The legend sits outside the plot. Returns the axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 3.6))
    rows = result["rows"]
    xs_all = sorted({r[x] for r in rows})
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    impls.sort(key=lambda i: i == "roofline")                    # roofline last
    width = 0.8 / len(impls)
    for j, impl in enumerate(impls):
        for i, v in enumerate(xs_all):
            row = next((r for r in rows if r["impl"] == impl and r[x] == v), None)
            if row is None:
                continue
            pos = i + (j - (len(impls) - 1) / 2) * width
            ax.bar(pos, row["median_ms"], width, color=f"C{j}", label=LABELS.get(impl, impl) if i == 0 else None)
            text = f"{row['median_ms']:.3g}"
            if impl == "triton":
                text += f"\n{row['fraction_of_roofline']:.0%}"
            ax.text(pos, row["median_ms"], text, ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks(range(len(xs_all)), [f"{x} = {v}" for v in xs_all])
    ax.set_ylabel("median time (ms)")
    ax.margins(y=0.25)
    if title is None:
        r0 = rows[0]
        shape = ", ".join(f"{k} = {r0[k]}" for k in ("batch", "H", "L", "dtype") if k in r0 and k != x)
        title = f"{result['benchmark']}: {shape}"
    ax.set_title(f"{title}\n{result['device']}, {result['date'][:10]}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return ax

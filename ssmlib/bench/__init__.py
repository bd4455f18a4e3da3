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
"ceilings": {"copy_GBps", "fp32_TFLOPs", "bf16_TFLOPs"}, "rows": [{"impl", "N", "batch", "H",
"L", "dtype", "median_ms", "bytes", "flops", "roofline_ms",
"fraction_of_roofline"}, ...]}``

``fraction_of_roofline`` is roofline_ms / median_ms: 1.0 would be a kernel
that moves the minimal bytes at copy speed, or does the minimal flops at the
measured float32 rate, whichever takes longer.
"""
from __future__ import annotations

import datetime
import json
import platform
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


def ceilings() -> dict:
    """Measure copy bandwidth (read + write bytes / s) and the float32 (no TF32) and bfloat16 matmul rates."""
    src = torch.randn(2**30 // 4 * 2, device="cuda")          # 2 GiB, far beyond L2
    dst = torch.empty_like(src)
    t = median_ms(lambda: dst.copy_(src))
    copy_GBps = 2 * src.numel() * 4 / (t * 1e-3) / 1e9
    del src, dst
    n = 8192
    a, b = torch.randn(n, n, device="cuda"), torch.randn(n, n, device="cuda")
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    t = median_ms(lambda: a @ b, rep=200)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a, b = a.bfloat16(), b.bfloat16()
    t16 = median_ms(lambda: a @ b, rep=200)
    return {"copy_GBps": copy_GBps, "fp32_TFLOPs": 2 * n**3 / (t * 1e-3) / 1e12,
            "bf16_TFLOPs": 2 * n**3 / (t16 * 1e-3) / 1e12}


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

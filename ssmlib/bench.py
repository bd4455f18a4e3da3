"""Benchmarks: ``python -m ssmlib.bench recurrence [--sweep]``.

Every benchmark times with ``triton.testing.do_bench`` (CUDA events, median
of many runs after warm-up), measures the device's ceilings in the same run
(device-to-device copy bandwidth, float32 matmul rate), counts the bytes and
flops the work needs at minimum, and writes a JSON file under
``book/results/`` that the book plots when it is built without a GPU:

``{"benchmark", "device", "torch", "triton", "python", "date",
"ceilings": {"copy_GBps", "fp32_TFLOPs"}, "rows": [{"impl", "N", "batch", "H",
"L", "dtype", "median_ms", "bytes", "flops", "roofline_ms",
"fraction_of_roofline"}, ...]}``

``fraction_of_roofline`` is roofline_ms / median_ms: 1.0 would be a kernel
that moves the minimal bytes at copy speed, or does the minimal flops at the
measured float32 rate, whichever takes longer.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path

import torch
import triton

from .recurrence import linear_recurrence, linear_recurrence_ref

RESULTS = Path(__file__).resolve().parents[1] / "book" / "results"


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
    """Measure copy bandwidth (read + write bytes / s) and the float32 (no TF32) matmul rate."""
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
    return {"copy_GBps": copy_GBps, "fp32_TFLOPs": 2 * n**3 / (t * 1e-3) / 1e12}


def _roofline_ms(nbytes: float, flops: float, ceil: dict) -> float:
    return max(nbytes / (ceil["copy_GBps"] * 1e9), flops / (ceil["fp32_TFLOPs"] * 1e12)) * 1e3


def _random_system(H: int, N: int, dtype, device):
    """Stable random systems: A scaled to spectral norm < 1 so long runs stay finite."""
    A = torch.randn(H, N, N, dtype=torch.float64, device=device)
    A = 0.95 * A / torch.linalg.matrix_norm(A, ord=2)[:, None, None]
    B = torch.randn(H, N, dtype=torch.float64, device=device)
    C = torch.randn(H, N, dtype=torch.float64, device=device) / N**0.5
    D = torch.randn(H, dtype=torch.float64, device=device)
    return [t.to(dtype) for t in (A, B, C, D)]


def linear_recurrence_benchmark(Ns=(2, 4, 16), batch=64, H=1024, L=1024, dtype=torch.float32,
                                loop=True, ceil=None) -> dict:
    """Time the Triton kernel (and the PyTorch loop) for each state size in ``Ns``.

    Work per run: ``batch·H`` sequences of length L. Minimal traffic: u read
    and y written once (plus the parameters); minimal flops per step and
    sequence: 2N² (A x) + 2N (B u) + 2N (C x) + 2 (D u).
    """
    ceil = ceil or ceilings()
    esize = torch.tensor([], dtype=dtype).element_size()
    rows = []
    for N in Ns:
        A, B, C, D = _random_system(H, N, dtype, "cuda")
        u = torch.randn(batch, H, L, dtype=dtype, device="cuda")
        nbytes = esize * (2 * batch * H * L + H * (N * N + 2 * N + 1))
        flops = batch * H * L * (2 * N * N + 4 * N + 2)
        shape = {"N": N, "batch": batch, "H": H, "L": L, "dtype": str(dtype).replace("torch.", "")}
        roof = _roofline_ms(nbytes, flops, ceil)
        impls = {"triton": lambda: linear_recurrence(A, B, C, u, D)}
        if loop:
            impls["torch_loop"] = lambda: linear_recurrence_ref(A, B, C, u, D)
        for impl, fn in impls.items():
            t = median_ms(fn, warmup=5 if impl == "torch_loop" else 25,
                          rep=20 if impl == "torch_loop" else 100)
            rows.append({"impl": impl, **shape, "median_ms": t, "bytes": nbytes, "flops": flops,
                         "roofline_ms": roof, "fraction_of_roofline": roof / t})
        rows.append({"impl": "roofline", **shape, "median_ms": roof, "bytes": nbytes, "flops": flops,
                     "roofline_ms": roof, "fraction_of_roofline": 1.0})
        del A, B, C, D, u
    return {"benchmark": "linear_recurrence", **environment(), "ceilings": ceil, "rows": rows}


def linear_recurrence_sweep(Ns=(2, 4, 8, 16), batch=64, H=1024, L=1024, ceil=None) -> dict:
    """Time launch configurations of the kernel for each N: A channels-last with
    one channel per thread (32·warps or 64·warps channels per program), or A as
    stored with the state spread over the threads (4 or 8 channels per program);
    time chunks of 4 or 8 steps."""
    ceil = ceil or ceilings()
    rows = []
    for N in Ns:
        A, B, C, D = _random_system(H, N, torch.float32, "cuda")
        u = torch.randn(batch, H, L, device="cuda")
        nbytes = 4 * (2 * batch * H * L + H * (N * N + 2 * N + 1))
        flops = batch * H * L * (2 * N * N + 4 * N + 2)
        roof = _roofline_ms(nbytes, flops, ceil)
        configs = [(True, bh, nw) for bh, nw in ((32, 1), (64, 2), (64, 1)) if N <= 8]
        configs += [(False, bh, 1) for bh in (4, 8) if N >= 8]
        for chan, bh, nw in configs:
            for chunk in (4, 8):
                t = median_ms(lambda: linear_recurrence(A, B, C, u, D, channels_last=chan, block_h=bh,
                                                        num_warps=nw, chunk_steps=chunk))
                rows.append({"impl": "triton", "N": N, "channels_last": chan, "block_h": bh,
                             "num_warps": nw, "chunk_steps": chunk, "batch": batch, "H": H, "L": L,
                             "dtype": "float32", "median_ms": t, "bytes": nbytes, "flops": flops,
                             "roofline_ms": roof, "fraction_of_roofline": roof / t})
    return {"benchmark": "linear_recurrence_sweep", **environment(), "ceilings": ceil, "rows": rows}


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


def plot(result: dict, ax=None):
    """Bar chart of median time per implementation and state size, log scale.

    Each bar is labelled with its time; the kernel's bar also with its fraction
    of the roofline. Returns the axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.6))
    rows = result["rows"]
    Ns = sorted({r["N"] for r in rows})
    impls = [i for i in ("torch_loop", "triton", "roofline") if any(r["impl"] == i for r in rows)]
    labels = {"torch_loop": "PyTorch loop", "triton": "Triton kernel", "roofline": "roofline"}
    width = 0.8 / len(impls)
    for j, impl in enumerate(impls):
        ts = [next(r["median_ms"] for r in rows if r["impl"] == impl and r["N"] == N) for N in Ns]
        xs = [i + (j - (len(impls) - 1) / 2) * width for i in range(len(Ns))]
        bars = ax.bar(xs, ts, width, label=labels[impl])
        for x, t, N in zip(xs, ts, Ns):
            text = f"{t:.3g}"
            if impl == "triton":
                frac = next(r["fraction_of_roofline"] for r in rows if r["impl"] == impl and r["N"] == N)
                text += f"\n{frac:.0%}"
            ax.text(x, t, text, ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks(range(len(Ns)), [f"N = {N}" for N in Ns])
    ax.set_ylabel("median time (ms)")
    r0 = rows[0]
    ax.set_title(f"{result['benchmark']}: {r0['batch']}×{r0['H']} sequences, L = {r0['L']}, "
                 f"{r0['dtype']}\n{result['device']}, {result['date'][:10]}", fontsize=9)
    ax.legend(fontsize=8)
    return ax


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ssmlib.bench", description=__doc__.split("\n")[0])
    parser.add_argument("benchmark", choices=["recurrence"])
    parser.add_argument("--sweep", action="store_true", help="also time every launch configuration")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON files")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("benchmarks need a CUDA GPU")
    ceil = ceilings()
    print(f"ceilings: copy {ceil['copy_GBps']:.0f} GB/s, fp32 {ceil['fp32_TFLOPs']:.1f} TFLOP/s")
    results = [linear_recurrence_benchmark(ceil=ceil)]
    if args.sweep:
        results.append(linear_recurrence_sweep(ceil=ceil))
    for res in results:
        print(f"wrote {save(res, args.out)}")
        for r in res["rows"]:
            cfg = (f" {'chan' if r['channels_last'] else 'row '} bh={r['block_h']:>3} "
                   f"nw={r['num_warps']} T={r['chunk_steps']}" if "block_h" in r else "")
            print(f"  {r['impl']:>10} N={r['N']:>2}{cfg}: {r['median_ms']:9.3f} ms "
                  f"({r['fraction_of_roofline']:.0%} of roofline {r['roofline_ms']:.3f} ms)")


if __name__ == "__main__":
    main()

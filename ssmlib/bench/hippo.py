"""Benchmark of :func:`ssmlib.hippo.project`: ``python -m ssmlib.bench hippo [--sweep]``
writes ``hippo_projection.json`` (and ``hippo_projection_sweep.json``).

The work: 65,536 float32 signals of length 4,096 projected online onto N = 64
coefficients, for each measure. The output c (65,536 × 4,096 × 64 float32,
69 GB) dominates the traffic; one buffer is allocated and every run writes
into it (``project(..., out=)``).

Roofline: minimal bytes = f read once + c written once (+ the discrete
matrices: one pair, or L pairs for LegS), at the measured copy bandwidth;
minimal flops = 2N² + 2N per step and signal, at the measured TF32
tensor-core rate (the fastest rate with float32 inputs; recorded as
``flop_rate``). The kernel's ``"tf32x3"`` products do three TF32 products
for each, so its own compute floor (``tf32x3_floor_ms``) is three times that.
The PyTorch loop (float32 matmuls, no TF32) is timed on the first
``LOOP_L`` steps and scaled linearly to L: every step does the same work, and
the full loop would need a second 69 GB output.
"""
from __future__ import annotations

import torch

from ..hippo import MEASURES, project, project_ref
from . import ceilings, environment, median_ms, roofline_ms

BATCH, L, N = 65536, 4096, 64
LOOP_L = 256
DT = 1e-3
THETA = 1.0


def _work(measure: str, batch: int, L: int, N: int) -> tuple[int, int]:
    """(minimal bytes, minimal flops) of projecting ``batch`` float32 signals of length L."""
    pairs = L if measure == "legs" else 1
    return 4 * (batch * L * (1 + N) + pairs * (N * N + N)), batch * L * (2 * N * N + 2 * N)


def _row(impl, measure, batch, L, N, t, ceil, **extra) -> dict:
    nbytes, flops = _work(measure, batch, L, N)
    roof = roofline_ms(nbytes, flops, ceil, rate="tf32_TFLOPs")
    return {"impl": impl, "measure": measure, "N": N, "batch": batch, "L": L, "dtype": "float32",
            "median_ms": t, "bytes": nbytes, "flops": flops, "roofline_ms": roof,
            "fraction_of_roofline": roof / t, "flop_rate": "tf32_TFLOPs",
            "tf32x3_floor_ms": roofline_ms(nbytes, 3 * flops, ceil, rate="tf32_TFLOPs"),
            **extra}


def hippo_benchmark(measures=MEASURES, batch=BATCH, L=L, N=N, loop_L=LOOP_L, ceil=None) -> dict:
    """Time the Triton kernel and the PyTorch loop for each measure."""
    ceil = ceil or ceilings()
    f = torch.randn(batch, L, device="cuda")
    out = torch.empty(batch, L, N, device="cuda")
    f_loop = f[:, :loop_L].contiguous()
    rows = []
    for m in measures:
        t = median_ms(lambda: project(f, m, N, DT, THETA, out=out), warmup=100, rep=1000)
        rows.append(_row("triton", m, batch, L, N, t, ceil, input_precision="tf32x3"))
        t = median_ms(lambda: project_ref(f_loop, m, N, DT, THETA), warmup=100, rep=1000)
        rows.append(_row("torch_loop", m, batch, L, N, t * L / loop_L, ceil, timed_L=loop_L,
                         note=f"timed on the first {loop_L} steps, scaled by {L // loop_L}"))
        torch.cuda.empty_cache()
        rows.append(_row("roofline", m, batch, L, N, rows[-1]["roofline_ms"], ceil))
    del f, out, f_loop
    torch.cuda.empty_cache()
    return {"benchmark": "hippo_projection", **environment(), "ceilings": ceil, "rows": rows}


def hippo_sweep(measures=MEASURES, batch=BATCH, L=1024, N=N, ceil=None) -> dict:
    """Time launch configurations (signals per program, warps) and ``tl.dot``
    precisions of the kernel for each measure, at a shorter L."""
    ceil = ceil or ceilings()
    f = torch.randn(batch, L, device="cuda")
    out = torch.empty(batch, L, N, device="cuda")
    rows = []
    for m in measures:
        for bb, nw in ((64, 4), (64, 8), (128, 8), (32, 4)):
            for precision in ("tf32x3", "tf32", "ieee"):
                t = median_ms(lambda: project(f, m, N, DT, THETA, out=out, block_b=bb, num_warps=nw,
                                              input_precision=precision))
                rows.append(_row("triton", m, batch, L, N, t, ceil, block_b=bb, num_warps=nw,
                                 input_precision=precision))
    del f, out
    torch.cuda.empty_cache()
    return {"benchmark": "hippo_projection_sweep", **environment(), "ceilings": ceil, "rows": rows}


def run(ceil: dict, sweep: bool = False) -> list[dict]:
    """The benchmark the book plots, and with ``sweep`` every launch configuration."""
    results = [hippo_benchmark(ceil=ceil)]
    if sweep:
        results.append(hippo_sweep(ceil=ceil))
    return results

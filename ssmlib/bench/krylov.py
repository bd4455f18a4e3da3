"""Benchmark of :func:`ssmlib.krylov.krylov`: ``python -m ssmlib.bench krylov [--sweep]``
writes ``krylov.json`` (and ``krylov_sweep.json``).

The first problem of the LSSL, measured on the GPU: the kernel K_L(Ā, B̄, C) of
H channels costs O(H·N²·L) work and, to train, O(H·N·L) memory. For each
(N, L) the suite times, in float32,

* ``naive``: L matrix–vector products (one batched ``A @ v`` per step: L launches);
* ``squaring``: log₂L rounds of batched matrix products;
* ``triton``: the impulse response of :func:`ssmlib.linear_recurrence`, N ≤ 64
  (forward only: the kernel has no backward);
* ``naive_fwd_bwd`` / ``squaring_fwd_bwd``: forward and backward of
  ``K.square().sum()`` with respect to A, B, C, with the peak memory that adds
  (``torch.cuda.max_memory_allocated``), recorded as ``extra_MB``.

Roofline: minimal bytes = A, B, C read once and K written once; minimal flops
= 2N²L per channel (the naive count; squaring does more: :func:`ssmlib.krylov.flops`),
at the measured float32 (no TF32) rate. The ``--sweep`` adds larger L at one N
to fit the slope of time against L.
"""
from __future__ import annotations

import torch

from ..krylov import flops as krylov_flops
from ..krylov import krylov
from . import environment, median_ms, roofline_ms

H = 256
GRID_N = (16, 32, 64, 128, 256)
GRID_L = (1024, 4096)
SWEEP_N = 64
SWEEP_L = (256, 512, 1024, 2048, 4096, 8192, 16384)


def _system(N: int, device="cuda"):
    """H copies of the bilinear HiPPO-LegT pair with steps log-spaced in [1e-3, 1e-1], random C."""
    from ..discretize import discretize
    from ..hippo import transition

    A, B = transition("legt", N)
    dt = torch.logspace(-3, -1, H, dtype=torch.float64)
    Ab, Bb = discretize(A.expand(H, N, N), B.expand(H, N), dt, "bilinear")
    C = torch.randn(H, N, dtype=torch.float64) / N**0.5
    return [t.float().contiguous().to(device) for t in (Ab, Bb, C)]


def _fwd_bwd(A, B, C, L, method):
    A, B, C = (t.detach().requires_grad_() for t in (A, B, C))

    def fn():
        krylov(A, B, C, L, method).square().sum().backward()
        A.grad = B.grad = C.grad = None
    return fn


def _extra_MB(fn) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def _rows(Ns, Ls, ceil, backward=True):
    rows = []
    for N in Ns:
        A, B, C = _system(N)
        for L in Ls:
            nbytes = 4 * H * (N * N + 2 * N + L)
            fl = H * krylov_flops(N, L, "naive")
            roof = roofline_ms(nbytes, fl, ceil)
            shape = {"N": N, "H": H, "L": L, "dtype": "float32"}
            impls = {"naive": lambda: krylov(A, B, C, L, "naive"),
                     "squaring": lambda: krylov(A, B, C, L, "squaring")}
            if N <= 64:
                impls["triton"] = lambda: krylov(A, B, C, L, "recurrence")
            if backward:
                impls["naive_fwd_bwd"] = _fwd_bwd(A, B, C, L, "naive")
                impls["squaring_fwd_bwd"] = _fwd_bwd(A, B, C, L, "squaring")
            for impl, fn in impls.items():
                extra = _extra_MB(fn)
                t = median_ms(fn, warmup=5, rep=50)
                print(f"N {N} L {L} {impl}: {t:.3f} ms", flush=True)
                method = impl.split("_")[0]
                method_flops = H * krylov_flops(N, L, "naive" if method == "triton" else method)
                rows.append({"impl": impl, **shape, "median_ms": t, "extra_MB": extra, "bytes": nbytes,
                             "flops": fl, "method_flops": method_flops,
                             "roofline_ms": roof, "fraction_of_roofline": roof / t})
            rows.append({"impl": "roofline", **shape, "median_ms": roof, "extra_MB": 0.0, "bytes": nbytes,
                         "flops": fl, "method_flops": fl, "roofline_ms": roof, "fraction_of_roofline": 1.0})
        del A, B, C
        torch.cuda.empty_cache()
    return rows


def run(ceil: dict, sweep: bool = False) -> list[dict]:
    """The grid the book plots (N × L), and with ``sweep`` a longer sweep over L at N = 64."""
    torch.manual_seed(0)
    results = [{"benchmark": "krylov", **environment(), "ceilings": ceil,
                "rows": _rows(GRID_N, GRID_L, ceil)}]
    if sweep:
        results.append({"benchmark": "krylov_sweep", **environment(), "ceilings": ceil,
                        "rows": _rows((SWEEP_N,), SWEEP_L, ceil, backward=True)})
    return results

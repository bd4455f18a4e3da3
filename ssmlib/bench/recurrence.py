"""Benchmark of :func:`ssmlib.linear_recurrence`: ``python -m ssmlib.bench recurrence [--sweep]``."""
from __future__ import annotations

import torch

from ..recurrence import linear_recurrence, linear_recurrence_ref
from . import ceilings, environment, median_ms, roofline_ms


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
        roof = roofline_ms(nbytes, flops, ceil)
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
        roof = roofline_ms(nbytes, flops, ceil)
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


def run(ceil: dict, sweep: bool = False) -> list[dict]:
    """The benchmark the book plots, and with ``sweep`` every launch configuration."""
    results = [linear_recurrence_benchmark(ceil=ceil)]
    if sweep:
        results.append(linear_recurrence_sweep(ceil=ceil))
    return results

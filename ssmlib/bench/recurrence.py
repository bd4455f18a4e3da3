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
    and y written once (plus the parameters); flops per step and sequence of
    the step-by-step recurrence: 2N² (A x) + 2N (B u) + 2N (C x) + 2 (D u).
    The roofline is max(bytes at copy speed, those flops at the float32 FMA
    rate). The chunked kernel (N > 8) does fewer flops, about
    6N + 2T + 2N²/T per step for chunks of T steps, on tensor cores, so it can
    beat that roofline; ``memory_ms`` in each row is the floor no algorithm
    beats. The PyTorch loop takes ~0.1 s a call: it is timed over ~1.5 s.
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
        memory = nbytes / (ceil["copy_GBps"] * 1e9) * 1e3
        impls = {"triton": lambda: linear_recurrence(A, B, C, u, D)}
        if loop:
            impls["torch_loop"] = lambda: linear_recurrence_ref(A, B, C, u, D)
        for impl, fn in impls.items():
            t = median_ms(fn, warmup=300 if impl == "torch_loop" else 25,
                          rep=1500 if impl == "torch_loop" else 100)
            rows.append({"impl": impl, **shape, "median_ms": t, "bytes": nbytes, "flops": flops,
                         "roofline_ms": roof, "fraction_of_roofline": roof / t, "memory_ms": memory})
        rows.append({"impl": "roofline", **shape, "median_ms": roof, "bytes": nbytes, "flops": flops,
                     "roofline_ms": roof, "fraction_of_roofline": 1.0, "memory_ms": memory})
        del A, B, C, D, u
    return {"benchmark": "linear_recurrence", **environment(), "ceilings": ceil, "rows": rows}


#: Chunked-kernel launch configurations the sweep times: (sequences per program, warps, steps per chunk).
CHUNKED_CONFIGS = [(16, 1, 16), (32, 1, 16), (32, 2, 16), (64, 4, 16), (64, 8, 16), (64, 4, 32), (128, 4, 16)]


def linear_recurrence_sweep(Ns=(2, 4, 8, 16, 32, 64), batch=64, H=1024, L=1024, ceil=None) -> dict:
    """Time launch configurations of both kernels for each N.

    Step kernel: A channels-last with one channel per thread (32·warps or
    64·warps channels per program), or A as stored with the state spread over
    the threads (1, 4 or 8 channels per program; only 1 beyond N = 16, where
    the others take a third of a second a run); time chunks of 4 or 8 steps.
    Chunked kernel (N ≥ 8): every entry of ``CHUNKED_CONFIGS``.
    """
    ceil = ceil or ceilings()
    rows = []
    for N in Ns:
        A, B, C, D = _random_system(H, N, torch.float32, "cuda")
        u = torch.randn(batch, H, L, device="cuda")
        nbytes = 4 * (2 * batch * H * L + H * (N * N + 2 * N + 1))
        flops = batch * H * L * (2 * N * N + 4 * N + 2)
        roof = roofline_ms(nbytes, flops, ceil)
        configs = [dict(channels_last=True, block_h=bh, num_warps=nw, chunk_steps=T)
                   for bh, nw in ((32, 1), (64, 2), (64, 1)) if N <= 8 for T in (4, 8)]
        configs += [dict(channels_last=False, block_h=bh, num_warps=1, chunk_steps=T)
                    for bh in ((1, 4, 8) if N <= 16 else (1,)) if N >= 8 for T in (4, 8)]
        configs = [dict(algorithm="step", **c) for c in configs]
        configs += [dict(algorithm="chunked", block_b=bb, num_warps=nw, chunk_steps=T)
                    for bb, nw, T in CHUNKED_CONFIGS if N >= 8]
        for cfg in configs:
            t = median_ms(lambda: linear_recurrence(A, B, C, u, D, **cfg))
            rows.append({"impl": "triton", "N": N, **cfg, "batch": batch, "H": H, "L": L,
                         "dtype": "float32", "median_ms": t, "bytes": nbytes, "flops": flops,
                         "roofline_ms": roof, "fraction_of_roofline": roof / t})
        del A, B, C, D, u
    return {"benchmark": "linear_recurrence_sweep", **environment(), "ceilings": ceil, "rows": rows}


def run(ceil: dict, sweep: bool = False) -> list[dict]:
    """The benchmark the book plots, and with ``sweep`` every launch configuration."""
    results = [linear_recurrence_benchmark(ceil=ceil)]
    if sweep:
        results.append(linear_recurrence_sweep(ceil=ceil))
    return results

"""Benchmark of :func:`ssmlib.selective_scan`: ``python -m ssmlib.bench selective [--sweep]``.

Writes four files under ``book/results/``:

* ``selective_scan.json``: forward and forward+backward at batch 8, dim 1536,
  N 16, L 2048 (float32 and bfloat16): the fused kernels, the unfused PyTorch
  scan, the PyTorch loop (forward, float32) and the floor; the decoding step
  at batch 64, dim 4096, N 16.
* ``selective_scan_length.json``: the Mamba paper's speed setting (batch 1,
  dim 1024, N 16, bfloat16), L = 512 … 128K: fused vs unfused, forward and
  forward+backward (``x = "L"`` for :func:`ssmlib.bench.plot`).
* ``selective_scan_memory.json``: peak memory of forward+backward, fused vs
  unfused, same setting (``peak_MB`` per row).
* with ``--sweep``, ``selective_scan_sweep.json``: every launch configuration
  of the forward (variant "serial" or "scan", block_d, block_t, num_warps) and
  of the backward (bwd_block_t, bwd_block_d, bwd_num_warps, bwd_flip).

The floor. Minimal bytes: each input read once and each output written once
(forward: u, Δ, z, out per channel, B and C per group; backward adds dout,
du, dΔ, dz, dB, dC). Exponentials: one per (b, d, t, n) in the forward, one
more in the backward (the states are recomputed). ``roofline_ms = max(bytes /
copy bandwidth, exps / exp rate)``, with both ceilings measured in the same
run: the exp rate by :func:`exp_rate`, a Triton kernel doing nothing but
``exp2`` (``ceilings["exp_per_s"]``). Rows carry ``exps`` and ``flops`` (= exps).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..selective import (selective_scan, selective_scan_ref, selective_scan_unfused, selective_state_update)
from . import environment, median_ms

#: Where the benchmark runs (a test swaps in "cpu" for a dry run through the interpreter).
DEVICE = "cuda"
DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


@triton.jit
def _exp_kernel(out_ptr, ITERS: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = offs.to(tl.float32) * 1e-9
    for _ in range(ITERS):
        x = tl.exp2(-x)          # stays in [0.5, 1]; one ex2 per element per iteration
    tl.store(out_ptr + offs, x)


def exp_rate(iters: int = 4096) -> float:
    """Measured ``exp2`` throughput of the device (exponentials per second)."""
    props = torch.cuda.get_device_properties(0)
    block, programs = 1024, props.multi_processor_count * 32
    out = torch.empty(programs * block, device="cuda")
    t = median_ms(lambda: _exp_kernel[(programs,)](out, ITERS=iters, BLOCK=block, num_warps=8))
    return programs * block * iters / (t * 1e-3)


def _inputs(batch, dim, L, N, dtype, G=None, seed=0):
    """Mamba-like inputs: u, delta, z in ``dtype``; A, D, delta_bias float32 weights;
    B and C input-dependent ``(batch, N, L)`` (or grouped) in ``dtype``."""
    g = torch.Generator(device=DEVICE).manual_seed(seed)

    def r(*shape, dt=dtype):
        return torch.randn(*shape, device=DEVICE, generator=g, dtype=torch.float32).to(dt)

    bc = (batch, N, L) if G is None else (batch, G, N, L)
    return dict(u=r(batch, dim, L), delta=r(batch, dim, L) * 0.5, A=-torch.rand(dim, N, device=DEVICE, generator=g),
                B=r(*bc), C=r(*bc), D=r(dim, dt=torch.float32), z=r(batch, dim, L),
                delta_bias=r(dim, dt=torch.float32) * 0.5 - 4.0)


def _call(fn, t, **kw):
    return fn(t["u"], t["delta"], t["A"], t["B"], t["C"], D=t["D"], z=t["z"], delta_bias=t["delta_bias"],
              delta_softplus=True, **kw)


def _leaves(t):
    return {k: v.detach().clone().requires_grad_() for k, v in t.items()}


def _fwd_bwd(fn, t, **kw):
    leaves = _leaves(t)
    dout = torch.ones_like(t["u"])          # out has u's shape and dtype

    def step():
        o = _call(fn, leaves, **kw)
        torch.autograd.grad(o, list(leaves.values()), dout)
    return step


def counts(batch, dim, L, N, esize, G=1, backward=False):
    """(bytes, exps) a forward (or forward+backward) needs at minimum."""
    fwd = esize * batch * L * (4 * dim + 2 * G * N)          # u, Δ, z, out; B, C
    exps = batch * dim * L * N
    if not backward:
        return fwd, exps
    # forward, then: read u, Δ, z, dout, B, C; write du, dΔ, dz and dB, dC (float32)
    bwd = esize * batch * L * (4 * dim + 2 * G * N) + batch * L * (3 * dim * esize + 2 * G * N * 4)
    return fwd + bwd, 2 * exps


def _roof(nbytes, exps, ceil):
    return max(nbytes / (ceil["copy_GBps"] * 1e9), exps / ceil["exp_per_s"]) * 1e3


def _row(impl, shape, t, nbytes, exps, ceil, **extra):
    roof = _roof(nbytes, exps, ceil)
    return {"impl": impl, **shape, "median_ms": t, "bytes": nbytes, "flops": exps, "exps": exps,
            "roofline_ms": roof, "fraction_of_roofline": roof / t, **extra}


def _time(fn, impl, warmup=25, rep=100):
    """Median ms, or None (printed) when the implementation runs out of memory."""
    try:
        return median_ms(fn, warmup=warmup, rep=rep)
    except torch.OutOfMemoryError:
        print(f"  {impl}: out of memory, skipped")
        torch.cuda.empty_cache()
        return None


def headline(ceil, batch=8, dim=1536, L=2048, N=16, loop=True, decode=(64, 4096, 16)) -> dict:
    """Forward and forward+backward at the issue's shape; the decoding step."""
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        t = _inputs(batch, dim, L, N, dtype)
        esize = t["u"].element_size()
        shape = {"batch": batch, "dim": dim, "L": L, "N": N, "dtype": DTYPE_NAMES[dtype]}
        for passes in ("fwd", "fwd+bwd"):
            nbytes, exps = counts(batch, dim, L, N, esize, backward=passes != "fwd")
            impls = {"triton": selective_scan, "torch_unfused": selective_scan_unfused}
            if loop and dtype == torch.float32 and passes == "fwd":
                impls["torch_loop"] = selective_scan_ref
            for impl, fn in impls.items():
                if passes == "fwd":
                    f = (lambda fn=fn: _call(fn, t))
                else:
                    f = _fwd_bwd(fn, t)
                slow = impl != "triton"
                ms = _time(f, impl, warmup=2 if slow else 25, rep=5 if slow else 100)
                if ms is not None:
                    rows.append(_row(impl, {**shape, "pass": passes}, ms, nbytes, exps, ceil))
                torch.cuda.empty_cache()
            roof = _roof(nbytes, exps, ceil)
            rows.append(_row("roofline", {**shape, "pass": passes}, roof, nbytes, exps, ceil))
        del t
    # decoding step: state (batch, dim, N) float32 read and written; x, dt, z, out bf16; A; B, C
    b, d, n = decode
    state = torch.randn(b, d, n, device=DEVICE)
    x, dt, z = (torch.randn(b, d, device=DEVICE, dtype=torch.bfloat16) for _ in range(3))
    A, D, bias = -torch.rand(d, n, device=DEVICE), torch.randn(d, device=DEVICE), torch.randn(d, device=DEVICE)
    B, C = (torch.randn(b, n, device=DEVICE, dtype=torch.bfloat16) for _ in range(2))
    nbytes = 2 * b * d * n * 4 + 4 * b * d * 2 + d * n * 4 + 2 * d * 4 + 2 * b * n * 2
    ms = median_ms(lambda: selective_state_update(state, x, dt, A, B, C, D=D, z=z, dt_bias=bias, dt_softplus=True))
    shape = {"batch": b, "dim": d, "L": 1, "N": n, "dtype": "bfloat16", "pass": "state_update"}
    rows.append(_row("triton_state_update", shape, ms, nbytes, b * d * n, ceil))
    rows.append(_row("roofline", shape, _roof(nbytes, b * d * n, ceil), nbytes, b * d * n, ceil))
    return {"benchmark": "selective_scan", **environment(), "ceilings": ceil, "rows": rows}


def by_length(ceil, Ls=tuple(512 * 2**k for k in range(9)), batch=1, dim=1024, N=16, dtype=torch.bfloat16) -> dict:
    """The Mamba paper's speed setting: fused vs unfused, forward and forward+backward, against L."""
    rows = []
    for L in Ls:
        t = _inputs(batch, dim, L, N, dtype)
        shape = {"batch": batch, "dim": dim, "L": L, "N": N, "dtype": DTYPE_NAMES[dtype]}
        for passes in ("fwd", "fwd+bwd"):
            nbytes, exps = counts(batch, dim, L, N, t["u"].element_size(), backward=passes != "fwd")
            for impl, fn in (("triton", selective_scan), ("torch_unfused", selective_scan_unfused)):
                f = (lambda fn=fn: _call(fn, t)) if passes == "fwd" else _fwd_bwd(fn, t)
                slow = impl != "triton"
                ms = _time(f, impl, warmup=2 if slow else 25, rep=5 if slow else 100)
                if ms is not None:
                    rows.append(_row(impl if passes == "fwd" else impl + "_fwd_bwd", {**shape, "pass": passes},
                                     ms, nbytes, exps, ceil))
                torch.cuda.empty_cache()
            rows.append(_row("roofline" if passes == "fwd" else "roofline_fwd_bwd", {**shape, "pass": passes},
                             _roof(nbytes, exps, ceil), nbytes, exps, ceil))
        del t
    return {"benchmark": "selective_scan_length", **environment(), "ceilings": ceil, "rows": rows}


def peak_memory(ceil, Ls=(512, 1024, 2048, 4096, 8192, 16384), batch=1, dim=1024, N=16,
                dtype=torch.bfloat16) -> dict:
    """Peak memory of one forward+backward above the inputs, fused vs unfused."""
    rows = []
    for L in Ls:
        t = _inputs(batch, dim, L, N, dtype)
        shape = {"batch": batch, "dim": dim, "L": L, "N": N, "dtype": DTYPE_NAMES[dtype], "pass": "fwd+bwd"}
        for impl, fn in (("triton", selective_scan), ("torch_unfused", selective_scan_unfused)):
            step = _fwd_bwd(fn, t)
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            try:
                step()
                torch.cuda.synchronize()
            except torch.OutOfMemoryError:
                print(f"  {impl} L={L}: out of memory, skipped")
                torch.cuda.empty_cache()
                continue
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
            ms = median_ms(step, warmup=2, rep=5)
            nbytes, exps = counts(batch, dim, L, N, t["u"].element_size(), backward=True)
            rows.append(_row(impl, shape, ms, nbytes, exps, ceil, peak_MB=peak))
        del t
        torch.cuda.empty_cache()
    return {"benchmark": "selective_scan_memory", **environment(), "ceilings": ceil, "rows": rows}


#: (variant, block_d, block_t, num_warps) of the forward.
FWD_CONFIGS = ([("serial", bd, bt, nw) for bd, bt, nw in
                [(16, 16, 1), (16, 16, 2), (32, 16, 4), (64, 16, 8), (32, 8, 4), (64, 8, 8), (64, 16, 4),
                 (128, 16, 8), (32, 32, 4), (16, 32, 2)]]
               + [("scan", bd, bt, nw) for bd, bt, nw in
                  [(16, 128, 8), (16, 128, 4), (8, 128, 4), (8, 128, 2), (4, 256, 4), (4, 256, 2), (2, 512, 4),
                   (1, 1024, 4), (1, 1024, 8), (1, 2048, 8), (4, 512, 8), (8, 256, 8)]])
#: (block_t, block_d, num_warps, flip) of the backward (block_t: its chunk, the forward's checkpoint interval).
BWD_CONFIGS = ([(bt, bd, nw, False) for bt in (64, 128, 256) for bd in (1, 2, 4, 8) for nw in (2, 4)
                if 256 <= bd * bt <= 1024]
               + [(128, 4, 4, True), (128, 2, 2, True), (256, 1, 4, True)])


def config_sweep(ceil, batch=8, dim=1536, L=2048, N=16, fwd_configs=None, bwd_configs=None,
                 state_update_configs=((16, 1), (32, 2), (64, 2), (64, 4), (128, 4), (128, 8), (256, 8)),
                 decode=(64, 4096, 16), paper_shapes=((1, 1024, 16384),)) -> dict:
    """Every launch configuration: forward (bf16 and fp32) and backward (bf16) at the headline
    shape, forward at the paper's (batch 1), and the decoding step."""
    rows = []
    fwd_configs = FWD_CONFIGS if fwd_configs is None else fwd_configs
    bwd_configs = BWD_CONFIGS if bwd_configs is None else bwd_configs
    for dtype in (torch.bfloat16, torch.float32):
        t = _inputs(batch, dim, L, N, dtype)
        shape = {"batch": batch, "dim": dim, "L": L, "N": N, "dtype": DTYPE_NAMES[dtype], "pass": "fwd"}
        nbytes, exps = counts(batch, dim, L, N, t["u"].element_size())
        for variant, bd, bt, nw in fwd_configs:
            cfg = dict(variant=variant, block_d=bd, block_t=bt, num_warps=nw)
            try:
                ms = median_ms(lambda: _call(selective_scan, t, config=cfg))
            except Exception as e:  # a configuration that does not compile (registers, shared memory)
                print(f"  fwd {cfg}: {type(e).__name__}: {str(e)[:120]}")
                continue
            rows.append(_row("triton", shape, ms, nbytes, exps, ceil, **cfg))
        if dtype == torch.bfloat16:
            nbytes, exps = counts(batch, dim, L, N, t["u"].element_size(), backward=True)
            for bt, bd, nw, flip in bwd_configs:
                cfg = dict(bwd_block_t=bt, bwd_block_d=bd, bwd_num_warps=nw, bwd_flip=flip)
                try:
                    ms = median_ms(_fwd_bwd(selective_scan, t, config=cfg), warmup=5, rep=30)
                except Exception as e:
                    print(f"  bwd {cfg}: {type(e).__name__}: {str(e)[:120]}")
                    continue
                rows.append(_row("triton", {**shape, "pass": "fwd+bwd"}, ms, nbytes, exps, ceil, **cfg))
        del t
    # the Mamba paper's setting (batch 1, dim 1024): few sequences, so parallelism is scarce
    for pb, pdim, pL in paper_shapes:
        t = _inputs(pb, pdim, pL, N, torch.bfloat16)
        shape = {"batch": pb, "dim": pdim, "L": pL, "N": N, "dtype": "bfloat16", "pass": "fwd"}
        nbytes, exps = counts(pb, pdim, pL, N, 2)
        for variant, bd, bt, nw in fwd_configs:
            cfg = dict(variant=variant, block_d=bd, block_t=bt, num_warps=nw)
            try:
                ms = median_ms(lambda: _call(selective_scan, t, config=cfg))
            except Exception as e:
                print(f"  fwd {cfg}: {type(e).__name__}: {str(e)[:120]}")
                continue
            rows.append(_row("triton", shape, ms, nbytes, exps, ceil, **cfg))
        del t
    # the decoding step: channels per program and warps
    b, d, n = decode
    state = torch.randn(b, d, n, device=DEVICE)
    x, dt, z = (torch.randn(b, d, device=DEVICE, dtype=torch.bfloat16) for _ in range(3))
    A, D = -torch.rand(d, n, device=DEVICE), torch.randn(d, device=DEVICE)
    B, C = (torch.randn(b, n, device=DEVICE, dtype=torch.bfloat16) for _ in range(2))
    nbytes = 2 * b * d * n * 4 + 4 * b * d * 2 + d * n * 4 + d * 4 + 2 * b * n * 2
    shape = {"batch": b, "dim": d, "L": 1, "N": n, "dtype": "bfloat16", "pass": "state_update"}
    for bd, nw in state_update_configs:
        ms = median_ms(lambda: selective_state_update(state, x, dt, A, B, C, D=D, z=z, dt_softplus=True,
                                                      block_d=bd, num_warps=nw))
        rows.append(_row("triton_state_update", shape, ms, nbytes, b * d * n, ceil, block_d=bd, num_warps=nw))
    return {"benchmark": "selective_scan_sweep", **environment(), "ceilings": ceil, "rows": rows}


def run(ceil: dict, sweep: bool = False) -> list[dict]:
    """The benchmarks the chapter plots (and with ``sweep`` every launch configuration)."""
    import traceback

    ceil = {**ceil, "exp_per_s": exp_rate()}
    print(f"exp rate: {ceil['exp_per_s']:.3g} /s")
    parts = ([config_sweep] if sweep else []) + [headline, by_length, peak_memory]
    results = []
    for part in parts:   # one failing part must not lose the others' results
        try:
            results.append(part(ceil))
        except Exception:
            traceback.print_exc()
    return results

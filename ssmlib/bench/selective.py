"""Benchmark of :func:`ssmlib.selective_scan`: ``python -m ssmlib.bench selective [--sweep]``.

Writes four files under ``book/results/``:

* ``selective_scan.json``: forward and forward+backward at batch 8, dim 1536,
  N 16, L 2048 (float32 and bfloat16): the fused kernels, the unfused PyTorch
  scan, the PyTorch loop (forward, float32) and the floor; the decoding step
  at batch 64, dim 4096, N 16 (with its ``host_ms``, and ``triton_state_update_graph``:
  replayed from a CUDA graph through four states, so that none stays in L2). The default
  kernels' rows (``triton``) also carry what they issue (:func:`issued`): ``sass_per_elem``
  per kernel, and ``issue_floor_ms``, their instructions at the SMs' peak issue rate.
* ``selective_scan_length.json``: the Mamba paper's speed setting (batch 1,
  dim 1024, N 16, bfloat16), L = 512 … 128K: fused vs unfused, forward and
  forward+backward (``x = "L"`` for :func:`ssmlib.bench.plot`); the fused
  rows carry ``host_ms`` (:func:`ssmlib.bench.host_ms`: the Python side of a
  call), and ``triton_graph`` (``triton_graph_fwd_bwd``) is the forward (forward+backward)
  replayed from a CUDA graph: the kernels' time, without the host's.
* ``selective_scan_memory.json``: peak memory of forward+backward, fused vs
  unfused, same setting (``peak_MB`` per row).
* with ``--sweep``, ``selective_scan_sweep.json``: every launch configuration
  of the forward (variant "serial", "scan" or "pipelined", block_d, block_t,
  num_warps; for "pipelined" also seg_len and bc_tile) at the headline shape
  and at batch 1, dim 1024, L 2K / 16K / 128K, and of the backward
  (bwd_block_t, bwd_block_d, bwd_num_warps, bwd_flip; and with bwd_variant "serial",
  :data:`BWD_SERIAL_CONFIGS`, also at batch 1, L 2K and 16K). The headline's fwd+bwd rows include
  ``triton_bwd_scan`` (default forward, the "scan" backward).
  ``python -m ssmlib.bench.selective --sweep-only [--out DIR]`` writes only
  this file.

``python -m ssmlib.bench.selective --versus-mamba DIR [--out DIR2]`` writes
``selective_scan_vs_mamba.json``: ours and mamba_ssm's CUDA kernels (``selective_scan_cuda``,
compiled on the spot from its unpacked source distribution DIR by :func:`build_mamba_cuda`;
benchmarking only, never committed; ``python tools/fetch_baselines.py`` fetches it into
``.baselines/``, and the GPU machine needs nvcc and ninja) at the same inputs, back to back,
and the decoding step beside mamba_ssm's Triton ``selective_state_update`` (needs einops).

The headline and by-length rows include ``triton_serial`` (the "serial" forward,
the default before the first sweep) next to ``triton`` (the default: "pipelined").

Without a GPU, ``python -m ssmlib.bench.selective --compile-only`` compiles the
forward kernels (and the backward kernels of :data:`COMPILE_BWD_CONFIGS`) for
sm_90a and prints ptxas's registers and spills and SASS counts of the chunk
loop (see :func:`compile_report`).

The floor. Minimal bytes: each input read once and each output written once
(forward: u, Δ, z, out per channel, B and C per group; backward adds dout,
du, dΔ, dz, dB, dC). Exponentials: one per (b, d, t, n) in the forward, one
more in the backward (the states are recomputed). ``roofline_ms = max(bytes /
copy bandwidth, exps / exp rate)``, with both ceilings measured in the same
run: the exp rate by :func:`exp_rate`, a Triton kernel doing nothing but
``exp2`` (``ceilings["exp_per_s"]``). Rows carry ``exps`` and ``flops`` (= exps).
"""
from __future__ import annotations

from pathlib import Path

import torch
import triton
import triton.language as tl

from .. import runtime
from ..selective import (selective_scan, selective_scan_ref, selective_scan_unfused, selective_state_update)
from . import (RESULTS, ceilings, compile_error, compile_sm90, environment, graph_ms, host_ms,
               import_from_mamba_sdist, in_compiler_subprocess, median_ms, rel_err, sass_loop_stats, save)

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


def _serial(*args, **kw):
    """:func:`selective_scan` with the "serial" forward."""
    return selective_scan(*args, **kw, config={"variant": "serial"})


def _bwd_scan(*args, **kw):
    """:func:`selective_scan` (default forward) with the "scan" backward (``bwd_variant``)."""
    return selective_scan(*args, **kw, config={"bwd_variant": "scan"})


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


#: Thread-instructions an H200 SM issues in the time its exp units take for one exponential: 4
#: schedulers issue a warp-instruction (32 threads) a clock each, 128 in all, against 16 MUFU.EX2
#: results a clock (the rate :func:`exp_rate` measures).
ISSUE_PER_EXP = 8


def loop_sass_per_elem(loop_sass: int, num_warps: int, constexprs: dict) -> float:
    """SASS instructions a thread issues per (b, d, t, n) element in a chunk loop of ``loop_sass``
    instructions (:func:`ssmlib.bench.sass_loop_stats`) that covers BLOCK_D × BLOCK_T × BLOCK_N
    elements on ``num_warps`` warps."""
    elems = constexprs["BLOCK_D"] * constexprs["BLOCK_T"] * constexprs["BLOCK_N"] / (32 * num_warps)
    return loop_sass / elems


def issued(call, elements: int, ceil: dict) -> dict:
    """What the kernels of one ``call`` issue (on the GPU; {} in the interpreter): ``sass_per_elem``,
    each kernel's chunk-loop SASS instructions per (b, d, t, n) element (``elements`` of them), read
    from the cubins the call launched (:func:`ssmlib.runtime.launch` keeps them); and
    ``issue_floor_ms``, the time those instructions take at the SMs' peak issue rate,
    ``elements · Σ sass_per_elem / (ISSUE_PER_EXP · exp rate)``: the floor of this code, where
    ``roofline_ms`` is the floor of any code that does one exponential an element."""
    if runtime.INTERPRET:
        return {}
    runtime._LAUNCHES.clear()            # so that what the call launches is all that is kept
    call()
    per = {}
    for (kernel, _dev, spec, _kw), (compiled, tail) in runtime._LAUNCHES.items():
        cx = dict(zip([p.name for p in kernel.params[len(spec):]], tail))
        stats = sass_loop_stats(compiled.asm["cubin"])
        name = kernel.__name__.strip("_")
        per[name] = per.get(name, 0.0) + round(loop_sass_per_elem(stats["loop_sass"], compiled.metadata.num_warps,
                                                                  cx), 2)
    floor = elements * sum(per.values()) / (ISSUE_PER_EXP * ceil["exp_per_s"]) * 1e3
    return {"sass_per_elem": per, "issue_floor_ms": floor}


def _time(fn, impl, warmup=25, rep=100):
    """Median ms, or None (printed) when the implementation runs out of memory."""
    try:
        return median_ms(fn, warmup=warmup, rep=rep)
    except torch.OutOfMemoryError:
        print(f"  {impl}: out of memory, skipped")
        torch.cuda.empty_cache()
        return None


def _decode_inputs(b, d, n):
    """A decoding step's inputs (state float32 (b, d, n); x, dt, z (b, d) and B, C (b, n) bfloat16;
    float32 A, D, dt_bias) and its minimal bytes (the state read and written, the rest read once,
    out written)."""
    state = torch.randn(b, d, n, device=DEVICE)
    x, dt, z = (torch.randn(b, d, device=DEVICE, dtype=torch.bfloat16) for _ in range(3))
    A, D, bias = -torch.rand(d, n, device=DEVICE), torch.randn(d, device=DEVICE), torch.randn(d, device=DEVICE)
    B, C = (torch.randn(b, n, device=DEVICE, dtype=torch.bfloat16) for _ in range(2))
    nbytes = 2 * b * d * n * 4 + 4 * b * d * 2 + d * n * 4 + 2 * d * 4 + 2 * b * n * 2
    return state, x, dt, A, B, C, D, z, bias, nbytes


def _decode_graph_ms(step, states, x, dt, A, B, C, D, z, bias) -> float:
    """Time of one decoding ``step`` replayed from a CUDA graph (as decoding loops run: the kernel
    without the Python checks and the launch), through ``states`` completed to four with random
    ones (4 × 36 MB at batch 64, dim 4096, more than the 50 MB L2), as a model's layers would: one
    state alone stays in L2 between replays and would beat the HBM floor."""
    states = states + [torch.randn_like(states[0]) for _ in range(4 - len(states))]

    def steps():
        for s in states:
            step(s, x, dt, A, B, C, D=D, z=z, dt_bias=bias, dt_softplus=True)
    return graph_ms(steps) / len(states)


def headline(ceil, batch=8, dim=1536, L=2048, N=16, loop=True, decode=(64, 4096, 16)) -> dict:
    """Forward and forward+backward at the issue's shape; the decoding step."""
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        t = _inputs(batch, dim, L, N, dtype)
        esize = t["u"].element_size()
        shape = {"batch": batch, "dim": dim, "L": L, "N": N, "dtype": DTYPE_NAMES[dtype]}
        for passes in ("fwd", "fwd+bwd"):
            nbytes, exps = counts(batch, dim, L, N, esize, backward=passes != "fwd")
            impls = {"triton": selective_scan, "triton_serial": _serial, "torch_unfused": selective_scan_unfused}
            if passes != "fwd":
                impls["triton_bwd_scan"] = _bwd_scan
            if loop and dtype == torch.float32 and passes == "fwd":
                impls["torch_loop"] = selective_scan_ref
            for impl, fn in impls.items():
                if passes == "fwd":
                    f = (lambda fn=fn: _call(fn, t))
                else:
                    f = _fwd_bwd(fn, t)
                slow = not impl.startswith("triton")
                ms = _time(f, impl, warmup=2 if slow else 25, rep=5 if slow else 100)
                if ms is not None:
                    extra = issued(f, batch * dim * L * N, ceil) if impl == "triton" else {}
                    rows.append(_row(impl, {**shape, "pass": passes}, ms, nbytes, exps, ceil, **extra))
                torch.cuda.empty_cache()
            roof = _roof(nbytes, exps, ceil)
            rows.append(_row("roofline", {**shape, "pass": passes}, roof, nbytes, exps, ceil))
        del t
    b, d, n = decode
    state, x, dt, A, B, C, D, z, bias, nbytes = _decode_inputs(b, d, n)
    step = (lambda: selective_state_update(state, x, dt, A, B, C, D=D, z=z, dt_bias=bias, dt_softplus=True))
    ms = median_ms(step)
    shape = {"batch": b, "dim": d, "L": 1, "N": n, "dtype": "bfloat16", "pass": "state_update"}
    rows.append(_row("triton_state_update", shape, ms, nbytes, b * d * n, ceil,
                     **({"host_ms": host_ms(step)} if DEVICE == "cuda" else {})))
    if DEVICE == "cuda":
        ms = _decode_graph_ms(selective_state_update, [state], x, dt, A, B, C, D, z, bias)
        rows.append(_row("triton_state_update_graph", shape, ms, nbytes, b * d * n, ceil))
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
            for impl, fn in (("triton", selective_scan), ("triton_serial", _serial),
                             ("torch_unfused", selective_scan_unfused)):
                f = (lambda fn=fn: _call(fn, t)) if passes == "fwd" else _fwd_bwd(fn, t)
                slow = not impl.startswith("triton")
                ms = _time(f, impl, warmup=2 if slow else 25, rep=5 if slow else 100)
                if ms is not None:
                    # the fused calls' host time: above the kernel's, back-to-back timings measure the host
                    extra = {"host_ms": host_ms(f)} if impl == "triton" and DEVICE == "cuda" else {}
                    rows.append(_row(impl if passes == "fwd" else impl + "_fwd_bwd", {**shape, "pass": passes},
                                     ms, nbytes, exps, ceil, **extra))
                torch.cuda.empty_cache()
            if DEVICE == "cuda":
                # the default forward (and forward+backward) replayed from a CUDA graph: at short L the
                # Python checks, autograd and the launches (B/C transposes, up to two kernels
                # forward, the sums of the dB, dC partials backward) are a large part of the time
                f = (lambda: _call(selective_scan, t)) if passes == "fwd" else _fwd_bwd(selective_scan, t)
                impl = "triton_graph" if passes == "fwd" else "triton_graph_fwd_bwd"
                try:
                    ms = graph_ms(f)
                    rows.append(_row(impl, {**shape, "pass": passes}, ms, nbytes, exps, ceil))
                except Exception as e:  # noqa: BLE001
                    print(f"  {impl} L={L}: {type(e).__name__}: {str(e)[:120]}")
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


#: (variant, block_d, block_t, num_warps[, seg_len, bc_tile, maxnreg]) of the forward (see :func:`fwd_config_dict`).
#: "pipelined": seg_len None is the launch heuristic's choice (split only when there are fewer than
#: 8 warps per SM, e.g. batch 1); 1 << 20 never splits; bc_tile loads the chunk's B and C at once.
FWD_CONFIGS = ([("serial", bd, bt, nw) for bd, bt, nw in
                [(16, 16, 1), (16, 16, 2), (32, 16, 4), (64, 16, 8), (32, 8, 4), (64, 8, 8), (64, 16, 4),
                 (128, 16, 8), (32, 32, 4), (16, 32, 2)]]
               + [("scan", bd, bt, nw) for bd, bt, nw in
                  [(16, 128, 8), (16, 128, 4), (8, 128, 4), (8, 128, 2), (4, 256, 4), (4, 256, 2), (2, 512, 4),
                   (1, 1024, 4), (1, 1024, 8), (1, 2048, 8), (4, 512, 8), (8, 256, 8)]]
               + [("pipelined", bd, bt, nw, None, bc) for bd, bt, nw in
                  [(32, 16, 4), (16, 16, 2), (64, 16, 8), (128, 16, 8), (32, 8, 4), (32, 32, 4), (8, 16, 1)]
                  for bc in (0, 1)]
               + [("pipelined", bd, bt, nw, None, 2) for bd, bt, nw in [(32, 8, 4), (32, 16, 4), (16, 8, 2),
                                                                      (16, 16, 2), (64, 16, 8), (32, 16, 8),
                                                                      (8, 16, 1)]]
               + [("pipelined", 32, 16, 4, seg, 2) for seg in (256, 512, 1024)]
               + [("pipelined", 32, 16, 4, seg, 0) for seg in (128, 256, 512, 1024, 2048, 1 << 20)]
               + [("pipelined", 16, 16, 2, seg, 0) for seg in (256, 1024)]
               + [("pipelined", 32, 8, 4, seg, 2) for seg in (256, 1024)]
               # at 241 registers a thread two programs of 4 warps fit in an SM, so the headline's 384
               # programs take 1.45 waves; capped at 168 (56 bytes of spills, compile-only) three fit: one
               # wave (the inference default since session 4: 0.34 ms bf16, against 0.37 uncapped)
               + [("pipelined", 32, 16, 4, None, 2, reg) for reg in (168, 160)]
               # B a chunk ahead, C with its chunk (compile-only: 140 registers, no spills, 15.9 an element:
               # three 4-warp programs an SM without a cap; maxnreg 255: no cap, without the key inference
               # takes the default's 168)
               + [("pipelined", 32, 16, 4, None, 3, 255), ("pipelined", 32, 16, 4, None, 3, 168)])


def fwd_config_dict(c) -> dict:
    """A :data:`FWD_CONFIGS` entry as :func:`ssmlib.selective_scan`'s ``config`` dict."""
    keys = ("variant", "block_d", "block_t", "num_warps", "seg_len", "bc_tile", "maxnreg")
    return {k: v for k, v in zip(keys, c) if v is not None}
#: (block_t, block_d, num_warps, flip) of the backward (block_t: its chunk, the forward's checkpoint interval).
BWD_CONFIGS = ([(bt, bd, nw, False) for bt in (64, 128, 256) for bd in (1, 2, 4, 8) for nw in (2, 4)
                if 256 <= bd * bt <= 1024]
               + [(128, 4, 4, True), (128, 2, 2, True), (256, 1, 4, True)])
#: (block_t, block_d, num_warps[, maxnreg]) of the "serial" backward (config bwd_variant="serial"); block_t is
#: its chunk and the forward's checkpoint interval, kept short (x_t and Ā_t of a chunk live in
#: registers: 2·block_t·block_d·N / (32·num_warps) of them per thread).
#: Compile-only (sm_90a, N 16): block_t 8 at 4 states per thread has no spills at 255 registers;
#: block_t 16 spills (kept for one measured data point), as do 8 states per thread.
#: At 255 registers eight 1-warp programs fit in an SM: the headline's 1536 take 1.45 waves; capped at
#: 168 (252 bytes of spills, compile-only) twelve fit, one wave.
BWD_SERIAL_CONFIGS = [(8, 32, 4), (8, 16, 2), (8, 8, 1), (8, 64, 8), (8, 32, 8), (4, 32, 4), (4, 64, 4),
                      (4, 16, 2), (16, 32, 8), (8, 4, 1), (4, 8, 1), (16, 8, 1), (8, 8, 2),
                      (8, 8, 1, 168), (8, 32, 4, 168),
                      # for batch 1 (dim 1024: 128 programs of 8 channels, one an SM): 256 or 512 programs
                      (8, 2, 1), (4, 4, 1)]


def bwd_config_dict(c) -> dict:
    """A :data:`BWD_CONFIGS` entry (its 4th element the flip, a bool) or a :data:`BWD_SERIAL_CONFIGS`
    one (3 elements, or a 4th that is maxnreg) as a ``config`` dict."""
    if len(c) == 4 and isinstance(c[3], bool):
        return dict(bwd_variant="scan", bwd_block_t=c[0], bwd_block_d=c[1], bwd_num_warps=c[2], bwd_flip=c[3])
    cfg = dict(bwd_variant="serial", bwd_block_t=c[0], bwd_block_d=c[1], bwd_num_warps=c[2])
    return cfg | ({"bwd_maxnreg": c[3]} if len(c) == 4 else {})


def _grads(t, config=None):
    """(out, grads of every input) for a fixed random dout, with ``config``."""
    leaves = _leaves(t)
    o = _call(selective_scan, leaves, config=config)
    dout = torch.randn(o.shape, generator=torch.Generator(device=o.device).manual_seed(1), device=o.device)
    return o.detach(), torch.autograd.grad(o, list(leaves.values()), dout.to(o.dtype))


#: Largest relative (Frobenius) difference from the default configuration a swept one may have:
#: the default's output is checked against the float64 reference by the GPU tests.
SWEEP_TOL = {"float32": 1e-4, "bfloat16": 1e-2}


def _sweep_forward(t, shape, fwd_configs, ceil) -> list[dict]:
    """A row per forward configuration on the inputs ``t``: median time, and the difference from
    the default configuration's output (``rel_err``, ``accurate``)."""
    nbytes, exps = counts(shape["batch"], shape["dim"], shape["L"], shape["N"], t["u"].element_size())
    ref = _call(selective_scan, t)
    rows = []
    for c in fwd_configs:
        cfg = fwd_config_dict(c)
        try:
            err = rel_err(_call(selective_scan, t, config=cfg), ref)
            ms = median_ms(lambda: _call(selective_scan, t, config=cfg))
        except Exception as e:  # a configuration that does not compile (registers, shared memory)
            print(f"  fwd {cfg}: {type(e).__name__}: {str(e)[:120]}")
            continue
        rows.append(_row("triton", shape, ms, nbytes, exps, ceil, **cfg, rel_err=err,
                         accurate=err < SWEEP_TOL[shape["dtype"]]))
        print(f"  fwd batch {shape['batch']} L {shape['L']} {shape['dtype']} {cfg}: {ms:.4f} ms, "
              f"rel_err {err:.1e}", flush=True)
    return rows


def _sweep_backward(t, shape, configs, ceil) -> list[dict]:
    """A fwd+bwd row per backward configuration on the bfloat16 inputs ``t``: median time, and the
    largest difference of a gradient from the default configuration's (``rel_err``, ``accurate``)."""
    nbytes, exps = counts(shape["batch"], shape["dim"], shape["L"], shape["N"], t["u"].element_size(),
                          backward=True)
    _, g_ref = _grads(t)
    rows = []
    for c in configs:
        cfg = bwd_config_dict(c)
        try:
            err = max(rel_err(u, v) for u, v in zip(_grads(t, cfg)[1], g_ref))
            ms = median_ms(_fwd_bwd(selective_scan, t, config=cfg), warmup=5, rep=30)
        except Exception as e:
            print(f"  bwd {cfg}: {type(e).__name__}: {str(e)[:120]}")
            continue
        rows.append(_row("triton", {**shape, "pass": "fwd+bwd"}, ms, nbytes, exps, ceil, **cfg,
                         rel_err=err, accurate=err < SWEEP_TOL["bfloat16"]))
        print(f"  fwd+bwd batch {shape['batch']} L {shape['L']} {cfg}: {ms:.4f} ms, rel_err {err:.1e}", flush=True)
    return rows


def config_sweep(ceil, batch=8, dim=1536, L=2048, N=16, fwd_configs=None, bwd_configs=None, bwd_serial_configs=None,
                 state_update_configs=((16, 1), (32, 2), (64, 2), (64, 4), (128, 4), (128, 8), (256, 8), (256, 16),
                                       (512, 16), (256, 4), (128, 8, 2), (128, 8, 4), (64, 4, 4), (256, 8, 2)),
                 decode=(64, 4096, 16), paper_shapes=((1, 1024, 2048), (1, 1024, 16384), (1, 1024, 131072)),
                 paper_bwd_shapes=((1, 1024, 2048), (1, 1024, 16384))) -> dict:
    """Every launch configuration: forward (bf16 and fp32) and backward (bf16) at the headline
    shape, forward at the paper's (batch 1) and the serial backward at its shorter ones, and the
    decoding step. Every scan row carries ``rel_err``, its difference from the default
    configuration (output; fwd+bwd: the largest over the gradients), and ``accurate`` (below
    :data:`SWEEP_TOL`)."""
    rows = []
    fwd_configs = FWD_CONFIGS if fwd_configs is None else fwd_configs
    bwd_configs = BWD_CONFIGS if bwd_configs is None else bwd_configs
    bwd_serial_configs = BWD_SERIAL_CONFIGS if bwd_serial_configs is None else bwd_serial_configs
    for dtype in (torch.bfloat16, torch.float32):
        t = _inputs(batch, dim, L, N, dtype)
        shape = {"batch": batch, "dim": dim, "L": L, "N": N, "dtype": DTYPE_NAMES[dtype], "pass": "fwd"}
        rows += _sweep_forward(t, shape, fwd_configs, ceil)
        if dtype == torch.bfloat16:
            rows += _sweep_backward(t, shape, list(bwd_configs) + list(bwd_serial_configs), ceil)
        del t
    # the Mamba paper's setting (batch 1, dim 1024): few sequences, so parallelism is scarce (the
    # default serial backward runs dim/8 one-warp programs, about one an SM, each walking all of L)
    for pb, pdim, pL in paper_shapes:
        t = _inputs(pb, pdim, pL, N, torch.bfloat16)
        shape = {"batch": pb, "dim": pdim, "L": pL, "N": N, "dtype": "bfloat16", "pass": "fwd"}
        rows += _sweep_forward(t, shape, fwd_configs, ceil)
        if (pb, pdim, pL) in paper_bwd_shapes:
            rows += _sweep_backward(t, shape, bwd_serial_configs, ceil)
        del t
    # the decoding step: channels per program and warps
    b, d, n = decode
    state = torch.randn(b, d, n, device=DEVICE)
    x, dt, z = (torch.randn(b, d, device=DEVICE, dtype=torch.bfloat16) for _ in range(3))
    A, D = -torch.rand(d, n, device=DEVICE), torch.randn(d, device=DEVICE)
    B, C = (torch.randn(b, n, device=DEVICE, dtype=torch.bfloat16) for _ in range(2))
    nbytes = 2 * b * d * n * 4 + 4 * b * d * 2 + d * n * 4 + d * 4 + 2 * b * n * 2
    shape = {"batch": b, "dim": d, "L": 1, "N": n, "dtype": "bfloat16", "pass": "state_update"}
    for bd, nw, *bb in state_update_configs:
        bb = bb[0] if bb else 1
        ms = median_ms(lambda: selective_state_update(state, x, dt, A, B, C, D=D, z=z, dt_softplus=True,
                                                      block_d=bd, num_warps=nw, block_b=bb))
        rows.append(_row("triton_state_update", shape, ms, nbytes, b * d * n, ceil, block_d=bd, num_warps=nw,
                         block_b=bb))
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


# ----------------------------------------------------------------------------- mamba_ssm's CUDA scan beside ours
#: mamba_ssm's ``csrc/selective_scan`` files compiled for the side-by-side run: the binding and the
#: float32 and bfloat16 kernels with real A.
MAMBA_CUDA_SOURCES = ("selective_scan.cpp", "selective_scan_fwd_fp32.cu", "selective_scan_fwd_bf16.cu",
                      "selective_scan_bwd_fp32_real.cu", "selective_scan_bwd_bf16_real.cu")
_ALL_BRANCHES = """        if (COND) {                                                                  \\
            constexpr bool CONST_NAME = true;                                        \\
            return __VA_ARGS__();                                                    \\
        } else {                                                                     \\
            constexpr bool CONST_NAME = false;                                       \\
            return __VA_ARGS__();                                                    \\
        }                                                                            \\"""
_TRUE_BRANCH = """        if (!(COND)) throw std::runtime_error(#CONST_NAME " is false: not compiled here"); \\
        constexpr bool CONST_NAME = true;                                            \\
        return __VA_ARGS__();                                                        \\"""
#: (old, new, how many times old occurs) in mamba_ssm 2.3.2's selective_scan.cpp: half inputs and
#: complex A dispatch to dead branches that instantiate the float32 kernels (whose files are compiled).
_BINDING_EDITS = (("if (ITYPE == at::ScalarType::Half) {", "if (false) {", 1),
                  ("using input_t = at::Half;", "using input_t = float;", 1),
                  ("} else if (WTYPE == at::ScalarType::ComplexFloat) {", "} else if (false) {", 1),
                  ("using weight_t = c10::complex<float>;", "using weight_t = float;", 1))


def patch_mamba_sources(static_switch: str, binding: str) -> tuple[str, str]:
    """mamba_ssm's ``static_switch.h`` and ``selective_scan.cpp`` cut down to what the side-by-side
    run calls, so that they compile in minutes rather than half an hour: ``BOOL_SWITCH`` compiles
    its true branch only (input-dependent B and C, z, softplus, whole chunks; a false condition
    raises), and the binding dispatches float32 and bfloat16 inputs with real A only. Raises
    ``ValueError`` if the sources are not the ones these edits were written for."""
    if static_switch.count(_ALL_BRANCHES) != 1:
        raise ValueError("static_switch.h: BOOL_SWITCH is not the one of mamba_ssm 2.3.2")
    static_switch = "#include <stdexcept>\n" + static_switch.replace(_ALL_BRANCHES, _TRUE_BRANCH)
    for old, new, times in _BINDING_EDITS:
        if binding.count(old) != times:
            raise ValueError(f"selective_scan.cpp: {old!r} found {binding.count(old)} times, not {times}")
        binding = binding.replace(old, new)
    return static_switch, binding


def build_mamba_cuda(src: Path, build_dir: Path):
    """mamba_ssm's CUDA selective scan, compiled from an unpacked sdist ``src`` (the folder that
    holds ``csrc/``) for this GPU into ``build_dir`` (:func:`patch_mamba_sources`; needs nvcc and
    ninja). Returns the extension module (``fwd``, ``bwd``)."""
    import shutil

    from torch.utils.cpp_extension import load
    work = build_dir / "selective_scan"
    shutil.copytree(src / "csrc" / "selective_scan", work, dirs_exist_ok=True)
    switch, binding = patch_mamba_sources((work / "static_switch.h").read_text(),
                                          (work / "selective_scan.cpp").read_text())
    (work / "static_switch.h").write_text(switch)
    (work / "selective_scan.cpp").write_text(binding)
    major, minor = torch.cuda.get_device_capability()
    flags = ["-O3", "-std=c++17", "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
             "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
             "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
             "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math",
             f"-gencode=arch=compute_{major}{minor},code=sm_{major}{minor}"]   # mamba_ssm's setup.py flags
    return load(name="mamba_selective_scan_cuda", sources=[str(work / f) for f in MAMBA_CUDA_SOURCES],
                extra_cflags=["-O3", "-std=c++17"], extra_cuda_cflags=flags, build_directory=str(build_dir))


def _mamba_calls(mod, t):
    """(forward, forward+backward) closures of mamba_ssm's kernels on the inputs ``t`` (B and C
    as one group), as its ``selective_scan_fn`` calls them; the forward returns the gated output."""
    B, C = t["B"][:, None], t["C"][:, None]
    args = (t["u"], t["delta"], t["A"], B, C, t["D"], t["z"], t["delta_bias"])

    def fwd():
        return mod.fwd(*args, True)[2]

    dout = torch.ones_like(t["u"])

    def fwd_bwd():
        out, x, _z = mod.fwd(*args, True)
        return mod.bwd(*args, dout, x, out, None, True, False)
    return fwd, fwd_bwd


def _our_grads(t):
    leaves = _leaves(t)
    out = _call(selective_scan, leaves)
    return out.detach(), torch.autograd.grad(out, list(leaves.values()), torch.ones_like(out))


def versus_mamba(ceil, mod, update=None, shapes=((8, 1536, 2048, 16), (1, 1024, 2048, 16), (1, 1024, 16384, 16)),
                 dtypes=(torch.float32, torch.bfloat16), lengths=tuple(512 * 2**k for k in range(9)),
                 paper=(1, 1024, 16), decode=(64, 4096, 16)) -> dict:
    """Ours (``triton``) and mamba_ssm's CUDA kernels (``mamba_ssm_cuda``, built by
    :func:`build_mamba_cuda`) at the same inputs, timed back to back, forward and forward+backward,
    eager and replayed from a CUDA graph (``_graph`` rows: the kernels without the host). Every
    mamba_ssm row carries ``rel_err`` of its output (forward) or of its gradients of u, Δ, B, C
    (forward+backward) against ours, and ``speedup_vs_mamba`` (mamba_ssm's time / ours) sits in
    our rows. With ``update`` (mamba_ssm's Triton ``selective_state_update``), also the decoding
    step at ``decode = (batch, dim, N)``, eager and replayed from a CUDA graph through four states
    (as the headline's): ``triton_state_update`` and ``mamba_ssm_state_update`` rows. Besides
    ``shapes`` × ``dtypes``, the Mamba paper's speed setting (``paper = (batch, dim, N)``: 1, 1024,
    16; bfloat16) at every L of ``lengths``."""
    rows = []
    runs = [(shape, dtype) for shape in shapes for dtype in dtypes]
    pb, pd, pn = paper
    runs += [((pb, pd, L, pn), torch.bfloat16) for L in lengths if ((pb, pd, L, pn), torch.bfloat16) not in runs]
    for (batch, dim, L, N), dtype in runs:
        t = _inputs(batch, dim, L, N, dtype)
        shape = {"batch": batch, "dim": dim, "L": L, "N": N, "dtype": DTYPE_NAMES[dtype]}
        m_fwd, m_fwd_bwd = _mamba_calls(mod, t)
        ours_out, ours_g = _our_grads(t)
        m_out = m_fwd()
        m_g = m_fwd_bwd()
        # mamba_ssm's bwd: du, ddelta, dA, dB, dC, ...; ours in the order of _inputs' keys
        errs = {"fwd": rel_err(m_out, ours_out)}
        errs["fwd+bwd"] = max(rel_err(m_g[0], ours_g[0]), rel_err(m_g[1], ours_g[1]),
                              rel_err(m_g[3][:, 0], ours_g[3]), rel_err(m_g[4][:, 0], ours_g[4]))
        for passes in ("fwd", "fwd+bwd"):
            nbytes, exps = counts(batch, dim, L, N, t["u"].element_size(), backward=passes != "fwd")
            ours = (lambda: _call(selective_scan, t)) if passes == "fwd" else _fwd_bwd(selective_scan, t)
            theirs = m_fwd if passes == "fwd" else m_fwd_bwd
            for mode, timer in (("", median_ms), ("_graph", graph_ms)):
                ms = {"triton": timer(ours), "mamba_ssm_cuda": timer(theirs)}
                sh = {**shape, "pass": passes}
                rows.append(_row("triton" + mode, sh, ms["triton"], nbytes, exps, ceil,
                                 speedup_vs_mamba=ms["mamba_ssm_cuda"] / ms["triton"]))
                rows.append(_row("mamba_ssm_cuda" + mode, sh, ms["mamba_ssm_cuda"], nbytes, exps, ceil,
                                 rel_err=errs[passes]))
                print(f"  {sh} {mode or 'eager'}: ours {ms['triton']:.3f} ms, mamba_ssm {ms['mamba_ssm_cuda']:.3f} "
                      f"ms, rel_err {errs[passes]:.2e}")
        del t
        torch.cuda.empty_cache()
    if update is not None:
        rows += _versus_mamba_decode(ceil, update, *decode)
    return {"benchmark": "selective_scan_vs_mamba", **environment(), "ceilings": ceil, "rows": rows}


def _versus_mamba_decode(ceil, update, b, d, n) -> list[dict]:
    state, x, dt, A, B, C, D, z, bias, nbytes = _decode_inputs(b, d, n)
    fns = {"triton_state_update": selective_state_update, "mamba_ssm_state_update": update}
    states = {k: state.clone() for k in fns}
    outs = {k: fn(states[k], x, dt, A, B, C, D=D, z=z, dt_bias=bias, dt_softplus=True) for k, fn in fns.items()}
    err = max(rel_err(outs["mamba_ssm_state_update"], outs["triton_state_update"]),
              rel_err(states["mamba_ssm_state_update"], states["triton_state_update"]))
    shape = {"batch": b, "dim": d, "L": 1, "N": n, "dtype": "bfloat16", "pass": "state_update"}
    rows, ms = [], {}
    for mode in ("", "_graph"):
        for impl, fn in fns.items():
            if mode:
                ms[impl] = _decode_graph_ms(fn, [states[impl]], x, dt, A, B, C, D, z, bias)
            else:
                ms[impl] = median_ms(lambda fn=fn, s0=states[impl]: fn(s0, x, dt, A, B, C, D=D, z=z, dt_bias=bias,
                                                                       dt_softplus=True))
        ours, theirs = ms["triton_state_update"], ms["mamba_ssm_state_update"]
        rows.append(_row("triton_state_update" + mode, shape, ours, nbytes, b * d * n, ceil,
                         speedup_vs_mamba=theirs / ours))
        rows.append(_row("mamba_ssm_state_update" + mode, shape, theirs, nbytes, b * d * n, ceil, rel_err=err))
        print(f"  {shape} {mode or 'eager'}: ours {ours * 1e3:.1f} us, mamba_ssm {theirs * 1e3:.1f} us, "
              f"rel_err {err:.2e}")
    return rows


# ----------------------------------------------------------------------------- compile-only report (no GPU)
#: (variant, dtype, block_d, block_t, num_warps, N) the compile-only report covers.
#: "pipelined+bc_tile" ("+bc_tile2", "+bc_tile3") is the pipelined kernel with config bc_tile=1 (2, 3);
#: "+shfl_idx" adds config shfl_idx, "+stagesS" config stages=S.
COMPILE_CONFIGS = [("serial", "bf16", 32, 16, 4, 16), ("serial", "fp32", 32, 16, 4, 16),
                   ("pipelined", "bf16", 32, 16, 4, 16), ("pipelined", "fp32", 32, 16, 4, 16),
                   ("pipelined+bc_tile", "bf16", 32, 16, 4, 16), ("pipelined+bc_tile", "fp32", 32, 16, 4, 16),
                   ("pipelined+bc_tile", "bf16", 32, 8, 4, 16), ("pipelined+bc_tile", "bf16", 32, 32, 4, 16),
                   ("pipelined+bc_tile", "bf16", 16, 16, 2, 16), ("pipelined+bc_tile", "bf16", 64, 16, 8, 16),
                   ("pipelined", "bf16", 32, 32, 4, 16), ("pipelined", "fp16", 32, 16, 4, 16),
                   ("pipelined", "bf16", 32, 16, 4, 4), ("pipelined+bc_tile", "fp64", 8, 8, 1, 4),
                   ("pipelined+bc_tile2", "bf16", 32, 8, 4, 16), ("pipelined+bc_tile2", "bf16", 32, 16, 4, 16),
                   ("pipelined+bc_tile2", "fp32", 32, 8, 4, 16),
                   ("pipelined+bc_tile2@168", "bf16", 32, 16, 4, 16),       # "@R": registers capped at R
                   ("pipelined+bc_tile2+shfl_idx@168", "bf16", 32, 16, 4, 16),
                   ("pipelined+bc_tile3+shfl_idx@168", "bf16", 32, 16, 4, 16),
                   ("pipelined+bc_tile3+shfl_idx@168", "fp32", 32, 16, 4, 16),
                   ("pipelined+stages3+shfl_idx@80", "bf16", 32, 16, 4, 16),
                   ("pipelined+stages3+shfl_idx@80", "fp32", 32, 16, 4, 16)]


#: Integer arguments that are multiples of 16 at the headline shape (batch 8, dim 1536, L 2048, N 16).
DIVISIBLE_INTS = ("dim", "L", "N", "dpg", "n_dblocks", "n_ckpt", "seg_len", "sB_b", "sB_g", "sC_b", "sC_g")


def _compile_one(kernel, sig, constexprs, num_warps, maxnreg=None):
    # as Triton specialises a real call at the headline shape: pointers and the integers that
    # are multiples of 16 there (dim, L, N, strides) are known to be divisible by 16
    # (except the integers the kernel asks Triton not to specialise)
    skip = {kernel.arg_names[i] if isinstance(i, int) else i for i in getattr(kernel, "do_not_specialize", ())}
    div = [n for n in kernel.arg_names if n.endswith("_ptr")] + [n for n in DIVISIBLE_INTS
                                                                 if sig.get(n) == "i32" and n not in skip]
    c, stats = compile_sm90(kernel, sig, constexprs, div, num_warps, maxnreg=maxnreg)
    return {**stats, "convert_layouts": c.asm["ttgir"].count("ttg.convert_layout"),
            **sass_loop_stats(c.asm["cubin"])}


def _compile_worker(configs, kinds=None, state_update=True) -> list[dict]:
    """Runs with TRITON_INTERPRET=0 (kernels compiled, not interpreted); needs no GPU. Pointers are
    typed as a real call types them: inputs (and the placeholders of unused options) in the input
    dtype, B/C transposed copies, A, D, delta_bias, states, last and segment buffers in float32."""
    from .. import selective as S
    out = []
    for variant, dtype, bd, bt, nw, N in configs:
        variant, _, reg = variant.partition("@")           # "...@168": registers capped at 168
        maxnreg = int(reg) if reg else None
        if variant.startswith("bwd"):
            out.append(_compile_bwd(S, variant, dtype, bd, bt, nw, N, maxnreg))
            continue
        BN = 1 << (N - 1).bit_length()
        parts = variant.split("+")                           # "pipelined+bc_tile2"
        tile = {"bc_tile": 1, "bc_tile2": 2, "bc_tile3": 3}
        bc = dict(BC_TILE=max([tile[p] for p in parts if p in tile], default=0), SHFL_IDX="shfl_idx" in parts,
                  STAGES=max([int(p[6:]) for p in parts if p.startswith("stages")], default=1))
        kernels = ([("fwd", {})] if variant == "serial" else
                   [("fwd", dict(STATES_ONLY=False, HAS_H0=False, **bc)),
                    ("fwd_split_pass1", dict(STATES_ONLY=True, HAS_H0=False, **bc)),
                    ("fwd_split_pass2", dict(STATES_ONLY=False, HAS_H0=True, **bc))])
        kernel = S._selective_scan_fwd_serial_kernel if variant == "serial" else S._selective_scan_fwd_pipe_kernel
        for kname, extra in kernels:
            for backward in (False, True):
                if kinds is not None and kname + ("+ckpt" if backward else "") not in kinds:
                    continue
                sig = {n: "*fp32" for n in kernel.arg_names if n.endswith("_ptr")}
                inp = "fp64" if dtype == "fp64" else dtype
                sig.update({n: f"*{inp}" for n in ("u_ptr", "delta_ptr", "z_ptr", "out_ptr")})
                if not backward:   # no checkpoints: states_ptr is a placeholder (out)
                    sig["states_ptr"] = f"*{inp}"
                if kname == "fwd":  # one segment: seg_ptr is a placeholder (out)
                    sig["seg_ptr"] = f"*{inp}"
                if "scratch_ptr" in sig:     # the serial forward's own scratch: float32 (float64)
                    sig["scratch_ptr"] = "*fp64" if dtype == "fp64" else "*fp32"
                if dtype == "fp64":
                    sig = {n: "*fp64" for n in sig}
                sig.update({p.name: "i32" for p in kernel.params
                            if not p.is_constexpr and not p.name.endswith("_ptr")})
                cx = dict(VAR_B=True, VAR_C=True, HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True,
                          STORE_LAST=True, STORE_STATES=backward, CKPT=max(bt, 64), EVEN_L=True,
                          EVEN_N=BN == N, BLOCK_D=bd, BLOCK_T=bt, BLOCK_N=BN, **extra)
                rec = {"variant": variant, "kernel": kname, "dtype": dtype, "block_d": bd, "block_t": bt,
                       "num_warps": nw, "N": N, "checkpoints": backward}
                try:
                    rec.update(_compile_one(kernel, sig, cx, nw, maxnreg), maxnreg=maxnreg)
                    # elements (b, d, t, n) one thread handles per chunk iteration
                    rec["elems_per_thread_iter"] = bd * bt * BN / (32 * nw)
                    rec["loop_sass_per_elem"] = round(loop_sass_per_elem(rec["loop_sass"], nw, cx), 2)
                except Exception as e:  # noqa: BLE001
                    rec["error"] = compile_error(e)
                out.append(rec)
    k = S._selective_state_update_kernel
    for bd, nw in ((64, 4), (32, 4), (128, 4)) if state_update else ():
        sig = {n: "*fp32" for n in k.arg_names if n.endswith("_ptr")}
        sig.update({n: "*bf16" for n in ("x_ptr", "dt_ptr", "z_ptr", "B_ptr", "C_ptr", "out_ptr")})
        sig.update({"batch": "i32", "dim": "i32", "N": "i32"})
        cx = dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, BLOCK_D=bd, BLOCK_N=16, BLOCK_B=1)
        rec = {"variant": "state_update", "kernel": "state_update", "dtype": "bf16 (fp32 state)", "block_d": bd,
               "num_warps": nw, "N": 16}
        try:
            rec.update(_compile_one(k, sig, cx, nw))
        except Exception as e:  # noqa: BLE001
            rec["error"] = compile_error(e)
        out.append(rec)
    return out


def _compile_bwd(S, variant, dtype, bd, bt, nw, N, maxnreg=None) -> dict:
    """One backward kernel compiled as a real call types it: "bwd_scan" (the default backward),
    "bwd_serial" (config bwd_variant="serial"; "+shfl_idx": with bwd_shfl_idx; "+reload": with
    bwd_reload; "+seg": pass 2 of a split sequence, config bwd_seg_len), "bwd_adjoint" (pass 1 of
    the split serial backward; "+shfl_idx" too), with every option on, or
    with "-noopts" without D,
    z, delta_bias, softplus and d last_state (their pointers then placeholders: u's dtype for D, z,
    delta_bias; du's for dz; states' (float32) for dlast; dA's for dD, d delta_bias)."""
    BN = 1 << (N - 1).bit_length()
    opts = "-noopts" not in variant
    adjoint = variant.startswith("bwd_adjoint")
    serial = variant.startswith("bwd_serial") or adjoint
    kernel = (S._selective_scan_bwd_adjoint_kernel if adjoint else
              S._selective_scan_bwd_serial_kernel if serial else S._selective_scan_bwd_kernel)
    inp = dtype
    sig = {n: "*fp32" for n in kernel.arg_names if n.endswith("_ptr")}
    if dtype == "fp64":
        sig = {n: "*fp64" for n in sig}
    sig.update({n: f"*{inp}" for n in ("u_ptr", "delta_ptr", "z_ptr", "dout_ptr", "du_ptr", "ddelta_ptr", "dz_ptr")
                if n in sig})
    if not serial:   # B, C as given (input dtype); the serial backward reads float32 transposed copies
        sig.update({"B_ptr": f"*{inp}", "C_ptr": f"*{inp}"})
    if not opts:
        sig.update({n: f"*{inp}" for n in ("D_ptr", "z_ptr", "bias_ptr") if n in sig})
    sig.update({p.name: "i32" for p in kernel.params if not p.is_constexpr and not p.name.endswith("_ptr")})
    cx = dict(VAR_B=True, VAR_C=True, HAS_D=opts, HAS_Z=opts, HAS_BIAS=opts, SOFTPLUS=opts, EVEN_L=True,
              BLOCK_D=bd, BLOCK_T=bt, BLOCK_N=BN)
    if adjoint:
        cx = dict(VAR_C=True, HAS_Z=opts, HAS_BIAS=opts, SOFTPLUS=opts, EVEN_L=True, EVEN_N=BN == N,
                  BLOCK_D=bd, BLOCK_T=bt, BLOCK_N=BN, TW=max(bt, BN), SHFL_IDX="+shfl_idx" in variant)
    elif serial:
        cx.update(HAS_DLAST=opts, EVEN_N=BN == N, TW=max(bt, BN), SHFL_IDX="+shfl_idx" in variant,
                  RELOAD="+reload" in variant, HAS_SEG="+seg" in variant)
    else:
        cx.update(FLIP=False)
    rec = {"variant": variant, "kernel": "bwd", "dtype": dtype, "block_d": bd, "block_t": bt, "num_warps": nw,
           "N": N, "maxnreg": maxnreg}
    try:
        rec.update(_compile_one(kernel, sig, cx, nw, maxnreg))
        rec["elems_per_thread_iter"] = bd * bt * BN / (32 * nw)
        rec["loop_sass_per_elem"] = round(loop_sass_per_elem(rec["loop_sass"], nw, cx), 2)
        if not serial:
            # the chunk loop holds a run-time loop over the N states whose body the SASS has once:
            # per element that body (about 400 instructions for 4 elements a thread at 4×128, 4
            # warps) plus the rest of the chunk loop; loop_sass_per_elem undercounts it N-fold
            rec["note"] = "loop_sass counts the per-state loop's body once (run N times per chunk)"
    except Exception as e:  # noqa: BLE001
        rec["error"] = compile_error(e)
    return rec


#: Backward kernels of the compile-only report (same tuple as :data:`COMPILE_CONFIGS`).
COMPILE_BWD_CONFIGS = [("bwd_scan", "bf16", 4, 128, 4, 16), ("bwd_scan", "fp32", 4, 128, 4, 16),
                       ("bwd_serial", "bf16", 32, 8, 4, 16), ("bwd_serial", "fp32", 32, 8, 4, 16),
                       ("bwd_serial-noopts", "bf16", 32, 8, 4, 16), ("bwd_serial", "bf16", 32, 16, 4, 16),
                       ("bwd_serial", "bf16", 8, 8, 1, 16), ("bwd_serial", "bf16", 16, 8, 2, 16),
                       ("bwd_serial", "bf16", 64, 8, 8, 16), ("bwd_serial", "bf16", 32, 8, 4, 4),
                       ("bwd_serial@168", "bf16", 8, 8, 1, 16), ("bwd_serial+shfl_idx+reload@168", "bf16", 8, 8, 1, 16),
                       ("bwd_serial+shfl_idx+reload@168", "fp32", 8, 8, 1, 16),
                       ("bwd_serial+shfl_idx+reload+seg@168", "bf16", 8, 8, 1, 16),
                       ("bwd_adjoint+shfl_idx", "bf16", 8, 8, 1, 16)]


def compile_report(configs=None, kinds=None, state_update=True) -> list[dict]:
    """Compile the forward kernels for sm_90a in a subprocess (TRITON_INTERPRET=0); ptxas and SASS numbers.

    ``configs``: (variant, dtype, block_d, block_t, num_warps, N) tuples (default
    :data:`COMPILE_CONFIGS`); ``kinds``: which kernels of each ("fwd", "fwd_split_pass1",
    "fwd_split_pass2", each optionally with "+ckpt": storing the backward's checkpoints); all by
    default. Per record: ptxas registers and spills, shared memory, layout conversions in the
    TTGIR, and SASS counts of the chunk loop (instructions, per (b, d, t, n) element of a thread,
    MUFU.EX2, BAR, SHFL, LDG, LDS/STS, STG)."""
    return in_compiler_subprocess("ssmlib.bench.selective:_compile_worker",
                                  COMPILE_CONFIGS if configs is None else configs,
                                  None if kinds is None else list(kinds), state_update)


if __name__ == "__main__":
    import json
    import sys
    out = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else RESULTS
    if "--compile-only" in sys.argv:
        for r in compile_report(COMPILE_CONFIGS + COMPILE_BWD_CONFIGS):
            print(json.dumps(r))
    elif "--versus-mamba" in sys.argv:    # on the GPU: selective_scan_vs_mamba.json (the build: minutes)
        import tempfile

        src = Path(sys.argv[sys.argv.index("--versus-mamba") + 1])
        mod = build_mamba_cuda(src, Path(tempfile.mkdtemp(prefix="mamba_build_")))
        try:   # mamba_ssm's Triton decoding step (needs einops)
            update = import_from_mamba_sdist(src, "ops.triton.selective_state_update").selective_state_update
        except ImportError as e:
            print(f"mamba_ssm's selective_state_update not imported: {e}")
            update = None
        print(f"wrote {save(versus_mamba({**ceilings(), 'exp_per_s': exp_rate()}, mod, update), out)}")
    elif "--sweep-only" in sys.argv:      # on the GPU: only selective_scan_sweep.json (a few minutes)
        res = config_sweep({**ceilings(), "exp_per_s": exp_rate()})
        print(f"wrote {save(res, out)}")
        for r in res["rows"]:
            print({k: v for k, v in r.items() if k not in ("bytes", "flops", "exps")})
    else:
        print("use: python -m ssmlib.bench selective [--sweep]; here: --compile-only (no GPU), --sweep-only "
              "or --versus-mamba MAMBA_SSM_SDIST_DIR")

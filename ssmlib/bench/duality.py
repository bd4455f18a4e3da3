"""Benchmark of :func:`ssmlib.ssd` (Mamba-2's SSD): ``python -m ssmlib.bench duality [--sweep]``.

Writes under ``book/results/``:

* ``ssd.json``: forward and forward+backward, bfloat16, at the issue's two
  shapes (batch 8, L 4096, H 80, P 64, N 128, G 1, chunk 256: a Mamba-2 2.7B
  layer; and batch 1, L 16K, H 32, P 64, N 64), ours against mamba_ssm's
  Triton ``mamba_chunk_scan_combined`` and flash-linear-attention's
  ``chunk_simple_gla`` (q = C, k = B, v = x·Δ, g = A·Δ, scale 1; the same
  computation) when they can be imported, and the roofline. Every row has
  ``impl``, the shape, ``pass`` ("fwd" or "fwd+bwd"), ``median_ms``, ``bytes``,
  ``flops``, ``roofline_ms``, ``fraction_of_roofline``, ``date`` (when its shape was
  measured: with ``--shape``, the other shape's rows keep theirs). A baseline that
  cannot be imported is recorded in ``"baselines"`` with the reason, and has
  no rows. Forward rows on the GPU also have ``host_ms`` (the host's time a
  call: argument checks, allocations, launches) and ``graph_ms`` (replayed from
  a CUDA graph: the kernels alone). ``"speedup_vs_best_baseline"`` is the
  side-by-side ratio (faster baseline / ours) of ``median_ms``, back-to-back
  calls, which time the host wherever it is slower than the kernels (at batch
  1 every implementation's is); ``"speedup_vs_best_baseline_graph"`` the same
  of ``graph_ms``; ``"speedup_vs_recorded_best_fwd"`` the ratio to the
  baselines' earlier H200 medians (``RECORDED_MS``), for when they are absent.
* ``ssd_vs_attention.json``: SSD against ``scaled_dot_product_attention``
  (causal, flash backend), 32 heads of 64, 16K tokens per batch (batch =
  16384 // L, at least 1), L = 512 … 64K, forward, bfloat16 (``x = "L"``).
  The crossover length and the ratio at 32K are in ``"summary"``.
* with ``--sweep``, ``ssd_sweep.json``: launch configurations of the forward
  at both shapes (block_t, block_p, num_warps, num_stages, segments,
  maxnreg), and of fwd+bwd (block_t, bwd_block_p, bwd_num_warps,
  bwd_segments, bwd_bc), each
  with its error against the float32 reference (``rel_err``, ``accurate``);
  ``"best"`` names the fastest accurate one of each, to copy into
  ``ssmlib.duality._launch_config``.

Inputs are those of a Mamba-2 layer: x, dt, B, C in bfloat16; A, D, dt_bias
float32 weights; Δ = softplus(dt + dt_bias); D of shape (H,); no gate z.

The roofline. Forward bytes: every input read once, y written once,
``2·batch·L·(2·H·P + 2·G·N + H)`` (bf16); flops of the chunked algorithm on
tensor cores for chunks of Q = 256: ``2·batch·L·(Q·G·N + Q·H·P + 2·H·P·N)``;
``roofline_ms = max(bytes at copy speed, flops at the measured bf16 rate)``.
Forward+backward: taken as 3× the forward's bytes and flops (the backward
reads the inputs and dy and writes five gradients, and does about twice the
forward's products). Our fwd+bwd: the forward saving the state entering every
``bwd_block_t`` steps, then the Triton backward kernel.

Baselines (benchmarking only, never committed; there is no internet on the GPU
machine, so carry these onto it):

* ``fla-core==0.6.0`` (a pure-Python wheel from PyPI) and ``einops``:
  ``pip install --no-deps fla_core-0.6.0-py3-none-any.whl einops-*.whl``.
  Imported as ``fla.ops.simple_gla.chunk_simple_gla``.
* the ``mamba-ssm`` *source distribution* from PyPI, unpacked anywhere; point
  ``SSD_MAMBA_SRC`` at the folder that contains its ``mamba_ssm/`` package.
  ``import mamba_ssm`` fails without its CUDA build, so
  :func:`ssmlib.bench.import_from_mamba_sdist` registers empty stub packages ``mamba_ssm``, ``mamba_ssm.ops``,
  ``mamba_ssm.ops.triton``, ``mamba_ssm.utils`` whose ``__path__`` points into
  that folder, then imports ``mamba_ssm.ops.triton.ssd_combined`` (which
  needs ``ssd_*.py``, ``layernorm_gated.py``, ``k_activations.py``,
  ``softplus.py``, ``utils/torch.py``, ``utils/determinism.py``).

Compile-only check, no GPU needed (registers, spills, wgmma/mma count and the block loop's SASS
counts, barriers included, of the sm_90a code for the default launch configurations)::

    python -m ssmlib.bench.duality --compile-only

On the H200, each of these fits in the 10-minute limit of one device call (JSON and
logs land in $OUT)::

    TESTS=tests/test_duality.py SUITES= TRAIN= bash tools/gpu_check.sh     # the GPU tests
    for i in 1 2 3; do python -m ssmlib.bench.duality --sweep-only --out $OUT && break; done
    pip install -q --no-deps --target /tmp/site .baselines/fla_core-0.6.0-py3-none-any.whl
    export PYTHONPATH=$PYTHONPATH:/tmp/site SSD_MAMBA_SRC=.baselines/mamba_ssm-2.3.2.post1
    python -m ssmlib.bench.duality --baselines-only --shape 0 --out $OUT   # ssd.json, batch 8 (the baselines
    python -m ssmlib.bench.duality --baselines-only --shape 1 --out $OUT   # autotune: minutes a shape), batch 1
    python -m ssmlib.bench.duality --attention-only --out $OUT    # ssd_vs_attention.json

With ``--shape I`` only ``SHAPES[I]`` is measured and merged into the ``ssd.json``
already in the output folder (copy the committed one there first); the file is
rewritten after every shape, so a timeout keeps the shapes that finished.

The sweep (``ssd_sweep.json``) checks every configuration against the float32
reference as it times it, and resumes after a configuration that crashed the
process (``ssd_sweep.progress.jsonl`` beside it, so keep ``$OUT`` between the
attempts); the loop reruns it.

``.baselines/`` is a git-ignored folder of the checkout (listed in
``.git/info/exclude``) holding the fla-core wheel and the unpacked mamba-ssm
2.3.2.post1 sdist (``python tools/fetch_baselines.py`` fetches both), sent to
the GPU machine with the device tool's ``carry``. ``python -m ssmlib.bench
duality [--sweep]`` writes all of them in one run (over 10 minutes with the sweep).
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import runtime
from ..duality import ssd, ssd_step
from . import (ceilings, compile_error, compile_sm90, environment, graph_ms, host_ms, import_from_mamba_sdist,
               in_compiler_subprocess, median_ms, rel_err, roofline_ms, sass_loop_stats)

#: Where the benchmark runs (a test swaps in "cpu" for a dry run through the interpreter).
DEVICE = "cuda"

SHAPES = [  # (batch, L, H, P, N, G, chunk)
    dict(batch=8, L=4096, H=80, P=64, N=128, G=1, chunk=256),
    dict(batch=1, L=16384, H=32, P=64, N=64, G=1, chunk=256),
]


#: Forward medians (ms) of the baselines measured on an H200 in an earlier run (2026-11-29,
#: /work/shared/README.md), recorded for when they cannot be imported; not a side-by-side result.
RECORDED_MS = {"batch8_L4096_H80_N128": {"mamba_ssm": 1.39, "fla": 1.22},
               "batch1_L16384_H32_N64": {"mamba_ssm": 0.56, "fla": 0.29}}


# ---------------------------------------------------------------- inputs and baselines
def _inputs(batch, L, H, P, N, G, dtype=torch.bfloat16, device=None, seed=0):
    device = device or DEVICE
    g = torch.Generator(device=device).manual_seed(seed)
    r = lambda *s, dt=dtype: torch.randn(*s, generator=g, device=device, dtype=torch.float32).to(dt)  # noqa: E731
    return dict(x=r(batch, L, H, P), dt=r(batch, L, H) * 0.5, A=-torch.rand(H, generator=g, device=device) * 4 - 0.5,
                B=r(batch, L, G, N) / N**0.5, C=r(batch, L, G, N) / N**0.5, D=r(H, dt=torch.float32),
                dt_bias=r(H, dt=torch.float32) * 0.5 - 3)


def _import_mamba():
    """mamba_ssm's ``mamba_chunk_scan_combined`` from an unpacked sdist (``SSD_MAMBA_SRC``)."""
    return import_from_mamba_sdist(os.environ.get("SSD_MAMBA_SRC"), "ops.triton.ssd_combined",
                                   "SSD_MAMBA_SRC").mamba_chunk_scan_combined


def _import_fla():
    from fla.ops.simple_gla import chunk_simple_gla
    return chunk_simple_gla


def baselines() -> tuple[dict, dict]:
    """({name: callable}, {name: "ok" or why not}) for the baselines that import."""
    fns, status = {}, {}
    for name, imp in (("mamba_ssm", _import_mamba), ("fla", _import_fla)):
        try:
            fns[name] = imp()
            status[name] = "ok"
        except Exception as e:  # noqa: BLE001
            status[name] = f"not available: {e!r}"[:300]
    return fns, status


def _callers(inp, chunk, fns):
    """Forward closures (and the tensors that require grad, for fwd+bwd) of every implementation."""
    x, dt, A, B, C, D, dtb = (inp[k] for k in ("x", "dt", "A", "B", "C", "D", "dt_bias"))
    out = {"ssmlib": lambda: ssd(x, dt, A, B, C, chunk, D=D, dt_bias=dtb, dt_softplus=True)}
    if "mamba_ssm" in fns:      # each closure binds its own function (a shared name would call the last one)
        out["mamba_ssm"] = lambda f=fns["mamba_ssm"]: f(x, dt, A, B, C, chunk, D=D, dt_bias=dtb, dt_softplus=True)
    if "fla" in fns:
        # fla has no groups, no softplus, no D: its inputs are prepared outside the timing.
        H = x.shape[2]
        delta = F.softplus(dt.float() + dtb)
        q = C.expand(-1, -1, H, -1).contiguous() if C.shape[2] == 1 else C.repeat_interleave(H // C.shape[2], 2)
        k = B.expand(-1, -1, H, -1).contiguous() if B.shape[2] == 1 else B.repeat_interleave(H // B.shape[2], 2)
        v = (x.float() * delta[..., None]).to(x.dtype)
        gate = (delta * A).float()
        inp["_fla"] = dict(q=q, k=k, v=v, g=gate)
        import inspect
        layout = {"head_first": False} if "head_first" in inspect.signature(fns["fla"]).parameters else {}  # (B,T,H,K)
        out["fla"] = lambda f=fns["fla"]: f(q=inp["_fla"]["q"], k=inp["_fla"]["k"], v=inp["_fla"]["v"],
                                            g=inp["_fla"]["g"], scale=1.0, **layout)[0]
    return out


def _where(e: Exception) -> str:
    """An exception and the innermost frames it was raised from (a baseline's failure, for the JSON)."""
    import traceback
    frames = traceback.extract_tb(e.__traceback__)[-3:]
    return (f"{e!r}"[:300] + " at " + " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}"
                                                   for f in reversed(frames)))


def _floor(batch, L, H, P, N, G, chunk, ceil, factor=1.0):
    nbytes = 2 * batch * L * (2 * H * P + 2 * G * N + H) * factor
    flops = 2 * batch * L * (chunk * G * N + chunk * H * P + 2 * H * P * N) * factor
    return nbytes, flops, roofline_ms(nbytes, flops, ceil, rate="bf16_TFLOPs")


def _row(impl, shape, pas, t, nbytes, flops, roof, **extra):
    return {"impl": impl, **shape, "dtype": "bfloat16", "pass": pas, "median_ms": t, "bytes": nbytes,
            "flops": flops, "roofline_ms": roof, "fraction_of_roofline": roof / t, **extra}


# ---------------------------------------------------------------- benchmarks
def ssd_benchmark(ceil=None, shapes=SHAPES, backward=True, previous: dict | None = None, save_to=None) -> dict:
    """ssd.json's content for ``shapes``. ``previous``: an earlier result whose rows of other shapes
    are kept (the baselines autotune for minutes, so each shape may take its own device call);
    ``save_to``: a folder the result is saved to after every shape (a timeout keeps what was done)."""
    ceil = ceil or ceilings()
    fns, status = baselines()
    done = {(s["batch"], s["L"]) for s in shapes}
    rows = [r for r in (previous or {}).get("rows", []) if (r.get("batch"), r.get("L")) not in done]
    status = {**(previous or {}).get("baselines", {}), **status}
    for shape in shapes:
        inp = _inputs(**{k: shape[k] for k in ("batch", "L", "H", "P", "N", "G")})
        calls = _callers(inp, shape["chunk"], fns)
        nbytes, flops, roof = _floor(**shape, ceil=ceil)
        row_shape = {**shape, "date": environment()["date"]}   # rows of other shapes may be from earlier runs
        for impl, fn in calls.items():
            try:
                rows.append(_row(impl, row_shape, "fwd", median_ms(fn), nbytes, flops, roof, **_host_and_graph(fn)))
                print(f"fwd {impl} {shape}: {rows[-1]['median_ms']:.3f} ms "
                      f"(graph {rows[-1].get('graph_ms', float('nan')):.3f})", flush=True)
            except Exception as e:  # noqa: BLE001
                status[impl] = f"fwd failed: {_where(e)}"
        rows.append(_row("roofline", row_shape, "fwd", roof, nbytes, flops, roof))
        if backward:
            b3, f3, roof3 = _floor(**shape, ceil=ceil, factor=3.0)
            grads = [inp[k] for k in ("x", "dt", "B", "C")]
            fla_grads = [inp["_fla"][k] for k in ("q", "k", "v", "g")] if "_fla" in inp else []
            for t in grads + fla_grads:
                t.requires_grad_(True)
            for impl, fn in calls.items():
                def step(fn=fn):
                    y = fn()
                    y.backward(torch.ones_like(y))
                try:
                    rows.append(_row(impl, row_shape, "fwd+bwd", median_ms(step, warmup=5, rep=50), b3, f3, roof3,
                                     backward="Triton" if impl == "ssmlib" else "native"))
                    print(f"fwd+bwd {impl} {shape}: {rows[-1]['median_ms']:.3f} ms", flush=True)
                    status.pop(impl + " fwd+bwd", None)     # an earlier run's failure note no longer holds
                except Exception as e:  # noqa: BLE001
                    status[impl + " fwd+bwd"] = f"failed: {_where(e)}"
                for t in grads + fla_grads:
                    t.grad = None
            rows.append(_row("roofline", row_shape, "fwd+bwd", roof3, b3, f3, roof3))
        del inp, calls
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
        if save_to is not None:
            from . import save
            save(_ssd_result(rows, status, ceil), Path(save_to))
    return _ssd_result(rows, status, ceil)


def _host_and_graph(fn) -> dict:
    """``host_ms`` (the host's time a call) and ``graph_ms`` (the kernels' time, replayed from a CUDA
    graph) of a forward: where the host is slower than the kernels, ``median_ms`` times the host."""
    if DEVICE != "cuda":
        return {}
    out = {"host_ms": host_ms(fn)}
    try:
        out["graph_ms"] = graph_ms(fn)
    except Exception as e:  # noqa: BLE001
        out["graph_error"] = f"{e!r}"[:200]
    return out


def _ssd_result(rows, status, ceil) -> dict:
    """ssd.json from its rows: the side-by-side ratios of every shape that has rows."""
    speedups, graph_speedups, recorded = {}, {}, {}
    for shape in SHAPES:
        key = f"batch{shape['batch']}_L{shape['L']}_H{shape['H']}_N{shape['N']}"
        for pas in ("fwd", "fwd+bwd"):
            mine = [r for r in rows if r["pass"] == pas and r["L"] == shape["L"] and r["batch"] == shape["batch"]]
            for col, out in (("median_ms", speedups), ("graph_ms", graph_speedups)):
                t = {r["impl"]: r[col] for r in mine if col in r}
                best = min([t[k] for k in ("mamba_ssm", "fla") if k in t], default=None)
                if "ssmlib" in t and best:
                    out[f"{key}_{pas}"] = best / t["ssmlib"]
            t = {r["impl"]: r["median_ms"] for r in mine}
            if pas == "fwd" and "ssmlib" in t and key in RECORDED_MS:
                recorded[key] = min(RECORDED_MS[key].values()) / t["ssmlib"]
    return {"benchmark": "ssd", **environment(), "ceilings": ceil, "baselines": status,
            "speedup_vs_best_baseline": speedups, "speedup_vs_best_baseline_graph": graph_speedups,
            "speedup_vs_recorded_best_fwd": recorded,
            "recorded_ms": RECORDED_MS, "rows": rows}


def attention_crossover(ceil=None, Ls=(512, 1024, 2048, 4096, 8192, 16384, 32768, 65536), heads=32, dim=64,
                        N=64, tokens=16384) -> dict:
    """SSD vs causal flash attention at equal heads and head size, ``tokens`` per batch."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    ceil = ceil or ceilings()
    fns, status = baselines()
    rows = []
    for L in Ls:
        batch = max(1, tokens // L)
        shape = dict(batch=batch, L=L, H=heads, P=dim, N=N, G=1, chunk=256)
        q, k, v = (torch.randn(batch, heads, L, dim, device=DEVICE, dtype=torch.bfloat16) for _ in range(3))

        def attn():
            if DEVICE != "cuda":
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        a_flops = 4 * batch * heads * L * L * dim / 2
        a_bytes = 2 * 4 * batch * heads * L * dim
        a_roof = roofline_ms(a_bytes, a_flops, ceil, rate="bf16_TFLOPs")
        rows.append(_row("sdpa_flash", shape, "fwd", median_ms(attn), a_bytes, a_flops, a_roof))
        print(f"L {L} sdpa_flash: {rows[-1]['median_ms']:.3f} ms", flush=True)
        del q, k, v
        inp = _inputs(batch, L, heads, dim, N, 1)
        nbytes, flops, roof = _floor(**shape, ceil=ceil)
        for impl, fn in _callers(inp, 256, fns).items():
            try:
                rows.append(_row(impl, shape, "fwd", median_ms(fn), nbytes, flops, roof))
                print(f"L {L} {impl}: {rows[-1]['median_ms']:.3f} ms", flush=True)
            except Exception as e:  # noqa: BLE001
                status[f"{impl} L={L}"] = f"failed: {e!r}"[:300]
        del inp
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
    t = lambda impl, L: next((r["median_ms"] for r in rows if r["impl"] == impl and r["L"] == L), None)  # noqa: E731
    summary = {}
    for impl in ("ssmlib", "mamba_ssm", "fla"):
        faster = [L for L in Ls if t(impl, L) is not None and t(impl, L) < t("sdpa_flash", L)]
        # crossover: the first L from which SSD stays faster
        cross = next((L for L in Ls if all(x in faster for x in Ls if x >= L)), None)
        summary[impl] = {"crossover_L": cross,
                         "sdpa_over_ssd_at_32K": (t("sdpa_flash", 32768) / t(impl, 32768)
                                                  if t(impl, 32768) else None)}
    return {"benchmark": "ssd_vs_attention", **environment(), "ceilings": ceil, "baselines": status,
            "summary": summary, "rows": rows}


#: Forward launch configurations the sweep times (block_t, block_p, num_warps, num_stages, maxnreg).
#: (block_t ≤ 8·num_warps: ``ssmlib.duality.MAX_STEPS_PER_WARP``; 64 on 4 warps and 128 on 8 were
#: inaccurate and crashed in the first H200 sweep.)
#: The first sweep (``book/results/ssd_sweep.json``) timed 15 tiles; these are the fastest accurate
#: ones at either shape (its P-blocks of 16 and its maxnreg=128 ones were 1.5 to 5 times slower
#: than the best). The first, three stages, is the default since dt is loaded a block ahead (prefetch).
SWEEP_TILES = [(32, 64, 4, 3, None), (32, 64, 4, 2, None), (64, 64, 8, 1, None), (64, 64, 8, 2, None),
               (32, 64, 8, 1, None), (32, 32, 4, 1, None), (64, 32, 8, 1, None),
               # The default at 255 (N 128) or 227 (N 64) registers a thread fits 2 programs (8 warps) in an
               # SM's 64K registers; capped at 168 it fits 3 (compile-only, sm_90a: no spills at N 64, 392
               # bytes at N 128), at 128 four (148 bytes of spills at N 64).
               (32, 64, 4, 2, 168), (32, 64, 4, 2, 128)]


#: Backward launch configurations the sweep times (block_t, bwd_block_p, bwd_num_warps).
#: (The first sweep's three fastest of eight; P-blocks of 16 took 40 ms.)
SWEEP_BWD_TILES = [(32, 64, 8), (32, 32, 4), (16, 64, 8)]


#: A configuration whose output (or gradient) differs from the float32 reference by more than
#: this (relative Frobenius error) is recorded as inaccurate and never picked as best.
SWEEP_TOL = 3e-2


def _references(inp, chunk, grads):
    """float32 output of ``ssd_chunked_ref`` on the benchmark's inputs and, for ``grads``, the
    gradients of ⟨y, gy⟩ for a fixed random gy."""
    from ..duality import ssd_chunked_ref
    hi = {k: inp[k].detach().float().requires_grad_(k in grads) for k in ("x", "dt", "B", "C")}
    y = ssd_chunked_ref(hi["x"], hi["dt"], inp["A"], hi["B"], hi["C"], chunk, D=inp["D"],
                        dt_bias=inp["dt_bias"], dt_softplus=True)
    gy = torch.randn(y.shape, generator=torch.Generator(device=y.device).manual_seed(1), device=y.device)
    g = torch.autograd.grad(y.float(), [hi[k] for k in grads], gy) if grads else ()
    return y.detach(), gy, dict(zip(grads, g))


def ssd_sweep(ceil=None, shapes=SHAPES, segments=(1, 4, 8, 16), tiles=SWEEP_TILES,
              bwd_tiles=SWEEP_BWD_TILES, progress: Path | None = None) -> dict:
    """Time every launch configuration and check each against the float32 reference.

    Every row carries ``rel_err`` (forward: of y; fwd+bwd: the largest over the
    gradients of x, dt, B and C) and ``accurate`` (below :data:`SWEEP_TOL`);
    ``best`` picks among the accurate ones. A configuration that raises is
    listed in ``errors``; after a CUDA error (an illegal memory access poisons the
    context) the sweep records it and exits. ``progress`` is a JSON-lines file:
    each configuration is marked there before it runs and its row appended after,
    so running the sweep again resumes after the last finished one, and records a
    configuration that was started but never finished (it killed the process) as
    an error instead of running it again.
    """
    ceil = ceil or ceilings()
    done, started = {}, set()
    if progress is not None and Path(progress).exists():
        for line in Path(progress).read_text().splitlines():
            rec = json.loads(line)
            (started.add(rec["start"]) if "start" in rec else done.__setitem__(rec["key"], rec))
    log = open(progress, "a") if progress is not None else None

    def record(rec):
        done[rec["key"]] = rec
        if log:
            log.write(json.dumps(rec) + "\n")
            log.flush()

    for key in started - set(done):
        record({"key": key, "error": "crashed the process (the sweep resumed without it)"})

    def attempt(key, shape, pas, cfg, fn, check, nbytes, flops, roof, **timing):
        if key in done:
            return
        if log:
            log.write(json.dumps({"start": key}) + "\n")
            log.flush()
        print(f"{pas} batch {shape['batch']} L {shape['L']} {cfg} ...", end=" ", flush=True)
        try:
            err = check()
            t = median_ms(fn, **timing)
        except Exception as e:  # noqa: BLE001
            print(f"error {e!r}"[:200], flush=True)
            record({"key": key, "impl": "ssmlib", "pass": pas, **shape, **cfg, "error": repr(e)[:200]})
            if "CUDA error" in str(e) or "illegal memory access" in str(e):
                raise       # the context is lost: every later launch would fail too; run again to resume
            return
        print(f"{t:.3f} ms, rel_err {err:.1e}", flush=True)
        record({"key": key, **_row("ssmlib", shape, pas, t, nbytes, flops, roof, **cfg), "rel_err": err,
                "accurate": err < SWEEP_TOL})

    for shape in shapes:
        inp = _inputs(**{k: shape[k] for k in ("batch", "L", "H", "P", "N", "G")})
        nbytes, flops, roof = _floor(**shape, ceil=ceil)
        args = (inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], shape["chunk"])
        kw = dict(D=inp["D"], dt_bias=inp["dt_bias"], dt_softplus=True)
        names = ("x", "dt", "B", "C")
        y_ref, gy, g_ref = _references(inp, shape["chunk"], names)
        few_programs = shape["batch"] * shape["H"] < 4 * (runtime.sm_count(DEVICE) if DEVICE == "cuda" else 132)
        # many programs (batch 8, H 80): still latency-bound, so two or four segments may pay for their pass
        fwd_cfgs = [dict(block_t=T, block_p=BP, num_warps=nw, num_stages=ns, segments=S, maxnreg=reg)
                    for T, BP, nw, ns, reg in tiles for S in (segments if few_programs else segments[:3])]
        for cfg in fwd_cfgs:
            attempt(json.dumps([shape, "fwd", cfg]), shape, "fwd", cfg, lambda cfg=cfg: ssd(*args, **kw, **cfg),
                    lambda cfg=cfg: rel_err(ssd(*args, **kw, **cfg), y_ref), nbytes, flops, roof)
        # the backward: fwd+bwd with the forward saving states every block_t steps
        b3, f3, roof3 = _floor(**shape, ceil=ceil, factor=3.0)
        leaves = {k: inp[k].detach().requires_grad_(True) for k in names}
        largs = (leaves["x"], leaves["dt"], inp["A"], leaves["B"], leaves["C"], shape["chunk"])
        # few programs: the second-smallest and the largest segment counts (one more launch each)
        bwd_segments = tuple(dict.fromkeys((segments[min(1, len(segments) - 1)], segments[-1]))) if few_programs \
            else (1,)
        bwd_cfgs = [dict(block_t=T, bwd_block_p=BP, bwd_num_warps=nw, bwd_segments=BS, bwd_bc=bc)
                    for T, BP, nw in bwd_tiles for BS in bwd_segments for bc in ("atomic", "per_head")]
        for cfg in bwd_cfgs:

            def step(cfg=cfg):
                y = ssd(*largs, **kw, **cfg)
                y.backward(torch.ones_like(y))

            def check(cfg=cfg):
                y = ssd(*largs, **kw, **cfg)
                g = torch.autograd.grad(y, [leaves[k] for k in names], gy.to(y.dtype))
                return max(rel_err(u, g_ref[k]) for k, u in zip(names, g))
            attempt(json.dumps([shape, "fwd+bwd", cfg]), shape, "fwd+bwd", cfg, step, check, b3, f3, roof3,
                    warmup=5, rep=50)
        del inp, leaves, y_ref, g_ref
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
    if log:
        log.close()
    recs = list(done.values())
    rows = [{k: v for k, v in r.items() if k != "key"} for r in recs if "error" not in r]
    errors = [{k: v for k, v in r.items() if k != "key"} | {"config": r["key"]} for r in recs if "error" in r]
    best = {}
    for shape in shapes:
        for pas in ("fwd", "fwd+bwd"):
            rs = [r for r in rows if r["L"] == shape["L"] and r["batch"] == shape["batch"] and r["pass"] == pas
                  and r["accurate"]]
            if rs:
                b = min(rs, key=lambda r: r["median_ms"])
                best[f"batch{shape['batch']}_L{shape['L']}_{pas}"] = {
                    k: b[k] for k in ("block_t", "block_p", "num_warps", "num_stages", "segments", "maxnreg",
                                      "bwd_block_p", "bwd_num_warps", "bwd_segments", "bwd_bc", "median_ms",
                                      "rel_err") if k in b}
    return {"benchmark": "ssd_sweep", **environment(), "ceilings": ceil, "tolerance": SWEEP_TOL, "best": best,
            "errors": errors, "rows": rows}


def step_benchmark(ceil=None, batch=64, H=80, P=64, N=128) -> dict:
    """The decoding step: state (batch, H, P, N) float32 read and written once."""
    ceil = ceil or ceilings()
    state = torch.randn(batch, H, P, N, device=DEVICE)
    x = torch.randn(batch, H, P, device=DEVICE, dtype=torch.bfloat16)
    dt = torch.randn(batch, H, device=DEVICE, dtype=torch.bfloat16)
    A = -torch.rand(H, device=DEVICE)
    B, C = (torch.randn(batch, 1, N, device=DEVICE, dtype=torch.bfloat16) for _ in range(2))
    t = median_ms(lambda: ssd_step(state, x, dt, A, B, C, dt_softplus=True))
    nbytes = 2 * 4 * batch * H * P * N
    roof = roofline_ms(nbytes, 0, ceil)
    return {"impl": "ssmlib_step", "batch": batch, "H": H, "P": P, "N": N, "L": 1, "dtype": "float32 state",
            "pass": "step", "median_ms": t, "bytes": nbytes, "flops": 4 * batch * H * P * N,
            "roofline_ms": roof, "fraction_of_roofline": roof / t, "date": environment()["date"]}


def run(ceil: dict, sweep: bool = False) -> list[dict]:
    """ssd.json (+ the decoding step), ssd_vs_attention.json, and with ``sweep`` ssd_sweep.json."""
    main = ssd_benchmark(ceil)
    main["rows"].append(step_benchmark(ceil))
    results = [main, attention_crossover(ceil)]
    if sweep:
        results.append(ssd_sweep(ceil))
    return results


# ---------------------------------------------------------------- compile-only check (no GPU)
#: Configurations the compile-only check reports: (dtype, block_t, block_p, N, num_warps, num_stages).
COMPILE_CONFIGS = [("bf16", 32, 64, 128, 4, 3), ("bf16", 32, 64, 64, 4, 3),      # the defaults (16-bit)
                   ("bf16", 32, 64, 128, 4, 2), ("bf16", 32, 64, 64, 4, 2),
                   ("bf16", 64, 32, 128, 8, 2), ("bf16", 64, 64, 64, 8, 2),
                   ("bf16", 32, 32, 128, 8, 2), ("bf16", 32, 64, 64, 8, 2),
                   ("bf16", 64, 32, 128, 8, 1), ("bf16", 64, 64, 64, 8, 1), ("bf16", 64, 64, 128, 8, 1),
                   ("bf16", 64, 32, 128, 4, 1), ("bf16", 32, 64, 64, 4, 1), ("fp16", 64, 32, 128, 8, 2),
                   ("fp32", 32, 32, 128, 8, 1), ("fp32", 32, 64, 64, 8, 1), ("fp64", 16, 16, 32, 8, 1)]


#: Backward configurations the compile-only check reports (same fields).
BWD_COMPILE_CONFIGS = [("bf16", 32, 32, 128, 8, 1), ("bf16", 32, 64, 64, 8, 1), ("bf16", 32, 16, 128, 8, 1),
                       ("bf16", 64, 32, 128, 8, 1), ("fp16", 32, 32, 128, 8, 1), ("fp32", 16, 16, 64, 4, 1)]


def _compile_one(rec, kernel, sig, constexprs, divisible, num_warps, num_stages) -> dict:
    """``rec`` with ptxas's registers and spills and the PTX's wgmma / mma.sync counts, or the error."""
    try:
        c, stats = compile_sm90(kernel, sig, constexprs, divisible, num_warps, num_stages)
    except Exception as e:  # noqa: BLE001
        return {**rec, "error": compile_error(e)}
    ptx = c.asm["ptx"]
    return {**rec, **stats, "wgmma": ptx.count("wgmma.mma_async"),
            "mma_sync": len(re.findall(r"\bmma\.sync", ptx)), **sass_loop_stats(c.asm["cubin"])}


def _compile_worker(configs, bwd_configs=None) -> list[dict]:
    """Runs with TRITON_INTERPRET=0 (kernels compiled, not interpreted); needs no GPU."""
    from .. import duality
    out = []
    ints = ["L", "H", "G", "P", "N", "seg_len", "n_seg", "n_blocks", "n_bh"]
    for dtype, T, BP, N, nw, ns in configs:
        BN = max(16, 1 << (N - 1).bit_length())
        prefetch = dtype in ("bf16", "fp16") and BN <= 128     # as the default launch (``_launch_config``)
        accp = "*fp64" if dtype == "fp64" else "*fp32"
        # the forward as launched: the single pass saving states, the states-only first pass, and the
        # chained pass reading C Bᵀ from _ssd_cb_kernel (the 16-bit default at the 2.7B shape)
        for kind in ("fwd", "fwd_states_only", "fwd_chained_cb"):
            states_only, chained = kind == "fwd_states_only", kind == "fwd_chained_cb"
            sig = {n: accp for n in duality._ssd_fwd_kernel.arg_names if n.endswith("_ptr")}
            # as in a real call: unused input pointers are placeholders of x's dtype
            sig.update({n: f"*{dtype}" for n in ("x_ptr", "dt_ptr", "B_ptr", "C_ptr", "y_ptr", "z_ptr")})
            sig.update({n: "i32" for n in ints}, chain_ptr="*i32")
            cx = dict(HAS_D=True, D_PER_P=False, HAS_Z=True, HAS_DTB=True, SOFTPLUS=True, HAS_H0=True,
                      STORE_FINAL=True, STATES_ONLY=states_only, STORE_STATES=kind == "fwd", CHAINED=chained,
                      HAS_CB=chained, PREFETCH=prefetch, PREP_BLOCKS=duality._prep_blocks(T),
                      LOWP=dtype in ("bf16", "fp16"),
                      PRECISION="ieee" if dtype == "fp64" else "tf32x3", BLOCK_T=T, BLOCK_P=BP, BLOCK_N=BN)
            div = [n for n in sig if n.endswith("_ptr")] + ["L", "H", "P", "N", "seg_len"]
            rec = {"kernel": kind, "dtype": dtype, "block_t": T,
                   "block_p": BP, "N": N, "num_warps": nw, "num_stages": ns, "prefetch": prefetch}
            out.append(_compile_one(rec, duality._ssd_fwd_kernel, sig, cx, div, nw, ns))
        k = duality._ssd_cb_kernel
        sig = {n: accp for n in k.arg_names if n.endswith("_ptr")}
        sig.update({n: f"*{dtype}" for n in ("B_ptr", "C_ptr")})
        sig.update({n: "i32" for n in ("L", "G", "N", "n_blocks")})
        cx = dict(LOWP=dtype in ("bf16", "fp16"), PRECISION="ieee" if dtype == "fp64" else "tf32x3", BLOCK_T=T,
                  BLOCK_N=BN)
        rec = {"kernel": "cb", "dtype": dtype, "block_t": T, "N": N, "num_warps": 4}
        out.append(_compile_one(rec, k, sig, cx, [n for n in sig if n.endswith("_ptr")] + ["L", "N"], 4, 1))
    for dtype, T, BP, N, nw, ns in BWD_COMPILE_CONFIGS if bwd_configs is None else bwd_configs:
        BN = max(16, 1 << (N - 1).bit_length())
        k = duality._ssd_bwd_kernel
        sig = {n: "*fp32" for n in k.arg_names if n.endswith("_ptr")}
        sig.update({n: f"*{dtype}" for n in ("x_ptr", "B_ptr", "C_ptr", "z_ptr", "dy_ptr", "dx_ptr", "dz_ptr",
                                             "seg_dh_ptr", "seg_a_ptr", "dhT_ptr")})   # placeholders, as above
        sig.update({n: "i32" for n in ("L", "H", "G", "P", "N", "n_blocks", "seg_blocks", "n_seg")})
        for kernel, adj, per_head in (("bwd", False, False), ("bwd_adjoint_only", True, False),
                                      ("bwd_bc_per_head", False, True)):
            cx = dict(HAS_D=True, D_PER_P=False, HAS_Z=True, HAS_DTB=True, SOFTPLUS=True, HAS_H0=True, HAS_DHT=True,
                      ADJ_ONLY=adj, BC_PER_HEAD=per_head,
                      BC_STORE=per_head, LOWP=dtype in ("bf16", "fp16"), PRECISION="tf32x3", BLOCK_T=T, BLOCK_P=BP,
                      BLOCK_N=BN)
            rec = {"kernel": kernel, "dtype": dtype, "block_t": T, "block_p": BP,
                   "N": N, "num_warps": nw, "num_stages": ns}
            out.append(_compile_one(rec, k, sig, cx, [n for n in sig if n.endswith("_ptr")] + ["L", "H", "P", "N"],
                                    nw, ns))
    sig = {n: "*fp32" for n in duality._ssd_step_kernel.arg_names if n.endswith("_ptr")}
    sig.update({n: "*bf16" for n in ("x_ptr", "y_ptr", "z_ptr", "B_ptr", "C_ptr", "dt_ptr")})
    sig.update({n: "i32" for n in ("H", "G", "P", "N")})
    cx = dict(HAS_D=True, D_PER_P=False, HAS_Z=True, HAS_DTB=True, SOFTPLUS=True, BLOCK_P=32, BLOCK_N=128)
    rec = {"kernel": "step", "dtype": "bf16 (fp32 state)", "block_p": 32, "N": 128, "num_warps": 4}
    out.append(_compile_one(rec, duality._ssd_step_kernel, sig, cx, [n for n in sig if n.endswith("_ptr")]
                            + ["P", "N"], 4, 1))
    return out


def compile_report(configs=COMPILE_CONFIGS, bwd_configs=BWD_COMPILE_CONFIGS) -> list[dict]:
    """Compile the kernels for sm_90a in a subprocess (TRITON_INTERPRET=0) and report ptxas's numbers
    (registers, spills, shared memory), the PTX's wgmma / mma.sync counts and the SASS of the block
    loop (:func:`ssmlib.bench.sass_loop_stats`: instructions, barriers, shared-memory and tensor-core
    instructions a block)."""
    return in_compiler_subprocess("ssmlib.bench.duality:_compile_worker", configs, bwd_configs)


if __name__ == "__main__":
    from . import RESULTS, save
    out = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else RESULTS
    if "--compile-only" in sys.argv:
        for r in compile_report():
            print(json.dumps(r))
    elif "--sweep-only" in sys.argv:       # on the GPU: only ssd_sweep.json; run again to resume after a crash
        res = ssd_sweep(ceilings(), progress=out / "ssd_sweep.progress.jsonl")
        print(f"wrote {save(res, out)}")
        print(json.dumps(res["best"], indent=1))
    elif "--baselines-only" in sys.argv:   # ssd.json (+ the decoding step); --shape I: SHAPES[I] only
        ceil = ceilings()
        shapes = [SHAPES[int(sys.argv[sys.argv.index("--shape") + 1])]] if "--shape" in sys.argv else SHAPES
        prev = json.loads((out / "ssd.json").read_text()) if (out / "ssd.json").is_file() else None
        res = ssd_benchmark(ceil, shapes, previous=prev, save_to=out)
        res["rows"] = [r for r in res["rows"] if r.get("impl") != "ssmlib_step"] + [step_benchmark(ceil)]
        print(f"wrote {save(res, out)}")
        print(json.dumps({k: res[k] for k in ("baselines", "speedup_vs_best_baseline",
                                              "speedup_vs_best_baseline_graph")}, indent=1))
    elif "--attention-only" in sys.argv:   # ssd_vs_attention.json
        res = attention_crossover(ceilings())
        print(f"wrote {save(res, out)}")
        print(json.dumps(res["summary"], indent=1))
    else:
        print("use: python -m ssmlib.bench duality [--sweep]; here: --compile-only (no GPU), --sweep-only, "
              "--baselines-only or --attention-only [--out DIR]")

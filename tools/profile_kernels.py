"""One warm call of a kernel at its benchmark shape, for a profiler to look at.

Run under Nsight Compute or compute-sanitizer on the GPU machine, e.g.::

    ncu --clock-control none --section SpeedOfLight --section WarpStateStats \\
        --section SchedulerStats --section MemoryWorkloadAnalysis --section Occupancy \\
        -k regex:fwd --launch-skip 1 --launch-count 1 \\
        python3 tools/profile_kernels.py selective pipelined bf16 > ncu_pipelined.txt
    compute-sanitizer --tool memcheck python3 tools/profile_kernels.py ssd 64x4 bf16

The first call compiles (and is skipped by ``--launch-skip``); the second is the
one profiled. Kernels and shapes: ``selective VARIANT DTYPE`` (variant "default", "pipelined",
"serial" or "scan"; batch 8, dim 1536, N 16, L 2048), ``selective_bwd
DTYPE`` (the default fwd+bwd), ``state_update`` (batch 64, dim 4096, N 16),
``ssd TILE DTYPE`` (TILE: block_t x num_warps [x block_p], e.g. "32x4" or
"64x4x32"; batch 8, L 4096, H 80, P 64, N 128), ``ssd_small TILE DTYPE``
(batch 1, L 16K, H 32, N 64) and ``ssd_bwd DTYPE`` (the default forward and
backward at the batch-8 shape; ``-k regex:bwd`` picks the backward kernel).
"""
from __future__ import annotations

import sys

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def selective(variant: str, dtype: str, backward: bool = False) -> None:
    from ssmlib import selective_scan
    from ssmlib.bench.selective import _call, _fwd_bwd, _inputs
    t = _inputs(8, 1536, 2048, 16, DTYPES[dtype])
    step = _fwd_bwd(selective_scan, t) if backward else (
        lambda: _call(selective_scan, t, config=None if variant == "default" else {"variant": variant}))
    for _ in range(2):
        step()
        torch.cuda.synchronize()


def state_update() -> None:
    from ssmlib import selective_state_update
    b, d, n = 64, 4096, 16
    state = torch.randn(b, d, n, device="cuda")
    x, dt, z = (torch.randn(b, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    A, D = -torch.rand(d, n, device="cuda"), torch.randn(d, device="cuda")
    B, C = (torch.randn(b, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(2):
        selective_state_update(state, x, dt, A, B, C, D=D, z=z, dt_softplus=True)
        torch.cuda.synchronize()


def ssd_call(tile: str, dtype: str, small: bool) -> None:
    from ssmlib import ssd
    from ssmlib.bench.duality import _inputs
    from ssmlib import duality
    block_t, num_warps, *block_p = (int(v) for v in tile.split("x"))
    if block_t > duality.MAX_STEPS_PER_WARP * num_warps:     # refused by ssd: lifted here, to look at why
        print(f"note: ssd refuses block_t {block_t} on {num_warps} warps on the GPU; lifted for this run")
        duality.MAX_STEPS_PER_WARP = block_t
    shape = (1, 16384, 32, 64, 64, 1) if small else (8, 4096, 80, 64, 128, 1)
    i = _inputs(*shape, dtype=DTYPES[dtype])
    for _ in range(2):
        ssd(i["x"], i["dt"], i["A"], i["B"], i["C"], 256, D=i["D"], dt_bias=i["dt_bias"], dt_softplus=True,
            block_t=block_t, num_warps=num_warps, block_p=block_p[0] if block_p else None)
        torch.cuda.synchronize()


def ssd_bwd(dtype: str) -> None:
    from ssmlib import ssd
    from ssmlib.bench.duality import _inputs
    i = {k: v.requires_grad_() for k, v in _inputs(8, 4096, 80, 64, 128, 1, dtype=DTYPES[dtype]).items()}
    for _ in range(2):
        y = ssd(i["x"], i["dt"], i["A"], i["B"], i["C"], 256, D=i["D"], dt_bias=i["dt_bias"], dt_softplus=True)
        torch.autograd.grad(y, list(i.values()), torch.ones_like(y))
        torch.cuda.synchronize()


if __name__ == "__main__":
    what, *rest = sys.argv[1:] or ["help"]
    if what == "selective":
        selective(*rest)
    elif what == "selective_bwd":
        selective("default", *rest, backward=True)
    elif what == "state_update":
        state_update()
    elif what == "ssd_bwd":
        ssd_bwd(*rest)
    elif what in ("ssd", "ssd_small"):
        ssd_call(*rest, small=what == "ssd_small")
    else:
        print(__doc__)

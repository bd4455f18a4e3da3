"""Configurations of ``ssmlib.selective_scan`` timed in turn, round after round, in one run (A/B).

On the GPU machine, e.g.::

    python3 tools/selective_ab.py --pass fwd --dtype bf16 '{}' '{"shfl_idx": false}'
    python3 tools/selective_ab.py --pass fwd+bwd --dtype fp32 --rounds 3 --out ab.json \\
        '{}' '{"bwd_shfl_idx": false}'

Each positional argument is a ``config`` dict of ``selective_scan`` in JSON (``{}``: the defaults).
Every round times each configuration once: the median of CUDA-event timings
(``ssmlib.bench.median_ms``) of a call, or of a forward and backward for ``--pass fwd+bwd``, on
``ssmlib.bench.selective``'s Mamba-like inputs at ``--shape`` (batch, dim, L, N; default the
headline shape 8,1536,2048,16). Taking the configurations in turn, rather than one after the
other, keeps drifts of the clock or of other work on the device out of the comparison. It prints
and writes (``--out``) every round and each configuration's median over the rounds, with the
device, the versions and the date. The ``selective_ab_session10_call*.json`` logs in
``book/results/logs/`` were measured this way (that session's scripts: same inputs, same timing).
Without a GPU it runs the kernels in Triton's interpreter and times them with the host's clock,
which only checks the tool (use a small ``--shape``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ssmlib  # noqa: E402  (after the path)
import ssmlib.bench.selective as bench  # noqa: E402
from ssmlib import selective_scan  # noqa: E402
from ssmlib.bench import environment, median_ms  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _time_ms(fn) -> float:
    if torch.cuda.is_available():
        return median_ms(fn, warmup=5, rep=30)
    fn()
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="tools/selective_ab.py", description=__doc__.split("\n")[0])
    p.add_argument("configs", nargs="+", type=json.loads, help="config dicts of selective_scan, in JSON")
    p.add_argument("--pass", dest="pass_", choices=("fwd", "fwd+bwd"), default="fwd")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="bf16")
    p.add_argument("--shape", default="8,1536,2048,16", help="batch,dim,L,N")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, help="JSON file to write")
    a = p.parse_args(argv)
    batch, dim, L, N = (int(v) for v in a.shape.split(","))
    bench.DEVICE = ssmlib.DEVICE                  # "cpu" without a GPU: the interpreter's dry run
    t = bench._inputs(batch, dim, L, N, DTYPES[a.dtype])
    rows = []
    for r in range(a.rounds):
        for cfg in a.configs:
            fn = (bench._fwd_bwd(selective_scan, t, config=cfg or None) if a.pass_ == "fwd+bwd"
                  else (lambda cfg=cfg: bench._call(selective_scan, t, config=cfg or None)))
            rows.append({"round": r, "config": cfg, "ms": _time_ms(fn)})
            print(rows[-1], flush=True)
    medians = [{"config": cfg, "median_ms": statistics.median(x["ms"] for x in rows if x["config"] == cfg)}
               for cfg in a.configs]
    for m in medians:
        print(f"{json.dumps(m['config'])}: {m['median_ms']:.4f} ms")
    result = {"benchmark": "selective_ab", **environment(), "pass": a.pass_, "dtype": a.dtype,
              "shape": {"batch": batch, "dim": dim, "L": L, "N": N}, "rounds": rows, "medians": medians}
    if a.out:
        a.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

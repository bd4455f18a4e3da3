"""``python -m ssmlib.bench SUITE [--sweep] [--out DIR]``: time a suite on the GPU and write its JSON."""
import argparse
import importlib
import pkgutil
from pathlib import Path

import torch

from . import RESULTS, ceilings, save

SUITES = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_"))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ssmlib.bench", description=__doc__.split(":")[1].strip())
    parser.add_argument("suite", choices=SUITES)
    parser.add_argument("--sweep", action="store_true", help="also time every launch configuration")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON files")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("benchmarks need a CUDA GPU")
    ceil = ceilings()
    print(f"ceilings: copy {ceil['copy_GBps']:.0f} GB/s, fp32 {ceil['fp32_TFLOPs']:.1f} TFLOP/s")
    for res in importlib.import_module(f"{__package__}.{args.suite}").run(ceil, sweep=args.sweep):
        print(f"wrote {save(res, args.out)}")
        for r in res["rows"]:
            shape = " ".join(f"{k}={v}" for k, v in r.items()
                             if k not in ("impl", "median_ms", "bytes", "flops", "roofline_ms", "fraction_of_roofline"))
            print(f"  {r['impl']:>12} {shape}: {r['median_ms']:9.3f} ms "
                  f"({r['fraction_of_roofline']:.0%} of roofline {r['roofline_ms']:.3f} ms)")


if __name__ == "__main__":
    main()

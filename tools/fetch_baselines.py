"""Fetch the baselines that ssmlib's benchmarks time beside its kernels.

Writes into the git-ignored `.baselines/` (add `/.baselines/` to `.git/info/exclude`):
the fla-core 0.6.0 wheel and the unpacked mamba-ssm 2.3.2.post1 source distribution
(its Triton SSD files for `python -m ssmlib.bench duality`; its CUDA selective scan,
compiled on the GPU machine by `python -m ssmlib.bench.selective --versus-mamba`, which
also needs the ninja wheel fetched here, and einops for its Triton decoding step:
`pip install --no-deps --target /tmp/site` them, put /tmp/site on PYTHONPATH and
/tmp/site/bin on PATH). They are used only to measure and are never committed. Send the folder to a GPU machine
with the device tool's `carry`; ssmlib/bench/duality.py's docstring has the command.
Usage:  python tools/fetch_baselines.py
"""
import re
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

DEST = Path(__file__).resolve().parents[1] / ".baselines"
SDIST = "mamba_ssm-2.3.2.post1.tar.gz"


def main():
    DEST.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(DEST),
                    "fla-core==0.6.0", "einops==0.8.2", "ninja==1.13.2"], check=True)
    if not (DEST / SDIST.removesuffix(".tar.gz")).is_dir():
        # `pip download` of this sdist tries to build its metadata (it needs CUDA): fetch the file itself
        index = urllib.request.urlopen("https://pypi.org/simple/mamba-ssm/", timeout=60).read().decode()
        url = re.search(rf'href="([^"]+{re.escape(SDIST)}[^"]*)"', index).group(1)
        archive = DEST / SDIST
        archive.write_bytes(urllib.request.urlopen(url, timeout=120).read())
        with tarfile.open(archive) as tar:
            tar.extractall(DEST, filter="data")
        archive.unlink()
    print(*sorted(p.name for p in DEST.iterdir()), sep="\n")


if __name__ == "__main__":
    main()

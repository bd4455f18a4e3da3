"""The committed benchmark results are complete and plot; the CLI refuses to time on a CPU."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from ssmlib import bench  # noqa: E402
from ssmlib.bench.__main__ import main as bench_main  # noqa: E402


@pytest.mark.parametrize("name", ["linear_recurrence", "linear_recurrence_sweep", "hippo_projection",
                                  "hippo_projection_sweep", "selective_scan",
                                  "selective_scan_length", "selective_scan_memory", "selective_scan_sweep",
                                  "selective_scan_vs_mamba",
                                  "krylov", "ssd_sweep", "ssd", "ssd_vs_attention"])
def test_committed_results_are_complete(name):
    res = bench.load(name)
    for key in ("device", "torch", "triton", "python", "date", "ceilings", "rows"):
        assert key in res, key
    assert res["triton"] == "3.6.0"
    for r in res["rows"]:
        assert r["median_ms"] > 0 and r["roofline_ms"] > 0
        assert r["fraction_of_roofline"] == pytest.approx(r["roofline_ms"] / r["median_ms"])


def test_plot_has_a_bar_per_implementation_and_size():
    res = bench.load("linear_recurrence")
    ax = bench.plot(res)
    n = len({(r["impl"], r["N"]) for r in res["rows"]})
    assert len(ax.patches) == n


def test_save_load_roundtrip(tmp_path):
    res = {"benchmark": "x", "rows": []}
    bench.save(res, tmp_path)
    assert bench.load("x", tmp_path) == res


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_cli_refuses_without_gpu():
    with pytest.raises(SystemExit):
        bench_main(["recurrence"])


def test_host_ms_times_the_calls():
    import time
    t = bench.host_ms(lambda: time.sleep(0.002), calls=5)
    assert 2.0 <= t < 50.0

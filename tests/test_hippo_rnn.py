"""ssmlib.hippo_rnn: the HiPPO-RNN cell, its GRU baseline, the recall task and the training loop."""
import json

import pytest
import torch

from ssmlib import hippo, hippo_rnn as hr


def test_shapes():
    m = hr.HiPPORNN(d_input=3, d_hidden=8, N=5, d_output=2)
    x = torch.randn(4, 11, 3)
    assert m(x).shape == (4, 2)
    out, f, c = m(x, return_memory=True)
    assert out.shape == (4, 2) and f.shape == (4, 11) and c.shape == (4, 11, 5)
    g = hr.GRUBaseline(d_input=3, d_hidden=7, d_output=2)
    assert g(x).shape == (4, 2)


def test_memory_is_the_legs_projection():
    """The memory inside the cell is exactly ssmlib.hippo.project_ref of the stream f it writes."""
    m = hr.HiPPORNN(d_input=2, d_hidden=6, N=7, d_output=1).double()
    x = torch.randn(3, 40, 2, dtype=torch.float64)
    _, f, c = m(x, return_memory=True)
    for dt in (1.0, 0.01):                                 # LegS has no time scale
        ref = hippo.project_ref(f.detach(), "legs", 7, dt)
        torch.testing.assert_close(c.detach(), ref, rtol=1e-12, atol=1e-12)
    # and the matrices are built from ssmlib.hippo.transition("legs", N): Ā_k, B̄_k for k ≥ 2
    Ab, Bb = hr.legs_memory(7, 40)
    A, B = hippo.transition("legs", 7)
    I = torch.eye(7, dtype=torch.float64)
    for k in (2, 5, 40):
        M = I - A / (2 * k)
        torch.testing.assert_close(Ab[k - 1], torch.linalg.solve(M, I + A / (2 * k)))
        torch.testing.assert_close(Bb[k - 1], torch.linalg.solve(M, B / k))


def test_memory_float32_close_to_float64():
    torch.manual_seed(0)
    m = hr.HiPPORNN(1, 8, 16, 1)
    x = torch.randn(2, 200, 1)
    _, f, c = m(x, return_memory=True)
    ref = hippo.project_ref(f.detach().double(), "legs", 16, 1.0)
    assert (c.detach().double() - ref).abs().max() < 1e-5 * max(1.0, ref.abs().max().item())


def test_gradients_flow():
    m = hr.HiPPORNN(1, 8, 6, 2)
    x = torch.randn(2, 15, 1)
    m(x).pow(2).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    # the gradient reaches the first input through the memory path, too
    x = torch.randn(2, 15, 1, requires_grad=True)
    m(x).sum().backward()
    assert x.grad[:, 0].abs().sum() > 0


def test_matched_parameter_count():
    for d_in, H, N, K in ((1, 64, 32, 4), (1, 32, 16, 4), (3, 16, 8, 1)):
        h = hr.count_parameters(hr.HiPPORNN(d_in, H, N, K))
        g = hr.count_parameters(hr.GRUBaseline(d_in, hr.matched_gru_hidden(d_in, H, N, K), K))
        assert abs(g - h) / h < 0.05, (h, g)


def test_task():
    task = hr.RecallTask(length=50, K=4, cutoff=3)
    assert task.positions == [6, 19, 31, 44]
    x, y = task.sample(8, torch.Generator().manual_seed(1))
    assert x.shape == (8, 50, 1) and y.shape == (8, 4) and x.dtype == torch.float32
    torch.testing.assert_close(x.pow(2).mean(1).squeeze(-1), torch.ones(8))          # unit RMS
    torch.testing.assert_close(y, x[:, task.positions, 0])
    spec = torch.fft.rfft(x[..., 0].double(), dim=-1).abs()
    assert spec[:, 4:].max() < 1e-5 and spec[:, 0].max() < 1e-5                          # band-limited
    x2, _ = task.sample(8, torch.Generator().manual_seed(1))
    assert torch.equal(x, x2)                                                            # reproducible
    assert task.accuracy(y, y) == 1.0


def test_tiny_training_reduces_loss():
    torch.manual_seed(0)
    task = hr.RecallTask(length=40, K=2, cutoff=2)
    model = hr.HiPPORNN(1, 16, 8, task.K)
    curve = hr.train(model, task, steps=60, batch_size=16, lr=1e-2, eval_every=20, eval_size=64)
    assert len(curve["loss"]) == 60 and curve["steps_done"] == 60 and not curve["stopped_early"]
    assert curve["eval_step"] == [20, 40, 60]
    first = sum(curve["loss"][:5]) / 5
    last = sum(curve["loss"][-5:]) / 5
    assert last < 0.3 * first, (first, last)
    assert curve["final_mse"] < curve["eval_mse"][0] or curve["final_mse"] < 0.05


def test_time_limit_stops_early():
    task = hr.RecallTask(length=20, K=2, cutoff=2)
    curve = hr.train(hr.GRUBaseline(1, 4, 2), task, steps=10_000, time_limit_s=0.0, eval_size=8)
    assert curve["stopped_early"] and curve["steps_done"] == 1 and curve["eval_step"] == [1]


def test_run_and_cli(tmp_path, monkeypatch):
    cfg = {"task": {"length": 20, "K": 2, "cutoff": 2, "tol": 0.2}, "d_hidden": 8, "N": 4,
           "steps": 3, "batch_size": 4, "lr": 1e-2, "eval_size": 8, "eval_every": 2, "time_limit_s": None}
    res = hr.run(cfg)
    assert set(res["models"]) == {"hippo_rnn", "gru"}
    for key in ("device", "torch", "triton", "date", "config", "zero_predictor", "positions"):
        assert key in res
    json.dumps(res)                                                  # serializable
    monkeypatch.setattr(hr, "TINY", cfg)
    hr.main(["--tiny", "--out", str(tmp_path), "--device", "cpu"])
    written = json.loads((tmp_path / "hippo_rnn_tiny.json").read_text())
    assert written["models"]["gru"]["steps_done"] == 3
    with pytest.raises(SystemExit):                                  # full run refuses a CPU
        hr.main(["--out", str(tmp_path), "--device", "cpu"])


@pytest.mark.parametrize("bad, err", [
    (lambda: hr.HiPPORNN(1, 8, 0), ValueError),
    (lambda: hr.HiPPORNN(1, 8.0, 4), TypeError),
    (lambda: hr.HiPPORNN(2, 8, 4)(torch.randn(3, 10, 1)), ValueError),      # wrong feature size
    (lambda: hr.HiPPORNN(1, 8, 4)(torch.randn(10, 1)), ValueError),         # not (batch, L, d)
    (lambda: hr.HiPPORNN(1, 8, 4)(torch.randn(3, 10, 1, dtype=torch.float64)), TypeError),
    (lambda: hr.HiPPORNN(1, 8, 4)(torch.ones(3, 10, 1, dtype=torch.long)), TypeError),
    (lambda: hr.GRUBaseline(1, 8)(torch.randn(3, 0, 1)), ValueError),
    (lambda: hr.RecallTask(length=10, K=20), ValueError),
    (lambda: hr.RecallTask(length=10, cutoff=5), ValueError),
    (lambda: hr.RecallTask(tol=0.0), ValueError),
    (lambda: hr.train(hr.GRUBaseline(1, 4, 4), hr.RecallTask(length=20, cutoff=2), steps=0), ValueError),
    (lambda: hr.train(hr.GRUBaseline(1, 4, 4), "adding", steps=1), TypeError),
    (lambda: hr.legs_memory(0, 10), ValueError),
])
def test_bad_input(bad, err):
    with pytest.raises(err):
        bad()


def test_progress_without_tqdm(monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)             # importing it raises ImportError
    task = hr.RecallTask(length=20, K=2, cutoff=2)
    hr.train(hr.GRUBaseline(1, 4, 2), task, steps=4, progress=True, eval_size=8, desc="gru")
    assert "gru: step 4/4" in capsys.readouterr().out


@pytest.mark.gpu
def test_gpu_memory_and_tiny_run():
    m = hr.HiPPORNN(1, 8, 16, 2).double().cuda()
    x = torch.randn(4, 300, 1, dtype=torch.float64, device="cuda")
    _, f, c = m(x, return_memory=True)
    torch.testing.assert_close(c, hippo.project_ref(f.detach(), "legs", 16, 1.0), rtol=1e-10, atol=1e-10)
    cfg = {"task": {"length": 50, "K": 2, "cutoff": 2, "tol": 0.2}, "d_hidden": 8, "N": 8,
           "steps": 5, "batch_size": 8, "lr": 1e-2, "eval_size": 16, "eval_every": 5, "time_limit_s": None}
    res = hr.run(cfg, device="cuda")
    assert res["device"] != "cpu" and res["models"]["hippo_rnn"]["steps_done"] == 5

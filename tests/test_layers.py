"""ssmlib.layers: the LSSL (convolution = recurrence), the deep block, the memory task and its training run."""
import json
import math

import pytest
import torch

import ssmlib
from ssmlib import hippo, layers
from ssmlib.krylov import krylov

f64 = torch.float64


@pytest.mark.parametrize("measure", layers.INITS)
@pytest.mark.parametrize("kernel", ["squaring", "naive"])
def test_convolution_mode_equals_recurrent_mode(measure, kernel):
    m = layers.LSSL(3, 8, measure=measure, kernel=kernel).double()
    u = torch.randn(2, 37, 3, dtype=f64)
    y_conv = m(u)
    assert y_conv.shape == (2, 37, 3)
    torch.testing.assert_close(y_conv, m.forward_recurrent(u), rtol=1e-10, atol=1e-10)


def test_convolution_mode_equals_triton_recurrence():
    m = layers.LSSL(4, 6).double()
    u = torch.randn(2, 50, 4, dtype=f64)
    Ab, Bb = (t.detach() for t in m.discrete())
    y = ssmlib.linear_recurrence(*(t.contiguous().to(ssmlib.DEVICE) for t in
                                   (Ab, Bb, m.C.detach(), u.transpose(1, 2), m.D.detach())))
    torch.testing.assert_close(m(u).detach(), y.cpu().transpose(1, 2), rtol=1e-10, atol=1e-10)


def test_initialisation():
    m = layers.LSSL(5, 7, measure="legs", dt_min=1e-3, dt_max=1e-1)
    A, B = hippo.transition("legs", 7)
    torch.testing.assert_close(m.A.detach(), A.float().expand(5, 7, 7))
    torch.testing.assert_close(m.B.detach(), B.float().expand(5, 7))
    dt = m.log_dt.exp()
    assert (dt >= 1e-3 * 0.999).all() and (dt <= 1e-1 * 1.001).all()
    Ab, Bb = m.discrete()
    I = torch.eye(7)
    h = 2
    torch.testing.assert_close(Ab[h], torch.linalg.solve(I - dt[h] * m.A[h] / 2, I + dt[h] * m.A[h] / 2))
    torch.testing.assert_close(m.kernel_K(20), krylov(Ab, Bb, m.C, 20, "naive"), rtol=1e-5, atol=1e-6)
    fixed = layers.LSSL(5, 7, learn_A=False)
    names = {n for n, _ in fixed.named_parameters()}
    assert names == {"C", "D", "log_dt"} and {n for n, _ in fixed.named_buffers()} == {"A", "B"}


def test_gradients_reach_every_parameter_and_the_input():
    model = layers.DeepLSSL(2, 8, 4, 2, 1)
    x = torch.randn(3, 20, 2, requires_grad=True)
    model(x).pow(2).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert x.grad[:, 0].abs().sum() > 0                  # the first step reaches the last output


def test_layer_gradcheck():
    m = layers.LSSL(2, 3, kernel="naive").double()
    u = torch.randn(1, 6, 2, dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: m(v), (u,))


def test_block_and_deep_model_recurrent_equals_convolution():
    torch.manual_seed(0)
    model = layers.DeepLSSL(2, 6, 5, 3, 2).double().eval()
    x = torch.randn(2, 30, 2, dtype=f64)
    torch.testing.assert_close(model(x).detach(), model.forward_recurrent(x), rtol=1e-9, atol=1e-9)
    block = model.blocks[0]
    h = torch.randn(2, 10, 6, dtype=f64)
    state, out = None, []
    for k in range(10):
        y, state = block.step(h[:, k], state)
        out.append(y)
    torch.testing.assert_close(block(h), torch.stack(out, 1))


def test_block_is_post_norm_residual():
    block = layers.LSSLBlock(4, 3).double()
    h = torch.randn(2, 9, 4, dtype=f64)
    ref = torch.nn.functional.layer_norm(h + block.mix(torch.nn.functional.gelu(block.lssl(h))), (4,),
                                         block.norm.weight, block.norm.bias)
    torch.testing.assert_close(block(h), ref)


def test_pattern_memory_task():
    task = layers.PatternMemoryTask(length=40, n_classes=3, pattern=10, noise=0.0)
    x, y = task.sample(300, torch.Generator().manual_seed(0))
    assert x.shape == (300, 40, 1) and y.shape == (300,) and y.dtype == torch.int64
    assert set(y.tolist()) == {0, 1, 2}
    assert (x[:, 20:] == 0).all()                          # after the first quarter: only (zero) noise
    W = task.templates().float()
    for b in range(5):                                     # the pattern of its class, somewhere in the first quarter
        row = x[b, :, 0]
        s = int(torch.nonzero(row).min())
        torch.testing.assert_close(row[s:s + 10], W[y[b]])
    torch.testing.assert_close(task.templates(), layers.PatternMemoryTask(length=40, n_classes=3,
                                                                          pattern=10).templates())
    x2, _ = task.sample(300, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)
    logits = torch.nn.functional.one_hot(y, 3).float()
    assert task.accuracy(logits, y) == 1.0 and task.loss(10 * logits, y) < 1e-3


def test_train_tiny_writes_curve():
    cfg = dict(layers.TINY, steps=6, eval_every=3, eval_size=32, d_model=4, d_state=4)
    res = layers.run(cfg, seed=1)
    assert res["steps_done"] == 6 and len(res["loss"]) == 6 and res["eval_step"] == [3, 6]
    assert all(math.isfinite(v) for v in res["loss"]) and 0 <= res["final_acc"] <= 1
    assert res["benchmark"] == "lssl_pattern" and res["chance_acc"] == 0.25
    json.dumps(res)


def test_tiny_config_learns():
    """The notebook's CPU run: well above chance (seconds)."""
    res = layers.run(layers.TINY, seed=0)
    assert res["final_acc"] > 0.8 and res["final_loss"] < 0.5 * res["chance_loss"]


def test_cli_tiny(tmp_path, monkeypatch):
    monkeypatch.setattr(layers, "TINY", dict(layers.TINY, task={"length": 16, "n_classes": 2, "pattern": 4,
                                                                "noise": 0.5},
                                             steps=2, eval_every=1, eval_size=8, d_model=2, d_state=2))
    layers.main(["--tiny", "--out", str(tmp_path), "--device", "cpu"])
    res = json.loads((tmp_path / "lssl_pattern_tiny.json").read_text())
    assert res["steps_done"] == 2 and res["config"]["steps"] == 2
    with pytest.raises(SystemExit):
        layers.main(["--out", str(tmp_path), "--device", "cpu"])     # the full run needs a GPU


def test_bad_input():
    with pytest.raises(TypeError, match="d_model must be an int"):
        layers.LSSL(2.0, 4)
    with pytest.raises(ValueError, match="d_state must be >= 1"):
        layers.LSSL(2, 0)
    with pytest.raises(ValueError, match="measure must be one of"):
        layers.LSSL(2, 4, measure="fourier")
    with pytest.raises(ValueError, match="dt_min must be <= dt_max"):
        layers.LSSL(2, 4, dt_min=0.1, dt_max=0.01)
    with pytest.raises(ValueError, match="dt_min must be positive"):
        layers.LSSL(2, 4, dt_min=0.0)
    with pytest.raises(ValueError, match="kernel must be"):
        layers.LSSL(2, 4, kernel="recurrence")
    with pytest.raises(TypeError, match="learn_A must be a bool"):
        layers.LSSL(2, 4, learn_A=1)
    m = layers.LSSL(3, 4)
    with pytest.raises(ValueError, match="u must have 3 dims"):
        m(torch.randn(5, 3))
    with pytest.raises(ValueError, match="u must have shape"):
        m(torch.randn(2, 5, 4))
    with pytest.raises(TypeError, match="u has dtype"):
        m(torch.randn(2, 5, 3, dtype=f64))
    with pytest.raises(TypeError, match="u must be a float"):
        m(torch.ones(2, 5, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="x must have shape"):
        m.step(torch.randn(2, 3), torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="dropout must be in"):
        layers.LSSLBlock(3, 4, dropout=1.0)
    model = layers.DeepLSSL(2, 4, 4, 1, 1)
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="pattern must be <= length // 4"):
        layers.PatternMemoryTask(length=40, pattern=11)
    with pytest.raises(ValueError, match="n_classes must be >= 2"):
        layers.PatternMemoryTask(n_classes=1)
    with pytest.raises(ValueError, match="noise must be"):
        layers.PatternMemoryTask(noise=-1.0)
    with pytest.raises(TypeError, match="length must be an int"):
        layers.PatternMemoryTask(length=64.0)
    with pytest.raises(TypeError, match="task must be a PatternMemoryTask"):
        layers.train(model, "pattern", 1)
    with pytest.raises(ValueError, match="lr must be positive"):
        layers.train(model, layers.PatternMemoryTask(64, pattern=16), 1, lr=-1.0)


@pytest.mark.gpu
def test_gpu_layer_trains_and_modes_agree():
    torch.manual_seed(0)
    model = layers.DeepLSSL(1, 16, 16, 2, 8).cuda()
    x = torch.randn(4, 500, 1, device="cuda")
    torch.testing.assert_close(model(x).detach(), model.forward_recurrent(x), rtol=1e-3, atol=1e-3)
    curve = layers.train(model, layers.PatternMemoryTask(512, pattern=64), 20, "cuda", eval_size=64, eval_every=10)
    assert curve["steps_done"] == 20 and all(math.isfinite(v) for v in curve["loss"])

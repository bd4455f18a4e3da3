"""ssd (Triton kernel, autograd) and ssd_step against the three PyTorch forms of SSD.

Ground truth: :func:`ssd_linear_ref`, the recurrence as a loop, in float64.
Tolerances (relative, max-norm): float64 inputs run the kernel in float64 and
must match to 1e-10; float32 inputs (3×TF32 products on a GPU) to 1e-4;
bfloat16 / float16 inputs (16-bit tensor-core operands, float32 accumulation,
16-bit output) to 3e-2 against the float64 reference on the same rounded inputs.
Gradients: 1e-10 in float64 (CPU, interpreter); on the GPU 1e-3 for float32,
5e-2 for bfloat16 and 2e-2 for float16 inputs (twice that for A, D and
dt_bias, whose gradients sum terms of both signs over batch and time).
The CPU tests run the kernel through Triton's interpreter on small shapes with
small tiles (block_t 16 or 32); the ``gpu`` tests use the issue's shapes.
"""
import json

import pytest
import torch

import ssmlib
from ssmlib import duality
from ssmlib.duality import (ssd, ssd_chunked_ref, ssd_linear_ref, ssd_quadratic_ref, ssd_step,
                            ssd_step_ref)

DEV = ssmlib.DEVICE


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def make(batch, L, H, P, G, N, dtype=torch.float64, device=DEV, D="vector"):
    """Random inputs in the regime of a trained Mamba-2 layer: Δ = softplus(dt + bias) ≈ 0.01–0.5."""
    f = torch.float64
    x = torch.randn(batch, L, H, P, dtype=f)
    dt = torch.randn(batch, L, H, dtype=f) * 0.5
    A = -torch.rand(H, dtype=f) * 2 - 0.1
    B = torch.randn(batch, L, G, N, dtype=f) / N**0.5
    C = torch.randn(batch, L, G, N, dtype=f) / N**0.5
    Dv = {"vector": torch.randn(H, dtype=f), "matrix": torch.randn(H, P, dtype=f), None: None}[D]
    z = torch.randn(batch, L, H, P, dtype=f)
    dt_bias = torch.randn(H, dtype=f) * 0.5 - 2
    h0 = torch.randn(batch, H, P, N, dtype=f)
    out = dict(x=x, dt=dt, A=A, B=B, C=C, D=Dv, z=z, dt_bias=dt_bias, initial_states=h0)
    return {k: None if v is None else v.to(dtype=dtype, device=device) for k, v in out.items()}


def call(fn, a, *chunk, **kw):
    return fn(a["x"], a["dt"], a["A"], a["B"], a["C"], *chunk, D=a["D"], z=a["z"], dt_bias=a["dt_bias"],
              initial_states=a["initial_states"], **kw)


def assert_grads_match_linear_form(a, tol, chunk=16, **kw):
    """Every gradient of ``ssd(..., dt_softplus=True, return_final_states=True, **kw)`` (of y and of the
    final state, for random cotangents) against autograd through the linear form, with respect to
    every tensor of ``a`` that is not None; same dtype and shape, relative error below ``tol``."""
    a = {k: None if v is None else v.detach().requires_grad_(True) for k, v in a.items()}
    names = [k for k, v in a.items() if v is not None]
    y, h = call(ssd, a, chunk, dt_softplus=True, return_final_states=True, **kw)
    gy, gh = torch.randn_like(y), torch.randn_like(h)
    got = torch.autograd.grad([y, h], [a[k] for k in names], [gy, gh])
    y_ref, h_ref = call(ssd_linear_ref, a, dt_softplus=True, return_final_states=True)
    want = torch.autograd.grad([y_ref, h_ref], [a[k] for k in names], [gy, gh])
    for k, u, v in zip(names, got, want):
        assert u.dtype == a[k].dtype and u.shape == a[k].shape, (kw, k)
        assert rel_err(u, v) < tol, (kw, k)


# ---------------------------------------------------------------- the three forms agree
@pytest.mark.parametrize("L,Q", [(1, 16), (7, 4), (63, 16), (64, 16), (65, 32), (100, 7)])
@pytest.mark.parametrize("G", [1, 2, 4])
def test_three_forms_agree(L, Q, G):
    a = make(2, L, 4, 3, G, 5, device="cpu", D="matrix")
    kw = dict(dt_softplus=True, return_final_states=True)
    y, h = call(ssd_linear_ref, a, **kw)
    for fn, extra in ((ssd_quadratic_ref, ()), (ssd_chunked_ref, (Q,))):
        yy, hh = call(fn, a, *extra, **kw)
        assert rel_err(yy, y) < 1e-12 and rel_err(hh, h) < 1e-12, fn.__name__


def test_segsum_is_stable():
    """A long run of large decays: segsum's short segments keep every digit."""
    a = torch.full((4096,), -30.0, dtype=torch.float32)
    s = duality.segsum(a)
    assert s[4095, 4094].item() == -30.0 and s[4095, 4095].item() == 0.0
    assert s[0, 1].item() == float("-inf")
    assert torch.equal(s[100, 90:100], -30.0 * torch.arange(10, 0, -1, dtype=torch.float32))


def test_references_without_options():
    a = make(1, 20, 2, 4, 1, 3, device="cpu", D=None)
    y = ssd_linear_ref(a["x"], a["dt"].abs(), a["A"], a["B"], a["C"])
    assert rel_err(ssd_quadratic_ref(a["x"], a["dt"].abs(), a["A"], a["B"], a["C"]), y) < 1e-12
    assert rel_err(ssd_chunked_ref(a["x"], a["dt"].abs(), a["A"], a["B"], a["C"], 8), y) < 1e-12


# ---------------------------------------------------------------- the kernel, float64, interpreter
CASES = [  # (L, block_t, P, N, G, H)
    (1, 16, 16, 16, 1, 2), (7, 16, 16, 32, 2, 2), (63, 16, 32, 16, 1, 3), (64, 16, 16, 16, 3, 3),
    (65, 32, 16, 32, 2, 4), (65, 16, 32, 32, 4, 4), (64, 32, 16, 16, 1, 1), (7, 32, 8, 5, 1, 2),
    (63, 32, 20, 17, 2, 2),
]


@pytest.mark.parametrize("L,T,P,N,G,H", CASES)
def test_kernel_matches_linear_form_float64(L, T, P, N, G, H):
    a = make(2, L, H, P, G, N, D="matrix" if N % 2 else "vector")
    kw = dict(dt_softplus=True, return_final_states=True)
    y_ref, h_ref = call(ssd_linear_ref, a, **kw)
    y, h = call(ssd, a, T, block_t=T, **kw)
    assert y.shape == (2, L, H, P) and y.dtype == torch.float64
    assert h.shape == (2, H, P, N) and h.dtype == torch.float64
    assert rel_err(y, y_ref) < 1e-10 and rel_err(h, h_ref) < 1e-10


@pytest.mark.parametrize("segments,L", [(1, 37), (1, 48), (3, 64)])
def test_prefetched_dt_matches(segments, L):
    """The forward that loads each block's dt one block ahead (prefetch=True) computes the same."""
    a = make(2, L, 3, 16, 1, 16)
    kw = dict(dt_softplus=True, return_final_states=True)
    y_ref, h_ref = call(ssd_linear_ref, a, **kw)
    y, h = call(ssd, a, 16, segments=segments, prefetch=True, **kw)
    assert rel_err(y, y_ref) < 1e-10 and rel_err(h, h_ref) < 1e-10


@pytest.mark.parametrize("segments,L", [(2, 65), (3, 64), (4, 100), (8, 40)])
def test_segments_fold_states(segments, L):
    """Segments (each one's local end state first, then the full pass) equal one pass."""
    a = make(1, L, 2, 16, 1, 16)
    kw = dict(dt_softplus=True, return_final_states=True)
    y_ref, h_ref = call(ssd_linear_ref, a, **kw)
    y, h = call(ssd, a, 16, segments=segments, **kw)
    assert rel_err(y, y_ref) < 1e-10 and rel_err(h, h_ref) < 1e-10
    a["initial_states"] = None
    y_ref = call(ssd_linear_ref, a)
    assert rel_err(call(ssd, a, 16, segments=segments), y_ref) < 1e-10


@pytest.mark.parametrize("segments,L,G,H,P,prep_steps", [(2, 65, 1, 3, 20, 1024), (3, 64, 2, 4, 16, 16),
                                                      (4, 100, 4, 4, 40, 32)])
def test_chained_segments_and_precomputed_cb(segments, L, G, H, P, prep_steps, monkeypatch):
    """Chained segments (one launch; each program waits for the previous segment's end state), C Bᵀ
    precomputed once per group (cb), with Δ and the decays loaded a block ahead or not, equal the
    linear form; so do their gradients. Each program's Δ pass in one tile, or in several (prep_steps:
    one or two blocks a tile, and a last tile cut by the segment's end)."""
    monkeypatch.setattr(duality, "_PREP_STEPS", prep_steps)
    a = make(2, L, H, P, G, 16, D="matrix")
    kw = dict(dt_softplus=True, return_final_states=True)
    y_ref, h_ref = call(ssd_linear_ref, a, **kw)
    for chained, cb in ((False, False), (True, False), (True, True), (False, True)):
        for pf in (False, True):
            y, h = call(ssd, a, 16, segments=segments, chained=chained, cb=cb, prefetch=pf, block_p=16, **kw)
            assert rel_err(y, y_ref) < 1e-10 and rel_err(h, h_ref) < 1e-10
    assert_grads_match_linear_form(a, 1e-10, segments=segments, chained=True, cb=True, block_p=16)


@pytest.mark.parametrize("L", [16, 37, 100])
@pytest.mark.parametrize("segments,bc", [(1, "per_head"), (2, "atomic"), (3, "per_head")])
def test_backward_segments_and_dB_dC_buffers(L, segments, bc):
    """The backward in segments, with dB and dC summed by atomics or per-head buffers: every
    gradient equals autograd through the linear form, in float64."""
    assert_grads_match_linear_form(make(2, L, 4, 20, 2, 16, D="matrix"), 1e-9, bwd_segments=segments, bwd_bc=bc)


@pytest.mark.parametrize("block_p", [16, 32])
def test_backward_per_head_dB_dC(block_p):
    """dB and dC through per-head buffers summed over each group (plain stores with one P-block
    per head, atomics between P-blocks otherwise) equal the shared atomics and the reference."""
    a = make(2, 37, 4, 20, 2, 16)
    for bc in ("atomic", "per_head"):
        assert_grads_match_linear_form(a, 1e-9, bwd_bc=bc, bwd_block_p=block_p)


def test_optional_arguments_off():
    """No D, z, bias, initial state; no softplus (dt used as given, positive)."""
    a = make(2, 33, 2, 16, 1, 16)
    args = (a["x"], a["dt"].abs().contiguous(), a["A"], a["B"], a["C"])
    y_ref, h_ref = ssd_linear_ref(*args, return_final_states=True)
    y, h = ssd(*args, 16, return_final_states=True)
    assert rel_err(y, y_ref) < 1e-10 and rel_err(h, h_ref) < 1e-10
    assert rel_err(ssd(*args, 16), y_ref) < 1e-10


def test_final_state_continues_the_sequence():
    a = make(1, 40, 2, 16, 1, 16)
    kw = dict(dt_softplus=True, return_final_states=True)
    y, h = call(ssd, a, 16, **kw)
    first = {k: (v[:, :17].contiguous() if k in ("x", "dt", "B", "C", "z") else v) for k, v in a.items()}
    second = {k: (v[:, 17:].contiguous() if k in ("x", "dt", "B", "C", "z") else v) for k, v in a.items()}
    y1, h1 = call(ssd, first, 16, **kw)
    second["initial_states"] = h1
    y2, h2 = call(ssd, second, 16, **kw)
    assert rel_err(torch.cat([y1, y2], 1), y) < 1e-12 and rel_err(h2, h) < 1e-12


def test_empty_sequence_returns_initial_state():
    a = make(2, 0, 2, 16, 1, 16)
    y, h = call(ssd, a, 16, return_final_states=True)
    assert y.shape == (2, 0, 2, 16) and torch.equal(h, a["initial_states"])


def test_float32_and_bfloat16_inputs():
    a = make(2, 50, 2, 16, 1, 16)
    y_ref = call(ssd_linear_ref, a, dt_softplus=True)
    a32 = {k: None if v is None else v.float() for k, v in a.items()}
    y32, h32 = call(ssd, a32, 16, dt_softplus=True, return_final_states=True)
    assert y32.dtype == torch.float32 and h32.dtype == torch.float32
    assert rel_err(y32, y_ref) < 1e-4
    a16 = {k: None if v is None else (v.bfloat16() if k in ("x", "B", "C", "z") else v.float())
           for k, v in a.items()}
    y16 = call(ssd, a16, 16, dt_softplus=True)
    y16_ref = call(ssd_linear_ref, {k: None if v is None else v.double() for k, v in a16.items()},
                   dt_softplus=True)
    assert y16.dtype == torch.bfloat16
    assert rel_err(y16, y16_ref) < 3e-2


def test_kernel_writes_every_output():
    a = make(2, 37, 3, 20, 1, 16, dtype=torch.float32)
    y_ref, h_ref = call(ssd_linear_ref, a, return_final_states=True)
    real_empty, real_empty_like = torch.empty, torch.empty_like
    try:
        torch.empty = lambda *s, **k: real_empty(*s, **k).fill_(float("nan"))
        torch.empty_like = lambda *s, **k: real_empty_like(*s, **k).fill_(float("nan"))
        y, h = call(ssd, a, 16, return_final_states=True, segments=2)
    finally:
        torch.empty, torch.empty_like = real_empty, real_empty_like
    assert torch.isfinite(y).all() and torch.isfinite(h).all()
    assert rel_err(y, y_ref) < 1e-4 and rel_err(h, h_ref) < 1e-4


def test_default_launch_config_on_the_h200(monkeypatch):
    """Segments only where the grid would leave the GPU idle."""
    monkeypatch.setattr(duality.runtime, "INTERPRET", False)
    monkeypatch.setattr(duality.runtime, "sm_count", lambda device: {"h200": 132, "small": 16}[device])
    big = duality._launch_config(8, 80, 64, 128, 4096, 1, torch.bfloat16, "h200")
    assert (big["block_t"], big["block_p"], big["num_warps"]) == (32, 64, 4)
    # 640 programs, 2.4 waves of two an SM: two chained segments, C Bᵀ once per group
    # (book/results/logs/ssd_fwd_chained_cb_session7.json)
    assert big["segments"] == 2 and big["chained"] and big["cb"]
    small = duality._launch_config(1, 32, 64, 64, 16384, 1, torch.bfloat16, "h200")
    assert small["segments"] * 32 * 64 // small["block_p"] >= 2 * 132
    assert small["bwd_segments"] * 32 * 64 // small["bwd_block_p"] >= 2 * 132
    assert big["bwd_segments"] == 1
    # a GPU with fewer multiprocessors needs fewer segments to fill it
    assert duality._launch_config(1, 32, 64, 64, 16384, 1, torch.bfloat16, "small")["segments"] < small["segments"]
    # the H200 sweep's fastest accurate configurations (book/results/ssd_sweep.json)
    assert (small["block_t"], small["block_p"], small["num_warps"], small["num_stages"], small["segments"]) \
        == (32, 64, 4, 3, 16)
    # dt a block ahead and three stages: faster at every shape timed (book/results/logs/defaults_grid_session5.json)
    assert big["prefetch"] and small["prefetch"] and big["num_stages"] == 3
    assert not duality._launch_config(8, 80, 64, 256, 4096, 1, torch.bfloat16, "h200")["prefetch"]
    assert not duality._launch_config(8, 80, 64, 128, 4096, 1, torch.float32, "h200")["prefetch"]
    assert (big["bwd_bc"], small["bwd_bc"]) == ("atomic", "per_head")
    # a short forward: no C Bᵀ launch (slower at batch 1, L 16K: logs/s12call2_session8.json);
    # too few programs to chain (each segment would wait for the one before): two passes
    assert not small["chained"] and not small["cb"]
    assert not duality._launch_config(8, 80, 64, 128, 4096, 80, torch.bfloat16, "h200")["cb"]   # G = H
    for cfg in (big, small):      # within the steps per warp that compiled correctly on the H200
        assert cfg["block_t"] <= duality.MAX_STEPS_PER_WARP * min(cfg["num_warps"], cfg["bwd_num_warps"])


def test_too_many_steps_per_warp_is_refused(monkeypatch):
    """block_t 64 on 4 warps computed wrong answers on the H200: refused before any launch."""
    monkeypatch.setattr(duality.runtime, "INTERPRET", False)
    monkeypatch.setattr(duality.runtime, "sm_count", lambda device: 132)     # as on the H200
    with pytest.raises(ValueError, match="block_t=64 with num_warps=4"):
        call(ssd, _good(), 16, block_t=64, num_warps=4)
    grad = {k: (v.requires_grad_(True) if k == "x" else v) for k, v in _good().items()}
    with pytest.raises(ValueError, match="bwd_block_t=32 with bwd_num_warps=2"):
        call(ssd, grad, 16, block_t=32, num_warps=8, bwd_num_warps=2)
    with pytest.raises(ValueError, match="bwd_block_t=32 with num_warps=2"):   # the forward saving states
        call(ssd, grad, 16, block_t=32, num_warps=2, bwd_num_warps=8)
    with torch.no_grad():      # no backward: only the forward's tile counts
        with pytest.raises(ValueError, match="block_t=64 with num_warps=4"):
            call(ssd, grad, 16, block_t=64, num_warps=4, bwd_num_warps=8)


# ---------------------------------------------------------------- gradients
def test_gradients_match_the_linear_form():
    assert_grads_match_linear_form(make(1, 21, 2, 16, 1, 16, D="matrix"), 1e-9, chunk=8)


GRAD_CASES = [  # (L, H, P, G, N, D, with_z, segments (forward, backward), block_p)
    (21, 2, 16, 1, 16, "matrix", True, (1, 1), 16), (37, 4, 40, 2, 20, "vector", False, (2, 2), 16),
    (5, 3, 16, 3, 16, None, True, (1, 1), 16), (64, 2, 16, 1, 32, "vector", True, (3, 4), 16),
    (33, 2, 20, 2, 16, "matrix", True, (1, 3), 32), (50, 2, 16, 1, 16, "vector", False, (1, 2), 16),
]


@pytest.mark.parametrize("L,H,P,G,N,D,with_z,segments,block_p", GRAD_CASES)
@pytest.mark.parametrize("backward", ["triton", "reference"])
def test_backward_kernel_every_argument(L, H, P, G, N, D, with_z, segments, block_p, backward):
    """The Triton backward (reverse walk over blocks, states saved by the forward) and the
    reference backward, against autograd through the loop, for every tensor argument."""
    a = make(2, L, H, P, G, N, D=D)
    if not with_z:
        a["z"] = None
    assert_grads_match_linear_form(a, 1e-10, segments=segments[0], block_p=block_p, backward=backward,
                                   bwd_segments=segments[1], bwd_block_p=block_p)


def test_backward_final_state_unused_and_no_softplus():
    a = make(1, 30, 2, 16, 1, 16)
    a["dt"] = a["dt"].abs()
    for k in ("x", "dt", "B", "initial_states"):
        a[k].requires_grad_(True)
    y, _ = call(ssd, a, 16, return_final_states=True)
    g = torch.autograd.grad(y.sum(), [a[k] for k in ("x", "dt", "B", "initial_states")])
    g_ref = torch.autograd.grad(call(ssd_linear_ref, a).sum(), [a[k] for k in ("x", "dt", "B", "initial_states")])
    for u, v in zip(g, g_ref):
        assert rel_err(u, v) < 1e-10


def test_backward_float16_inputs():
    """16-bit product operands in the backward too: a few parts in a thousand."""
    a = make(1, 40, 2, 16, 1, 16)
    lo = {k: None if v is None else (v.half() if k in ("x", "B", "C", "z") else v.float()) for k, v in a.items()}
    hi = {k: None if v is None else v.double() for k, v in lo.items()}
    for d in (lo, hi):
        for k in ("x", "dt", "B", "C"):
            d[k].requires_grad_(True)
    y = call(ssd, lo, 16, dt_softplus=True)
    gy = torch.randn_like(y, dtype=torch.float32).to(y.dtype)
    g = torch.autograd.grad(y, [lo[k] for k in ("x", "dt", "B", "C")], gy)
    g_ref = torch.autograd.grad(call(ssd_linear_ref, hi, dt_softplus=True), [hi[k] for k in ("x", "dt", "B", "C")],
                                gy.double())
    for u, v in zip(g, g_ref):
        assert rel_err(u, v) < 2e-2


def test_states_saved_only_when_a_gradient_can_be_asked_for(monkeypatch):
    saved = []
    real = duality._forward

    def spy(*args, save_states=False, **kw):
        saved.append(save_states)
        return real(*args, save_states=save_states, **kw)
    monkeypatch.setattr(duality, "_forward", spy)
    a = make(1, 20, 2, 16, 1, 16)
    call(ssd, a, 16)
    a["x"].requires_grad_(True)
    with torch.no_grad():
        call(ssd, a, 16)
    call(ssd, a, 16)
    assert saved == [False, False, True]


def test_gradcheck_tiny():
    a = make(1, 5, 2, 16, 2, 16, D="vector")
    names = ["x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states"]
    inputs = [a[k].requires_grad_(True) for k in names]

    def f(*ts):
        d = dict(zip(names, ts))
        return call(ssd, d, 4, dt_softplus=True, return_final_states=True)

    assert torch.autograd.gradcheck(f, inputs, fast_mode=True)


def test_gradient_of_y_only():
    a = make(1, 9, 2, 16, 1, 16)
    a["x"].requires_grad_(True)
    y = call(ssd, a, 4)
    (gx,) = torch.autograd.grad(y.sum(), a["x"])
    (gx_ref,) = torch.autograd.grad(call(ssd_linear_ref, a).sum(), a["x"])
    assert rel_err(gx, gx_ref) < 1e-10


# ---------------------------------------------------------------- decoding step
@pytest.mark.parametrize("G,D,with_z", [(1, "vector", True), (2, "matrix", False), (4, None, True)])
def test_step_matches_reference_and_updates_in_place(G, D, with_z):
    a = make(3, 1, 4, 20, G, 16, D=D)
    state = a["initial_states"].clone()
    x, dt, B, C = a["x"][:, 0], a["dt"][:, 0], a["B"][:, 0], a["C"][:, 0]
    z = a["z"][:, 0] if with_z else None
    y_ref, h_ref = ssd_step_ref(state, x, dt, a["A"], B, C, a["D"], z, a["dt_bias"], True)
    y = ssd_step(state, x, dt, a["A"], B, C, a["D"], z, a["dt_bias"], True)
    assert rel_err(y, y_ref) < 1e-12 and rel_err(state, h_ref) < 1e-12


def test_steps_continue_ssd():
    """Decoding after a prompt: ssd's final state, then ssd_step, equals ssd on the whole sequence."""
    a = make(2, 12, 2, 16, 1, 16)
    kw = dict(dt_softplus=True, return_final_states=True)
    y_all = call(ssd, a, 16, dt_softplus=True)
    prompt = {k: (v[:, :10].contiguous() if k in ("x", "dt", "B", "C", "z") else v) for k, v in a.items()}
    _, state = call(ssd, prompt, 16, **kw)
    for t in (10, 11):
        at = {k: a[k][:, t].contiguous() for k in ("x", "dt", "B", "C", "z")}
        y = ssd_step(state, at["x"], at["dt"], a["A"], at["B"], at["C"], a["D"], at["z"], a["dt_bias"], True)
        assert rel_err(y, y_all[:, t]) < 1e-12


# ---------------------------------------------------------------- bad input
def _good():
    return make(2, 8, 4, 16, 2, 16, dtype=torch.float32)


@pytest.mark.parametrize("name,bad,exc,match", [
    ("x", lambda g: g["x"][0], ValueError, "x must have 4 dims"),
    ("x", lambda g: g["x"].int(), TypeError, "x has dtype"),
    ("x", lambda g: g["x"].numpy() if DEV == "cpu" else g["x"].cpu().numpy(), TypeError, "x must be a torch.Tensor"),
    ("dt", lambda g: g["dt"][:, :3], ValueError, "dt must have shape"),
    ("A", lambda g: g["A"][:3], ValueError, "A must have shape"),
    ("B", lambda g: g["B"].double(), TypeError, "B has dtype"),
    ("B", lambda g: g["B"][:, :, :1].expand(2, 8, 3, 16).contiguous(), ValueError, "multiple of G"),
    ("C", lambda g: g["C"][..., :8], ValueError, "C must have shape"),
    ("D", lambda g: g["D"][:3], ValueError, r"D must have shape \(4,\) or \(4, 16\)"),
    ("z", lambda g: g["z"][:, :, :2], ValueError, "z must have shape"),
    ("dt_bias", lambda g: g["dt_bias"][None], ValueError, "dt_bias must have 1 dims"),
    ("initial_states", lambda g: g["initial_states"][..., :4], ValueError, "initial_states must have shape"),
    ("x", lambda g: g["x"].transpose(1, 2).contiguous().transpose(1, 2), ValueError, "x must be contiguous"),
    ("B", lambda g: torch.zeros(2, 8, 2, 300, device=DEV), ValueError, "N <= 256"),
])
def test_bad_input_names_the_argument(name, bad, exc, match):
    g = _good()
    g[name] = bad(g)
    with pytest.raises(exc, match=match):
        call(ssd, g, 16)


@pytest.mark.parametrize("kw,exc,match", [
    (dict(block_t=24), ValueError, "block_t"), (dict(block_p=8), ValueError, "block_p"),
    (dict(segments=0), ValueError, "segments"), (dict(num_warps=1.5), TypeError, "num_warps"),
    (dict(backward="torch"), ValueError, "backward"), (dict(bwd_bc="shared"), ValueError, "bwd_bc"),
    (dict(bwd_segments=-1), ValueError, "bwd_segments"),
])
def test_bad_launch_overrides(kw, exc, match):
    with pytest.raises(exc, match=match):
        call(ssd, _good(), 16, **kw)


@pytest.mark.parametrize("chunk,exc", [(0, ValueError), (16.0, TypeError)])
def test_bad_chunk_size(chunk, exc):
    with pytest.raises(exc, match="chunk_size"):
        call(ssd, _good(), chunk)


def test_wrong_device():
    other = "cuda" if DEV == "cpu" else "cpu"
    if other == "cuda" and not torch.cuda.is_available():
        other = "meta"
    g = _good()
    g["x"] = g["x"].to(other)
    with pytest.raises(ValueError, match="x is on"):
        call(ssd, g, 16)


def test_step_bad_input():
    g = _good()
    state = g["initial_states"]
    with pytest.raises(ValueError, match="dt must have shape"):
        ssd_step(state, g["x"][:, 0], g["dt"][:, 0, :2], g["A"], g["B"][:, 0], g["C"][:, 0])
    with pytest.raises(ValueError, match="state must have shape"):
        ssd_step(state[:1], g["x"][:, 0], g["dt"][:, 0], g["A"], g["B"][:, 0], g["C"][:, 0])


# ---------------------------------------------------------------- GPU (the issue's matrix)
GPU_TOL = {torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 1e-2}


@pytest.mark.gpu
@pytest.mark.parametrize("L", [1, 63, 64, 1000, 4096])
@pytest.mark.parametrize("P", [32, 64])
@pytest.mark.parametrize("N", [16, 64, 128])
@pytest.mark.parametrize("G", [1, 2, "H"])
def test_gpu_matches_linear_form(L, P, N, G):
    H = 4
    G = H if G == "H" else G
    a = make(2, L, H, P, G, N, D="matrix" if N == 64 else "vector")
    kw = dict(dt_softplus=True, return_final_states=True)
    y_ref, h_ref = call(ssd_quadratic_ref if L <= 1000 else ssd_chunked_ref, a, *(() if L <= 1000 else (64,)),
                        **kw)
    for Q in (64, 256):
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            lo = {k: None if v is None else v.to(dtype if k in ("x", "B", "C", "z") else torch.float32)
                  for k, v in a.items()}
            ref = call(ssd_chunked_ref, {k: None if v is None else v.double() for k, v in lo.items()}, Q, **kw)
            y, h = call(ssd, lo, Q, **kw)
            assert rel_err(y, ref[0]) < GPU_TOL[dtype], (Q, dtype)
            assert rel_err(h, ref[1]) < GPU_TOL[dtype], (Q, dtype)
        y64, h64 = call(ssd, a, Q, **kw)
        assert rel_err(y64, y_ref) < 1e-10 and rel_err(h64, h_ref) < 1e-10


@pytest.mark.gpu
@pytest.mark.parametrize("D,z,bias,softplus,h0,final", [
    (None, False, False, False, False, False), ("vector", True, True, True, True, True),
    ("matrix", False, True, True, False, True), (None, True, False, True, True, False),
    ("vector", False, False, False, True, True), ("matrix", True, True, False, False, False)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_options(D, z, bias, softplus, h0, final, dtype):
    """With and without D (both shapes), z, dt_bias, softplus, initial and final states."""
    a = make(3, 777, 6, 64, 2, 64, dtype=torch.float32, D=D)
    if not softplus:   # Δ = dt + dt_bias used as given: keep it positive
        a["dt"] = torch.nn.functional.softplus(a["dt"] - 2)
        a["dt_bias"] = a["dt_bias"].abs() * 0.1
    for k, on in (("z", z), ("dt_bias", bias), ("initial_states", h0)):
        if not on:
            a[k] = None
    lo = {k: None if v is None else (v.to(dtype) if k in ("x", "B", "C", "z") else v) for k, v in a.items()}
    kw = dict(dt_softplus=softplus, return_final_states=final)
    ref = call(ssd_chunked_ref, {k: None if v is None else v.double() for k, v in lo.items()}, 64, **kw)
    out = call(ssd, lo, 256, **kw)
    for o, r in zip(out if final else (out,), ref if final else (ref,)):
        assert rel_err(o, r) < GPU_TOL[dtype]


@pytest.mark.gpu
def test_gpu_every_launch_config():
    """Every configuration the sweep may pick (bfloat16), and a few float32 ones."""
    from ssmlib.bench.duality import SWEEP_TILES
    a = make(2, 1031, 8, 64, 2, 128, dtype=torch.float32)
    lo = {k: None if v is None else (v.bfloat16() if k in ("x", "B", "C", "z") else v) for k, v in a.items()}
    ref = call(ssd_chunked_ref, {k: None if v is None else v.double() for k, v in lo.items()}, 64,
               dt_softplus=True, return_final_states=True)
    errs = {}
    first = ((1, True, False, False), (4, True, False, False), (2, True, True, True), (3, True, True, False),
             (1, True, False, True), (4, True, False, True))  # (segments, prefetch, chained, cb)
    for T, BP, nw, ns, reg in SWEEP_TILES:
        # Δ and cs prefetched a block ahead, chained segments, C Bᵀ precomputed: with the default tile (the first)
        for S, pf, ch, cb in ((1, False, False, False), (4, False, False, False)) + (
                first if (T, BP, nw, ns, reg) == SWEEP_TILES[0] else ()):
            cfg = dict(block_t=T, block_p=BP, num_warps=nw, num_stages=ns, maxnreg=reg, segments=S, prefetch=pf,
                       chained=ch, cb=cb)
            y, h = call(ssd, lo, 64, dt_softplus=True, return_final_states=True, **cfg)
            errs[str(cfg)] = (rel_err(y, ref[0]), rel_err(h, ref[1]))
    print("\n".join(f"{k}: {e[0]:.2e} {e[1]:.2e}" for k, e in errs.items()))
    bad = {k: e for k, e in errs.items() if max(e) >= GPU_TOL[torch.bfloat16]}
    assert not bad, bad
    ref = call(ssd_chunked_ref, {k: None if v is None else v.double() for k, v in a.items()}, 64,
               dt_softplus=True, return_final_states=True)
    for cfg in (dict(block_t=32, block_p=16), dict(block_t=32, block_p=64, segments=4), dict(num_warps=4)):
        y, h = call(ssd, a, 64, dt_softplus=True, return_final_states=True, **cfg)
        assert rel_err(y, ref[0]) < GPU_TOL[torch.float32] and rel_err(h, ref[1]) < GPU_TOL[torch.float32], cfg


@pytest.mark.gpu
@pytest.mark.parametrize("batch,L,H,P,N", [(8, 4096, 80, 64, 128), (1, 16384, 32, 64, 64)])
def test_gpu_issue_shapes_bf16(batch, L, H, P, N):
    a = make(batch, L, H, P, 1, N, dtype=torch.float32)
    lo = {k: None if v is None else (v.bfloat16() if k in ("x", "B", "C", "z") else v) for k, v in a.items()}
    y = call(ssd, lo, 256, dt_softplus=True)
    ref = call(ssd_chunked_ref, lo, 256, dt_softplus=True)       # float32 PyTorch on the same inputs
    assert rel_err(y, ref) < 3e-2


@pytest.mark.gpu
def test_gpu_gradients():
    a = make(2, 300, 4, 32, 2, 16, dtype=torch.float32)
    names = ["x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states"]
    for k in names:
        a[k].requires_grad_(True)
    y = call(ssd, a, 64, dt_softplus=True)
    gy = torch.randn_like(y)
    g = torch.autograd.grad(y, [a[k] for k in names], gy)
    ad = {k: a[k].detach().double().requires_grad_(True) for k in names}
    g_ref = torch.autograd.grad(call(ssd_chunked_ref, ad, 64, dt_softplus=True), [ad[k] for k in names], gy.double())
    for k, u, v in zip(names, g, g_ref):
        assert rel_err(u, v) < GRAD_TOL[torch.float32], k


GRAD_TOL = {torch.float32: 1e-3, torch.bfloat16: 5e-2, torch.float16: 2e-2}
#: A, D and dt_bias sum a gradient over batch and time (terms of both signs): looser for 16-bit inputs.
REDUCED = ("A", "D", "dt_bias")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("G,N", [(1, 128), (2, 64)])
def test_gpu_gradients_16bit(dtype, G, N):
    a = make(2, 1000, 8, 64, G, N, dtype=torch.float32)
    lo = {k: None if v is None else (v.to(dtype) if k in ("x", "B", "C", "z") else v) for k, v in a.items()}
    names = ["x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states"]
    for k in names:
        lo[k].requires_grad_(True)
    y, h = call(ssd, lo, 256, dt_softplus=True, return_final_states=True)
    gy, gh = torch.randn_like(y), torch.randn_like(h)
    g = torch.autograd.grad([y, h], [lo[k] for k in names], [gy, gh])
    hi = {k: lo[k].detach().double().requires_grad_(True) for k in names}
    y2, h2 = call(ssd_chunked_ref, hi, 64, dt_softplus=True, return_final_states=True)
    g_ref = torch.autograd.grad([y2, h2], [hi[k] for k in names], [gy.double(), gh.double()])
    for k, u, v in zip(names, g, g_ref):
        assert rel_err(u, v) < GRAD_TOL[dtype] * (2 if k in REDUCED else 1), k


@pytest.mark.gpu
def test_gpu_every_backward_config():
    """Every backward configuration the sweep may pick, bfloat16, with and without segments."""
    from ssmlib.bench.duality import SWEEP_BWD_TILES
    a = make(2, 1000, 4, 64, 2, 128, dtype=torch.float32)
    lo = {k: None if v is None else (v.bfloat16() if k in ("x", "B", "C", "z") else v) for k, v in a.items()}
    names = ["x", "dt", "B", "C", "z", "initial_states"]
    for k in names:
        lo[k].requires_grad_(True)
    hi = {k: None if v is None else v.detach().double().requires_grad_(k in names) for k, v in lo.items()}
    y_ref = call(ssd_chunked_ref, hi, 64, dt_softplus=True)
    gy = torch.randn_like(y_ref)
    g_ref = torch.autograd.grad(y_ref, [hi[k] for k in names], gy)
    for T, BP, nw in SWEEP_BWD_TILES:
        for S, bc in ((1, "atomic"), (4, "atomic"), (1, "per_head"), (4, "per_head")):
            cfg = dict(block_t=T, bwd_block_p=BP, bwd_num_warps=nw, bwd_segments=S, bwd_bc=bc)
            y = call(ssd, lo, 64, dt_softplus=True, **cfg)
            g = torch.autograd.grad(y, [lo[k] for k in names], gy.to(y.dtype))
            for k, u, v in zip(names, g, g_ref):
                assert rel_err(u, v) < GRAD_TOL[torch.bfloat16], (k, cfg)


@pytest.mark.gpu
def test_gpu_step():
    a = make(4, 1, 80, 64, 1, 128, dtype=torch.float32)
    state = a["initial_states"].clone()
    args = (a["x"][:, 0], a["dt"][:, 0], a["A"], a["B"][:, 0], a["C"][:, 0], a["D"], a["z"][:, 0], a["dt_bias"], True)
    y_ref, h_ref = ssd_step_ref(state, *args)
    y = ssd_step(state, *args)
    assert rel_err(y, y_ref) < 1e-5 and rel_err(state, h_ref) < 1e-5


# ---------------------------------------------------------------- the benchmark, dry run
def test_bench_dry_run_on_cpu(monkeypatch, tmp_path):
    """The GPU benchmark's code paths on tiny shapes through the interpreter (timings meaningless)."""
    import time

    from ssmlib.bench import duality as bench

    def once(fn, **_):
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3

    monkeypatch.setattr(bench, "DEVICE", DEV)
    monkeypatch.setattr(bench, "median_ms", once)
    monkeypatch.setenv("SSD_MAMBA_SRC", "/nonexistent")
    ceil = {"copy_GBps": 4000.0, "fp32_TFLOPs": 50.0, "bf16_TFLOPs": 700.0}
    tiny = [dict(batch=1, L=40, H=2, P=16, N=16, G=1, chunk=16)]
    res = bench.ssd_benchmark(ceil, shapes=tiny)
    assert {(r["impl"], r["pass"]) for r in res["rows"]} >= {("ssmlib", "fwd"), ("ssmlib", "fwd+bwd"),
                                                             ("roofline", "fwd")}
    assert res["baselines"]["mamba_ssm"].startswith("not available")
    assert all(r["date"] == res["rows"][0]["date"] for r in res["rows"])     # each row says when it was measured
    # one shape at a time: the other shapes' rows of an earlier result are kept (with their dates),
    # this shape's replaced, and the file is written after every shape
    other = {"impl": "fla", "batch": 9, "L": 99, "pass": "fwd", "median_ms": 1.0}
    prev = dict(res, rows=res["rows"] + [other])
    again = bench.ssd_benchmark(ceil, shapes=tiny, backward=False, previous=prev, save_to=tmp_path)
    assert other in again["rows"]
    assert sum(r["impl"] == "ssmlib" and r["pass"] == "fwd" for r in again["rows"] if r is not other) == 1
    assert json.loads((tmp_path / "ssd.json").read_text())["rows"] == again["rows"]
    # an earlier run's failure note of a pass measured now is dropped
    stale = dict(res, baselines={**res["baselines"], "ssmlib fwd+bwd": "failed: earlier"})
    assert "ssmlib fwd+bwd" not in bench.ssd_benchmark(ceil, shapes=tiny, previous=stale)["baselines"]
    att = bench.attention_crossover(ceil, Ls=(16, 32), heads=2, dim=16, N=16, tokens=32)
    assert {r["impl"] for r in att["rows"]} >= {"sdpa_flash", "ssmlib"} and "ssmlib" in att["summary"]
    progress = tmp_path / "sweep.jsonl"
    crashed = json.dumps([tiny[0], "fwd", {"block_t": 99}])       # as if it had killed an earlier run
    progress.write_text(json.dumps({"start": crashed}) + "\n")
    grid = dict(segments=(1, 2), tiles=[(16, 16, 1, 1, None)], bwd_tiles=[(16, 16, 1)])
    sw = bench.ssd_sweep(ceil, shapes=tiny, progress=progress, **grid)
    assert all("median_ms" in r and r["accurate"] and r["rel_err"] < 1e-2 for r in sw["rows"]), sw["rows"]
    assert len(sw["best"]) == 2 and [e["config"] for e in sw["errors"]] == [crashed]
    again = bench.ssd_sweep(ceil, shapes=tiny, progress=progress, **grid)     # resumes: nothing left to run
    assert again["rows"] == sw["rows"]
    # a CUDA error poisons the context: the sweep records it and stops; the next run resumes after it
    real_ssd, calls = bench.ssd, []

    def poisoned(*a, **k):
        calls.append(k)
        if k.get("block_p") == 32:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real_ssd(*a, **k)
    monkeypatch.setattr(bench, "ssd", poisoned)
    grid2 = dict(grid, tiles=[(16, 32, 1, 1, None), (16, 16, 1, 1, None)], segments=(1,))
    fresh = tmp_path / "sweep2.jsonl"
    with pytest.raises(RuntimeError, match="illegal memory access"):
        bench.ssd_sweep(ceil, shapes=tiny, progress=fresh, **grid2)
    resumed = bench.ssd_sweep(ceil, shapes=tiny, progress=fresh, **grid2)
    assert [e["block_p"] for e in resumed["errors"]] == [32]
    assert any(r.get("block_p") == 16 for r in resumed["rows"])
    step = bench.step_benchmark(ceil, batch=2, H=2, P=16, N=16)
    assert step["median_ms"] > 0 and step["date"]


def test_bench_each_baseline_calls_its_own_function():
    """Each implementation's closure calls its own function (a shared name once made the mamba_ssm
    row call fla's)."""
    from ssmlib.bench import duality as bench
    seen = []
    fns = {"mamba_ssm": lambda *a, **k: seen.append("mamba_ssm"), "fla": lambda **k: (seen.append("fla"),)}
    calls = bench._callers(bench._inputs(1, 8, 2, 16, 16, 1, device="cpu"), 8, fns)
    calls["mamba_ssm"]()
    calls["fla"]()
    assert seen == ["mamba_ssm", "fla"]


def test_kernels_compile_for_sm90():
    """The interpreter misses what only the compiler checks (it ran tl.exp on a bfloat16 placeholder
    that the H200 build rejected): compile the forward and backward kernels for sm_90a, 16-bit and
    float32 inputs, with the unused pointers typed as in a one-segment call, in a subprocess."""
    from ssmlib.bench.duality import compile_report

    recs = compile_report(configs=[("bf16", 32, 32, 64, 4, 1), ("fp32", 32, 32, 64, 4, 1)],
                          bwd_configs=[("bf16", 32, 32, 64, 4, 1)])
    errors = [r for r in recs if "error" in r]
    assert not errors, errors
    assert all(r["registers"] for r in recs)
    # the SASS of each block loop: its products on the tensor cores, and its barriers counted
    blocks = [r for r in recs if r["kernel"] in ("fwd", "bwd")]
    assert blocks and all(r["loop_mma"] > 0 and r["loop_bar"] > 0 and r["loop_sass"] > r["loop_mma"] for r in blocks)

"""linear_recurrence (Triton kernels: step and chunked) against linear_recurrence_ref (PyTorch loop).

Tolerances: float64 inputs run the kernel in float64 and must match the
float64 reference to 1e-10 (relative, max-norm); float32 to 1e-5; bfloat16
inputs (float32 arithmetic, bf16 rounding of inputs and outputs) to 2e-2.
The chunked kernel's float32 products are 3×TF32 on a GPU (about 22 correct
bits per product instead of 24): 1e-5 relative there too. Gradients (recomputed
through linear_recurrence_chunked_ref) against autograd through the loop:
1e-10 in float64, 1e-4 for float32 inputs.
Systems are random with spectral norm 0.95 so that the state neither dies
nor explodes over long sequences.
"""
import pytest
import torch

import ssmlib
from ssmlib.recurrence import MAX_N

DEV = ssmlib.DEVICE


def random_system(H, N, dtype=torch.float64, device=DEV):
    A = torch.randn(H, N, N, dtype=torch.float64)
    A = 0.95 * A / torch.linalg.matrix_norm(A, ord=2)[:, None, None]
    B = torch.randn(H, N, dtype=torch.float64)
    C = torch.randn(H, N, dtype=torch.float64)
    D = torch.randn(H, dtype=torch.float64)
    return [t.to(dtype=dtype, device=device) for t in (A, B, C, D)]


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize("N", [1, 2, 3, 17, 64])
@pytest.mark.parametrize("L", [1, 7, 1000])
def test_matches_reference_float64(N, L):
    batch, H = 2, 3
    A, B, C, D = random_system(H, N)
    u = torch.randn(batch, H, L, dtype=torch.float64, device=DEV)
    x0 = torch.randn(batch, H, N, dtype=torch.float64, device=DEV)
    y, xT = ssmlib.linear_recurrence(A, B, C, u, D, x0, return_final_state=True)
    y_ref, xT_ref = ssmlib.linear_recurrence_ref(A, B, C, u, D, x0, return_final_state=True)
    assert y.shape == (batch, H, L) and xT.shape == (batch, H, N)
    assert rel_err(y, y_ref) < 1e-10
    assert rel_err(xT, xT_ref) < 1e-10


@pytest.mark.parametrize("batch,H,N,L", [(1, 1, 2, 1), (3, 5, 4, 33), (2, 67, 16, 130), (5, 9, 3, 64)])
def test_float32_odd_sizes(batch, H, N, L):
    """More sequences than one program holds, sizes that are not powers of two."""
    A, B, C, D = random_system(H, N)
    u = torch.randn(batch, H, L, dtype=torch.float64, device=DEV)
    y_ref = ssmlib.linear_recurrence_ref(A, B, C, u, D)
    y = ssmlib.linear_recurrence(*(t.float() for t in (A, B, C)), u.float(), D.float())
    assert y.dtype == torch.float32
    assert rel_err(y, y_ref) < 1e-5


def test_bfloat16_inputs_accumulate_in_float32():
    A, B, C, D = random_system(4, 8)
    u = torch.randn(2, 4, 200, dtype=torch.float64, device=DEV)
    args16 = [t.bfloat16() for t in (A, B, C, u, D)]
    y = ssmlib.linear_recurrence(*args16[:4], args16[4])
    y_ref = ssmlib.linear_recurrence_ref(*(t.double() for t in args16[:4]), args16[4].double())
    assert y.dtype == torch.bfloat16
    assert rel_err(y, y_ref) < 2e-2


def test_optional_arguments_default_to_zero():
    A, B, C, D = random_system(3, 5)
    u = torch.randn(2, 3, 20, dtype=torch.float64, device=DEV)
    zeros = torch.zeros(2, 3, 5, dtype=torch.float64, device=DEV)
    y = ssmlib.linear_recurrence(A, B, C, u)
    assert rel_err(y, ssmlib.linear_recurrence(A, B, C, u, torch.zeros_like(D), zeros)) < 1e-14
    assert rel_err(y, ssmlib.linear_recurrence_ref(A, B, C, u)) < 1e-10


def test_final_state_continues_the_sequence():
    """Running [u1, u2] equals running u1, then u2 from u1's final state."""
    A, B, C, D = random_system(3, 6)
    u = torch.randn(2, 3, 41, dtype=torch.float64, device=DEV)
    y, xT = ssmlib.linear_recurrence(A, B, C, u, D, return_final_state=True)
    y1, x1 = ssmlib.linear_recurrence(A, B, C, u[..., :17].contiguous(), D, return_final_state=True)
    y2, x2 = ssmlib.linear_recurrence(A, B, C, u[..., 17:].contiguous(), D, x1, return_final_state=True)
    assert rel_err(torch.cat([y1, y2], -1), y) < 1e-12
    assert rel_err(x2, xT) < 1e-12


def test_empty_sequence_returns_initial_state():
    A, B, C, D = random_system(2, 3)
    u = torch.empty(4, 2, 0, dtype=torch.float64, device=DEV)
    x0 = torch.randn(4, 2, 3, dtype=torch.float64, device=DEV)
    y, xT = ssmlib.linear_recurrence(A, B, C, u, D, x0, return_final_state=True)
    assert y.shape == (4, 2, 0)
    assert torch.equal(xT, x0)


def test_kernel_writes_every_output():
    """Poison the output buffers: the kernel must overwrite all of them."""
    A, B, C, D = random_system(5, 3, torch.float32)
    u = torch.randn(7, 5, 13, device=DEV)
    y_ref, x_ref = ssmlib.linear_recurrence_ref(A, B, C, u, D, return_final_state=True)
    real_empty = torch.empty
    try:
        torch.empty = lambda *a, **k: real_empty(*a, **k).fill_(float("nan"))
        y, xT = ssmlib.linear_recurrence(A, B, C, u, D, return_final_state=True)
    finally:
        torch.empty = real_empty
    assert torch.isfinite(y).all() and torch.isfinite(xT).all()
    assert rel_err(y, y_ref) < 1e-5 and rel_err(xT, x_ref) < 1e-5


# ---------------------------------------------------------------- chunked kernel
@pytest.mark.parametrize("N,L", [(1, 5), (9, 1), (16, 16), (16, 37), (17, 100), (33, 31)])
@pytest.mark.parametrize("with_D,with_x0", [(True, True), (False, False)])
def test_chunked_matches_reference_float64(N, L, with_D, with_x0):
    """Chunks of 16 steps as matrix products, a partial last chunk, batch not a multiple of the block."""
    batch, H = 19, 2
    A, B, C, D = random_system(H, N)
    u = torch.randn(batch, H, L, dtype=torch.float64, device=DEV)
    x0 = torch.randn(batch, H, N, dtype=torch.float64, device=DEV) if with_x0 else None
    D = D if with_D else None
    y, xT = ssmlib.linear_recurrence(A, B, C, u, D, x0, return_final_state=True, algorithm="chunked",
                                     block_b=16)
    y_ref, x_ref = ssmlib.linear_recurrence_ref(A, B, C, u, D, x0, return_final_state=True)
    assert rel_err(y, y_ref) < 1e-12 and rel_err(xT, x_ref) < 1e-12


def test_chunked_float32_and_chunk_length():
    A, B, C, D = random_system(3, 16)
    u = torch.randn(16, 3, 70, dtype=torch.float64, device=DEV)
    y_ref, x_ref = ssmlib.linear_recurrence_ref(A, B, C, u, D, return_final_state=True)
    for T in (16, 32):
        y, xT = ssmlib.linear_recurrence(*(t.float() for t in (A, B, C, u, D)), return_final_state=True,
                                         algorithm="chunked", chunk_steps=T)
        assert y.dtype == torch.float32
        assert rel_err(y, y_ref) < 1e-5 and rel_err(xT, x_ref) < 1e-5


def test_default_algorithm():
    from ssmlib.recurrence import _use_chunked
    assert _use_chunked(16, 64, torch.float32) and _use_chunked(64, 16, torch.bfloat16)
    assert not _use_chunked(8, 64, torch.float32)        # small N: the step kernel's FMA chains win
    assert not _use_chunked(16, 8, torch.float32)        # batch too small for a tensor-core tile
    assert not _use_chunked(16, 64, torch.float64)


# ---------------------------------------------------------------- bad input
def _good():
    A, B, C, D = random_system(3, 4, torch.float32)
    return dict(A=A, B=B, C=C, u=torch.randn(2, 3, 5, device=DEV), D=D,
                x0=torch.zeros(2, 3, 4, device=DEV))


@pytest.mark.parametrize("name,bad,exc,match", [
    ("A", lambda g: g["A"][:, :, :3], ValueError, "A must have shape"),
    ("A", lambda g: g["A"][0], ValueError, "A must have 3 dims"),
    ("B", lambda g: g["B"][:2], ValueError, "B must have shape"),
    ("C", lambda g: g["C"].double(), TypeError, "C has dtype"),
    ("u", lambda g: g["u"].int(), TypeError, "u has dtype"),
    ("u", lambda g: g["u"].to(torch.complex64), TypeError, "u has dtype"),
    ("A", lambda g: g["A"].to(torch.complex64), TypeError, "A has dtype"),
    ("D", lambda g: g["D"][:2], ValueError, "D must have shape"),
    ("x0", lambda g: g["x0"][:, :, :2], ValueError, "x0 must have shape"),
    ("u", lambda g: g["u"].transpose(0, 1).contiguous().transpose(0, 1), ValueError, "u must be contiguous"),
    ("A", lambda g: g["A"].transpose(1, 2), ValueError, "A must be contiguous"),
    ("u", lambda g: g["u"].numpy() if DEV == "cpu" else g["u"].cpu().numpy(), TypeError, "u must be a torch.Tensor"),
])
def test_bad_input_names_the_argument(name, bad, exc, match):
    g = _good()
    g[name] = bad(g)
    with pytest.raises(exc, match=match):
        ssmlib.linear_recurrence(g["A"], g["B"], g["C"], g["u"], g["D"], g["x0"])


@pytest.mark.parametrize("kw,match", [(dict(chunk_steps=3), "chunk_steps"), (dict(block_h=24), "block_h"),
                                      (dict(algorithm="fft"), "algorithm"),
                                      (dict(algorithm="chunked", chunk_steps=8), "chunk_steps"),
                                      (dict(algorithm="chunked", block_b=24), "block_b")])
def test_bad_launch_overrides(kw, match):
    g = _good()
    with pytest.raises(ValueError, match=match):
        ssmlib.linear_recurrence(g["A"], g["B"], g["C"], g["u"], **kw)


def test_state_too_large():
    N = MAX_N + 1
    A, B, C, D = random_system(1, N, torch.float32)
    with pytest.raises(ValueError, match="N <= 64"):
        ssmlib.linear_recurrence(A, B, C, torch.randn(1, 1, 3, device=DEV))


def test_wrong_device():
    other = "cuda" if DEV == "cpu" else "cpu"
    if other == "cuda" and not torch.cuda.is_available():
        # CPU-only machine: a "meta" tensor stands in for a tensor on the wrong device.
        other = "meta"
    g = _good()
    with pytest.raises(ValueError, match="u is on"):
        ssmlib.linear_recurrence(g["A"], g["B"], g["C"], g["u"].to(other))


# ---------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.parametrize("N", [1, 2, 3, 4, 16, 17, 33, 64])
def test_gpu_matches_reference(N):
    batch, H, L = 3, 259, 1031
    A, B, C, D = random_system(H, N)
    u = torch.randn(batch, H, L, dtype=torch.float64, device=DEV)
    x0 = torch.randn(batch, H, N, dtype=torch.float64, device=DEV)
    y_ref, x_ref = ssmlib.linear_recurrence_ref(A, B, C, u, D, x0, return_final_state=True)
    y64, x64 = ssmlib.linear_recurrence(A, B, C, u, D, x0, return_final_state=True)
    assert rel_err(y64, y_ref) < 1e-10 and rel_err(x64, x_ref) < 1e-10
    y32, x32 = ssmlib.linear_recurrence(*(t.float() for t in (A, B, C, u, D, x0)), return_final_state=True)
    assert rel_err(y32, y_ref) < 1e-5 and rel_err(x32, x_ref) < 1e-5


@pytest.mark.gpu
@pytest.mark.parametrize("N", [3, 16])
def test_gpu_every_launch_config(N):
    """Every launch configuration the sweep may choose gives the same answer, on
    sizes that are not multiples of the block."""
    batch, H, L = 5, 1000, 65
    A, B, C, D = random_system(H, N, torch.float32)
    u = torch.randn(batch, H, L, device=DEV)
    y_ref = ssmlib.linear_recurrence_ref(*(t.double() for t in (A, B, C, u, D)))
    configs = [(True, 32, 1), (True, 64, 2), (True, 128, 4), (False, 1, 1), (False, 4, 1),
               (False, 8, 1), (False, 2, 4)]
    for chan, bh, nw in configs:
        for chunk in (4, 8):
            y = ssmlib.linear_recurrence(A, B, C, u, D, channels_last=chan, block_h=bh,
                                         num_warps=nw, chunk_steps=chunk)
            assert rel_err(y, y_ref) < 1e-5, (chan, bh, nw, chunk)


@pytest.mark.gpu
@pytest.mark.parametrize("N", [9, 16, 17, 33, 64])
def test_gpu_chunked_matches_reference(N):
    """The default path for batch ≥ 16 and N > 8: 3×TF32 tensor-core products."""
    batch, H, L = 21, 67, 1031
    A, B, C, D = random_system(H, N)
    u = torch.randn(batch, H, L, dtype=torch.float64, device=DEV)
    x0 = torch.randn(batch, H, N, dtype=torch.float64, device=DEV)
    y_ref, x_ref = ssmlib.linear_recurrence_ref(A, B, C, u, D, x0, return_final_state=True)
    y32, x32 = ssmlib.linear_recurrence(*(t.float() for t in (A, B, C, u, D, x0)), return_final_state=True)
    assert rel_err(y32, y_ref) < 1e-5 and rel_err(x32, x_ref) < 1e-5
    y16 = ssmlib.linear_recurrence(*(t.bfloat16() for t in (A, B, C, u, D)))
    y16_ref = ssmlib.linear_recurrence_ref(*(t.bfloat16().double() for t in (A, B, C, u, D)))
    assert rel_err(y16, y16_ref) < 2e-2


@pytest.mark.gpu
def test_gpu_every_chunked_config():
    from ssmlib.bench.recurrence import CHUNKED_CONFIGS
    batch, H, L = 37, 100, 1000
    A, B, C, D = random_system(H, 16, torch.float32)
    u = torch.randn(batch, H, L, device=DEV)
    y_ref, x_ref = ssmlib.linear_recurrence_ref(*(t.double() for t in (A, B, C, u, D)), return_final_state=True)
    for bb, nw, T in CHUNKED_CONFIGS:
        y, xT = ssmlib.linear_recurrence(A, B, C, u, D, return_final_state=True, algorithm="chunked",
                                         block_b=bb, num_warps=nw, chunk_steps=T)
        assert rel_err(y, y_ref) < 1e-5 and rel_err(xT, x_ref) < 1e-5, (bb, nw, T)


def test_both_layouts_in_the_interpreter():
    """channels_last and the (H, N, N) layout compute the same function."""
    A, B, C, D = random_system(37, 5)
    u = torch.randn(3, 37, 9, dtype=torch.float64, device=DEV)
    x0 = torch.randn(3, 37, 5, dtype=torch.float64, device=DEV)
    ref = ssmlib.linear_recurrence_ref(A, B, C, u, D, x0, return_final_state=True)
    for chan, bh, chunk in ((True, 16, 8), (False, 2, 4), (False, 1, 2)):
        out = ssmlib.linear_recurrence(A, B, C, u, D, x0, return_final_state=True,
                                       channels_last=chan, block_h=bh, chunk_steps=chunk)
        assert rel_err(out[0], ref[0]) < 1e-10 and rel_err(out[1], ref[1]) < 1e-10


# ---------------------------------------------------------------- the chunked form in PyTorch, and gradients
@pytest.mark.parametrize("N,L,T", [(3, 37, 16), (5, 16, 16), (2, 1, 4), (4, 0, 16), (17, 50, 8)])
@pytest.mark.parametrize("with_D,with_x0", [(True, True), (False, False)])
def test_chunked_ref_equals_the_loop(N, L, T, with_D, with_x0):
    from ssmlib.recurrence import linear_recurrence_chunked_ref
    A, B, C, D = random_system(3, N)
    u = torch.randn(2, 3, L, dtype=torch.float64, device=DEV)
    x0 = torch.randn(2, 3, N, dtype=torch.float64, device=DEV) if with_x0 else None
    D = D if with_D else None
    y, xT = linear_recurrence_chunked_ref(A, B, C, u, D, x0, return_final_state=True, T=T)
    y_ref, x_ref = ssmlib.linear_recurrence_ref(A, B, C, u, D, x0, return_final_state=True)
    assert y.shape == y_ref.shape and rel_err(xT, x_ref) < 1e-12
    assert L == 0 or rel_err(y, y_ref) < 1e-12


def _grads(fn, tensors, weights, final):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    out = fn(*leaves, return_final_state=final)
    outs = out if final else (out,)
    loss = sum((o * w).sum() for o, w in zip(outs, weights))
    return torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("final", [False, True])
@pytest.mark.parametrize("batch,N,L", [(2, 4, 21), (17, 16, 40)])   # step kernel; chunked kernel
def test_gradients_match_autograd_through_the_loop(final, batch, N, L):
    """float64 to 1e-10; float32 inputs (gradients recomputed in float32) to 1e-4."""
    A, B, C, D = random_system(3, N)
    u = torch.randn(batch, 3, L, dtype=torch.float64, device=DEV)
    x0 = torch.randn(batch, 3, N, dtype=torch.float64, device=DEV)
    weights = [torch.randn(batch, 3, L, dtype=torch.float64, device=DEV),
               torch.randn(batch, 3, N, dtype=torch.float64, device=DEV)]
    ref = _grads(ssmlib.linear_recurrence_ref, (A, B, C, u, D, x0), weights, final)
    got = _grads(ssmlib.linear_recurrence, (A, B, C, u, D, x0), weights, final)
    for name, g, r in zip("ABCuD", got, ref):
        assert g.shape == r.shape and rel_err(g, r) < 1e-10, name
    assert rel_err(got[5], ref[5]) < 1e-10
    got32 = _grads(ssmlib.linear_recurrence, [t.float() for t in (A, B, C, u, D, x0)], weights, final)
    for g, r in zip(got32, ref):
        assert g.dtype == torch.float32 and rel_err(g, r) < 1e-4


def test_gradcheck_and_partial_requires_grad():
    A, B, C, D = random_system(2, 3)
    u = torch.randn(1, 2, 6, dtype=torch.float64, device=DEV)
    x0 = torch.randn(1, 2, 3, dtype=torch.float64, device=DEV)
    args = [t.clone().requires_grad_() for t in (A, B, C, u, D, x0)]
    assert torch.autograd.gradcheck(lambda *t: ssmlib.linear_recurrence(*t, return_final_state=True), args)
    u_only = u.clone().requires_grad_()
    y = ssmlib.linear_recurrence(A, B, C, u_only, D)
    (du,) = torch.autograd.grad(y.sum(), u_only)
    assert du.shape == u.shape
    assert not ssmlib.linear_recurrence(A, B, C, u, D).requires_grad      # no graph without grad inputs


@pytest.mark.gpu
def test_gpu_gradients():
    batch, H, N, L = 17, 67, 16, 1031
    A, B, C, D = random_system(H, N)
    u = torch.randn(batch, H, L, dtype=torch.float64, device=DEV)
    weights = [torch.randn(batch, H, L, dtype=torch.float64, device=DEV)]
    ref = _grads(ssmlib.linear_recurrence_ref, (A, B, C, u, D), weights, False)
    got = _grads(ssmlib.linear_recurrence, [t.float() for t in (A, B, C, u, D)], weights, False)
    for name, g, r in zip("ABCuD", got, ref):
        assert rel_err(g, r) < 1e-4, name

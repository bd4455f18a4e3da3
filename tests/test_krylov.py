"""ssmlib.krylov: the kernel K_k = C A^k B three ways, and its GPU benchmark suite."""
import math

import pytest
import torch

import ssmlib
from ssmlib import hippo
from ssmlib.krylov import METHODS, flops, krylov

f64 = torch.float64


def _stable(H, N, dtype=f64, device="cpu"):
    A = torch.randn(H, N, N, dtype=f64)
    A = 0.95 * A / torch.linalg.matrix_norm(A, ord=2)[:, None, None]
    B, C = torch.randn(H, N, dtype=f64), torch.randn(H, N, dtype=f64)
    return [t.to(dtype=dtype, device=device) for t in (A, B, C)]


@pytest.mark.parametrize("N,L", [(1, 1), (1, 7), (3, 16), (5, 33), (8, 64), (16, 100)])
def test_three_methods_agree_with_matrix_powers(N, L):
    A, B, C = _stable(3, N)
    ref = torch.stack([torch.stack([C[h] @ torch.linalg.matrix_power(A[h], k) @ B[h] for k in range(L)])
                       for h in range(3)])
    for method in METHODS:
        K = krylov(*(t.to(ssmlib.DEVICE) for t in (A, B, C)), L, method).cpu()
        assert K.shape == (3, L) and K.dtype == f64
        torch.testing.assert_close(K, ref, rtol=1e-10, atol=1e-12, msg=method)


def test_matches_impulse_response_and_recurrence():
    A, B, C = _stable(4, 6)
    L = 40
    K = krylov(A, B, C, L, "squaring")
    torch.testing.assert_close(K, ssmlib.impulse_response(A, B, C, L))
    u = torch.zeros(1, 4, L, dtype=f64)
    u[..., 0] = 1
    torch.testing.assert_close(K, ssmlib.linear_recurrence_ref(A, B, C, u)[0])


def test_broadcasting_leading_dims():
    A, B, C = _stable(1, 5)
    Cs = torch.randn(2, 3, 5, dtype=f64)                   # (2, 3) output vectors, one A and B
    for method in ("naive", "squaring"):
        K = krylov(A[0], B[0], Cs, 20, method)
        assert K.shape == (2, 3, 20)
        torch.testing.assert_close(K[1, 2], krylov(A[0], B[0], Cs[1, 2], 20, "naive"))


def test_float32_close_to_float64():
    A, B, C = _stable(4, 16)
    ref = krylov(A, B, C, 300)
    for method in METHODS:
        K = krylov(*(t.float().to(ssmlib.DEVICE) for t in (A, B, C)), 300, method).cpu()
        assert K.dtype == torch.float32
        assert (K.double() - ref).abs().max() < 1e-5 * ref.abs().max(), method


def test_hippo_powers_are_contractions():
    """The bilinear HiPPO matrices are dissipative: ‖Ā^k‖₂ ≤ 1, so naive powers stay accurate."""
    for m in ("legt", "lagt", "legs"):
        A, B = hippo.transition(m, 32)
        assert torch.linalg.eigvalsh(A + A.T).max() < 1e-9
        Ab, _ = ssmlib.discretize(A, B, 0.1, "bilinear")
        assert torch.linalg.matrix_norm(torch.linalg.matrix_power(Ab, 50), ord=2) <= 1 + 1e-9


def test_gradients():
    A, B, C = (t.requires_grad_() for t in _stable(2, 4))
    for method in ("naive", "squaring"):
        assert torch.autograd.gradcheck(lambda a, b, c: krylov(a, b, c, 9, method), (A, B, C))
    A, B, C = (t.detach().to(ssmlib.DEVICE).requires_grad_() for t in (A, B, C))
    assert torch.autograd.gradcheck(lambda a, b, c: krylov(a, b, c, 9, "recurrence"), (A, B, C))


def test_flops_model():
    assert flops(4, 10, "naive") == 2 * 16 * 10 + 2 * 4 * 10
    assert flops(4, 10, "recurrence") == flops(4, 10, "naive")
    assert flops(64, 1024, "squaring") > flops(64, 1024, "naive")
    with pytest.raises(ValueError, match="method"):
        flops(4, 10, "fft")


def test_bad_input():
    A, B, C = _stable(2, 3)
    with pytest.raises(ValueError, match="method"):
        krylov(A, B, C, 5, "fft")
    with pytest.raises(TypeError, match="A must be a torch.Tensor"):
        krylov(A.numpy(), B, C, 5)
    with pytest.raises(TypeError, match="B has dtype"):
        krylov(A, B.float(), C, 5)
    with pytest.raises(TypeError, match="A has dtype"):
        krylov(A.int(), B.int(), C.int(), 5)
    with pytest.raises(ValueError, match="A must be square"):
        krylov(A[..., :2], B, C, 5)
    with pytest.raises(ValueError, match="B must have shape"):
        krylov(A, B[:, :2], C, 5)
    with pytest.raises(ValueError, match="C must have shape"):
        krylov(A, B, C[:, :2], 5)
    with pytest.raises(ValueError, match="L must be >= 1"):
        krylov(A, B, C, 0)
    with pytest.raises(TypeError, match="L must be an int"):
        krylov(A, B, C, 5.0)
    with pytest.raises(ValueError, match="do not broadcast"):
        krylov(A, B, torch.randn(3, 3, dtype=f64), 5)
    with pytest.raises(ValueError, match="A must have 3 dims"):
        krylov(A[0].to(ssmlib.DEVICE), B[0].to(ssmlib.DEVICE), C[0].to(ssmlib.DEVICE), 5, "recurrence")


@pytest.mark.gpu
@pytest.mark.parametrize("N", [4, 16, 64])
def test_gpu_methods_agree(N):
    A, B, C = _stable(64, N, torch.float32, "cuda")
    ref = krylov(*(t.double() for t in (A, B, C)), 2048, "naive")
    for method in METHODS:
        K = krylov(A, B, C, 2048, method)
        assert K.is_cuda and (K.double() - ref).abs().max() < 1e-4 * ref.abs().max(), method


@pytest.mark.gpu
def test_gpu_bench_suite_runs():
    from ssmlib.bench import krylov as suite

    ceil = {"copy_GBps": 4000.0, "fp32_TFLOPs": 50.0, "bf16_TFLOPs": 700.0}
    rows = suite._rows((16,), (256,), ceil)
    impls = {r["impl"] for r in rows}
    assert {"naive", "squaring", "triton", "naive_fwd_bwd", "squaring_fwd_bwd", "roofline"} <= impls
    assert all(math.isfinite(r["median_ms"]) and r["median_ms"] > 0 for r in rows)

"""discretize against independent computations (SciPy's cont2discrete, closed forms)."""
import numpy as np
import pytest
import scipy.linalg
import scipy.signal
import torch

import ssmlib

SCIPY_NAME = {"zoh": "zoh", "bilinear": "bilinear", "euler": "euler", "backward_euler": "backward_diff"}


@pytest.mark.parametrize("method", ssmlib.METHODS)
@pytest.mark.parametrize("N,M", [(1, 1), (2, 1), (5, 3), (7, 1)])
def test_matches_scipy(method, N, M):
    A = torch.randn(N, N, dtype=torch.float64)
    B = torch.randn(N, M, dtype=torch.float64)
    dt = float(torch.rand(()) * 0.5 + 0.01)
    Ab, Bb = ssmlib.discretize(A, B, dt, method)
    ad, bd, *_ = scipy.signal.cont2discrete((A.numpy(), B.numpy(), np.eye(N), np.zeros((N, M))), dt,
                                            method=SCIPY_NAME[method])
    np.testing.assert_allclose(Ab.numpy(), ad, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(Bb.numpy(), bd, rtol=1e-10, atol=1e-12)


def test_zoh_closed_form_for_invertible_A():
    """B̄ = A⁻¹(exp(ΔA) − I)B when A is invertible."""
    A = torch.randn(4, 4, dtype=torch.float64) - 3 * torch.eye(4, dtype=torch.float64)
    B = torch.randn(4, dtype=torch.float64)
    dt = 0.3
    Ab, Bb = ssmlib.discretize(A, B, dt, "zoh")
    E = scipy.linalg.expm(dt * A.numpy())
    np.testing.assert_allclose(Ab.numpy(), E, rtol=1e-12)
    np.testing.assert_allclose(Bb.numpy(), np.linalg.solve(A.numpy(), (E - np.eye(4)) @ B.numpy()),
                               rtol=1e-10)


def test_zoh_small_step_unbatched_matches_expm():
    """Δ‖A‖ ≈ 0.01, one matrix: ZOH must be accurate to rounding (float64)."""
    A, B, _, _ = ssmlib.mass_spring_damper(1.0, 0.5, 4.0)
    Ab, Bb = ssmlib.discretize(A, B, 0.01, "zoh")
    np.testing.assert_allclose(Ab.numpy(), scipy.linalg.expm(0.01 * A.numpy()), rtol=0, atol=1e-15)


def test_zoh_of_an_integrator():
    """A = 0 (singular): Ā = I, B̄ = ΔB exactly; the block exponential needs no A⁻¹."""
    A = torch.zeros(3, 3, dtype=torch.float64)
    B = torch.randn(3, dtype=torch.float64)
    Ab, Bb = ssmlib.discretize(A, B, 0.25, "zoh")
    assert torch.allclose(Ab, torch.eye(3, dtype=torch.float64))
    assert torch.allclose(Bb, 0.25 * B)


@pytest.mark.parametrize("method", ssmlib.METHODS)
def test_batched_with_tensor_dt_equals_loop(method):
    """Leading dims of A, B and dt broadcast; every slice equals its own discretization."""
    H, N = 6, 3
    A = torch.randn(H, N, N, dtype=torch.float64)
    B = torch.randn(H, N, dtype=torch.float64)
    dt = torch.rand(H, dtype=torch.float64) * 0.2 + 0.01
    Ab, Bb = ssmlib.discretize(A, B, dt, method)
    assert Ab.shape == (H, N, N) and Bb.shape == (H, N)
    for h in range(H):
        a, b = ssmlib.discretize(A[h], B[h], float(dt[h]), method)
        assert torch.allclose(Ab[h], a, rtol=1e-12) and torch.allclose(Bb[h], b, rtol=1e-12)
    # one A, many steps
    Ab2, _ = ssmlib.discretize(A[0], B[0], dt, method)
    assert Ab2.shape == (H, N, N)


def test_complex_diagonal_zoh_is_elementwise_exp():
    lam = torch.complex(-torch.rand(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64))
    Ab, Bb = ssmlib.discretize(torch.diag(lam), torch.ones(5, dtype=torch.complex128), 0.1, "zoh")
    assert torch.allclose(torch.diagonal(Ab), torch.exp(0.1 * lam))
    assert torch.allclose(Bb, (torch.exp(0.1 * lam) - 1) / lam)


@pytest.mark.parametrize("args,exc,match", [
    ((torch.randn(3, 3), torch.randn(3), 0.1, "rk4"), ValueError, "method"),
    ((torch.randn(3, 2), torch.randn(3), 0.1), ValueError, "A must be square"),
    ((torch.randn(3, 3), torch.randn(4), 0.1), ValueError, "B must have shape"),
    ((torch.randn(3, 3), torch.randn(3).double(), 0.1), TypeError, "B has dtype"),
    ((torch.ones(3, 3, dtype=torch.int64), torch.ones(3, dtype=torch.int64), 0.1), TypeError, "A must be a float"),
    ((torch.randn(3, 3), torch.randn(3), -0.1), ValueError, "dt must be positive"),
    ((torch.randn(3, 3), torch.randn(3), torch.tensor([0.1, 0.0])), ValueError, "dt must be positive"),
    ((torch.randn(3, 3), torch.randn(3), "0.1"), TypeError, "dt must be"),
    ((torch.randn(3), torch.randn(3), 0.1), ValueError, "A must have at least 2 dims"),
])
def test_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        ssmlib.discretize(*args)

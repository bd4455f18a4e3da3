"""impulse_response and causal_conv: the convolutional view equals the recurrence."""
import pytest
import torch

import ssmlib


def test_impulse_response_is_C_A_power_B():
    H, N, L = 3, 4, 9
    A = torch.randn(H, N, N, dtype=torch.float64) / 3
    B, C = torch.randn(H, N, dtype=torch.float64), torch.randn(H, N, dtype=torch.float64)
    K = ssmlib.impulse_response(A, B, C, L)
    for h in range(H):
        for j in range(L):
            assert torch.allclose(K[h, j], C[h] @ torch.linalg.matrix_power(A[h], j) @ B[h])


def test_causal_conv_matches_direct_sum():
    batch, H, L = 2, 3, 17
    u = torch.randn(batch, H, L, dtype=torch.float64)
    K = torch.randn(H, L, dtype=torch.float64)
    D = torch.randn(H, dtype=torch.float64)
    y = ssmlib.causal_conv(u, K, D)
    ref = torch.zeros_like(u)
    for k in range(L):
        for j in range(k + 1):
            ref[..., k] += K[:, j] * u[..., k - j]
    ref += D[:, None] * u
    assert torch.allclose(y, ref, atol=1e-12)


@pytest.mark.parametrize("N,L", [(1, 5), (3, 64), (8, 301)])
def test_convolution_equals_recurrence(N, L):
    H = 4
    A = torch.randn(H, N, N, dtype=torch.float64)
    A = 0.9 * A / torch.linalg.matrix_norm(A, ord=2)[:, None, None]
    B, C = torch.randn(H, N, dtype=torch.float64), torch.randn(H, N, dtype=torch.float64)
    D = torch.randn(H, dtype=torch.float64)
    u = torch.randn(2, H, L, dtype=torch.float64)
    y_conv = ssmlib.causal_conv(u, ssmlib.impulse_response(A, B, C, L), D)
    y_rec = ssmlib.linear_recurrence(*(t.to(ssmlib.DEVICE) for t in (A, B, C, u, D))).cpu()
    assert torch.allclose(y_conv, y_rec, atol=1e-10)


def test_bad_input():
    with pytest.raises(ValueError, match="K must have shape"):
        ssmlib.causal_conv(torch.randn(2, 3, 5), torch.randn(3, 4))
    with pytest.raises(ValueError, match="L must be >= 1"):
        ssmlib.impulse_response(torch.eye(2)[None], torch.ones(1, 2), torch.ones(1, 2), 0)
    with pytest.raises(ValueError, match="B must have shape"):
        ssmlib.impulse_response(torch.eye(2)[None], torch.ones(1, 3), torch.ones(1, 2), 4)


def test_circular_convolution_differs_by_the_wrap_around():
    """Without padding the FFT convolves circularly: the error is exactly the wrapped-around tail."""
    batch, H, L = 2, 3, 32
    u = torch.randn(batch, H, L, dtype=torch.float64)
    K = torch.randn(H, L, dtype=torch.float64)
    y = ssmlib.causal_conv(u, K)
    circ = torch.fft.irfft(torch.fft.rfft(u, n=L) * torch.fft.rfft(K, n=L), n=L)
    wrap = torch.stack([(K[:, k + 1:].flip(-1) * u[..., k + 1:]).sum(-1) for k in range(L)], -1)
    assert torch.allclose(circ - y, wrap, atol=1e-12)
    assert (circ - y)[..., 0].abs().max() > 1e-3
    assert torch.equal(wrap[..., -1], torch.zeros(batch, H, dtype=torch.float64))


def test_causal_conv_is_causal_and_handles_float32_and_empty():
    u = torch.randn(1, 2, 20)
    K = torch.randn(2, 20)
    y = ssmlib.causal_conv(u, K)
    u2 = u.clone()
    u2[..., 10:] = torch.randn(1, 2, 10)                   # change the future only
    assert torch.allclose(ssmlib.causal_conv(u2, K)[..., :10], y[..., :10], atol=1e-6)
    assert y.dtype == torch.float32
    assert ssmlib.causal_conv(torch.randn(2, 3, 0), torch.randn(3, 0)).shape == (2, 3, 0)


def test_causal_conv_bad_input():
    u, K = torch.randn(2, 3, 5), torch.randn(3, 5)
    with pytest.raises(TypeError, match="u and K must be float"):
        ssmlib.causal_conv(torch.ones(2, 3, 5, dtype=torch.int64), K)
    with pytest.raises(TypeError, match="D must be a torch.Tensor"):
        ssmlib.causal_conv(u, K, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="D must have shape"):
        ssmlib.causal_conv(u, K, torch.ones(4))
    with pytest.raises(ValueError, match="u must have 3 dims"):
        ssmlib.causal_conv(torch.randn(3, 5), K)

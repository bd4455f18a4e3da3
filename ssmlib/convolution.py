r"""The convolutional view of a discrete LTI system.

Unrolling x_k = Ā x_{k-1} + B̄ u_k from x_{-1} = 0 gives

    y_k = Σ_{j=0}^{k} C Ā^j B̄ u_{k-j} + D u_k = (K * u)_k + D u_k,   K_j = C Ā^j B̄,

so the whole output is one causal convolution of u with the impulse response
K = (CB̄, CĀB̄, CĀ²B̄, …) (the kernel of the LSSL paper). The convolution is
done with FFTs of length 2L, which makes the circular convolution causal.
"""
from __future__ import annotations

import torch

from . import checks
from .krylov import krylov_naive


def impulse_response(A, B, C, L: int):
    """The first L terms of K_j = C A^j B for each channel: the output for u = (1, 0, 0, …).

    Shapes: ``A (H, N, N)``, ``B (H, N)``, ``C (H, N)`` → ``K (H, L)``. The
    same numbers as :func:`ssmlib.krylov` (the LSSL chapter's name for them, with
    two faster algorithms); this is its reference, L matrix-vector products.
    """
    checks.tensor("A", A, ndim=3)
    checks.tensor("B", B, ndim=2)
    checks.tensor("C", C, ndim=2)
    return krylov_naive(A, B, C, L)


def causal_conv(u, K, D=None):
    """y = K * u (causal, per channel) + D u, by FFT.

    Shapes: ``u (batch, H, L)``, ``K (H, L)``, ``D (H,)`` → ``y (batch, H, L)``.
    O(L log L) per sequence and channel. Without the padding, the FFT would
    compute the *circular* convolution, y_k = Σ_j K_j u_{(k−j) mod L}: every
    output would also see the end of the sequence, the future (the LSSL
    chapter shows it).
    """
    checks.tensor("u", u, ndim=3)
    checks.tensor("K", K, ndim=2)
    if not (u.is_floating_point() and K.is_floating_point()):
        raise TypeError(f"u and K must be float tensors, got {u.dtype} and {K.dtype}")
    batch, H, L = u.shape
    checks.shape("K", K, (H, L))
    if D is not None:
        checks.tensor("D", D, ndim=1)
        checks.shape("D", D, (H,))
    checks.same_device(u=u, K=K, D=D)
    if L == 0:
        return u.clone()
    # Zero-padding both to n ≥ 2L − 1 makes the circular convolution of length n
    # equal the linear one on the first L outputs: nothing wraps around.
    n = 2 * L
    y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(K, n=n), n=n)[..., :L]
    if D is not None:
        y = y + D[:, None] * u
    return y

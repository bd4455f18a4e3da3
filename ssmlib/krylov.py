r"""The Krylov kernel of a discrete SSM: K_k = C A^k B, k = 0 … L−1.

Unrolling x_k = A x_{k−1} + B u_k, y_k = C x_k from x_{−1} = 0 gives
y_k = Σ_j K_j u_{k−j} with

    K_L(A, B, C) = (CB, CAB, CA²B, …, CA^{L−1}B) = C · [B, AB, …, A^{L−1}B],

the product of C with the *Krylov matrix* of (A, B). This is the convolution
kernel of the LSSL [gu2021lssl]. Three ways to compute it, asserted equal in
the tests and timed in the book:

``"naive"``
    The reference: v_0 = B, v_{k+1} = A v_k, K_k = C·v_k. L matrix–vector
    products, O(N²L) work, L sequential steps. Under autograd it keeps every
    v_k, N·L numbers per channel.
``"recurrence"``
    The impulse response: run the recurrence on u = (1, 0, 0, …) with the
    Triton kernel :func:`ssmlib.linear_recurrence` (y_k = C A^k B). Also O(N²L)
    and sequential in k, but on chip; differentiable through the kernel's
    backward (recomputed in PyTorch). Needs ``A (H, N, N)`` with N ≤ 64 on
    ``ssmlib.DEVICE``.
``"squaring"``
    Repeated squaring: with V_m = [B, AB, …, A^{m−1}B] (N × m) and A^m,
    V_{2m} = [V_m, A^m V_m] and A^{2m} = (A^m)². log₂L rounds of matrix
    products: O(N²L + N³ log L) work, but only log₂L sequential steps, each a
    large matrix product that tensor cores like. Differentiable.

All three compute powers of A in the working precision. For the bilinear
discretizations of the HiPPO matrices that is safe: A + Aᵀ ≼ 0 makes Ā a
contraction, and the float32 kernel stays close to the float64 one (measured
in the book). What loses every digit is the cheap route around the O(N²L)
cost, diagonalizing Ā: its eigenvector matrix is exponentially ill-conditioned
in N. S4 is the way out of both problems.
"""
from __future__ import annotations

import math

import torch

from . import checks, runtime

#: The algorithms :func:`krylov` knows.
METHODS = ("naive", "recurrence", "squaring")

_FLOATS = (torch.float32, torch.float64)


def _check(A, B, C, L):
    checks.tensor("A", A, min_ndim=2, dtypes=_FLOATS)
    checks.tensor("B", B, min_ndim=1, dtypes=(A.dtype,))
    checks.tensor("C", C, min_ndim=1, dtypes=(A.dtype,))
    checks.positive_int("L", L)
    N = A.shape[-1]
    if A.shape[-2] != N:
        raise ValueError(f"A must be square in its last two dims, got shape {tuple(A.shape)}")
    if B.shape[-1] != N:
        raise ValueError(f"B must have shape (..., {N}) to match A, got {tuple(B.shape)}")
    if C.shape[-1] != N:
        raise ValueError(f"C must have shape (..., {N}) to match A, got {tuple(C.shape)}")
    checks.same_device(A=A, B=B, C=C)
    try:
        lead = torch.broadcast_shapes(A.shape[:-2], B.shape[:-1], C.shape[:-1])
    except RuntimeError:
        raise ValueError(f"the leading dims of A {tuple(A.shape[:-2])}, B {tuple(B.shape[:-1])} "
                         f"and C {tuple(C.shape[:-1])} do not broadcast") from None
    return lead, N


def krylov_naive(A, B, C, L: int):
    """K_k = C A^k B by L matrix–vector products (the reference); see :func:`krylov`."""
    lead, N = _check(A, B, C, L)
    v = B.expand(*lead, N)
    K = []
    for k in range(L):
        K.append((C * v).sum(-1))                     # C · A^k B
        if k + 1 < L:
            v = (A @ v.unsqueeze(-1)).squeeze(-1)     # A^{k+1} B
    return torch.stack(K, dim=-1)


def krylov_squaring(A, B, C, L: int):
    """K_k = C A^k B by repeated squaring (log₂L rounds); see :func:`krylov`."""
    lead, N = _check(A, B, C, L)
    V = B.expand(*lead, N).unsqueeze(-1)              # (..., N, m): [B, AB, …, A^{m−1}B], m = 1
    P = A.expand(*lead, N, N)                         # A^m
    m = 1
    while m < L:
        V = torch.cat([V, P @ V], dim=-1)             # [V_m, A^m V_m] = V_{2m}
        m *= 2
        if m < L:
            P = P @ P                                 # A^{2m}
    return (C.unsqueeze(-2) @ V[..., :L]).squeeze(-2)


def krylov_recurrence(A, B, C, L: int):
    """K_k = C A^k B as the impulse response of the Triton recurrence kernel; see :func:`krylov`."""
    _check(A, B, C, L)
    checks.tensor("A", A, ndim=3)
    H, N = A.shape[0], A.shape[-1]
    checks.shape("B", B, (H, N))
    checks.shape("C", C, (H, N))
    for name, t in (("A", A), ("B", B), ("C", C)):
        runtime.check_kernel_device(name, t)
    from .recurrence import linear_recurrence      # imported here: keeps this module light

    u = torch.zeros(1, H, L, dtype=A.dtype, device=A.device)
    u[..., 0] = 1                                     # unit impulse at k = 0
    y = linear_recurrence(A.contiguous(), B.contiguous(), C.contiguous(), u, algorithm="step")
    return y[0]


def krylov(A, B, C, L: int, method: str = "naive"):
    r"""The kernel K_k = C A^k B, k = 0 … L−1 (module docstring).

    Args:
        A: ``(..., N, N)`` float32 or float64.
        B, C: ``(..., N)``, A's dtype; the leading dims of A, B and C broadcast.
        L: kernel length (≥ 1).
        method: ``"naive"`` (the reference), ``"recurrence"`` (the Triton
            kernel's impulse response: ``A (H, N, N)``, ``B, C (H, N)``,
            N ≤ 64, on ``ssmlib.DEVICE``) or ``"squaring"``.

    Returns:
        ``K (..., L)`` in A's dtype.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return {"naive": krylov_naive, "squaring": krylov_squaring,
            "recurrence": krylov_recurrence}[method](A, B, C, L)


def flops(N: int, L: int, method: str) -> float:
    """Multiply–adds ×2 per channel of each method (the cost model the book fits)."""
    if method in ("naive", "recurrence"):
        return 2.0 * N * N * L + 2.0 * N * L
    if method == "squaring":
        rounds = max(0, math.ceil(math.log2(L)))
        vec = sum(2.0 * N * N * min(2**r, L) for r in range(rounds))    # A^m V_m
        return vec + 2.0 * N**3 * max(0, rounds - 1) + 2.0 * N * L
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")

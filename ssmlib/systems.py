r"""Small continuous-time systems and their frequency response.

The mass-spring-damper m x'' + c x' + k x = F, with position and velocity as
the state, is the book's running example:

    d/dt [x, v] = [[0, 1], [-k/m, -c/m]] [x, v] + [0, 1/m] F,      y = [1, 0] [x, v].
"""
from __future__ import annotations

import torch


def mass_spring_damper(m: float, c: float, k: float, dtype=torch.float64):
    """State-space matrices of m x'' + c x' + k x = F with y = position.

    Returns ``(A (2, 2), B (2,), C (2,), D ())``.
    """
    if not m > 0:
        raise ValueError(f"m (the mass) must be positive, got {m}")
    if c < 0 or k < 0:
        raise ValueError(f"c and k must be non-negative, got c={c}, k={k}")
    A = torch.tensor([[0.0, 1.0], [-k / m, -c / m]], dtype=dtype)
    B = torch.tensor([0.0, 1.0 / m], dtype=dtype)
    C = torch.tensor([1.0, 0.0], dtype=dtype)
    D = torch.tensor(0.0, dtype=dtype)
    return A, B, C, D


def transfer_function(A, B, C, D, s):
    """Evaluate H(s) = C (sI − A)⁻¹ B + D at the complex points ``s``.

    Shapes: ``A (N, N)``, ``B (N,)``, ``C (N,)``, ``D ()``, ``s (P,)`` → ``(P,)`` complex.
    """
    N = A.shape[-1]
    if A.shape != (N, N) or B.shape != (N,) or C.shape != (N,):
        raise ValueError(f"expected A (N, N), B (N,), C (N,); got {tuple(A.shape)}, "
                         f"{tuple(B.shape)}, {tuple(C.shape)}")
    cdt = torch.complex128 if A.dtype == torch.float64 else torch.complex64
    s = torch.as_tensor(s).to(cdt)
    I = torch.eye(N, dtype=cdt)
    M = s[:, None, None] * I - A.to(cdt)                       # (P, N, N)
    x = torch.linalg.solve(M, B.to(cdt).expand(len(s), N))     # (sI − A)⁻¹ B
    return x @ C.to(cdt) + D.to(cdt)

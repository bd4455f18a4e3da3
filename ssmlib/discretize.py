r"""Discretization of a continuous linear system x'(t) = A x(t) + B u(t).

Sampling with step Δ turns it into x_k = Ā x_{k-1} + B̄ u_k. The four classic rules:

=================  ======================================  ======================================
method             Ā                                       B̄
=================  ======================================  ======================================
``"euler"``        I + ΔA                                  ΔB
``"backward_euler"`` (I − ΔA)⁻¹                            (I − ΔA)⁻¹ ΔB
``"bilinear"``     (I − ΔA/2)⁻¹ (I + ΔA/2)                 (I − ΔA/2)⁻¹ ΔB
``"zoh"``          exp(ΔA)                                 A⁻¹ (exp(ΔA) − I) B
=================  ======================================  ======================================

``"zoh"`` (zero-order hold: u constant over each step) is exact for piecewise
constant inputs. It is computed without inverting A, from the block matrix
exponential exp(Δ [[A, B], [0, 0]]) = [[Ā, B̄], [0, I]], so a singular A is fine.
``"bilinear"`` is Tustin's rule in the form the LSSL and S4 papers use (C, D
unchanged).
"""
from __future__ import annotations

import torch

from . import checks

METHODS = ("zoh", "bilinear", "euler", "backward_euler")


def discretize(A: torch.Tensor, B: torch.Tensor, dt, method: str = "zoh"):
    """Discretize x' = Ax + Bu with step ``dt``.

    Args:
        A: ``(..., N, N)`` real or complex state matrix.
        B: ``(..., N)`` (one input) or ``(..., N, M)`` (M inputs).
        dt: a positive float, or a tensor of positive steps whose shape
            broadcasts with the leading dims ``...`` of A and B.
        method: ``"zoh"``, ``"bilinear"``, ``"euler"`` or ``"backward_euler"``.

    Returns:
        ``(Ab, Bb)``: ``Ab (..., N, N)``, ``Bb`` shaped like ``B``, with the
        leading dims broadcast over A, B and dt.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    checks.tensor("A", A, min_ndim=2)
    checks.tensor("B", B, min_ndim=1)
    if not (A.is_floating_point() or A.is_complex()):
        raise TypeError(f"A must be a float or complex tensor, got {A.dtype}")
    if B.dtype != A.dtype:
        raise TypeError(f"B has dtype {B.dtype} but A has {A.dtype}")
    N = A.shape[-1]
    if A.shape[-2] != N:
        raise ValueError(f"A must be square in its last two dims, got shape {tuple(A.shape)}")
    # B (..., N) has one dim fewer than A (..., N, N); B (..., N, M) has as many.
    if B.dim() not in (A.dim() - 1, A.dim()):
        raise ValueError(f"B must have shape (..., N) or (..., N, M) with the leading dims of "
                         f"A {tuple(A.shape)}, got {tuple(B.shape)}")
    single_input = B.dim() == A.dim() - 1
    Bm = B.unsqueeze(-1) if single_input else B
    if Bm.shape[-2] != N:
        raise ValueError(f"B must have shape (..., {N}) or (..., {N}, M) to match A, "
                         f"got {tuple(B.shape)}")
    if isinstance(dt, torch.Tensor):
        checks.same_device(A=A, dt=dt)
        if not dt.is_floating_point():
            raise TypeError(f"dt must be a float tensor, got {dt.dtype}")
        if not bool((dt > 0).all()):
            raise ValueError("dt must be positive")
        dt = dt.to(A.dtype)[..., None, None]
    else:
        if isinstance(dt, bool) or not isinstance(dt, (int, float)):
            raise TypeError(f"dt must be a float or a tensor, got {type(dt).__name__}")
        if not dt > 0:
            raise ValueError(f"dt must be positive, got {dt}")
    lead = torch.broadcast_shapes(A.shape[:-2], Bm.shape[:-2],
                                  dt.shape[:-2] if isinstance(dt, torch.Tensor) else ())
    A = A.expand(*lead, N, N)
    Bm = Bm.expand(*lead, N, Bm.shape[-1])
    I = torch.eye(N, dtype=A.dtype, device=A.device)
    dA, dB = dt * A, dt * Bm
    if method == "euler":
        Ab, Bb = I + dA, dB
    elif method == "backward_euler":
        Ab = torch.linalg.inv(I - dA)
        Bb = Ab @ dB
    elif method == "bilinear":
        Ab, Bb = torch.linalg.solve(I - dA / 2, torch.cat([I + dA / 2, dB], dim=-1)).split(
            [N, Bm.shape[-1]], dim=-1)
    else:  # zoh
        M = Bm.shape[-1]
        top = torch.cat([dA, dB], dim=-1)
        block = torch.cat([top, torch.zeros(*lead, M, N + M, dtype=A.dtype, device=A.device)], dim=-2)
        # torch.linalg.matrix_exp loses ~1e-11 on a single unbatched matrix (a PyTorch
        # bug in one of its Padé branches); a batch of two takes the accurate path.
        E = torch.linalg.matrix_exp(block) if lead else torch.linalg.matrix_exp(
            torch.stack([block, block]))[0]
        Ab, Bb = E[..., :N, :N], E[..., :N, N:]
    Ab, Bb = Ab.contiguous(), Bb.contiguous()
    return Ab, (Bb.squeeze(-1) if single_input else Bb)

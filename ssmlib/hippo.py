r"""HiPPO: online projection of a signal's history onto orthogonal polynomials.

At every time t, HiPPO [gu2020hippo] keeps the N coefficients c(t) of
the best approximation of the history f(s), s ≤ t, in an orthonormal basis
g_0 … g_{N−1} of a measure μ_t over the past: c_n(t) = ∫ f g_n dμ_t, and
f(s) ≈ Σ_n c_n(t) g_n(s). For the three measures below c obeys a linear ODE,
the coefficients can therefore be updated online, and (A, B) are the
"HiPPO matrices" that LSSL [gu2021lssl] and S4 [gu2022s4] start
from. With P_n the Legendre polynomials on [−1, 1] and L_n the Laguerre
polynomials:

========  ==========================  =========================================  ==================
measure   μ_t                         g_n(s)                                     dynamics
========  ==========================  =========================================  ==================
``legt``  ds/θ on [t − θ, t]          √(2n+1) P_n(x), x = 2(s − t)/θ + 1         c' = A c + B f
``lagt``  ds/θ on (−∞, t]             L_n(x) e^{−x/2}, x = (t − s)/θ             c' = A c + B f
``legs``  ds/t on [0, t]              √(2n+1) P_n(x), x = 2s/t − 1               c' = (A c + B f)/t
========  ==========================  =========================================  ==================

with (rows n, columns k, 0 ≤ n, k < N)

* LegT: A_nk = −(1/θ)√(2n+1)√(2k+1) · (1 if n ≥ k else (−1)^{n−k}),  B_n = (1/θ)√(2n+1);
* LagT: A_nk = −(1/θ) · (1 if n > k, 1/2 if n = k, 0 if n < k),   B_n = 1/θ;
* LegS: A_nk = −√(2n+1)√(2k+1) if n > k, −(n+1) if n = k, 0 if n < k;  B_n = √(2n+1).

For LegS and LagT the coefficients defined by the integral solve the ODE
exactly, whatever f. For LegT the exact derivative also involves f(t − θ), the
value leaving the window; the ODE replaces it by its reconstruction
Σ_k c_k g_k(t − θ), which is exact when f is a polynomial of degree < N on the
window. LagT uses Laguerre *functions*, orthonormal for ds on the whole past,
which puts 1/2 on the diagonal; weighting the past by e^{−x} dx and using the
polynomials L_n instead gives the same A with 1 on the diagonal. A signal is
zero before time 0.

Discretization (:func:`discrete_transition`). Samples f_k = f(k·dt),
k = 1 … L, and c_k ≈ c(k·dt) after sample k, from c_0 = 0:
c_k = Ā_k c_{k−1} + B̄_k f_k with the bilinear rule of :mod:`ssmlib.discretize`,
Ā = (I − dt A/2)⁻¹(I + dt A/2), B̄ = (I − dt A/2)⁻¹ dt B. For LegT and LagT the
pair is the same at every step. For LegS, A/t is frozen at t = k·dt over step
k, so dt·A/t = A/k and

    Ā_k = (I − A/(2k))⁻¹ (I + A/(2k)),    B̄_k = (I − A/(2k))⁻¹ B/k,

independent of dt (LegS has no time scale). Step 1 is special: the ODE is
singular at t = 0, and its only bounded solution starts from c(0) = f(0)·e_0
(the coefficients of a constant; A e_0 + B = 0). Starting there, with
f(0) ≈ f_1, the k = 1 step above returns c_1 = f_1·e_0, the exact
coefficients of the first sample held over [0, dt]. So Ā_1 = 0 and
B̄_1 = e_0. (The bilinear step from c_0 = 0 instead gives c_1 = (I − A/2)⁻¹B f_1,
whose first coefficient, the mean, is 2/3 f_1; that error decays only like
1/k. Both are first order in dt; on smooth signals the regular start's error
is about 3× smaller.) The scheme, like the LSSL form it follows, uses f_k for
the whole step and is first order in dt.

The kernel (:func:`project`). All signals share the same (Ā_k, B̄_k), so one
step for a block of ``BLOCK_B`` signals is a small matrix product,
C_k = C_{k−1} Ā_kᵀ + f_k B̄_kᵀ with C of shape (BLOCK_B, N): a ``tl.dot`` on
tensor cores. For float32 it runs as ``"tf32x3"`` (each operand split into a
TF32 high part and a TF32 remainder, three products), about 22 correct bits
per product against float32's 24 (measured on the H200: up to ~15× the error
of a float32 PyTorch loop over 2,049 steps, 1e-4 relative at most), three times the
tensor-core work of plain TF32 and still far faster than float32 FMAs. Float64 uses plain float64 products (``"ieee"``).
A program holds its block's state C on chip for the whole sequence; for LegT
and LagT it also loads Ā and B̄ once. For LegS it reads Ā_k, B̄_k (N² + N
numbers, computed in float64 before the launch and cast) at every step. The
programs resident together walk time at about the same pace, so these reads
hit L2; per step they are N/BLOCK_B of the output traffic, and HBM sees all
L pairs once per wave of programs (64 MB a wave at L = 4,096, N = 64, against
69 GB of output). HBM sees each f_k read once and each c_k written once: the
output c (…, L, N) is N times the input and dominates.
"""
from __future__ import annotations

import math
import numbers

import torch
import triton
import triton.language as tl

from . import checks, runtime
from .discretize import discretize

#: The measures :func:`transition` knows.
MEASURES = ("legt", "lagt", "legs")

#: Largest state size :func:`project` accepts (a block's state and Ā stay on chip).
MAX_N = 64

#: ``tl.dot`` precisions :func:`project` can be told to use.
PRECISIONS = ("tf32", "tf32x3", "ieee")

#: dtypes of signals and coefficients.
FLOATS = (torch.float32, torch.float64)


def _check_measure(measure) -> str:
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    return measure


def _positive_float(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(v).__name__}")
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be positive and finite, got {v}")
    return float(v)


def transition(measure: str, N: int, theta: float = 1.0):
    """The HiPPO pair (A, B) of ``measure`` with N coefficients.

    The coefficients follow c' = A c + B f (``legt``, ``lagt``) or
    c' = (A c + B f)/t (``legs``); the normalisations are in the module
    docstring. ``theta`` is the window length of ``legt`` and the time scale
    of ``lagt`` (both A and B scale as 1/θ); ``legs`` has no time scale and
    does not use it.

    Returns:
        ``A (N, N)`` and ``B (N,)``, float64 on the CPU.
    """
    _check_measure(measure)
    checks.positive_int("N", N)
    theta = _positive_float("theta", theta)
    n = torch.arange(N, dtype=torch.float64)
    r = torch.sqrt(2 * n + 1)
    below = n[:, None] > n[None, :]                       # n > k
    if measure == "legs":
        A = torch.where(below, -r[:, None] * r[None, :], 0.0) - torch.diag(n + 1)
        return A, r
    if measure == "legt":
        sign = torch.where(n[:, None] >= n[None, :], 1.0, (-1.0) ** (n[:, None] - n[None, :]))
        return -r[:, None] * sign * r[None, :] / theta, r / theta
    A = torch.where(below, -1.0, 0.0) - torch.eye(N, dtype=torch.float64) / 2   # lagt
    return A / theta, torch.ones(N, dtype=torch.float64) / theta


def discrete_transition(measure: str, N: int, dt: float, L: int, theta: float = 1.0, *,
                        dtype=torch.float64, device="cpu"):
    """The per-step pairs (Ā_k, B̄_k), k = 1 … L, of :func:`project`.

    Computed in float64 (module docstring: bilinear rule; LegS with its
    time-varying steps and regular start), then cast to ``dtype``.

    Returns:
        ``Ab (L, N, N)`` and ``Bb (L, N)``; index k − 1 holds step k. For
        ``legt`` and ``lagt`` they are views of one pair with stride 0 over time.
    """
    A, B = transition(measure, N, theta)
    dt = _positive_float("dt", dt)
    if isinstance(L, bool) or not isinstance(L, int):
        raise TypeError(f"L must be an int, got {type(L).__name__}")
    if L < 0:
        raise ValueError(f"L must be >= 0, got {L}")
    A, B = A.to(device), B.to(device)
    if measure != "legs":
        Ab, Bb = discretize(A, B, dt, "bilinear")
        return Ab.to(dtype).expand(L, N, N), Bb.to(dtype).expand(L, N)
    I = torch.eye(N, dtype=torch.float64, device=device)
    k = torch.arange(1, L + 1, dtype=torch.float64, device=device)[:, None, None]
    M = I - A / (2 * k)                                   # (L, N, N), lower triangular
    Ab = torch.linalg.solve_triangular(M, I + A / (2 * k), upper=False)
    Bb = torch.linalg.solve_triangular(M, B[:, None] / k, upper=False)[..., 0]
    if L:
        Ab[0], Bb[0] = 0.0, I[0]                          # step 1: c_1 = f_1 e_0 (regular start)
    return Ab.to(dtype), Bb.to(dtype)


def project_ref(f, measure: str, N: int, dt: float, theta: float = 1.0):
    """PyTorch reference: the HiPPO coefficients online, as a loop over time.

    Args:
        f: ``(..., L)`` samples f(dt), f(2dt), …, f(L·dt); float32 or float64.
        measure, N, theta: as in :func:`transition`.
        dt: the sampling step.

    Returns:
        ``c (..., L, N)`` in f's dtype: ``c[..., k−1, :]`` are the coefficients
        of the history up to t = k·dt, after sample k.
    """
    checks.tensor("f", f, min_ndim=1, dtypes=FLOATS)
    L = f.shape[-1]
    Ab, Bb = discrete_transition(measure, N, dt, L, theta, dtype=f.dtype, device=f.device)
    c = f.new_zeros(*f.shape[:-1], N)
    out = f.new_empty(*f.shape[:-1], L, N)
    for k in range(L):
        c = c @ Ab[k].T + f[..., k, None] * Bb[k]         # c_k = Ā_k c_{k−1} + B̄_k f_k
        out[..., k, :] = c
    return out


@triton.jit
def _project_kernel(f_ptr, Ab_ptr, Bb_ptr, c_ptr, n_signals, L, N,
                    stride_at, stride_an, stride_aj, stride_bt,
                    TIME_VARYING: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr,
                    EVEN_N: tl.constexpr, PRECISION: tl.constexpr):
    # A program owns BLOCK_B signals; its state C (BLOCK_B, BLOCK_N) stays on chip.
    # Padding (signals ≥ n_signals, states ≥ N) is zero in Ā and B̄, so padded states stay 0.
    b = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    j = tl.arange(0, BLOCK_N)
    b_ok = b < n_signals
    j_ok = (j < N) | EVEN_N          # no column mask when N == BLOCK_N: 16-byte vector stores
    # AT[j, n] = Ā[n, j]: C_k = C_{k−1} @ AT + f_k B̄ᵀ
    at_ptrs = Ab_ptr + j[None, :] * stride_an + j[:, None] * stride_aj
    at_ok = j_ok[:, None] & j_ok[None, :]
    if not TIME_VARYING:
        AT = tl.load(at_ptrs, mask=at_ok, other=0.0)
        Bb = tl.load(Bb_ptr + j, mask=j_ok, other=0.0)
    f_rows = f_ptr + b.to(tl.int64) * L                              # (BLOCK_B,) pointers
    c_rows = c_ptr + b.to(tl.int64) * L * N
    c_ok = b_ok[:, None] & j_ok[None, :]
    C = tl.zeros([BLOCK_B, BLOCK_N], dtype=f_ptr.dtype.element_ty)
    for k in range(L):
        if TIME_VARYING:
            AT = tl.load(at_ptrs + k * stride_at, mask=at_ok, other=0.0)
            Bb = tl.load(Bb_ptr + k * stride_bt + j, mask=j_ok, other=0.0)
        fk = tl.load(f_rows + k, mask=b_ok, other=0.0)      # 8 steps share a row's 32-byte sector (L1)
        C = tl.dot(C, AT, input_precision=PRECISION) + fk[:, None] * Bb[None, :]
        tl.store((c_rows + k * N)[:, None] + j[None, :], C, mask=c_ok)


def _launch_config() -> tuple[int, int]:
    """(signals per program, warps). On the GPU one warpgroup (4 warps) runs
    64-row ``wgmma`` instructions. Compiled for sm_90 with N = 64 (float32,
    tf32x3) a thread needs 160 registers for LegT/LagT, so three programs share
    an SM, and 251 for LegS (Ā_k and its split are reloaded every step), so two
    do; nothing spills. ``tl.dot`` needs blocks of at least 16; in the
    interpreter, the fewest programs win."""
    return (16, 1) if runtime.INTERPRET else (64, 4)


def project(f, measure: str, N: int, dt: float, theta: float = 1.0, *, out=None,
            block_b=None, num_warps=None, input_precision=None):
    """The HiPPO coefficients online, with the Triton kernel (see module docstring).

    Args:
        f: ``(..., L)`` samples f(dt), f(2dt), …, f(L·dt); float32 or float64,
            contiguous, on ``ssmlib.DEVICE``.
        measure: ``"legt"``, ``"lagt"`` or ``"legs"``.
        N: number of coefficients, 1 ≤ N ≤ 64.
        dt: the sampling step (> 0).
        theta: time scale of ``legt``/``lagt`` (> 0), see :func:`transition`.
        out: optional ``(..., L, N)`` contiguous tensor of f's dtype to write into.
        block_b, num_warps, input_precision: override the launch configuration
            (benchmarks, tests): signals per program (a power of two ≥ 16),
            warps, and the ``tl.dot`` precision (default ``"tf32x3"`` for
            float32, ``"ieee"`` for float64).

    Returns:
        ``c (..., L, N)`` in f's dtype, as :func:`project_ref`. Float32 results
        are as close to a float64 computation as the same loop in float32
        (tests: within 4× that error; about 1e-5 relative for LegT/LagT over
        2,000 steps, where Ā is close to I and rounding errors persist).
    """
    _check_measure(measure)
    checks.positive_int("N", N)
    dt, theta = _positive_float("dt", dt), _positive_float("theta", theta)
    checks.tensor("f", f, min_ndim=1, dtypes=FLOATS)
    if N > MAX_N:
        raise ValueError(f"N={N} is too large: the kernel keeps the state on chip and supports N <= {MAX_N}")
    runtime.check_kernel_device("f", f)
    checks.contiguous("f", f)
    L = f.shape[-1]
    if out is None:
        out = f.new_empty(*f.shape[:-1], L, N)
    else:
        checks.tensor("out", out, dtypes=(f.dtype,))
        checks.shape("out", out, (*f.shape[:-1], L, N))
        checks.same_device(f=f, out=out)
        checks.contiguous("out", out)
    bb, nw = _launch_config()
    bb, nw = block_b or bb, num_warps or nw
    if bb < 16 or bb & (bb - 1):
        raise ValueError(f"block_b must be a power of two >= 16, got {bb}")
    precision = input_precision or ("tf32x3" if f.dtype == torch.float32 else "ieee")
    if precision not in PRECISIONS:
        raise ValueError(f"input_precision must be one of {PRECISIONS}, got {precision!r}")
    n_signals = math.prod(f.shape[:-1])
    if n_signals == 0 or L == 0:
        return out
    Ab, Bb = discrete_transition(measure, N, dt, L, theta, dtype=f.dtype, device=f.device)
    runtime.launch(_project_kernel, (runtime.cdiv(n_signals, bb),), (
        f, Ab, Bb, out, n_signals, L, N, *Ab.stride(), Bb.stride(0)), dict(
        TIME_VARYING=measure == "legs", BLOCK_B=bb, BLOCK_N=max(16, runtime.next_pow2(N)),
        EVEN_N=N == max(16, runtime.next_pow2(N)), PRECISION=precision, num_warps=nw))
    return out


def basis(measure: str, N: int, t: float, s, theta: float = 1.0):
    """The basis g_0 … g_{N−1} of ``measure`` at time t, evaluated at times s.

    Args:
        t: the present (> 0 for ``legs``).
        s: 1-D float tensor of times in the support: [t − θ, t] (``legt``),
            [0, t] (``legs``), s ≤ t (``lagt``).

    Returns:
        ``G (len(s), N)`` float64 on s's device, G[i, n] = g_n(s_i), by the
        three-term recurrences of P_n and of the Laguerre functions L_n e^{−x/2}
        (stable: no overflow for large x).
    """
    _check_measure(measure)
    checks.positive_int("N", N)
    theta = _positive_float("theta", theta)
    if isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(t):
        raise TypeError(f"t must be a finite float, got {t!r}")
    t = float(t)
    checks.tensor("s", s, ndim=1, dtypes=FLOATS)
    lo = {"legt": t - theta, "legs": 0.0, "lagt": -math.inf}[measure]
    if measure == "legs" and not t > 0:
        raise ValueError(f"t must be positive for legs, got {t}")
    slack = 1e-9 * (abs(t) + theta)                       # rounding in s
    if s.numel() and not (s.min().item() >= lo - slack and s.max().item() <= t + slack):
        raise ValueError(f"s must lie in [{lo}, {t}] for {measure} at t={t}, "
                         f"got [{s.min().item()}, {s.max().item()}]")
    s = s.double()
    if measure == "lagt":
        x = ((t - s) / theta).clamp_min(0)
        g = [torch.exp(-x / 2), (1 - x) * torch.exp(-x / 2)]
        for n in range(1, N - 1):                         # (n+1) ℓ_{n+1} = (2n+1−x) ℓ_n − n ℓ_{n−1}
            g.append(((2 * n + 1 - x) * g[n] - n * g[n - 1]) / (n + 1))
        return torch.stack(g[:N], dim=-1)
    x = (2 * (s - t) / theta + 1) if measure == "legt" else (2 * s / t - 1)
    x = x.clamp(-1, 1)
    P = [torch.ones_like(x), x]
    for n in range(1, N - 1):                             # (n+1) P_{n+1} = (2n+1) x P_n − n P_{n−1}
        P.append(((2 * n + 1) * x * P[n] - n * P[n - 1]) / (n + 1))
    r = torch.sqrt(2 * torch.arange(N, dtype=torch.float64, device=s.device) + 1)
    return torch.stack(P[:N], dim=-1) * r


def reconstruct(c, measure: str, t: float, s, theta: float = 1.0):
    """The approximation Σ_n c_n g_n(s) of the history, from coefficients held at time t.

    Args:
        c: ``(..., N)`` coefficients at time t (float32 or float64), e.g. one
            step ``project(f, …)[..., k−1, :]`` with t = k·dt.
        measure, theta: as for the projection that made c.
        t: the time the coefficients belong to.
        s: 1-D tensor of times in the support (see :func:`basis`), on c's device.

    Returns:
        ``(..., len(s))`` in c's dtype.
    """
    checks.tensor("c", c, min_ndim=1, dtypes=FLOATS)
    checks.tensor("s", s, ndim=1, dtypes=FLOATS)
    checks.same_device(c=c, s=s)
    G = basis(measure, c.shape[-1], t, s, theta)
    return c @ G.T.to(c.dtype)

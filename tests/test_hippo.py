"""HiPPO: the (A, B) pairs, the online projection (reference and Triton kernel), reconstruction.

Independent checks: sympy integrates the coefficients of polynomial signals
exactly and verifies that they solve c' = A c + B f with transition()'s (A, B);
(A, B) are also recovered from the definitions of the
coefficients by quadrature (NumPy's Legendre/Laguerre, not ssmlib.hippo.basis)
and finite differences in time; the reference projection converges to the
quadrature projection as dt → 0 (first order); the kernel matches the
reference, and is compiled for sm_90 in a subprocess (what the interpreter
cannot check: tensor-core instructions, shared memory). Tolerances: float64 kernel vs float64 reference 1e-12 (relative,
max-norm); float32 kernel vs float64 reference 1e-5 in the interpreter; on the
GPU (tf32x3 tensor-core products, about 22 correct bits per product against
float32's 24) below 2e-4 and within 20× the error of a float32 PyTorch loop:
measured on the H200 over 2,049 steps, 5–19× that loop's error, at most
1.1e-4 (LegT, N = 64).
"""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import ssmlib
from ssmlib.hippo import (MAX_N, MEASURES, basis, discrete_transition, project, project_ref,
                          reconstruct, transition)

DEV = ssmlib.DEVICE
THETA = {"legt": 0.7, "lagt": 0.1, "legs": 1.0}   # lagt: see test_reconstruction_error_falls_with_N


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def numpy_basis(measure, N, t, s, theta):
    """g_n(s) from NumPy's polynomial modules: (len(s), N)."""
    eye = np.eye(N)
    if measure == "lagt":
        x = (t - s) / theta
        return np.stack([np.polynomial.laguerre.lagval(x, eye[n]) for n in range(N)], -1) * np.exp(-x / 2)[:, None]
    x = 2 * (s - t) / theta + 1 if measure == "legt" else 2 * s / t - 1
    return np.stack([np.polynomial.legendre.legval(x, eye[n]) for n in range(N)], -1) * np.sqrt(2 * np.arange(N) + 1)


def support(measure, t, theta):
    return {"legt": (t - theta, t), "legs": (0.0, t), "lagt": (0.0, t)}[measure]   # lagt: f = 0 before 0


def coefficients(f, measure, N, t, theta, nodes=80):
    """c_n(t) = ∫ f g_n dμ_t by Gauss–Legendre quadrature on the support (f = 0 before time 0)."""
    a, b = support(measure, t, theta)
    x, w = np.polynomial.legendre.leggauss(nodes)
    s = a + (b - a) * (x + 1) / 2
    density = 1 / t if measure == "legs" else 1 / theta
    return (w * f(s) * (b - a) / 2 * density) @ numpy_basis(measure, N, t, s, theta)


# ---------------------------------------------------------------- transition
def test_small_cases():
    r3, r5 = math.sqrt(3), math.sqrt(5)
    A, B = transition("legs", 3)
    assert torch.allclose(A, torch.tensor([[-1, 0, 0], [-r3, -2, 0], [-r5, -r3 * r5, -3.0]], dtype=torch.float64))
    assert torch.allclose(B, torch.tensor([1, r3, r5], dtype=torch.float64))
    A, B = transition("legt", 2, theta=2.0)
    assert torch.allclose(A, torch.tensor([[-1, r3], [-r3, -3.0]], dtype=torch.float64) / 2)
    assert torch.allclose(B, torch.tensor([1, r3], dtype=torch.float64) / 2)
    A, B = transition("lagt", 3, theta=4.0)
    assert torch.equal(A, torch.tensor([[-0.5, 0, 0], [-1, -0.5, 0], [-1, -1, -0.5]], dtype=torch.float64) / 4)
    assert torch.equal(B, torch.full((3,), 0.25, dtype=torch.float64))
    for m in MEASURES:
        A, B = transition(m, 1)
        assert A.shape == (1, 1) and B.shape == (1,) and A.dtype == B.dtype == torch.float64


@pytest.mark.parametrize("measure", MEASURES)
def test_transition_recovered_from_the_definition(measure):
    """Fit the exact dynamics of c(t) = ∫ f g_n dμ_t for N + 2 inputs f (the basis
    functions g_0 … g_{N+1} at time t, two of them outside the span): c by
    quadrature, dc/dt by a 5-point finite difference. LegS and LagT are exact:
    c' = A c + B f(t) (LegS: divided by t). LegT is exact with the true f(t − θ):
    c' = A' c + B f(t) + E f(t − θ); HiPPO replaces f(t − θ) by its
    reconstruction Σ_k c_k g_k(t − θ), so A = A' + E g(t − θ)ᵀ."""
    N, theta = 6, THETA[measure]
    t = {"legt": 2.0, "lagt": 3.0, "legs": 1.3}[measure]
    inputs = [lambda s, m=m: numpy_basis(measure, N + 2, t, np.atleast_1d(s), theta)[:, m] for m in range(N + 2)]
    h = 3e-4
    X, D = [], []
    for f in inputs:
        c = [coefficients(f, measure, N, t + i * h, theta) for i in (-2, -1, 0, 1, 2)]
        X.append(np.concatenate([c[2], f(t), f(t - theta) if measure == "legt" else []]))
        D.append((c[0] - 8 * c[1] + 8 * c[3] - c[4]) / (12 * h))
    fit = np.linalg.lstsq(np.array(X), np.array(D), rcond=None)[0].T   # dc/dt = fit @ regressors
    if measure == "legs":
        fit *= t
    A_fit, B_fit = fit[:, :N], fit[:, N]
    if measure == "legt":
        A_fit = A_fit + np.outer(fit[:, N + 1], numpy_basis("legt", N, t, np.array([t - theta]), theta)[0])
    A, B = transition(measure, N, theta)
    assert np.abs(A_fit - A.numpy()).max() < 1e-8 * np.abs(A.numpy()).max()
    assert np.abs(B_fit - B.numpy()).max() < 1e-8 * np.abs(B.numpy()).max()


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("N", [1, 8, 64])
def test_stable(measure, N):
    A, _ = transition(measure, N, theta=0.3)
    assert torch.linalg.eigvals(A).real.max() < 0


@pytest.mark.parametrize("measure", MEASURES)
def test_basis_is_orthonormal_and_matches_numpy(measure):
    N, theta, t = 12, THETA[measure], 2.5
    a, b = support(measure, t, theta)
    if measure == "lagt":
        a = t - 200 * theta                                    # the tail beyond is below 1e-20
    x, w = np.polynomial.legendre.leggauss(400)
    s = a + (b - a) * (x + 1) / 2
    G = basis(measure, N, t, torch.from_numpy(s), theta).numpy()
    assert np.abs(G - numpy_basis(measure, N, t, s, theta)).max() < 1e-9
    density = 1 / t if measure == "legs" else 1 / theta
    gram = (G * (w * (b - a) / 2 * density)[:, None]).T @ G
    assert np.abs(gram - np.eye(N)).max() < 1e-9


def test_laguerre_functions_do_not_overflow():
    G = basis("lagt", 64, 3000.0, torch.tensor([0.0, 2000.0, 2900.0, 3000.0], dtype=torch.float64))
    assert torch.isfinite(G).all() and G.abs().max() <= 1


# ---------------------------------------------------------------- discretization and reference
@pytest.mark.parametrize("measure", ["legt", "lagt"])
def test_reference_is_the_bilinear_recurrence(measure):
    N, dt, L = 5, 0.03, 40
    A, B = transition(measure, N, THETA[measure])
    Ab, Bb = ssmlib.discretize(A, B, dt, "bilinear")
    f = torch.randn(3, L, dtype=torch.float64)
    c, cs = torch.zeros(3, N, dtype=torch.float64), []
    for k in range(L):
        c = c @ Ab.T + f[:, k, None] * Bb
        cs.append(c)
    assert rel_err(project_ref(f, measure, N, dt, THETA[measure]), torch.stack(cs, 1)) < 1e-13


def test_legs_steps():
    """Ā_k, B̄_k as the bilinear rule with dt·A/t = A/k; step 1 is c_1 = f_1 e_0;
    a constant signal has coefficients f·e_0 at every step."""
    N, L = 6, 9
    A, B = transition("legs", N)
    Ab, Bb = discrete_transition("legs", N, 0.1, L)
    I = torch.eye(N, dtype=torch.float64)
    for k in range(2, L + 1):
        M = I - A / (2 * k)
        assert torch.allclose(M @ Ab[k - 1], I + A / (2 * k), atol=1e-13)
        assert torch.allclose(M @ Bb[k - 1], B / k, atol=1e-13)
    assert torch.equal(Ab[0], torch.zeros(N, N, dtype=torch.float64)) and torch.equal(Bb[0], I[0])
    c = project_ref(torch.full((L,), 2.5, dtype=torch.float64), "legs", N, 0.1)
    assert torch.allclose(c, 2.5 * I[0].expand(L, N), atol=1e-13)


def smooth(s):
    """Smooth, and flat at s = 0 (the signal is zero before time 0)."""
    s = np.asarray(s, dtype=np.float64)
    return (1 - np.cos(s)) ** 2 * np.cos(2 * s) + 0.3 * np.sin(3 * s) ** 3


@pytest.mark.parametrize("measure", MEASURES)
def test_reference_converges_to_the_projection(measure):
    """project_ref at t = T approaches the quadrature coefficients, first order in dt."""
    N, T, theta = 16, 3.0, THETA[measure]
    exact = coefficients(smooth, measure, N, T, theta)
    errs = []
    for L in (300, 600, 1200):
        dt = T / L
        f = torch.from_numpy(smooth(dt * np.arange(1, L + 1)))
        errs.append(np.abs(project_ref(f, measure, N, dt, theta)[-1].numpy() - exact).max())
    assert errs[-1] < 1e-2 * np.abs(exact).max()
    assert errs[1] < 0.6 * errs[0] and errs[2] < 0.6 * errs[1], errs


# ---------------------------------------------------------------- reconstruction
@pytest.mark.parametrize("measure", MEASURES)
def test_reconstruction_error_falls_with_N(measure):
    """Quadrature coefficients → reconstruct. Legendre converges fast for a smooth f.
    LagT expands the whole past (f = 0 before 0, only C² there) in Laguerre
    functions of x = (t − s)/θ; it converges slowly, and only once x spans enough of
    their zeros: hence θ = 0.1 (x up to 30) and a looser bound on the recent past."""
    theta, t = THETA[measure], 3.0
    a, b = support(measure, t, theta)
    if measure == "lagt":
        a = t - 2.0                                            # the recent past
    s = torch.linspace(a, b, 101, dtype=torch.float64)
    errs = []
    for N in (4, 8, 16, 32):
        c = torch.from_numpy(coefficients(smooth, measure, N, t, theta, nodes=200))
        errs.append((reconstruct(c, measure, t, s, theta) - torch.from_numpy(smooth(s.numpy()))).abs().max().item())
    assert all(e1 < e0 for e0, e1 in zip(errs, errs[1:])), errs
    assert errs[-1] < {"legt": 1e-10, "legs": 1e-6, "lagt": 1e-2}[measure], errs


@pytest.mark.parametrize("measure", MEASURES)
def test_reconstruct_of_project(measure):
    """f → project → reconstruct at the last step ≈ f on the support (N = 32, dt = 1/500)."""
    N, T, L, theta = 32, 3.0, 1500, THETA[measure]
    dt = T / L
    s_all = dt * np.arange(1, L + 1)
    f = torch.from_numpy(smooth(s_all)).expand(2, L).contiguous()
    c = project_ref(f, measure, N, dt, theta)[:, -1]
    a, b = support(measure, T, theta)
    if measure == "lagt":
        a = T - 2.0
    s = torch.linspace(a, b, 50, dtype=torch.float64)
    g = reconstruct(c, measure, T, s, theta)
    assert g.shape == (2, 50)
    assert (g - torch.from_numpy(smooth(s.numpy()))).abs().max() < 2e-2


# ---------------------------------------------------------------- the kernel
SHAPES = [(), (3,), (2, 5)]


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("N", [1, 3, 8, 17])
@pytest.mark.parametrize("L", [1, 7, 100])
def test_kernel_matches_reference_float64(measure, N, L):
    lead = SHAPES[(N + L) % 3]
    f = torch.randn(*lead, L, dtype=torch.float64, device=DEV)
    c = project(f, measure, N, 0.05, THETA[measure])
    assert c.shape == (*lead, L, N) and c.dtype == torch.float64
    assert rel_err(c, project_ref(f, measure, N, 0.05, THETA[measure])) < 1e-12


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("N", [16, 64])
def test_kernel_full_block(measure, N):
    """N = BLOCK_N: the kernel drops the column mask; 21 signals, not a multiple of the block."""
    f = torch.randn(21, 13, dtype=torch.float64, device=DEV)
    c = project(f, measure, N, 0.05, THETA[measure])
    assert rel_err(c, project_ref(f, measure, N, 0.05, THETA[measure])) < 1e-12


@pytest.mark.parametrize("measure", MEASURES)
def test_kernel_float32(measure):
    """37 signals (not a multiple of the block), N = 17, odd L."""
    f = torch.randn(37, 51, dtype=torch.float64, device=DEV)
    ref = project_ref(f, measure, 17, 0.02, THETA[measure])
    c = project(f.float(), measure, 17, 0.02, THETA[measure])
    assert c.dtype == torch.float32
    assert rel_err(c, ref) < 1e-5


def test_kernel_writes_every_output():
    f = torch.randn(19, 9, device=DEV)
    out = torch.full((19, 9, 5), float("nan"), device=DEV)
    c = project(f, "legs", 5, 0.1, out=out)
    assert c is out and torch.isfinite(out).all()
    assert rel_err(out, project_ref(f.double(), "legs", 5, 0.1)) < 1e-5


def test_empty_inputs():
    assert project(torch.randn(0, 5, device=DEV), "legt", 3, 0.1).shape == (0, 5, 3)
    assert project(torch.randn(4, 0, device=DEV), "legs", 3, 0.1).shape == (4, 0, 3)
    assert project_ref(torch.randn(4, 0), "legs", 3, 0.1).shape == (4, 0, 3)


# ---------------------------------------------------------------- bad input
def _f():
    return torch.randn(2, 6, device=DEV)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: transition("legx", 4), ValueError, "measure must be one of"),
    (lambda: transition("legs", 0), ValueError, "N must be >= 1"),
    (lambda: transition("legs", 2.0), TypeError, "N must be an int"),
    (lambda: transition("legt", 4, theta=0.0), ValueError, "theta must be positive"),
    (lambda: transition("legt", 4, theta=float("nan")), ValueError, "theta must be positive"),
    (lambda: project(_f(), "legt", 4, 0.0), ValueError, "dt must be positive"),
    (lambda: project(_f(), "legt", 4, -1.0), ValueError, "dt must be positive"),
    (lambda: project(_f(), "legt", 4, "0.1"), TypeError, "dt must be a float"),
    (lambda: project(_f(), "legt", 4, 0.1, theta=-2.0), ValueError, "theta must be positive"),
    (lambda: project(_f(), "lag", 4, 0.1), ValueError, "measure must be one of"),
    (lambda: project(_f(), "legs", 0, 0.1), ValueError, "N must be >= 1"),
    (lambda: project(_f(), "legs", MAX_N + 1, 0.1), ValueError, "N <= 64"),
    (lambda: project(_f().to(torch.complex64), "legs", 4, 0.1), TypeError, "f has dtype"),
    (lambda: project(_f().int(), "legs", 4, 0.1), TypeError, "f has dtype"),
    (lambda: project(_f().half(), "legs", 4, 0.1), TypeError, "f has dtype"),
    (lambda: project(_f().t(), "legs", 4, 0.1), ValueError, "f must be contiguous"),
    (lambda: project(torch.tensor(1.0, device=DEV), "legs", 4, 0.1), ValueError, "f must have at least 1 dims"),
    (lambda: project(_f().tolist(), "legs", 4, 0.1), TypeError, "f must be a torch.Tensor"),
    (lambda: project(_f(), "legs", 4, 0.1, out=torch.empty(2, 6, 3, device=DEV)), ValueError, "out must have shape"),
    (lambda: project(_f(), "legs", 4, 0.1, out=torch.empty(2, 6, 4, device=DEV).double()), TypeError, "out has dtype"),
    (lambda: project(_f(), "legs", 4, 0.1, out=torch.empty(2, 4, 6, device=DEV).transpose(1, 2)), ValueError,
     "out must be contiguous"),
    (lambda: project(_f(), "legs", 4, 0.1, block_b=8), ValueError, "block_b"),
    (lambda: project(_f(), "legs", 4, 0.1, input_precision="bf16"), ValueError, "input_precision"),
    (lambda: project_ref(_f().to(torch.complex128), "legs", 4, 0.1), TypeError, "f has dtype"),
    (lambda: project_ref(_f(), "legs", 4, 0.0), ValueError, "dt must be positive"),
    (lambda: reconstruct(torch.randn(4).to(torch.complex64), "legs", 1.0, torch.rand(3)), TypeError, "c has dtype"),
    (lambda: reconstruct(torch.randn(4), "legs", 1.0, torch.rand(3, 1)), ValueError, "s must have 1 dims"),
    (lambda: reconstruct(torch.randn(4), "legs", 0.0, torch.zeros(1)), ValueError, "t must be positive"),
    (lambda: reconstruct(torch.randn(4), "legs", 1.0, torch.tensor([0.5, 1.5])), ValueError, "s must lie in"),
    (lambda: reconstruct(torch.randn(4), "legt", 3.0, torch.tensor([1.0]), theta=1.0), ValueError, "s must lie in"),
    (lambda: reconstruct(torch.randn(4), "lagt", 3.0, torch.tensor([3.5])), ValueError, "s must lie in"),
    (lambda: reconstruct(torch.randn(4), "legs", "1", torch.rand(3)), TypeError, "t must be"),
    (lambda: reconstruct(torch.randn(4), "leg", 1.0, torch.rand(3)), ValueError, "measure must be one of"),
    (lambda: reconstruct(torch.randn(4), "legs", 1.0, torch.rand(3, device="meta")), ValueError, "s is on"),
])
def test_bad_input_names_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_wrong_device():
    other = "cuda" if DEV == "cpu" and torch.cuda.is_available() else ("meta" if DEV == "cpu" else "cpu")
    with pytest.raises(ValueError, match="f is on"):
        project(_f().to(other), "legs", 4, 0.1)
    with pytest.raises(ValueError, match="out is on"):
        project(_f(), "legs", 4, 0.1, out=torch.empty(2, 6, 4, device=other))


# ---------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("N", [1, 17, 64])
def test_gpu_matches_reference(measure, N):
    """float32 kernel (tf32x3 tensor-core products) near float32 level (see the module docstring); float64 exact."""
    f = torch.randn(3, 173, 2049, dtype=torch.float64, device=DEV)
    ref = project_ref(f, measure, N, 1e-3, THETA[measure])
    assert rel_err(project(f, measure, N, 1e-3, THETA[measure]), ref) < 1e-12
    loop32 = rel_err(project_ref(f.float(), measure, N, 1e-3, THETA[measure]), ref)
    err = rel_err(project(f.float(), measure, N, 1e-3, THETA[measure]), ref)
    assert err < 2e-4 and err < 20 * loop32 + 1e-6, (err, loop32)


@pytest.mark.gpu
@pytest.mark.parametrize("measure", MEASURES)
def test_gpu_every_launch_config(measure):
    f = torch.randn(1000, 257, device=DEV)
    ref = project_ref(f.double(), measure, 64, 1e-2, THETA[measure])
    for bb, nw in ((64, 4), (64, 8), (128, 8), (32, 4), (16, 1)):
        for precision in ("tf32x3", "ieee"):
            c = project(f, measure, 64, 1e-2, THETA[measure], block_b=bb, num_warps=nw, input_precision=precision)
            assert rel_err(c, ref) < 1e-4, (bb, nw, precision)


@pytest.mark.gpu
def test_gpu_offsets_beyond_int32():
    """More than 2^31 output elements (8.6 GB): the last signals are still right."""
    n, L, N = 32768, 1025, 64
    f = torch.randn(n, L, device=DEV)
    c = project(f, "legs", N, 1e-3)
    assert c.numel() > 2**31
    assert rel_err(c[-3:], project_ref(f[-3:].double(), "legs", N, 1e-3)) < 1e-4


COMPILE_FOR_SM90 = r"""
from ssmlib.bench import compile_sm90
from ssmlib.hippo import _project_kernel
for dtype, time_varying, block_n, precision in [("fp32", False, 64, "tf32x3"), ("fp32", True, 64, "tf32x3"),
                                                ("fp32", True, 32, "tf32x3"), ("fp64", True, 64, "ieee")]:
    ptr = "*" + dtype
    signature = {"f_ptr": ptr, "Ab_ptr": ptr, "Bb_ptr": ptr, "c_ptr": ptr, "n_signals": "i32", "L": "i32",
                 "N": "i32", "stride_at": "i32", "stride_an": "i32", "stride_aj": "i32", "stride_bt": "i32"}
    constexprs = {"TIME_VARYING": time_varying, "BLOCK_B": 64, "BLOCK_N": block_n, "EVEN_N": block_n == 64,
                  "PRECISION": precision}
    k, stats = compile_sm90(_project_kernel, signature, constexprs, num_warps=4)
    mma = "wgmma" in k.asm["ptx"] if dtype == "fp32" else "mma.sync" in k.asm["ptx"]
    print(dtype, time_varying, block_n, mma, stats["shared_bytes"])
"""


def test_kernel_compiles_for_sm90(tmp_path):
    """The interpreter misses what only the compiler checks: compile the kernel for an
    H100/H200 (sm_90) in a subprocess without the interpreter. float32 must use tensor
    cores (wgmma), float64 mma.sync, and shared memory must fit (227 KB)."""
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", COMPILE_FOR_SM90], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.split("\n")[:-1]
    assert len(lines) == 4
    for line in lines:
        *_, mma, shared = line.split()
        assert mma == "True" and int(shared) <= 227 * 1024, line


# ---------------------------------------------------------------- sympy: the ODE from the definitions
@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("N", [1, 2, 4])
def test_transition_solves_the_projection_ode_symbolically(measure, N):
    """Exact symbolic check, independent of the chapter's derivation: for a polynomial f,
    compute c_n(t) = ∫ f g_n dμ_t with sympy and verify c'(t) = A c + B f(t)
    (LegS: divided by t). LegS and LagT are exact for any f (degree N + 1 here);
    LegT for f of degree < N, where the window's left end is reconstructed exactly."""
    import sympy as sp

    t, s, x = sp.symbols("t s x", positive=True)
    theta = sp.Rational(7, 10)
    rng = np.random.default_rng(N)
    degree = N - 1 if measure == "legt" else N + 1
    f = sum(sp.Rational(int(rng.integers(-9, 10)), int(rng.integers(1, 9))) * s**i for i in range(degree + 1))
    c = []
    for n in range(N):
        if measure == "legs":
            g = sp.sqrt(2 * n + 1) * sp.legendre(n, 2 * s / t - 1)
            c.append(sp.integrate(f * g, (s, 0, t)) / t)
        elif measure == "legt":
            g = sp.sqrt(2 * n + 1) * sp.legendre(n, 2 * (s - t) / theta + 1)
            c.append(sp.integrate(f * g, (s, t - theta, t)) / theta)
        else:   # s = t − θx
            g = sp.laguerre(n, x) * sp.exp(-x / 2)
            c.append(sp.integrate(f.subs(s, t - theta * x) * g, (x, 0, sp.oo)))
    A, B = transition(measure, N, theta=float(theta))
    A, B = sp.Matrix(A.tolist()), sp.Matrix(B.tolist())
    c = sp.Matrix(c)
    rhs = A * c + B * f.subs(s, t)
    residual = c.diff(t) - (rhs / t if measure == "legs" else rhs)
    for t0 in (sp.Rational(1, 3), sp.Integer(2), sp.Rational(11, 2)):
        r = np.array([float(v) for v in residual.subs(t, t0).evalf()])
        # size of the terms that cancel: |A| |c| + |B| |f| (A and B are float64)
        c0 = np.abs([float(v) for v in c.subs(t, t0).evalf()])
        scale = np.abs(np.array(A.tolist(), dtype=float)) @ c0 + np.abs(np.array(B.tolist(), dtype=float)).ravel() \
            * abs(float(f.subs(s, t0)))
        assert (np.abs(r) <= 1e-10 * scale.max()).all(), (t0, r, scale)   # a wrong entry gives O(1)

r"""The recurrent view of a discrete linear time-invariant system.

H independent single-input single-output systems, one per channel h,

    x_k = A x_{k-1} + B u_k,        y_k = C x_k + D u_k,        x_{-1} = x0 (default 0),

run over a batch of input sequences ``u (batch, H, L)``.
:func:`linear_recurrence_ref` is the plain PyTorch loop the book explains;
:func:`linear_recurrence` runs the same recurrence as a Triton kernel.

The kernel. A program owns ``BLOCK_H`` channels of one batch element. It
loads their A, B, C and D once, keeps the states on chip for the whole
sequence, and walks k = 0 … L−1 reading each u_k once and writing each y_k
once: the minimum traffic, 2·L numbers per sequence. A step is a small
matrix-vector product. A product ``sum(A * x, axis)`` returns x along the axis
it did *not* reduce, so a naive loop would move x between register layouts at
every step. The kernel avoids that by holding A twice, as A[i, j] and as
A[j, i] on the same grid: an even step reduces over axis 1 and leaves x along
axis 0; the odd step uses the transposed copy, reduces over axis 0 and puts x
back along axis 1. Two steps per loop iteration, no layout conversion. For
small N each thread holds whole channels, so the sums are plain in-register
FMA chains (see ``_launch_config``).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import checks, runtime

#: Largest state size the kernel accepts (A is kept on chip twice per sequence).
MAX_N = 64


def linear_recurrence_ref(A, B, C, u, D=None, x0=None, return_final_state=False):
    """PyTorch reference: the recurrence as a Python loop over time.

    Shapes: ``A (H, N, N)``, ``B (H, N)``, ``C (H, N)``, ``D (H,)``,
    ``u (batch, H, L)``, ``x0 (batch, H, N)`` → ``y (batch, H, L)``
    (and the final state ``x_{L-1} (batch, H, N)``). Computes in u's dtype.
    """
    batch, H, L = u.shape
    x = torch.zeros(batch, H, A.shape[-1], dtype=u.dtype, device=u.device) if x0 is None else x0
    ys = []
    for k in range(L):
        x = torch.einsum("hij,bhj->bhi", A, x) + B * u[:, :, k, None]   # x_k = A x_{k-1} + B u_k
        ys.append((C * x).sum(-1))                                       # C x_k
    y = torch.stack(ys, dim=-1) if L else u.new_zeros(batch, H, 0)
    if D is not None:
        y = y + D[:, None] * u                                           # + D u_k
    return (y, x) if return_final_state else y


@triton.jit
def _linear_recurrence_kernel(
        A_ptr, B_ptr, C_ptr, D_ptr, u_ptr, x0_ptr, y_ptr, xT_ptr,
        H, L, N, stride_ah, stride_ai, stride_aj, stride_bh, stride_bn,
        HAS_D: tl.constexpr, HAS_X0: tl.constexpr, STORE_FINAL: tl.constexpr,
        BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr):
    # A program owns BLOCK_H channels h of one batch element b. Tiles are shaped
    # (state, state, channel), channels along the last axis.
    n_hblocks = tl.cdiv(H, BLOCK_H)
    b = tl.program_id(0) // n_hblocks
    h = (tl.program_id(0) % n_hblocks) * BLOCK_H + tl.arange(0, BLOCK_H)
    h3 = h[None, None, :]                                     # (1, 1, BH)
    ok3 = h3 < H
    seq3 = b.to(tl.int64) * H + h3                            # sequence index b·H + h
    i3 = tl.arange(0, BLOCK_N)[:, None, None]                 # state index along axis 0
    j3 = tl.arange(0, BLOCK_N)[None, :, None]                 # state index along axis 1
    acc = tl.float64 if u_ptr.dtype.element_ty == tl.float64 else tl.float32

    # A twice: A_row[i, j, h] = A[h, i, j] (reduce axis 1), A_col[j, i, h] = A[h, i, j] (reduce axis 0).
    m_ij = ok3 & (i3 < N) & (j3 < N)
    A_row = tl.load(A_ptr + h3 * stride_ah + i3 * stride_ai + j3 * stride_aj, mask=m_ij, other=0.0).to(acc)
    A_col = tl.load(A_ptr + h3 * stride_ah + j3 * stride_ai + i3 * stride_aj, mask=m_ij, other=0.0).to(acc)
    # B and C along axis 0 (after an even step) and along axis 1 (after an odd one).
    m_i, m_j = ok3 & (i3 < N), ok3 & (j3 < N)
    B_i = tl.load(B_ptr + h3 * stride_bh + i3 * stride_bn, mask=m_i, other=0.0).to(acc)
    B_j = tl.load(B_ptr + h3 * stride_bh + j3 * stride_bn, mask=m_j, other=0.0).to(acc)
    C_i = tl.load(C_ptr + h3 * stride_bh + i3 * stride_bn, mask=m_i, other=0.0).to(acc)
    C_j = tl.load(C_ptr + h3 * stride_bh + j3 * stride_bn, mask=m_j, other=0.0).to(acc)
    if HAS_D:
        D = tl.load(D_ptr + h3, mask=ok3, other=0.0).to(acc)  # (1, 1, BH)
    if HAS_X0:
        x = tl.load(x0_ptr + seq3 * N + j3, mask=m_j, other=0.0).to(acc)   # (1, N, BH)
    else:
        x = tl.zeros([1, BLOCK_N, BLOCK_H], dtype=acc)

    u_row = u_ptr + seq3 * L                                  # (1, 1, BH) pointers
    y_row = y_ptr + seq3 * L
    # Time in chunks of CHUNK steps: each thread reads its channel's next CHUNK
    # inputs as one vector load, runs the steps on registers, and writes CHUNK
    # outputs as one vector store.
    t3 = tl.arange(0, CHUNK)[:, None, None]                   # (T, 1, 1)
    L_chunks = L - L % CHUNK
    for k in range(0, L_chunks, CHUNK):
        U = tl.load(u_row + k + t3, mask=ok3, other=0.0).to(acc)          # (T, 1, BH)
        Y = tl.zeros([CHUNK, 1, BLOCK_H], dtype=acc)
        for t in tl.static_range(0, CHUNK, 2):
            u0 = tl.sum(tl.where(t3 == t, U, 0.0), axis=0, keep_dims=True)      # u_{k+t}
            u1 = tl.sum(tl.where(t3 == t + 1, U, 0.0), axis=0, keep_dims=True)  # u_{k+t+1}
            # even step: x along axis 1 -> x along axis 0
            xi = tl.sum(A_row * x, axis=1, keep_dims=True) + B_i * u0    # (N, 1, BH)
            Y = tl.where(t3 == t, tl.sum(C_i * xi, axis=0, keep_dims=True), Y)
            # odd step: x along axis 0 -> x along axis 1
            x = tl.sum(A_col * xi, axis=0, keep_dims=True) + B_j * u1    # (1, N, BH)
            Y = tl.where(t3 == t + 1, tl.sum(C_j * x, axis=1, keep_dims=True), Y)
        if HAS_D:
            Y += D * U
        tl.store(y_row + k + t3, Y.to(y_ptr.dtype.element_ty), mask=ok3)

    for k in range(L_chunks, L - 1, 2):  # the last L % CHUNK steps, two at a time
        u0 = tl.load(u_row + k, mask=ok3, other=0.0).to(acc)
        u1 = tl.load(u_row + k + 1, mask=ok3, other=0.0).to(acc)
        xi = tl.sum(A_row * x, axis=1, keep_dims=True) + B_i * u0
        y0 = tl.sum(C_i * xi, axis=0, keep_dims=True)
        x = tl.sum(A_col * xi, axis=0, keep_dims=True) + B_j * u1
        y1 = tl.sum(C_j * x, axis=1, keep_dims=True)
        if HAS_D:
            y0 += D * u0
            y1 += D * u1
        tl.store(y_row + k, y0.to(y_ptr.dtype.element_ty), mask=ok3)
        tl.store(y_row + k + 1, y1.to(y_ptr.dtype.element_ty), mask=ok3)

    if L % 2 == 1:  # one even step left; the final state ends along axis 0
        u0 = tl.load(u_row + L - 1, mask=ok3, other=0.0).to(acc)
        xi = tl.sum(A_row * x, axis=1, keep_dims=True) + B_i * u0
        y0 = tl.sum(C_i * xi, axis=0, keep_dims=True)
        if HAS_D:
            y0 += D * u0
        tl.store(y_row + L - 1, y0.to(y_ptr.dtype.element_ty), mask=ok3)
        if STORE_FINAL:
            tl.store(xT_ptr + seq3 * N + i3, xi.to(xT_ptr.dtype.element_ty), mask=m_i)
    else:
        if STORE_FINAL:
            tl.store(xT_ptr + seq3 * N + j3, x.to(xT_ptr.dtype.element_ty), mask=m_j)


def _launch_config(N: int) -> tuple[bool, int, int, int]:
    """(channels_last, channels per program, warps, time chunk) for state size N.

    ``channels_last``: hand the kernel A as an (N, N, H) array, so that
    neighbouring channels are neighbours in memory; Triton then gives each
    thread one channel and every sum over the state is an in-register FMA
    chain (no shuffles, no shared memory). That wins while a thread can hold A
    twice in registers (N ≤ 8); beyond, A stays (H, N, N) and the state is
    spread over the threads of a warp. Measured on the H200 with
    ``python -m ssmlib.bench recurrence --sweep`` (book/results/). In the
    interpreter, fewer and larger programs are faster.
    """
    if runtime.INTERPRET:
        return True, 64, 1, 4
    if N <= 8:
        return True, 64, 2, 8
    if N <= 16:
        return False, 8, 1, 4
    if N <= 32:
        return False, 4, 1, 4
    return False, 1, 4, 4


def linear_recurrence(A, B, C, u, D=None, x0=None, return_final_state=False, *,
                      channels_last=None, block_h=None, num_warps=None, chunk_steps=None):
    """Run H discrete SISO systems over a batch of sequences with the Triton kernel.

    Computes ``x_k = A x_{k-1} + B u_k``, ``y_k = C x_k + D u_k`` for every
    batch element and channel, starting from ``x0`` (zeros if None).

    Args:
        A: ``(H, N, N)`` state matrices, N ≤ 64.
        B: ``(H, N)`` input vectors.
        C: ``(H, N)`` output vectors.
        u: ``(batch, H, L)`` inputs.
        D: ``(H,)`` feed-through, optional.
        x0: ``(batch, H, N)`` initial states, optional.
        return_final_state: also return ``x_{L-1}``.
        channels_last, block_h, num_warps, chunk_steps: override the launch
            configuration (benchmarks and tests; see ``_launch_config``).

    All tensors share one dtype (float16, bfloat16, float32 or float64) and the
    device the kernels run on (``ssmlib.DEVICE``), and must be contiguous.
    Arithmetic is float32 (float64 for float64 inputs).

    Returns:
        ``y (batch, H, L)`` in u's dtype, and ``x_{L-1} (batch, H, N)`` if asked.
    """
    checks.tensor("u", u, ndim=3, dtypes=checks.REAL_DTYPES)
    checks.tensor("A", A, ndim=3, dtypes=(u.dtype,))
    checks.tensor("B", B, ndim=2, dtypes=(u.dtype,))
    checks.tensor("C", C, ndim=2, dtypes=(u.dtype,))
    batch, H, L = u.shape
    N = A.shape[-1]
    checks.shape("A", A, (H, N, N))
    checks.shape("B", B, (H, N))
    checks.shape("C", C, (H, N))
    if N > MAX_N:
        raise ValueError(f"A has state size N={N}; the kernel keeps A on chip and supports N <= {MAX_N}")
    if D is not None:
        checks.tensor("D", D, ndim=1, dtypes=(u.dtype,))
        checks.shape("D", D, (H,))
    if x0 is not None:
        checks.tensor("x0", x0, ndim=3, dtypes=(u.dtype,))
        checks.shape("x0", x0, (batch, H, N))
    named = dict(u=u, A=A, B=B, C=C, D=D, x0=x0)
    for name, t in named.items():
        if t is not None:
            runtime.check_kernel_device(name, t)
            checks.contiguous(name, t)
    checks.same_device(**named)

    y = torch.empty_like(u)
    xT = torch.empty(batch, H, N, dtype=u.dtype, device=u.device) if return_final_state else y
    if batch * H > 0 and (L > 0 or return_final_state):
        chan_last, bh, nw, chunk = _launch_config(N)
        if channels_last is not None:
            chan_last = channels_last
        bh, nw, chunk = block_h or bh, num_warps or nw, chunk_steps or chunk
        if chunk < 2 or chunk & (chunk - 1):
            raise ValueError(f"chunk_steps must be a power of two >= 2, got {chunk}")
        if bh & (bh - 1):
            raise ValueError(f"block_h must be a power of two, got {bh}")
        if chan_last:   # (N, N, H) and (N, H) copies: channel h is the fastest index
            A, B, C = A.permute(1, 2, 0).contiguous(), B.t().contiguous(), C.t().contiguous()
            strides = dict(stride_ah=1, stride_ai=N * H, stride_aj=H, stride_bh=1, stride_bn=H)
        else:
            strides = dict(stride_ah=N * N, stride_ai=N, stride_aj=1, stride_bh=N, stride_bn=1)
        grid = (batch * triton.cdiv(H, bh),)
        _linear_recurrence_kernel[grid](
            A, B, C, D if D is not None else A, u, x0 if x0 is not None else A, y, xT,
            H, L, N, **strides,
            HAS_D=D is not None, HAS_X0=x0 is not None, STORE_FINAL=return_final_state,
            BLOCK_H=bh, BLOCK_N=triton.next_power_of_2(N), CHUNK=chunk, num_warps=nw)
    return (y, xT) if return_final_state else y

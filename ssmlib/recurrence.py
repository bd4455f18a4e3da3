r"""The recurrent view of a discrete linear time-invariant system.

H independent single-input single-output systems, one per channel h,

    x_k = A x_{k-1} + B u_k,        y_k = C x_k + D u_k,        x_{-1} = x0 (default 0),

run over a batch of input sequences ``u (batch, H, L)``.
:func:`linear_recurrence_ref` is the plain PyTorch loop the book explains;
:func:`linear_recurrence` runs the same recurrence with one of two Triton kernels.

The step kernel. A program owns ``BLOCK_H`` channels of one batch element. It
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

The chunked kernel. A step costs 2N² flops on FMA units, so for larger N the
step kernel is compute-bound. But the batch elements of a channel share A, and
T steps of the recurrence are a few small matrix products: with X the states
before a chunk (one row per sequence) and U the chunk's inputs (T columns),

    Y = X M + U K        M[:, t] = (C Aᵗ⁺¹)ᵀ,  K[s, t] = C Aᵗ⁻ˢ B for s ≤ t (plus D on the diagonal)
    X ← X P + U W        P = (Aᵀ)ᵀ,            W[s] = (Aᵀ⁻¹⁻ˢ B)ᵀ

A program owns one channel for a block of sequences, builds M, K, P and W on
chip once (T matrix-vector products and log₂T squarings), then walks the
sequence a chunk at a time: four tensor-core products per chunk, about
6N + 2T + 2N²/T flops per step instead of 2N². The products use 3×TF32
(each float32 operand split into two TF32 halves), accurate to about 22 bits,
close to float32's 24. This is the chunked algorithm that Mamba-2 builds on.
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



def linear_recurrence_chunked_ref(A, B, C, u, D=None, x0=None, return_final_state=False, T: int = 16):
    """The chunked kernel's algorithm in PyTorch: T steps at a time as matrix products.

    Same arguments and result as :func:`linear_recurrence_ref`. With x the state
    before a chunk and u_0 … u_{T−1} its inputs, y_t = C Aᵗ⁺¹ x + Σ_{s≤t} C Aᵗ⁻ˢ B u_s
    (+ D u_t) and the state after it is Aᵀ x + Σ_s Aᵀ⁻¹⁻ˢ B u_s. A Python loop over
    L/T chunks; differentiable, and only the chunk states are kept for the
    backward pass, so :func:`linear_recurrence` uses it to compute gradients.
    """
    batch, H, L = u.shape
    N = A.shape[-1]
    powers = [torch.eye(N, dtype=A.dtype, device=A.device).expand(H, N, N)]
    for _ in range(T):
        powers.append(A @ powers[-1])
    P = torch.stack(powers, dim=1)                                   # (H, T+1, N, N): A⁰ … Aᵀ
    AB = torch.einsum("htij,hj->hti", P[:, :T], B)                   # Aᵗ B
    CA = torch.einsum("hi,htij->htj", C, P[:, 1:])                   # C Aᵗ⁺¹
    h = torch.einsum("hi,hti->ht", C, AB)                            # C Aᵗ B, the impulse response
    lag = torch.arange(T, device=u.device)
    lag = lag[None, :] - lag[:, None]                                # t − s
    K = h[:, lag.clamp(min=0)] * (lag >= 0)                          # (H, T, T): K[s, t] = C Aᵗ⁻ˢ B
    if D is not None:
        K = K + torch.diag_embed(D[:, None].expand(H, T))
    x = u.new_zeros(batch, H, N) if x0 is None else x0
    ys = []
    for k in range(0, L, T):
        U = u[:, :, k:k + T]
        n = U.shape[-1]                                              # T, or fewer in the last chunk
        ys.append(torch.einsum("bhi,hti->bht", x, CA[:, :n]) + torch.einsum("bhs,hst->bht", U, K[:, :n, :n]))
        x = torch.einsum("hij,bhj->bhi", P[:, n], x) + torch.einsum("bhs,hsi->bhi", U, AB[:, :n].flip(1))
    y = torch.cat(ys, dim=-1) if ys else u.new_zeros(batch, H, 0)
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


@triton.jit
def _linear_recurrence_chunked_kernel(
        A_ptr, B_ptr, C_ptr, D_ptr, u_ptr, x0_ptr, y_ptr, xT_ptr,
        batch, H, L, N,
        HAS_D: tl.constexpr, HAS_X0: tl.constexpr, STORE_FINAL: tl.constexpr, BLOCK_B: tl.constexpr,
        BLOCK_N: tl.constexpr, T: tl.constexpr, LOG2_T: tl.constexpr, PRECISION: tl.constexpr):
    # A program owns channel h for BLOCK_B batch elements: the rows of every tile
    # are sequences. With X the states before a chunk of T steps (as rows) and U
    # the chunk's inputs, x_t = A^(t+1) x + sum_{s<=t} A^(t-s) B u_s gives
    #     Y = X M + U K     the chunk's outputs: M[:, t] = (C A^(t+1))^T, K[s, t] = C A^(t-s) B (s <= t) + D [s = t]
    #     X <- X P + U W    the state after it:  P = (A^T)^T,             W[s] = (A^(T-1-s) B)^T
    h = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    ok = rows[:, None] < batch                                               # (BB, 1)
    op = tl.float64 if u_ptr.dtype.element_ty == tl.float64 else tl.float32
    i = tl.arange(0, BLOCK_N)[:, None]                                       # (BN, 1)
    n = tl.arange(0, BLOCK_N)[None, :]                                       # (1, BN)
    s = tl.arange(0, T)[:, None]                                             # (T, 1)
    t = tl.arange(0, T)[None, :]                                             # (1, T)

    # The chunk operands of channel h, built on chip (zero-padded to BLOCK_N).
    A = tl.load(A_ptr + h * N * N + i * N + n, mask=(i < N) & (n < N), other=0.0).to(op)   # A[i, n]
    Bv = tl.load(B_ptr + h * N + tl.arange(0, BLOCK_N), mask=tl.arange(0, BLOCK_N) < N, other=0.0).to(op)
    Cv = tl.load(C_ptr + h * N + tl.arange(0, BLOCK_N), mask=tl.arange(0, BLOCK_N) < N, other=0.0).to(op)
    v, w = Bv, Cv                                                            # A^j B and C A^j
    W = tl.zeros([T, BLOCK_N], dtype=op)
    M = tl.zeros([BLOCK_N, T], dtype=op)
    K = tl.zeros([T, T], dtype=op)
    for j in range(T):
        K = tl.where(t - s == j, tl.sum(Cv * v), K)                          # C A^j B on the j-th diagonal
        W = tl.where(s == T - 1 - j, v[None, :], W)
        v = tl.sum(A * v[None, :], axis=1)                                   # A^(j+1) B
        w = tl.sum(w[:, None] * A, axis=0)                                   # C A^(j+1)
        M = tl.where(t == j, w[:, None], M)
    if HAS_D:
        K = tl.where(t == s, K + tl.load(D_ptr + h).to(op), K)
    P = A
    for _ in tl.static_range(LOG2_T):                                        # A^T by squaring
        P = tl.dot(P, P, input_precision=PRECISION, out_dtype=op)
    P = tl.trans(P)

    seq = rows.to(tl.int64)[:, None] * H + h                                 # (BB, 1)
    if HAS_X0:
        X = tl.load(x0_ptr + seq * N + n, mask=ok & (n < N), other=0.0).to(op)
    else:
        X = tl.zeros([BLOCK_B, BLOCK_N], dtype=op)
    u_rows = u_ptr + seq * L
    y_rows = y_ptr + seq * L
    L_full = L - L % T
    for k in range(0, L_full, T):
        U = tl.load(u_rows + k + t, mask=ok, other=0.0).to(op)              # (BB, T)
        Y = tl.dot(X, M, input_precision=PRECISION, out_dtype=op)
        Y = tl.dot(U, K, acc=Y, input_precision=PRECISION, out_dtype=op)
        tl.store(y_rows + k + t, Y.to(y_ptr.dtype.element_ty), mask=ok)
        X = tl.dot(X, P, input_precision=PRECISION, out_dtype=op)
        X = tl.dot(U, W, acc=X, input_precision=PRECISION, out_dtype=op)
    if L_full < L:  # a last, partial chunk: outputs as above, zeros past L
        m = ok & (L_full + t < L)
        U = tl.load(u_rows + L_full + t, mask=m, other=0.0).to(op)
        Y = tl.dot(X, M, input_precision=PRECISION, out_dtype=op)
        Y = tl.dot(U, K, acc=Y, input_precision=PRECISION, out_dtype=op)
        tl.store(y_rows + L_full + t, Y.to(y_ptr.dtype.element_ty), mask=m)
        if STORE_FINAL:  # the state: the last L % T steps one at a time, x <- x A^T + u B^T
            At = tl.trans(A)
            for k in range(L_full, L):
                uk = tl.load(u_rows + k, mask=ok, other=0.0).to(op)         # (BB, 1)
                X = tl.dot(X, At, input_precision=PRECISION, out_dtype=op) + uk * Bv[None, :]
    if STORE_FINAL:
        tl.store(xT_ptr + seq * N + n, X.to(xT_ptr.dtype.element_ty), mask=ok & (n < N))


def _launch_config(N: int) -> tuple[bool, int, int, int]:
    """(channels_last, channels per program, warps, time chunk) of the step kernel for state size N.

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


def _chunked_config(N: int) -> tuple[int, int, int]:
    """(sequences per program, warps, steps per chunk) of the chunked kernel.

    Measured on the H200 (``python -m ssmlib.bench recurrence --sweep``): small
    programs win while the state is small, since many of them in flight hide the
    latency of each chunk's chain of products; at N = 64 the tiles are large
    enough for 4 warps and 32-step chunks.
    """
    if N <= 16:
        return 32, 1, 16
    if N <= 32:
        return 32, 2, 16
    return 64, 4, 32


def _use_chunked(N: int, batch: int, dtype) -> bool:
    """The chunked kernel pays once a step costs more than a few FMAs per thread
    (N > 8) and the batch fills a tensor-core tile (batch ≥ 16); float64 stays on
    the step kernel (its exactness is what the tests and the book check)."""
    return N > 8 and batch >= 16 and dtype != torch.float64


def linear_recurrence(A, B, C, u, D=None, x0=None, return_final_state=False, *, algorithm=None,
                      channels_last=None, block_h=None, block_b=None, num_warps=None, chunk_steps=None):
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
        algorithm: ``"step"`` (one step at a time on FMA units) or
            ``"chunked"`` (T steps at a time as small matrix products on tensor
            cores, 3×TF32 so float32-accurate); by default chunked for N > 8,
            batch ≥ 16 and inputs other than float64 (see ``_use_chunked``).
        channels_last, block_h, block_b, num_warps, chunk_steps: override the
            launch configuration (benchmarks and tests; see ``_launch_config``
            and ``_chunked_config``; block_b is the chunked kernel's sequences
            per program).

    All tensors share one dtype (float16, bfloat16, float32 or float64) and the
    device the kernels run on (``ssmlib.DEVICE``), and must be contiguous.
    Arithmetic is float32 (float64 for float64 inputs).

    Returns:
        ``y (batch, H, L)`` in u's dtype, and ``x_{L-1} (batch, H, N)`` if asked.

    Differentiable in every tensor argument: the backward pass recomputes the
    forward with :func:`linear_recurrence_chunked_ref` (PyTorch, keeping only
    the state every 16 steps) and differentiates it.
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

    if algorithm not in (None, "step", "chunked"):
        raise ValueError(f"algorithm must be 'step' or 'chunked', got {algorithm!r}")
    config = dict(algorithm=algorithm, channels_last=channels_last, block_h=block_h, block_b=block_b,
                  num_warps=num_warps, chunk_steps=chunk_steps)
    tensors = (A, B, C, u, D, x0)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        out = _LinearRecurrence.apply(*tensors, return_final_state, config)
        return out if return_final_state else out[0]
    return _launch(*tensors, return_final_state, **config)


class _LinearRecurrence(torch.autograd.Function):
    """Forward: the Triton kernel. Backward: recompute with :func:`linear_recurrence_chunked_ref`
    (float32 or float64, only chunk states kept) and differentiate that."""

    @staticmethod
    def forward(ctx, A, B, C, u, D, x0, return_final_state, config):
        ctx.save_for_backward(A, B, C, u, D, x0)
        out = _launch(A, B, C, u, D, x0, return_final_state, **config)
        return out if return_final_state else (out,)

    @staticmethod
    def backward(ctx, dy, dxT=None):
        inputs = ctx.saved_tensors
        wants = [t is not None and need for t, need in zip(inputs, ctx.needs_input_grad[:6])]
        calc = torch.float64 if inputs[3].dtype == torch.float64 else torch.float32
        with torch.enable_grad():
            leaves = [t.detach().to(calc).requires_grad_(w) if t is not None else None
                      for t, w in zip(inputs, wants)]
            y, xT = linear_recurrence_chunked_ref(*leaves, return_final_state=True)
            outs, grads_out = [y], [dy.to(calc)]
            if dxT is not None:
                outs.append(xT)
                grads_out.append(dxT.to(calc))
            needed = [t for t, w in zip(leaves, wants) if w]
            got = iter(torch.autograd.grad(outs, needed, grads_out, allow_unused=True) if needed else ())
        grads = [next(got) if w else None for w in wants]
        grads = [g.to(t.dtype) if g is not None else (torch.zeros_like(t) if w else None)
                 for g, t, w in zip(grads, inputs, wants)]
        return (*grads, None, None)


def _launch(A, B, C, u, D, x0, return_final_state, *, algorithm, channels_last, block_h, block_b,
            num_warps, chunk_steps):
    """Pick a kernel and launch it (arguments already checked by :func:`linear_recurrence`)."""
    batch, H, L = u.shape
    N = A.shape[-1]
    chunked = _use_chunked(N, batch, u.dtype) if algorithm is None else algorithm == "chunked"
    y = torch.empty_like(u)
    xT = torch.empty(batch, H, N, dtype=u.dtype, device=u.device) if return_final_state else y
    if batch * H == 0 or (L == 0 and not return_final_state):       # nothing to compute
        return (y, xT) if return_final_state else y
    if chunked:
        bb, nw, T = _chunked_config(N)
        bb, nw, T = block_b or bb, num_warps or nw, chunk_steps or T
        if T < 16 or T & (T - 1):
            raise ValueError(f"chunk_steps must be a power of two >= 16 for the chunked kernel, got {T}")
        if bb < 16 or bb & (bb - 1):
            raise ValueError(f"block_b must be a power of two >= 16, got {bb}")
        grid = (H, runtime.cdiv(batch, bb))
        runtime.launch(_linear_recurrence_chunked_kernel, grid, (
            A, B, C, D if D is not None else A, u, x0 if x0 is not None else A, y, xT, batch, H, L, N), dict(
            HAS_D=D is not None, HAS_X0=x0 is not None, STORE_FINAL=return_final_state, BLOCK_B=bb,
            BLOCK_N=max(16, runtime.next_pow2(N)), T=T, LOG2_T=T.bit_length() - 1,
            PRECISION="ieee" if u.dtype == torch.float64 else "tf32x3", num_warps=nw))
    else:
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
            strides = (1, N * H, H, 1, H)             # stride_ah, stride_ai, stride_aj, stride_bh, stride_bn
        else:
            strides = (N * N, N, 1, N, 1)
        grid = (batch * runtime.cdiv(H, bh),)
        runtime.launch(_linear_recurrence_kernel, grid, (
            A, B, C, D if D is not None else A, u, x0 if x0 is not None else A, y, xT, H, L, N, *strides), dict(
            HAS_D=D is not None, HAS_X0=x0 is not None, STORE_FINAL=return_final_state,
            BLOCK_H=bh, BLOCK_N=runtime.next_pow2(N), CHUNK=chunk, num_warps=nw))
    return (y, xT) if return_final_state else y

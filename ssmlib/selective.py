r"""The selective scan of Mamba (S6): a fused Triton forward and backward, and the decoding step.

For every batch element b, channel d (``dim`` of them) and state n (``N`` per channel)::

    Δ_t   = softplus(delta_t + delta_bias)          (or delta_t + delta_bias, or delta_t)
    Ā_t   = exp(Δ_t · A[d, n])
    x_t   = Ā_t · x_{t-1} + Δ_t · B_t[n] · u_t      x_{-1} = 0
    y_t   = Σ_n C_t[n] · x_t[n] + D[d] · u_t
    out_t = y_t · silu(z_t)                         (if z is given)

The API is that of ``mamba_ssm``'s ``selective_scan_fn`` and ``selective_state_update``:
``u, delta, z (batch, dim, L)``, real ``A (dim, N)``, ``B, C`` input-dependent
``(batch, N, L)``, grouped ``(batch, G, N, L)`` (channel d uses group
``d // (dim // G)``) or fixed ``(dim, N)``, ``D, delta_bias (dim,)``.

Four implementations of the same function:

* :func:`selective_scan_ref`: a Python loop over time, the one the chapter reads.
* :func:`selective_scan_unfused`: plain PyTorch that materialises every
  ``Ā_t`` and ``Δ_t B_t u_t`` as ``(batch, dim, L, N)`` tensors and runs a
  log-depth (Hillis–Steele) scan over L. Differentiable by autograd, which keeps
  those tensors for the backward: this is the memory the fused kernel saves.
* :func:`selective_scan`: the fused Triton kernels, forward and backward.
* :func:`selective_state_update`: one recurrent step, for decoding.

How the fused kernels work
--------------------------
Programs. A program owns a block of channels of one batch element (inside one group of B and
C) and walks the sequence in chunks of ``BLOCK_T`` steps. Its state, a ``(BLOCK_D, N)``
float32 tile, stays in registers for the whole walk: at 16 states, 4 states a thread and the 4
lanes of a channel splitting them. Input-dependent B and C are handed over as float32 copies
transposed to ``(batch, [G,] L, N)``, so that step t's B_t is one contiguous vector.

What stays on chip (the forward; ``"pipelined"``, the default for N ≥ 4). Each chunk's u, Δ and
z are read from HBM once, B and C once per program (a group's channels share them, so after the
first program they come from L2), and out is written once: the minimal traffic, besides the
transposed copies of B and C (2·N float32 a step and sequence, against 3·dim inputs). Everything
else happens in registers: the bias and softplus of Δ; ``Ā = exp2(Δ·A·log₂e)``, one exponential
per (b, d, t, n), the count that sets the floor (for N ≥ 8 the exp units, not HBM, bound this
kernel); the recurrence ``x ← Ā x + (Δu) B``; the contraction ``y = Σ_n C x`` (a butterfly
over a channel's lanes); D·u and the gate. Δ and Δ·u are computed once per (d, t) on the
chunk's tile, and step j takes them from the lane that holds them: one ``shfl.sync.idx`` each
(inline PTX) where the host has checked that the compiled register layout is the one its lane
arithmetic assumes (``_launch_checked``), else a select and a butterfly. The next chunks'
inputs are loaded one or two chunks ahead, in registers or through shared memory by Triton's
software pipeliner (``_pipe_schedule``), so HBM latency hides behind a chunk of arithmetic.

What is recomputed (the backward; ``bwd_variant="serial"``, the default). The forward that
precedes a backward also writes the state every ``bwd_block_t`` (8) steps: a checkpoint, N/8
floats per (b, d, t), 8 bytes at N = 16 (as many as u, Δ, z and out in bfloat16), written once
and read once. The backward walks the chunks from
last to first. For each it recomputes the chunk's states from its checkpoint (a second
exponential per element) and keeps x_t and Ā_t of its steps in registers; then it walks back a
step at a time with the adjoint in registers, ``λ_t = μ + C_t dy_t``, ``μ ← Ā_t λ_t`` (so the
shifted Ā_{t+1} is never needed). With ``b_t = Δ_t B_t u_t`` and ``x_{t-1} Ā_t = x_t − b_t``,
every gradient is then local::

    du_t    = Σ_n λ_t Δ_t B_t  (+ D dy_t)          dB_t[n] = Σ_d λ_t Δ_t u_t
    dΔ_t    = Σ_n (λ_t B_t u_t + A λ_t (x_t − b_t))  dC_t[n] = Σ_d x_t dy_t
    dA[d,n] = Σ_t Δ_t λ_t (x_t − b_t)

(dy: the gradient of y, the gate's derivative applied; dΔ then through the softplus). No
``(batch, dim, L, N)`` tensor is ever stored. Input-dependent dB_t, dC_t are summed over a
program's channels on chip once per chunk and written as float32 partials per channel block;
per-channel parameter gradients (dA, dD, d delta_bias, fixed dB and dC) are written per batch
element. The host adds both: deterministic, no atomics. The partials are ``dim / bwd_block_d``
float32 copies of dB and dC, the largest traffic of a forward+backward.

Few sequences (batch 1). With fewer than 8 warps an SM, both passes split L into segments
across programs. Forward: pass 1 runs every segment but the last from a zero state and keeps
its end state and Σ Δ (the segment's decay is ``exp(A Σ Δ)``); pass 2 reruns every segment,
each program first folding the earlier segments into its entering state, ``h ← exp(A Σ Δ) h +
end``. Backward: the adjoint obeys a linear recurrence too, ``μ ← Ā_t (μ + C_t dy_t)``, so
pass 1 (``_selective_scan_bwd_adjoint_kernel``) walks every segment but the first backward from
a zero adjoint, without states, and pass 2 folds the later segments into its entering adjoint.
A split costs one more exponential per element and buys many times the programs.

The other kernels, selectable with ``config`` (and compared in the benchmark's sweep): the
forward ``"serial"`` (the same recurrence, the chunk's Δ and Δ·u passed to the steps through a
per-program scratch and a barrier) and ``"scan"`` (``tl.associative_scan`` along time, a state
at a time; the default below 4 states), and the backward ``"scan"`` (associative scans forward
for the states and backward for the adjoint).

Where the time goes. ``python -m ssmlib.bench selective`` times the kernels against their floor
(``book/results/selective_scan*.json``). Its rows of the default kernels also carry the SASS
instructions each kernel issues per (b, d, t, n) element (``sass_per_elem``, read from the
cubins the call launched) and the time those take at the SMs' peak issue rate
(``issue_floor_ms``). An SM issues 8 thread-instructions in the time its exp units take for one
exponential (4 warp-instructions a clock against 16 exponentials), so a kernel that issues more
than 8 an element cannot reach the exp floor whatever its schedule. The default forward issues
more than that and the backward several times more (``sass_per_elem``): beyond the arithmetic
of the formulas above, the selections, shuffles and loads that give every lane what its step
needs, and in the backward the butterflies that sum dB_t and dC_t over the channels.
``python -m ssmlib.bench.selective --versus-mamba DIR`` times these kernels beside mamba_ssm's
own (its CUDA scan, built from its source distribution, and its Triton decoding step) at the
same inputs (``book/results/selective_scan_vs_mamba.json``).
``python -m ssmlib.bench.selective --compile-only`` gives every kernel's registers, spills and
instruction counts without a GPU. Every variant built, kept or not, with
what it measured and the logs behind it: ``book/results/logs/selective_design_log.md``.

Arithmetic is float32 (float64 for float64 inputs, so the tests can
``gradcheck`` the kernels); the state is never rounded to the input dtype.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from . import checks, runtime
from .runtime import softplus

#: Largest state size the kernels accept.
MAX_N = 256
#: Input dtypes (u, delta, z) the kernels take; float64 is for tests (gradcheck).
INPUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

#: Keys of :func:`selective_scan`'s ``config``.
CONFIG_KEYS = ("variant", "block_d", "block_t", "num_warps", "seg_len", "bc_tile", "shfl_idx", "maxnreg",
               "bwd_block_d", "bwd_block_t", "bwd_num_warps", "bwd_flip", "bwd_variant", "bwd_maxnreg",
               "bwd_shfl_idx", "stages", "bwd_reload", "bwd_seg_len")
#: Forward kernels selectable with ``config={"variant": ...}``.
FWD_VARIANTS = ("serial", "scan", "pipelined")
#: Backward kernels selectable with ``config={"bwd_variant": ...}`` (:func:`_bwd_variant`: "serial").
BWD_VARIANTS = ("scan", "serial")


# ----------------------------------------------------------------------------- references
def _expand_bc(name, X, batch, dim, L):
    """B or C as a (batch or 1, dim or 1, N, L or 1) tensor for broadcasting."""
    if X.dim() == 2:                                   # fixed (dim, N)
        return X[None, :, :, None]
    if X.dim() == 3:                                   # variable (batch, N, L)
        return X[:, None]
    G = X.shape[1]                                     # grouped (batch, G, N, L)
    return X.repeat_interleave(dim // G, dim=1)


def _prepare_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    u, delta, A = u.to(acc), delta.to(acc), A.to(acc)
    if delta_bias is not None:
        delta = delta + delta_bias.to(acc)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, L = u.shape
    B = _expand_bc("B", B.to(acc), batch, dim, L)
    C = _expand_bc("C", C.to(acc), batch, dim, L)
    return acc, u, delta, A, B, C


def _finish_ref(y, u, D, z, out_dtype):
    if D is not None:
        y = y + D.to(y.dtype)[:, None] * u
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(out_dtype)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """The selective scan as a Python loop over time (readable, slow).

    Same arguments and result as :func:`selective_scan`. Computes in float32
    (float64 for float64 inputs); returns ``out`` in u's dtype and, if asked,
    the last state ``(batch, dim, N)`` in float32 (float64).
    """
    acc, u_, dt, A_, B_, C_ = _prepare_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    batch, dim, L = u.shape
    x = u_.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(L):
        dA = torch.exp(dt[:, :, t, None] * A_)                                # Ā_t  (batch, dim, N)
        Bt = B_[..., t if B_.shape[-1] > 1 else 0]
        Ct = C_[..., t if C_.shape[-1] > 1 else 0]
        x = dA * x + (dt[:, :, t] * u_[:, :, t])[..., None] * Bt             # x_t = Ā_t x_{t-1} + Δ_t B_t u_t
        ys.append((x * Ct).sum(-1))                                          # C_t · x_t
    y = torch.stack(ys, dim=-1) if L else u_.new_zeros(batch, dim, 0)
    out = _finish_ref(y, u_, D, z, u.dtype)
    return (out, x) if return_last_state else out


def selective_scan_unfused(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                           return_last_state=False):
    """The selective scan in unfused PyTorch: (batch, dim, L, N) tensors and a log-depth scan.

    ``Ā`` and ``Δ B u`` are materialised for every (b, d, t, n); the linear
    recurrence is solved by a Hillis–Steele scan, ``⌈log₂ L⌉`` rounds of
    ``(a, b)[t] ← (a[t]·a[t−s], a[t]·b[t−s] + b[t])``. Products of Ā lie in
    [0, 1], so no rounding can overflow (a log-space cumulative sum would
    cancel catastrophically on long sequences). Differentiable by autograd,
    which stores every round's tensors: this is the memory the fused kernel
    avoids. Same arguments and result as :func:`selective_scan`.
    """
    acc, u_, dt, A_, B_, C_ = _prepare_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    L = u.shape[-1]
    a = torch.exp(dt[..., None] * A_[:, None, :])                              # (batch, dim, L, N)
    b = (dt * u_)[..., None] * B_.transpose(-1, -2)                            # (batch, dim, L, N)
    s = 1
    while s < L:
        a, b = (torch.cat([a[:, :, :s], a[:, :, s:] * a[:, :, :-s]], dim=2),
                torch.cat([b[:, :, :s], a[:, :, s:] * b[:, :, :-s] + b[:, :, s:]], dim=2))
        s *= 2
    y = (b * C_.transpose(-1, -2)).sum(-1)
    out = _finish_ref(y, u_, D, z, u.dtype)
    if return_last_state:
        last = b[:, :, -1] if L else u_.new_zeros(u.shape[0], u.shape[1], A.shape[1])
        return out, last
    return out


# ----------------------------------------------------------------------------- Triton kernels
@triton.jit
def _scan_combine(a1, b1, a2, b2):
    # (a1, b1) then (a2, b2): x -> a2 (a1 x + b1) + b2
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _reverse_combine(f_r, q_r, s_r, f_l, q_l, s_l):
    # Reverse scan: the accumulated (later) segment R comes first, the earlier segment L second.
    # A segment [i..j] is (F = Ā_i, Q = Π_{k=i+1..j} Ā_k, S = Σ_{k=i..j} Π_{m=i+1..k} Ā_m c_k).
    m = q_l * f_r
    return f_l, m * q_r, s_l + m * s_r


@triton.jit
def _load_bc(var_ptrs, tmask, fixed_ptrs, dmask, VAR: tl.constexpr, EVEN_L: tl.constexpr, acc: tl.constexpr):
    """B or C of state n for the chunk: a (BLOCK_D, BLOCK_T) tile, or a fixed (BLOCK_D, 1) column."""
    if VAR:
        if EVEN_L:
            x = tl.load(var_ptrs).to(acc)
        else:
            x = tl.load(var_ptrs, mask=tmask, other=0.0).to(acc)
    else:
        x = tl.load(fixed_ptrs, mask=dmask, other=0.0).to(acc)[:, None]
    return x


@triton.jit
def _channel_block(pid, dim, dpg, n_dblocks, BLOCK_D: tl.constexpr):
    """The scan kernels' program ``pid``: batch element b, group g of B and C, and its block of
    BLOCK_D channels of the group (n_dblocks blocks a group of dpg channels): d (the channels),
    dmask (d inside the group) and rows = b·dim + d (int64: the sequences' index)."""
    blk = pid % n_dblocks
    bg = pid // n_dblocks
    G = dim // dpg
    g = bg % G
    b = bg // G
    dl = blk * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = dl < dpg
    d = g * dpg + dl
    rows = b.to(tl.int64) * dim + d
    return b, g, d, dmask, rows


@triton.jit
def _channel_params(A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, d, dmask, ncol, nmask, N, VAR_B: tl.constexpr,
                    VAR_C: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, acc: tl.constexpr):
    """The parameters of the channels d of a (BLOCK_D, BLOCK_N) state tile: A·log2(e) (the steps
    take exp2), fixed B and C (0.0 when input-dependent), delta_bias and D as (BLOCK_D, 1)
    columns (0.0 when absent)."""
    A2 = tl.load(A_ptr + d[:, None] * N + ncol, mask=nmask, other=0.0).to(acc) * 1.4426950408889634
    Bfix = 0.0
    if not VAR_B:
        Bfix = tl.load(B_ptr + d[:, None] * N + ncol, mask=nmask, other=0.0).to(acc)
    Cfix = 0.0
    if not VAR_C:
        Cfix = tl.load(C_ptr + d[:, None] * N + ncol, mask=nmask, other=0.0).to(acc)
    bias = 0.0
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d, mask=dmask, other=0.0).to(acc)[:, None]
    Dv = 0.0
    if HAS_D:
        Dv = tl.load(D_ptr + d, mask=dmask, other=0.0).to(acc)[:, None]
    return A2, Bfix, Cfix, bias, Dv


@triton.jit
def _selective_scan_fwd_kernel(
        u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, carry_ptr, states_ptr,
        dim, L, N, dpg, n_dblocks, n_chunks, n_ckpt,
        sB_b, sB_g, sB_n, sC_b, sC_g, sC_n,
        VAR_B: tl.constexpr, VAR_C: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
        HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, STORE_LAST: tl.constexpr,
        STORE_STATES: tl.constexpr, CKPT: tl.constexpr, EVEN_L: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr):
    # Program: batch element b, group g, channels blk*BLOCK_D ... of the group.
    pid = tl.program_id(0)
    b, g, d, dmask, rows = _channel_block(pid, dim, dpg, n_dblocks, BLOCK_D)
    acc = tl.float64 if u_ptr.dtype.element_ty == tl.float64 else tl.float32
    t_in = tl.arange(0, BLOCK_T)
    # Every (BLOCK_D, BLOCK_T) tile of the program, including B and C broadcast over the
    # channels, is addressed with the same pattern, so Triton gives them all one register
    # layout (no layout conversions through shared memory in the loop).
    zero_rows = rows[:, None] * 0
    B_row = B_ptr + b.to(tl.int64) * sB_b + g * sB_g + zero_rows
    C_row = C_ptr + b.to(tl.int64) * sC_b + g * sC_g + zero_rows
    is_last_t = (t_in[None, :] == BLOCK_T - 1) & dmask[:, None]
    # The carry between chunks lives in carry_ptr (batch, dim, 2, N), slot c % 2 written by
    # chunk c (by the thread that holds its last step), read by every thread of the row in
    # chunk c + 1, after the barrier that ends chunk c. Two slots: no thread of chunk c + 1
    # can overwrite a value that a slower thread of chunk c has yet to read.
    carry = carry_ptr + rows * 2 * N
    # (A masked store whose offsets advance along the chunk like every other tile keeps the
    # tile's register layout; only the element of the last step is written.)
    last_off = (t_in - (BLOCK_T - 1))[None, :]
    carry_t = carry_ptr + (rows * 2 * N)[:, None] + last_off

    bias = 0.0
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d, mask=dmask, other=0.0).to(acc)[:, None]
    if HAS_D:
        Dv = tl.load(D_ptr + d, mask=dmask, other=0.0).to(acc)[:, None]
    for c in range(n_chunks):
        tt = c * BLOCK_T + t_in
        tmask = tt < L
        m2 = dmask[:, None] & tmask[None, :]
        offs = rows[:, None] * L + tt[None, :]
        U, DT, DTU = _chunk_delta(tl.load(delta_ptr + offs, mask=m2, other=0.0),
                                  tl.load(u_ptr + offs, mask=m2, other=0.0), bias, m2, HAS_BIAS, SOFTPLUS, acc)
        Y = tl.zeros([BLOCK_D, BLOCK_T], dtype=acc)
        for n in range(N):
            a2 = tl.load(A_ptr + d * N + n, mask=dmask, other=0.0).to(acc) * 1.4426950408889634
            Bn = _load_bc(B_row + n * sB_n + tt[None, :], tmask[None, :], B_ptr + d * N + n, dmask, VAR_B, EVEN_L, acc)
            Cn = _load_bc(C_row + n * sC_n + tt[None, :], tmask[None, :], C_ptr + d * N + n, dmask, VAR_C, EVEN_L, acc)
            dA = tl.exp2(DT * a2[:, None])                       # Ā_t, the one exp per (b, d, t, n)
            Ah, Bh = tl.associative_scan((dA, DTU * Bn), 1, _scan_combine)
            x_in = tl.load(carry + ((c + 1) % 2) * N + n, mask=dmask & (c > 0), other=0.0)
            xs = Ah * x_in[:, None] + Bh                          # x_t for the chunk
            Y += Cn * xs
            if STORE_LAST or c < n_chunks - 1:       # (no carry out of the last chunk)
                tl.store(carry_t + (c % 2) * N + n, xs, mask=is_last_t)
            if STORE_STATES:  # checkpoints for the backward: the state after every CKPT steps
                is_ckpt = ((tt % CKPT) == CKPT - 1) & (tt < L)
                tl.store(states_ptr + (rows[:, None] * n_ckpt + (tt // CKPT)[None, :]) * N + n, xs,
                         mask=dmask[:, None] & is_ckpt[None, :])
        if HAS_D:
            Y += Dv * U
        if HAS_Z:
            Z = tl.load(z_ptr + offs, mask=m2, other=0.0).to(acc)
            Y *= Z * tl.sigmoid(Z)
        tl.store(out_ptr + offs, Y.to(out_ptr.dtype.element_ty), mask=m2)
        tl.debug_barrier()                                      # the carry is visible to all threads


@triton.jit
def _selective_scan_fwd_serial_kernel(
        u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, last_ptr, states_ptr, scratch_ptr,
        dim, L, N, dpg, n_dblocks, n_ckpt, sB_b, sB_g, sC_b, sC_g,
        VAR_B: tl.constexpr, VAR_C: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
        HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, STORE_LAST: tl.constexpr,
        STORE_STATES: tl.constexpr, CKPT: tl.constexpr, EVEN_L: tl.constexpr, EVEN_N: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr):
    # The serial variant: a (BLOCK_D, BLOCK_N) state tile, a step at a time. Variable B and C
    # come transposed, (batch, G, L, N), so that B_t is a contiguous vector.
    pid = tl.program_id(0)
    b, g, d, dmask, rows = _channel_block(pid, dim, dpg, n_dblocks, BLOCK_D)
    acc = tl.float64 if u_ptr.dtype.element_ty == tl.float64 else tl.float32
    ncol = tl.arange(0, BLOCK_N)[None, :]
    t_in = tl.arange(0, BLOCK_T)
    tcol = t_in[None, :]
    if EVEN_N:
        nmask = dmask[:, None]
    else:
        nmask = dmask[:, None] & (ncol < N)
    zero_rows = rows[:, None] * 0
    A2, Bfix, Cfix, bias, Dv = _channel_params(A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, d, dmask, ncol, nmask, N,
                                               VAR_B, VAR_C, HAS_D, HAS_BIAS, acc)
    if VAR_B:
        B_row = B_ptr + b.to(tl.int64) * sB_b + g * sB_g + ncol + zero_rows
    if VAR_C:
        C_row = C_ptr + b.to(tl.int64) * sC_b + g * sC_g + ncol + zero_rows
    # Per chunk, Δ (bias, softplus) and Δ·u are computed once per (d, t) on the chunk's tile and
    # parked in this program's scratch (L1/L2), from where each step reads its column; the
    # threads that share a channel then do not repeat the softplus.
    scr = scratch_ptr + pid.to(tl.int64) * (2 * BLOCK_D * BLOCK_T)
    scr_tile = scr + (tl.arange(0, BLOCK_D) * BLOCK_T)[:, None] + tcol
    scr_row = scr + tl.arange(0, BLOCK_D) * BLOCK_T
    X = tl.zeros([BLOCK_D, BLOCK_N], dtype=acc)
    for k in range(0, L, BLOCK_T):
        tt = k + t_in
        tmask = tt < L
        m2 = dmask[:, None] & tmask[None, :]
        offs = rows[:, None] * L + tt[None, :]
        U, DT, DTU = _chunk_delta(tl.load(delta_ptr + offs, mask=m2, other=0.0),
                                  tl.load(u_ptr + offs, mask=m2, other=0.0), bias, m2, HAS_BIAS, SOFTPLUS, acc)
        tl.store(scr_tile, DT)
        tl.store(scr_tile + BLOCK_D * BLOCK_T, DTU)
        tl.debug_barrier()
        Y = tl.zeros([BLOCK_D, BLOCK_T], dtype=acc)
        for j in tl.static_range(BLOCK_T):
            dt = tl.load(scr_row + j)[:, None]
            dtu = tl.load(scr_row + (BLOCK_D * BLOCK_T + j))[:, None]
            if VAR_B:
                Bt = _step_vector(B_row, k + j, N, ncol, N, L, EVEN_L and EVEN_N, acc)
            else:
                Bt = Bfix
            if VAR_C:
                Ct = _step_vector(C_row, k + j, N, ncol, N, L, EVEN_L and EVEN_N, acc)
            else:
                Ct = Cfix
            X = tl.exp2(dt * A2) * X + dtu * Bt                    # the one exp per (b, d, t, n)
            Y = tl.where(tcol == j, tl.sum(X * Ct, 1)[:, None], Y)
        if STORE_STATES:
            if (k + BLOCK_T) % CKPT == 0:
                if k + BLOCK_T < L:
                    tl.store(states_ptr + (rows[:, None] * n_ckpt + (k + BLOCK_T) // CKPT - 1) * N + ncol, X,
                             mask=nmask)
        if HAS_D:
            Y += Dv * U
        if HAS_Z:
            Z = tl.load(z_ptr + offs, mask=m2, other=0.0).to(acc)
            Y *= Z * tl.sigmoid(Z)
        tl.store(out_ptr + offs, Y.to(out_ptr.dtype.element_ty), mask=m2)
        tl.debug_barrier()                                       # before the scratch is overwritten
    if STORE_LAST:
        tl.store(last_ptr + rows[:, None] * N + ncol, X, mask=nmask)


@triton.jit
def _load_bc3(base, k, t1, NS, N, t3, n3, ON: tl.constexpr, EVEN: tl.constexpr, acc: tl.constexpr):
    """The (BLOCK_D, BLOCK_T, BLOCK_N) tile of B or C for the chunk at step k (zeros when not ON)."""
    if ON:
        if EVEN:
            x = tl.load(base + k * NS).to(acc)
        else:
            x = tl.load(base + k * NS, mask=(n3 < N) & (k + t3 < t1), other=0.0).to(acc)
    else:
        x = tl.zeros(base.shape, dtype=acc)
    return x


@triton.jit
def _delta(DTr, bias, mask, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, acc: tl.constexpr):
    """A tile of raw ``delta`` made Δ, in the arithmetic dtype: ``(pre, Δ)`` with pre = delta + bias
    (as asked; the backward's softplus derivative needs it) and Δ = softplus(pre) as asked, 0 outside
    ``mask`` (steps past the sequence: Ā = 1, no input)."""
    pre = DTr.to(acc)
    if HAS_BIAS:
        pre += bias
    if SOFTPLUS:
        DT = softplus(pre, FAST=True)
    else:
        DT = pre
    return pre, tl.where(mask, DT, 0.0)


@triton.jit
def _chunk_delta(DTr, U, bias, mask, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, acc: tl.constexpr):
    """A chunk tile's (u, Δ, Δ·u) in the arithmetic dtype (Δ: :func:`_delta`)."""
    Uf = U.to(acc)
    pre, DT = _delta(DTr, bias, mask, HAS_BIAS, SOFTPLUS, acc)
    return Uf, DT, DT * Uf


@triton.jit
def _segment_row(seg_ptr, rows, n_seg, s, N):
    """Segment s's record of each channel in a split sequence's buffer (rows, n_seg, N + 1): the N
    floats of its end state (forward) or outgoing adjoint (backward) from zero, then its Σ Δ."""
    return seg_ptr + (rows * n_seg + s) * (N + 1)


@triton.jit
def _fold_segment(X, row, A2, ncol, nmask, dmask, N):
    """X carried across the segment recorded at ``row`` (:func:`_segment_row`): the segment's decay
    exp2(A₂ Σ Δ) applied to X, plus what the segment adds from a zero start."""
    dts = tl.load(row + N, mask=dmask, other=0.0)[:, None]
    return tl.exp2(dts * A2) * X + tl.load(row[:, None] + ncol, mask=nmask, other=0.0)


@triton.jit
def _store_segment(row, X, DTS, ncol, nmask, dmask, N):
    """Record a segment at ``row`` (:func:`_segment_row`): X from a zero start, and Σ Δ (the row sums
    of the (rows, steps) tile DTS)."""
    tl.store(row[:, None] + ncol, X, mask=nmask)
    tl.store(row + N, tl.sum(DTS, 1), mask=dmask)


@triton.jit
def _step_vector(row_ptr, t, stride, ncol, N, t_end, EVEN: tl.constexpr, acc: tl.constexpr,
                 RELOAD: tl.constexpr = False):
    """Step t's B_t or C_t from a transposed ``(…, L, N)`` copy (``stride`` apart a step) at the
    states ``ncol`` (``row_ptr`` points at them), zero past N and from ``t_end`` on unless EVEN.
    RELOAD: a load the compiler cannot merge with an earlier one of the same row (L1 policy
    evict_last), so the row is read again rather than kept in registers in between."""
    POLICY: tl.constexpr = "evict_last" if RELOAD else ""
    if EVEN:
        return tl.load(row_ptr + t * stride, eviction_policy=POLICY).to(acc)
    else:
        return tl.load(row_ptr + t * stride, mask=(ncol < N) & (t < t_end), other=0.0,
                       eviction_policy=POLICY).to(acc)


@triton.jit
def _checkpoint(ckpt_row, X, nmask, t, L, N, CKPT: tl.constexpr):
    """The state X before step t (t a multiple of CKPT) as checkpoint t // CKPT − 1 of
    ``ckpt_row`` (the rows' (n_ckpt, N) checkpoints), unless no step is left after it."""
    if t < L:
        tl.store(ckpt_row + (t // CKPT - 1) * N, X, mask=nmask)


@triton.jit
def _neg_zero(like):
    """-0.0 in the shape and float type of ``like``: x + (-0.0) is x for every x, so the compiler
    drops the adds of a select-and-sum where the unselected registers hold -0.0 (with +0.0 it must
    keep them: -0.0 + 0.0 is +0.0, not -0.0). Built from its bits: Triton 3.6 folds the literal -0.0 (and
    -tl.zeros) to +0.0, which cost the default forward 2.1 instructions an element."""
    if like.dtype == tl.float64:    # (one return: the compiler would visit both returns of a static if)
        z = tl.full(like.shape, -9223372036854775808, tl.int64).to(tl.float64, bitcast=True)
    else:
        z = tl.full(like.shape, -2147483648, tl.int32).to(tl.float32, bitcast=True)
    return z


@triton.jit
def _step_column(T, sel, EXACT: tl.constexpr = True):
    """Step j's column of a (rows, width) chunk tile as a (rows, 1) column for every lane of a row:
    selected (``sel``: the column mask) and summed along the row (-0.0, ``_neg_zero``, so that the other
    registers' adds fold away): a butterfly across the lanes that split the row, none when one thread holds it.
    ``EXACT=False``: +0.0 instead, whose adds stay (the serial backward: see its kernel)."""
    return tl.sum(tl.where(sel, T, _neg_zero(T) if EXACT else 0.0), 1)[:, None]


@triton.jit
def _lane_ids(like):
    """The lane (0..31) of the thread that holds each element of ``like`` (an int32 tile)."""
    return tl.inline_asm_elementwise("mov.u32 $0, %laneid;", "=r,r", [like], dtype=tl.int32, is_pure=True, pack=1)


@triton.jit
def _from_lane(S, src):
    """Every element of a thread's 4-element pack: the bitwise or of the 4 elements of S held by lane
    ``src`` (S: a float32 tile that is +0.0 but at one element of each pack; src: int32 tile)."""
    return tl.inline_asm_elementwise(
        "{ .reg .b32 t; or.b32 t, $4, $5; or.b32 t, t, $6; or.b32 t, t, $7;"
        " shfl.sync.idx.b32 $0, t, $8, 31, -1; mov.b32 $1, $0; mov.b32 $2, $0; mov.b32 $3, $0; }",
        "=r,=r,=r,=r,r,r,r,r,r,r,r,r", [S, src], dtype=tl.float32, is_pure=True, pack=4)


@triton.jit
def _step_value(T, sel, lane4, j: tl.constexpr, SHFL_IDX: tl.constexpr, EXACT: tl.constexpr = True):
    """Step j's column of the (rows, steps) tile T for every lane of a row: with SHFL_IDX one
    shuffle from the lane that holds it (lane4: each lane's id with its two low bits cleared; the
    layout of _shfl_layout, 4 consecutive columns a lane), a (rows, steps) tile; else the select and
    butterfly of _step_column, a (rows, 1) column."""
    if SHFL_IDX:
        return _from_lane(tl.where(sel, T, 0.0), lane4 | (j // 4))
    else:
        return _step_column(T, sel, EXACT)


@triton.jit
def _selective_scan_fwd_pipe_kernel(
        u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, last_ptr, states_ptr, seg_ptr,
        dim, L, N, dpg, n_dblocks, n_ckpt, seg_len, n_seg, sB_b, sB_g, sC_b, sC_g,
        VAR_B: tl.constexpr, VAR_C: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
        HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, STORE_LAST: tl.constexpr,
        STORE_STATES: tl.constexpr, CKPT: tl.constexpr, EVEN_L: tl.constexpr, EVEN_N: tl.constexpr,
        STATES_ONLY: tl.constexpr, HAS_H0: tl.constexpr, BC_TILE: tl.constexpr, SHFL_IDX: tl.constexpr,
        STAGES: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr):
    # The "pipelined" variant: the serial recurrence of _selective_scan_fwd_serial_kernel with
    # (1) no scratch and no barrier: Δ and Δ·u of the chunk stay in registers, in a tile laid
    #     out like the state tile (a row per channel, the lanes of a channel splitting the
    #     columns), and step j takes its column with a compile-time select and the lanes'
    #     butterfly (`tl.sum(tl.where(tcol == j, X, -0.0), 1)`: -0.0, from _neg_zero, so that the
    #     adds of the other registers fold away);
    # (2) the next chunk's u, Δ, z loaded before the current chunk is computed (loop-carried
    #     registers), so the HBM latency hides behind 16 steps of arithmetic;
    # (3) optionally a segment of the sequence per program (axis 1 of the grid): with
    #     STATES_ONLY it writes only the segment's end state from a zero start and Σ Δ (the
    #     segment's decay is exp(A Σ Δ)); with HAS_H0 it first folds the earlier segments' into
    #     its entering state. Those are the two passes of the split forward, for few sequences
    #     (batch 1): twice the exponentials, n_seg times the programs.
    pid = tl.program_id(0)
    seg = tl.program_id(1)
    b, g, d, dmask, rows = _channel_block(pid, dim, dpg, n_dblocks, BLOCK_D)
    acc = tl.float64 if u_ptr.dtype.element_ty == tl.float64 else tl.float32
    ncol = tl.arange(0, BLOCK_N)[None, :]
    t_in = tl.arange(0, BLOCK_T)
    tcol = t_in[None, :]
    if EVEN_N:
        nmask = dmask[:, None]
    else:
        nmask = dmask[:, None] & (ncol < N)
    zero_rows = rows[:, None] * 0
    # the row stride of the transposed B, C: a compile-time constant when N is a power of two,
    # so that step j's address is an immediate offset
    if EVEN_N:
        NS: tl.constexpr = BLOCK_N
    else:
        NS = N
    A2, Bfix, Cfix, bias, Dv = _channel_params(A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, d, dmask, ncol, nmask, N,
                                               VAR_B, VAR_C, HAS_D, HAS_BIAS, acc)
    # step t's B_t, C_t (BC_TILE 0): a (1, BLOCK_N) row, broadcast over the channels in registers
    if VAR_B:
        B_row = B_ptr + b.to(tl.int64) * sB_b + g * sB_g + ncol
    if VAR_C:
        C_row = C_ptr + b.to(tl.int64) * sC_b + g * sC_g + ncol
    t0 = seg * seg_len
    t1 = tl.minimum(t0 + seg_len, L)
    X = tl.zeros([BLOCK_D, BLOCK_N], dtype=acc)
    if HAS_H0:    # the entering state: fold the earlier segments' in order, h ← exp(A Σ Δ) h + end
        for prev in range(0, seg):
            X = _fold_segment(X, _segment_row(seg_ptr, rows, n_seg, prev, N), A2, ncol, nmask, dmask, N)
    if STATES_ONLY:
        dtsum = tl.zeros([BLOCK_D, BLOCK_T], dtype=acc)
    if STORE_STATES:     # the channels' checkpoint rows (batch, dim, n_ckpt, N), loop-invariant
        ckpt_row = states_ptr + rows[:, None] * (n_ckpt * N) + ncol
    # Two schedules of the chunk inputs.
    # (a) SMEM_PIPE (STAGES > 1, BC_TILE 0): chunk c's u, Δ, z and its steps' B_t, C_t rows are
    #     loaded in chunk c's body, and Triton's software pipeliner turns those loads into copies
    #     into shared memory (cp.async) issued STAGES − 1 chunks ahead: nothing in flight holds
    #     registers (bf16, 16-step chunks: 72 registers uncapped, no spills at the host's cap of 80).
    # (b) Registers only: chunk c's Δ, Δ·u and u (float32 tiles) are prepared at the end of chunk
    #     c − 1 from raw tiles whose loads chunk c − 2 issued; z is loaded a chunk ahead. Each raw
    #     tile is read a whole chunk after its load is issued and before the next load into it, so
    #     no register copy waits on a load in flight (ptxas issues the loads late in the body: with
    #     loads two chunks ahead in a rotation of registers, the copies made every chunk wait for
    #     HBM, 20% of the default forward's stall samples in Nsight Compute,
    #     book/results/logs/ncu_selective_fwd_source_session9.csv).
    SMEM_PIPE: tl.constexpr = STAGES > 1 and BC_TILE == 0
    if not SMEM_PIPE:
        tt = t0 + t_in
        m2 = dmask[:, None] & (tt < t1)[None, :]
        offs = rows[:, None] * L + tt[None, :]
        Uf, DT, DTU = _chunk_delta(tl.load(delta_ptr + offs, mask=m2, other=0.0),
                                   tl.load(u_ptr + offs, mask=m2, other=0.0), bias, m2, HAS_BIAS, SOFTPLUS, acc)
        if HAS_Z:
            Z = tl.load(z_ptr + offs, mask=m2, other=0.0)
        m2_1 = dmask[:, None] & (tt + BLOCK_T < t1)[None, :]
        U_1 = tl.load(u_ptr + offs + BLOCK_T, mask=m2_1, other=0.0)
        DTr_1 = tl.load(delta_ptr + offs + BLOCK_T, mask=m2_1, other=0.0)
    if BC_TILE > 0:
        # (BLOCK_D, BLOCK_T, BLOCK_N) tiles of the chunk's B_t, C_t, broadcast over the channels.
        # Neither the channel axis (stride 0) nor time (stride N) is contiguous; Triton then puts
        # the lanes on states and channels, as in the state tile, and repeats that plane in
        # registers along time: step j's slice is a register selection (no shuffle, no shared
        # memory), and the chunk's loads are all in flight at once (BC_TILE = 1; 2: loaded a
        # chunk ahead, which keeps two chunks of B and C in registers; 3: B a chunk ahead, C with
        # its chunk, as C only feeds the outputs, off the recurrence's chain).
        t3 = tl.arange(0, BLOCK_T)[None, :, None]
        n3 = tl.arange(0, BLOCK_N)[None, None, :]
        B3_base = B_ptr + b.to(tl.int64) * sB_b + g * sB_g + (rows * 0)[:, None, None] + t3 * NS + n3
        C3_base = C_ptr + b.to(tl.int64) * sC_b + g * sC_g + (rows * 0)[:, None, None] + t3 * NS + n3
        if BC_TILE >= 2:   # the first chunk's; then each chunk loads the next one's
            B3 = _load_bc3(B3_base, t0, t1, NS, N, t3, n3, VAR_B, EVEN_L and EVEN_N, acc)
        if BC_TILE == 2:
            C3 = _load_bc3(C3_base, t0, t1, NS, N, t3, n3, VAR_C and not STATES_ONLY, EVEN_L and EVEN_N, acc)
    # Step j's Δ_t, Δ_t·u_t from the lane that holds them, one shuffle each with SHFL_IDX, instead
    # of the select and the butterfly (two shuffles and two adds). The lane arithmetic is that of
    # the layout Triton 3.6 gives the (32, 16) tiles on 4 warps when the arguments are aligned (8
    # rows × 4 lanes a warp, 4 consecutive columns a thread): column j of a row sits in lane
    # (lane & ~3) | (j // 4). The host checks the compiled kernel's layout (_launch_checked).
    LANE4 = _lane_ids(tcol + zero_rows.to(tl.int32)) & ~3 if SHFL_IDX else 0
    for k in tl.range(t0, t1, BLOCK_T, num_stages=STAGES):
        tt = k + t_in
        m2 = dmask[:, None] & (tt < t1)[None, :]
        offs = rows[:, None] * L + tt[None, :]
        if SMEM_PIPE:                # (a): this chunk's u, Δ, z (its B_t, C_t rows: at each step)
            Uf, DT, DTU = _chunk_delta(tl.load(delta_ptr + offs, mask=m2, other=0.0),
                                       tl.load(u_ptr + offs, mask=m2, other=0.0), bias, m2, HAS_BIAS, SOFTPLUS, acc)
            if HAS_Z:
                Z = tl.load(z_ptr + offs, mask=m2, other=0.0)
        if BC_TILE == 1:
            B3 = _load_bc3(B3_base, k, t1, NS, N, t3, n3, VAR_B, EVEN_L and EVEN_N, acc)
        if BC_TILE == 1 or BC_TILE == 3:
            C3 = _load_bc3(C3_base, k, t1, NS, N, t3, n3, VAR_C and not STATES_ONLY, EVEN_L and EVEN_N, acc)
        if BC_TILE >= 2:   # the next chunk's; in the last, with whole chunks, this one's again (unused):
            # an unmasked load needs no zeroed registers for its masked-off lanes
            kn = tl.minimum(k + BLOCK_T, t1 - BLOCK_T) if EVEN_L and EVEN_N else k + BLOCK_T
            B3_n = _load_bc3(B3_base, kn, t1, NS, N, t3, n3, VAR_B, EVEN_L and EVEN_N, acc)
        if BC_TILE == 2:
            C3_n = _load_bc3(C3_base, kn, t1, NS, N, t3, n3, VAR_C and not STATES_ONLY, EVEN_L and EVEN_N, acc)
        if STATES_ONLY:
            dtsum += DT
        else:
            Y = tl.zeros([BLOCK_D, BLOCK_T], dtype=acc)
        for j in tl.static_range(BLOCK_T):
            sel = tcol == j
            dt = _step_value(DT, sel, LANE4, j, SHFL_IDX)
            dtu = _step_value(DTU, sel, LANE4, j, SHFL_IDX)
            if VAR_B:
                if BC_TILE > 0:
                    Bt = tl.sum(tl.where(t3 == j, B3, _neg_zero(B3)), 1)
                else:
                    Bt = _step_vector(B_row, k + j, NS, ncol, N, t1, EVEN_L and EVEN_N, acc)
            else:
                Bt = Bfix
            X = tl.exp2(dt * A2) * X + dtu * Bt                    # the one exp per (b, d, t, n)
            if not STATES_ONLY:
                if VAR_C and BC_TILE > 0:
                    Ct = tl.sum(tl.where(t3 == j, C3, _neg_zero(C3)), 1)
                elif VAR_C:
                    Ct = _step_vector(C_row, k + j, NS, ncol, N, t1, EVEN_L and EVEN_N, acc)
                else:
                    Ct = Cfix
                Y = tl.where(sel, tl.sum(X * Ct, 1)[:, None], Y)
            if STORE_STATES and CKPT < BLOCK_T:
                if (j + 1) % CKPT == 0:                            # a checkpoint inside the chunk
                    _checkpoint(ckpt_row, X, nmask, k + j + 1, L, N, CKPT)
        if STORE_STATES and CKPT >= BLOCK_T:
            if (k + BLOCK_T) % CKPT == 0:
                _checkpoint(ckpt_row, X, nmask, k + BLOCK_T, L, N, CKPT)
        if not STATES_ONLY:
            if HAS_D:
                Y += Dv * Uf
            if HAS_Z:
                Zf = Z.to(acc)
                Y *= Zf * tl.sigmoid(Zf)
            tl.store(out_ptr + offs, Y.to(out_ptr.dtype.element_ty), mask=m2)
        if not SMEM_PIPE:            # (b)
            m2_1 = dmask[:, None] & (tt + BLOCK_T < t1)[None, :]
            if HAS_Z:          # chunk c + 1's z, used at the end of the next chunk
                Z = tl.load(z_ptr + offs + BLOCK_T, mask=m2_1, other=0.0)
            # chunk c + 1's Δ, Δ·u from the raw tiles loaded during chunk c − 1; then chunk c + 2's loads
            Uf, DT, DTU = _chunk_delta(DTr_1, U_1, bias, m2_1, HAS_BIAS, SOFTPLUS, acc)
            m2_2 = dmask[:, None] & (tt + 2 * BLOCK_T < t1)[None, :]
            U_1 = tl.load(u_ptr + offs + 2 * BLOCK_T, mask=m2_2, other=0.0)
            DTr_1 = tl.load(delta_ptr + offs + 2 * BLOCK_T, mask=m2_2, other=0.0)
        if BC_TILE >= 2:
            B3 = B3_n
        if BC_TILE == 2:
            C3 = C3_n
    if STATES_ONLY:     # pass 1: the segment's end state from zero, and Σ Δ
        _store_segment(_segment_row(seg_ptr, rows, n_seg, seg, N), X, dtsum, ncol, nmask, dmask, N)
    if STORE_LAST:
        if seg == n_seg - 1:
            tl.store(last_ptr + rows[:, None] * N + ncol, X, mask=nmask)


@triton.jit
def _selective_scan_bwd_kernel(
        u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, states_ptr, kcarry_ptr,
        du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
        dim, L, N, dpg, n_dblocks, n_chunks,
        sB_b, sB_g, sB_n, sC_b, sC_g, sC_n,
        VAR_B: tl.constexpr, VAR_C: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
        HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, EVEN_L: tl.constexpr, FLIP: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    b, g, d, dmask, rows = _channel_block(pid, dim, dpg, n_dblocks, BLOCK_D)
    acc = tl.float64 if u_ptr.dtype.element_ty == tl.float64 else tl.float32
    t_in = tl.arange(0, BLOCK_T)
    ncol = tl.arange(0, BLOCK_N)[None, :]
    nmask = dmask[:, None] & (ncol < N)
    zero_rows = rows[:, None] * 0                                # see the forward: one layout for all tiles
    B_row = B_ptr + b.to(tl.int64) * sB_b + g * sB_g + zero_rows
    C_row = C_ptr + b.to(tl.int64) * sC_b + g * sC_g + zero_rows
    # dB, dC of input-dependent B, C: float32 (float64) buffers of B's and C's shape, contiguous.
    dB_row = dB_ptr + b.to(tl.int64) * sB_b + g * sB_g
    dC_row = dC_ptr + b.to(tl.int64) * sC_b + g * sC_g

    bias = 0.0
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d, mask=dmask, other=0.0).to(acc)[:, None]
    if HAS_D:
        Dv = tl.load(D_ptr + d, mask=dmask, other=0.0).to(acc)[:, None]
    # The adjoint flowing into the chunk's last step from beyond it (Ā_T g_T, or d last_state
    # for the last chunk) lives in kcarry_ptr (batch, dim, 2, N): iteration i reads slot
    # (i + 1) % 2 and writes slot i % 2 (from the thread holding the chunk's first step);
    # a barrier ends each iteration (see the forward's carry).
    kcarry = kcarry_ptr + rows * 2 * N
    # (the chunk's first step sits at tile position 0, or BLOCK_T - 1 in reversed order)
    if FLIP:
        kcarry_t = kcarry_ptr + (rows * 2 * N)[:, None] + (t_in - (BLOCK_T - 1))[None, :]
        is_first_t = (t_in[None, :] == BLOCK_T - 1) & dmask[:, None]
    else:
        kcarry_t = kcarry_ptr + (rows * 2 * N)[:, None] + t_in[None, :]
        is_first_t = (t_in[None, :] == 0) & dmask[:, None]
    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=acc)
    dB_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=acc)             # fixed B only
    dC_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=acc)             # fixed C only
    dD_acc = tl.zeros([BLOCK_D], dtype=acc)
    dbias_acc = tl.zeros([BLOCK_D], dtype=acc)
    for i in range(n_chunks):
        c = n_chunks - 1 - i
        # Gradient tiles in "g order": reversed time when FLIP (then the adjoint, a suffix scan
        # in time, is a cheap forward scan along the tile, and only the recomputed states are
        # flipped), else time order (and the adjoint is a reverse=True scan, which Triton 3.6
        # lowers as flip, scan, flip of all three carried values).
        if FLIP:
            tt = c * BLOCK_T + (BLOCK_T - 1 - t_in)
        else:
            tt = c * BLOCK_T + t_in
        tmask = tt < L
        m2 = dmask[:, None] & tmask[None, :]
        offs = rows[:, None] * L + tt[None, :]
        U = tl.load(u_ptr + offs, mask=m2, other=0.0).to(acc)
        DTpre, DT = _delta(tl.load(delta_ptr + offs, mask=m2, other=0.0), bias, m2, HAS_BIAS, SOFTPLUS, acc)
        DTU = DT * U
        if FLIP:  # the same in time order, for recomputing the states
            tt_f = c * BLOCK_T + t_in
            tmask_f = tt_f < L
            m2_f = dmask[:, None] & tmask_f[None, :]
            offs_f = rows[:, None] * L + tt_f[None, :]
            U_f, DT_f, DTU_f = _chunk_delta(tl.load(delta_ptr + offs_f, mask=m2_f, other=0.0),
                                            tl.load(u_ptr + offs_f, mask=m2_f, other=0.0), bias, m2_f,
                                            HAS_BIAS, SOFTPLUS, acc)
        DOUT = tl.load(dout_ptr + offs, mask=m2, other=0.0).to(acc)
        if HAS_Z:
            Z = tl.load(z_ptr + offs, mask=m2, other=0.0).to(acc)
            sig = tl.sigmoid(Z)
            DY = DOUT * Z * sig
            Yacc = tl.zeros([BLOCK_D, BLOCK_T], dtype=acc)
        else:
            DY = DOUT
        if not FLIP:
            DT_rev = tl.flip(DT, 1)
            DY_rev = tl.flip(DY, 1)
        dU = tl.zeros([BLOCK_D, BLOCK_T], dtype=acc)
        dDT = tl.zeros([BLOCK_D, BLOCK_T], dtype=acc)
        for n in range(N):
            a = tl.load(A_ptr + d * N + n, mask=dmask, other=0.0).to(acc)
            a2 = (a * 1.4426950408889634)[:, None]
            Bn = _load_bc(B_row + n * sB_n + tt[None, :], tmask[None, :], B_ptr + d * N + n, dmask, VAR_B, EVEN_L, acc)
            Cn = _load_bc(C_row + n * sC_n + tt[None, :], tmask[None, :], C_ptr + d * N + n, dmask, VAR_C, EVEN_L, acc)
            dA = tl.exp2(DT * a2)
            bx = DTU * Bn
            # recompute the states of the chunk from the checkpoint
            x_in = tl.load(states_ptr + (rows * n_chunks + c - 1) * N + n, mask=dmask & (c > 0), other=0.0)
            if FLIP:
                Bn_f = _load_bc(B_row + n * sB_n + tt_f[None, :], tmask_f[None, :], B_ptr + d * N + n, dmask,
                                VAR_B, EVEN_L, acc)
                Ah, Bh = tl.associative_scan((tl.exp2(DT_f * a2), DTU_f * Bn_f), 1, _scan_combine)
                xs = tl.flip(Ah * x_in.to(acc)[:, None] + Bh, 1)
            else:
                Ah, Bh = tl.associative_scan((dA, bx), 1, _scan_combine)
                xs = Ah * x_in.to(acc)[:, None] + Bh
            if HAS_Z:
                Yacc += Cn * xs
            # adjoint: g_t = C_t dy_t + Ā_{t+1} g_{t+1}, plus what flows in from the next chunk
            if FLIP:
                _, Qh, Sh = tl.associative_scan((dA, tl.full([BLOCK_D, BLOCK_T], 1.0, acc), Cn * DY), 1,
                                                _reverse_combine)
            else:
                # tl.associative_scan(..., reverse=True) would flip all three carried values in and
                # out (six flips, each ~20 instructions and 5 shuffles per element). Instead: Ā of the
                # time-reversed Δ (a second exponential, cheaper than a flip), C dy flipped (or not
                # at all for fixed C), a forward scan, and one flip of the result.
                if VAR_C:
                    cdy_rev = tl.flip(Cn * DY, 1)
                else:
                    cdy_rev = Cn * DY_rev
                _, Qh, Sh = tl.associative_scan((tl.exp2(DT_rev * a2), tl.full([BLOCK_D, BLOCK_T], 1.0, acc),
                                                 cdy_rev), 1, _reverse_combine)
            k_n = tl.load(kcarry + ((i + 1) % 2) * N + n, mask=dmask, other=0.0)
            gg = Sh + Qh * k_n[:, None]
            if not FLIP:
                gg = tl.flip(gg, 1)
            tl.store(kcarry_t + (i % 2) * N + n, dA * gg, mask=is_first_t)
            # gradients; xr = x_{t-1} Ā_t g_t
            xr = (xs - bx) * gg
            dU += gg * DT * Bn
            dDT += gg * Bn * U + a[:, None] * xr
            dA_acc = tl.where(ncol == n, dA_acc + tl.sum(DT * xr, 1)[:, None], dA_acc)
            if VAR_B:
                tl.atomic_add(dB_row + n * sB_n + tt, tl.sum(gg * DTU, 0), mask=tmask)
            else:
                dB_acc = tl.where(ncol == n, dB_acc + tl.sum(gg * DTU, 1)[:, None], dB_acc)
            if VAR_C:
                tl.atomic_add(dC_row + n * sC_n + tt, tl.sum(xs * DY, 0), mask=tmask)
            else:
                dC_acc = tl.where(ncol == n, dC_acc + tl.sum(xs * DY, 1)[:, None], dC_acc)
        if HAS_D:
            dU += DY * Dv
            dD_acc += tl.sum(DY * U, 1)
        if HAS_Z:
            if HAS_D:
                Yacc += Dv * U
            dZ = DOUT * Yacc * sig * (1.0 + Z * (1.0 - sig))
            tl.store(dz_ptr + offs, dZ.to(dz_ptr.dtype.element_ty), mask=m2)
        if SOFTPLUS:
            dDT = dDT * tl.sigmoid(DTpre)
        dDT = tl.where(m2, dDT, 0.0)
        dbias_acc += tl.sum(dDT, 1)
        tl.store(du_ptr + offs, dU.to(du_ptr.dtype.element_ty), mask=m2)
        tl.store(ddelta_ptr + offs, dDT.to(ddelta_ptr.dtype.element_ty), mask=m2)
        tl.debug_barrier()
    # per-channel parameter gradients of this batch element: (batch, dim, N) and (batch, dim)
    pofs = rows[:, None] * N + ncol
    tl.store(dA_ptr + pofs, dA_acc, mask=nmask)
    if not VAR_B:
        tl.store(dB_ptr + pofs, dB_acc, mask=nmask)
    if not VAR_C:
        tl.store(dC_ptr + pofs, dC_acc, mask=nmask)
    if HAS_D:
        tl.store(dD_ptr + rows, dD_acc, mask=dmask)
    if HAS_BIAS:
        tl.store(dbias_ptr + rows, dbias_acc, mask=dmask)


@triton.jit
def _selective_scan_bwd_serial_kernel(
        u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, states_ptr, dlast_ptr,
        du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
        seg_ptr, dim, L, N, dpg, n_dblocks, n_chunks, seg_chunks, n_seg, n_rows, sB_b, sB_g, sC_b, sC_g,
        VAR_B: tl.constexpr, VAR_C: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
        HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_DLAST: tl.constexpr, EVEN_L: tl.constexpr,
        EVEN_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr,
        TW: tl.constexpr, SHFL_IDX: tl.constexpr, RELOAD: tl.constexpr, HAS_SEG: tl.constexpr):
    # The "serial" backward (config bwd_variant="serial"): a (BLOCK_D, BLOCK_N) tile, the chunks
    # from last to first; per chunk (BLOCK_T steps, the checkpoint interval)
    # (1) the states recomputed forward from the chunk's checkpoint, one exp per element; x_t and
    #     Ā_t of every step kept in (BLOCK_D, BLOCK_T, BLOCK_N) register tiles whose time axis is
    #     in registers (step j is a register selection, as the pipelined forward's B/C tiles);
    # (2) the chunk walked backward a step at a time with the adjoint in registers:
    #     λ_t = μ + C_t dy_t, μ ← Ā_t λ_t (μ = Ā_{t+1} λ_{t+1}, so no shifted Ā is needed);
    #     per (d, n): dA += Δ_t λ_t (x_t − b_t)  (x_t − b_t = Ā_t x_{t−1}, b_t = Δ_t u_t B_t);
    #     per (d, t): Σ_n λ_t B_t and Σ_n A λ_t (x_t − b_t) (two butterflies over a channel's lanes)
    #     give du_t, dΔ_t; the slots of step t in the two 3D tiles, no longer needed, take the
    #     step's dB (λ_t Δ_t u_t) and dC (x_t dy_t) terms, summed over the program's channels once
    #     per chunk and written as float32 partials per (program, t, n) (the host adds the channel
    #     blocks: deterministic, no atomics). Fixed B, C accumulate per (d, n) in registers.
    # HAS_SEG: program (pid, seg) takes chunks [seg·seg_chunks, (seg + 1)·seg_chunks) only. The
    # adjoint entering it is folded from the later segments' (_selective_scan_bwd_adjoint_kernel:
    # μ_out = exp(A Σ Δ) μ_in + μ⁰, μ⁰ the segment's outgoing adjoint from zero), and its sums over
    # time (dA, dD, dΔ-bias, fixed dB, dC) go to the segment's slice of (n_seg·batch, dim, …)
    # buffers the host adds up.
    pid = tl.program_id(0)
    seg = tl.program_id(1)
    b, g, d, dmask, rows = _channel_block(pid, dim, dpg, n_dblocks, BLOCK_D)
    acc = tl.float64 if u_ptr.dtype.element_ty == tl.float64 else tl.float32
    nvec = tl.arange(0, BLOCK_N)
    ncol = nvec[None, :]
    # The (channel, time) tiles of the chunk (u, Δ, dy, ...) are TW = max(BLOCK_T, BLOCK_N) wide
    # (columns from BLOCK_T on masked off): as wide as the state tile, they get its register
    # layout, so that a step's column broadcasts over the states without a layout conversion.
    t_in = tl.arange(0, TW)
    tcol = t_in[None, :]
    t3 = tl.arange(0, BLOCK_T)[None, :, None]
    if EVEN_N:
        nmask = dmask[:, None]
        NS: tl.constexpr = BLOCK_N
    else:
        nmask = dmask[:, None] & (ncol < N)
        NS = N
    zero_rows = rows[:, None] * 0
    A2, Bfix, Cfix, bias, Dv = _channel_params(A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, d, dmask, ncol, nmask, N,
                                               VAR_B, VAR_C, HAS_D, HAS_BIAS, acc)
    if VAR_B:
        B_row = B_ptr + b.to(tl.int64) * sB_b + g * sB_g + ncol + zero_rows
    else:
        dBf = tl.zeros([BLOCK_D, BLOCK_N], dtype=acc)
    if VAR_C:
        C_row = C_ptr + b.to(tl.int64) * sC_b + g * sC_g + ncol + zero_rows
    else:
        dCf = tl.zeros([BLOCK_D, BLOCK_N], dtype=acc)
    if HAS_BIAS:
        dbias_acc = tl.zeros([BLOCK_D, TW], dtype=acc)
    if HAS_D:
        dD_acc = tl.zeros([BLOCK_D, TW], dtype=acc)
    # μ: the adjoint flowing into the current step from the later ones (d last_state at the end)
    if HAS_DLAST:
        MU = tl.load(dlast_ptr + rows[:, None] * N + ncol, mask=nmask, other=0.0).to(acc)
    else:
        MU = tl.zeros([BLOCK_D, BLOCK_N], dtype=acc)
    c0 = seg * seg_chunks
    c1 = tl.minimum(c0 + seg_chunks, n_chunks)
    if HAS_SEG:    # through the later segments, last first: μ ← exp2(A₂ Σ Δ) μ + μ⁰
        for i2 in range(0, n_seg - 1 - seg):
            MU = _fold_segment(MU, _segment_row(seg_ptr, rows, n_seg, n_seg - 1 - i2, N), A2, ncol, nmask, dmask, N)
    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=acc)
    # dB/dC partials of input-dependent B/C: (batch, G, n_dblocks, L, NS) float32 (float64)
    part = (pid.to(tl.int64) * L) * NS                    # program pid = (b·G + g)·n_dblocks + block
    p_t = tl.arange(0, BLOCK_T)[:, None]
    p_n = tl.arange(0, BLOCK_N)[None, :]
    # A zero (BLOCK_D, BLOCK_T, BLOCK_N) tile to start the chunk tiles from. Made by a load that
    # never happens (its mask is false at run time) addressed like the pipelined forward's B/C
    # tiles (channel stride 0, time stride N, states contiguous): that load anchors the tile's
    # register layout, whose (channel, state) plane is the state tile's and whose time axis is
    # in registers; zeros of their own would get Triton's default 3D layout (lanes along time
    # and states) and a round trip through shared memory at every step.
    n3 = nvec[None, None, :]
    ZERO3 = tl.load(dA_ptr + zero_rows[:, :, None] + t3 * NS + n3, mask=(t3 + L < 0) & (n3 < N), other=0.0)
    # step j's Δ, Δ·u, dy: as the pipelined forward's (_step_value; the host checks the layout)
    LANE4 = _lane_ids(tcol + zero_rows.to(tl.int32)) & ~3 if SHFL_IDX else 0
    for i in range(0, c1 - c0):
        k = (c1 - 1 - i) * BLOCK_T
        tt = k + t_in
        tmask = (tt < L) & (t_in < BLOCK_T)
        m2 = dmask[:, None] & tmask[None, :]
        offs = rows[:, None] * L + tt[None, :]
        U = tl.load(u_ptr + offs, mask=m2, other=0.0).to(acc)
        DTpre, DT = _delta(tl.load(delta_ptr + offs, mask=m2, other=0.0), bias, m2, HAS_BIAS, SOFTPLUS, acc)
        DTU = DT * U
        DOUT = tl.load(dout_ptr + offs, mask=m2, other=0.0).to(acc)
        if HAS_Z:
            Z = tl.load(z_ptr + offs, mask=m2, other=0.0).to(acc)
            sig = tl.sigmoid(Z)
            DY = DOUT * Z * sig
            Y = tl.zeros([BLOCK_D, TW], dtype=acc)
        else:
            DY = DOUT
        # (1) the chunk's states from its checkpoint (the state before step k)
        X = tl.load(states_ptr + (rows[:, None] * n_chunks + (k // BLOCK_T - 1)) * N + ncol,
                    mask=nmask & (k > 0), other=0.0).to(acc)
        X3 = ZERO3
        A3 = ZERO3
        for j in tl.static_range(BLOCK_T):
            sel = tcol == j
            dt = _step_value(DT, sel, LANE4, j, SHFL_IDX, False)
            dtu = _step_value(DTU, sel, LANE4, j, SHFL_IDX, False)
            if VAR_B:
                Bt = _step_vector(B_row, k + j, NS, ncol, N, L, EVEN_L and EVEN_N, acc)
            else:
                Bt = Bfix
            a = tl.exp2(dt * A2)                                   # the one exp per (b, d, t, n)
            X = a * X + dtu * Bt
            X3 = tl.where(t3 == j, X[:, None, :], X3)
            A3 = tl.where(t3 == j, a[:, None, :], A3)
            if HAS_Z:
                if VAR_C:
                    Ct = _step_vector(C_row, k + j, NS, ncol, N, L, EVEN_L and EVEN_N, acc)
                else:
                    Ct = Cfix
                Y = tl.where(sel, tl.sum(X * Ct, 1)[:, None], Y)
        # (2) the adjoint, a step at a time from the chunk's last step. Its selections (and those of
        #     (1)) sum +0.0, not _neg_zero's -0.0: with -0.0 the float32 forward+backward took 1.93 ms
        #     instead of 1.79 on the H200 (book/results/logs/selective_ab_session8.json), bfloat16 the same.
        S1 = tl.zeros([BLOCK_D, TW], dtype=acc)             # Σ_n λ_t B_t
        S2 = tl.zeros([BLOCK_D, TW], dtype=acc)             # Σ_n A₂ λ_t (x_t − b_t)
        for j in tl.static_range(BLOCK_T - 1, -1, -1):
            sel = tcol == j
            dt = _step_value(DT, sel, LANE4, j, SHFL_IDX, False)
            dtu = _step_value(DTU, sel, LANE4, j, SHFL_IDX, False)
            dy = _step_value(DY, sel, LANE4, j, SHFL_IDX, False)
            x = tl.sum(tl.where(t3 == j, X3, 0.0), 1)
            a = tl.sum(tl.where(t3 == j, A3, 0.0), 1)
            if VAR_B:        # RELOAD: read again (L1), not kept live in registers since (1)
                Bt = _step_vector(B_row, k + j, NS, ncol, N, L, EVEN_L and EVEN_N, acc, RELOAD)
            else:
                Bt = Bfix
            if VAR_C:
                Ct = _step_vector(C_row, k + j, NS, ncol, N, L, EVEN_L and EVEN_N, acc, RELOAD)
            else:
                Ct = Cfix
            lam = MU + Ct * dy                                     # λ_t = Ā_{t+1} λ_{t+1} + C_t dy_t
            w = lam * (x - dtu * Bt)                               # λ_t Ā_t x_{t-1}
            dA_acc += dt * w
            S1 = tl.where(sel, tl.sum(lam * Bt, 1)[:, None], S1)
            S2 = tl.where(sel, tl.sum(A2 * w, 1)[:, None], S2)
            MU = a * lam
            if VAR_B:
                A3 = tl.where(t3 == j, (lam * dtu)[:, None, :], A3)
            else:
                dBf += lam * dtu
            if VAR_C:
                X3 = tl.where(t3 == j, (x * dy)[:, None, :], X3)
            else:
                dCf += x * dy
        # the chunk's dB_t, dC_t summed over the program's channels: partials per (program, t, n)
        pmask = (k + p_t < L) & (p_n < N)
        if VAR_B:
            tl.store(dB_ptr + part + (k + p_t) * NS + p_n, tl.sum(A3, 0), mask=pmask)
        if VAR_C:
            tl.store(dC_ptr + part + (k + p_t) * NS + p_n, tl.sum(X3, 0), mask=pmask)
        dU = DT * S1
        dDT = U * S1 + 0.6931471805599453 * S2                     # (A = A₂ ln 2)
        if HAS_D:
            dU += Dv * DY
            dD_acc += DY * U
        if HAS_Z:
            if HAS_D:
                Y += Dv * U
            dZ = DOUT * Y * sig * (1.0 + Z * (1.0 - sig))
            tl.store(dz_ptr + offs, dZ.to(dz_ptr.dtype.element_ty), mask=m2)
        if SOFTPLUS:
            dDT = dDT * tl.sigmoid(DTpre)
        dDT = tl.where(m2, dDT, 0.0)
        if HAS_BIAS:
            dbias_acc += dDT
        tl.store(du_ptr + offs, dU.to(du_ptr.dtype.element_ty), mask=m2)
        tl.store(ddelta_ptr + offs, dDT.to(ddelta_ptr.dtype.element_ty), mask=m2)
    # per-channel parameter gradients of this batch element (and segment): (n_seg·batch, dim, N)
    # and (n_seg·batch, dim)
    srows = seg.to(tl.int64) * n_rows + rows
    pofs = srows[:, None] * N + ncol
    tl.store(dA_ptr + pofs, dA_acc, mask=nmask)
    if not VAR_B:
        tl.store(dB_ptr + pofs, dBf, mask=nmask)
    if not VAR_C:
        tl.store(dC_ptr + pofs, dCf, mask=nmask)
    if HAS_D:
        tl.store(dD_ptr + srows, tl.sum(dD_acc, 1), mask=dmask)
    if HAS_BIAS:
        tl.store(dbias_ptr + srows, tl.sum(dbias_acc, 1), mask=dmask)


@triton.jit
def _selective_scan_bwd_adjoint_kernel(
        delta_ptr, A_ptr, C_ptr, z_ptr, bias_ptr, dout_ptr, seg_ptr,
        dim, L, N, dpg, n_dblocks, n_chunks, seg_chunks, n_seg, sC_b, sC_g,
        VAR_C: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
        EVEN_L: tl.constexpr, EVEN_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr,
        BLOCK_N: tl.constexpr, TW: tl.constexpr, SHFL_IDX: tl.constexpr):
    # Pass 1 of the segmented serial backward: program (pid, seg − 1) walks segment seg (≥ 1) from
    # its last step to its first with the adjoint alone, from zero: λ_t = μ + C_t dy_t,
    # μ ← Ā_t λ_t, one exp per element and no states. It stores, per channel, the outgoing μ⁰ and
    # Σ Δ over the segment, (N + 1) floats in seg_ptr (n_rows, n_seg, N + 1): the adjoint leaving
    # the segment is exp2(A₂ Σ Δ) μ_in + μ⁰, linear in the one entering it.
    pid = tl.program_id(0)
    seg = tl.program_id(1) + 1
    b, g, d, dmask, rows = _channel_block(pid, dim, dpg, n_dblocks, BLOCK_D)
    acc = tl.float64 if delta_ptr.dtype.element_ty == tl.float64 else tl.float32
    nvec = tl.arange(0, BLOCK_N)
    ncol = nvec[None, :]
    t_in = tl.arange(0, TW)                                     # as wide as the state tile (its layout)
    tcol = t_in[None, :]
    if EVEN_N:
        nmask = dmask[:, None]
        NS: tl.constexpr = BLOCK_N
    else:
        nmask = dmask[:, None] & (ncol < N)
        NS = N
    zero_rows = rows[:, None] * 0
    A2, _, Cfix, bias, _ = _channel_params(A_ptr, C_ptr, C_ptr, C_ptr, bias_ptr, d, dmask, ncol, nmask, N,
                                           True, VAR_C, False, HAS_BIAS, acc)
    if VAR_C:
        C_row = C_ptr + b.to(tl.int64) * sC_b + g * sC_g + ncol + zero_rows
    MU = tl.zeros([BLOCK_D, BLOCK_N], dtype=acc)
    dtsum = tl.zeros([BLOCK_D, TW], dtype=acc)
    LANE4 = _lane_ids(tcol + zero_rows.to(tl.int32)) & ~3 if SHFL_IDX else 0
    c0 = seg * seg_chunks
    c1 = tl.minimum(c0 + seg_chunks, n_chunks)
    for i in range(0, c1 - c0):
        k = (c1 - 1 - i) * BLOCK_T
        tt = k + t_in
        m2 = dmask[:, None] & ((tt < L) & (t_in < BLOCK_T))[None, :]
        offs = rows[:, None] * L + tt[None, :]
        DTpre, DT = _delta(tl.load(delta_ptr + offs, mask=m2, other=0.0), bias, m2, HAS_BIAS, SOFTPLUS, acc)
        dtsum += DT
        DY = tl.load(dout_ptr + offs, mask=m2, other=0.0).to(acc)
        if HAS_Z:
            Z = tl.load(z_ptr + offs, mask=m2, other=0.0).to(acc)
            DY = DY * Z * tl.sigmoid(Z)
        for j in tl.static_range(BLOCK_T - 1, -1, -1):
            sel = tcol == j
            dt = _step_value(DT, sel, LANE4, j, SHFL_IDX, False)
            dy = _step_value(DY, sel, LANE4, j, SHFL_IDX, False)
            if VAR_C:
                Ct = _step_vector(C_row, k + j, NS, ncol, N, L, EVEN_L and EVEN_N, acc)
            else:
                Ct = Cfix
            MU = tl.exp2(dt * A2) * (MU + Ct * dy)
    _store_segment(_segment_row(seg_ptr, rows, n_seg, seg, N), MU, dtsum, ncol, nmask, dmask, N)


@triton.jit
def _selective_state_update_kernel(
        state_ptr, x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr,
        batch, dim, N,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr):
    # Program (block of BLOCK_B batch rows, block of BLOCK_D channels): A, D and dt_bias of the
    # channels are loaded once for the BLOCK_B rows (unrolled, so their state loads are in flight
    # together).
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = d < dim
    n = tl.arange(0, BLOCK_N)
    nmask = n < N
    acc = tl.float64 if x_ptr.dtype.element_ty == tl.float64 else tl.float32
    A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=dmask[:, None] & nmask[None, :], other=0.0).to(acc)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d, mask=dmask, other=0.0).to(acc)
    if HAS_D:
        Dv = tl.load(D_ptr + d, mask=dmask, other=0.0).to(acc)
    for i in tl.static_range(BLOCK_B):
        b = tl.program_id(0) * BLOCK_B + i
        bmask = dmask & (b < batch)
        m2 = bmask[:, None] & nmask[None, :]
        row = b.to(tl.int64) * dim + d
        sofs = row[:, None] * N + n[None, :]
        S = tl.load(state_ptr + sofs, mask=m2, other=0.0).to(acc)
        xv = tl.load(x_ptr + row, mask=bmask, other=0.0).to(acc)
        dt = tl.load(dt_ptr + row, mask=bmask, other=0.0).to(acc)
        if HAS_BIAS:
            dt += bias
        if SOFTPLUS:
            dt = softplus(dt, FAST=True)
        Bv = tl.load(B_ptr + b.to(tl.int64) * N + n, mask=nmask & (b < batch), other=0.0).to(acc)
        Cv = tl.load(C_ptr + b.to(tl.int64) * N + n, mask=nmask & (b < batch), other=0.0).to(acc)
        S = tl.exp2(dt[:, None] * A * 1.4426950408889634) * S + (dt * xv)[:, None] * Bv[None, :]
        tl.store(state_ptr + sofs, S.to(state_ptr.dtype.element_ty), mask=m2)
        y = tl.sum(S * Cv[None, :], 1)
        if HAS_D:
            y += Dv * xv
        if HAS_Z:
            zv = tl.load(z_ptr + row, mask=bmask, other=0.0).to(acc)
            y *= zv * tl.sigmoid(zv)
        tl.store(out_ptr + row, y.to(out_ptr.dtype.element_ty), mask=bmask)


# ----------------------------------------------------------------------------- launch configs
def _fwd_config(N: int, L: int, dtype: torch.dtype) -> tuple[int, int, int]:
    """(BLOCK_D, BLOCK_T, num_warps) of the "scan" forward (the "serial" one: 32, 16, 4).

    In the interpreter: few, large programs and short chunks (its scan is a
    Python loop per element). On the GPU: a first choice to be replaced by the
    measured best of ``python -m ssmlib.bench selective --sweep``.
    """
    if runtime.INTERPRET:
        return 8, min(16, runtime.next_pow2(max(L, 1))), 1
    bt = min(128, max(32, runtime.next_pow2(max(L, 1))))
    return 2048 // bt, bt, 8


def _fwd_variant(N: int, L: int) -> str:
    """Which forward kernel: ``"pipelined"`` (a step at a time, the chunk in registers) or ``"scan"``.

    The H200 sweep (``book/results/selective_scan_sweep.json``) found "pipelined" with
    ``bc_tile=2`` the fastest forward at the headline shape (bf16 and fp32) and at batch 1,
    L 16K, ahead of the best "serial" and "scan" configurations. For N < 4 the
    step-at-a-time tiles are too thin (one state per thread: Triton moves the per-step
    values through shared memory).
    """
    return "pipelined" if N >= 4 else "scan"


def _bwd_variant() -> str:
    """The default backward: ``"serial"``, the fastest in the H200 sweep at the headline shape
    (``book/results/selective_scan_sweep.json``: its best configuration against the best "scan" one)."""
    return "serial"


def _serial_config(sequences: int, device) -> tuple[int, int]:
    """(BLOCK_D, num_warps) of the serial forward: 8 channels per warp (Triton puts 8 rows × 4
    lanes of the state tile in a warp for N >= 16); 4 warps, fewer when there would be fewer
    than 4 programs per SM (one batch element of a small model: parallelism is scarce)."""
    sms = runtime.sm_count(device)
    bd, nw = 32, 4
    while bd > 8 and sequences // bd < 4 * sms:
        bd, nw = bd // 2, nw // 2
    return bd, nw


def _bwd_config(N: int, L: int, dtype: torch.dtype) -> tuple[int, int, int]:
    """(BLOCK_D, BLOCK_T, num_warps) of the backward (more live tiles than the forward)."""
    if runtime.INTERPRET:
        return 8, min(16, runtime.next_pow2(max(L, 1))), 1
    return 4, min(128, max(16, runtime.next_pow2(max(L, 1)))), 4


def _bwd_serial_config(N: int, L: int, dtype: torch.dtype) -> tuple[int, int, int]:
    """(BLOCK_D, BLOCK_T, num_warps) of the "serial" backward: BLOCK_T (the checkpoint interval)
    short, since x_t and Ā_t of the chunk's steps live in registers. The H200 sweep's fastest
    (``BWD_SERIAL_CONFIGS`` in ``ssmlib.bench.selective``): 8 channels × 16 states on one warp,
    4 states a thread. 16-step chunks, which halve the chunk's per-element work on its 16-wide
    tiles (45.8 → 40.2 instructions an element uncapped, 48 bytes of spills; 45.2 at the 168 cap
    with 684; bf16, compile-only), were slower with every cap and reload tried: fwd+bwd 1.460 →
    1.95–2.29 ms in bf16, 1.469 → 1.94–2.47 in float32, 1.350 → 1.70–1.92 at batch 1, L 16K
    (``book/results/logs/selective_ab_session13_callC.json``)."""
    if runtime.INTERPRET:
        return 8, min(8, runtime.next_pow2(max(L, 1))), 1
    return 8, 8, 1             # the H200 sweep's best: 8 channels on one warp


def _bwd_seg_chunks(warps: int, n_chunks: int, device) -> int:
    """Chunks a segment of the serial backward: all of them (one segment) when the programs bring
    at least 8 warps per SM; else segments of at least 16 chunks, as many as fit 12 one-warp
    programs per SM at once (the 168-register cap's occupancy: no second wave); pass 1 costs one
    more exp per element of every segment but the first. On the H200 at batch 1, dim 1024, bf16
    (128 programs) it split L 2K, 4K, 16K into 12 segments and the fwd+bwd kernels took 200, 353,
    1280 µs against 610, 1211, 4823 unsplit and 471, 536, 1442 with 1024-step segments
    (``book/results/logs/profile_b1_split_session12.json``)."""
    if runtime.INTERPRET:
        return max(n_chunks, 1)
    sms = runtime.sm_count(device)
    if warps >= 8 * sms:
        return max(n_chunks, 1)
    want = max(1, 12 * sms // warps)
    return max(16, runtime.cdiv(n_chunks, want))


def _bwd_reload(maxnreg: int | None) -> bool:
    """Default ``bwd_reload`` of the serial backward: on under a register cap. Its walk then reads
    each step's B_t, C_t rows again (L1 hits) instead of keeping the recompute's rows in registers:
    at the 168 cap 256 → 44 bytes of spills and 47.3 → 45.8 instructions an element (bf16,
    compile-only), and on the H200 fwd+bwd went 1.539 → 1.464 ms in bf16 and 1.629 → 1.471 in
    float32 (batch 8, dim 1536, L 2K); uncapped (batch 1, dim 1024, L 16K: no spills to save) 4.95
    → 5.03 (``book/results/logs/selective_ab_session11_call3.json``, medians of alternating runs;
    caps of 152 and 144 with it were slower than 168)."""
    return maxnreg is not None and maxnreg < 255


def _bwd_serial_maxnreg(programs: int, device) -> int | None:
    """Register cap of the serial backward's one-warp programs. Uncapped they take 255
    registers, so 8 fit in an SM; capped at 168, 12 (some spills). On the H200 the cap made
    fwd+bwd faster where there are many programs an SM (batch 8, dim 1536: 11.6 an SM, bf16
    2.07 → 1.84 ms, fp32 2.13 → 1.79; batch 4, dim 2048: 7.8 an SM, 1.21 → 1.09) and slower
    where there is about one (batch 1, dim 1024: 5.80 → 6.94 ms), where the spills cost and no
    program waits for room (``book/results/logs/defaults_grid_session5.json``). 160 and 176
    were slower than 168 at all three."""
    if runtime.INTERPRET:
        return None
    return 168 if programs >= 4 * runtime.sm_count(device) else None


def _check_pow2(name, v):
    if v is not None and (not isinstance(v, int) or v < 1 or v & (v - 1)):
        raise ValueError(f"{name} must be a power of two, got {v}")


# ----------------------------------------------------------------------------- argument checks
#: :func:`_check_args`'s results by the arguments' signatures (:func:`_signature`): the checks read
#: nothing else, so a signature that passed once passes again (a few µs against about 50 on the host).
_CHECKED: dict[tuple, tuple] = {}


def _signature(*args) -> tuple:
    """Type, dtype, shape, strides and device of each tensor argument (None for None)."""
    return tuple(None if t is None else (type(t), t.dtype, t.shape, t.stride(), t.device) for t in args)


def _check_args(u, delta, A, B, C, D, z, delta_bias):
    """Validate the selective scan's arguments; return (batch, dim, L, N, G, var_B, var_C)."""
    try:
        key = _signature(u, delta, A, B, C, D, z, delta_bias)
    except (AttributeError, TypeError):       # not tensors: the checks below say which
        key = None
    if key is not None and key in _CHECKED:
        return _CHECKED[key]
    dims = _check_args_uncached(u, delta, A, B, C, D, z, delta_bias)
    if key is not None:
        if len(_CHECKED) > 1024:
            _CHECKED.clear()
        _CHECKED[key] = dims
    return dims


def _check_args_uncached(u, delta, A, B, C, D, z, delta_bias):
    checks.tensor("u", u, ndim=3, dtypes=INPUT_DTYPES)
    batch, dim, L = u.shape
    checks.tensor("delta", delta, ndim=3, dtypes=(u.dtype,))
    checks.shape("delta", delta, (batch, dim, L))
    checks.tensor("A", A, ndim=2)
    if A.is_complex():
        raise TypeError(f"A has dtype {A.dtype}: complex A is not supported (real A only, as in Mamba-1's "
                        f"real-valued S6)")
    checks.tensor("A", A, dtypes=checks.REAL_DTYPES)
    N = A.shape[1]
    checks.shape("A", A, (dim, N))
    if N > MAX_N:
        raise ValueError(f"A has state size N={N}; the kernels support N <= {MAX_N}")
    groups = []
    for name, X in (("B", B), ("C", C)):
        checks.tensor(name, X, dtypes=checks.REAL_DTYPES)
        if X.is_complex():
            raise TypeError(f"{name} has dtype {X.dtype}: complex B and C are not supported")
        if X.dim() == 2:
            checks.shape(name, X, (dim, N))
            groups.append(None)
        elif X.dim() == 3:
            checks.shape(name, X, (batch, N, None))
            if X.shape[2] != L:
                raise ValueError(f"{name} has sequence length {X.shape[2]} but u has L={L}")
            groups.append(1)
        elif X.dim() == 4:
            G = X.shape[1]
            checks.shape(name, X, (batch, G, N, None))
            if X.shape[3] != L:
                raise ValueError(f"{name} has sequence length {X.shape[3]} but u has L={L}")
            if G < 1 or dim % G:
                raise ValueError(f"{name} has G={G} groups, but dim={dim} is not divisible by G")
            groups.append(G)
        else:
            raise ValueError(f"{name} must be (dim, N), (batch, N, L) or (batch, G, N, L); "
                             f"got shape {tuple(X.shape)}")
    if groups[0] is not None and groups[1] is not None and groups[0] != groups[1]:
        raise ValueError(f"B has {groups[0]} groups but C has {groups[1]}")
    G = groups[0] or groups[1] or 1
    for name, v in (("D", D), ("delta_bias", delta_bias)):
        if v is not None:
            checks.tensor(name, v, ndim=1, dtypes=checks.REAL_DTYPES)
            checks.shape(name, v, (dim,))
    if z is not None:
        checks.tensor("z", z, ndim=3, dtypes=(u.dtype,))
        checks.shape("z", z, (batch, dim, L))
    named = dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias)
    for name, t in named.items():
        if t is not None:
            runtime.check_kernel_device(name, t)
            if t.dim() and t.numel() and t.shape[-1] > 1 and t.stride(-1) != 1:
                raise ValueError(f"{name} must be contiguous in its last dimension (call .contiguous() "
                                 f"first); got strides {t.stride()} for shape {tuple(t.shape)}")
    checks.same_device(**named)
    return batch, dim, L, N, G, groups[0] is not None, groups[1] is not None


def _dense_copy(X, dtype):
    """A contiguous copy of ``X`` in ``dtype``: one call, one copy kernel (``X.to(dtype).contiguous()``
    of a strided X launches two; without ``copy=True``, ``.to`` returns X itself, strides and all,
    when X already has the dtype)."""
    return X.to(dtype, memory_format=torch.contiguous_format, copy=True)


def _bc_steps(B, C, var_B, var_C, acc, L, N, Bt=None, Ct=None):
    """Input-dependent B, C as ``(batch, [G,] L, N)`` copies in the arithmetic dtype ``acc`` (a
    step's N values one contiguous vector; one copy kernel each), and their (batch, group) strides;
    fixed ones as given, strides 0. For the step-at-a-time kernels (serial and pipelined forwards,
    serial backward). ``Bt``, ``Ct``: copies the forward already made (the backward reuses them)."""
    def one(X, var, Xt):
        if not var:
            return X, (0, 0)
        if Xt is None:
            Xt = _dense_copy(X.transpose(-1, -2), acc)
        return Xt, (Xt.shape[1] * L * N if Xt.dim() == 4 else L * N, L * N)
    (Bt, sB), (Ct, sC) = one(B, var_B, Bt), one(C, var_C, Ct)
    return Bt, Ct, sB, sC


def _bc_strides(X, var, N, L):
    """(batch, group, state) strides of a contiguous variable B/C; zeros for fixed."""
    if not var:
        return 0, 0, 0
    if X.dim() == 3:
        return N * L, 0, L
    return X.shape[1] * N * L, N * L, L


# ----------------------------------------------------------------------------- launches
def _forward(u, delta, A, B, C, D, z, delta_bias, softplus, want_last, want_states, config=None, dims=None):
    """out, last state (or None) and what the backward needs. ``dims``: :func:`_check_args`'s
    result when the caller has checked the arguments already."""
    batch, dim, L, N, G, var_B, var_C = dims or _check_args(u, delta, A, B, C, D, z, delta_bias)
    u, delta, A, B, C = (t.contiguous() for t in (u, delta, A, B, C))
    D = D.contiguous() if D is not None else None
    z = z.contiguous() if z is not None else None
    delta_bias = delta_bias.contiguous() if delta_bias is not None else None
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    bd, bt, nw = _fwd_config(N, L, u.dtype)
    if config:
        bd, bt, nw = config.get("block_d") or bd, config.get("block_t") or bt, config.get("num_warps") or nw
    for k, v in (("block_d", bd), ("block_t", bt), ("num_warps", nw)):
        _check_pow2(k, v)
    if ((config or {}).get("bwd_variant") or _bwd_variant()) == "serial":
        # the serial backward's chunk (its register tiles hold BLOCK_T steps): short
        ckpt = (config or {}).get("bwd_block_t") or _bwd_serial_config(N, L, u.dtype)[1]
    else:
        ckpt = (config or {}).get("bwd_block_t") or _bwd_config(N, L, u.dtype)[1]
    _check_pow2("bwd_block_t", ckpt)
    n_chunks, n_ckpt = runtime.cdiv(L, bt), runtime.cdiv(L, ckpt)
    states = torch.empty(batch, dim, n_ckpt, N, dtype=acc, device=u.device) if want_states else None
    variant = (config or {}).get("variant", _fwd_variant(N, L))
    if variant == "pipelined":
        return _forward_pipelined(u, delta, A, B, C, D, z, delta_bias, softplus, want_last, want_states,
                                  config or {}, batch, dim, L, N, G, var_B, var_C, acc, ckpt, n_ckpt, states)
    out = torch.empty_like(u)
    carry = torch.zeros(batch, dim, 2, N, dtype=acc, device=u.device)     # the kernel's carry between chunks
    dpg = dim // G
    if variant == "serial":
        # chunks no longer than the checkpoint interval, so that checkpoints fall on chunk ends
        bt = min((config or {}).get("block_t") or (8 if runtime.INTERPRET else 16), ckpt)
        bd, nw = (8, 1) if runtime.INTERPRET else _serial_config(batch * dim, u.device)
        bd = (config or {}).get("block_d") or bd
        nw = (config or {}).get("num_warps") or nw
        n_dblocks = runtime.cdiv(dpg, bd)
        last = torch.zeros(batch, dim, N, dtype=acc, device=u.device) if want_last else None
        Bt = Ct = None
        if batch * dim and L:
            grid = batch * G * n_dblocks
            scratch = torch.empty(grid * 2 * bd * bt, dtype=acc, device=u.device)
            Bt, Ct, sB, sC = _bc_steps(B, C, var_B, var_C, acc, L, N)
            runtime.launch(_selective_scan_fwd_serial_kernel, (grid,), (
                u, delta, A, Bt, Ct, D if D is not None else u, z if z is not None else u,
                delta_bias if delta_bias is not None else u, out, last if last is not None else out,
                states if states is not None else out, scratch,
                dim, L, N, dpg, n_dblocks, n_ckpt, *sB, *sC), dict(
                VAR_B=var_B, VAR_C=var_C, HAS_D=D is not None, HAS_Z=z is not None,
                HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(softplus), STORE_LAST=want_last,
                STORE_STATES=want_states, CKPT=ckpt, EVEN_L=L % bt == 0, EVEN_N=runtime.next_pow2(N) == N,
                BLOCK_D=bd, BLOCK_T=bt, BLOCK_N=runtime.next_pow2(N), num_warps=nw))
        saved = (u, delta, A, B, C, D, z, delta_bias, states, Bt, Ct, (ckpt, G, var_B, var_C))
        return out, last, saved
    n_dblocks = runtime.cdiv(dpg, bd)
    if batch * dim and L:
        runtime.launch(_selective_scan_fwd_kernel, (batch * G * n_dblocks,), (
            u, delta, A, B, C, D if D is not None else u, z if z is not None else u,
            delta_bias if delta_bias is not None else u, out, carry, states if states is not None else out,
            dim, L, N, dpg, n_dblocks, n_chunks, n_ckpt,
            *_bc_strides(B, var_B, N, L), *_bc_strides(C, var_C, N, L)), dict(
            VAR_B=var_B, VAR_C=var_C, HAS_D=D is not None, HAS_Z=z is not None,
            HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(softplus), STORE_LAST=want_last,
            STORE_STATES=want_states, CKPT=ckpt, EVEN_L=L % bt == 0, BLOCK_D=bd, BLOCK_T=bt, num_warps=nw))
    saved = (u, delta, A, B, C, D, z, delta_bias, states, None, None, (ckpt, G, var_B, var_C))
    last = carry[:, :, (n_chunks - 1) % 2] if want_last and L else carry[:, :, 0]
    return out, (last.contiguous() if want_last else None), saved


def _forward_pipelined(u, delta, A, B, C, D, z, delta_bias, softplus, want_last, want_states, config,
                       batch, dim, L, N, G, var_B, var_C, acc, ckpt, n_ckpt, states):
    """The "pipelined" forward: one launch, or two when the sequence is split into segments."""
    # the chunk may be longer than the checkpoint interval (checkpoints then fall inside a chunk)
    bt, maxnreg = _pipe_tiles(N, ckpt)
    bt = config.get("block_t") or bt
    bd, nw = (8, 1) if runtime.INTERPRET else (32, 4)
    bd = config.get("block_d") or bd
    nw = config.get("num_warps") or nw
    dpg = dim // G
    n_dblocks = runtime.cdiv(dpg, bd)
    programs = batch * G * n_dblocks
    seg_len = config.get("seg_len") or _pipe_seg_len(programs * nw, L, bt, u.device)
    seg_len = runtime.cdiv(max(seg_len, bt), bt) * bt               # a whole number of chunks
    n_seg = runtime.cdiv(L, seg_len) if L else 1
    out = torch.empty_like(u)
    last = torch.empty(batch, dim, N, dtype=acc, device=u.device) if want_last and batch * dim and L else (
        torch.zeros(batch, dim, N, dtype=acc, device=u.device) if want_last else None)
    Bt = Ct = None
    if batch * dim and L:
        Bt, Ct, sB, sC = _bc_steps(B, C, var_B, var_C, acc, L, N)
        seg = torch.empty(batch, dim, n_seg, N + 1, dtype=acc, device=u.device) if n_seg > 1 else None
        common = dict(VAR_B=var_B, VAR_C=var_C, HAS_D=D is not None,
                      HAS_Z=z is not None,
                      HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(softplus), CKPT=ckpt, EVEN_L=L % bt == 0,
                      EVEN_N=runtime.next_pow2(N) == N, BLOCK_D=bd, BLOCK_T=bt,
                      BLOCK_N=runtime.next_pow2(N), num_warps=nw)
        bc_tile, stages = _pipe_schedule(u.dtype, N, want_states, n_seg > 1)
        common["BC_TILE"] = int(config.get("bc_tile", bc_tile) or 0)
        # the default stages go with the default bc_tile (other B/C tiles: registers only)
        common["STAGES"] = int(config.get("stages", stages if common["BC_TILE"] == bc_tile else 1))
        common["SHFL_IDX"] = _shfl_option(config, "shfl_idx", bd, bt, N, nw, acc)
        if common["STAGES"] > 1 and common["BC_TILE"] == 0 and maxnreg:
            maxnreg = PIPE_SMEM_MAXNREG
        maxnreg = config.get("maxnreg", maxnreg)
        if maxnreg:
            common["maxnreg"] = maxnreg
        # unused pointers are placeholders of the same dtype as a real call's (u's for inputs)
        args = (u, delta, A, Bt, Ct, D if D is not None else u, z if z is not None else u,
                delta_bias if delta_bias is not None else u, out, last if last is not None else out,
                states if states is not None else out, seg if seg is not None else out,
                dim, L, N, dpg, n_dblocks, n_ckpt, seg_len, n_seg, *sB, *sC)
        if n_seg > 1:
            # pass 1: each segment but the last from a zero state: its end state and Σ Δ
            _launch_checked(_selective_scan_fwd_pipe_kernel, (programs, n_seg - 1), args, dict(
                STORE_LAST=False, STORE_STATES=False, STATES_ONLY=True, HAS_H0=False, **common))
        # pass 2 (or the only pass): every segment from its entering state
        _launch_checked(_selective_scan_fwd_pipe_kernel, (programs, n_seg), args, dict(
            STORE_LAST=want_last, STORE_STATES=want_states, STATES_ONLY=False, HAS_H0=n_seg > 1, **common))
    saved = (u, delta, A, B, C, D, z, delta_bias, states, Bt, Ct, (ckpt, G, var_B, var_C))
    return out, last, saved


#: Whether a compilation (kernel name, hash) of SHFL_IDX has the layout it assumes (_launch_checked's
#: record of its checks, which the tests read).
_SHFL_OK: dict[tuple, bool] = {}


def _shfl_layout(warps: int) -> str:
    """The register layout of the (8·warps, 16) tiles that SHFL_IDX's lane arithmetic assumes: 8 rows
    × 4 lanes a warp, 4 consecutive columns a lane."""
    return f"sizePerThread = [1, 4], threadsPerWarp = [8, 4], warpsPerCTA = [{warps}, 1], order = [1, 0]"


def _shfl_layout_ok(ttgir: str, warps: int) -> bool:
    """Whether every ``%laneid`` read and every ``shfl.sync.idx`` of a compiled kernel (its TTGIR
    text) runs on (8·warps, 16) tiles (or (1, 16) rows broadcast into them) in ``_shfl_layout``."""
    layouts = dict(re.findall(r"^(#\w+) = #ttg\.blocked<\{(.*)\}>", ttgir, re.M))
    ops = [line for line in ttgir.splitlines()
           if "tt.elementwise_inline_asm" in line and ("%laneid" in line or "shfl.sync.idx" in line)]
    types = [re.fullmatch(rf"(?:1|{8 * warps})x16x(?:f32|i32), (#\w+)", t)
             for line in ops for t in re.findall(r"tensor<([^>]*)>", line.rsplit("}", 1)[-1])]
    return bool(types) and all(t is not None and layouts.get(t[1]) == _shfl_layout(warps) for t in types)


def _launch_checked(kernel, grid, args, kw):
    """Launches ``kernel`` (the pipelined forward, the serial backward or its pass 1) through
    :func:`runtime.launch`. With SHFL_IDX its lane arithmetic assumes the register layout
    ``_shfl_layout``, which Triton picks from what it may assume of the arguments (8 × 4 lanes over
    a tile when the pointers and integers are multiples of 16; 2 × 16 with fewer such guarantees).
    So the first launch of each specialization checks the compiled kernel's TTGIR (``_SHFL_OK``,
    by kernel name and compilation); where the layout differs, it runs the kernel again without
    SHFL_IDX, as every later launch of that specialization does."""
    def redo(compiled):
        ok = _shfl_layout_ok(compiled.asm["ttgir"], kw["num_warps"])
        _SHFL_OK[(kernel.fn.__name__, compiled.hash)] = ok
        return None if ok else {**kw, "SHFL_IDX": False}
    runtime.launch(kernel, grid, args, kw, redo if kw["SHFL_IDX"] else None)


def _shfl_option(config: dict, key: str, block_d: int, width: int, N: int, warps: int, acc: torch.dtype) -> bool:
    """config[key] (shfl_idx, bwd_shfl_idx), by default whether the tiles fit (``_shfl_fits``); asked
    for where they do not fit, a ValueError (in the interpreter, which runs no PTX, always False)."""
    fits = _shfl_fits(block_d, width, N, warps, acc)
    if not config.get(key, fits):
        return False
    if not fits and not runtime.INTERPRET:
        raise ValueError(f"config {key} needs (8·warps, 16) float32 tiles: block_d 8·num_warps, 16 columns "
                         f"(steps) and 16 (padded) states; got block_d {block_d}, {warps} warps, {width} columns, "
                         f"{runtime.next_pow2(N)} states, {acc}")
    return fits


def _shfl_fits(block_d: int, width: int, N: int, warps: int, acc: torch.dtype) -> bool:
    """Whether SHFL_IDX's lane arithmetic fits a kernel's (channel, step) tiles: (8·warps, 16) tiles
    (``width`` columns: the forward's BLOCK_T, the backward's TW) of float32, 16 (padded) states."""
    return (block_d == 8 * warps and width == 16 and runtime.next_pow2(N) == 16 and acc == torch.float32
            and not runtime.INTERPRET)


def _pipe_tiles(N: int, ckpt: int) -> tuple[int, int | None]:
    """(BLOCK_T, maxnreg) of the pipelined forward: for N ≤ 16, 16-step chunks with registers
    capped at 168 (at ``PIPE_SMEM_MAXNREG`` where the inputs go through shared memory,
    ``_pipe_schedule``). On the H200 at the headline shape (batch 8, dim 1536, N 16;
    ``book/results/logs/selective_fwd_tiles.json``) 16-step chunks with B and C a chunk ahead take
    241 registers, so only two 4-warp programs fit in an SM (1.45 waves); capped at 168 all 384
    programs are resident at once: bf16 0.44 → 0.34 ms. Before a backward (checkpoints every
    ``ckpt`` steps, 8 for the default backward, inside the chunks) the same tiles once measured
    slower in fwd+bwd than ``ckpt``-step uncapped chunks (2.70 against 2.10 ms, bf16) and still
    do with B and C a chunk ahead (2.10 against 1.73); with C loaded with its chunk (``bc_tile``
    3) they are faster: 1.68 (``book/results/logs/selective_exp10_session10.json``); with
    ``shfl_idx`` too, fwd+bwd went 1.728 → 1.668 ms in bf16 and 1.821 → 1.726 in float32
    against the old 8-step chunks (``book/results/logs/selective_ab_session10_call2.json``,
    medians of 3 alternating runs; compile-only its loop went from 19.4 to 11.0 instructions an
    element in bf16, ``book/results/logs/compile_selective_session10.json``). Wider states
    keep chunks of at most 16 and at most ``ckpt`` steps, uncapped (their tiles already fill the
    registers)."""
    if runtime.INTERPRET:
        return 8, None
    if runtime.next_pow2(N) > 16:
        return min(16, ckpt), None
    return 16, 168


#: Register cap of the pipelined forward when its inputs go through shared memory (bc_tile 0,
#: stages > 1) at N ≤ 16: the sm_90a code needs 72 uncapped and spills nothing at 80 (compile-only,
#: bf16 and float32, every pass), so 6 four-warp programs fit in an SM instead of 3 at 168.
PIPE_SMEM_MAXNREG = 80


def _pipe_schedule(dtype: torch.dtype, N: int, want_states: bool, split: bool) -> tuple[int, int]:
    """(``bc_tile``, ``stages``) of the pipelined forward; ``split``: L in segments (two passes).

    Registers only (``stages`` 1) for inference over whole sequences: ``bc_tile`` 2 (B and C a
    chunk ahead) for bf16/fp16, 3 (C loaded with its own chunk: 64 fewer live registers) for
    float32; at the headline shape (batch 8, dim 1536, L 2K) float32 went 0.313 → 0.300 ms with 3,
    bfloat16 0.293 → 0.313 (``book/results/logs/selective_ab_session9_call3.json``). Before a
    backward, and for split sequences, at 16 (padded) states: every input through shared memory
    (``bc_tile`` 0, ``stages`` 3), which frees the registers the in-flight tiles held (capped at
    ``PIPE_SMEM_MAXNREG``). Before a backward fwd+bwd went 1.603 → 1.533 ms in bf16 and 1.683 →
    1.614 in float32 (``book/results/logs/selective_ab_session11_call1.json``; 1.459 against
    1.458 ms with a cap of 96 instead of 168, ``..._call4.json``). Inference at batch 1, dim 1024,
    L 16K (split): 0.341 → 0.297 ms in bf16 (``..._call4.json``); at the headline shape (whole
    sequences) no faster: 0.2748 against 0.2766 (cap 96) and 0.2782 ms (cap 80). Medians of
    alternating runs. Other widths before a backward: ``bc_tile`` 3 (not measured with
    stages). The interpreter, which pipelines nothing: (0, 1)."""
    if runtime.INTERPRET:
        return 0, 1
    if (want_states or split) and runtime.next_pow2(N) == 16:
        return 0, 3
    return (3 if dtype == torch.float32 or want_states else 2), 1


def _pipe_seg_len(warps: int, L: int, bt: int, device) -> int:
    """Segment length of the pipelined forward: the whole sequence when the programs bring at
    least 8 warps per SM; else segments of at least 8 chunks, enough of them for about 16 warps
    per SM (the split costs a second pass of exponentials). On the H200 at batch 1, dim 1024,
    bf16, L 16K (32 four-warp programs) it picks 1024 steps (0.295 ms), faster than 512
    (0.302) or 256 (0.340); at the headline shape (1536 warps, 2.9 programs an SM
    where 6 would fit) splitting lost: forward 0.275 → 0.360 ms (1024) and 0.384 (512) in bf16,
    0.269 → 0.349 in float32, fwd+bwd 1.464 → 1.541
    (``book/results/logs/selective_ab_session12_call2.json``, ``..._call6.json``)."""
    if runtime.INTERPRET or L <= 8 * bt:
        return max(L, 1)
    sms = runtime.sm_count(device)
    if warps >= 8 * sms:
        return L
    want = runtime.cdiv(16 * sms, warps)
    return max(8 * bt, runtime.next_pow2(runtime.cdiv(L, want)))


def _backward_serial(saved, softplus, dout, dlast, config):
    """The "serial" backward (``config={"bwd_variant": "serial"}``): see its kernel."""
    u, delta, A, B, C, D, z, delta_bias, states, Bt, Ct, (bt, G, var_B, var_C) = saved
    batch, dim, L = u.shape
    N = A.shape[1]
    acc = states.dtype
    bd, _, nw = _bwd_serial_config(N, L, u.dtype)
    bd, nw = config.get("bwd_block_d") or bd, config.get("bwd_num_warps") or nw
    n_chunks = runtime.cdiv(L, bt)
    dpg = dim // G
    n_dblocks = runtime.cdiv(dpg, bd)
    BN = runtime.next_pow2(N)
    NS = BN if BN == N else N
    dout = dout.contiguous()
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else None
    programs = batch * G * n_dblocks
    seg_chunks = (runtime.cdiv(config["bwd_seg_len"], bt) if config.get("bwd_seg_len")
                  else _bwd_seg_chunks(programs * nw, n_chunks, u.device))
    n_seg = runtime.cdiv(n_chunks, seg_chunks) if n_chunks else 1
    # sums over time per segment, (n_seg·batch, dim, ...): the host adds the segments and batch
    dA = torch.empty(n_seg * batch, dim, N, dtype=acc, device=u.device)
    # input-dependent dB, dC: float32 (float64) partials per (batch, group, channel block, t, n)
    dBp = (torch.empty(batch, G, n_dblocks, L, NS, dtype=acc, device=u.device) if var_B
           else torch.empty(n_seg * batch, dim, N, dtype=acc, device=u.device))
    dCp = (torch.empty(batch, G, n_dblocks, L, NS, dtype=acc, device=u.device) if var_C
           else torch.empty(n_seg * batch, dim, N, dtype=acc, device=u.device))
    dD = torch.empty(n_seg * batch, dim, dtype=acc, device=u.device) if D is not None else None
    dbias = torch.empty(n_seg * batch, dim, dtype=acc, device=u.device) if delta_bias is not None else None
    if batch * dim and L:
        Bt, Ct, sB, sC = _bc_steps(B, C, var_B, var_C, acc, L, N, Bt, Ct)
        dl = dlast.to(acc).contiguous() if dlast is not None else None
        tw = max(bt, BN)
        common = dict(VAR_C=var_C, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(softplus),
                      EVEN_L=L % bt == 0, EVEN_N=BN == N, BLOCK_D=bd, BLOCK_T=bt, BLOCK_N=BN, TW=tw,
                      SHFL_IDX=_shfl_option(config, "bwd_shfl_idx", bd, tw, N, nw, acc), num_warps=nw)
        seg = torch.empty(batch * dim, n_seg, N + 1, dtype=acc, device=u.device) if n_seg > 1 else None
        if n_seg > 1:
            # pass 1: every segment but the first, from a zero adjoint: its outgoing adjoint and Σ Δ
            _launch_checked(_selective_scan_bwd_adjoint_kernel, (programs, n_seg - 1), (
                delta, A, Ct, z if z is not None else u, delta_bias if delta_bias is not None else u, dout, seg,
                dim, L, N, dpg, n_dblocks, n_chunks, seg_chunks, n_seg, *sC), common)
        maxnreg = config.get("bwd_maxnreg") or _bwd_serial_maxnreg(programs * n_seg, u.device)
        # unused pointers are placeholders of the dtype a real call gives them (u's for inputs)
        args = (u, delta, A, Bt, Ct, D if D is not None else u, z if z is not None else u,
                delta_bias if delta_bias is not None else u, dout, states, dl if dl is not None else states,
                du, ddelta, dz if dz is not None else du, dA, dBp, dCp,
                dD if dD is not None else dA, dbias if dbias is not None else dA, seg if seg is not None else dA,
                dim, L, N, dpg, n_dblocks, n_chunks, seg_chunks, n_seg, batch * dim, *sB, *sC)
        _launch_checked(_selective_scan_bwd_serial_kernel, (programs, n_seg), args, dict(
            common, VAR_B=var_B, HAS_D=D is not None, HAS_DLAST=dl is not None,
            RELOAD=bool(config.get("bwd_reload", _bwd_reload(maxnreg))), HAS_SEG=n_seg > 1,
            **({"maxnreg": maxnreg} if maxnreg else {})))
    else:
        du.zero_(), ddelta.zero_(), dA.zero_(), dBp.zero_(), dCp.zero_()
        for t in (dz, dD, dbias):
            if t is not None:
                t.zero_()

    def bc_grad(P, var, X):
        if not var:
            return P.sum(0).to(X.dtype)
        g = P.sum(2)[..., :N].transpose(-1, -2)                 # (batch, G, N, L)
        return _dense_copy(g[:, 0] if X.dim() == 3 else g, X.dtype)
    dA = dA.sum(0).to(A.dtype)
    dD = dD.sum(0).to(D.dtype) if D is not None else None
    dbias = dbias.sum(0).to(delta_bias.dtype) if delta_bias is not None else None
    return du, ddelta, dA, bc_grad(dBp, var_B, B), bc_grad(dCp, var_C, C), dD, dz, dbias


def _backward(saved, softplus, dout, dlast, config=None):
    if ((config or {}).get("bwd_variant") or _bwd_variant()) == "serial":
        return _backward_serial(saved, softplus, dout, dlast, config or {})
    u, delta, A, B, C, D, z, delta_bias, states, Bt, Ct, (bt, G, var_B, var_C) = saved
    batch, dim, L = u.shape
    N = A.shape[1]
    acc = states.dtype
    bd, _, nw = _bwd_config(N, L, u.dtype)
    flip = False
    if config:
        bd, nw = config.get("bwd_block_d") or bd, config.get("bwd_num_warps") or nw
        flip = config.get("bwd_flip", flip)
    n_chunks = runtime.cdiv(L, bt)
    dout = dout.contiguous()
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else None
    dA = torch.empty(batch, dim, N, dtype=acc, device=u.device)
    dB = torch.zeros(B.shape, dtype=acc, device=u.device) if var_B else torch.empty(batch, dim, N, dtype=acc,
                                                                                   device=u.device)
    dC = torch.zeros(C.shape, dtype=acc, device=u.device) if var_C else torch.empty(batch, dim, N, dtype=acc,
                                                                                   device=u.device)
    dD = torch.empty(batch, dim, dtype=acc, device=u.device) if D is not None else None
    dbias = torch.empty(batch, dim, dtype=acc, device=u.device) if delta_bias is not None else None
    dpg = dim // G
    n_dblocks = runtime.cdiv(dpg, bd)
    kcarry = torch.zeros(batch, dim, 2, N, dtype=acc, device=u.device)
    if dlast is not None:
        kcarry[:, :, 1] = dlast
    if batch * dim and L:
        runtime.launch(_selective_scan_bwd_kernel, (batch * G * n_dblocks,), (
            u, delta, A, B, C, D if D is not None else u, z if z is not None else u,
            delta_bias if delta_bias is not None else u, dout, states,
            kcarry,
            du, ddelta, dz if dz is not None else du, dA, dB, dC,
            dD if dD is not None else dA, dbias if dbias is not None else dA,
            dim, L, N, dpg, n_dblocks, n_chunks,
            *_bc_strides(B, var_B, N, L), *_bc_strides(C, var_C, N, L)), dict(
            VAR_B=var_B, VAR_C=var_C, HAS_D=D is not None, HAS_Z=z is not None,
            HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(softplus), EVEN_L=L % bt == 0, FLIP=flip,
            BLOCK_D=bd, BLOCK_T=bt, BLOCK_N=runtime.next_pow2(N), num_warps=nw))
    else:
        du.zero_(), ddelta.zero_(), dA.zero_(), dB.zero_(), dC.zero_()
        for t in (dz, dD, dbias):
            if t is not None:
                t.zero_()
    dA = dA.sum(0).to(A.dtype)
    dB = (dB if var_B else dB.sum(0)).to(B.dtype)
    dC = (dC if var_C else dC.sum(0)).to(C.dtype)
    dD = dD.sum(0).to(D.dtype) if D is not None else None
    dbias = dbias.sum(0).to(delta_bias.dtype) if delta_bias is not None else None
    return du, ddelta, dA, dB, dC, dD, dz, dbias


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, return_last_state, config, dims):
        need_grad = any(ctx.needs_input_grad[:8])
        out, last, saved = _forward(u, delta, A, B, C, D, z, delta_bias, softplus,
                                    want_last=return_last_state, want_states=need_grad, config=config, dims=dims)
        if need_grad:
            ctx.save_for_backward(*saved[:11])
            ctx.meta = saved[11]
            ctx.softplus, ctx.config = softplus, config
            ctx.has = [t is not None for t in (D, z, delta_bias)]
        if return_last_state:
            return out, last
        return out

    @staticmethod
    def backward(ctx, dout, *rest):
        dlast = rest[0] if rest else None
        saved = (*ctx.saved_tensors, ctx.meta)
        du, ddelta, dA, dB, dC, dD, dz, dbias = _backward(saved, ctx.softplus, dout, dlast, ctx.config)
        return du, ddelta, dA, dB, dC, dD, dz, dbias, None, None, None, None


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, *, config=None):
    """Mamba's selective scan (S6) with the fused Triton kernels; differentiable.

    Args:
        u: ``(batch, dim, L)`` input.
        delta: ``(batch, dim, L)`` step sizes before bias and softplus; u's dtype.
        A: ``(dim, N)`` real state matrix diagonals (negative for a stable system).
        B, C: ``(batch, N, L)``, ``(batch, G, N, L)`` with G dividing dim, or ``(dim, N)``.
        D: ``(dim,)`` skip connection, optional.
        z: ``(batch, dim, L)`` gate, optional: ``out = y · silu(z)``; u's dtype.
        delta_bias: ``(dim,)`` added to delta, optional.
        delta_softplus: apply softplus to ``delta + delta_bias``.
        return_last_state: also return the state after the last step.
        config: optional dict overriding the launch configuration (benchmarks,
            tests): ``block_d``, ``block_t``, ``num_warps`` of the forward;
            ``bwd_block_d``, ``bwd_block_t`` (the backward's chunk, so also the
            forward's checkpoint interval), ``bwd_num_warps`` of the backward
            (powers of two), ``bwd_flip`` (bool, see the backward kernel) and
            ``bwd_variant``: "serial" (default) or "scan" (see the module
            docstring; its ``bwd_block_t`` defaults to 8);
            ``variant``: "pipelined" (default for N ≥ 4), "serial" or "scan" (see the module
            docstring); for "pipelined" also ``seg_len`` (power of two: split L
            into segments of that length, two passes), ``bc_tile`` (0, 1: B and
            C loaded per chunk, 2: a chunk ahead; 3: B a chunk ahead, C with its
            chunk; default ``_pipe_schedule``: on the GPU 0 before a backward and for
            sequences split into segments at 16 states, else 2 or 3; 0 in the interpreter),
            ``stages`` (1 to 4; with ``bc_tile`` 0, chunks of inputs copied into shared memory
            ``stages`` − 1 chunks ahead, registers then capped at ``PIPE_SMEM_MAXNREG``; default
            ``_pipe_schedule``: 3 where ``bc_tile`` defaults to 0 on the GPU, else 1),
            ``shfl_idx`` (bool; default True where its tiles fit, on the GPU: step j's Δ by one
            lane shuffle, see ``_launch_checked``) and ``maxnreg`` (a
            cap on registers per thread, so that more programs fit in an SM), as
            the "serial" backward takes ``bwd_maxnreg`` (default:
            ``_bwd_serial_maxnreg``; 255 lifts the cap), ``bwd_shfl_idx``, ``bwd_reload``
            (bool: B_t, C_t read again in the backward walk rather than kept in registers;
            default ``_bwd_reload``: under a register cap) and ``bwd_seg_len`` (power of
            two: the serial backward split over L into segments of that length, two passes;
            default ``_bwd_seg_chunks``).

    u, delta, z are float16, bfloat16, float32 (or float64); A, B, C, D,
    delta_bias may have any real float dtype. Everything lives on
    ``ssmlib.DEVICE`` and is contiguous in its last dimension.

    Returns:
        ``out (batch, dim, L)`` in u's dtype, and ``last_state (batch, dim, N)``
        in float32 (float64 for float64 inputs) if asked.
    """
    if config is not None:
        for k in config:
            if k not in CONFIG_KEYS:
                raise ValueError(f"config has unknown key {k!r}")
        for k, v in config.items():
            if k not in ("bwd_flip", "variant", "bc_tile", "shfl_idx", "bwd_shfl_idx", "bwd_variant", "maxnreg",
                         "bwd_maxnreg", "stages", "bwd_reload"):
                _check_pow2(k, v)
        for k in ("maxnreg", "bwd_maxnreg"):
            if k in config:
                checks.positive_int(f"config {k}", config[k])
        if config.get("stages", 1) not in range(1, 5):
            raise ValueError(f"config stages must be 1 to 4, got {config['stages']!r}")
        if config.get("bc_tile", 0) not in (0, 1, 2, 3):
            raise ValueError(f"config bc_tile must be 0/False, 1/True, 2 or 3, got {config['bc_tile']!r}")
        if config.get("variant", "scan") not in FWD_VARIANTS:
            raise ValueError(f"config variant must be one of {FWD_VARIANTS}, got {config['variant']!r}")
        if config.get("bwd_variant", "scan") not in BWD_VARIANTS:
            raise ValueError(f"config bwd_variant must be one of {BWD_VARIANTS}, got {config['bwd_variant']!r}")
        if (config.get("bwd_variant") or _bwd_variant()) == "serial" and (config.get("bwd_block_t") or 0) > 32:
            raise ValueError(f"config bwd_block_t={config['bwd_block_t']} is too long for bwd_variant 'serial' "
                             f"(its chunk lives in registers): at most 32")
    if torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad
                                       for t in (u, delta, A, B, C, D, z, delta_bias)):
        dims = _check_args(u, delta, A, B, C, D, z, delta_bias)     # before autograd sees the arguments
        return _SelectiveScan.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus),
                                    bool(return_last_state), config, dims)
    out, last, _ = _forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                            want_last=return_last_state, want_states=False, config=config)
    return (out, last) if return_last_state else out


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False, *,
                           block_d=None, num_warps=None, block_b=None):
    """One recurrent step of the selective scan (decoding); updates ``state`` in place.

    Args:
        state: ``(batch, dim, N)`` float32, float16 or bfloat16; overwritten with the new state.
        x, dt, z: ``(batch, dim)`` input, step size (before bias and softplus), gate (optional).
        A: ``(dim, N)`` real.  B, C: ``(batch, N)``.  D, dt_bias: ``(dim,)``, optional.

    Arithmetic in float32 (float64 for float64). Returns ``out (batch, dim)`` in x's dtype.
    ``block_d``, ``num_warps``, ``block_b`` override the launch configuration: channels and
    warps per program, and batch rows per program (which share the channels' A, D, dt_bias loads).
    """
    checks.tensor("state", state, ndim=3, dtypes=INPUT_DTYPES)
    batch, dim, N = state.shape
    checks.tensor("x", x, ndim=2, dtypes=INPUT_DTYPES)
    checks.shape("x", x, (batch, dim))
    checks.tensor("dt", dt, ndim=2, dtypes=(x.dtype,))
    checks.shape("dt", dt, (batch, dim))
    checks.tensor("A", A, ndim=2)
    if A.is_complex():
        raise TypeError(f"A has dtype {A.dtype}: complex A is not supported")
    checks.tensor("A", A, dtypes=checks.REAL_DTYPES)
    checks.shape("A", A, (dim, N))
    if N > MAX_N:
        raise ValueError(f"state has N={N}; the kernel supports N <= {MAX_N}")
    for name, X in (("B", B), ("C", C)):
        checks.tensor(name, X, ndim=2, dtypes=checks.REAL_DTYPES)
        checks.shape(name, X, (batch, N))
    for name, v in (("D", D), ("dt_bias", dt_bias)):
        if v is not None:
            checks.tensor(name, v, ndim=1, dtypes=checks.REAL_DTYPES)
            checks.shape(name, v, (dim,))
    if z is not None:
        checks.tensor("z", z, ndim=2, dtypes=(x.dtype,))
        checks.shape("z", z, (batch, dim))
    named = dict(state=state, x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias)
    for name, t in named.items():
        if t is not None:
            runtime.check_kernel_device(name, t)
            checks.contiguous(name, t)
    checks.same_device(**named)
    _check_pow2("block_d", block_d)
    _check_pow2("num_warps", num_warps)
    if block_b is not None:
        checks.positive_int("block_b", block_b)
    out = torch.empty_like(x)
    BN = runtime.next_pow2(N)
    # the H200 sweep's best at N = 16: 128 channels on 8 warps (8 states a thread)
    bd = block_d or (64 if runtime.INTERPRET else max(1, min(128, 2048 // BN)))
    nw = num_warps or (1 if runtime.INTERPRET else max(1, min(8, bd * BN // 256)))
    bb = block_b or 1
    if batch * dim:
        runtime.launch(_selective_state_update_kernel, (runtime.cdiv(batch, bb), runtime.cdiv(dim, bd)), (
            state, x, dt, A, B, C, D if D is not None else x, z if z is not None else x,
            dt_bias if dt_bias is not None else x, out, batch, dim, N), dict(
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=dt_bias is not None,
            SOFTPLUS=bool(dt_softplus), BLOCK_D=bd, BLOCK_N=BN, BLOCK_B=bb, num_warps=nw))
    return out


def selective_state_update_ref(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """:func:`selective_state_update` in PyTorch (float32, float64 for float64); updates ``state`` in place."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    dt = dt.to(acc)
    if dt_bias is not None:
        dt = dt + dt_bias.to(acc)
    if dt_softplus:
        dt = F.softplus(dt)
    s = torch.exp(dt[..., None] * A.to(acc)) * state.to(acc) + (dt * x.to(acc))[..., None] * B.to(acc)[:, None]
    state.copy_(s.to(state.dtype))
    y = (s * C.to(acc)[:, None]).sum(-1)
    if D is not None:
        y = y + D.to(acc) * x.to(acc)
    if z is not None:
        y = y * F.silu(z.to(acc))
    return y.to(x.dtype)

r"""Mamba-2's state space duality (SSD): three readable forms and a fused Triton kernel.

For every batch element b and head h (H heads of P channels, heads in G groups
that share B and C: head h reads group ``h // (H // G)``)::

    Δ_t = softplus(dt_t + dt_bias)     (or dt_t + dt_bias; dt_bias defaults to 0)
    h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_tᵀ           h_t: (P, N), h_{-1} = initial_states (or 0)
    y_t = h_t C_t + D x_t                             D: (H,) or (H, P)
    y_t ← y_t · silu(z_t)                             if z is given

The API is that of ``mamba_ssm``'s ``mamba_chunk_scan_combined``: ``x (batch,
L, H, P)``, ``dt (batch, L, H)``, ``A (H,)`` (negative), ``B, C (batch, L, G,
N)``, ``z (batch, L, H, P)``, ``initial_states (batch, H, P, N)``.

The same function, four ways:

* :func:`ssd_linear_ref`: the **linear (recurrent) form**, a Python loop over
  time. O(L·P·N) work per head, strictly sequential.
* :func:`ssd_quadratic_ref`: the **quadratic (attention) form**. With
  ``a_t = Δ_t A`` and the 1-semiseparable mask ``𝓛[i, j] = exp(a_{j+1} + … +
  a_i)`` for i ≥ j (0 above the diagonal),
  ``y = (𝓛 ∘ C Bᵀ)(Δ x)``: causal linear attention with queries C, keys B,
  values Δ x and a decay mask. O(L²) work, all matrix products. The exponent
  is a *segment sum* built by masking then cumulative summing (:func:`segsum`),
  never as a difference of two long cumulative sums (which cancels
  catastrophically once Σ a is large).
* :func:`ssd_chunked_ref`: the **chunked form** that Mamba-2 runs. Cut the
  sequence into chunks of Q steps. (1) inside each chunk, the quadratic form;
  (2) each chunk's contribution to the state at its end, ``Σ_j exp(a_{j+1..end})
  Δ_j x_j B_jᵀ``; (3) a recurrence *between* chunks, L/Q steps of ``h ←
  exp(Σ_chunk a) h + chunk state``; (4) each step's output from the state
  entering its chunk, ``exp(a_{start..i}) C_i h``. Work per head O(L·Q·(N + P))
  for the quadratic parts plus O(L·P·N) for the states, almost all matrix
  products, and only L/Q sequential steps. Equal to the other two for every Q.
* :func:`ssd`: the chunked form as a fused Triton kernel (below), with an
  autograd backward.

And :func:`ssd_step`: one decoding step, updating the state in place.

The kernel: one pass, the state on chip
---------------------------------------
The public implementations run the four stages of the chunked form as separate
kernels: they write the chunk states and ``C Bᵀ`` to HBM and read x, B and C
twice, about 3× the minimal traffic. The roofline of SSD's forward is
``2·L·(2·H·P + 2·G·N + H)`` bytes per sequence in 16-bit (x in, y out, B, C,
dt): at the H200's 4.3 TB/s, 0.16 ms for the 2.7B-layer shape below.

``_ssd_fwd_kernel``: a program owns one (batch, head, block of ``BLOCK_P``
channels) and walks its sequence ``BLOCK_T`` steps at a time, carrying the
``(BLOCK_P, N)`` state in registers in float32. Per block it loads x, dt, B and
C once and

1. computes Δ (bias, softplus) and the in-block cumulative decay ``cs_i = a_0 +
   … + a_i`` (a ``tl.cumsum`` over BLOCK_T numbers: within one block the
   difference ``cs_i − cs_j`` has nothing to cancel against);
2. ``y = exp(cs_i) · (C stateᵀ)``: the carried state's contribution (a tensor-
   core product T×N×P);
3. ``y += (C Bᵀ ∘ 𝓛)(Δ x)``: the intra-block quadratic part (products T×N×T and
   T×T×P);
4. ``y += D x``, ``y *= silu(z)``, store y;
5. ``state ← exp(cs_last) state + (Δ x · exp(cs_last − cs_j))ᵀ B`` (P×T×N).

Inputs are read once and y written once: the minimal bytes. For 16-bit inputs
the products take 16-bit operands (the carried state and the masked scores are
rounded to the input dtype for the product, as in the published kernels) and
accumulate in float32; float32 inputs use 3×TF32 (≈ float32 accurate), float64
(tests) exact float64.

``BLOCK_T`` (the kernel's tile of time) need not equal ``chunk_size``: the
chunked form is exact for every chunk length, so ``chunk_size`` only sets the
chunks of the PyTorch reference (and is checked), while the kernel picks the
tile that fits in registers: a 256×256 float32 score tile would need 256
registers a thread for 8 warps. The answers agree to rounding.

Parallelism and the choice of design. The single pass is sequential along L
within a program, so the grid is ``batch · H · P/BLOCK_P`` programs. At the
2.7B shape (batch 8, H 80, P 64, N 128) with ``BLOCK_P = 32`` that is 1280
programs, ~10 per SM of the H200's 132: enough to fill the machine. Splitting
P costs flops, not bytes: every P-block recomputes ``C Bᵀ`` (2·T·N flops a
step) beside its useful 2·T·BLOCK_P + 4·N·BLOCK_P, so per step and head 74
kflop at BLOCK_P = 32 and 57 kflop at 64 (T = 64): 193 or 150 GFLOP in all,
0.29 or 0.23 ms at the measured ~660 TFLOP/s, against 0.16 ms for the bytes
and the issue's 0.26 ms floor. The public three-kernel design (chunk states
in parallel, a scan over chunks, outputs in parallel) has all the parallelism
it wants but moves ~3× the bytes (≈ 0.5 ms of traffic here) and launches
more kernels. At batch 1, H 32, L 16K, N 64 there would be only 32 programs
(BLOCK_P = 64), each walking 256 blocks. For that case the wrapper cuts the
sequence into S *segments* and runs the kernel twice: a states-only pass over
segments 0 … S−2 (per block only the state update, P×T×N, writing each
segment's local end state from zero, ``S·P·N`` floats per head, and its total
log-decay), then the full pass over all S segments, where the program of
segment s first folds the end states of segments < s into its starting state
(``h ← exp(Σ a) h + local``; those few MB stay in the 60 MB L2) and then walks
its segment as above. Cost: x, dt and B read a second time for (S−1)/S of the
sequence (about +45% bytes at P = 64, N = 64: 0.033 → 0.048 ms at copy speed)
and one more launch, against S× the programs and S× shorter chains.
``_launch_config`` picks the smallest power of two S giving at least 2·132
programs (S = 16 here, S = 1 at the 2.7B shape, which instead chains two
segments in one launch: below). This is the two-level version of the chunked
algorithm itself: chunks inside a program, segments across programs.

Three refinements, measured on the H200 at the 2.7B shape (``book/results/logs/ssd_fwd_*_session7.json``
and ``*session8*``). The first and third are for long forwards: ``_launch_config`` turns them on
for 16-bit inputs when ``batch·L·H·P·N ≥ 2³³`` (the 2.7B shape's 2·10¹⁰); the second is always on.

* **Chained segments.** 640 programs of two an SM are 2.42 waves: the third runs 112 programs
  on 132 SMs, and a program alone on an SM took as long as one sharing it (H = 66 heads, two
  full waves, took 0.662 ms; H = 80, 0.978: 2.95 program-lengths for 2.42 of work). Cutting
  each sequence in two and running the halves in *one* launch evens the waves: a program takes a
  ticket (an atomic counter, so tickets follow the order in which programs start), the
  segment slowest, and a program of segment s spins on a flag until the program of segment
  s − 1 has stored its end state, which it then loads. With more than two waves of programs
  the predecessor started a wave earlier and has long finished: nothing waits, no states-only
  pass, nothing read twice. 0.978 → 0.886 ms; three or more segments were slower (each
  program's start costs a few µs: 0.949 at 3, 1.111 at 16).
* **Δ and the decays before the walk.** Each program first computes, for its whole segment,
  Δ (bias, softplus) and the in-block cumulative decays ``cs`` into two float32 rows per head,
  in tiles of 1024 steps in which no step waits on another; the walk then loads them a block
  ahead instead of computing them. Each block of the walk drops the softplus, the
  ``tl.cumsum`` and ``tl.sum`` across its warps, and the moves of the decay vector between
  the layouts of its products (the compiler loads ``cs`` straight into each): in the sm_90a
  code of the walk that saves states for the backward (bf16 defaults) barriers per block
  25 → 17, instructions 1323 → 1150 (``--compile-only``; ``logs/compile_selfprep_session8.txt``).
  A separate launch doing this for all heads took the chained forward from 0.886 to 0.821 ms;
  inside the programs it costs the same at the 2.7B shape (CUDA-graph replay: 0.796 ms with
  1024-step tiles, ``logs/s12call2_session8.json``, against 0.797 with the separate launch,
  ``logs/ssd_selfprep_main_session8.json``) and needs no launch, so short forwards, whose
  time is the host's, have it too: batch 1, L 16K 0.188 → 0.149 ms of kernel time, batch 32,
  L 512 0.136 → 0.113 (``logs/ssd_selfprep_*_session8.json``).
* **C Bᵀ once per group.** With G = 1 the 80 heads share B and C, so a first launch
  (``_ssd_cb_kernel``) writes each block's ``C Bᵀ`` (32×32 float32, 4 MB at the 2.7B shape)
  and the walk loads it instead of one of its four products (mma.sync instructions 56 → 40):
  0.821 → 0.798 ms. At batch 1, L 16K it did not pay (0.157 against 0.149 ms, same log).

Together 0.978 → 0.80 ms, against fla's ``chunk_simple_gla`` at 1.21 ms in the same run
(``book/results/ssd.json``). Where the host's time to issue a call (a Triton launch costs
~45 µs on the H200 machine's host, ``host_ms``) exceeds the kernels', as at batch 1, L 16K and
in the attention sweep's 16K-token batches, a call back to back takes the host's time; the
benchmark reports both (``median_ms`` and ``graph_ms``, CUDA-graph replay).

The H200 sweep (``python -m ssmlib.bench.duality --sweep-only``,
``book/results/ssd_sweep.json``) finds this single pass latency-bound: each
program waits on a chain of L/block_t dependent blocks, each a few small
products. A two-pass variant was built and measured against it: a states-only
walk keeping every few blocks' entering state, then one program per block for
the outputs (sharing C·Bᵀ across a group's heads). It was slower at both of the
issue's shapes, forward and backward (its rows are in the sweep's JSON), and
was removed (git log: "ssd: remove the two-pass algorithms").

Backward (``_ssd_bwd_kernel``). ``ssd`` is differentiable in every tensor
argument. When a gradient will be needed, the forward also writes the state
entering every block of ``bwd_block_t`` steps (``batch·H·L/T·P·N`` float32:
for T = 32, N/8 bytes per element of x: at N = 128 eight times x's bfloat16
bytes, 2.7 GB at the 2.7B shape; the published kernels keep one per chunk of
256). A backward program owns (batch, head, block of P) and walks
the blocks in reverse, carrying the adjoint ``dh`` of the state on chip. Per
block it recomputes Δ, cs, ``M = C Bᵀ ∘ 𝓛`` and the pre-gate output u, and with
``du = dy·silu(z)`` (and ``dz = dy·u·silu′(z)``):

    d(Δx) = Mᵀ du + w ∘ (B dhᵀ)             w_j = exp(cs_last − cs_j)
    dC    = (du (Δx)ᵀ ∘ 𝓛) B + exp(cs) ∘ (du h_in)
    dB    = (du (Δx)ᵀ ∘ 𝓛)ᵀ C + w ∘ ((Δx) dh)
    dh_in = exp(cs_last) dh + (exp(cs) ∘ du)ᵀ C

(nine tensor-core products), the gradient of the cumulative decays from the
mask (row sums minus column sums of ``du (Δx)ᵀ ∘ M``), from the carried state
and from the block's end state, then ``da = reverse cumsum(dcs)``, ``dΔ = Σ_p x
d(Δx) + A da``, ``dx = Δ d(Δx) + D du``, and through the softplus. dB and dC
are shared by the heads of a group and ddt by the P-blocks of a head: they are
accumulated with float32 atomics; dA, dD, d(dt_bias) per program, then
atomically. ``backward="reference"`` instead recomputes through
:func:`ssd_chunked_ref` under autograd (float32): slow, for checking.
The backward is split into segments like the forward (``bwd_segments``): a
first pass over segments 1 … S−1 computes only each segment's adjoint at its
start from ``dh = 0`` at its end (one product per block: ``du`` needs only dy
and z) and its total log-decay; the full pass folds those of the later
segments into its starting ``dh`` (``dh ← exp(Σ a) dh + local``, last first).
In the H200 sweep, forward+backward at the 2.7B shape took about twelve times
the forward alone, and fell as the P-blocks per head went from 4 to 2 to 1: with
several P-blocks the float32 atomics on dB and dC dominated, all 80 heads of the
group adding into the same elements. ``bwd_bc="per_head"`` writes them to a
float32 buffer per head, ``(batch, L, H, N)``, with plain stores when one
P-block covers the head, and sums each group's heads afterwards. That costs H/G
times the memory of dB and dC but has no contention (with one P-block per head
it also makes dB and dC deterministic); ``_launch_config`` takes it when the
sequence is split into segments, where the sweep measured it faster.

Where the time goes (Nsight Compute on the H200, batch 8, bf16, default tiles, the single walk
before the refinements above: ``book/results/logs/ncu_session6_ssd_fwd_bwd_bf16.txt``). The forward: 255
registers a thread, so two 4-warp programs an SM (2.42 waves of 640), two warps
a scheduler, one instruction every 2.8 cycles per scheduler, L1 and shared
memory at 66% of their throughput (where the products' operands and the layout
conversions between them pass), 40% of the waits on shared-memory (or MUFU)
results: latency- and shared-memory-bound, not tensor-core-bound (29% of the
SM's compute). A program's chain of dependent blocks sets the time (one alone
on an SM is no faster), which is why removing work from each block (the Δ
pass above) pays. More programs an SM would too, if they fitted: block_p 32,
register caps of 168 or 128 (3 or 4 programs an SM, with spills) were all
slower at both shapes
(``book/results/logs/ssd_fwd_occupancy_session6.json``), and neither did 4 or 5
pipeline stages (``ssd_fwd_stages_session6.json`` there). With the gate z the
forward takes 1.05 ms instead of 0.80: z is the one load the pipeliner leaves
synchronous in the block; loading it a block ahead into registers measured
slower (1.07; ``logs/ssd_defaults_session7.json``). The backward: one
8-warp program an SM and 110 M local-memory requests of register spills, one
instruction every 7.7 cycles per scheduler, 37% of the waits on L1 (local or
global) loads; with one P-block per head the per-head dB, dC buffers measured no
faster than the atomics at that shape (``book/results/ssd_sweep.json``): the
spilling body is the cost, and a backward with smaller live tiles a block (or
split in two passes) is the next step.

"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from . import checks, runtime
from .runtime import softplus

#: Largest state size N the kernel accepts (the (BLOCK_P, N) state lives in registers).
MAX_N = 256

#: Time steps per warp beyond which the compiled kernels are refused: measured on the H200
#: (Triton 3.6), block_t 64 on 4 warps and 128 on 8 gave relative errors of 5-7% in y and
#: illegal memory accesses at batch 1, L 16K, while every configuration with block_t ≤ 8·num_warps
#: matched the reference to bfloat16 rounding (``python -m ssmlib.bench.duality --sweep-only``).
MAX_STEPS_PER_WARP = 8

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# ---------------------------------------------------------------- PyTorch references
def _ref_dtype(x: torch.Tensor) -> torch.dtype:
    """References compute in float64 for float64 inputs, float32 otherwise."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _prepare(x, dt, A, B, C, dt_bias, dt_softplus):
    """Discretisation step size and per-head B, C, all in the reference dtype."""
    f = _ref_dtype(x)
    H = x.shape[2]
    dt = dt.to(f)
    if dt_bias is not None:
        dt = dt + dt_bias.to(f)
    if dt_softplus:
        dt = F.softplus(dt)
    rep = H // B.shape[2]                                   # heads per group
    B = B.to(f).repeat_interleave(rep, dim=2)               # (batch, L, H, N)
    C = C.to(f).repeat_interleave(rep, dim=2)
    return x.to(f), dt, A.to(f), B, C


def _finish(y, x, D, z):
    """y + D x, then the gate y · silu(z); returned in x's dtype."""
    f = y.dtype
    if D is not None:
        D = D.to(f)
        y = y + (D[:, None] if D.dim() == 1 else D) * x.to(f)
    if z is not None:
        y = y * F.silu(z.to(f))
    return y.to(x.dtype)


def ssd_linear_ref(x, dt, A, B, C, D=None, z=None, dt_bias=None, initial_states=None,
                   dt_softplus=False, return_final_states=False):
    """The linear (recurrent) form: ``h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_tᵀ``, ``y_t = h_t C_t``.

    Shapes as :func:`ssd`. Computes in float64 for float64 inputs, float32
    otherwise; y in x's dtype, the final state (batch, H, P, N) in the compute dtype.
    """
    batch, L, H, P = x.shape
    xs, dt, A, B, C = _prepare(x, dt, A, B, C, dt_bias, dt_softplus)
    h = (torch.zeros(batch, H, P, B.shape[-1], dtype=xs.dtype, device=x.device) if initial_states is None
         else initial_states.to(xs.dtype))
    ys = []
    for t in range(L):
        decay = torch.exp(dt[:, t] * A)                                        # (batch, H)
        h = decay[..., None, None] * h + (dt[:, t, :, None] * xs[:, t])[..., None] * B[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", h, C[:, t]))
    y = torch.stack(ys, dim=1) if L else xs.new_zeros(batch, 0, H, P)
    y = _finish(y, x, D, z)
    return (y, h) if return_final_states else y


def segsum(a: torch.Tensor) -> torch.Tensor:
    """Stable segment sums: ``out[..., i, j] = a[..., j+1] + … + a[..., i]`` for i ≥ j, −∞ above.

    Built by writing ``a_k`` into column j for every k > j, zeroing the rest,
    and summing down the columns, so each entry is a sum of the terms it
    needs, never ``cumsum_i − cumsum_j`` (which loses every digit once the
    cumulative sum is large and the segment short). ``exp(segsum(a))`` is the
    1-semiseparable mask 𝓛 of the quadratic form.
    """
    T = a.shape[-1]
    a = a[..., :, None].expand(*a.shape, T)                        # a[..., k, j] = a_k
    strictly_below = torch.ones(T, T, dtype=torch.bool, device=a.device).tril(-1)
    s = a.masked_fill(~strictly_below, 0).cumsum(dim=-2)           # s[i, j] = Σ_{j<k≤i} a_k
    return s.masked_fill(~strictly_below.clone().fill_diagonal_(True), float("-inf"))


def ssd_quadratic_ref(x, dt, A, B, C, D=None, z=None, dt_bias=None, initial_states=None,
                      dt_softplus=False, return_final_states=False):
    """The quadratic (attention) form: ``y = (𝓛 ∘ C Bᵀ)(Δ x)`` with ``𝓛 = exp(segsum(Δ A))``.

    An initial state h₋₁ adds ``exp(a_0 + … + a_i) C_i h₋₁`` to output i. The
    final state is ``Σ_j exp(a_{j+1} + … + a_{L-1}) Δ_j x_j B_jᵀ + exp(Σ a) h₋₁``.
    """
    batch, L, H, P = x.shape
    xs, dt, A, B, C = _prepare(x, dt, A, B, C, dt_bias, dt_softplus)
    a = (dt * A).permute(0, 2, 1)                                  # (batch, H, L)
    a_pad = F.pad(a, (1, 0))                                       # a prepended with the "step" of h₋₁
    Lmask = torch.exp(segsum(a_pad))                               # (batch, H, L+1, L+1)
    xdt = xs * dt[..., None]
    y = torch.einsum("bihn,bjhn,bhij,bjhp->bihp", C, B, Lmask[..., 1:, 1:], xdt)
    h0 = initial_states.to(xs.dtype) if initial_states is not None else None
    if h0 is not None:                                             # Lmask[i+1, 0] = exp(a_0 + … + a_i)
        y = y + torch.einsum("bihn,bhpn,bhi->bihp", C, h0, Lmask[..., 1:, 0])
    y = _finish(y, x, D, z)
    if not return_final_states:
        return y
    # The final state is the output of one more step with decay 1 and no input.
    to_end = torch.exp(segsum(F.pad(a_pad, (0, 1)))[..., -1, :])   # (batch, H, L+2): [h₋₁, steps, end]
    hT = torch.einsum("bjhn,bhj,bjhp->bhpn", B, to_end[..., 1:-1], xdt)
    if h0 is not None:
        hT = hT + to_end[..., 0, None, None] * h0
    return y, hT


def ssd_chunked_ref(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
                    dt_softplus=False, return_final_states=False):
    """The chunked form: quadratic inside chunks of ``chunk_size`` steps, a recurrence between them.

    L need not be a multiple of the chunk: the sequence is padded with steps
    of Δ = 0 (decay 1, no input), which leave the state unchanged.
    Differentiable by autograd (``ssd(..., backward="reference")`` uses it).
    """
    batch, L, H, P = x.shape
    Q = chunk_size
    xs, dt, A, B, C = _prepare(x, dt, A, B, C, dt_bias, dt_softplus)
    N = B.shape[-1]
    pad = (-L) % Q
    xdt = F.pad(xs * dt[..., None], (0, 0, 0, 0, 0, pad))
    a = F.pad(dt * A, (0, 0, 0, pad))                              # (batch, L', H)
    Bc = F.pad(B, (0, 0, 0, 0, 0, pad))
    Cc = F.pad(C, (0, 0, 0, 0, 0, pad))
    nc = (L + pad) // Q
    # chunk views: (batch, chunk, step, H, ...) and a as (batch, H, chunk, step)
    xdt, Bc, Cc = (t.reshape(batch, nc, Q, H, -1) for t in (xdt, Bc, Cc))
    a = a.reshape(batch, nc, Q, H).permute(0, 3, 1, 2)
    cs = a.cumsum(dim=-1)                                          # within each chunk only

    # (1) inside each chunk: the quadratic form
    y_diag = torch.einsum("bcihn,bcjhn,bhcij,bcjhp->bcihp", Cc, Bc, torch.exp(segsum(a)), xdt)
    # (2) each chunk's state at its end, from a zero state at its start
    to_end = torch.exp(cs[..., -1:] - cs)                          # exp(a_{j+1} + … + a_{end})
    states = torch.einsum("bcjhn,bhcj,bcjhp->bchpn", Bc, to_end, xdt)
    # (3) the recurrence between chunks: the state entering chunk c
    h = (torch.zeros(batch, H, P, N, dtype=xs.dtype, device=x.device) if initial_states is None
         else initial_states.to(xs.dtype))
    entering = []
    for c in range(nc):
        entering.append(h)
        h = torch.exp(cs[:, :, c, -1])[..., None, None] * h + states[:, c]
    entering = torch.stack(entering, dim=1) if nc else states     # (batch, chunk, H, P, N)
    # (4) outputs from the entering state
    y_off = torch.einsum("bcihn,bchpn,bhci->bcihp", Cc, entering, torch.exp(cs))
    y = (y_diag + y_off).reshape(batch, nc * Q, H, P)[:, :L]
    y = _finish(y, x, D, z)
    return (y, h) if return_final_states else y


def ssd_step_ref(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """One step of the linear form, PyTorch: returns ``(y, new_state)`` without touching ``state``.

    ``state (batch, H, P, N)``, ``x (batch, H, P)``, ``dt (batch, H)``, ``B, C (batch, G, N)``.
    """
    y, h = ssd_linear_ref(x[:, None], dt[:, None], A, B[:, None], C[:, None], D,
                          None if z is None else z[:, None], dt_bias, state, dt_softplus, True)
    return y[:, 0], h


# ---------------------------------------------------------------- Triton kernels
@triton.jit
def _delta(dt, mask, SOFTPLUS: tl.constexpr):
    """Δ from dt + dt_bias: its softplus if asked, and 0 outside ``mask`` (steps past the end)."""
    if SOFTPLUS:
        dt = softplus(dt)
    return tl.where(mask, dt, 0.0)


@triton.jit
def _ssd_cb_kernel(B_ptr, C_ptr, cb_ptr, L, G, N, n_blocks, LOWP: tl.constexpr, PRECISION: tl.constexpr,
                   BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr):
    # Program (b, block of BLOCK_T steps): every group's C Bᵀ of the block, (T, T) in float32.
    b = tl.program_id(0)
    blk = tl.program_id(1)
    acc = cb_ptr.dtype.element_ty
    op = B_ptr.dtype.element_ty if LOWP else acc
    i = tl.arange(0, BLOCK_T)
    n = tl.arange(0, BLOCK_N)
    t = blk * BLOCK_T + i
    m = (t < L)[:, None] & (n < N)[None, :]
    b64 = b.to(tl.int64)
    for g in range(0, G):
        off = ((b64 * L + t[:, None]) * G + g) * N + n[None, :]
        Bv = tl.load(B_ptr + off, mask=m, other=0.0)
        Cv = tl.load(C_ptr + off, mask=m, other=0.0)
        S = tl.dot(Cv.to(op), tl.trans(Bv.to(op)), input_precision=PRECISION, out_dtype=acc)
        tl.store(cb_ptr + ((b64 * G + g) * n_blocks + blk) * BLOCK_T * BLOCK_T + i[:, None] * BLOCK_T + i[None, :], S)


@triton.jit
def _ssd_fwd_kernel(
        x_ptr, dt_ptr, A_ptr, dtb_ptr, B_ptr, C_ptr, D_ptr, z_ptr, h0_ptr, delta_ptr, cs_ptr, cb_ptr,
        y_ptr, hT_ptr, seg_h_ptr, seg_a_ptr, states_ptr, chain_ptr,
        L, H, G, P, N, seg_len, n_seg, n_blocks, n_bh,
        HAS_D: tl.constexpr, D_PER_P: tl.constexpr, HAS_Z: tl.constexpr, HAS_DTB: tl.constexpr,
        SOFTPLUS: tl.constexpr, HAS_H0: tl.constexpr, STORE_FINAL: tl.constexpr,
        STATES_ONLY: tl.constexpr, STORE_STATES: tl.constexpr, CHAINED: tl.constexpr,
        HAS_CB: tl.constexpr, LOWP: tl.constexpr, PRECISION: tl.constexpr, PREFETCH: tl.constexpr,
        PREP_BLOCKS: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr):
    # Program (b·H + h, block of P, segment). Tiles: time along axis 0, channels p / states n along axis 1.
    # Δ and cs: computed for the whole segment before the walk (rows of delta, cs), or, in the
    # full pass after a states-only pass, read from that pass; C Bᵀ from _ssd_cb_kernel with HAS_CB.
    # STATES_ONLY: a segment's local end state from zero (the segments' first pass). Otherwise the
    # true state, from h0 and the earlier segments, and the outputs; STORE_STATES: the state
    # entering every block (for the backward).
    # CHAINED: one launch over all segments; a program takes the next ticket (segment slowest), waits
    # for the previous segment's end state and hands its own on (see _forward).
    n_pblk = tl.cdiv(P, BLOCK_P)
    if CHAINED:
        ticket = tl.atomic_add(chain_ptr, 1)
        sg = ticket // (n_bh * n_pblk)
        pid_p = ticket // n_bh % n_pblk
        bh = ticket % n_bh
    else:
        bh = tl.program_id(0)
        pid_p = tl.program_id(1)
        sg = tl.program_id(2)
    b = bh // H
    h = bh % H
    g = h // (H // G)
    acc = tl.float64 if x_ptr.dtype.element_ty == tl.float64 else tl.float32
    op = x_ptr.dtype.element_ty if LOWP else acc              # operand dtype of the products

    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    i = tl.arange(0, BLOCK_T)
    pm = p < P
    nm = n < N
    pn_off = p[:, None] * N + n[None, :]                      # (BP, BN) offsets in a (P, N) state
    pn_mask = pm[:, None] & nm[None, :]
    bh64 = bh.to(tl.int64)
    if HAS_D and not STATES_ONLY:
        if D_PER_P:
            Dv = tl.load(D_ptr + h * P + p, mask=pm, other=0.0).to(acc)[None, :]
        else:
            Dv = tl.load(D_ptr + h).to(acc)

    # The state entering this segment.
    state = tl.zeros([BLOCK_P, BLOCK_N], dtype=acc)
    if CHAINED:
        if sg > 0:      # spin until the previous segment's program has stored its end state
            flag = chain_ptr + 1 + (bh64 * n_pblk + pid_p) * n_seg + sg - 1
            while tl.atomic_add(flag, 0, sem="acquire") == 0:
                pass
            state = tl.load(seg_h_ptr + (bh64 * n_seg + sg - 1) * P * N + pn_off, mask=pn_mask, other=0.0,
                            cache_modifier=".cg").to(acc)
        elif HAS_H0:
            state = tl.load(h0_ptr + bh64 * P * N + pn_off, mask=pn_mask, other=0.0).to(acc)
    elif not STATES_ONLY:
        if HAS_H0:
            state = tl.load(h0_ptr + bh64 * P * N + pn_off, mask=pn_mask, other=0.0).to(acc)
        for j in range(0, sg):                                # fold the earlier segments' end states
            a_j = tl.load(seg_a_ptr + bh64 * n_seg + j)      # (with one segment, placeholders of acc's dtype)
            h_j = tl.load(seg_h_ptr + (bh64 * n_seg + j) * P * N + pn_off, mask=pn_mask, other=0.0)
            state = state * tl.exp(a_j) + h_j

    s0 = sg * seg_len
    s1 = tl.minimum(L, s0 + seg_len)
    a_total = tl.zeros([1], dtype=acc)
    # Loop-invariant 32-bit offsets inside a block; the blocks move a 64-bit scalar base.
    xp_off = i[:, None] * (H * P) + p[None, :]              # (T, BP) in x, z, y
    bn_off = i[:, None] * (G * N) + n[None, :]              # (T, BN) in B, C
    row0 = b.to(tl.int64) * L + s0                          # index of (b, s0)
    dcs = bh64 * L                                          # row of Δ and cs
    # 0. Δ = softplus(dt + bias) and cs_i = a_0 + … + a_i (a = Δ A) within each block, for the whole
    #    segment at once (PREP_BLOCKS blocks a tile; no step waits on another), into the rows the walk
    #    loads. The full pass after a states-only pass reads what that pass wrote, but for the last
    #    segment, which it had no program for. (Programs of other P-blocks write the same values.)
    if STATES_ONLY or CHAINED or sg == n_seg - 1:
        A = tl.load(A_ptr + h).to(acc)
        if HAS_DTB:
            dtb = tl.load(dtb_ptr + h).to(acc)
        tile = tl.arange(0, PREP_BLOCKS)[:, None] * BLOCK_T + i[None, :]
        for c0 in range(s0, s1, PREP_BLOCKS * BLOCK_T):
            tt = c0 + tile
            tmask = tt < s1
            d = tl.load(dt_ptr + (row0 - s0 + tt) * H + h, mask=tmask, other=0.0).to(acc)
            if HAS_DTB:
                d += dtb
            d = _delta(d, tmask, SOFTPLUS)
            tl.store(delta_ptr + dcs + tt, d, mask=tmask)
            tl.store(cs_ptr + dcs + tt, tl.cumsum(d * A, axis=1), mask=tmask)
        tl.debug_barrier()      # the walk's loads below read what the program's threads stored
    if PREFETCH:   # Δ and cs are loaded a block ahead (the pipeliner leaves these loads synchronous)
        dt_next = tl.load(delta_ptr + dcs + s0 + i, mask=s0 + i < s1, other=0.0)
        cs_next = tl.load(cs_ptr + dcs + s0 + i, mask=s0 + i < s1, other=0.0)
        al_next = tl.load(cs_ptr + dcs + tl.minimum(s0 + BLOCK_T, s1) - 1)
    for t0 in range(s0, s1, BLOCK_T):
        tm = t0 + i < s1
        xp_base = (row0 * H + h) * P
        bn_base = (row0 * G + g) * N
        # 1. step sizes Δ and the in-block cumulative decay cs_i = a_0 + … + a_i (steps past the
        #    segment: Δ = 0, and cs = 0, which only rows that are never stored see)
        nx = t0 + BLOCK_T
        if PREFETCH:
            dt, cs, a_last = dt_next, cs_next, al_next
            dt_next = tl.load(delta_ptr + dcs + nx + i, mask=nx + i < s1, other=0.0)
            cs_next = tl.load(cs_ptr + dcs + nx + i, mask=nx + i < s1, other=0.0)
            al_next = tl.load(cs_ptr + dcs + tl.maximum(tl.minimum(nx + BLOCK_T, s1) - 1, 0))
        else:
            dt = tl.load(delta_ptr + dcs + t0 + i, mask=tm, other=0.0)
            cs = tl.load(cs_ptr + dcs + t0 + i, mask=tm, other=0.0)
            a_last = tl.load(cs_ptr + dcs + tl.minimum(nx, s1) - 1)
        m_xp = tm[:, None] & pm[None, :]
        m_bn = tm[:, None] & nm[None, :]
        xv = tl.load(x_ptr + xp_base + xp_off, mask=m_xp, other=0.0)
        Bv = tl.load(B_ptr + bn_base + bn_off, mask=m_bn, other=0.0)
        xdt = xv.to(acc) * dt[:, None]                        # (T, BP)
        if STORE_STATES:       # the state entering every block
            tl.store(states_ptr + (bh64 * n_blocks + t0 // BLOCK_T) * P * N + pn_off,
                     state.to(states_ptr.dtype.element_ty), mask=pn_mask)
        if not STATES_ONLY:
            Cv = tl.load(C_ptr + bn_base + bn_off, mask=m_bn, other=0.0)
            # 2. the carried state's contribution, exp(cs_i) · C_i stateᵀ
            y = tl.dot(Cv.to(op), tl.trans(state.to(op)), input_precision=PRECISION, out_dtype=acc)
            y = y * tl.exp(cs)[:, None]
            # 3. the intra-block quadratic part (C Bᵀ ∘ 𝓛)(Δ x)
            if HAS_CB:
                S = tl.load(cb_ptr + ((b.to(tl.int64) * G + g) * n_blocks + t0 // BLOCK_T) * BLOCK_T * BLOCK_T
                            + i[:, None] * BLOCK_T + i[None, :])
            else:
                S = tl.dot(Cv.to(op), tl.trans(Bv.to(op)), input_precision=PRECISION, out_dtype=acc)
            causal = i[:, None] >= i[None, :]
            S = S * tl.exp(tl.where(causal, cs[:, None] - cs[None, :], float("-inf")))
            y = tl.dot(S.to(op), xdt.to(op), acc=y, input_precision=PRECISION, out_dtype=acc)
            # 4. skip connection, gate, store
            if HAS_D:
                y += Dv * xv.to(acc)
            if HAS_Z:
                zv = tl.load(z_ptr + xp_base + xp_off, mask=m_xp, other=0.0).to(acc)
                y = y * zv * tl.sigmoid(zv)
            tl.store(y_ptr + xp_base + xp_off, y.to(y_ptr.dtype.element_ty), mask=m_xp)
        # 5. state ← exp(Σa) state + (Δx · exp(a_{j+1} + … + a_last))ᵀ B
        w = tl.exp(a_last - cs)
        state = tl.dot(tl.trans((xdt * w[:, None]).to(op)), Bv.to(op), acc=state * tl.exp(a_last),
                       input_precision=PRECISION, out_dtype=acc)
        a_total += a_last
        row0 += BLOCK_T

    if CHAINED:
        if sg < n_seg - 1:   # hand the end state on: store it, then (after the whole program's stores) the flag
            tl.store(seg_h_ptr + (bh64 * n_seg + sg) * P * N + pn_off, state, mask=pn_mask)
            tl.debug_barrier()
            tl.atomic_xchg(chain_ptr + 1 + (bh64 * n_pblk + pid_p) * n_seg + sg, 1, sem="release")
    if STATES_ONLY:
        tl.store(seg_h_ptr + (bh64 * n_seg + sg) * P * N + pn_off, state, mask=pn_mask)
        tl.store(seg_a_ptr + bh64 * n_seg + sg + tl.arange(0, 1), a_total, mask=(tl.arange(0, 1) < 1) & (pid_p == 0))
    elif STORE_FINAL:
        tl.store(hT_ptr + bh64 * P * N + pn_off, state.to(hT_ptr.dtype.element_ty),
                 mask=pn_mask & (sg == n_seg - 1))


@triton.jit
def _ssd_bwd_kernel(
        x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dtb_ptr, states_ptr, dy_ptr, dhT_ptr,
        dx_ptr, dz_ptr, ddt_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, ddtb_ptr, dh0_ptr, seg_dh_ptr, seg_a_ptr,
        L, H, G, P, N, n_blocks, seg_blocks, n_seg,
        HAS_D: tl.constexpr, D_PER_P: tl.constexpr, HAS_Z: tl.constexpr, HAS_DTB: tl.constexpr,
        SOFTPLUS: tl.constexpr, HAS_H0: tl.constexpr, HAS_DHT: tl.constexpr, ADJ_ONLY: tl.constexpr,
        BC_PER_HEAD: tl.constexpr, BC_STORE: tl.constexpr, LOWP: tl.constexpr, PRECISION: tl.constexpr,
        BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr):
    # BC_PER_HEAD: dB, dC go to per-head float32 buffers (batch, L, H, N), summed over each group's
    # heads afterwards, instead of atomics shared by the H/G heads; BC_STORE: plain stores there
    # (one P-block per head, so nothing else writes the element).
    # Program (b·H + h, block of P) walks the blocks backwards, carrying the adjoint dh of the
    # state (BLOCK_P, N) in float32; the state entering each block comes from the forward.
    # Per block, with M = C Bᵀ ∘ 𝓛, u = exp(cs)·(C h_inᵀ) + M (Δx) + D x, y = u·silu(z):
    #   d(Δx) = Mᵀ du + w·(B dhᵀ)          dC = (du (Δx)ᵀ ∘ 𝓛) B + exp(cs)·(du h_in)
    #   dB = (du (Δx)ᵀ ∘ 𝓛)ᵀ C + w·(Δx dh)  dh_in = exp(cs_last) dh + (exp(cs)·du)ᵀ C
    # and the decays' gradient through the cumulative sums cs (see the module docstring).
    # Segments (axis 2) as in the forward: with ADJ_ONLY, segment sg ≥ 1 computes only the adjoint at
    # its start from dh = 0 at its end (and its total log-decay); the full pass folds those of the later
    # segments into its dh before walking.
    bh = tl.program_id(0)
    pid_p = tl.program_id(1)
    if ADJ_ONLY:
        sg = tl.program_id(2) + 1
    else:
        sg = tl.program_id(2)
    b = bh // H
    h = bh % H
    g = h // (H // G)
    acc = tl.float64 if x_ptr.dtype.element_ty == tl.float64 else tl.float32
    op = x_ptr.dtype.element_ty if LOWP else acc
    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    i = tl.arange(0, BLOCK_T)
    pm = p < P
    nm = n < N
    pn_off = p[:, None] * N + n[None, :]
    pn_mask = pm[:, None] & nm[None, :]
    bh64 = bh.to(tl.int64)
    A = tl.load(A_ptr + h).to(acc)
    dtb = 0.0
    if HAS_DTB:
        dtb = tl.load(dtb_ptr + h).to(acc)
    if HAS_D:
        if D_PER_P:
            Dv = tl.load(D_ptr + h * P + p, mask=pm, other=0.0).to(acc)[None, :]
        else:
            Dv = tl.load(D_ptr + h).to(acc)
    dh = tl.zeros([BLOCK_P, BLOCK_N], dtype=acc)
    blk_lo = sg * seg_blocks
    blk_hi = tl.minimum(n_blocks, blk_lo + seg_blocks)
    if not ADJ_ONLY:
        if HAS_DHT:
            dh = tl.load(dhT_ptr + bh64 * P * N + pn_off, mask=pn_mask, other=0.0).to(acc)
        for jj in range(0, n_seg - 1 - sg):          # later segments, last first
            j = n_seg - 1 - jj
            a_j = tl.load(seg_a_ptr + bh64 * n_seg + j).to(acc)      # .to(acc): with one segment, placeholders
            # of the input dtype (dx); the loop never runs but must compile (tl.exp takes no bfloat16)
            lam = tl.load(seg_dh_ptr + (bh64 * n_seg + j) * P * N + pn_off, mask=pn_mask, other=0.0).to(acc)
            dh = dh * tl.exp(a_j) + lam
    a_total = tl.zeros([1], dtype=acc)
    dA_acc = tl.zeros([BLOCK_T], dtype=acc)
    ddtb_acc = tl.zeros([BLOCK_T], dtype=acc)
    dD_acc = tl.zeros([BLOCK_T, BLOCK_P], dtype=acc)
    xp_off = i[:, None] * (H * P) + p[None, :]
    bn_off = i[:, None] * (G * N) + n[None, :]
    if BC_PER_HEAD:
        dbc_off = i[:, None] * (H * N) + n[None, :]
    else:
        dbc_off = bn_off
    causal = i[:, None] >= i[None, :]
    for kb in range(0, blk_hi - blk_lo):
        blk = blk_hi - 1 - kb
        t0 = blk * BLOCK_T
        tm = t0 + i < L
        row0 = b.to(tl.int64) * L + t0
        xp_base = (row0 * H + h) * P
        bn_base = (row0 * G + g) * N
        m_xp = tm[:, None] & pm[None, :]
        m_bn = tm[:, None] & nm[None, :]
        # recompute the forward quantities of the block
        dt_raw = tl.load(dt_ptr + row0 * H + h + i * H, mask=tm, other=0.0).to(acc)
        if HAS_DTB:
            dt_raw += dtb
        dt = _delta(dt_raw, tm, SOFTPLUS)
        a = dt * A
        cs = tl.cumsum(a, axis=0)
        a_last = tl.sum(a, axis=0)
        e_cs = tl.exp(cs)
        w = tl.exp(a_last - cs)
        xv = tl.load(x_ptr + xp_base + xp_off, mask=m_xp, other=0.0).to(acc)
        Bv = tl.load(B_ptr + bn_base + bn_off, mask=m_bn, other=0.0)
        Cv = tl.load(C_ptr + bn_base + bn_off, mask=m_bn, other=0.0)
        h_in = tl.load(states_ptr + (bh64 * n_blocks + blk) * P * N + pn_off, mask=pn_mask, other=0.0).to(acc)
        xdt = xv * dt[:, None]
        E = tl.exp(tl.where(causal, cs[:, None] - cs[None, :], float("-inf")))
        S = tl.dot(Cv.to(op), tl.trans(Bv.to(op)), input_precision=PRECISION, out_dtype=acc)
        M = S * E
        dy = tl.load(dy_ptr + xp_base + xp_off, mask=m_xp, other=0.0).to(acc)
        u_state = tl.dot(Cv.to(op), tl.trans(h_in.to(op)), input_precision=PRECISION, out_dtype=acc) * e_cs[:, None]
        if HAS_Z:
            u = tl.dot(M.to(op), xdt.to(op), acc=u_state, input_precision=PRECISION, out_dtype=acc)
            if HAS_D:
                u += Dv * xv
            zv = tl.load(z_ptr + xp_base + xp_off, mask=m_xp, other=0.0).to(acc)
            sz = tl.sigmoid(zv)
            dz = dy * u * sz * (1.0 + zv * (1.0 - sz))
            if not ADJ_ONLY:
                tl.store(dz_ptr + xp_base + xp_off, dz.to(dz_ptr.dtype.element_ty), mask=m_xp)
            du = dy * zv * sz
        else:
            du = dy
        if not ADJ_ONLY:
            # d(Δx): through the quadratic part and through the state at the block's end
            G1 = tl.dot(Bv.to(op), tl.trans(dh.to(op)), input_precision=PRECISION, out_dtype=acc)     # (T, BP): B dhᵀ
            dxdt = tl.dot(tl.trans(M.to(op)), du.to(op), input_precision=PRECISION, out_dtype=acc) + w[:, None] * G1
            # scores: dM = du (Δx)ᵀ on the causal triangle
            dM = tl.dot(du.to(op), tl.trans(xdt.to(op)), input_precision=PRECISION, out_dtype=acc)
            dM = tl.where(causal, dM, 0.0)
            dS = dM * E
            R = dM * M
            # dC, dB (shared by the heads of a group: accumulated atomically in float32)
            dC = tl.dot(dS.to(op), Bv.to(op), input_precision=PRECISION, out_dtype=acc)
            dC += e_cs[:, None] * tl.dot(du.to(op), h_in.to(op), input_precision=PRECISION, out_dtype=acc)
            dB = tl.dot(tl.trans(dS.to(op)), Cv.to(op), input_precision=PRECISION, out_dtype=acc)
            dB += w[:, None] * tl.dot(xdt.to(op), dh.to(op), input_precision=PRECISION, out_dtype=acc)
            if BC_PER_HEAD:
                dbc_base = (row0 * H + h) * N
            else:
                dbc_base = bn_base
            if BC_STORE:
                tl.store(dC_ptr + dbc_base + dbc_off, dC.to(dC_ptr.dtype.element_ty), mask=m_bn)
                tl.store(dB_ptr + dbc_base + dbc_off, dB.to(dB_ptr.dtype.element_ty), mask=m_bn)
            else:
                tl.atomic_add(dC_ptr + dbc_base + dbc_off, dC.to(dC_ptr.dtype.element_ty), mask=m_bn)
                tl.atomic_add(dB_ptr + dbc_base + dbc_off, dB.to(dB_ptr.dtype.element_ty), mask=m_bn)
            # the cumulative decays: d cs_i from the mask, the state term and the block's end state
            q = w * tl.sum(xdt * G1, axis=1)
            dcs = tl.sum(R, axis=1) - tl.sum(R, axis=0) + tl.sum(du * u_state, axis=1) - q
            dcs_last = tl.sum(q, axis=0) + tl.exp(a_last) * tl.sum(tl.sum(dh * h_in, axis=1), axis=0)
            dcs = tl.where(i == BLOCK_T - 1, dcs + dcs_last, dcs)     # cs_last = cs[T-1] (Δ = 0 past L)
            da = tl.sum(dcs, axis=0) - tl.cumsum(dcs, axis=0) + dcs     # Σ_{i ≥ k} dcs_i
            ddelta = tl.sum(xv * dxdt, axis=1) + A * da
            dA_acc += dt * da
        # the state entering the block
        dh = tl.dot(tl.trans((du * e_cs[:, None]).to(op)), Cv.to(op), acc=dh * tl.exp(a_last),
                    input_precision=PRECISION, out_dtype=acc)
        a_total += a_last
        if not ADJ_ONLY:
            # x and the step sizes
            dx = dxdt * dt[:, None]
            if HAS_D:
                dx += Dv * du
                dD_acc += du * xv
            tl.store(dx_ptr + xp_base + xp_off, dx.to(dx_ptr.dtype.element_ty), mask=m_xp)
            if SOFTPLUS:
                ddelta = ddelta * tl.sigmoid(dt_raw)
            ddelta = tl.where(tm, ddelta, 0.0)
            tl.atomic_add(ddt_ptr + row0 * H + h + i * H, ddelta.to(ddt_ptr.dtype.element_ty), mask=tm)
            ddtb_acc += ddelta
    if ADJ_ONLY:
        tl.store(seg_dh_ptr + (bh64 * n_seg + sg) * P * N + pn_off, dh, mask=pn_mask)
        tl.store(seg_a_ptr + bh64 * n_seg + sg + tl.arange(0, 1), a_total,
                 mask=(tl.arange(0, 1) < 1) & (pid_p == 0))
    else:
        tl.atomic_add(dA_ptr + h, tl.sum(dA_acc, axis=0))
        if HAS_DTB:
            tl.atomic_add(ddtb_ptr + h, tl.sum(ddtb_acc, axis=0))
        if HAS_D:
            if D_PER_P:
                tl.atomic_add(dD_ptr + h * P + p, tl.sum(dD_acc, axis=0), mask=pm)
            else:
                tl.atomic_add(dD_ptr + h, tl.sum(tl.sum(dD_acc, axis=1), axis=0))
        if HAS_H0:
            tl.store(dh0_ptr + bh64 * P * N + pn_off, dh, mask=pn_mask & (sg == 0))


@triton.jit
def _ssd_step_kernel(
        state_ptr, x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dtb_ptr, y_ptr,
        H, G, P, N,
        HAS_D: tl.constexpr, D_PER_P: tl.constexpr, HAS_Z: tl.constexpr, HAS_DTB: tl.constexpr,
        SOFTPLUS: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr):
    # Program (b·H + h, block of P): state tile (BLOCK_P, N), updated in place.
    bh = tl.program_id(0)
    b = bh // H
    h = bh % H
    g = h // (H // G)
    acc = tl.float64 if x_ptr.dtype.element_ty == tl.float64 else tl.float32
    p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    pm = p < P
    nm = n < N
    bh64 = bh.to(tl.int64)
    s_ptrs = state_ptr + bh64 * P * N + p[:, None] * N + n[None, :]
    smask = pm[:, None] & nm[None, :]
    dt = tl.load(dt_ptr + bh64).to(acc)
    if HAS_DTB:
        dt += tl.load(dtb_ptr + h).to(acc)
    if SOFTPLUS:
        dt = softplus(dt)
    decay = tl.exp(dt * tl.load(A_ptr + h).to(acc))
    xv = tl.load(x_ptr + bh64 * P + p, mask=pm, other=0.0).to(acc)
    bg = (b.to(tl.int64) * G + g) * N
    Bv = tl.load(B_ptr + bg + n, mask=nm, other=0.0).to(acc)
    Cv = tl.load(C_ptr + bg + n, mask=nm, other=0.0).to(acc)
    s = tl.load(s_ptrs, mask=smask, other=0.0).to(acc)
    s = s * decay + (xv * dt)[:, None] * Bv[None, :]
    tl.store(s_ptrs, s.to(state_ptr.dtype.element_ty), mask=smask)
    y = tl.sum(s * Cv[None, :], axis=1)
    if HAS_D:
        if D_PER_P:
            y += tl.load(D_ptr + h * P + p, mask=pm, other=0.0).to(acc) * xv
        else:
            y += tl.load(D_ptr + h).to(acc) * xv
    if HAS_Z:
        zv = tl.load(z_ptr + bh64 * P + p, mask=pm, other=0.0).to(acc)
        y = y * zv * tl.sigmoid(zv)
    tl.store(y_ptr + bh64 * P + p, y.to(y_ptr.dtype.element_ty), mask=pm)


# ---------------------------------------------------------------- launch configuration
#: Steps in one tile of a forward program's pass computing Δ and the decays (1024: on the H200,
#: 0.796 ms at the 2.7B shape against 0.806 with 256; equal at batch 1, L 16K; logs/s12call2_session8.json).
_PREP_STEPS = 1024


def _prep_blocks(block_t: int) -> int:
    """Blocks of ``block_t`` steps in one tile of the forward's Δ pass."""
    return max(1, _PREP_STEPS // block_t)


def _launch_config(batch: int, H: int, P: int, N: int, L: int, G: int, dtype: torch.dtype, device) -> dict:
    """Default tiles and grids of the forward and backward kernels.

    Forward: ``block_t`` steps per block (the score tile is block_t²),
    ``block_p`` channels per program, warps, pipeline stages, and
    ``segments``: the smallest power of two giving ≥ 2·sms programs (``sms``: the
    multiprocessors of ``device``, 132 on the H200), each
    segment at least 8 blocks long. Backward: ``bwd_block_t`` (also the block
    of the forward that saves the states), ``bwd_block_p``, ``bwd_num_warps``,
    ``bwd_segments`` (same rule).

    16-bit inputs: the fastest accurate configurations of the H200 sweep
    (``python -m ssmlib.bench.duality --sweep-only``, ``book/results/ssd_sweep.json``):
    block_t 32, block_p 64, 4 warps at N = 128 (batch 8, L 4K, H 80) and
    at N = 64 (batch 1, L 16K, H 32, with 16 segments), with each block's dt
    loaded a block ahead (``prefetch``) and three pipeline stages: on the H200
    these took the forward from 1.19 to 0.98 ms and from 0.24 to 0.19 ms at
    those shapes, and were faster at every shape timed
    (``book/results/logs/defaults_grid_session5.json``); backward block_t 32,
    P-blocks of 64, 8 warps, and per-head dB, dC buffers when the sequence is
    split into segments (atomics otherwise). N = 256 and float32
    (3×TF32, T = 32) are first choices from the sm_90a compile-only check
    (``--compile-only``: registers and spills), not yet swept.
    Long 16-bit forwards (``batch·L·H·P·N ≥ 2³³``, with those tiles): ``cb`` (C Bᵀ from a
    first launch, when G < H), and, with at least
    4·sms programs (two waves of two an SM), two ``chained`` segments in one launch
    (0.98 → 0.80 ms at the 2.7B shape: the module docstring).
    In the interpreter: small tiles, one segment, none of these.
    """
    if runtime.INTERPRET:
        bp = min(32, max(16, runtime.next_pow2(P)))
        return dict(block_t=16, block_p=bp, num_warps=1, num_stages=1, segments=1, maxnreg=None, bwd_block_t=16,
                    bwd_block_p=bp, bwd_num_warps=1, bwd_segments=1, bwd_bc="atomic", chained=False, cb=False)
    sms = runtime.sm_count(device)
    BN = max(16, runtime.next_pow2(N))
    warps, stages = 8, 1
    if dtype in (torch.float16, torch.bfloat16):
        if BN <= 128:    # the next blocks' x, B, C arrive by cp.async meanwhile, dt by the prefetch
            block_t, block_p, warps, stages = 32, 64, 4, 3
        else:
            block_t, block_p = 64, 16
    elif dtype == torch.float32:       # 3xTF32 products: each operand split in two, smaller tiles
        block_t, block_p = 32, 64 if BN <= 64 else 16
    else:                              # float64 (tests): no tensor cores
        block_t, block_p = 16, 16
    block_p = min(block_p, max(16, runtime.next_pow2(P)))
    cfg = dict(block_t=block_t, block_p=block_p, num_warps=warps, num_stages=stages, segments=1, maxnreg=None,
               bwd_bc="atomic", prefetch=dtype in (torch.float16, torch.bfloat16) and BN <= 128, chained=False,
               cb=False)
    # The backward (and the forward that saves its states) walks blocks of bwd_block_t steps.
    # Larger P-blocks mean fewer float32 atomics on dB, dC and dt (one per P-block and head).
    if dtype in (torch.float16, torch.bfloat16):
        cfg.update(bwd_block_t=32, bwd_block_p=64 if BN <= 128 else 32, bwd_num_warps=8, bwd_segments=1)
    else:
        cfg.update(bwd_block_t=16, bwd_block_p=16, bwd_num_warps=4, bwd_segments=1)
    cfg["bwd_block_p"] = min(cfg["bwd_block_p"], max(16, runtime.next_pow2(P)))
    programs = batch * H * runtime.cdiv(P, cfg["bwd_block_p"])
    max_seg = max(1, L // (8 * cfg["bwd_block_t"]))
    while cfg["bwd_segments"] * programs < 2 * sms and cfg["bwd_segments"] * 2 <= max_seg:
        cfg["bwd_segments"] *= 2
    if cfg["bwd_segments"] > 1:     # faster than atomics in the sweep at batch 1, L 16K (ssd_sweep.json)
        cfg["bwd_bc"] = "per_head"
    programs = batch * H * runtime.cdiv(P, block_p)
    max_seg = max(1, L // (8 * cfg["block_t"]))
    while cfg["segments"] * programs < 2 * sms and cfg["segments"] * 2 <= max_seg:
        cfg["segments"] *= 2
    if cfg["prefetch"] and batch * L * H * P * N >= 2**33:   # the measured 16-bit tiles, a long forward
        cfg["cb"] = G < H
        if programs >= 4 * sms and max_seg >= 2:
            cfg.update(segments=2, chained=True)
    return cfg


def _pow2_at_least_16(name, v):
    checks.positive_int(name, v)
    if v < 16 or v & (v - 1):
        raise ValueError(f"{name} must be a power of two >= 16, got {v}")


# ---------------------------------------------------------------- argument checks
def _check_args(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states):
    checks.tensor("x", x, ndim=4, dtypes=FLOAT_DTYPES)
    batch, L, H, P = x.shape
    checks.tensor("dt", dt, ndim=3, dtypes=FLOAT_DTYPES)
    checks.shape("dt", dt, (batch, L, H))
    checks.tensor("A", A, ndim=1, dtypes=FLOAT_DTYPES)
    checks.shape("A", A, (H,))
    checks.tensor("B", B, ndim=4, dtypes=(x.dtype,))
    checks.shape("B", B, (batch, L, None, None))
    G, N = B.shape[2], B.shape[3]
    if G < 1 or H % G:
        raise ValueError(f"B has G={G} groups; the number of heads H={H} must be a multiple of G")
    if N < 1 or N > MAX_N:
        raise ValueError(f"B has state size N={N}; the kernel keeps the state on chip and supports "
                         f"1 <= N <= {MAX_N}")
    checks.tensor("C", C, ndim=4, dtypes=(x.dtype,))
    checks.shape("C", C, (batch, L, G, N))
    if P < 1:
        raise ValueError(f"x has head dimension P={P}; it must be >= 1")
    checks.positive_int("chunk_size", chunk_size)
    if D is not None:
        checks.tensor("D", D, dtypes=FLOAT_DTYPES)
        if D.shape not in ((H,), (H, P)):
            raise ValueError(f"D must have shape ({H},) or ({H}, {P}), got {tuple(D.shape)}")
    if z is not None:
        checks.tensor("z", z, ndim=4, dtypes=FLOAT_DTYPES)
        checks.shape("z", z, (batch, L, H, P))
    if dt_bias is not None:
        checks.tensor("dt_bias", dt_bias, ndim=1, dtypes=FLOAT_DTYPES)
        checks.shape("dt_bias", dt_bias, (H,))
    if initial_states is not None:
        checks.tensor("initial_states", initial_states, ndim=4, dtypes=FLOAT_DTYPES)
        checks.shape("initial_states", initial_states, (batch, H, P, N))
    named = dict(x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias, initial_states=initial_states)
    for name, t in named.items():
        if t is not None:
            runtime.check_kernel_device(name, t)
            checks.contiguous(name, t)
    checks.same_device(**named)


# ---------------------------------------------------------------- forward and autograd
def _kernel_flags(x, D, z, dt_bias, h0, softplus, cfg, N):
    # 16-bit product operands. Triton 3.6's interpreter gets tl.dot on bfloat16 operands wrong
    # (NumPy has no bfloat16), so there bfloat16 inputs take float32 products; float16 tests the path.
    lowp = x.dtype == torch.float16 or (x.dtype == torch.bfloat16 and not runtime.INTERPRET)
    flags = dict(HAS_D=D is not None, D_PER_P=D is not None and D.dim() == 2, HAS_Z=z is not None,
                 HAS_DTB=dt_bias is not None, SOFTPLUS=bool(softplus), HAS_H0=h0 is not None, LOWP=lowp,
                 PRECISION="ieee" if x.dtype == torch.float64 else "tf32x3", BLOCK_T=cfg["block_t"],
                 BLOCK_P=cfg["block_p"], BLOCK_N=max(16, runtime.next_pow2(N)),
                 num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    if cfg.get("maxnreg"):
        flags["maxnreg"] = cfg["maxnreg"]
    return flags


def _forward(x, dt, A, B, C, D, z, dt_bias, h0, softplus, want_final, cfg, save_states=False):
    """y, final state (or None), and with ``save_states`` the state entering every block of
    ``block_t`` steps, ``(batch·H, n_blocks, P, N)`` float32, for the backward.

    Launches ``_ssd_cb_kernel`` with ``cfg["cb"]`` (C Bᵀ), then the forward kernel over
    ``cfg["segments"]`` segments: chained in one launch (``cfg["chained"]``), or a states-only first
    launch and the full pass (see the module docstring).
    """
    batch, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    y = torch.empty_like(x)
    hT = torch.empty(batch, H, P, N, dtype=acc, device=x.device) if want_final else None
    if batch * H * P == 0 or L == 0:
        if want_final:
            hT.copy_(h0) if h0 is not None else hT.zero_()
        return y, hT, None
    T, BP = cfg["block_t"], cfg["block_p"]
    seg_len = runtime.cdiv(runtime.cdiv(L, max(1, cfg["segments"])), T) * T   # whole blocks per segment
    S = runtime.cdiv(L, seg_len)
    n_blocks = runtime.cdiv(L, T)
    n_pblk = runtime.cdiv(P, BP)
    flags = _kernel_flags(x, D, z, dt_bias, h0, softplus, cfg, N)
    has_cb = bool(cfg.get("cb"))
    delta = torch.empty(batch * H, L, dtype=acc, device=x.device)
    cs = torch.empty(batch * H, L, dtype=acc, device=x.device)
    cb = torch.empty(batch * G, n_blocks, T, T, dtype=acc, device=x.device) if has_cb else delta
    if has_cb:
        runtime.launch(_ssd_cb_kernel, (batch, n_blocks), (B, C, cb, L, G, N, n_blocks), dict(
            LOWP=flags["LOWP"], PRECISION=flags["PRECISION"], BLOCK_T=T, BLOCK_N=flags["BLOCK_N"], num_warps=4))
    flags.update(PREFETCH=bool(cfg.get("prefetch")), HAS_CB=has_cb, PREP_BLOCKS=_prep_blocks(T))
    chained = S > 1 and bool(cfg.get("chained"))
    # unused pointers are placeholders: y (x's dtype) for the inputs, delta (the accumulator's) else
    ptrs = lambda t, dummy=y: dummy if t is None else t  # noqa: E731
    states = torch.empty(batch * H, n_blocks, P, N, dtype=acc, device=x.device) if save_states else None
    two_pass = S > 1 and not chained
    seg_h = torch.empty(batch * H, S, P, N, dtype=acc, device=x.device) if S > 1 else delta
    seg_a = torch.empty(batch * H, S, dtype=acc, device=x.device) if two_pass else delta
    # chained: a ticket counter, then one ready flag per (batch·head, P-block, segment)
    chain = torch.zeros(1 + batch * H * n_pblk * S, dtype=torch.int32, device=x.device) if chained else delta
    args = (x, dt, A, ptrs(dt_bias, A), B, C, ptrs(D), ptrs(z), ptrs(h0), delta, cs, cb, y, ptrs(hT, delta), seg_h,
            seg_a, ptrs(states, delta), chain, L, H, G, P, N, seg_len, S, n_blocks, batch * H)
    if two_pass:   # pass 1: each segment's end state from zero, and its total log-decay
        runtime.launch(_ssd_fwd_kernel, (batch * H, n_pblk, S - 1), args, dict(
            STORE_FINAL=want_final, STATES_ONLY=True, STORE_STATES=False, CHAINED=False, **flags))
    grid = (batch * H * n_pblk * S,) if chained else (batch * H, n_pblk, S)
    runtime.launch(_ssd_fwd_kernel, grid, args, dict(STORE_FINAL=want_final, STATES_ONLY=False,
                                                     STORE_STATES=save_states, CHAINED=chained, **flags))
    return y, hT, states


def _backward(x, dt, A, B, C, D, z, dt_bias, h0, states, dy, dhT, softplus, cfg):
    """Gradients of every tensor argument with the Triton backward kernel (None where absent)."""
    batch, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    dev = x.device
    dx = torch.empty_like(x)
    dz = torch.empty_like(z) if z is not None else None
    ddt = torch.zeros(batch, L, H, dtype=acc, device=dev)
    dA = torch.zeros(H, dtype=acc, device=dev)
    per_head = cfg["bwd_bc"] == "per_head" and H > G
    n_pb = runtime.cdiv(P, cfg["bwd_block_p"])
    bc_store = per_head and n_pb == 1
    bc_shape = (batch, L, H if per_head else G, N)
    dB = (torch.empty if bc_store else torch.zeros)(bc_shape, dtype=acc, device=dev)
    dC = (torch.empty if bc_store else torch.zeros)(bc_shape, dtype=acc, device=dev)
    dD = torch.zeros(D.shape, dtype=acc, device=dev) if D is not None else None
    ddtb = torch.zeros(H, dtype=acc, device=dev) if dt_bias is not None else None
    dh0 = torch.empty(batch, H, P, N, dtype=acc, device=dev) if h0 is not None else None
    if batch * H * P > 0 and L > 0:
        bcfg = dict(cfg, block_t=cfg["bwd_block_t"], block_p=cfg["bwd_block_p"], num_warps=cfg["bwd_num_warps"],
                    num_stages=1, maxnreg=None)
        flags = _kernel_flags(x, D, z, dt_bias, h0, softplus, bcfg, N)
        dummy = dx
        ptrs = lambda t: dummy if t is None else t  # noqa: E731
        n_blocks = states.shape[1]
        seg_blocks = runtime.cdiv(n_blocks, max(1, cfg.get("bwd_segments", 1)))
        S = runtime.cdiv(n_blocks, seg_blocks)
        seg_dh = seg_a = dummy
        args = lambda: (x, dt, A, B, C, ptrs(D), ptrs(z), ptrs(dt_bias), states, dy.contiguous(),  # noqa: E731
                        ptrs(None if dhT is None else dhT.to(acc).contiguous()),
                        dx, ptrs(dz), ddt, dA, dB, dC, ptrs(dD), ptrs(ddtb), ptrs(dh0), seg_dh, seg_a,
                        L, H, G, P, N, n_blocks, seg_blocks, S)
        grid = (batch * H, runtime.cdiv(P, bcfg["block_p"]))
        mode = dict(HAS_DHT=dhT is not None, BC_PER_HEAD=per_head, BC_STORE=bc_store, **flags)
        if S > 1:   # pass 1: each later segment's adjoint at its start, from zero at its end
            seg_dh = torch.empty(batch * H, S, P, N, dtype=acc, device=dev)
            seg_a = torch.empty(batch * H, S, dtype=acc, device=dev)
            runtime.launch(_ssd_bwd_kernel, (*grid, S - 1), args(), dict(ADJ_ONLY=True, **mode))
        runtime.launch(_ssd_bwd_kernel, (*grid, S), args(), dict(ADJ_ONLY=False, **mode))
    else:
        dB.zero_()
        dC.zero_()
        dx.zero_()
        if dz is not None:
            dz.zero_()
        if dh0 is not None:
            dh0.copy_(dhT if dhT is not None else torch.zeros_like(dh0))
    if per_head:      # each group's heads summed, in float32
        dB = dB.view(batch, L, G, H // G, N).sum(3)
        dC = dC.view(batch, L, G, H // G, N).sum(3)
    cast = lambda g, t: None if t is None else g.to(t.dtype)  # noqa: E731
    return (dx, cast(ddt, dt), cast(dA, A), cast(dB, B), cast(dC, C), cast(dD, D), dz, cast(ddtb, dt_bias),
            cast(dh0, h0))


class _SSD(torch.autograd.Function):
    """Forward: the Triton kernel (saving the state entering every block when a gradient is needed).
    Backward: the Triton backward kernel, or (``backward="reference"``) recomputation through
    :func:`ssd_chunked_ref` under autograd in float32 (float64 for float64 inputs)."""

    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, z, dt_bias, h0, chunk_size, softplus, want_final, cfg):
        triton_bwd = cfg.get("backward", "triton") == "triton" and cfg.get("need_grad", True)
        if triton_bwd:   # the forward saves the state entering each of the backward's blocks
            cfg = dict(cfg, block_t=cfg["bwd_block_t"])
        y, hT, states = _forward(x, dt, A, B, C, D, z, dt_bias, h0, softplus, want_final, cfg,
                                 save_states=triton_bwd)
        ctx.save_for_backward(x, dt, A, B, C, D, z, dt_bias, h0, states)
        ctx.opts = (chunk_size, softplus, want_final, cfg)
        if want_final:
            return y, hT
        return y

    @staticmethod
    def backward(ctx, gy, *rest):
        chunk_size, softplus, want_final, cfg = ctx.opts
        *saved, states = ctx.saved_tensors
        if states is not None:
            x, dt, A, B, C, D, z, dt_bias, h0 = saved
            if gy is None:
                gy = torch.zeros_like(x)
            grads = _backward(x, dt, A, B, C, D, z, dt_bias, h0, states, gy,
                              rest[0] if want_final else None, softplus, cfg)
            grads = [g if need else None for g, need in zip(grads, ctx.needs_input_grad)]
            return (*grads, None, None, None, None)
        f = torch.float64 if saved[0].dtype == torch.float64 else torch.float32
        with torch.enable_grad():
            leaves = [None if t is None else t.detach().to(f).requires_grad_(ctx.needs_input_grad[k])
                      for k, t in enumerate(saved)]
            x, dt, A, B, C, D, z, dt_bias, h0 = leaves
            # Chunks of at most 64 steps: the same function, a quarter of the (Q, Q) masks' memory of Q = 256.
            out = ssd_chunked_ref(x, dt, A, B, C, min(chunk_size, 64), D, z, dt_bias, h0, softplus, want_final)
            outs, grads = ([out[0], out[1]], [gy, rest[0]]) if want_final else ([out], [gy])
            pairs = [(o, gr.to(o.dtype)) for o, gr in zip(outs, grads) if gr is not None]
            need = [t for t in leaves if t is not None and t.requires_grad]
            got = torch.autograd.grad([o for o, _ in pairs], need, [gr for _, gr in pairs], allow_unused=True)
        got = iter(got)
        result = []
        for t, orig in zip(leaves, saved):
            if t is not None and t.requires_grad:
                gr = next(got)
                result.append(torch.zeros_like(orig) if gr is None else gr.to(orig.dtype))
            else:
                result.append(None)
        return (*result, None, None, None, None)


def ssd(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
        dt_softplus=False, return_final_states=False, *, block_t=None, block_p=None, num_warps=None,
        num_stages=None, segments=None, maxnreg=None, prefetch=None, chained=None, cb=None,
        backward="triton", bwd_block_p=None, bwd_num_warps=None, bwd_segments=None, bwd_bc=None):
    """Mamba-2's SSD layer core with the fused Triton kernel (see the module docstring).

    Args:
        x: ``(batch, L, H, P)`` inputs, float16, bfloat16, float32 or float64.
        dt: ``(batch, L, H)`` step sizes (before bias and softplus).
        A: ``(H,)`` decay rates, negative.
        B, C: ``(batch, L, G, N)`` input and output projections, x's dtype; H a multiple of G, N ≤ 256.
        chunk_size: chunk length of the chunked algorithm (any positive int; the kernel tiles time
            by ``block_t`` instead, the result is the same function).
        D: ``(H,)`` or ``(H, P)`` skip connection, optional.
        z: ``(batch, L, H, P)`` gate, optional: ``y · silu(z)``.
        dt_bias: ``(H,)`` added to dt, optional.
        initial_states: ``(batch, H, P, N)`` state before the first step, optional.
        dt_softplus: Δ = softplus(dt + dt_bias) instead of dt + dt_bias.
        return_final_states: also return the state after the last step.
        block_t, block_p, num_warps, num_stages, segments, maxnreg: override the
            launch configuration (benchmarks and tests; see ``_launch_config``;
            maxnreg caps the registers per thread on the GPU).
        prefetch: the forward loads each block's Δ and cs one block ahead
            (Triton's pipeliner leaves those loads synchronous; x, B, C it copies ahead itself). On by default
            for 16-bit inputs with N ≤ 128, where the H200 timed it (``_launch_config``).
        chained: run the segments in one launch, each program waiting for the previous segment's
            end state (on by default where the grid is at least two waves: ``_launch_config``);
            otherwise a states-only first launch folds them.
        cb: precompute each block's C Bᵀ once per group (``_ssd_cb_kernel``, one launch more)
            instead of in every head's program (on for long 16-bit forwards when heads share B and C).
        backward: ``"triton"`` (the fused backward kernel) or ``"reference"``
            (recomputation through :func:`ssd_chunked_ref` under autograd).
        bwd_block_p, bwd_num_warps, bwd_segments: the backward kernel's launch configuration.
        bwd_bc: how the backward sums dB and dC over the heads of a group: ``"atomic"``
            (float32 atomics on (batch, L, G, N)) or ``"per_head"`` (a float32 buffer per head,
            (batch, L, H, N), summed afterwards: H/G times the memory, no contention).

    All tensors live on ``ssmlib.DEVICE`` and are contiguous; B and C have x's
    dtype; dt, A, D, z, dt_bias and initial_states may be any float dtype.
    Arithmetic is float32 (float64 for float64 x), with 16-bit tensor-core
    products for 16-bit inputs. Differentiable in every tensor argument.

    Returns:
        ``y (batch, L, H, P)`` in x's dtype, and with ``return_final_states``
        ``final_states (batch, H, P, N)`` in float32 (float64 for float64 x).
    """
    _check_args(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states)
    batch, L, H, P = x.shape
    cfg = _launch_config(batch, H, P, B.shape[3], L, B.shape[2], x.dtype, x.device)
    for k, v in dict(prefetch=prefetch, chained=chained, cb=cb).items():
        if v is not None:
            cfg[k] = bool(v)
    if bwd_bc is not None:
        if bwd_bc not in ("atomic", "per_head"):
            raise ValueError(f"bwd_bc must be 'atomic' or 'per_head', got {bwd_bc!r}")
        cfg["bwd_bc"] = bwd_bc
    for k, v in dict(block_t=block_t, block_p=block_p, num_warps=num_warps, num_stages=num_stages,
                     segments=segments, maxnreg=maxnreg, bwd_block_p=bwd_block_p, bwd_num_warps=bwd_num_warps,
                     bwd_segments=bwd_segments).items():
        if v is not None:
            checks.positive_int(k, v)
            cfg[k] = v
    if block_t is not None:       # an explicit block_t sets the backward's blocks too
        cfg["bwd_block_t"] = block_t
    _pow2_at_least_16("bwd_block_p", cfg["bwd_block_p"])
    if backward not in ("triton", "reference"):
        raise ValueError(f"backward must be 'triton' or 'reference', got {backward!r}")
    cfg["backward"] = backward
    # Save the forward's states for the backward only when a gradient can be asked for.
    cfg["need_grad"] = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, dt, A, B, C, D, z, dt_bias, initial_states))
    _pow2_at_least_16("block_t", cfg["block_t"])
    _pow2_at_least_16("block_p", cfg["block_p"])
    if not runtime.INTERPRET:
        # the tiles each kernel will run: with a Triton backward, the forward walks bwd_block_t steps too
        pairs = [("bwd_block_t", "num_warps"), ("bwd_block_t", "bwd_num_warps")] if (
            cfg["need_grad"] and backward == "triton") else [("block_t", "num_warps")]
        for steps, warps in pairs:
            if cfg[steps] > MAX_STEPS_PER_WARP * cfg[warps]:
                raise ValueError(
                    f"{steps}={cfg[steps]} with {warps}={cfg[warps]}: {steps} must be at most "
                    f"{MAX_STEPS_PER_WARP}·{warps} (the compiled kernel computed wrong outputs and read out "
                    f"of bounds beyond that on the H200, Triton {triton.__version__}; book/results/ssd_sweep.json)")
    return _SSD.apply(x, dt, A, B, C, D, z, dt_bias, initial_states, chunk_size, dt_softplus,
                      return_final_states, cfg)


def ssd_step(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False, *, block_p=None,
             num_warps=None):
    """One decoding step of SSD, updating ``state`` in place; returns ``y (batch, H, P)``.

    ``state (batch, H, P, N)`` (any float dtype; arithmetic in float32, float64
    for float64 x), ``x (batch, H, P)``, ``dt (batch, H)``, ``A (H,)``, ``B, C
    (batch, G, N)``, ``D (H,)`` or ``(H, P)``, ``z (batch, H, P)``, ``dt_bias
    (H,)``. Equals one step of :func:`ssd` started from ``state``. Not differentiable.
    """
    checks.tensor("x", x, ndim=3, dtypes=FLOAT_DTYPES)
    batch, H, P = x.shape
    checks.tensor("state", state, ndim=4, dtypes=FLOAT_DTYPES)
    checks.shape("state", state, (batch, H, P, None))
    N = state.shape[3]
    checks.tensor("dt", dt, ndim=2, dtypes=FLOAT_DTYPES)
    checks.shape("dt", dt, (batch, H))
    checks.tensor("A", A, ndim=1, dtypes=FLOAT_DTYPES)
    checks.shape("A", A, (H,))
    checks.tensor("B", B, ndim=3, dtypes=FLOAT_DTYPES)
    checks.shape("B", B, (batch, None, N))
    G = B.shape[1]
    if G < 1 or H % G:
        raise ValueError(f"B has G={G} groups; the number of heads H={H} must be a multiple of G")
    checks.tensor("C", C, ndim=3, dtypes=FLOAT_DTYPES)
    checks.shape("C", C, (batch, G, N))
    if N < 1 or N > MAX_N:
        raise ValueError(f"state has state size N={N}; supported: 1 <= N <= {MAX_N}")
    if D is not None:
        checks.tensor("D", D, dtypes=FLOAT_DTYPES)
        if D.shape not in ((H,), (H, P)):
            raise ValueError(f"D must have shape ({H},) or ({H}, {P}), got {tuple(D.shape)}")
    if z is not None:
        checks.tensor("z", z, ndim=3, dtypes=FLOAT_DTYPES)
        checks.shape("z", z, (batch, H, P))
    if dt_bias is not None:
        checks.tensor("dt_bias", dt_bias, ndim=1, dtypes=FLOAT_DTYPES)
        checks.shape("dt_bias", dt_bias, (H,))
    named = dict(state=state, x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias)
    for name, t in named.items():
        if t is not None:
            runtime.check_kernel_device(name, t)
            checks.contiguous(name, t)
    checks.same_device(**named)
    BN = runtime.next_pow2(N)
    if block_p is None:
        block_p = min(runtime.next_pow2(P), max(1, 4096 // BN))
    checks.positive_int("block_p", block_p)
    if block_p & (block_p - 1):
        raise ValueError(f"block_p must be a power of two, got {block_p}")
    y = torch.empty_like(x)
    if batch * H * P == 0:
        return y
    dummy = y
    runtime.launch(_ssd_step_kernel, (batch * H, runtime.cdiv(P, block_p)), (
        state, x, dt, A, B, C, dummy if D is None else D, dummy if z is None else z,
        dummy if dt_bias is None else dt_bias, y, H, G, P, N), dict(
        HAS_D=D is not None, D_PER_P=D is not None and D.dim() == 2, HAS_Z=z is not None,
        HAS_DTB=dt_bias is not None, SOFTPLUS=bool(dt_softplus), BLOCK_P=block_p, BLOCK_N=BN,
        num_warps=num_warps or (1 if runtime.INTERPRET else 4)))
    return y

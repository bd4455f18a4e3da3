"""A record, not part of ssmlib: the selective forward with the states over lanes and the channels
and steps in registers, written in Gluon (Triton 3.6's explicit-layout language), as timed on the
H200 in session 15 (``selective_gluon_session15.json``; the design log says what it showed).

Headline case only: input-dependent B, C as given, ``(batch, N, L)``; N = 16; D, z, delta_bias,
softplus on; L a multiple of T; dim a multiple of the channel block. Gluon does not run in Triton's
interpreter, which is one reason it was not kept."""
import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl

LOG2E = 1.4426950408889634


@gluon.jit
def _softplus(x):
    e = gl.exp(-gl.abs(x))
    lg = gl.inline_asm_elementwise("lg2.approx.ftz.f32 $0, $1;", "=r,r", [1.0 + e], dtype=gl.float32,
                                   is_pure=True, pack=1)
    series = e * (1.0 + e * (-0.5 + e * (0.3333333333333333 - 0.25 * e)))
    l1p = gl.where(e < 0.03125, series, lg * 0.6931471805599453)
    return gl.maximum(x, 0.0) + l1p


@gluon.jit
def fwd_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr,
               dim, L, sB_b, sC_b,
               DR: gl.constexpr, T: gl.constexpr, N: gl.constexpr, W: gl.constexpr, PRE: gl.constexpr):
    NL: gl.constexpr = N               # lanes along the states (N = 16)
    DL: gl.constexpr = 32 // NL        # lanes along the channels
    BD: gl.constexpr = DR * DL * W
    # (channel, step, state): states over lanes, channels and steps in registers
    P3: gl.constexpr = gl.BlockedLayout([DR, T, 1], [DL, 1, NL], [W, 1, 1], [2, 1, 0])
    S2: gl.constexpr = gl.SliceLayout(1, P3)      # (channel, state)
    RT: gl.constexpr = gl.SliceLayout(2, P3)      # (channel, step), replicated over the state lanes
    BT: gl.constexpr = gl.SliceLayout(0, P3)      # (step, state)
    # (channel, step) tiles spread over all threads: loads, softplus, outputs
    TPT: gl.constexpr = (BD * T) // (32 * W)
    L2: gl.constexpr = gl.BlockedLayout([1, TPT], [32 // (T // TPT), T // TPT], [W, 1], [1, 0])
    # (channel, step, state) with the states in registers: the C contraction
    Q3: gl.constexpr = gl.BlockedLayout([1, TPT, N], [32 // (T // TPT), T // TPT, 1], [W, 1, 1], [2, 1, 0])

    pid = gl.program_id(0)
    nblk = dim // BD
    b = pid // nblk
    d0 = (pid % nblk) * BD
    dl = d0 + gl.arange(0, BD, layout=gl.SliceLayout(1, L2))
    tl_ = gl.arange(0, T, layout=gl.SliceLayout(0, L2))
    rows = b * dim + dl
    offs = rows[:, None].to(gl.int64) * L + tl_[None, :]
    bias = gl.load(bias_ptr + dl)[:, None]
    Dv = gl.load(D_ptr + dl)[:, None]

    ds = d0 + gl.arange(0, BD, layout=gl.SliceLayout(1, S2))
    ns = gl.arange(0, N, layout=gl.SliceLayout(0, S2))
    A2 = gl.load(A_ptr + ds[:, None] * N + ns[None, :]) * 1.4426950408889634
    A23 = gl.expand_dims(A2, 1)

    tb = gl.arange(0, T, layout=gl.SliceLayout(1, BT))
    nb = gl.arange(0, N, layout=gl.SliceLayout(0, BT))
    Bp = B_ptr + b.to(gl.int64) * sB_b + nb[None, :] * L + tb[:, None]
    Cp = C_ptr + b.to(gl.int64) * sC_b + nb[None, :] * L + tb[:, None]
    t3 = gl.arange(0, T, layout=gl.SliceLayout(0, RT))[None, :, None]
    t3 = gl.convert_layout(gl.expand_dims(gl.expand_dims(gl.arange(0, T, layout=gl.SliceLayout(0, RT)), 0), 2), P3)

    x = gl.zeros([BD, N], gl.float32, S2)
    negz = gl.full([BD, T, N], -2147483648, gl.int32, P3).to(gl.float32, bitcast=True)
    # chunk inputs loaded a chunk ahead (PRE) so HBM latency hides behind a chunk of arithmetic
    DTr_n = gl.load(delta_ptr + offs)
    U_n = gl.load(u_ptr + offs)
    Z_n = gl.load(z_ptr + offs)
    B_n = gl.load(Bp)
    C_n = gl.load(Cp)
    for k in range(0, L, T):
        kn = gl.minimum(k + T, L - T)
        DTr = DTr_n.to(gl.float32) + bias
        U = U_n.to(gl.float32)
        Z = Z_n.to(gl.float32)
        B3 = gl.expand_dims(B_n.to(gl.float32), 0)
        C3 = gl.expand_dims(C_n.to(gl.float32), 0)
        if PRE:
            DTr_n = gl.load(delta_ptr + offs + kn)
            U_n = gl.load(u_ptr + offs + kn)
            Z_n = gl.load(z_ptr + offs + kn)
            B_n = gl.load(Bp + kn)
            C_n = gl.load(Cp + kn)
        DT = _softplus(DTr)
        DTU = DT * U
        DT3 = gl.expand_dims(gl.convert_layout(DT, RT), 2)
        DTU3 = gl.expand_dims(gl.convert_layout(DTU, RT), 2)
        dA = gl.exp2(DT3 * A23)
        dBu = DTU3 * B3
        X3 = negz
        for j in gl.static_range(T):
            sel = t3 == j
            a = gl.sum(gl.where(sel, dA, negz), 1)
            bb = gl.sum(gl.where(sel, dBu, negz), 1)
            x = a * x + bb
            X3 = gl.where(sel, gl.expand_dims(x, 1), X3)
        Y = gl.sum(gl.convert_layout(X3 * C3, Q3), 2)
        Y = gl.convert_layout(Y, L2) + Dv * U
        Y = Y * (Z / (1.0 + gl.exp(-Z)))
        gl.store(out_ptr + offs + k, Y.to(out_ptr.dtype.element_ty))
        if not PRE:
            DTr_n = gl.load(delta_ptr + offs + kn)
            U_n = gl.load(u_ptr + offs + kn)
            Z_n = gl.load(z_ptr + offs + kn)
            B_n = gl.load(Bp + kn)
            C_n = gl.load(Cp + kn)


def run(u, delta, A, B, C, D, z, bias, DR=4, T=8, W=1, PRE=True, maxnreg=None):
    batch, dim, L = u.shape
    N = A.shape[1]
    out = torch.empty_like(u)
    BD = DR * (32 // N) * W
    fwd_kernel[(batch * dim // BD,)](u, delta, A, B, C, D, z, bias, out, dim, L, B.stride(0), C.stride(0),
                                     DR=DR, T=T, N=N, W=W, PRE=PRE, num_warps=W, **({} if maxnreg is None else {'maxnreg': maxnreg}))
    return out

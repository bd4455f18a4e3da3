r"""The Linear State Space Layer (LSSL) and the deep LSSL [gu2021lssl].

:class:`LSSL` maps ``u (batch, L, H)`` to ``y (batch, L, H)``: each of the H
channels is an independent single-input, single-output SSM

    x'(t) = A x(t) + B u(t),    y(t) = C x(t) + D u(t),    x ∈ R^N,

with its own learned A (initialised to a HiPPO matrix, :func:`ssmlib.hippo.transition`),
B (the HiPPO B), C (random), D and step Δ = exp(log Δ), log Δ learned and
initialised uniformly in [log dt_min, log dt_max]. The layer discretizes with
the bilinear rule, Ā = (I − ΔA/2)⁻¹(I + ΔA/2), B̄ = (I − ΔA/2)⁻¹ΔB, and has two
equivalent modes:

* convolution (``forward``, training): the kernel K = (CB̄, CĀB̄, …) of length L
  (:func:`ssmlib.krylov.krylov`, by repeated squaring by default), then
  y = K * u + D u by FFT (:func:`ssmlib.convolution.causal_conv`);
* recurrence (``step``, generation): x_k = Ā x_{k−1} + B̄ u_k, y_k = C x_k + D u_k,
  one step at a time from a state ``(batch, H, N)``.

:class:`LSSLBlock` is the deep layer of the paper: LSSL → GELU → linear mixing
of the channels → residual → LayerNorm. :class:`DeepLSSL` stacks blocks between
a linear encoder and a linear decoder of the last position.

The task, :class:`PatternMemoryTask`, is made in code: a noisy sequence holds
one of a few fixed waveforms somewhere in its first quarter, then only noise;
the class must be read at the last step, so the model has to remember the
pattern for at least L/2 steps.

``python -m ssmlib.layers --out book/results`` trains a deep LSSL on it on a
GPU (:data:`FULL`) and writes ``lssl_pattern.json``; ``--tiny`` runs the CPU-sized
configuration (:data:`TINY`, seconds).
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from . import checks, hippo
from .convolution import causal_conv
from .discretize import discretize
from .krylov import krylov
from .training import command_line, fit

__all__ = ["LSSL", "LSSLBlock", "DeepLSSL", "PatternMemoryTask", "count_parameters", "train",
           "FULL", "TINY", "run", "main"]

#: HiPPO measures the layer can start from (time-invariant LegS: A without the 1/t).
INITS = ("legt", "legs", "lagt")


def _positive_float(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(v).__name__}")
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be positive and finite, got {v}")
    return float(v)


class LSSL(nn.Module):
    r"""H independent SISO state space models with HiPPO initialisation (module docstring).

    Args:
        d_model: channels H.
        d_state: state size N per channel.
        measure: HiPPO initialisation of A and B: ``"legt"`` (window θ = 1),
            ``"legs"`` or ``"lagt"`` (θ = 1).
        dt_min, dt_max: range of the initial steps Δ (log-uniform).
        learn_A: train A and B (else they stay at the HiPPO matrices; Δ, C, D
            are always trained).
        kernel: how the convolution kernel is computed (``"squaring"`` or
            ``"naive"``; both differentiable, see :mod:`ssmlib.krylov`).

    ``forward(u)``: ``u (batch, L, H)`` → ``y (batch, L, H)`` (convolution mode).
    ``step(u_k, x)``: ``u_k (batch, H)``, ``x (batch, H, N)`` → ``(y_k, x_new)``.
    """

    def __init__(self, d_model: int, d_state: int = 64, *, measure: str = "legt",
                 dt_min: float = 1e-3, dt_max: float = 1e-1, learn_A: bool = True,
                 kernel: str = "squaring"):
        super().__init__()
        checks.positive_int("d_model", d_model)
        checks.positive_int("d_state", d_state)
        if measure not in INITS:
            raise ValueError(f"measure must be one of {INITS}, got {measure!r}")
        dt_min, dt_max = _positive_float("dt_min", dt_min), _positive_float("dt_max", dt_max)
        if dt_min > dt_max:
            raise ValueError(f"dt_min must be <= dt_max, got {dt_min} > {dt_max}")
        if kernel not in ("squaring", "naive"):
            raise ValueError(f"kernel must be 'squaring' or 'naive', got {kernel!r}")
        if not isinstance(learn_A, bool):
            raise TypeError(f"learn_A must be a bool, got {type(learn_A).__name__}")
        H, N = d_model, d_state
        self.d_model, self.d_state, self.measure, self.kernel = H, N, measure, kernel
        A, B = hippo.transition(measure, N)
        A = A.float().expand(H, N, N).clone()
        B = B.float().expand(H, N).clone()
        if learn_A:
            self.A, self.B = nn.Parameter(A), nn.Parameter(B)
        else:
            self.register_buffer("A", A)
            self.register_buffer("B", B)
        self.C = nn.Parameter(torch.randn(H, N) / math.sqrt(N))
        self.D = nn.Parameter(torch.randn(H))
        u = torch.rand(H)
        self.log_dt = nn.Parameter(math.log(dt_min) + u * (math.log(dt_max) - math.log(dt_min)))

    def discrete(self):
        """``(Ā (H, N, N), B̄ (H, N))``: the bilinear discretization with Δ = exp(log_dt)."""
        return discretize(self.A, self.B, self.log_dt.exp(), "bilinear")

    def kernel_K(self, L: int):
        """The convolution kernel ``K (H, L)``, K_k = C Ā^k B̄."""
        Ab, Bb = self.discrete()
        return krylov(Ab, Bb, self.C, L, method=self.kernel)

    def _check_u(self, u, ndim, what):
        checks.tensor("u", u, ndim=ndim)
        if not u.is_floating_point():
            raise TypeError(f"u must be a float tensor, got {u.dtype}")
        if u.dtype != self.C.dtype:
            raise TypeError(f"u has dtype {u.dtype} but the layer has {self.C.dtype}")
        if u.shape[-1] != self.d_model:
            raise ValueError(f"u must have shape {what} with H = {self.d_model}, got {tuple(u.shape)}")

    def forward(self, u):
        """Convolution mode: ``u (batch, L, H)`` → ``y (batch, L, H)``."""
        self._check_u(u, 3, "(batch, L, H)")
        L = u.shape[1]
        if L == 0:
            return u.clone()
        v = u.transpose(1, 2)                                   # (batch, H, L)
        y = causal_conv(v, self.kernel_K(L), self.D)
        return y.transpose(1, 2)

    def default_state(self, batch: int):
        """The zero state ``(batch, H, N)``."""
        checks.positive_int("batch", batch)
        return self.C.new_zeros(batch, self.d_model, self.d_state)

    def step(self, u_k, x=None, discrete=None):
        """Recurrent mode, one step: ``u_k (batch, H)``, state ``x (batch, H, N)`` (zeros if None)
        → ``(y_k (batch, H), x_k)``. Pass ``discrete=self.discrete()`` to reuse Ā, B̄ across steps."""
        self._check_u(u_k, 2, "(batch, H)")
        if x is None:
            x = self.default_state(u_k.shape[0])
        checks.tensor("x", x, ndim=3, dtypes=(u_k.dtype,))
        checks.shape("x", x, (u_k.shape[0], self.d_model, self.d_state))
        Ab, Bb = self.discrete() if discrete is None else discrete
        x = (Ab @ x.unsqueeze(-1)).squeeze(-1) + Bb * u_k.unsqueeze(-1)   # x_k = Ā x_{k−1} + B̄ u_k
        y = (self.C * x).sum(-1) + self.D * u_k                              # y_k = C x_k + D u_k
        return y, x

    def forward_recurrent(self, u):
        """Recurrent mode over a whole sequence (a loop of :meth:`step`): same shapes as ``forward``."""
        self._check_u(u, 3, "(batch, L, H)")
        disc = self.discrete()
        x, ys = None, []
        for k in range(u.shape[1]):
            y, x = self.step(u[:, k], x, disc)
            ys.append(y)
        return torch.stack(ys, dim=1) if ys else u.clone()


class LSSLBlock(nn.Module):
    """LSSL → GELU → linear channel mixing → dropout → residual → LayerNorm (post-norm).

    ``forward(x)``: ``(batch, L, H)`` → ``(batch, L, H)``; ``step(x_k, state)`` runs it recurrently.
    """

    def __init__(self, d_model: int, d_state: int = 64, dropout: float = 0.0, **lssl_kwargs):
        super().__init__()
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise TypeError(f"dropout must be a float, got {type(dropout).__name__}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.lssl = LSSL(d_model, d_state, **lssl_kwargs)
        self.mix = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x):
        return self.norm(x + self.drop(self.mix(nn.functional.gelu(self.lssl(x)))))

    def step(self, x_k, state=None, discrete=None):
        y, state = self.lssl.step(x_k, state, discrete)
        return self.norm(x_k + self.drop(self.mix(nn.functional.gelu(y)))), state


class DeepLSSL(nn.Module):
    """Linear encoder → ``n_layers`` :class:`LSSLBlock` → linear decoder of the last position.

    ``forward(x)``: ``x (batch, L, d_input)`` → ``(batch, d_output)``.
    """

    def __init__(self, d_input: int, d_model: int, d_state: int, n_layers: int, d_output: int,
                 dropout: float = 0.0, **lssl_kwargs):
        super().__init__()
        for name, v in (("d_input", d_input), ("n_layers", n_layers), ("d_output", d_output)):
            checks.positive_int(name, v)
        self.d_input = d_input
        self.encoder = nn.Linear(d_input, d_model)
        self.blocks = nn.ModuleList(LSSLBlock(d_model, d_state, dropout, **lssl_kwargs)
                                    for _ in range(n_layers))
        self.decoder = nn.Linear(d_model, d_output)

    def forward(self, x):
        checks.tensor("x", x, ndim=3)
        if x.shape[-1] != self.d_input:
            raise ValueError(f"x must have shape (batch, L, {self.d_input}), got {tuple(x.shape)}")
        if x.shape[1] < 1:
            raise ValueError(f"x must have length >= 1, got {tuple(x.shape)}")
        h = self.encoder(x)
        for block in self.blocks:
            h = block(h)
        return self.decoder(h[:, -1])

    @torch.no_grad()
    def forward_recurrent(self, x):
        """The same prediction, one step at a time through every block (generation mode)."""
        h_in = self.encoder(x)
        discs = [b.lssl.discrete() for b in self.blocks]
        states = [None] * len(self.blocks)
        for k in range(x.shape[1]):
            h = h_in[:, k]
            for i, block in enumerate(self.blocks):
                h, states[i] = block.step(h, states[i], discs[i])
        return self.decoder(h)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------------------
# the task
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PatternMemoryTask:
    """Classify a pattern seen long ago: a task that needs memory, made in code.

    Each of the ``n_classes`` classes has a fixed waveform of ``pattern`` steps
    (random Fourier modes of 1 … 4 cycles, unit RMS, drawn once from the seed
    ``templates_seed``). A sample ``x (batch, L, 1)`` is white noise of standard
    deviation ``noise`` with its class's waveform added at a random start in the
    first quarter; after it, only noise. The label ``y (batch,)`` is the class.
    A model that answers at the last step must remember the pattern for at
    least L/2 steps. Chance accuracy is 1/n_classes.
    """

    length: int = 1024
    n_classes: int = 8
    pattern: int = 128
    noise: float = 0.5
    templates_seed: int = 1234

    def __post_init__(self):
        checks.positive_int("length", self.length)
        checks.positive_int("pattern", self.pattern)
        checks.positive_int("n_classes", self.n_classes)
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")
        if self.pattern > self.length // 4:
            raise ValueError(f"pattern must be <= length // 4 = {self.length // 4}, got {self.pattern}")
        if isinstance(self.noise, bool) or not isinstance(self.noise, (int, float)) or not self.noise >= 0:
            raise ValueError(f"noise must be a float >= 0, got {self.noise!r}")

    def templates(self) -> torch.Tensor:
        """``(n_classes, pattern)`` float64 waveforms, the same for every call."""
        g = torch.Generator().manual_seed(self.templates_seed)
        P = self.pattern
        spec = torch.zeros(self.n_classes, P // 2 + 1, dtype=torch.complex128)
        m = min(4, P // 2)
        z = torch.randn(self.n_classes, m, 2, generator=g, dtype=torch.float64)
        spec[:, 1:m + 1] = torch.complex(z[..., 0], z[..., 1])
        w = torch.fft.irfft(spec, n=P)
        return w / w.pow(2).mean(-1, keepdim=True).sqrt()

    def sample(self, batch: int, generator: torch.Generator | None = None, device="cpu",
               dtype=torch.float32):
        """``(x (batch, L, 1), y (batch,) int64)``, drawn on the CPU from ``generator``."""
        checks.positive_int("batch", batch)
        L, P = self.length, self.pattern
        y = torch.randint(0, self.n_classes, (batch,), generator=generator)
        start = torch.randint(0, L // 4 - P + 1, (batch,), generator=generator)
        x = self.noise * torch.randn(batch, L, generator=generator, dtype=torch.float64)
        idx = start[:, None] + torch.arange(P)[None]                      # (batch, P)
        x.scatter_add_(1, idx, self.templates()[y])
        return x[..., None].to(device=device, dtype=dtype), y.to(device)

    def loss(self, logits, y):
        return nn.functional.cross_entropy(logits, y)

    def accuracy(self, logits, y) -> float:
        """Fraction of sequences classified correctly."""
        return (logits.argmax(-1) == y).float().mean().item()

    def metrics(self, logits, y) -> dict:
        """Held-out scores: ``{"loss"`` (cross-entropy), ``"acc"}``."""
        return {"loss": self.loss(logits, y).item(), "acc": self.accuracy(logits, y)}


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------

def train(model: nn.Module, task: PatternMemoryTask, steps: int, device="cpu", *, batch_size: int = 64,
          lr: float = 3e-3, lr_dt: float | None = None, seed: int = 0, eval_size: int = 256,
          eval_every: int = 25, time_limit_s: float | None = None, progress: bool | str = False,
          desc: str = "deep LSSL") -> dict:
    """Train with AdamW (cross-entropy, gradient norm clipped to 1, cosine learning rate).

    ``lr_dt`` is the learning rate of the SSM parameters (A, B, log Δ; default
    ``lr``), without weight decay. Returns the learning curve of
    :func:`ssmlib.training.fit`: ``{"step", "loss", "eval_step", "eval_loss",
    "eval_acc", "final_loss", "final_acc", "steps_done", "seconds",
    "stopped_early"}``. ``progress``: see :func:`ssmlib.training.fit`.
    """
    if not isinstance(task, PatternMemoryTask):
        raise TypeError(f"task must be a PatternMemoryTask, got {type(task).__name__}")
    lr = _positive_float("lr", lr)
    lr_dt = lr if lr_dt is None else _positive_float("lr_dt", lr_dt)
    model.to(device)
    ssm = [p for n, p in model.named_parameters() if n.split(".")[-1] in ("A", "B", "log_dt")]
    ids = {id(p) for p in ssm}
    rest = [p for p in model.parameters() if id(p) not in ids]
    opt = torch.optim.AdamW([{"params": rest, "lr": lr, "weight_decay": 0.01},
                             {"params": ssm, "lr": lr_dt, "weight_decay": 0.0}])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    return fit(model, task, opt, steps, device, sched=sched, batch_size=batch_size, seed=seed,
               eval_size=eval_size, eval_every=eval_every, time_limit_s=time_limit_s, progress=progress,
               desc=desc)


#: The GPU run the book shows (at most ~5 min on an H200: ``time_limit_s``).
FULL = {"task": {"length": 1024, "n_classes": 8, "pattern": 128, "noise": 0.5},
        "d_model": 64, "d_state": 64, "n_layers": 2, "measure": "legt", "dt_min": 1e-3, "dt_max": 1e-1,
        "steps": 3000, "batch_size": 64, "lr": 1e-2, "lr_dt": 5e-3, "eval_size": 1024, "eval_every": 100,
        "time_limit_s": 300.0}
#: The CPU configuration the notebook runs (seconds).
TINY = {"task": {"length": 64, "n_classes": 4, "pattern": 16, "noise": 0.5},
        "d_model": 16, "d_state": 16, "n_layers": 2, "measure": "legt", "dt_min": 1e-2, "dt_max": 1e-1,
        "steps": 300, "batch_size": 32, "lr": 1e-2, "lr_dt": 5e-3, "eval_size": 256, "eval_every": 25,
        "time_limit_s": None}


def run(config: dict, device="cpu", seed: int = 0, progress: bool | str = False) -> dict:
    """Train a :class:`DeepLSSL` on the :class:`PatternMemoryTask` of ``config``; return the JSON the book reads."""
    from .bench import environment

    task = PatternMemoryTask(**config["task"])
    torch.manual_seed(seed)
    model = DeepLSSL(1, config["d_model"], config["d_state"], config["n_layers"], task.n_classes,
                     measure=config["measure"], dt_min=config["dt_min"], dt_max=config["dt_max"])
    kw = {k: config[k] for k in ("batch_size", "lr", "lr_dt", "eval_size", "eval_every", "time_limit_s")}
    curve = train(model, task, config["steps"], device, seed=seed, progress=progress, **kw)
    return {"benchmark": "lssl_pattern", **environment(), "config": config, "seed": seed,
            "parameters": count_parameters(model), "chance_acc": 1 / task.n_classes,
            "chance_loss": math.log(task.n_classes), **curve}


def _summary(res: dict) -> list[str]:
    return [f"deep LSSL: {res['parameters']} parameters, {res['steps_done']} steps in {res['seconds']:.0f} s, "
            f"final loss {res['final_loss']:.4f}, accuracy {res['final_acc']:.1%} (chance {res['chance_acc']:.1%})"]


def main(argv=None):
    """``python -m ssmlib.layers [--tiny] [--out DIR]``: write ``lssl_pattern.json``."""
    return command_line(argv, prog="python -m ssmlib.layers",
                        description="Train a deep LSSL on the pattern-memory task; write lssl_pattern.json.",
                        run=run, full=FULL, tiny=TINY, filename="lssl_pattern", summary=_summary)


if __name__ == "__main__":
    main()

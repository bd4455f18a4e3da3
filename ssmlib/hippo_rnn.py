r"""HiPPO-RNN: a gated RNN with a fixed HiPPO-LegS memory, a GRU baseline and a recall task.

The HiPPO paper (Gu et al., 2020) plugs its memory into an ordinary recurrent cell.
At step :math:`k` (``k = 0 … L-1``), with input :math:`x_k`:

.. math::

    h_k = \mathrm{GRU}\big([x_k,\ c_{k-1}],\ h_{k-1}\big), \qquad
    f_k = w^\top h_k + b, \qquad
    c_k = \bar A_k\, c_{k-1} + \bar B_k\, f_k ,

with :math:`h_{-1} = 0`, :math:`c_{-1} = 0`. The cell's weights are trained; the memory
:math:`c \in \mathbb{R}^N` has no trained parameters: :math:`\bar A_k, \bar B_k` are the bilinear
discretization of HiPPO-LegS, :math:`c'(t) = \frac1t (A c + B f)` (:func:`legs_memory`; the
step size cancels, only :math:`A/(k+1)` enters), so :math:`c_k` is exactly
``ssmlib.hippo.project_ref(f, "legs", N, dt)`` of the scalar stream :math:`f` the cell
writes: the coefficients of the best degree-``N-1`` polynomial fit of the whole history
:math:`f_0 … f_k`. The only learned part of the memory path is :math:`w, b`. The prediction
is read from :math:`[h_{L-1}, c_{L-1}]` by a linear layer: the readout sees the memory as well
as the hidden state.

The baseline is a plain ``torch.nn.GRU`` whose hidden size is chosen so that it has about
as many parameters (:func:`matched_gru_hidden`).

The task, :class:`RecallTask`, asks for the *past*: the input is a random band-limited
signal of length ``L``; at the end the model must output its values at ``K`` evenly spaced
earlier steps (``L/2K, 3L/2K, …``). A fixed-size RNN must learn to hold ``K`` numbers for up
to ``L`` steps while new input keeps arriving; a HiPPO memory holds a polynomial
approximation of the whole history by construction.

``python -m ssmlib.hippo_rnn --out book/results`` trains both models on the full task on a GPU
(:data:`FULL`: each model stops after its steps or ``time_limit_s`` = 130 s, whichever comes
first, so the run takes at most about 5 min) and writes ``hippo_rnn.json``; ``--tiny`` runs
the CPU-sized configuration (:data:`TINY`) in seconds.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from . import checks
from .hippo import discrete_transition
from .training import command_line, fit

__all__ = ["legs_memory", "HiPPORNN", "GRUBaseline", "matched_gru_hidden", "count_parameters",
           "RecallTask", "train", "FULL", "TINY", "run", "main"]


# --------------------------------------------------------------------------------------
# the fixed memory
# --------------------------------------------------------------------------------------

def legs_memory(N: int, L: int, dtype=torch.float64, device=None):
    r"""The fixed HiPPO-LegS memory update for steps ``k = 1 … L``.

    LegS, :math:`c' = \frac1t(Ac + Bf)` with ``(A, B) = ssmlib.hippo.transition("legs", N)``,
    discretized with the bilinear rule and :math:`A/t` frozen at :math:`t = k\Delta`, so only
    :math:`A/k` enters (no step size):

    .. math:: \bar A_k = (I - \tfrac{A}{2k})^{-1}(I + \tfrac{A}{2k}), \qquad
              \bar B_k = (I - \tfrac{A}{2k})^{-1} \tfrac{B}{k},

    except the first step, which starts the singular ODE regularly (:math:`\bar A_1 = 0`,
    :math:`\bar B_1 = e_0`). These are the matrices of ``ssmlib.hippo.project_ref``
    (``ssmlib.hippo.discrete_transition``), so the memory *is* the LegS projection.

    Returns ``(Ab, Bb)`` with shapes ``(L, N, N)`` and ``(L, N)``; index ``k-1`` is step ``k``.
    """
    checks.positive_int("N", N)
    checks.positive_int("L", L)
    return discrete_transition("legs", N, 1.0, L, dtype=dtype, device=device)


def _check_input(x: torch.Tensor, d_input: int) -> None:
    checks.tensor("x", x, ndim=3)
    if not x.is_floating_point():
        raise TypeError(f"x must be a float tensor, got {x.dtype}")
    if x.shape[-1] != d_input:
        raise ValueError(f"x must have shape (batch, L, {d_input}), got {tuple(x.shape)}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must have a non-empty batch and length, got {tuple(x.shape)}")


# --------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------

class HiPPORNN(nn.Module):
    r"""GRU cell + HiPPO-LegS memory of a learned scalar projection of the hidden state.

    Args:
        d_input: features per step of the input ``x``.
        d_hidden: size of the GRU hidden state ``h``.
        N: size of the HiPPO-LegS memory ``c`` (polynomial degree ``N-1``).
        d_output: size of the prediction read from ``[h_{L-1}, c_{L-1}]``.

    ``forward(x)`` takes ``x`` of shape ``(batch, L, d_input)`` and returns the prediction
    ``(batch, d_output)``; with ``return_memory=True`` also ``f (batch, L)`` (what the cell
    wrote) and ``c (batch, L, N)`` (the memory after every step).
    The LegS matrices for length ``L`` are built on first use and cached.
    """

    def __init__(self, d_input: int, d_hidden: int, N: int, d_output: int = 1):
        super().__init__()
        for name, v in (("d_input", d_input), ("d_hidden", d_hidden), ("N", N), ("d_output", d_output)):
            checks.positive_int(name, v)
        self.d_input, self.d_hidden, self.N, self.d_output = d_input, d_hidden, N, d_output
        self.cell = nn.GRUCell(d_input + N, d_hidden)
        self.to_f = nn.Linear(d_hidden, 1)                   # f_k = w·h_k + b
        self.readout = nn.Linear(d_hidden + N, d_output)
        self._legs = {}                                      # (L, dtype, device) -> (Ab, Bb)

    def memory_matrices(self, L: int, dtype, device):
        """``(Ab (L, N, N), Bb (L, N))`` of :func:`legs_memory`, cached per length."""
        key = (L, dtype, str(device))
        if key not in self._legs:
            self._legs[key] = legs_memory(self.N, L, dtype=dtype, device=device)
        return self._legs[key]

    def forward(self, x: torch.Tensor, return_memory: bool = False):
        _check_input(x, self.d_input)
        batch, L, _ = x.shape
        if x.dtype != self.readout.weight.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the model has {self.readout.weight.dtype}")
        Ab, Bb = self.memory_matrices(L, x.dtype, x.device)
        AbT = Ab.transpose(-1, -2)                           # c @ Ā_kᵀ == (Ā_k c) for a row vector c
        h = x.new_zeros(batch, self.d_hidden)
        c = x.new_zeros(batch, self.N)
        fs, cs = [], []
        for k in range(L):
            h = self.cell(torch.cat([x[:, k], c], dim=-1), h)        # h_k from [x_k, c_{k-1}]
            f = self.to_f(h)                                          # (batch, 1)
            c = torch.addcmul(c @ AbT[k], f, Bb[k])                  # c_k = Ā_k c_{k-1} + B̄_k f_k
            if return_memory:
                fs.append(f[:, 0])
                cs.append(c)
        out = self.readout(torch.cat([h, c], dim=-1))
        if return_memory:
            return out, torch.stack(fs, dim=1), torch.stack(cs, dim=1)
        return out


class GRUBaseline(nn.Module):
    """A one-layer ``torch.nn.GRU`` and a linear readout of its last hidden state.

    ``forward(x)``: ``x (batch, L, d_input)`` → ``(batch, d_output)``.
    """

    def __init__(self, d_input: int, d_hidden: int, d_output: int = 1):
        super().__init__()
        for name, v in (("d_input", d_input), ("d_hidden", d_hidden), ("d_output", d_output)):
            checks.positive_int(name, v)
        self.d_input, self.d_hidden, self.d_output = d_input, d_hidden, d_output
        self.gru = nn.GRU(d_input, d_hidden, batch_first=True)
        self.readout = nn.Linear(d_hidden, d_output)

    def forward(self, x: torch.Tensor):
        _check_input(x, self.d_input)
        if x.dtype != self.readout.weight.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the model has {self.readout.weight.dtype}")
        out, _ = self.gru(x)
        return self.readout(out[:, -1])


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def matched_gru_hidden(d_input: int, d_hidden: int, N: int, d_output: int = 1) -> int:
    """Hidden size of the :class:`GRUBaseline` whose parameter count is closest to a
    :class:`HiPPORNN` with these sizes."""
    def hippo(H):
        return 3 * H * (d_input + N) + 3 * H * H + 6 * H + (H + 1) + (H + N + 1) * d_output

    def gru(H):
        return 3 * H * d_input + 3 * H * H + 6 * H + (H + 1) * d_output

    target = hippo(d_hidden)
    return min(range(1, 4 * (d_hidden + N) + 1), key=lambda H: abs(gru(H) - target))


# --------------------------------------------------------------------------------------
# the task
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RecallTask:
    """Recall ``K`` past values of a band-limited random signal.

    Input ``x (batch, L, 1)``: a random signal made of the Fourier modes ``1 … cutoff``
    (cycles per sequence), normalized to unit RMS per sequence. Target ``y (batch, K)``:
    ``x`` at steps ``positions`` = ``round((2j+1) L / 2K)``, ``j = 0 … K-1``.
    A recalled value counts as correct when it is within ``tol`` of the target.
    """

    length: int = 1000
    K: int = 4
    cutoff: int = 6
    tol: float = 0.2

    def __post_init__(self):
        checks.positive_int("length", self.length)
        checks.positive_int("K", self.K)
        checks.positive_int("cutoff", self.cutoff)
        if self.K > self.length:
            raise ValueError(f"K = {self.K} recalled values do not fit in length {self.length}")
        if 2 * self.cutoff >= self.length:
            raise ValueError(f"cutoff = {self.cutoff} cycles needs length > {2 * self.cutoff}")
        if not self.tol > 0:
            raise ValueError(f"tol must be positive, got {self.tol}")

    @property
    def positions(self) -> list[int]:
        return [min(self.length - 1, round((2 * j + 1) * self.length / (2 * self.K))) for j in range(self.K)]

    def sample(self, batch: int, generator: torch.Generator | None = None, device="cpu",
               dtype=torch.float32):
        """``(x (batch, L, 1), y (batch, K))``; drawn on the CPU from ``generator``."""
        checks.positive_int("batch", batch)
        L = self.length
        spec = torch.zeros(batch, L // 2 + 1, dtype=torch.complex128)
        re_im = torch.randn(batch, self.cutoff, 2, generator=generator, dtype=torch.float64)
        spec[:, 1:self.cutoff + 1] = torch.complex(re_im[..., 0], re_im[..., 1])
        x = torch.fft.irfft(spec, n=L)
        x = x / x.pow(2).mean(-1, keepdim=True).sqrt()
        y = x[:, self.positions]
        return x[..., None].to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)

    def accuracy(self, pred: torch.Tensor, y: torch.Tensor) -> float:
        """Fraction of recalled values within ``tol`` of the target."""
        return ((pred - y).abs() < self.tol).float().mean().item()

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training objective: mean squared error."""
        return torch.mean((pred - y) ** 2)

    def metrics(self, pred: torch.Tensor, y: torch.Tensor) -> dict:
        """Held-out scores: ``{"mse", "acc"}``."""
        return {"mse": self.loss(pred, y).item(), "acc": self.accuracy(pred, y)}


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------

def train(model: nn.Module, task: RecallTask, steps: int, device="cpu", *, batch_size: int = 64,
          lr: float = 3e-3, seed: int = 0, eval_size: int = 256, eval_every: int = 25,
          time_limit_s: float | None = None, progress: bool | str = False, desc: str | None = None) -> dict:
    """Train ``model`` on ``task`` with Adam (MSE loss, gradient norm clipped to 1).

    Returns the learning curve of :func:`ssmlib.training.fit`: ``{"step",
    "loss", "eval_step", "eval_mse", "eval_acc", "final_mse", "final_acc",
    "steps_done", "seconds", "stopped_early"}``. ``time_limit_s`` stops
    training early (then evaluates); ``progress``: see :func:`ssmlib.training.fit`.
    """
    if not isinstance(task, RecallTask):
        raise TypeError(f"task must be a RecallTask, got {type(task).__name__}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    return fit(model, task, opt, steps, device, batch_size=batch_size, seed=seed, eval_size=eval_size,
               eval_every=eval_every, time_limit_s=time_limit_s, progress=progress,
               desc=desc or type(model).__name__)


# --------------------------------------------------------------------------------------
# the experiment: both models on one task
# --------------------------------------------------------------------------------------

#: The GPU run the book shows (about 5 min on an H200; see ``time_limit_s``).
FULL = {"task": {"length": 1000, "K": 4, "cutoff": 6, "tol": 0.2},
        "d_hidden": 64, "N": 32, "steps": 600, "batch_size": 128, "lr": 3e-3,
        "eval_size": 512, "eval_every": 25, "time_limit_s": 130.0}
#: The CPU configuration the notebook runs (seconds).
TINY = {"task": {"length": 100, "K": 4, "cutoff": 4, "tol": 0.2},
        "d_hidden": 32, "N": 16, "steps": 150, "batch_size": 32, "lr": 1e-2,
        "eval_size": 256, "eval_every": 10, "time_limit_s": None}


def run(config: dict, device="cpu", seed: int = 0, progress: bool | str = False) -> dict:
    """Train a :class:`HiPPORNN` and a parameter-matched :class:`GRUBaseline` on the same
    :class:`RecallTask` with the same batches; return the result (the JSON the book reads)."""
    from .bench import environment

    task = RecallTask(**config["task"])
    d_in, K = 1, task.K
    H, N = config["d_hidden"], config["N"]
    H_gru = matched_gru_hidden(d_in, H, N, K)
    kw = {k: config[k] for k in ("batch_size", "lr", "eval_size", "eval_every", "time_limit_s")}
    models = {}
    torch.manual_seed(seed)
    models["hippo_rnn"] = HiPPORNN(d_in, H, N, K)
    torch.manual_seed(seed)
    models["gru"] = GRUBaseline(d_in, H_gru, K)
    out = {"benchmark": "hippo_rnn", **environment(), "config": config, "seed": seed,
           "positions": task.positions, "models": {}}
    # chance: always predicting 0 (the signal's mean)
    x_ev, y_ev = task.sample(config["eval_size"], torch.Generator().manual_seed(seed + 10_000))
    out["zero_predictor"] = {"mse": torch.mean(y_ev ** 2).item(),
                             "acc": task.accuracy(torch.zeros_like(y_ev), y_ev)}
    for name, model in models.items():
        curve = train(model, task, config["steps"], device, seed=seed, progress=progress,
                      desc=name, **kw)
        out["models"][name] = {"parameters": count_parameters(model),
                               "d_hidden": model.d_hidden, **curve}
    return out


def _summary(res: dict) -> list[str]:
    lines = [f"{k:>10}: {m['parameters']} parameters, {m['steps_done']} steps in {m['seconds']:.0f} s, "
             f"final MSE {m['final_mse']:.4f}, accuracy {m['final_acc']:.1%}" for k, m in res["models"].items()]
    z = res["zero_predictor"]
    return lines + [f"zero predictor: MSE {z['mse']:.4f}, accuracy {z['acc']:.1%}"]


def main(argv=None):
    """``python -m ssmlib.hippo_rnn [--tiny] [--out DIR]``: write ``hippo_rnn.json``."""
    return command_line(argv, prog="python -m ssmlib.hippo_rnn",
                        description="Train HiPPO-RNN and a GRU on the recall task; write hippo_rnn.json.",
                        run=run, full=FULL, tiny=TINY, filename="hippo_rnn", summary=_summary)


if __name__ == "__main__":
    main()

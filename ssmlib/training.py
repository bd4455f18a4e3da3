"""The training loop the chapters' experiments share.

A *task* makes its own data and knows how to score a prediction:
``task.sample(batch, generator, device, dtype) -> (x, y)``, the training
objective ``task.loss(pred, y)`` (a scalar tensor), and held-out
``task.metrics(pred, y) -> {"name": float, ...}``. :func:`fit` samples a
fresh batch each step, clips the gradient norm to 1, evaluates on one fixed
held-out batch every ``eval_every`` steps and at the end, and can stop at a
time limit (the GPU runs the book shows have one). :func:`command_line` is
the shared ``--tiny`` / ``--out`` command line of the training modules.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

from . import checks


@torch.no_grad()
def evaluate(model: nn.Module, task, x: torch.Tensor, y: torch.Tensor, chunk: int = 256) -> dict:
    """``task.metrics`` of ``model`` on the held-out ``x, y`` (eval mode, in chunks of ``chunk``)."""
    was = model.training
    model.eval()
    pred = torch.cat([model(x[i:i + chunk]) for i in range(0, len(x), chunk)])
    model.train(was)
    return task.metrics(pred, y)


def fit(model: nn.Module, task, opt: torch.optim.Optimizer, steps: int, device="cpu", *,
        sched=None, batch_size: int = 64, seed: int = 0, eval_size: int = 256, eval_every: int = 25,
        time_limit_s: float | None = None, progress: bool | str = False, desc: str = "") -> dict:
    """Train ``model`` on ``task`` with ``opt`` (and the scheduler ``sched``, stepped every step).

    Returns the learning curve: ``{"step": [1, 2, …], "loss": [training loss
    per step], "eval_step": [...], "eval_<metric>": [...] for each of
    task.metrics, "final_<metric>", "steps_done", "seconds", "stopped_early"}``.
    ``progress`` shows a tqdm bar, or prints a line every 5% where tqdm is
    missing or ``progress="lines"`` (logs of runs without a terminal).
    """
    checks.positive_int("steps", steps)
    checks.positive_int("batch_size", batch_size)
    checks.positive_int("eval_every", eval_every)
    checks.positive_int("eval_size", eval_size)
    dtype = next(model.parameters()).dtype
    gen = torch.Generator().manual_seed(seed)
    x_eval, y_eval = task.sample(eval_size, torch.Generator().manual_seed(seed + 10_000), device, dtype)
    curve = {"step": [], "loss": [], "eval_step": []}

    def record_eval(step):
        curve["eval_step"].append(step)
        for name, v in evaluate(model, task, x_eval, y_eval).items():
            curve.setdefault(f"eval_{name}", []).append(v)

    bar = None
    if progress and progress != "lines":
        try:
            from tqdm.auto import tqdm
            bar = tqdm(total=steps, desc=desc, leave=True)
        except ImportError:                                  # e.g. a bare GPU machine: print instead
            pass
    t0 = time.perf_counter()
    stopped, step = False, 0
    for step in range(1, steps + 1):
        x, y = task.sample(batch_size, gen, device, dtype)
        loss = task.loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if sched is not None:
            sched.step()
        curve["step"].append(step)
        curve["loss"].append(loss.item())
        if step % eval_every == 0:
            record_eval(step)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        elif progress and (step % max(1, steps // 20) == 0 or step == 1):
            print(f"{desc}: step {step}/{steps}, loss {loss.item():.4f}, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
        if time_limit_s is not None and time.perf_counter() - t0 > time_limit_s and step < steps:
            stopped = True
            break
    if bar is not None:
        bar.close()
    if not curve["eval_step"] or curve["eval_step"][-1] != step:
        record_eval(step)
    finals = {f"final_{k[5:]}": v[-1] for k, v in curve.items() if k.startswith("eval_") and k != "eval_step"}
    curve.update(finals, steps_done=step, seconds=time.perf_counter() - t0, stopped_early=stopped)
    return curve


def command_line(argv, *, prog: str, description: str, run, full: dict, tiny: dict, filename: str,
                 summary) -> Path:
    """The command line of a training module (``python -m ssmlib.hippo_rnn`` …).

    ``--tiny`` runs the CPU-sized ``tiny`` configuration, otherwise ``full``
    (which needs a CUDA GPU); ``run(config, device, seed, progress=True)``
    returns the result, written as ``<out>/<filename>.json`` (``_tiny`` added
    for tiny runs); ``summary(result)`` gives the lines printed at the end.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "book" / "results")
    parser.add_argument("--tiny", action="store_true", help="the CPU-sized configuration (seconds)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.tiny and args.device != "cuda":
        parser.error("the full run needs a CUDA GPU (use --tiny on a CPU)")
    res = run(tiny if args.tiny else full, args.device, args.seed,
              progress=True if sys.stdout.isatty() else "lines")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{filename}{'_tiny' if args.tiny else ''}.json"
    path.write_text(json.dumps(res, indent=1) + "\n")
    for line in summary(res):
        print(line)
    print(f"wrote {path}")
    return path

"""Argument checks shared by ssmlib's functions.

Bad input must fail early with a ``TypeError`` or ``ValueError`` that names the
argument, never inside a Triton kernel and never as a silently wrong answer.
"""
from __future__ import annotations

from typing import Iterable

import torch

REAL_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def tensor(name: str, t, *, ndim: int | None = None, min_ndim: int | None = None,
           dtypes: Iterable[torch.dtype] | None = None) -> torch.Tensor:
    """Check that ``t`` is a tensor with the given number of dims and dtype."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dims, got shape {tuple(t.shape)}")
    if min_ndim is not None and t.dim() < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dims, got shape {tuple(t.shape)}")
    if dtypes is not None:
        dtypes = tuple(dtypes)
        if t.dtype not in dtypes:
            names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
            raise TypeError(f"{name} has dtype {t.dtype}; expected one of {names}")
    return t


def shape(name: str, t: torch.Tensor, expected: tuple) -> None:
    """Check ``t.shape == expected``; ``None`` in ``expected`` matches any size."""
    ok = t.dim() == len(expected) and all(e is None or s == e for s, e in zip(t.shape, expected))
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")


def contiguous(name: str, t: torch.Tensor) -> None:
    """Kernels index raw memory: refuse strided views rather than guess."""
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous (call .contiguous() first); "
                         f"got strides {t.stride()} for shape {tuple(t.shape)}")


def same_device(**tensors: torch.Tensor) -> torch.device:
    """Check that all given tensors live on one device and return it."""
    items = [(n, t) for n, t in tensors.items() if t is not None]
    first_name, first = items[0]
    for n, t in items[1:]:
        if t.device != first.device:
            raise ValueError(f"{n} is on {t.device} but {first_name} is on {first.device}")
    return first.device


def positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if v < 1:
        raise ValueError(f"{name} must be >= 1, got {v}")
    return v

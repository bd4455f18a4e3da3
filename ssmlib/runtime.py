"""Where ssmlib's Triton kernels run.

Every kernel in ssmlib is an ordinary ``@triton.jit`` function. On a machine
with a CUDA GPU it is compiled and runs on the GPU. On a machine without one,
ssmlib sets ``TRITON_INTERPRET=1`` *before any kernel is defined*; Triton then
executes the very same kernel source with NumPy on CPU tensors. The numbers
are the kernel's numbers (same blocking, same masks, same float32
accumulation), only slower, so the notebooks and the tests exercise the real
kernel code on a laptop or in CI. Keep shapes small there.

To force the interpreter on a GPU machine (to debug a kernel with ``print``
or ``pdb``), export ``TRITON_INTERPRET=1`` before importing ssmlib.

Importing this module is the first thing ``ssmlib/__init__.py`` does. It also holds
:func:`softplus`, the one Triton helper two kernels share (Mamba's and Mamba-2's Δ).
"""
from __future__ import annotations

import functools
import os
import sys
import warnings

import torch

if not torch.cuda.is_available():
    if "TRITON_INTERPRET" not in os.environ and "triton.language" in sys.modules:
        # Triton decides at import whether its own library functions (tl.zeros, tl.sum, ...) are
        # interpreted; imported first, they are not, and kernels fail inside the interpreter
        raise ImportError("no CUDA GPU here, so ssmlib runs its kernels in Triton's interpreter, which "
                          "must be chosen before triton is imported: import ssmlib before triton, or "
                          "export TRITON_INTERPRET=1")
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402  (must come after the environment is set)
import triton.language as tl  # noqa: E402

#: True when kernels run through Triton's CPU interpreter.
INTERPRET: bool = os.environ.get("TRITON_INTERPRET", "0") == "1"

if INTERPRET:
    # Triton 3.6's interpreter turns 1-element arrays into Python ints, which NumPy 2.x
    # deprecates and NumPy 2.4 forbids.
    import numpy

    if tuple(int(p) for p in numpy.__version__.split(".")[:2]) >= (2, 4):
        raise ImportError(
            f"ssmlib runs Triton kernels through Triton {triton.__version__}'s interpreter on "
            f"this machine (no CUDA GPU), which fails with numpy {numpy.__version__}; "
            f"install numpy<2.4 (constraints.txt pins 2.3.5)")
    warnings.filterwarnings("ignore", message="Conversion of an array with ndim > 0 to a scalar",
                            category=DeprecationWarning)

#: The device ssmlib's kernels run on: ``"cuda"``, or ``"cpu"`` with the interpreter.
DEVICE: str = "cpu" if INTERPRET else "cuda"


def describe() -> str:
    """One line saying where kernels run, for a notebook's first cell."""
    if INTERPRET:
        return (f"Triton {triton.__version__} interpreter on the CPU "
                f"(torch {torch.__version__}); no CUDA GPU found")
    return (f"Triton {triton.__version__} on {torch.cuda.get_device_name()} "
            f"(torch {torch.__version__})")


def check_kernel_device(name: str, t: torch.Tensor) -> None:
    """Raise ``ValueError`` if ``t`` is not on the device the kernels run on."""
    if t.device.type != DEVICE:
        raise ValueError(
            f"{name} is on {t.device}, but ssmlib's kernels run on {DEVICE!r} here "
            f"({describe()}); move it with .to(ssmlib.DEVICE)")


# Host-side integer helpers for the launch code: ``triton.cdiv`` and ``triton.next_power_of_2``
# are Triton functions that cost about 2 µs a call on the host; a call of selective_scan made a dozen.
def cdiv(a: int, b: int) -> int:
    """⌈a / b⌉ for non-negative ints."""
    return -(-a // b)


def next_pow2(n: int) -> int:
    """The smallest power of two ≥ n (1 for n ≤ 1)."""
    return 1 << max(0, n - 1).bit_length()


@functools.lru_cache(maxsize=None)
def sm_count(device: torch.device | str) -> int:
    """Streaming multiprocessors of a CUDA device (cached: the launch heuristics ask at every call)."""
    return torch.cuda.get_device_properties(device).multi_processor_count


#: Compiled kernels by specialization: what :func:`launch` launches without Triton's binding.
_LAUNCHES: dict[tuple, tuple] = {}


def _specialization(a) -> object:
    """What Triton 3.6 may compile a kernel argument into (never coarser than Triton): a tensor's
    dtype and whether its address is a multiple of 16; an int's 32- or 64-bit type, whether it is 1
    and whether it is a multiple of 16; a float's type alone (compiled as float32 whatever its
    value); any other value itself."""
    if isinstance(a, torch.Tensor):
        return a.dtype, a.data_ptr() % 16 == 0
    if isinstance(a, int) and not isinstance(a, bool):
        return -2**31 <= a < 2**31, a >= 2**63, a == 1, a % 16 == 0
    if isinstance(a, float):
        return float
    return type(a), a


def launch(kernel, grid: tuple, args: tuple, kw: dict, redo=None):
    """``kernel[grid](*args, **kw)`` (``args``: the runtime arguments, in order; ``kw``: constexprs
    and launch options), with the compiled kernel kept by its specialization: later launches of
    that specialization skip Triton's argument binding and cache lookup. On the H200's host a launch
    of the selective forward (40 arguments) took 20 µs this way against 27–31 through
    ``kernel[grid]`` (``book/results/logs/gpu_session13_callA.txt``).

    ``redo(compiled)``, called at a specialization's first launch, may return other keyword
    arguments: the kernel then runs again with them, and later launches of that specialization
    launch that compilation. Launch metadata and hooks as ``kernel[grid]`` passes them; what it
    also checks, that the kernel's global constants did not change, is not checked again. In the
    interpreter: ``kernel[grid]`` every time. Every kernel of ssmlib is launched through it."""
    if INTERPRET:
        compiled = kernel[grid](*args, **kw)
        if redo is not None and (kw2 := redo(compiled)) is not None:
            kernel[grid](*args, **kw2)
        return
    device = _driver().get_current_device()
    key = (kernel, device, tuple(map(_specialization, args)), tuple(kw.items()))
    hit = _LAUNCHES.get(key)
    if hit is None:
        compiled = kernel[grid](*args, **kw)
        if redo is not None and (kw2 := redo(compiled)) is not None:
            kw = kw2
            compiled = kernel[grid](*args, **kw)
        # the constexprs after the runtime arguments, in the kernel's order (defaults where not given)
        tail = tuple(kw[p.name] if p.name in kw else p.default for p in kernel.params[len(args):])
        _LAUNCHES[key] = (compiled, tail)
        return
    compiled, tail = hit
    full = (*args, *tail)
    stream = _driver().get_current_stream(device)
    compiled.run(grid[0], grid[1] if len(grid) > 1 else 1, grid[2] if len(grid) > 2 else 1, stream,
                 compiled.function, compiled.packed_metadata, compiled.launch_metadata(grid, stream, *full),
                 triton.knobs.runtime.launch_enter_hook, triton.knobs.runtime.launch_exit_hook, *full)


def _driver():
    """Triton's active GPU driver (current device and stream)."""
    from triton.runtime.driver import driver
    return driver.active


#: Whether compiled kernels may use inline PTX (the interpreter runs none).
_PTX = tl.constexpr(not INTERPRET)


@triton.jit
def softplus(x, FAST: tl.constexpr = False):
    """log(1 + eˣ) = max(x, 0) + log1p(e), e = exp(−|x|): no overflow for any x, and log1p by
    Goldberg's trick, ln(w)·e/(w − 1) with w = 1 + e rounded (exact up to rounding; e itself where
    w is 1, for x ≪ 0).

    ``FAST`` (float32, compiled): log1p(e) is ln 2 · lg2.approx(1 + e) for e ≥ 1/32 (one MUFU.LG2;
    absolute error about 2^-22 on [1, 2], relative under 1e-5) and e − e²/2 + e³/3 − e⁴/4 below
    (relative error under e⁴/5 < 2e-7). libdevice's logf is a 20-instruction polynomial: 0.9 of the
    selective forward's 13.6 instructions an element (compile-only)."""
    e = tl.exp(-tl.abs(x))
    if FAST and _PTX and x.dtype == tl.float32:
        lg = tl.inline_asm_elementwise("lg2.approx.ftz.f32 $0, $1;", "=r,r", [1.0 + e], dtype=tl.float32,
                                       is_pure=True, pack=1)
        series = e * (1.0 + e * (-0.5 + e * (0.3333333333333333 - 0.25 * e)))
        l1p = tl.where(e < 0.03125, series, lg * 0.6931471805599453)
    else:
        w = 1.0 + e
        l1p = tl.where(w == 1.0, e, tl.log(w) * (e / tl.where(w == 1.0, 1.0, w - 1.0)))
    return tl.maximum(x, 0.0) + l1p

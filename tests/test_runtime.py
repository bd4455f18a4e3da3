import os
import subprocess
import sys

import pytest
import torch

import ssmlib   # before triton: without a GPU it selects Triton's interpreter
import triton
import triton.language as tl
from ssmlib import runtime
from ssmlib.runtime import softplus

DEV = ssmlib.DEVICE
GPU = DEV == "cuda"


def test_runtime_matches_the_machine():
    if not torch.cuda.is_available():
        assert ssmlib.INTERPRET, "without CUDA the kernels must run in Triton's interpreter"
    assert ssmlib.DEVICE == ("cpu" if ssmlib.INTERPRET else "cuda")
    assert ("interpreter" in ssmlib.describe()) == ssmlib.INTERPRET


@pytest.mark.skipif(GPU, reason="the interpreter is chosen only without a GPU")
def test_importing_triton_first_is_refused_with_the_fix():
    """Without a GPU, Triton imported before ssmlib has compiled-mode library functions (tl.zeros, ...)
    that fail inside the interpreter at the first kernel: ssmlib refuses to import and says what to do."""
    code = "import triton.language, ssmlib"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode != 0 and "import ssmlib before triton" in res.stderr, res.stderr[-500:]
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "TRITON_INTERPRET": "1"})
    assert res.returncode == 0, res.stderr[-500:]


def test_wrong_device_message_says_where_to_move():
    with pytest.raises(ValueError, match="ssmlib.DEVICE"):
        runtime.check_kernel_device("u", torch.empty(1, device="meta"))


def test_host_integer_helpers_match_triton():
    """runtime.cdiv / next_pow2 replace triton.cdiv / next_power_of_2 in the launch code."""
    import triton
    assert all(runtime.cdiv(a, b) == triton.cdiv(a, b) for a in range(300) for b in range(1, 40))
    assert all(runtime.next_pow2(n) == triton.next_power_of_2(n) for n in range(1, 5000))
    assert runtime.next_pow2(0) == 1


@triton.jit
def _softplus_kernel(x_ptr, out_ptr, n, FAST: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + i, softplus(tl.load(x_ptr + i, mask=i < n), FAST), mask=i < n)


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softplus_is_accurate_over_its_range(dtype, fast):
    """The kernels' softplus (runtime.softplus; FAST, on the GPU in float32: lg2.approx and a series for
    small exp(-|x|)) against torch's float64 softplus from -40 to 40: relative error under 2e-5
    (float32) / 1e-10 (float64)."""
    x = torch.linspace(-40, 40, 4001 if GPU else 401, dtype=torch.float64)
    out = torch.empty(x.shape, dtype=dtype, device=DEV)
    _softplus_kernel[(triton.cdiv(x.numel(), 512),)](x.to(device=DEV, dtype=dtype), out, x.numel(), FAST=fast,
                                                     BLOCK=512)
    ref = torch.nn.functional.softplus(x.to(dtype).double(), threshold=100)   # (torch's default returns x above 20)
    rel = ((out.double().cpu() - ref) / ref).abs().max().item()
    assert rel < (2e-5 if dtype == torch.float32 else 1e-10), rel


@triton.jit
def _axpy_kernel(x_ptr, y_ptr, out_ptr, n, a, SCALE: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    tl.store(out_ptr + i, SCALE * (a * tl.load(x_ptr + i, mask=m) + tl.load(y_ptr + i, mask=m)), mask=m)


def test_launch_matches_kernel_grid_across_specializations():
    """runtime.launch runs what kernel[grid] runs for every specialization Triton may compile: sizes 1,
    a multiple of 16 and neither, addresses 16-byte aligned and not (a view one float in), in any order
    and repeated, with float arguments 1.0 and not (on the GPU the repeats take the cached compilations:
    one a specialization, so the cache grows by one for each new one and not at all for a repeat or
    another float). ``redo``: asked at a specialization's first launch; its keyword arguments then hold
    for that specialization's later launches."""
    buf = torch.randn(300, device=DEV)
    y = torch.randn(300, device=DEV)
    cases = [(buf[:64], 64, 0.5), (buf[:1], 1, 0.5), (buf[1:34], 33, 0.5), (buf[1:65], 64, 0.5),
             (buf[:64], 64, 1.0), (buf[1:34], 33, -2.0), (buf[:1], 1, 1.0)]
    n0 = len(runtime._LAUNCHES)
    sizes = []
    for x, n, a in cases:
        out = torch.full((n,), float("nan"), device=DEV)
        runtime.launch(_axpy_kernel, (triton.cdiv(n, 32),), (x, y, out, n, a), dict(SCALE=1, BLOCK=32))
        torch.testing.assert_close(out, a * x[:n] + y[:n], rtol=0, atol=0)
        sizes.append(len(runtime._LAUNCHES) - n0)
    if GPU:
        assert sizes == [1, 2, 3, 4, 4, 4, 4], sizes
    asked = []

    def redo(compiled):
        asked.append(compiled)
        return dict(SCALE=2, BLOCK=32)
    for _ in range(3):
        out = torch.empty(48, device=DEV)
        runtime.launch(_axpy_kernel, (2,), (buf[:48], y, out, 48, 1.0), dict(SCALE=3, BLOCK=32), redo)
        torch.testing.assert_close(out, 2 * (buf[:48] + y[:48]), rtol=0, atol=0)
    assert len(asked) == (1 if GPU else 3)

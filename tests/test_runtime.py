import pytest
import torch
import triton
import triton.language as tl

import ssmlib
from ssmlib import runtime
from ssmlib.runtime import softplus

DEV = ssmlib.DEVICE
GPU = DEV == "cuda"


def test_runtime_matches_the_machine():
    if not torch.cuda.is_available():
        assert ssmlib.INTERPRET, "without CUDA the kernels must run in Triton's interpreter"
    assert ssmlib.DEVICE == ("cpu" if ssmlib.INTERPRET else "cuda")
    assert ("interpreter" in ssmlib.describe()) == ssmlib.INTERPRET


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

import pytest
import torch

import ssmlib
from ssmlib import runtime


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

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

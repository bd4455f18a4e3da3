import pytest
import torch

import ssmlib


def test_mass_spring_damper_matrices():
    m, c, k = 2.0, 0.5, 3.0
    A, B, C, D = ssmlib.mass_spring_damper(m, c, k)
    assert torch.equal(A, torch.tensor([[0.0, 1.0], [-k / m, -c / m]], dtype=torch.float64))
    assert torch.equal(B, torch.tensor([0.0, 1 / m], dtype=torch.float64))
    assert torch.equal(C, torch.tensor([1.0, 0.0], dtype=torch.float64)) and D == 0


def test_transfer_function_of_the_spring():
    m, c, k = 1.3, 0.4, 2.2
    s = torch.complex(torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64))
    Hs = ssmlib.transfer_function(*ssmlib.mass_spring_damper(m, c, k), s)
    assert torch.allclose(Hs, 1 / (m * s**2 + c * s + k))


@pytest.mark.parametrize("m,c,k,match", [(0.0, 1.0, 1.0, "m"), (1.0, -1.0, 1.0, "c and k")])
def test_bad_parameters(m, c, k, match):
    with pytest.raises(ValueError, match=match):
        ssmlib.mass_spring_damper(m, c, k)


def test_transfer_function_bad_shapes():
    with pytest.raises(ValueError, match="expected A"):
        ssmlib.transfer_function(torch.eye(2), torch.ones(3), torch.ones(2), torch.tensor(0.0), [1j])

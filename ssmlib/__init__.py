"""ssmlib: state space models from HiPPO to Mamba-2, as readable PyTorch and Triton kernels.

Import order matters: :mod:`ssmlib.runtime` decides, before any kernel is
defined, whether Triton compiles for the GPU or interprets on the CPU.
The HiPPO functions live in :mod:`ssmlib.hippo` (``hippo.transition``,
``hippo.project``, ...), where their short names read well; the layers in
:mod:`ssmlib.layers`.
"""
from .runtime import DEVICE, INTERPRET, describe  # noqa: I001  (first, see above)
from .discretize import METHODS, discretize
from .recurrence import linear_recurrence, linear_recurrence_chunked_ref, linear_recurrence_ref
from .convolution import causal_conv, impulse_response
from .krylov import krylov
from .systems import mass_spring_damper, transfer_function
from .selective import (selective_scan, selective_scan_ref, selective_scan_unfused, selective_state_update,
                        selective_state_update_ref)
from .duality import segsum, ssd, ssd_chunked_ref, ssd_linear_ref, ssd_quadratic_ref, ssd_step, ssd_step_ref
from . import hippo, layers

__all__ = [
    "DEVICE", "INTERPRET", "describe",
    "METHODS", "discretize",
    "linear_recurrence", "linear_recurrence_ref", "linear_recurrence_chunked_ref",
    "causal_conv", "impulse_response", "krylov",
    "mass_spring_damper", "transfer_function",
    "selective_scan", "selective_scan_ref", "selective_scan_unfused",
    "selective_state_update", "selective_state_update_ref",
    "ssd", "ssd_step", "ssd_linear_ref", "ssd_quadratic_ref", "ssd_chunked_ref", "ssd_step_ref", "segsum",
    "hippo", "layers",
]

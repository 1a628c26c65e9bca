"""The S4 layer of ``clinical_ts`` (``ts/s4_modules/s42.py``, the standalone HazyResearch S4) in plain PyTorch.

Key-for-key: ``D``, ``kernel.kernel.{log_dt, w, P, Q, B, C, omega, z}``, ``output_linear.0.{weight,
bias}`` (a transposed linear followed by GLU). The convolution kernel is the HiPPO-LegS
normal-plus-low-rank (NPLR, rank 1) state-space kernel evaluated in the frequency domain at the
cached FFT nodes ``omega`` of the kernel length ``L`` (``z`` = their bilinear pre-image), then
truncated to the input length, exactly as ``SSKernelNPLR.forward`` with ``rate=1``.

The official Cauchy step ``cauchy_conj`` runs only through pykeops or a CUDA extension. Here it is
the dense sum Σₙ vₙ/(z − wₙ) + conj(vₙ)/(z − conj(wₙ)), the same expression the parity fixture's
CPU replacement evaluates (it equals the pykeops formula algebraically; float32 round-off differs
at the ~1e-6 level from the GPU path). Only the causal (unidirectional), single-channel, rank-1,
single-precision configuration that ECG-CPC uses is implemented; others are refused.

Classes are built lazily (:func:`s4_classes`) so that importing this module does not import torch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    import torch

#: ``HippoSSKernel`` defaults used by ``S4Model`` (not overridden by ECG-CPC)
DT_MIN, DT_MAX = 1e-3, 1e-1


def fft_nodes(length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``SSKernelNPLR._omega(L)``: ω_k = exp(−2πi/L)^k, k = 0..L/2; z_k = 2(1 − ω_k)/(1 + ω_k); complex64."""
    import torch

    omega = torch.tensor(np.exp(-2j * np.pi / length), dtype=torch.cfloat, device="cpu")
    omega = omega ** torch.arange(0, length // 2 + 1, device="cpu")
    return omega, 2 * (1 - omega) / (1 + omega)


def hippo_legs_nplr(state_dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``nplr('legs', N, rank=1)``: eigenvalues w (N/2), low-rank P (1, N/2) and B (N/2), complex64.

    A_LegS + PᵀP is normal; its eigenvectors V diagonalise it, keeping one of each conjugate pair.
    Computed like the official code (``torch.linalg.eig`` in float32), so that the eigenvector
    phases, hence P and B, come out as in the released checkpoint.
    """
    import torch

    q = np.arange(state_dim, dtype=np.float64)
    col, row = np.meshgrid(q, q)
    t = np.sqrt(2 * q + 1)
    legs = -(np.where(row >= col, 2 * q + 1, 0.0) - np.diag(q))
    a = torch.as_tensor(t[:, None] * legs / t[None, :], dtype=torch.float, device="cpu")
    p = torch.sqrt(0.5 + torch.arange(state_dim, dtype=torch.float, device="cpu")).unsqueeze(0)
    w, v = torch.linalg.eig(a + p.T @ p)
    w, v = w[0::2].contiguous(), v[:, 0::2].contiguous()
    v_inv = v.conj().T
    b = torch.as_tensor(t, dtype=torch.float, device="cpu").to(v)
    return w, p.to(v) @ v_inv.T, v_inv @ b


def s4_classes() -> dict[str, type]:
    """torch module classes, defined lazily so importing this module stays torch-free."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def as_complex(x: torch.Tensor) -> torch.Tensor:
        return torch.view_as_complex(x.contiguous())

    class NPLRKernel(nn.Module):
        """``SSKernelNPLR`` (rank 1, not tied, not Hurwitz): parameters ``C``, state buffers, FFT-node cache."""

        # the buffers registered in __init__
        log_dt: torch.Tensor
        B: torch.Tensor
        P: torch.Tensor
        w: torch.Tensor
        Q: torch.Tensor
        omega: torch.Tensor
        z: torch.Tensor

        def __init__(self, d_model: int, state_dim: int, l_max: int, channels: int = 1):
            super().__init__()
            n = state_dim // 2
            self.C = nn.Parameter(torch.empty(channels, d_model, n, 2))
            # not trainable in the official configuration (trainable=None): stored as buffers
            for name, shape in (("log_dt", (d_model,)), ("B", (1, d_model, n, 2)), ("P", (1, d_model, n, 2)),
                                ("w", (d_model, n, 2)), ("Q", (1, d_model, n, 2)),
                                ("omega", (l_max // 2 + 1, 2)), ("z", (l_max // 2 + 1, 2))):
                self.register_buffer(name, torch.empty(shape))
            self._cached: tuple[tuple[Any, ...], torch.Tensor] | None = None

        def _state_key(self, length: int) -> tuple[Any, ...]:
            """Identity + in-place version of every tensor the kernel depends on (load_state_dict bumps versions)."""
            tensors = (self.C, self.log_dt, self.B, self.P, self.w, self.Q, self.omega, self.z)
            return (length, *((t.data_ptr(), t._version) for t in tensors))

        @property
        def length(self) -> int:
            """The kernel length L the FFT nodes were made for."""
            return 2 * (self.omega.shape[0] - 1)

        def forward(self, length: int) -> torch.Tensor:
            """The SSM convolution kernel for ``length`` time steps, (channels, H, length), float32.

            It depends on the parameters only, so under inference mode it is computed once per length
            and state (the dense Cauchy sum costs more than the rest of the layer).
            """
            if not torch.is_inference_mode_enabled():
                return self._kernel(length)
            key = self._state_key(length)
            if self._cached is None or self._cached[0] != key:
                self._cached = (key, self._kernel(length))
            return self._cached[1]

        def _kernel(self, length: int) -> torch.Tensor:
            if length > self.length:
                raise ValueError(f"S4 input of {length} steps exceeds the kernel length {self.length} "
                                 "(the official code would double the kernel; not supported)")
            dt = torch.exp(self.log_dt)
            w = as_complex(self.w) * dt.unsqueeze(-1)  # (H, N)
            b = torch.cat([as_complex(self.B), as_complex(self.P)], dim=0)  # (2, H, N)
            c = torch.cat([as_complex(self.C), as_complex(self.Q)], dim=0)  # (channels + 1, H, N)
            v = b.unsqueeze(1) * c.unsqueeze(0)  # (2, channels + 1, H, N)
            omega, z = as_complex(self.omega), as_complex(self.z)
            zz, ww = z[:, None], w[:, None, :]  # (L', 1), (H, 1, N)
            vv = v.unsqueeze(-2)  # (2, channels + 1, H, 1, N)
            r = (vv / (zz - ww) + vv.conj() / (zz - ww.conj())).sum(-1)  # dense Cauchy: (2, channels + 1, H, L')
            r = r * dt[None, None, :, None]
            k_f = r[:-1, :-1] - r[:-1, -1:] * r[-1:, :-1] / (1 + r[-1:, -1:])  # Woodbury, rank 1
            k_f = k_f * 2 / (1 + omega)  # undo the bilinear transform
            k = torch.fft.irfft(k_f)[..., :length]  # (1, channels, H, length)
            return k[-1].float()

    class HippoKernel(nn.Module):
        """``HippoSSKernel``: a holder so the keys read ``kernel.kernel.*``."""

        def __init__(self, d_model: int, state_dim: int, l_max: int, channels: int = 1):
            super().__init__()
            self.kernel = NPLRKernel(d_model, state_dim, l_max, channels)

    class TransposedLinear(nn.Module):
        """Linear over the channel axis of (B, H, L); bias stored as (d_out, 1)."""

        def __init__(self, d_input: int, d_output: int):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(d_output, d_input))
            self.bias = nn.Parameter(torch.empty(d_output, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.einsum("bul,vu->bvl", x, self.weight) + self.bias

    class S4(nn.Module):
        """``s42.S4(d_model, d_state, l_max, bidirectional=False, postact='glu', transposed=True)``, eval mode."""

        def __init__(self, d_model: int, state_dim: int, l_max: int):
            super().__init__()
            self.D = nn.Parameter(torch.empty(1, d_model))
            self.kernel = HippoKernel(d_model, state_dim, l_max)
            self.output_linear = nn.Sequential(TransposedLinear(d_model, 2 * d_model), nn.GLU(dim=-2))

        def forward(self, u: torch.Tensor) -> torch.Tensor:
            """(B, H, L) → (B, H, L); FFT convolution in float32 even under autocast."""
            with torch.autocast(u.device.type, enabled=False):
                u = u.float()
                length = u.shape[-1]
                k = self.kernel.kernel(length)  # (C, H, L)
                y_f = torch.einsum("bhl,chl->bchl", torch.fft.rfft(u, n=2 * length), torch.fft.rfft(k, n=2 * length))
                y = torch.fft.irfft(y_f, n=2 * length)[..., :length]
                y = y + torch.einsum("bhl,ch->bchl", u, self.D)
                y = F.gelu(y.reshape(y.shape[0], -1, length))
                return self.output_linear(y)

        @torch.no_grad()
        def reset_parameters(self) -> None:
            """The official random init (``HippoSSKernel`` + ``LinearActivation``), without the length
            correction ``C ← C(I − Ā^L)`` (it only makes the truncated kernel equal the infinite one;
            a random control needs no such exactness)."""
            kernel = self.kernel.kernel
            h, n = kernel.log_dt.shape[0], kernel.C.shape[2]
            kernel.log_dt.copy_(torch.rand(h) * (math.log(DT_MAX) - math.log(DT_MIN)) + math.log(DT_MIN))
            w, p, b = hippo_legs_nplr(2 * n)
            kernel.w.copy_(torch.view_as_real(w.expand(h, n)))
            kernel.B.copy_(torch.view_as_real(b.expand(1, h, n)))
            kernel.P.copy_(torch.view_as_real(p.unsqueeze(1).expand(1, h, n)))
            kernel.Q.copy_(torch.view_as_real(p.conj().resolve_conj().unsqueeze(1).expand(1, h, n)))
            kernel.C.copy_(torch.view_as_real(torch.randn(kernel.C.shape[:3], dtype=torch.cfloat)))
            omega, z = fft_nodes(kernel.length)
            kernel.omega.copy_(torch.view_as_real(omega))
            kernel.z.copy_(torch.view_as_real(z))
            nn.init.normal_(self.D)
            linear = cast(TransposedLinear, self.output_linear[0])
            nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5))
            bound = 1 / math.sqrt(linear.weight.shape[1])
            nn.init.uniform_(linear.bias, -bound, bound)

    class S4Model(nn.Module):
        """``S4Model`` as ``S4Predictor`` builds it: no input/output linear, no pooling, post-LayerNorm
        residual blocks over (B, L, H) input."""

        def __init__(self, d_model: int, state_dim: int, n_layers: int, l_max: int, prenorm: bool):
            super().__init__()
            self.prenorm = prenorm
            self.s4_layers = nn.ModuleList(S4(d_model, state_dim, l_max) for _ in range(n_layers))
            self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.transpose(-1, -2)
            for layer, norm in zip(self.s4_layers, self.norms, strict=True):
                z = norm(x.transpose(-1, -2)).transpose(-1, -2) if self.prenorm else x
                x = layer(z) + x
                if not self.prenorm:
                    x = norm(x.transpose(-1, -2)).transpose(-1, -2)
            return x.transpose(-1, -2)

    return {"S4": S4, "S4Model": S4Model}

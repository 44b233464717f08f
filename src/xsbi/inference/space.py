"""The parameter space the networks work in.

Log-uniform priors (e.g. a normalisation over four decades) are learned in log10, where they are
uniform and the posterior is closer to Gaussian; uniform and normal priors stay linear.  In this
space every prior of xsbi is a box or a normal, which sbi handles natively.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.distributions import Normal as TorchNormal
from torch.distributions import Uniform as TorchUniform

from ..errors import PriorError
from ..priors import JointPrior, LogUniform, Normal, Uniform


class ParameterSpace:
    """Maps physical parameters theta <-> network parameters phi (log10 for log-uniform priors)."""

    def __init__(self, prior: JointPrior):
        self.prior = prior
        self.names = list(prior.names)
        self.log = np.array([isinstance(prior.priors[n], LogUniform) for n in self.names])
        for n in self.names:
            if not isinstance(prior.priors[n], (Uniform, LogUniform, Normal)):
                raise PriorError(f"prior on {n} is {prior.priors[n]!r}; NPE supports uniform, loguniform and normal priors")

    @property
    def dim(self) -> int:
        return len(self.names)

    def to_phi(self, theta) -> np.ndarray:
        theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
        phi = theta.copy()
        phi[:, self.log] = np.log10(theta[:, self.log])
        return phi

    def to_theta(self, phi) -> np.ndarray:
        phi = np.atleast_2d(np.asarray(phi, dtype=np.float64))
        theta = phi.copy()
        theta[:, self.log] = 10.0 ** phi[:, self.log]
        return theta

    def log_jacobian(self, theta) -> np.ndarray:
        """log |d phi / d theta|, to turn a density in phi into one in theta."""
        theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
        return -np.sum(np.log(theta[:, self.log] * math.log(10.0)), axis=1)

    def bounds_phi(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.array([self.prior.priors[n].low for n in self.names], dtype=float)
        hi = np.array([self.prior.priors[n].high for n in self.names], dtype=float)
        lo[self.log] = np.log10(lo[self.log])
        hi[self.log] = np.log10(hi[self.log])
        return lo, hi

    def torch_prior(self, device="cpu"):
        """The prior in phi space as a torch distribution sbi accepts."""
        from sbi.utils import BoxUniform, MultipleIndependent

        priors = [self.prior.priors[n] for n in self.names]
        lo, hi = self.bounds_phi()
        if all(not isinstance(p, Normal) for p in priors):
            return BoxUniform(torch.as_tensor(lo, dtype=torch.float32), torch.as_tensor(hi, dtype=torch.float32), device=device)
        parts = []
        for p, a, b in zip(priors, lo, hi):
            if isinstance(p, Normal):
                # truncation at hard limits is enforced when samples are mapped back (see to_theta users)
                parts.append(TorchNormal(torch.tensor([p.mean]), torch.tensor([p.sigma])))
            else:
                parts.append(TorchUniform(torch.tensor([a], dtype=torch.float32), torch.tensor([b], dtype=torch.float32)))
        return MultipleIndependent(parts, device=device)

    def record(self) -> dict:
        return {"names": self.names, "log10": [bool(v) for v in self.log], "priors": self.prior.record()}

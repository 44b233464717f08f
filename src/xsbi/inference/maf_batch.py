"""Posterior draws and densities for many spectra at once, inside the prior box (``xsbi batch``).

Amortized inference over thousands of spectra spends its time in small matrix products and
Python overhead when it goes spectrum by spectrum; :class:`~.maf_sampler.BatchedMAFSampler`
runs a block of spectra through the flow together.  Draws outside
the prior box are rejected per spectrum, as sbi and :class:`~.posterior.AmortizedPosterior` do:
each spectrum keeps its first ``n`` accepted draws of an i.i.d. stream, so the result is an exact
sample of the truncated flow.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import XsbiError
from .maf_sampler import BatchedMAFSampler, supports_batched

__all__ = ["sample_many", "log_prob_many"]


#: a spectrum whose draws fall inside the prior less often than once in this many is given up
#: (NaN draws, reported as failed) rather than stalling the others
MAX_DRAWS_PER_SAMPLE = 200


def _member_phi(net, x: torch.Tensor, m: int, lo: torch.Tensor, hi: torch.Tensor, generators=None,
                max_draws: int = MAX_DRAWS_PER_SAMPLE):
    """(B, m, D) draws of one network inside the prior box [lo, hi] for each spectrum of x, and
    the (B,) mask of spectra given up after ``max_draws`` draws per sample (almost no probability
    inside the prior; NaN draws)."""
    B = x.shape[0]
    sampler = BatchedMAFSampler(net, x)
    out = None
    have = torch.zeros(B, dtype=torch.long)
    rows = torch.arange(B)
    drawn = torch.zeros(B)
    failed = torch.zeros(B, dtype=torch.bool)
    batch = m
    for _ in range(1000):
        phi = sampler(batch, rows, generators)  # (R, batch, D)
        if out is None:
            out = torch.empty(B, m, phi.shape[2], dtype=phi.dtype)
        ok = torch.all((phi >= lo) & (phi <= hi), dim=2)  # (R, batch)
        pos = have[rows, None] + torch.cumsum(ok, 1) - 1
        keep = ok & (pos < m)
        r_idx = rows[:, None].expand_as(keep)[keep]
        out[r_idx, pos[keep]] = phi[keep]
        have[rows] += keep.sum(1)
        drawn[rows] += batch
        hopeless = (have < m) & (drawn >= max_draws * m)
        if bool(hopeless.any()):
            out[hopeless] = float("nan")
            have[hopeless] = m
            failed |= hopeless
        need = have < m
        if not bool(need.any()):
            return out, failed
        rows = torch.nonzero(need).flatten()
        accept = torch.clamp(have[rows].float() / drawn[rows], min=1e-3)
        # enough for the typical remaining spectrum; those with a lower acceptance (truths near
        # the prior's edges) take further rounds instead of making every row draw their share
        want = (m - have[rows]).float() / accept * 1.2 + 16
        batch = int(min(10 * m, float(want.median())))
    raise XsbiError("the network puts almost no probability inside the prior; retrain it")


def sample_many(posterior, counts, n: int, seeds=None, return_failed: bool = False, exposure=None,
                background_level=None):
    """(B, n, d) physical posterior draws for B spectra's grouped counts ``(B, n_bins)``.

    Same distribution as ``posterior.sample(counts[i], n)`` for each i (an equal-weight mixture
    for an ensemble).  ``seeds`` (one int per spectrum) makes each spectrum's draws depend on its
    seed alone, not on the other spectra of the block; without it torch's global generator is
    used.  Falls back to one spectrum at a time for density estimators other than MAF.
    With ``return_failed``, also the (B,) mask of spectra for which the network puts almost no
    probability inside the prior (their draws are NaN) instead of raising XsbiError.
    ``exposure`` (s, one or one per spectrum) for a network conditioned on exposure; default the
    training spectrum's.  ``background_level`` (one or one per spectrum) for a network conditioned
    on the background level; default 1, the training background.
    """
    x = posterior._x(counts, exposure, background_level)
    B, n = x.shape[0], int(n)
    gens = None if seeds is None else [torch.Generator().manual_seed(int(s)) for s in seeds]
    nets = [getattr(e, "net", None) for e in posterior.estimators]
    if not all(net is not None and supports_batched(net) for net in nets):
        out = np.empty((B, n, posterior.space.dim))
        failed = np.zeros(B, dtype=bool)
        with torch.no_grad():
            for i in range(B):
                if seeds is not None:
                    torch.manual_seed(int(seeds[i]))
                try:
                    out[i] = posterior.space.to_theta(posterior._sample_phi(n, x[i]).cpu().numpy())
                except XsbiError:
                    if not return_failed:
                        raise
                    out[i], failed[i] = np.nan, True
        return (out, failed) if return_failed else out
    lo, hi = (torch.as_tensor(b, dtype=torch.float32) for b in posterior.space.bounds_phi())
    k = len(nets)
    sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
    with torch.no_grad():
        parts = [_member_phi(net, x, m, lo, hi, gens) for net, m in zip(nets, sizes) if m]
        phi = torch.cat([p for p, _ in parts], dim=1)
        failed = torch.stack([f for _, f in parts]).any(0).numpy()
        if failed.any() and not return_failed:
            raise XsbiError("the network puts almost no probability inside the prior for "
                            f"{int(failed.sum())} of the spectra; retrain it")
        if k > 1:  # shuffle the members' draws within each spectrum
            if gens is None:
                perm = torch.argsort(torch.rand(B, n), dim=1)
            else:
                perm = torch.stack([torch.randperm(n, generator=g) for g in gens])
            phi = torch.gather(phi, 1, perm[:, :, None].expand_as(phi))
    theta = phi.to(torch.float64).numpy()
    log = posterior.space.log
    theta[:, :, log] = 10.0 ** theta[:, :, log]
    return (theta, failed) if return_failed else theta


def log_prob_many(posterior, counts, theta, exposure=None, background_level=None) -> np.ndarray:
    """(B, m) log q(theta | x) in physical parameters, for B spectra's counts ``(B, n_bins)`` and
    their parameters ``theta`` (B, m, d): ``posterior.log_prob(theta[i], counts[i])`` for every
    i (the network's density times the Jacobian, -inf outside the prior box, an equal-weight
    mixture for an ensemble), from one batched pass of the flow where it is a MAF.  ``exposure``
    and ``background_level`` as in :func:`sample_many`."""
    theta = np.asarray(theta, dtype=np.float64)
    B, m, d = theta.shape
    space = posterior.space
    nets = [getattr(e, "net", None) for e in posterior.estimators]
    if not all(net is not None and supports_batched(net) for net in nets):
        t = None if exposure is None else np.broadcast_to(np.asarray(exposure, dtype=np.float64), (B,))
        lv = None if background_level is None else np.broadcast_to(np.asarray(background_level, dtype=np.float64), (B,))
        return np.stack([posterior.log_prob(theta[i], np.asarray(counts)[i],
                                            exposure=None if t is None else float(t[i]),
                                            background_level=None if lv is None else float(lv[i])) for i in range(B)])
    x = posterior._x(counts, exposure, background_level)
    phi = torch.as_tensor(space.to_phi(theta.reshape(-1, d)).reshape(B, m, d), dtype=torch.float32)
    lo, hi = (torch.as_tensor(b, dtype=torch.float32) for b in space.bounds_phi())
    with torch.no_grad():
        lps = torch.stack([BatchedMAFSampler(net, x).log_prob(phi) for net in nets])
        lp = torch.logsumexp(lps, 0) - np.log(len(nets))
        inside = torch.all((phi >= lo) & (phi <= hi), dim=2)
        lp = torch.where(inside, lp, torch.full_like(lp, -torch.inf))
    return lp.double().numpy() + space.log_jacobian(theta.reshape(-1, d)).reshape(B, m)

"""Additive components (photons/cm^2/s integrated over each energy bin), XSPEC definitions.

Formulas follow the XSPEC manual ("Additive Model Components").  Where XSPEC's bin integral is
analytic (``powerlaw``, ``gaussian``) so is ours; elsewhere bins are integrated by Gauss-Legendre
quadrature on the grid's nodes (:attr:`EnergyGrid.nodes`).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from .component import Component, Kernel, Params
from .parameter import ParameterSpec

NORM = ParameterSpec("norm", "", 1.0, 0.0, 1e24, "normalisation")

#: photons/cm^2/s/keV^3 for a sphere of radius 1 km at 10 kpc (XSPEC bbodyrad).
BBODYRAD_CONST = 1.0344e-3
#: XSPEC bbody: L = 1e39 erg/s at 10 kpc.
BBODY_CONST = 8.0525


def _log_phi_coefficients() -> list[float]:
    """Coefficients c_n of ln((e^x - 1)/x) = x/2 + sum_n c_n x^n, n = 2, 4, 6, 8.

    ln((e^x-1)/x) = x/2 + ln(sinh(x/2)/(x/2)) and ln(sinh y / y) = y^2/6 - y^4/180 + y^6/2835
    - y^8/37800 + ...
    """
    return [1 / 6 / 4, -1 / 180 / 16, 1 / 2835 / 64, -1 / 37800 / 256]


class _PowerlawKernel(Kernel):
    """Analytic bin integral of K E^-Gamma.

    With a = 1 - Gamma and r = hi/lo the integral is K lo^a ln(r) phi(a ln r), phi(x) = (e^x-1)/x,
    which has no singularity at Gamma = 1 and, unlike ``(hi^a - lo^a)/a``, loses no precision to
    cancellation on narrow bins.  ln(phi) is expanded in powers of x = a ln r, so the logarithm of
    the bin integral is linear in (ln K, 1, a, a^2, a^4, a^6, a^8): see :mod:`.component`.
    """

    #: |a ln r| up to which the truncated series is accurate to ~2e-9 (next term x^10/4.8e8).
    max_x = 1.0

    def __init__(self, grid, device, dtype):
        super().__init__(grid, device, dtype)
        lr = grid.log_ratio
        c2, c4, c6, c8 = _log_phi_coefficients()
        feats = np.stack(
            [
                np.ones_like(lr),
                np.log(lr),
                grid.log_lo + 0.5 * lr,
                c2 * lr**2,
                c4 * lr**4,
                c6 * lr**6,
                c8 * lr**8,
            ]
        )
        self.energy_features = self.tensor(feats)
        self.max_log_ratio = float(lr.max())
        self.log_lo = self.tensor(grid.log_lo)
        self.log_ratio = self.tensor(lr)

    def spectrum_features(self, p: Params) -> torch.Tensor:
        a = 1.0 - p["PhoIndex"]
        a2 = a * a
        a4 = a2 * a2
        return torch.stack([torch.log(p["norm"]), torch.ones_like(a), a, a2, a4, a4 * a2, a4 * a4], dim=1)

    def log_linear_ok(self, p: Params) -> bool:
        return float((1.0 - p["PhoIndex"]).abs().max()) * self.max_log_ratio <= self.max_x

    def value(self, p: Params) -> torch.Tensor:
        if self.log_linear_ok(p):
            return super().value(p)
        a = (1.0 - p["PhoIndex"])[:, None]
        x = a * self.log_ratio
        safe = torch.where(x == 0, torch.ones_like(x), x)
        phi = torch.where(x == 0, torch.ones_like(x), torch.expm1(safe) / safe)
        return p["norm"][:, None] * torch.exp(a * self.log_lo) * self.log_ratio * phi


class powerlaw(Component):
    """Power law, A(E) = K E^-PhoIndex; K in photons/keV/cm^2/s at 1 keV."""

    name = "powerlaw"
    kind = "additive"
    parameters = (ParameterSpec("PhoIndex", "", 1.0, -3.0, 10.0, "photon index"), NORM)

    def kernel(self, grid, device="cpu", dtype=torch.float32):
        return _PowerlawKernel(grid, device, dtype)


class _QuadratureKernel(Kernel):
    """Bin integrals by Gauss-Legendre quadrature of a photon spectrum A(E) at the grid's nodes."""

    def __init__(self, grid, device, dtype):
        super().__init__(grid, device, dtype)
        e, w = grid.nodes
        self.e = self.tensor(e)  # (n_E, q)
        self.w = self.tensor(w)

    def photon_spectrum(self, p: Params, e: torch.Tensor) -> torch.Tensor:
        """A(E) at nodes e (n_E, q) for every parameter vector: (N, n_E, q)."""
        raise NotImplementedError

    def value(self, p: Params) -> torch.Tensor:
        return (self.photon_spectrum(p, self.e) * self.w).sum(-1)


def _col(x: torch.Tensor) -> torch.Tensor:
    """(N,) -> (N, 1, 1) for broadcasting against (n_E, q) nodes."""
    return x[:, None, None]


class _BlackbodyKernel(_QuadratureKernel):
    def __init__(self, grid, device, dtype, const, kt_power):
        super().__init__(grid, device, dtype)
        self.const = const
        self.kt_power = kt_power
        self.e2w = self.e**2 * self.w

    def value(self, p: Params) -> torch.Tensor:
        kt = _col(p["kT"])
        # 1/expm1 underflows to 0 for E/kT > ~88 in float32, which is the right limit.
        planck = self.e2w / torch.expm1(self.e / kt)
        scale = self.const * p["norm"]
        if self.kt_power:
            scale = scale / p["kT"] ** self.kt_power
        return scale[:, None] * planck.sum(-1)


class bbodyrad(Component):
    """Blackbody, A(E) = K 1.0344e-3 E^2 / (exp(E/kT) - 1); K = R_km^2 / D_10kpc^2."""

    name = "bbodyrad"
    kind = "additive"
    parameters = (ParameterSpec("kT", "keV", 3.0, 1e-4, 200.0, "temperature"), NORM)

    def kernel(self, grid, device="cpu", dtype=torch.float32):
        return _BlackbodyKernel(grid, device, dtype, BBODYRAD_CONST, 0)


class bbody(Component):
    """Blackbody, A(E) = K 8.0525 E^2 / (kT^4 (exp(E/kT) - 1)); K = L_39 / D_10kpc^2."""

    name = "bbody"
    kind = "additive"
    parameters = (ParameterSpec("kT", "keV", 3.0, 1e-4, 200.0, "temperature"), NORM)

    def kernel(self, grid, device="cpu", dtype=torch.float32):
        return _BlackbodyKernel(grid, device, dtype, BBODY_CONST, 4)


class _CutoffplKernel(_QuadratureKernel):
    def value(self, p: Params) -> torch.Tensor:
        log_a = -_col(p["PhoIndex"]) * torch.log(self.e) - self.e / _col(p["HighECut"])
        return p["norm"][:, None] * (torch.exp(log_a) * self.w).sum(-1)


class cutoffpl(Component):
    """Power law with high-energy exponential cut-off, A(E) = K E^-PhoIndex exp(-E/HighECut)."""

    name = "cutoffpl"
    kind = "additive"
    parameters = (
        ParameterSpec("PhoIndex", "", 1.0, -3.0, 10.0, "photon index"),
        ParameterSpec("HighECut", "keV", 15.0, 0.01, 500.0, "e-folding energy"),
        NORM,
    )

    def kernel(self, grid, device="cpu", dtype=torch.float32):
        return _CutoffplKernel(grid, device, dtype)


class _GaussianKernel(Kernel):
    def __init__(self, grid, device, dtype):
        super().__init__(grid, device, dtype)
        self.lo = self.tensor(grid.lo)
        self.hi = self.tensor(grid.hi)

    def value(self, p: Params) -> torch.Tensor:
        e0 = p["LineE"][:, None]
        sigma = p["Sigma"][:, None]
        narrow = sigma <= 0
        s = torch.where(narrow, torch.ones_like(sigma), sigma)
        zlo = (self.lo - e0) / s
        zhi = (self.hi - e0) / s
        # Tail-safe CDF differences: above the line centre use upper tails, below it lower tails,
        # both through erfc, which keeps relative precision far from the centre (torch's ndtr
        # does not).
        above = zlo > 0
        r = 1.0 / math.sqrt(2.0)
        frac = 0.5 * torch.where(
            above,
            torch.special.erfc(zlo * r) - torch.special.erfc(zhi * r),
            torch.special.erfc(-zhi * r) - torch.special.erfc(-zlo * r),
        )
        # XSPEC: a zero width puts the whole line in the bin that contains LineE.
        delta = ((self.lo <= e0) & (e0 < self.hi)).to(frac.dtype)
        return p["norm"][:, None] * torch.where(narrow, delta, frac)


class gaussian(Component):
    """Gaussian line, A(E) = K exp(-(E-LineE)^2 / (2 Sigma^2)) / (Sigma sqrt(2 pi)); K in photons/cm^2/s."""

    name = "gaussian"
    kind = "additive"
    parameters = (
        ParameterSpec("LineE", "keV", 6.5, 0.0, 1e6, "line energy"),
        ParameterSpec("Sigma", "keV", 0.1, 0.0, 20.0, "line width"),
        NORM,
    )

    def kernel(self, grid, device="cpu", dtype=torch.float32):
        return _GaussianKernel(grid, device, dtype)


class _BremssKernel(_QuadratureKernel):
    def value(self, p: Params) -> torch.Tensor:
        kt = _col(p["kT"])
        half_u = 0.5 * self.e / kt
        # Born-approximation Gaunt factor g = sqrt(3)/pi e^(u/2) K0(u/2); combined with e^-u it is
        # sqrt(3)/pi * [e^(u/2) K0(u/2)] * e^(-u), and the bracket is the scaled Bessel function.
        g_exp = (math.sqrt(3.0) / math.pi) * torch.special.scaled_modified_bessel_k0(half_u) * torch.exp(-2 * half_u)
        spec = g_exp / (self.e * torch.sqrt(kt))
        return p["norm"][:, None] * (spec * self.w).sum(-1)


class bremss(Component):
    """Thermal bremsstrahlung, A(E) = K g(E, kT) kT^-1/2 exp(-E/kT) / E;
    K = 3.02e-15 / (4 pi D^2) * integral(n_e n_I dV).

    The Gaunt factor is the non-relativistic Born approximation (Rybicki & Lightman 1979, eq. 5.17)
    rather than XSPEC's Kellogg, Baldwin & Koch (1975) fit to Karzas & Latter (1961): expect
    differences of up to ~10% at E << kT.
    """

    name = "bremss"
    kind = "additive"
    parameters = (ParameterSpec("kT", "keV", 7.0, 1e-4, 200.0, "plasma temperature"), NORM)

    def kernel(self, grid, device="cpu", dtype=torch.float32):
        return _BremssKernel(grid, device, dtype)


# --- diskbb ------------------------------------------------------------------------------------
#: (8/3) * BBODYRAD_CONST: a disc of annuli r dr (T ~ r^-3/4) seen face-on, K = (R_in/D_10)^2 cos i.
DISKBB_CONST = 8.0 / 3.0 * BBODYRAD_CONST
_G_XMIN, _G_XMAX, _G_N = 1e-4, 300.0, 20001


@lru_cache(maxsize=1)
def _diskbb_table() -> tuple[np.ndarray, np.ndarray]:
    """ln G(x) + x on a uniform ln(x) grid, with G(x) = int_x^inf s^(5/3) / (e^s - 1) ds.

    Substituting s = E/T in Mitsuda et al. (1984)'s integral over disc temperatures gives
    A(E) = K C E^(-2/3) Tin^(8/3) G(E/Tin).  G decays like e^-x, so ln G + x is smooth enough in
    ln x for linear interpolation (error < 1e-7 on this grid).
    """
    lnx = np.linspace(np.log(_G_XMIN), np.log(_G_XMAX), _G_N)
    x = np.exp(lnx)
    # integrate between consecutive nodes with 8-point Gauss-Legendre, then cumulate from the top
    gx, gw = np.polynomial.legendre.leggauss(8)
    a, b = x[:-1, None], x[1:, None]
    s = 0.5 * (a + b) + 0.5 * (b - a) * gx
    seg = (0.5 * (b - a) * gw * s ** (5.0 / 3.0) / np.expm1(s)).sum(1)
    tail = np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]])
    # beyond x_max: G(x) ~ e^-x (x^(5/3) + (5/3) x^(2/3)), negligible but keeps ln finite
    tail += np.exp(-_G_XMAX) * (_G_XMAX ** (5 / 3) + 5 / 3 * _G_XMAX ** (2 / 3))
    return lnx, np.log(tail) + x


def diskbb_g0() -> float:
    """G(0) = Gamma(8/3) zeta(8/3)."""
    from scipy.special import gamma, zeta

    return float(gamma(8 / 3) * zeta(8 / 3))


class _DiskbbKernel(_QuadratureKernel):
    def __init__(self, grid, device, dtype):
        super().__init__(grid, device, dtype)
        lnx, h = _diskbb_table()
        self.lnx0 = float(lnx[0])
        self.step = float(lnx[1] - lnx[0])
        self.h = self.tensor(h)
        self.g0 = diskbb_g0()
        self.e_pow = self.tensor(grid.nodes[0] ** (-2.0 / 3.0) * grid.nodes[1])

    def _log_g_plus_x(self, x: torch.Tensor) -> torch.Tensor:
        t = (torch.log(x) - self.lnx0) / self.step
        t = t.clamp(0.0, self.h.numel() - 1.000001)
        i = t.floor().long()
        f = t - i
        return torch.lerp(self.h[i], self.h[i + 1], f)

    def value(self, p: Params) -> torch.Tensor:
        tin = _col(p["Tin"])
        x = self.e / tin
        g = torch.exp(self._log_g_plus_x(x) - x)
        # below the table: G(x) = G(0) - (3/5) x^(5/3) + (3/16) x^(8/3) + O(x^(11/3))
        small = x < _G_XMIN
        g = torch.where(small, self.g0 - 0.6 * x ** (5 / 3) + 0.1875 * x ** (8 / 3), g)
        spec = g * self.e_pow
        return (DISKBB_CONST * p["norm"] * p["Tin"] ** (8.0 / 3.0))[:, None] * spec.sum(-1)


class diskbb(Component):
    """Multi-colour disc blackbody (Mitsuda et al. 1984); K = (R_in/km / (D/10 kpc))^2 cos i."""

    name = "diskbb"
    kind = "additive"
    parameters = (ParameterSpec("Tin", "keV", 1.0, 1e-4, 1000.0, "temperature at inner disc radius"), NORM)

    def kernel(self, grid, device="cpu", dtype=torch.float32):
        return _DiskbbKernel(grid, device, dtype)

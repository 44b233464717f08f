"""Spectral components against analytic integrals and independent numerical quadrature."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special

from xsbi import Model
from xsbi.errors import ModelError
from xsbi.models.additive import BBODY_CONST, BBODYRAD_CONST, _log_phi_coefficients, diskbb_g0
from xsbi.models.expression import parse_expression
from xsbi.models.component import get_component

# NICER-like fine grid and a deliberately coarse logarithmic grid
FINE = np.round(np.arange(0.2, 12.0, 0.01), 6)
COARSE = np.geomspace(0.1, 50.0, 60)


def grid(edges):
    return edges[:-1], edges[1:]


def quad_bins(f, lo, hi):
    return np.array([integrate.quad(f, a, b, epsabs=0, epsrel=1e-12, limit=200)[0] for a, b in zip(lo, hi)])


@pytest.mark.parametrize("edges", [FINE, COARSE], ids=["fine", "coarse"])
@pytest.mark.parametrize("gamma", [-2.0, 0.0, 1.0, 1.0 + 1e-9, 1.7, 3.5])
def test_powerlaw_bin_integral_is_analytic(edges, gamma):
    lo, hi = grid(edges)
    flux = Model("powerlaw").evaluate([[gamma, 2.5]], lo, hi)[0]
    if abs(gamma - 1) < 1e-6:
        expected = 2.5 * np.log(hi / lo)
    else:
        a = 1 - gamma
        expected = 2.5 * (hi**a - lo**a) / a
    np.testing.assert_allclose(flux, expected, rtol=2e-9 if abs(gamma - 1) > 1e-6 else 1e-8)


def test_log_phi_series_matches_exact_function():
    c2, c4, c6, c8 = _log_phi_coefficients()
    x = np.linspace(-1, 1, 2001)
    x = x[x != 0]
    series = x / 2 + c2 * x**2 + c4 * x**4 + c6 * x**6 + c8 * x**8
    exact = np.log(np.expm1(x) / x)
    assert np.max(np.abs(series - exact)) < 3e-9


def test_powerlaw_fast_and_exact_paths_agree():
    lo, hi = grid(FINE)
    bound = Model("powerlaw").bind(lo, hi, dtype=torch.float64)
    theta = torch.tensor([[1.3, 1.0], [-2.5, 3.0]], dtype=torch.float64)
    k = bound.kernels["powerlaw"]
    p = bound.params(theta)["powerlaw"]
    assert k.log_linear_ok(p)
    fast = k.value(p)
    k.max_x = 0.0  # force the expm1 path
    slow = k.value(p)
    torch.testing.assert_close(fast, slow, rtol=1e-9, atol=0)


@pytest.mark.parametrize("edges", [FINE, COARSE[:30]], ids=["fine", "coarse"])
@pytest.mark.parametrize("kt", [0.1, 1.0, 5.0])
def test_bbodyrad_and_bbody(edges, kt):
    lo, hi = grid(edges)
    planck = lambda e: e**2 / np.expm1(e / kt)  # noqa: E731
    ref = quad_bins(planck, lo, hi)
    rad = Model("bbodyrad").evaluate([[kt, 2.0]], lo, hi)[0]
    bb = Model("bbody").evaluate([[kt, 2.0]], lo, hi)[0]
    big = ref > 1e-30 * ref.max()
    tol = 1e-8 if edges is FINE else 2e-3  # coarse bins: 3-node quadrature over dE/E ~ 10%
    np.testing.assert_allclose(rad[big], 2.0 * BBODYRAD_CONST * ref[big], rtol=tol)
    np.testing.assert_allclose(bb[big], 2.0 * BBODY_CONST / kt**4 * ref[big], rtol=tol)


def test_bbody_luminosity_normalisation():
    """bbody's norm is L/1e39 erg/s at 10 kpc: integrate its energy flux over all energies."""
    kt = 1.3
    edges = np.geomspace(1e-3, 60 * kt, 4000)
    lo, hi = grid(edges)
    photons = Model("bbody").evaluate([[kt, 1.0]], lo, hi)[0]
    energy_flux = np.sum(photons * 0.5 * (lo + hi)) * 1.602176634e-9  # erg/cm^2/s
    d = 3.0856775814913673e22  # 10 kpc in cm
    assert energy_flux * 4 * math.pi * d**2 == pytest.approx(1e39, rel=3e-3)  # XSPEC's 8.0525 gives 1.0024e39


def test_bbodyrad_radius_normalisation():
    """bbodyrad's norm is R_km^2/D_10^2: compare with sigma T^4 pi R^2 / D^2 for R = 1 km."""
    kt = 0.8
    edges = np.geomspace(1e-3, 60 * kt, 4000)
    lo, hi = grid(edges)
    photons = Model("bbodyrad").evaluate([[kt, 1.0]], lo, hi)[0]
    energy_flux = np.sum(photons * 0.5 * (lo + hi)) * 1.602176634e-9
    sigma_sb = 5.670374419e-5
    t_kelvin = kt / 8.617333262e-8
    expected = sigma_sb * t_kelvin**4 * (1e5) ** 2 / 3.0856775814913673e22**2
    assert energy_flux == pytest.approx(expected, rel=3e-3)


@pytest.mark.parametrize("gamma,cut", [(1.2, 15.0), (-0.5, 2.0), (2.5, 100.0)])
def test_cutoffpl(gamma, cut):
    lo, hi = grid(FINE)
    ref = quad_bins(lambda e: e**-gamma * np.exp(-e / cut), lo, hi)
    val = Model("cutoffpl").evaluate([[gamma, cut, 0.7]], lo, hi)[0]
    np.testing.assert_allclose(val, 0.7 * ref, rtol=1e-9)


def test_gaussian_line():
    lo, hi = grid(FINE)
    val = Model("gaussian").evaluate([[6.4, 0.05, 3e-3]], lo, hi)[0]
    near = np.abs(0.5 * (lo + hi) - 6.4) < 0.6  # down to ~1e-30 of the peak
    pdf = lambda e: np.exp(-0.5 * ((e - 6.4) / 0.05) ** 2) / (0.05 * math.sqrt(2 * math.pi))  # noqa: E731
    ref = 3e-3 * quad_bins(pdf, lo[near], hi[near])
    # relative precision holds in the far tails too (no difference of CDFs close to 1)
    np.testing.assert_allclose(val[near], ref, rtol=1e-8, atol=0)
    assert val.sum() == pytest.approx(3e-3, rel=1e-12)


def test_gaussian_zero_width_is_a_delta_in_its_bin():
    lo, hi = grid(FINE)
    val = Model("gaussian").evaluate([[6.405, 0.0, 2.0]], lo, hi)[0]
    i = np.flatnonzero((lo <= 6.405) & (6.405 < hi))
    assert val[i] == 2.0 and val.sum() == 2.0


@pytest.mark.parametrize("kt", [0.5, 3.0, 30.0])
def test_bremss_with_born_gaunt_factor(kt):
    lo, hi = grid(FINE)

    def f(e):
        u = e / kt
        g = math.sqrt(3) / math.pi * math.exp(u / 2) * special.k0(u / 2)
        return g * math.exp(-u) / (e * math.sqrt(kt))

    ref = quad_bins(f, lo, hi)
    val = Model("bremss").evaluate([[kt, 1.5]], lo, hi)[0]
    np.testing.assert_allclose(val, 1.5 * ref, rtol=1e-7)


def test_diskbb_universal_function():
    """G(0) and the table against direct integration of int_x^inf s^(5/3)/(e^s-1) ds."""
    assert diskbb_g0() == pytest.approx(integrate.quad(lambda s: s ** (5 / 3) / np.expm1(s), 0, np.inf)[0], rel=1e-9)


@pytest.mark.parametrize("tin", [0.3, 1.5])
def test_diskbb_against_sum_of_blackbody_annuli(tin):
    """A disc of annuli with T = Tin (r/Rin)^-3/4, each emitting like bbodyrad per unit area.

    Independent of the temperature substitution used in the code: integrate over radius.
    """
    e_nodes = np.array([0.35, 1.0, 2.0, 4.0, 8.0])
    k_area = BBODYRAD_CONST / math.pi  # photons/cm^2/s/keV^3 per km^2 at 10 kpc, face-on

    def photon_spectrum(e):
        # r in units of Rin (norm = 1 => Rin = 1 km at 10 kpc, cos i = 1)
        f = lambda r: 2 * math.pi * r * k_area * e**2 / np.expm1(e / (tin * r**-0.75))  # noqa: E731
        return integrate.quad(f, 1.0, np.inf, epsrel=1e-11, limit=400)[0]

    width = 1e-4
    lo, hi = e_nodes - width / 2, e_nodes + width / 2
    val = Model("diskbb").evaluate([[tin, 1.0]], lo, hi)[0] / width
    ref = np.array([photon_spectrum(e) for e in e_nodes])
    np.testing.assert_allclose(val, ref, rtol=2e-6)


def test_float32_matches_float64():
    lo, hi = grid(FINE)
    m = Model("tbabs*(powerlaw+bbodyrad+gaussian)")
    theta = [[0.3, 1.8, 2.0, 0.7, 300.0, 6.5, 0.1, 1e-2]]
    v64 = m.evaluate(theta, lo, hi, dtype=torch.float64)
    v32 = m.evaluate(theta, lo, hi, dtype=torch.float32)
    np.testing.assert_allclose(v32, v64, rtol=2e-5, atol=1e-12 * v64.max())


def test_absorption_multiplies_each_additive_term():
    lo, hi = grid(FINE)
    m = Model("tbabs*(powerlaw+bbodyrad)")
    th = [[0.5, 2.0, 1.0, 1.0, 100.0]]
    total = m.evaluate(th, lo, hi)[0]
    sigma = m.components["tbabs"].cross_section().sigma(0.5 * (lo + hi))
    parts = Model("powerlaw").evaluate([[2.0, 1.0]], lo, hi)[0] + Model("bbodyrad").evaluate([[1.0, 100.0]], lo, hi)[0]
    np.testing.assert_allclose(total, np.exp(-0.5 * sigma) * parts, rtol=1e-12)


def test_constant_and_phabs_wabs_are_transmissions():
    lo, hi = grid(FINE)
    pl = Model("powerlaw").evaluate([[1.7, 1.0]], lo, hi)[0]
    np.testing.assert_allclose(Model("constant*powerlaw").evaluate([[0.25, 1.7, 1.0]], lo, hi)[0], 0.25 * pl, rtol=1e-12)
    for absorber in ("phabs", "wabs"):
        m = Model(f"{absorber}*powerlaw")
        t = m.evaluate([[1.0, 1.7, 1.0]], lo, hi)[0] / pl
        sigma = m.components[absorber].cross_section().sigma(0.5 * (lo + hi))
        np.testing.assert_allclose(t, np.exp(-sigma), rtol=1e-12)
        assert np.all(np.diff(t[hi < 0.5]) >= -1e-12) and t[-1] > t[0]  # more transparent at high energy


# --- expressions and parameters ----------------------------------------------------------------


def test_expression_labels_and_expansion():
    names, labels, terms = parse_expression("constant*tbabs(powerlaw + powerlaw*gabs)", lambda n: {"gabs": "multiplicative"}.get(n, get_component(n).kind) if n != "gabs" else "multiplicative")
    assert labels == ["constant", "tbabs", "powerlaw", "powerlaw_2", "gabs"]
    assert [(t.multiplicative, t.additive) for t in terms] == [
        (("constant", "tbabs"), "powerlaw"),
        (("constant", "tbabs", "gabs"), "powerlaw_2"),
    ]


def test_duplicate_components_are_numbered():
    m = Model("powerlaw + powerlaw")
    assert m.parameter_names == ["powerlaw.PhoIndex", "powerlaw.norm", "powerlaw_2.PhoIndex", "powerlaw_2.norm"]


@pytest.mark.parametrize(
    "expr,message",
    [
        ("tbabs*powerlw", "unknown model component 'powerlw'"),
        ("powerlaw*bbodyrad", "multiplies two additive"),
        ("tbabs + powerlaw", "no additive component"),
        ("tbabs*(powerlaw", "incomplete"),
        ("tbabs*powerlaw)", "unexpected ')'"),
        ("tbabs^powerlaw", "unexpected character"),
        ("", "empty model expression"),
    ],
)
def test_bad_expressions(expr, message):
    with pytest.raises(ModelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Model(expr)


def test_parameters_defaults_freeze_and_limits():
    m = Model("tbabs*powerlaw")
    assert m.parameter_names == ["tbabs.nH", "powerlaw.PhoIndex", "powerlaw.norm"]
    assert m.value("powerlaw.PhoIndex") == 1.0 and m.spec("tbabs.nH").unit == "1e22 cm^-2"
    m.freeze("tbabs.nH", 0.2)
    assert m.parameter_names == ["powerlaw.PhoIndex", "powerlaw.norm"] and m.frozen == {"tbabs.nH": 0.2}
    m.thaw("nH")  # bare names work when unambiguous
    assert "tbabs.nH" in m.parameter_names
    with pytest.raises(ModelError, match="outside its hard limits"):
        m.freeze("powerlaw.PhoIndex", 42.0)
    with pytest.raises(ModelError, match="has no parameter 'kT'"):
        m.freeze("kT", 1.0)
    with pytest.raises(ModelError, match="ambiguous"):
        Model("powerlaw+powerlaw").freeze("PhoIndex", 2.0)


def test_frozen_parameters_are_used_in_evaluation():
    lo, hi = grid(FINE)
    m = Model("tbabs*powerlaw").freeze("tbabs.nH", 0.0)
    np.testing.assert_allclose(m.evaluate([[1.7, 1.0]], lo, hi), Model("powerlaw").evaluate([[1.7, 1.0]], lo, hi), rtol=1e-12)


def test_models_compose_with_operators():
    m = Model("tbabs") * (Model("powerlaw") + Model("bbodyrad"))
    assert m.parameter_names == ["tbabs.nH", "powerlaw.PhoIndex", "powerlaw.norm", "bbodyrad.kT", "bbodyrad.norm"]
    lo, hi = grid(FINE)
    th = [[0.3, 1.8, 2.0, 0.7, 300.0]]
    np.testing.assert_allclose(m.evaluate(th, lo, hi), Model("tbabs*(powerlaw+bbodyrad)").evaluate(th, lo, hi))


def test_theta_shape_is_checked():
    lo, hi = grid(FINE)
    with pytest.raises(ModelError, match="no additive component"):
        Model("tbabs").evaluate([[1.0]], lo, hi)
    with pytest.raises(ModelError, match=r"shape \(N, 3\)"):
        Model("tbabs*powerlaw").evaluate([[1.0, 2.0]], lo, hi)

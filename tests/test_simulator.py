"""The batched simulator against an independent per-spectrum computation, and its Poisson draws."""

from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.io import fits

from xsbi import Model, Simulator, load_spectrum
from xsbi.errors import ModelError
from xsbi.instruments import nicer_like_spectrum
from xsbi.models.xsect import cross_section

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
NICER = SHARED / "nicer"
THETA = np.array([[0.2, 1.7, 1.0], [0.1, 0.6, 30.0], [0.29, 2.45, 0.02], [0.15, 1.0, 1.0]])


def reference_tbabs_powerlaw(theta, energ_lo, energ_hi, response, exposure):
    """Plain float64 loop over spectra: analytic power law, tbabs at bin centres, dense fold."""
    sigma = cross_section("tbabs").sigma(0.5 * (energ_lo + energ_hi))
    out = []
    for nh, gamma, norm in theta:
        a = 1.0 - gamma
        pl = norm * (np.log(energ_hi / energ_lo) if a == 0 else (energ_hi**a - energ_lo**a) / a)
        flux = pl * np.exp(-nh * sigma)
        out.append(exposure * flux @ response)
    return np.array(out)


def read_nicer_response_by_hand(pha_name):
    """RMF, ARF and grouping read with astropy loops, independently of xsbi.data."""
    with fits.open(NICER / "nicer_xti_gauss_approx.rmf") as h:
        m = h["MATRIX"].data
        rmf = np.zeros((len(m), h["EBOUNDS"].header["NAXIS2"]))
        for i, row in enumerate(m):
            k = 0
            for f, n in zip(np.atleast_1d(row["F_CHAN"]), np.atleast_1d(row["N_CHAN"])):
                rmf[i, f : f + n] = row["MATRIX"][k : k + n]
                k += n
        lo, hi = m["ENERG_LO"].astype(float), m["ENERG_HI"].astype(float)
        e_min, e_max = h["EBOUNDS"].data["E_MIN"], h["EBOUNDS"].data["E_MAX"]
    with fits.open(NICER / "pre_burst_Tint200_raw.arf") as h:
        arf = h[1].data["SPECRESP"].astype(float)
    with fits.open(NICER / pha_name) as h:
        exposure = h[1].header["EXPOSURE"]
        grouping = h[1].data["GROUPING"]
    starts = np.flatnonzero(grouping == 1)
    ends = np.append(starts[1:], len(grouping))
    keep = [(s, e) for s, e in zip(starts, ends) if e_min[s] >= 0.3 - 1e-6 and e_max[e - 1] <= 10.0 + 1e-6]
    group = np.zeros((rmf.shape[1], len(keep)))
    for j, (s, e) in enumerate(keep):
        group[s:e, j] = 1.0
    return lo, hi, arf[:, None] * rmf @ group, exposure


@pytest.fixture(scope="module")
def nicer():
    if not NICER.is_dir():
        pytest.skip(f"shared NICER data not found at {NICER} (tests read ../shared/data in place)")
    name = "Reference_pha_tbabs_powerlaw_2000counts_groupconstant_5.pha"
    return load_spectrum(NICER / name).notice(0.3, 10.0), read_nicer_response_by_hand(name)


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_expected_counts_match_independent_reference_on_nicer(nicer, dtype, rtol):
    spec, (lo, hi, response, exposure) = nicer
    assert spec.n_bins == response.shape[1] == 194
    sim = Simulator(Model("tbabs*powerlaw"), spec, dtype=dtype)
    mu = sim.expected_counts(THETA)
    ref = reference_tbabs_powerlaw(THETA, lo, hi, response, exposure)
    assert mu.shape == (len(THETA), 194) and mu.dtype == (np.float64 if dtype == torch.float64 else np.float32)
    np.testing.assert_allclose(mu, ref, rtol=rtol, atol=rtol * 1e-3 * ref.max())
    # the reference spectrum was faked by XSPEC with these parameters (and the true RMF): ~2,000 counts
    assert ref[0].sum() == pytest.approx(spec.counts.sum(), rel=0.05)


def test_expected_counts_match_reference_on_builtin_instrument():
    spec = nicer_like_spectrum(exposure=2.0)
    response = spec.arf.specresp[:, None] * spec.rmf.matrix.toarray() @ spec.grouping_matrix().toarray()
    sim = Simulator(Model("tbabs*powerlaw"), spec, dtype=torch.float64)
    ref = reference_tbabs_powerlaw(THETA, spec.energ_lo, spec.energ_hi, response, 2.0)
    np.testing.assert_allclose(sim.expected_counts(THETA), ref, rtol=1e-10, atol=1e-12 * ref.max())
    # energies that cannot reach the noticed bins were dropped, exactly
    assert sim.energy_mask.sum() < len(spec.energ_lo)
    assert np.all(response[~sim.energy_mask] == 0)


def test_multicomponent_model_and_frozen_parameters():
    spec = nicer_like_spectrum()
    model = Model("tbabs*(powerlaw+bbodyrad)")
    sim = Simulator(model, spec, dtype=torch.float64)
    th = np.array([[0.25, 2.0, 0.5, 0.8, 150.0]])
    full = sim.expected_counts(th)
    model.freeze("bbodyrad.kT", 0.8)  # the simulator follows the model's current state
    np.testing.assert_allclose(sim.expected_counts(th[:, [0, 1, 2, 4]]), full, rtol=1e-12)
    response = spec.response_matrix() * spec.exposure
    flux = Model("tbabs*(powerlaw+bbodyrad)").evaluate(th, spec.energ_lo, spec.energ_hi)
    np.testing.assert_allclose(full, flux @ response, rtol=1e-10)


def test_poisson_draws_have_poisson_statistics():
    spec = nicer_like_spectrum()
    sim = Simulator(Model("tbabs*powerlaw"), spec)
    theta = np.repeat([[0.2, 1.7, 1.0]], 20000, axis=0)
    mu, x = sim.simulate(theta, seed=11)
    assert np.all(x == np.round(x)) and x.min() >= 0
    m = mu[0]
    mean = x.mean(0)
    var = x.var(0, ddof=1)
    n = len(x)
    z_mean = (mean - m) / np.sqrt(m / n)
    assert np.abs(z_mean).max() < 5 and abs(z_mean.mean()) < 0.3
    # variance of the sample variance of a Poisson: (mu + 2 mu^2 (n/(n-1))) / n approximately
    z_var = (var - m) / np.sqrt((m + 2 * m**2) / n)
    assert np.abs(z_var).max() < 5 and abs(z_var.mean()) < 0.3


def test_seeded_draws_are_reproducible_and_independent_of_chunking():
    spec = nicer_like_spectrum()
    theta = np.repeat([[0.2, 1.7, 1.0]], 1000, axis=0)
    a = Simulator(Model("tbabs*powerlaw"), spec).sample(theta, seed=3)
    b = Simulator(Model("tbabs*powerlaw"), spec, chunk_size=256).sample(theta, seed=3)
    c = Simulator(Model("tbabs*powerlaw"), spec).sample(theta, seed=4)
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.5
    assert not np.array_equal(a[:256], a[256:512])  # blocks get different streams


def test_chunks_bound_memory():
    spec = nicer_like_spectrum()
    sim = Simulator(Model("tbabs*powerlaw"), spec, chunk_size=512)
    theta = np.repeat([[0.2, 1.7, 1.0]], 3000, axis=0)
    sizes = [mu.shape[0] for _, mu in sim.iter_expected(theta)]
    assert max(sizes) == 512 and sum(sizes) == 3000
    default = Simulator(Model("tbabs*powerlaw"), spec)
    # a chunk's (chunk, n_E) float32 working arrays take at most ~6 MB each
    assert default.chunk_size * default.energy_mask.sum() * 4 <= 6 << 20


def test_torch_in_torch_out():
    spec = nicer_like_spectrum()
    sim = Simulator(Model("tbabs*powerlaw"), spec)
    mu = sim.expected_counts(torch.tensor(THETA, dtype=torch.float32))
    assert isinstance(mu, torch.Tensor) and mu.shape == (4, spec.n_bins)
    np.testing.assert_allclose(mu.numpy(), sim.expected_counts(THETA), rtol=1e-6)


def test_bad_theta_is_rejected_with_a_clear_message():
    sim = Simulator(Model("tbabs*powerlaw"), nicer_like_spectrum())
    with pytest.raises(ModelError, match=r"shape \(N, 3\)"):
        sim.expected_counts(np.ones((2, 2)))
    with pytest.raises(ModelError, match="NaN"):
        sim.expected_counts([[0.2, np.nan, 1.0]])
    with pytest.raises(ModelError, match="powerlaw.PhoIndex takes values.*outside its hard limits"):
        sim.expected_counts([[0.2, 11.0, 1.0]])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_gpu_matches_cpu():
    spec = nicer_like_spectrum()
    cpu = Simulator(Model("tbabs*powerlaw"), spec, dtype=torch.float64).expected_counts(THETA)
    gpu = Simulator(Model("tbabs*powerlaw"), spec, device="cuda").expected_counts(torch.tensor(THETA, device="cuda"))
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu, rtol=2e-5, atol=1e-8 * cpu.max())

"""Background inside the simulator: source + background regions, NPE on [S, B], vs W-stat MCMC."""

import json

import numpy as np
import pytest

import xsbi
from xsbi.data import Spectrum
from xsbi.data.writer import write_arf, write_pha, write_rmf
from xsbi.errors import DataError
from xsbi.inference import AmortizedPosterior, NPE, ParameterSpace
from xsbi.inference.restriction import CountsWindow, restrict_with_classifier
from xsbi.instruments.nicer_like import N_CHANNELS, nicer_like_response
from xsbi.likelihood import PoissonLikelihood, run_mcmc
from xsbi.pipeline import run_analysis
from xsbi.simulate import PoissonBackground, Simulator, SourceAndBackground

TRUTH = [0.2, 1.7, 1.0]
PRIORS = {"nH": {"loguniform": [0.1, 0.3]}, "PhoIndex": {"uniform": [0.5, 2.5]}, "norm": {"loguniform": [0.3, 3.0]}}
EXPOSURE = 1.25
RATIO = 0.1  # the background region is 10 times the source region (BACKSCAL)


def _empty(backscal=1.0, background=None):
    rmf, arf = nicer_like_response()
    return Spectrum(np.arange(N_CHANNELS), np.zeros(N_CHANNELS, dtype=np.int64), EXPOSURE, rmf=rmf, arf=arf,
                    backscal=backscal, background=background)


@pytest.fixture(scope="module")
def observed():
    """A 2,000-count source over a background of ~20 counts per bin in the background region."""
    bkg = _empty(backscal=1.0 / RATIO)
    spec = _empty(backscal=1.0, background=bkg).group_constant(5).notice(0.3, 10.0)
    assert np.allclose(spec.background_ratio, RATIO)
    rng = np.random.default_rng(5)
    b_true = np.full(spec.n_bins, 20.0)
    model = xsbi.Model("tbabs*powerlaw")
    mu = Simulator(model, spec, dtype=__import__("torch").float64).expected_counts(np.array([TRUTH]))[0]
    s = rng.poisson(mu + RATIO * b_true)
    b = rng.poisson(b_true)
    return spec.with_counts(s, background_counts=b), model


def test_simulated_source_region_has_the_right_moments(observed):
    obs, model = observed
    bkg = PoissonBackground(obs)
    sim = SourceAndBackground(Simulator(model, obs), bkg)
    theta = np.repeat([TRUTH], 40000, axis=0)
    mu, x = sim.simulate(theta, seed=1)
    assert x.shape == mu.shape == (40000, obs.n_bins)
    src = Simulator(model, obs).expected_counts(np.array([TRUTH]))[0]
    # b ~ Gamma(B + 1/2, 1): E[S] = mu + r (B + 1/2), Var[S] = E[S] + r^2 (B + 1/2)
    eb = obs.background_counts + 0.5
    mean, var = src + RATIO * eb, src + RATIO * eb + RATIO**2 * eb
    assert np.all(np.abs(x.mean(0) - mean) < 5 * np.sqrt(var / 40000))
    assert abs(x.var(0).sum() / var.sum() - 1) < 0.02
    # the rates vary from spectrum to spectrum: mu - source is r b with E[b] = B + 1/2, Var[b] = B + 1/2
    b = (mu - src) / RATIO
    assert np.all(np.abs(b.mean(0) - eb) < 5 * np.sqrt(eb / 40000))
    assert abs(b.var(0).sum() / eb.sum() - 1) < 0.02
    assert np.array_equal(sim.sample(theta[:300], seed=2), sim.sample(theta[:300], seed=2))
    with pytest.raises(DataError, match="no background"):
        PoissonBackground(xsbi.instruments.nicer_like_spectrum(exposure=EXPOSURE))


@pytest.fixture(scope="module")
def trained(observed):
    obs, model = observed
    prior = xsbi.JointPrior(model, PRIORS)
    bkg = PoissonBackground(obs)
    sim = SourceAndBackground(Simulator(model, obs), bkg)
    x_obs = obs.counts
    space = ParameterSpace(prior)
    restricted = restrict_with_classifier(sim, space, CountsWindow.around(x_obs.sum()), rounds=3, simulations=1000,
                                          seed=0, progress=False)
    theta = restricted.sample(10000, seed=1)
    x = sim.sample(theta, seed=2)
    post = NPE(model, prior, obs, hidden_features=40, num_transforms=4, background=bkg).append_simulations(
        theta, x).train(seed=0, progress=False, max_epochs=200)
    return post, prior


def test_npe_with_background_agrees_with_wstat_mcmc(observed, trained):
    obs, model = observed
    post, prior = trained
    samples = post.sample(obs, 20000, seed=0)  # a Spectrum: its background is checked too
    ref = run_mcmc(PoissonLikelihood(obs, model, prior), seed=0, progress=False).samples
    for i in range(3):
        sd = ref[:, i].std()
        assert abs(np.median(samples[:, i]) - np.median(ref[:, i])) < 0.5 * sd
        assert 0.7 < samples[:, i].std() / sd < 1.3
    # ignoring the background (the paper's set-up) flattens the spectrum: the ~400 background
    # counts, flat in channels, pass for hard source photons
    naive = run_mcmc(PoissonLikelihood(obs._replace(background=None), model, prior), seed=0, progress=False).samples
    assert np.median(naive[:, 1]) < np.median(ref[:, 1]) - 3 * ref[:, 1].std()


def test_background_network_checks_what_it_is_applied_to(observed, trained, tmp_path):
    obs, _ = observed
    post, _ = trained
    assert post.background["counts"] == int(obs.background_counts.sum())
    loaded = AmortizedPosterior.load(post.save(tmp_path / "bkg.pt"))
    assert loaded.background == post.background
    np.testing.assert_allclose(loaded.log_prob([TRUTH], obs), post.log_prob([TRUTH], obs), rtol=1e-5)
    with pytest.raises(DataError, match="trained with a background"):
        post.sample(xsbi.instruments.nicer_like_spectrum(exposure=EXPOSURE), 5)
    with pytest.raises(DataError, match="different background"):
        post.sample(obs.with_counts(obs.counts, background_counts=obs.background_counts + 1), 5)
    with pytest.raises(DataError, match="background scaling"):
        post.sample(obs._replace(backscal=2.0), 5)


def test_xsbi_run_simulates_the_background_of_a_pha_file(observed, tmp_path):
    obs, _ = observed
    rmf, arf = nicer_like_response()
    write_rmf(rmf, tmp_path / "r.rmf")
    write_arf(arf, tmp_path / "r.arf")
    write_pha(obs.background, tmp_path / "bkg.pha", counts=None, respfile="r.rmf")
    write_pha(obs, tmp_path / "src.pha", respfile="r.rmf", ancrfile="r.arf", backfile="bkg.pha")
    loaded = xsbi.load_spectrum(tmp_path / "src.pha").group_constant(5).notice(0.3, 10.0)
    assert np.array_equal(loaded.background_counts, obs.background_counts)
    cfg = {"data": {"spectrum": str(tmp_path / "src.pha"), "group": {"constant": 5}},
           "model": "tbabs*powerlaw",
           "priors": {"tbabs.nH": PRIORS["nH"], "powerlaw.PhoIndex": PRIORS["PhoIndex"],
                      "powerlaw.norm": PRIORS["norm"]},
           "restriction": {"rounds": 3, "simulations": 1000},
           "inference": {"simulations": 2000, "hidden_features": 20, "num_transforms": 2, "max_epochs": 40,
                         "posterior_samples": 4000, "test_spectra": 20}, "seed": 1}
    summary = run_analysis(cfg, tmp_path / "out", progress=False)
    assert summary["background_model"]["counts"] == int(obs.background_counts.sum())
    assert summary["spectrum"]["background"]
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert abs(on_disk["parameters"]["powerlaw.PhoIndex"]["median"] - 1.7) < 4 * on_disk["parameters"]["powerlaw.PhoIndex"]["std"]
    post = AmortizedPosterior.load(tmp_path / "out" / "network.pt")
    assert post.background["counts_hash"] == PoissonBackground(loaded).identity()["counts_hash"]
    assert summary["importance_sampling"]["ess"] > 100

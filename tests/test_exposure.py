"""One network for many exposures: simulator scaling, the exposure input, checks, persistence,
configuration, `xsbi run`/`xsbi batch`, and the raw posterior against MCMC at both ends."""

import math

import numpy as np
import pytest
import torch

import xsbi
from xsbi.batch import run_batch, run_batch_counts
from xsbi.cli import main
from xsbi.config import ConfigError, load_config
from xsbi.data import Spectrum
from xsbi.data.writer import write_arf, write_pha, write_rmf
from xsbi.errors import DataError, XsbiError
from xsbi.inference import AmortizedPosterior
from xsbi.inference.npe import NPE
from xsbi.instruments import nicer_like_spectrum
from xsbi.instruments.nicer_like import N_CHANNELS, nicer_like_response
from xsbi.simulate import PoissonBackground, Simulator, SourceAndBackground, sample_exposures

TRUTH = [0.2, 1.7, 1.0]
RANGE = (1.0, 4.0)  # s: ~1,600 to ~6,400 counts for the truth on the NICER-like response
T_REF = 2.0
TINY = dict(hidden_features=10, num_transforms=1)
PRIORS = {"nH": {"loguniform": [0.08, 0.4]}, "PhoIndex": {"uniform": [1.2, 2.2]}, "norm": {"loguniform": [0.6, 1.6]}}


def _tiny_network(spec, n=600, exposure_range=RANGE, background=None, sim=None, seed=0):
    model = xsbi.Model("tbabs*powerlaw")
    prior = xsbi.JointPrior(model, PRIORS)
    sim = sim or Simulator(model, spec)
    theta = prior.sample(n, seed=seed + 1)
    t = sample_exposures(n, *exposure_range, seed=seed + 2)
    x = sim.sample(theta, seed=seed + 3, exposure=t)
    npe = NPE(model, prior, spec, exposure_range=exposure_range, background=background, **TINY)
    return npe.append_simulations(theta, x, exposure=t).train(seed=seed, progress=False, max_epochs=3), t


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    spec = nicer_like_spectrum(exposure=T_REF)
    post, t = _tiny_network(spec)
    return spec, post, t


# ------------------------------------------------------------------------------ simulator
def test_expected_counts_scale_with_exposure_as_the_folded_model():
    model = xsbi.Model("tbabs*powerlaw")
    sim = Simulator(model, nicer_like_spectrum(exposure=T_REF), dtype=torch.float64)
    theta = np.array([TRUTH, [0.1, 2.1, 0.7]])
    mu = sim.expected_counts(theta, exposure=[1.0, 3.7])
    for i, t in enumerate((1.0, 3.7)):
        # the analytic expectation: the model folded through the response of a spectrum of exposure t
        exact = Simulator(model, nicer_like_spectrum(exposure=t), dtype=torch.float64).expected_counts(theta[i:i + 1])[0]
        np.testing.assert_allclose(mu[i], exact, rtol=1e-10)
    np.testing.assert_allclose(sim.expected_counts(theta, exposure=2.5), sim.expected_counts(theta) * 1.25, rtol=1e-12)
    # Poisson draws have those means: total counts over many draws at 1 s and 4 s
    n = 2000
    t = np.repeat([1.0, 4.0], n)
    x = sim.sample(np.repeat([TRUTH], 2 * n, axis=0), seed=1, exposure=t)
    total = sim.expected_counts([TRUTH])[0].sum() / T_REF
    for k, tk in enumerate((1.0, 4.0)):
        m = x[k * n:(k + 1) * n].sum(1).mean()
        assert abs(m - total * tk) < 4 * math.sqrt(total * tk / n)
    with pytest.raises(xsbi.ModelError, match="one per spectrum"):
        sim.expected_counts(theta, exposure=[1.0, 2.0, 3.0])
    with pytest.raises(xsbi.ModelError, match="positive"):
        sim.expected_counts(theta, exposure=[1.0, -2.0])


def test_exposures_are_log_uniform_and_seeded():
    t = sample_exposures(20000, 1000.0, 4000.0, seed=3)
    assert t.min() >= 1000 and t.max() <= 4000
    np.testing.assert_array_equal(t, sample_exposures(20000, 1000.0, 4000.0, seed=3))
    u = (np.log(t) - math.log(1000)) / math.log(4)  # uniform on [0, 1] if log-uniform
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.003
    assert np.all(sample_exposures(5, 7.0, 7.0, seed=0) == 7.0)
    with pytest.raises(xsbi.ModelError, match="0 < low <= high"):
        sample_exposures(5, 4.0, 1.0)


def test_background_in_the_source_region_scales_with_the_source_exposure():
    rmf, arf = nicer_like_response()

    def empty(exposure, backscal=1.0, background=None):
        return Spectrum(np.arange(N_CHANNELS), np.zeros(N_CHANNELS, dtype=np.int64), exposure, rmf=rmf, arf=arf,
                        backscal=backscal, background=background)

    bkg = empty(1.25, backscal=10.0)
    spec = empty(1.25, background=bkg).group_constant(5).notice(0.3, 10.0)
    obs = spec.with_counts(np.zeros(spec.n_bins, dtype=np.int64), background_counts=np.full(spec.n_bins, 20))
    model = xsbi.Model("tbabs*powerlaw")
    sim = SourceAndBackground(Simulator(model, obs), PoissonBackground(obs))
    n = 20000
    _, x = sim.simulate(np.repeat([TRUTH], n, axis=0), seed=2, exposure=2.5)
    src = Simulator(model, obs).expected_counts([TRUTH])[0]
    # source and the source region's background both double; the background region is as observed
    expected = 2.0 * (src + 0.1 * (obs.background_counts + 0.5))
    assert abs(x.sum(1).mean() / expected.sum() - 1) < 4 / math.sqrt(expected.sum() * n)
    # a spectrum of 2.5 s with this background has twice the scaling: the network accepts it
    post, _ = _tiny_network(obs, n=300, exposure_range=(1.0, 4.0), background=PoissonBackground(obs), sim=sim)
    longer = empty(2.5, background=bkg).group_constant(5).notice(0.3, 10.0)
    longer = longer.with_counts(np.zeros(spec.n_bins, dtype=np.int64), background_counts=obs.background_counts)
    post.check_compatible(longer)
    other = empty(2.5, backscal=1.0, background=empty(1.25, backscal=5.0)).group_constant(5).notice(0.3, 10.0)
    other = other.with_counts(np.zeros(spec.n_bins, dtype=np.int64), background_counts=obs.background_counts)
    with pytest.raises(DataError, match="background scaling"):
        post.check_compatible(other)


# ------------------------------------------------------------------------------ network input
def test_exposure_feature_is_appended_standardised(tiny):
    spec, post, t = tiny
    e = post.meta["exposure"]
    assert e["range"] == list(RANGE)
    assert e["mean"] == pytest.approx(np.log10(t).mean(), rel=1e-12)
    assert e["std"] == pytest.approx(np.log10(t).std(), rel=1e-12)
    counts = Simulator(post.space.prior.model, spec).sample([TRUTH, TRUTH], seed=4)
    x = post._x(counts, exposure=[1.0, 3.0])
    assert x.shape == (2, spec.n_bins + 1)
    torch.testing.assert_close(x[:, :-1], post.preprocessor(torch.as_tensor(counts, dtype=torch.float32)))
    want = (np.log10([1.0, 3.0]) - e["mean"]) / e["std"]
    np.testing.assert_allclose(x[:, -1].numpy(), want, rtol=1e-6)
    # a Spectrum brings its own exposure; counts alone default to the training spectrum's
    s3 = nicer_like_spectrum(exposure=3.0).with_counts(counts[0].astype(np.int64))
    np.testing.assert_allclose(post._x(s3)[0, -1].item(), want[1], rtol=1e-6)
    np.testing.assert_allclose(post._x(counts[0])[0, -1].item(), (math.log10(T_REF) - e["mean"]) / e["std"], rtol=1e-6)
    # and the network reads it: the same counts at another exposure give another posterior
    lp1, lp3 = post.log_prob([TRUTH], counts[0], exposure=1.0), post.log_prob([TRUTH], counts[0], exposure=3.0)
    assert lp1[0] != pytest.approx(lp3[0], abs=1e-4)


def test_npe_requires_exposures_inside_its_range():
    spec = nicer_like_spectrum(exposure=T_REF)
    model = xsbi.Model("tbabs*powerlaw")
    prior = xsbi.JointPrior(model, PRIORS)
    theta, x = prior.sample(10, seed=0), np.zeros((10, spec.n_bins))
    npe = NPE(model, prior, spec, exposure_range=RANGE, **TINY)
    with pytest.raises(XsbiError, match="give each simulation's exposure"):
        npe.append_simulations(theta, x)
    with pytest.raises(XsbiError, match=r"must lie in exposure_range \[1, 4\]"):
        npe.append_simulations(theta, x, exposure=np.full(10, 5.0))
    with pytest.raises(XsbiError, match="not conditioned on exposure"):
        NPE(model, prior, spec, **TINY).append_simulations(theta, x, exposure=np.full(10, 2.0))
    for bad in [(0, 4), (4, 1), (1, float("nan")), (1,)]:
        with pytest.raises(XsbiError, match="exposure_range"):
            NPE(model, prior, spec, exposure_range=bad, **TINY)


def test_check_compatible_accepts_the_range_only(tiny):
    _, post, _ = tiny
    for t in (1.0, 2.7, 4.0, 4.0 * (1 + 1e-7)):
        post.check_compatible(nicer_like_spectrum(exposure=t))
    for t, shown in ((5.0, "5"), (0.9, "0.9")):
        with pytest.raises(DataError, match=f"exposure {shown} s is outside the range 1-4 s the network was trained "
                                            "for: retrain with inference.exposure covering it"):
            post.check_compatible(nicer_like_spectrum(exposure=t))
    counts = np.zeros(post.meta["spectrum"]["n_bins"])
    with pytest.raises(DataError, match="outside the range"):
        post.sample(counts, 10, exposure=5.0)
    with pytest.raises(DataError, match="outside the range"):
        post.sample_batched(np.stack([counts, counts]), 10, exposure=[2.0, 0.5])


def test_save_load_round_trips_range_and_standardisation(tiny, tmp_path):
    spec, post, _ = tiny
    loaded = AmortizedPosterior.load(post.save(tmp_path / "net.pt"))
    assert loaded.exposure_range == RANGE and loaded.meta["exposure"] == post.meta["exposure"]
    counts = Simulator(post.space.prior.model, spec).sample([TRUTH], seed=5)[0]
    theta = post.sample(counts, 50, seed=1, exposure=1.5)
    for t in (1.0, 3.5):
        np.testing.assert_allclose(loaded.log_prob(theta, counts, exposure=t), post.log_prob(theta, counts, exposure=t),
                                   rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loaded.sample(counts, 50, seed=1, exposure=1.5), theta, rtol=1e-5)
    with pytest.raises(DataError, match="outside the range"):
        loaded.check_compatible(nicer_like_spectrum(exposure=4.5))


# ------------------------------------------------------------------------------ configuration
CONFIG = {"model": "tbabs*powerlaw", "priors": {"nH": 0.2, "PhoIndex": {"uniform": [1, 3]}, "norm": {"loguniform": [0.1, 10]}}}


def test_config_exposure_is_validated_with_its_location(tmp_path):
    pha = tmp_path / "obs.pha"
    pha.write_bytes(b"")
    base = {**CONFIG, "data": {"spectrum": str(pha)}}
    assert load_config(base).inference.exposure is None
    cfg = load_config({**base, "inference": {"exposure": [1000, "4e3"]}})
    assert cfg.inference.exposure == (1000.0, 4000.0)
    assert load_config(cfg.to_dict()) == cfg
    assert load_config({**base, "inference": {"exposure": [500, 500]}}).inference.exposure == (500.0, 500.0)
    for bad in ([0, 10], [5, 1], [-1, 3], "abc", [1, 2, 3], [1, "x"], 1000):
        with pytest.raises(ConfigError) as exc:
            load_config({**base, "inference": {"exposure": bad}})
        assert exc.value.problems[0][0] == "inference.exposure"
        assert "[tmin, tmax] exposures in seconds with 0 < tmin <= tmax" in exc.value.problems[0][1]
    with pytest.raises(ConfigError, match="inference.exposure: applies to inference.method npe only"):
        load_config({**base, "inference": {"exposure": [1, 2], "method": "snpe"}})


def test_run_refuses_an_observation_outside_the_range_before_simulating(tmp_path, monkeypatch):
    from xsbi import pipeline
    from xsbi.demo import write_demo_data

    pha = write_demo_data(tmp_path / "demo", seed=0)
    calls = []
    monkeypatch.setattr(pipeline, "_restrict", lambda *a, **k: calls.append(1))
    exposure = xsbi.load_spectrum(pha).exposure
    cfg = {**CONFIG, "data": {"spectrum": str(pha)}, "inference": {"exposure": [3 * exposure, 6 * exposure]}}
    with pytest.raises(ConfigError, match=f"the observation's exposure {exposure:g} s is outside"):
        pipeline.run_analysis(cfg, tmp_path / "out", progress=False)
    assert not calls


def test_run_trains_an_exposure_conditioned_network_and_uses_the_observation_exposure(tmp_path):
    from xsbi.demo import write_demo_data
    from xsbi.pipeline import run_analysis

    pha = write_demo_data(tmp_path / "demo", seed=0)
    t_obs = xsbi.load_spectrum(pha).exposure
    cfg = {"data": {"spectrum": str(pha)}, "model": "tbabs*powerlaw",
           "priors": {"nH": {"loguniform": [0.1, 0.3]}, "PhoIndex": {"uniform": [0.5, 2.5]},
                      "norm": {"loguniform": [0.01, 100]}},
           "restriction": {"rounds": 3, "simulations": 1000},
           "inference": {"simulations": 2000, "hidden_features": 20, "num_transforms": 2, "max_epochs": 30,
                         "posterior_samples": 2000, "test_spectra": 20, "exposure": [t_obs / 2, 2 * t_obs]},
           "seed": 3, "plots": False}
    summary = run_analysis(cfg, tmp_path / "out", progress=False)
    assert summary["exposure_conditioning"]["range"] == [t_obs / 2, 2 * t_obs]
    net = AmortizedPosterior.load(tmp_path / "out" / "network.pt")
    assert net.exposure_range == (t_obs / 2, 2 * t_obs) and net.reference_exposure == t_obs
    # the raw network was read at the observation's exposure: its flux agrees with the exact
    # posterior's (read at 2 t_obs, for instance, it would be halved)
    npe_norm, exact = summary["npe_parameters"]["powerlaw.norm"], summary["parameters"]["powerlaw.norm"]
    assert abs(math.log(npe_norm["median"] / exact["median"])) < 0.1, (npe_norm, exact)
    assert abs(summary["best_fit"]["cstat"] - summary["best_fit"]["expected_cstat"]) < 5 * summary["best_fit"]["cstat_std"]


# ------------------------------------------------------------------------------ xsbi batch
def test_batch_processes_in_range_exposures_and_skips_the_others(tmp_path, capsys):
    torch.manual_seed(0)
    base = nicer_like_spectrum(exposure=T_REF)
    write_rmf(base.rmf, tmp_path / "a.rmf")
    write_arf(base.arf, tmp_path / "a.arf")
    model = xsbi.Model("tbabs*powerlaw")
    sim = Simulator(model, base)
    files = {}
    for t in (1.0, 3.9, 2.0, 5.0, 0.5):
        c = sim.sample([TRUTH], seed=int(10 * t), exposure=t)[0].astype(np.int64)
        files[t] = write_pha(nicer_like_spectrum(exposure=t).with_counts(c), tmp_path / f"t{t}.pha",
                             respfile=tmp_path / "a.rmf", ancrfile=tmp_path / "a.arf")
    # trained on the set-up as read back from a file (float32 response)
    spec = xsbi.load_spectrum(files[2.0]).notice(0.3, 10.0)
    post, _ = _tiny_network(spec, n=3000)
    net = post.save(tmp_path / "network.pt")
    order = [1.0, 3.9, 5.0, 2.0, 0.5]
    r = run_batch(net, [files[t] for t in order], None, n_samples=400, progress=False, prefetch=0, workers=1)
    assert (r.ok, r.skipped) == (3, 2) and r.reasons == {"exposure outside the trained range": 2}
    rows = {row[0]: dict(zip(r.columns, row)) for row in r.rows}
    for t in order:
        row = rows[str(files[t])]
        assert row["exposure"] == pytest.approx(t)
        if t in (5.0, 0.5):
            assert row["status"] == "skipped"
            assert row["reason"] == (f"not trained for this spectrum: exposure outside the trained range ({t:g} s; "
                                     "the network covers 1-4 s)")
        else:
            assert row["status"] == "ok"
            # the best fit is folded at the spectrum's exposure: with a wrong one its C-stat
            # would be off by hundreds of sigma (a factor 2 in counts)
            assert abs(row["cstat_sigma"]) < 5, (t, row)
            assert row["powerlaw.norm_q16"] < 1.0 * 1.15 and row["powerlaw.norm_q84"] > 1.0 / 1.15
    # in-memory counts with their exposures
    counts = [sim.sample([TRUTH], seed=1, exposure=t)[0] for t in (1.5, 4.5)]
    rc = run_batch_counts(post, counts, spec, exposures=[1.5, 4.5], n_samples=200)
    assert [row[1] for row in rc.rows] == ["ok", "skipped"]
    assert abs(dict(zip(rc.columns, rc.rows[0]))["cstat_sigma"]) < 5
    # the command line says why
    assert main(["batch", str(net), str(files[1.0]), str(files[5.0]), "--out", str(tmp_path / "table"),
                 "--quiet", "--samples", "200"]) == 0
    assert "1 ok, 1 skipped (1 exposure outside the trained range)" in capsys.readouterr().out


# ------------------------------------------------------------------------------ accuracy
@pytest.fixture(scope="module")
def conditioned():
    """One network over a factor 4 in exposure (20,000 simulations, MAF 5 x 50, ~40 s on a core)."""
    torch.manual_seed(0)
    model = xsbi.Model("tbabs*powerlaw")
    prior = xsbi.JointPrior(model, PRIORS)
    ref = nicer_like_spectrum(exposure=T_REF)
    sim = Simulator(model, ref)
    n = 20000
    theta = prior.sample(n, seed=1)
    t = sample_exposures(n, *RANGE, seed=2)
    x = sim.sample(theta, seed=3, exposure=t)
    post = NPE(model, prior, ref, exposure_range=RANGE).append_simulations(theta, x, exposure=t).train(
        seed=0, progress=False)
    return post, model, prior, sim


def test_one_network_is_calibrated_over_the_range_and_narrows_like_inverse_sqrt_exposure(conditioned):
    """Judged over many spectra, not one: a single raw network can be off by a few tenths of a
    sigma on a given spectrum (importance sampling, on in `xsbi run`, removes that), but an
    amortized network must be calibrated wherever it is used, and its widths must follow the
    information in the spectrum, which grows like the exposure."""
    post, model, prior, sim = conditioned
    space = post.space
    n = 300
    theta = prior.sample(n, seed=11)
    t = sample_exposures(n, *RANGE, seed=12)
    x = sim.sample(theta, seed=13, exposure=t)
    draws = post.sample_batched(x, 1000, seed=0, exposure=t)
    q16, q84 = np.percentile(space.to_phi(draws.reshape(-1, space.dim)).reshape(draws.shape), [15.87, 84.13], axis=1)
    truth = space.to_phi(theta)
    inside = (truth >= q16) & (truth <= q84)
    coverage = inside.mean(axis=0)
    # 300 spectra: the binomial sd of a 68% coverage is 2.7%
    assert np.all((coverage > 0.58) & (coverage < 0.78)), coverage
    # and in each half of the range: a network blind to the exposure would put the norm (counts per
    # second) off by up to a factor 2 at the ends, far outside its few-per-cent intervals
    short = t < np.sqrt(RANGE[0] * RANGE[1])
    cov_short, cov_long = inside[short].mean(axis=0), inside[~short].mean(axis=0)
    print(f"68% coverage, short half {np.round(cov_short, 3)}, long half {np.round(cov_long, 3)}")
    assert np.all((cov_short > 0.5) & (cov_short < 0.86) & (cov_long > 0.5) & (cov_long < 0.86))
    # the same parameters observed 1 s and 4 s: PhoIndex intervals halve (1/sqrt(T))
    th = prior.sample(100, seed=14)
    widths = []
    for k, texp in enumerate(RANGE):
        d = post.sample_batched(sim.sample(th, seed=15 + k, exposure=texp), 1000, seed=1, exposure=texp)
        p16, p84 = np.percentile(d[:, :, 1], [15.87, 84.13], axis=1)
        widths.append(p84 - p16)
    ratio = float(np.median(widths[0] / widths[1]))
    print(f"68% coverage {np.round(coverage, 3)}; PhoIndex width ratio 1 s / 4 s {ratio:.2f}")
    # the exact posteriors narrow by ~1.96 here (emcee at both ends of one spectrum); this network
    # narrows by ~1.3: it is too narrow at 1 s and too wide at 4 s (PhoIndex coverage 57% and 75%
    # in the two halves), a limit documented in docs/exposure.md.  Not narrowing at all, ratio ~1,
    # would mean the network ignores how much the spectrum constrains the slope.
    assert 1.2 < ratio < 2.4, ratio

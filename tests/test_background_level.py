"""One network for many background levels: simulation, the level input, recovery and calibration
across levels, compatibility checks, `xsbi batch`, configuration, persistence."""

import math

import numpy as np
import pytest
import torch

import xsbi
from xsbi.batch import run_batch, run_batch_counts
from xsbi.config import ConfigError, load_config
from xsbi.data import Spectrum
from xsbi.data.writer import write_arf, write_pha, write_rmf
from xsbi.errors import DataError, XsbiError
from xsbi.inference import AmortizedPosterior
from xsbi.inference.npe import NPE
from xsbi.inference.posterior import background_shape_pvalue
from xsbi.instruments.nicer_like import N_CHANNELS, nicer_like_response
from xsbi.simulate import PoissonBackground, Simulator, SourceAndBackground, sample_background_levels

TRUTH = [0.2, 1.7, 1.0]
PRIORS = {"nH": {"loguniform": [0.08, 0.4]}, "PhoIndex": {"uniform": [1.2, 2.2]}, "norm": {"loguniform": [0.6, 1.6]}}
LEVELS = (0.5, 2.0)
EXPOSURE = 1.25  # s
BACKSCAL_RATIO = 0.1  # source / background region
SMALL = dict(hidden_features=50, num_transforms=4)


def _setup(tmp_path):
    """NICER-like grouped spectrum with a background region 10x the source region's, the
    background rates ``b0`` (background region, per grouped bin, falling with energy) and the
    training spectrum (its background a Poisson draw of ``b0``), written to ``tmp_path`` and read
    back as `xsbi batch` reads files (``r.rmf``, ``r.arf`` there serve other spectra)."""
    rmf, arf = nicer_like_response()

    def empty(backscal, background=None):
        return Spectrum(np.arange(N_CHANNELS), np.zeros(N_CHANNELS, dtype=np.int64), EXPOSURE, rmf=rmf, arf=arf,
                        backscal=backscal, background=background)

    grouped = empty(1.0, background=empty(1.0 / BACKSCAL_RATIO)).group_constant(5).notice(0.3, 10.0)
    e_mid = np.asarray(grouped.energy_bounds).mean(1)
    b0 = 60.0 * (e_mid / 2.0) ** -0.7
    rng = np.random.default_rng(11)
    model = xsbi.Model("tbabs*powerlaw")
    mu = Simulator(model, grouped, dtype=torch.float64).expected_counts(np.array([TRUTH]))[0]
    write_rmf(rmf, tmp_path / "r.rmf")
    write_arf(arf, tmp_path / "r.arf")
    path = _write(tmp_path, grouped, "train", rng.poisson(mu + BACKSCAL_RATIO * b0), rng.poisson(b0))
    spec = xsbi.load_spectrum(path).notice(0.3, 10.0)
    return model, spec, spec, b0


def _write(tmp_path, grouped, name, source, background):
    obs = grouped.with_counts(source, background_counts=background)
    write_pha(obs.background, tmp_path / f"{name}_bkg.pha", respfile="r.rmf")
    return write_pha(obs, tmp_path / f"{name}.pha", respfile="r.rmf", ancrfile="r.arf", backfile=f"{name}_bkg.pha")


def _observe(grouped, model, theta, levels, b0, seed):
    """Source and background counts of spectra whose true background is ``level x b0``."""
    rng = np.random.default_rng(seed)
    mu = Simulator(model, grouped, dtype=torch.float64).expected_counts(np.atleast_2d(theta))
    lv = np.asarray(levels, dtype=np.float64)[:, None]
    return rng.poisson(mu + BACKSCAL_RATIO * lv * b0), rng.poisson(lv * b0 * np.ones_like(mu))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    directory = tmp_path_factory.mktemp("background_level")
    model, grouped, spec, b0 = _setup(directory)
    prior = xsbi.JointPrior(model, PRIORS)
    bkg = PoissonBackground(spec)
    n = 15000  # fewer (4,000) give networks whose calibration depends on the training seed
    theta = prior.sample(n, seed=1)
    levels = sample_background_levels(n, *LEVELS, seed=2)
    x = SourceAndBackground(Simulator(model, spec), bkg).sample(theta, seed=3, background_level=levels)
    post = NPE(model, prior, spec, background=bkg, background_level=LEVELS, **SMALL).append_simulations(
        theta, x, background_level=levels).train(seed=0, progress=False, max_epochs=200)
    return dict(model=model, prior=prior, grouped=grouped, spec=spec, b0=b0, bkg=bkg, post=post, directory=directory)


# ------------------------------------------------------------------------------ simulation
def test_source_region_counts_scale_with_the_background_level(tmp_path):
    model, grouped, spec, b0 = _setup(tmp_path)
    sim = SourceAndBackground(Simulator(model, spec, dtype=torch.float64), PoissonBackground(spec))
    n = 3000
    levels = np.repeat([0.5, 2.0], n)
    mu, x = sim.simulate(np.repeat([TRUTH], 2 * n, axis=0), seed=4, background_level=levels)
    src = sim.expected_counts(np.array([TRUTH]))[0].sum()
    B = np.asarray(spec.background_counts, dtype=np.float64)
    r = np.asarray(spec.background_ratio, dtype=np.float64) * np.ones_like(B)
    for k, lv in enumerate((0.5, 2.0)):
        # analytic: E[b_i] = B_i + 1/2 (Gamma), so E[total] = source + level * sum(r_i (B_i + 1/2))
        exact = src + lv * float(np.sum(r * (B + 0.5)))
        sd_mu = lv * math.sqrt(float(np.sum(r**2 * (B + 0.5))))  # Gamma variance B_i + 1/2
        rows = slice(k * n, (k + 1) * n)
        assert abs(mu[rows].sum(1).mean() - exact) < 4 * sd_mu / math.sqrt(n)
        assert abs(x[rows].sum(1).mean() - exact) < 4 * math.sqrt(sd_mu**2 + exact) / math.sqrt(n)
    # a level of 1 is the observed background, same seed same draws
    np.testing.assert_array_equal(sim.sample([TRUTH], seed=5), sim.sample([TRUTH], seed=5, background_level=1.0))
    with pytest.raises(DataError, match="one per spectrum"):
        sim.sample([TRUTH, TRUTH], seed=0, background_level=[1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="positive"):
        sim.sample([TRUTH], seed=0, background_level=-1.0)


def test_levels_are_log_uniform_and_seeded():
    lv = sample_background_levels(20000, 0.5, 2.0, seed=3)
    assert lv.min() >= 0.5 and lv.max() <= 2.0
    np.testing.assert_array_equal(lv, sample_background_levels(20000, 0.5, 2.0, seed=3))
    u = np.log(lv / 0.5) / math.log(4)  # uniform on [0, 1] if log-uniform
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.003
    with pytest.raises(DataError, match="0 < low <= high"):
        sample_background_levels(5, 2.0, 1.0)


def test_shape_test_is_uniform_under_the_same_shape_and_rejects_another(tmp_path):
    _, _, spec, b0 = _setup(tmp_path)
    rng = np.random.default_rng(0)
    ref = np.asarray(spec.background_counts, dtype=np.float64)
    # the same shape at level 1.7, both spectra Poisson draws: p-values roughly uniform (few false
    # refusals); the level is measured from the totals
    pairs = [(rng.poisson(1.7 * b0), rng.poisson(b0)) for _ in range(300)]
    same = [background_shape_pvalue(new, old, new.sum() / old.sum()) for new, old in pairs]
    assert 0.02 < np.mean(np.array(same) < 0.1) < 0.2
    assert np.mean(np.array(same) < 1e-3) < 0.02
    ramp = np.linspace(0.3, 3.0, len(b0))
    other = rng.poisson(b0 * ramp * b0.sum() / (b0 * ramp).sum())
    assert background_shape_pvalue(other, ref, other.sum() / ref.sum()) < 1e-6


# ------------------------------------------------------------------------------ NPE inputs
def test_npe_checks_the_level_range_and_the_simulation_levels(tmp_path):
    model, _, spec, _ = _setup(tmp_path)
    prior = xsbi.JointPrior(model, PRIORS)
    bkg = PoissonBackground(spec)
    with pytest.raises(XsbiError, match="background_level needs a background"):
        NPE(model, prior, spec, background_level=LEVELS)
    for bad in [(0, 2), (2, 1), (-1, 1), (1, math.inf), "ab", (1,)]:
        with pytest.raises(XsbiError, match="background_level must be"):
            NPE(model, prior, spec, background=bkg, background_level=bad)
    theta = prior.sample(4, seed=0)
    x = np.zeros((4, spec.n_bins))
    npe = NPE(model, prior, spec, background=bkg, background_level=LEVELS)
    with pytest.raises(XsbiError, match="give each simulation's level"):
        npe.append_simulations(theta, x)
    with pytest.raises(XsbiError, match=r"must lie in background_level \[0.5, 2\]"):
        npe.append_simulations(theta, x, background_level=[1, 1, 1, 3])
    with pytest.raises(XsbiError, match="not conditioned on the background level"):
        NPE(model, prior, spec, background=bkg).append_simulations(theta, x, background_level=1.0)


def test_level_feature_follows_the_counts_and_the_spectrum_brings_its_level(trained):
    post, spec = trained["post"], trained["spec"]
    meta = post.meta["background_level"]
    assert meta["range"] == list(LEVELS) and post.background_level_range == LEVELS
    # standardised log10 levels of the training set: log-uniform on [0.5, 2] has mean 0, std log10(4)/sqrt(12)
    assert abs(meta["mean"]) < 0.01 and abs(meta["std"] - math.log10(4) / math.sqrt(12)) < 0.005
    x = post._x(spec.counts, background_level=[2.0])
    base = post.preprocessor(torch.as_tensor(np.asarray(spec.counts, dtype=np.float32))[None])
    assert x.shape[1] == base.shape[1] + 1
    torch.testing.assert_close(x[:, :-1], base)
    assert float(x[0, -1]) == pytest.approx((math.log10(2.0) - meta["mean"]) / meta["std"], rel=1e-6)
    # counts default to level 1; the training spectrum's measured level is 1
    assert float(post._x(spec.counts)[0, -1]) == pytest.approx(-meta["mean"] / meta["std"], rel=1e-5, abs=1e-6)
    assert post.spectrum_background_level(spec) == pytest.approx(1.0, rel=1e-12)
    # a Spectrum at 1.8x reads as counts with its measured level
    s, b = _observe(trained["grouped"], trained["model"], TRUTH, [1.8], trained["b0"], seed=7)
    obs = trained["grouped"].with_counts(s[0], background_counts=b[0])
    level = post.spectrum_background_level(obs)
    assert level == pytest.approx(b[0].sum() / spec.background_counts.sum(), rel=1e-12)
    np.testing.assert_array_equal(post.sample(obs, 300, seed=1), post.sample(s[0], 300, seed=1, background_level=level))
    np.testing.assert_allclose(post.log_prob([TRUTH], obs), post.log_prob([TRUTH], s[0], background_level=level))
    with pytest.raises(DataError, match="outside the range 0.5-2"):
        post.sample(s[0], 10, background_level=2.5)
    with pytest.raises(DataError, match="given for a spectrum whose background is at level"):
        post.sample(obs, 10, background_level=1.0)


# ------------------------------------------------------------------------------ calibration
def _interval(draws, q):
    return np.quantile(draws, [(1 - q) / 2, (1 + q) / 2], axis=1)  # (2, M, d)


def test_recovers_the_truth_at_low_and_high_levels_and_reads_the_level(trained):
    post, model, grouped, b0 = trained["post"], trained["model"], trained["grouped"], trained["b0"]
    m = 60
    for lv, seed in ((0.6, 20), (1.8, 21)):
        s, b = _observe(grouped, model, np.repeat([TRUTH], m, axis=0), np.full(m, lv), b0, seed)
        measured = b.sum(1) / trained["spec"].background_counts.sum()
        draws = post.sample_batched(s, 1000, seed=seed, background_level=measured)
        lo68, hi68 = _interval(draws, 0.68)
        lo95, hi95 = _interval(draws, 0.95)
        inside68 = (lo68 <= TRUTH) & (TRUTH <= hi68)
        inside95 = (lo95 <= TRUTH) & (TRUTH <= hi95)
        assert 0.5 < inside68.mean() < 0.86, (lv, inside68.mean(0))
        assert inside95.mean() > 0.85, (lv, inside95.mean(0))
    # the 1.8x spectra read as if their background were 0.6x: the background's counts are then
    # attributed to the source, which looks brighter and better measured than it is
    wrong = post.sample_batched(s, 1000, seed=seed, background_level=0.6)
    width, width_wrong = (np.median(np.diff(_interval(d, 0.68), axis=0)[0], 0) for d in (draws, wrong))
    assert np.all(width_wrong < width), (width, width_wrong)
    # squared biases of the median medians in units of the (right) widths, summed over parameters
    z, z_wrong = ((((np.median(np.median(d, 1), 0) - TRUTH) / width) ** 2).sum() for d in (draws, wrong))
    assert z < z_wrong, (z, z_wrong)


def test_calibrated_over_the_level_range(trained):
    post, model, grouped, b0, prior = (trained[k] for k in ("post", "model", "grouped", "b0", "prior"))
    m = 200
    theta = prior.sample(m, seed=30)
    levels = sample_background_levels(m, 0.55, 1.8, seed=31)
    s, b = _observe(grouped, model, theta, levels, b0, seed=32)
    measured = b.sum(1) / trained["spec"].background_counts.sum()
    draws = post.sample_batched(s, 1000, seed=33, background_level=measured)
    lo, hi = _interval(draws, 0.68)
    coverage = ((lo <= theta) & (theta <= hi)).mean(0)
    assert np.all((0.55 < coverage) & (coverage < 0.8)), coverage
    lo, hi = _interval(draws, 0.95)
    coverage95 = ((lo <= theta) & (theta <= hi)).mean(0)
    assert np.all(coverage95 > 0.85), coverage95


# ------------------------------------------------------------------------------ checks and batch

def test_batch_skips_levels_outside_the_range_and_other_shapes(trained):
    post, model, grouped, b0, spec = (trained[k] for k in ("post", "model", "grouped", "b0", "spec"))
    tmp_path = trained["directory"]
    s, b = _observe(grouped, model, np.repeat([TRUTH], 4, axis=0), [1.0, 0.6, 3.0, 1.0], b0, seed=40)
    ramp = np.linspace(0.3, 3.0, len(b0))
    b[3] = np.random.default_rng(41).poisson(b0 * ramp * b0.sum() / (b0 * ramp).sum())
    paths = [_write(tmp_path, grouped, name, s[i], b[i]) for i, name in enumerate(["one", "low", "high", "shape"])]
    r = run_batch(post, paths, None, n_samples=300, progress=False)
    rows = {row[0]: row for row in r.rows}
    assert [rows[str(p)][1] for p in paths] == ["ok", "ok", "skipped", "skipped"]
    assert r.reasons == {"background level outside the trained range": 1, "background differs": 1}
    assert "background level 3" in rows[str(paths[2])][2] and "0.5-2" in rows[str(paths[2])][2]
    assert "different shape" in rows[str(paths[3])][2]
    # the low-background spectrum's row: its posterior read at its own measured level
    low = xsbi.load_spectrum(paths[1]).notice(0.3, 10.0)
    level = post.spectrum_background_level(low)
    assert level == pytest.approx(b[1].sum() / spec.background_counts.sum(), rel=1e-6)
    mem = run_batch_counts(post, [np.r_[s[i], b[i]] for i in range(4)], spec, n_samples=300)
    assert [row[1] for row in mem.rows] == ["ok", "ok", "skipped", "skipped"]
    assert mem.reasons == r.reasons
    np.testing.assert_allclose(mem.rows[1][3:], rows[str(paths[1])][3:], rtol=1e-4)
    # importance sampling reweights by each spectrum's own W-stat likelihood, at its own level
    imp = run_batch(post, paths[:2], None, n_samples=300, progress=False, importance=True)
    assert imp.ok == 2
    eff = [row[imp.columns.index("is_efficiency")] for row in imp.rows]
    assert all(0 < e <= 1 for e in eff), eff
    # check_compatible names the problem
    with pytest.raises(DataError, match="background level 3.* outside the range 0.5-2 .* inference.background_level"):
        post.check_compatible(grouped.with_counts(s[2], background_counts=b[2]))
    with pytest.raises(DataError, match="different shape"):
        post.check_compatible(grouped.with_counts(s[3], background_counts=b[3]))


def test_a_network_without_levels_still_requires_its_background(trained):
    model, prior, spec, bkg, grouped, b0 = (trained[k] for k in ("model", "prior", "spec", "bkg", "grouped", "b0"))
    theta = prior.sample(400, seed=1)
    x = SourceAndBackground(Simulator(model, spec), bkg).sample(theta, seed=3)
    post = NPE(model, prior, spec, background=bkg, hidden_features=10, num_transforms=1).append_simulations(
        theta, x).train(seed=0, progress=False, max_epochs=2)
    assert post.background_level_range is None and "background_level" not in post.meta
    post.check_compatible(spec)
    s, b = _observe(grouped, model, TRUTH, [0.6], b0, seed=50)
    with pytest.raises(DataError, match="a different background spectrum"):
        post.check_compatible(grouped.with_counts(s[0], background_counts=b[0]))
    with pytest.raises(DataError, match="not conditioned on the background level"):
        post.sample(s[0], 10, background_level=0.6)


def test_level_with_exposure_conditioning_compares_source_region_backgrounds(trained):
    """With exposure conditioning the source region's share of the background grows with the source
    exposure: the same background spectrum under a source exposure twice the training one is at
    level 1, and the level is the background-region counts' ratio."""
    model, prior, spec, bkg, b0 = (trained[k] for k in ("model", "prior", "spec", "bkg", "b0"))
    theta = prior.sample(300, seed=1)
    t = np.full(300, EXPOSURE)
    x = SourceAndBackground(Simulator(model, spec), bkg).sample(theta, seed=3, background_level=1.0)
    post = NPE(model, prior, spec, background=bkg, background_level=LEVELS, exposure_range=(EXPOSURE, 4 * EXPOSURE),
               hidden_features=10, num_transforms=1).append_simulations(theta, x, exposure=t, background_level=1.0).train(
        seed=0, progress=False, max_epochs=2)
    B = np.asarray(spec.background_counts, dtype=np.float64)
    r = np.asarray(spec.background_ratio, dtype=np.float64)
    assert post.measure_background_level(B, 2 * r, 2 * EXPOSURE) == pytest.approx(1.0, rel=1e-12)
    assert post.measure_background_level(1.5 * B, 2 * r, 2 * EXPOSURE) == pytest.approx(1.5, rel=1e-12)
    level, problems = post.background_level_problems(1.5 * B, 2 * r, 2 * EXPOSURE)
    assert level == pytest.approx(1.5) and problems == []
    # the network reads counts, exposure and level, in that order
    x = post._x(spec.counts, exposure=2 * EXPOSURE, background_level=1.5)
    assert x.shape[1] == (post.preprocessor.n_features or spec.n_bins) + 2
    lm = post.meta["background_level"]
    assert float(x[0, -1]) == pytest.approx((math.log10(1.5) - lm["mean"]) / lm["std"], rel=1e-5)


# ------------------------------------------------------------------------------ persistence
def test_save_load_round_trips_the_level_conditioning(trained, tmp_path):
    post, grouped, model, b0 = trained["post"], trained["grouped"], trained["model"], trained["b0"]
    loaded = AmortizedPosterior.load(post.save(tmp_path / "net.pt"))
    assert loaded.meta["background_level"] == post.meta["background_level"]
    assert loaded.background_level_range == LEVELS
    s, b = _observe(grouped, model, TRUTH, [1.8], b0, seed=60)
    obs = grouped.with_counts(s[0], background_counts=b[0])
    np.testing.assert_allclose(loaded.log_prob([TRUTH], obs), post.log_prob([TRUTH], obs), rtol=1e-6)
    np.testing.assert_array_equal(loaded.sample(obs, 200, seed=2), post.sample(obs, 200, seed=2))


# ------------------------------------------------------------------------------ configuration
CONFIG = {"model": "tbabs*powerlaw", "priors": {"nH": 0.2, "PhoIndex": {"uniform": [1, 3]}, "norm": {"loguniform": [0.1, 10]}}}


def test_config_background_level_is_validated_with_its_location(tmp_path):
    pha = tmp_path / "obs.pha"
    pha.write_bytes(b"")
    base = {**CONFIG, "data": {"spectrum": str(pha)}}
    assert load_config(base).inference.background_level is None
    cfg = load_config({**base, "inference": {"background_level": [0.5, "2"]}})
    assert cfg.inference.background_level == (0.5, 2.0)
    assert load_config(cfg.to_dict()) == cfg
    for bad in ([0, 2], [2, 1], [-1, 3], "abc", [1, 2, 3], [1, "x"], 1):
        with pytest.raises(ConfigError) as exc:
            load_config({**base, "inference": {"background_level": bad}})
        assert exc.value.problems[0][0] == "inference.background_level"
        assert "[lmin, lmax] factors on the observed background with 0 < lmin <= lmax" in exc.value.problems[0][1]
    with pytest.raises(ConfigError, match="inference.background_level: applies to inference.method npe only"):
        load_config({**base, "inference": {"background_level": [0.5, 2], "method": "snpe"}})
    with pytest.raises(ConfigError, match="must contain 1, the observation's own background"):
        load_config({**base, "inference": {"background_level": [1.5, 2]}})
    with pytest.raises(ConfigError, match="needs a background spectrum, and data.background is false"):
        load_config({**base, "data": {"spectrum": str(pha), "background": False},
                     "inference": {"background_level": [0.5, 2]}})


def test_run_refuses_background_level_without_a_background_before_simulating(tmp_path, monkeypatch):
    from xsbi import pipeline
    from xsbi.demo import write_demo_data

    pha = write_demo_data(tmp_path / "demo", seed=0)
    assert xsbi.load_spectrum(pha).background_counts is None
    calls = []
    monkeypatch.setattr(pipeline, "_restrict", lambda *a, **k: calls.append(1))
    cfg = {**CONFIG, "data": {"spectrum": str(pha)}, "inference": {"background_level": [0.5, 2]}}
    with pytest.raises(ConfigError, match="inference.background_level: needs a background spectrum"):
        pipeline.run_analysis(cfg, tmp_path / "out", progress=False)
    assert not calls


def test_run_trains_a_level_conditioned_network_and_batch_reads_other_levels(tmp_path):
    from xsbi.pipeline import run_analysis

    model, _, spec, b0 = _setup(tmp_path)
    cfg = {"data": {"spectrum": str(tmp_path / "train.pha"), "energy": [0.3, 10.0]}, "model": "tbabs*powerlaw",
           "priors": PRIORS, "restriction": {"method": "none"},
           "inference": {"simulations": 1500, "hidden_features": 10, "num_transforms": 1, "max_epochs": 5,
                         "posterior_samples": 500, "test_spectra": 10, "importance_sampling": False,
                         "background_level": [0.5, 2]},
           "seed": 3, "plots": False}
    summary = run_analysis(cfg, tmp_path / "out", progress=False)
    level = summary["background_level_conditioning"]
    assert level["range"] == [0.5, 2.0] and level["seed"] == 3 + 13
    # the training levels were drawn log-uniformly over the range (not all at the observation's level)
    assert abs(level["mean"]) < 0.03 and abs(level["std"] - math.log10(4) / math.sqrt(12)) < 0.01
    net = AmortizedPosterior.load(tmp_path / "out" / "network.pt")
    assert net.background_level_range == (0.5, 2.0)
    s, b = _observe(spec, model, TRUTH, [0.6], b0, seed=70)
    path = _write(tmp_path, spec, "low", s[0], b[0])
    r = run_batch(tmp_path / "out" / "network.pt", [path], None, n_samples=200, progress=False)
    assert r.ok == 1, r.rows

"""Inference engine: parameter space, preprocessing, NPE, restriction, multi-round, persistence."""

import math

import numpy as np
import pytest
import torch

import xsbi
from xsbi.errors import DataError, XsbiError
from xsbi.inference.multiround import train_multiround
from xsbi.inference.npe import NPE
from xsbi.inference.posterior import AmortizedPosterior
from xsbi.inference.preprocess import Preprocessor
from xsbi.inference.restriction import CountsWindow, CstatFraction, restrict_with_classifier, restrict_with_coarse_npe
from xsbi.inference.space import ParameterSpace
from xsbi.instruments import nicer_like_spectrum

PRIORS = {"nH": {"loguniform": [0.1, 0.3]}, "PhoIndex": {"uniform": [0.5, 2.5]}, "norm": {"loguniform": [0.01, 100]}}
SMALL = dict(hidden_features=20, num_transforms=2)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    spec = nicer_like_spectrum(exposure=1.25)
    model = xsbi.Model("tbabs*powerlaw")
    prior = xsbi.JointPrior(model, PRIORS)
    sim = xsbi.Simulator(model, spec)
    counts = sim.sample([[0.2, 1.7, 1.0]], seed=3)[0]
    return spec, model, prior, sim, counts


def test_parameter_space_logs_loguniform_parameters(setup):
    _, _, prior, _, _ = setup
    space = ParameterSpace(prior)
    assert list(space.log) == [True, False, True]
    theta = prior.sample(100, seed=1)
    phi = space.to_phi(theta)
    np.testing.assert_allclose(phi[:, 0], np.log10(theta[:, 0]))
    np.testing.assert_allclose(space.to_theta(phi), theta, rtol=1e-12)
    lo, hi = space.bounds_phi()
    np.testing.assert_allclose(lo, [-1, 0.5, -2]) and np.testing.assert_allclose(hi, [math.log10(0.3), 2.5, 2])
    h = 1e-6  # log |d phi/d theta| against finite differences
    num = np.log((np.log10(theta[:, 0] + h) - np.log10(theta[:, 0] - h)) / (2 * h)) + np.log(
        (np.log10(theta[:, 2] + h) - np.log10(theta[:, 2] - h)) / (2 * h))
    np.testing.assert_allclose(space.log_jacobian(theta), num, atol=1e-5)


@pytest.mark.parametrize("lam", [3.0, 30.0, 3000.0, 200000.0])
def test_anscombe_stabilises_poisson_variance(lam):
    x = torch.poisson(torch.full((200000, 1), lam), generator=torch.Generator().manual_seed(1))
    y = Preprocessor("anscombe")(x)
    assert float(y.var()) == pytest.approx(1.0, rel=0.08)
    assert float(Preprocessor("log1p")(x).var()) != pytest.approx(1.0, rel=0.5) or lam < 10


def test_pca_keeps_the_requested_variance(setup):
    spec, _, prior, sim, _ = setup
    x = torch.as_tensor(sim.sample(prior.sample(2000, seed=2), seed=3))
    pre = Preprocessor("anscombe", pca=0.999).fit(x)
    k = pre.n_features
    assert 1 <= k < spec.n_bins
    y = pre._stabilise(x.double())
    yc = y - y.mean(0)
    total = float((yc**2).sum())
    kept = float(((yc @ pre.components.double()) ** 2).sum())
    assert kept / total >= 0.999 - 1e-4
    k_fewer = Preprocessor("anscombe", pca=0.9).fit(x).n_features
    assert k_fewer < k
    restored = Preprocessor.from_state(pre.state())
    torch.testing.assert_close(restored(x[:5]), pre(x[:5]))


def test_counts_window_and_cstat_fraction_labels(setup):
    _, _, prior, sim, counts = setup
    theta = prior.sample(400, seed=4)
    mu, x = sim.simulate(theta, seed=5)
    window = CountsWindow(1000, 4000)
    np.testing.assert_array_equal(window(theta, x, mu), (x.sum(1) >= 1000) & (x.sum(1) <= 4000))
    crit = CstatFraction(counts, fraction=0.25, n_params=3)
    good = crit(theta, x, mu)
    c = np.asarray(xsbi.cstat(counts[None], mu.astype(np.float64), validate=False))
    assert good.mean() >= 0.25 and np.all(c[good] <= c[~good].min())
    assert crit.threshold >= c.min() + crit.margin - 1e-9


def test_classifier_restriction_concentrates_on_good_counts(setup):
    spec, _, prior, sim, counts = setup
    space = ParameterSpace(prior)
    window = CountsWindow.around(counts.sum())
    restricted = restrict_with_classifier(sim, space, window, rounds=4, simulations=1000, seed=0, progress=False)
    theta = restricted.sample(2000, seed=1)
    x = sim.sample(theta, seed=2)
    full_good = window(None, sim.sample(prior.sample(2000, seed=3), seed=4), None).mean()
    assert window(None, x, None).mean() > max(0.5, 3 * full_good)
    assert np.ptp(np.log10(theta[:, 2])) < 0.75 * 4  # norm restricted from four decades
    assert restricted.history[0]["good_fraction"] == pytest.approx(full_good, abs=0.05)


@pytest.fixture(scope="module")
def trained(setup):
    spec, _, _, _, _ = setup
    # a prior like a restricted one (norm within a factor 3) keeps the small network quick
    model = xsbi.Model("tbabs*powerlaw")
    prior = xsbi.JointPrior(model, {**PRIORS, "norm": {"loguniform": [0.33, 3.0]}})
    sim = xsbi.Simulator(model, spec)
    theta = prior.sample(4000, seed=6)
    x = sim.sample(theta, seed=7)
    return NPE(model, prior, spec, **SMALL).append_simulations(theta, x).train(seed=0, progress=False, max_epochs=80)


def test_npe_posterior_is_centred_on_the_truth(setup, trained):
    _, _, _, sim, _ = setup
    bright = sim.sample([[0.2, 1.7, 1.0]], seed=11)[0]
    s = trained.sample(bright, 4000, seed=0)
    assert s.shape == (4000, 3)
    med, sd = np.median(s, 0), s.std(0)
    assert np.all(np.abs(med - [0.2, 1.7, 1.0]) < 4 * sd)
    # the truth of a second, independent spectrum is also inside the posterior
    other = trained.sample(sim.sample([[0.15, 2.1, 0.5]], seed=12)[0], 4000, seed=1)
    assert np.all(np.abs(np.median(other, 0) - [0.15, 2.1, 0.5]) < 4 * other.std(0))
    assert sd[1] < 0.3 * 0.577 and sd[2] / med[2] < 0.3  # informative, far narrower than the prior
    # samples stay in the prior box, log-uniform parameters mapped back from log10
    assert s[:, 0].min() >= 0.1 and s[:, 0].max() <= 0.3 and s[:, 2].min() >= 0.33


def test_npe_log_prob_is_a_normalised_density(setup, trained):
    _, _, _, _, counts = setup
    s = trained.sample(counts, 2000, seed=1)
    lp = trained.log_prob(s, counts)
    assert np.all(np.isfinite(lp))
    # importance check: E_q[1/q] over the box = box volume is too noisy; instead compare the
    # density of a 1-D marginal histogram with the samples' own histogram along PhoIndex
    phi = trained.space.to_phi(s)
    assert np.corrcoef(lp + np.sum(np.log(s[:, [0, 2]] * math.log(10)), axis=1), -((phi - phi.mean(0)) ** 2).sum(1))[0, 1] > 0.5


def test_save_load_round_trip_and_compatibility(setup, trained, tmp_path):
    spec, _, _, _, counts = setup
    path = trained.save(tmp_path / "net.pt")
    loaded = AmortizedPosterior.load(path)
    s = trained.sample(counts, 50, seed=2)
    np.testing.assert_allclose(loaded.log_prob(s, counts), trained.log_prob(s, counts), rtol=1e-5, atol=1e-5)
    assert loaded.meta["model"]["expression"] == "tbabs*powerlaw" and loaded.names == trained.names
    # weights-only safe loading: the file holds tensors and strings only
    payload = torch.load(path, weights_only=True)
    assert isinstance(payload["meta"], str)
    loaded.check_compatible(spec)
    with pytest.raises(DataError, match="exposure"):
        loaded.check_compatible(nicer_like_spectrum(exposure=5.0))
    with pytest.raises(DataError, match="grouping or noticed band|bins"):
        loaded.check_compatible(nicer_like_spectrum(exposure=1.25, band=(0.5, 8.0)))
    with pytest.raises(DataError, match="bins"):
        loaded.sample(np.ones(10), 5)
    with pytest.raises(DataError, match="non-negative"):
        loaded.sample(-np.ones(spec.n_bins), 5)
    bad = tmp_path / "bad.pt"
    torch.save({"format": "something else"}, bad)
    with pytest.raises(XsbiError, match="not an xsbi network"):
        AmortizedPosterior.load(bad)


def test_sample_batched_matches_per_spectrum_sampling(setup, trained):
    _, _, _, sim, _ = setup
    xs = sim.sample(np.repeat([[0.2, 1.7, 1.0]], 3, axis=0), seed=12)
    out = trained.sample_batched(xs, 500, seed=0)
    assert out.shape == (3, 500, 3)
    for i in range(3):
        single = trained.sample(xs[i], 2000, seed=i + 10)
        assert np.all(np.abs(np.median(out[i], 0) - np.median(single, 0)) < 0.25 * single.std(0) + 1e-9 + 3 * single.std(0) / math.sqrt(500))


def test_coarse_restriction_and_multiround_run(setup):
    spec, model, prior, sim, counts = setup
    space = ParameterSpace(prior)
    coarse = restrict_with_coarse_npe(lambda: NPE(model, prior, spec, **SMALL), sim, space, counts,
                                      simulations=1500, seed=0, progress=False)
    theta = coarse.sample(500, seed=0)
    assert np.ptp(np.log10(theta[:, 2])) < 2.0  # four decades of norm truncated
    post = train_multiround(model, prior, spec, sim, counts, rounds=2, simulations_per_round=800,
                            proposal=coarse.distribution, seed=0, progress=False, npe_kwargs=SMALL,
                            train_kwargs={"max_epochs": 60})
    s = post.sample(counts, 2000, seed=0)
    assert post.meta["training"]["rounds"] == 2 and post.meta["training"]["observation_specific"]
    assert np.all(np.abs(np.median(s, 0) - [0.2, 1.7, 1.0]) < 4 * s.std(0) + 0.02)


def test_npe_rejects_bad_settings(setup):
    spec, model, prior, _, _ = setup
    with pytest.raises(XsbiError, match="unknown density estimator"):
        NPE(model, prior, spec, density_estimator="gan")
    with pytest.raises(XsbiError, match="unknown preprocessing"):
        NPE(model, prior, spec, preprocessing="sqrt")
    with pytest.raises(XsbiError, match="simulations must be"):
        NPE(model, prior, spec).append_simulations(np.ones((3, 3)), np.ones((3, 5)))
    with pytest.raises(XsbiError, match="no simulations"):
        NPE(model, prior, spec).train()


def test_ensemble_is_an_equal_weight_mixture(setup, tmp_path):
    spec, _, _, _, _ = setup
    model = xsbi.Model("tbabs*powerlaw")
    prior = xsbi.JointPrior(model, {**PRIORS, "norm": {"loguniform": [0.33, 3.0]}})
    sim = xsbi.Simulator(model, spec)
    theta = prior.sample(1500, seed=20)
    npe = NPE(model, prior, spec, ensemble=2, **SMALL).append_simulations(theta, sim.sample(theta, seed=21))
    post = npe.train(seed=0, progress=False, max_epochs=15)
    assert len(post.estimators) == 2 and post.meta["training"]["ensemble"] == 2
    counts = sim.sample([[0.2, 1.7, 1.0]], seed=22)[0]
    s = post.sample(counts, 300, seed=0)
    phi = torch.as_tensor(post.space.to_phi(s), dtype=torch.float32)
    x = post._x(counts)[0]
    members = [p.log_prob(phi, x=x, norm_posterior=False).numpy() for p in post._posteriors]
    expected = np.logaddexp(members[0], members[1]) - np.log(2) + post.space.log_jacobian(s)
    np.testing.assert_allclose(post.log_prob(s, counts), expected, rtol=1e-5, atol=1e-5)
    from xsbi.inference.maf_batch import log_prob_many  # the batched density (xsbi batch --importance)

    np.testing.assert_allclose(log_prob_many(post, counts[None], s[None])[0], expected, rtol=1e-5, atol=1e-4)
    loaded = AmortizedPosterior.load(post.save(tmp_path / "ens.pt"))
    np.testing.assert_allclose(loaded.log_prob(s, counts), post.log_prob(s, counts), rtol=1e-5, atol=1e-5)
    with pytest.raises(XsbiError, match="ensemble"):
        NPE(model, prior, spec, ensemble=0)


def test_importance_sampling_recovers_the_exact_posterior(setup, trained):
    from xsbi.inference import importance_resample
    from xsbi.likelihood import PoissonLikelihood, run_mcmc

    spec, _, _, _, _ = setup
    prior, model = trained.space.prior, trained.space.prior.model
    sim = xsbi.Simulator(model, spec)
    obs = spec.with_counts(sim.sample([[0.2, 1.7, 1.0]], seed=30)[0].astype(np.int64))
    lik = PoissonLikelihood(obs, model, prior)
    ref = run_mcmc(lik, seed=0, progress=False).samples
    res = importance_resample(trained, lik, obs.counts, 8000, n_proposal=16000, seed=0)
    assert res.weights.sum() == pytest.approx(1.0) and 0 < res.ess <= res.weights.size <= 16000
    assert res.weights.size > 0.8 * 16000  # network draws plus defensive draws inside the prior
    assert res.efficiency == pytest.approx(res.ess / res.weights.size)
    for i in range(3):
        sd = ref[:, i].std()
        # the small test network is rough; reweighting by the exact likelihood makes it agree
        assert abs(np.median(res.samples[:, i]) - np.median(ref[:, i])) < 0.15 * sd
        assert 0.85 < res.samples[:, i].std() / sd < 1.15


def test_fast_sampler_draws_the_same_distribution_as_sbi(setup, trained):
    _, _, _, _, counts = setup
    x = trained._x(counts)[0]
    torch.manual_seed(0)
    with torch.no_grad():
        reference = trained._posterior.sample((20000,), x=x, show_progress_bars=False).numpy()
        fast = trained._sample_phi(20000, x).numpy()
    lo, hi = trained.space.bounds_phi()
    assert np.all((fast >= lo) & (fast <= hi))
    sd = reference.std(0)
    assert np.all(np.abs(np.median(fast, 0) - np.median(reference, 0)) < 0.05 * sd)
    np.testing.assert_allclose(fast.std(0), sd, rtol=0.04)


def _untrained_flow():
    """A MAF of 4 parameters on 7 inputs (33 hidden units, 3 transforms), weights perturbed off
    their initialisation: other widths and depths than the trained test network."""
    from xsbi.inference.npe import estimator_builder

    torch.manual_seed(3)
    net = estimator_builder(dict(density_estimator="maf", hidden_features=33, num_transforms=3))(
        torch.randn(16, 4), torch.randn(16, 7)).net
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


def test_fast_maf_inverse_equals_nflows_draw_for_draw(setup, trained):
    """The fused MADE inverse is the same function as nflows' on the same base-space noise."""
    from xsbi.inference.maf_sampler import FastMAFSampler, supports

    _, _, _, sim, counts = setup
    net = trained.estimator.net
    assert supports(net)
    for xc in (counts, sim.sample([[0.15, 2.2, 0.5]], seed=21)[0]):
        x = trained._x(xc)[0]
        z = torch.randn(5000, 3, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            context = net._embedding_net(x[None])
            ref, _ = net._transform.inverse(z, context=context.expand(len(z), -1))
            fast = FastMAFSampler(net, x).inverse(z)
        np.testing.assert_allclose(fast.numpy(), ref.numpy(), rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    # a larger, untrained flow (other widths and depths, weights perturbed off their init)
    big = _untrained_flow()
    with torch.no_grad():
        x = torch.randn(7)
        z = torch.randn(3000, 4)
        ref, _ = big._transform.inverse(z, context=big._embedding_net(x[None]).expand(len(z), -1))
        fast = FastMAFSampler(big, x).inverse(z)
    np.testing.assert_allclose(fast.numpy(), ref.numpy(), rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def test_batched_maf_density_equals_nflows(setup, trained):
    """The batched density pass (xsbi batch --importance) is nflows' Flow.log_prob, block-wise,
    and log_prob_many is AmortizedPosterior.log_prob per spectrum (-inf outside the prior)."""
    from xsbi.inference.maf_batch import log_prob_many
    from xsbi.inference.maf_sampler import BatchedMAFSampler

    _, _, _, sim, counts = setup
    xc = np.stack([counts, sim.sample([[0.15, 2.2, 0.5]], seed=21)[0]])
    theta = np.stack([trained.sample(c, 400, seed=i) for i, c in enumerate(xc)])
    theta[:, :5, 1] = 3.0  # PhoIndex beyond the prior's 2.5
    lp = log_prob_many(trained, xc, theta)
    assert np.all(np.isneginf(lp[:, :5])) and np.all(np.isfinite(lp[:, 5:]))
    for i in range(2):
        np.testing.assert_allclose(lp[i, 5:], trained.log_prob(theta[i, 5:], xc[i]), rtol=1e-5, atol=1e-4)
    # a larger, untrained flow (other widths and depths, weights perturbed), more draws than one chunk
    big = _untrained_flow()
    with torch.no_grad():
        x = torch.randn(3, 7)
        phi = torch.randn(3, 3000, 4)
        fast = BatchedMAFSampler(big, x).log_prob(phi)
        for i in range(3):
            ref = big.log_prob(phi[i], context=x[i].expand(3000, -1))
            np.testing.assert_allclose(fast[i].numpy(), ref.numpy(), rtol=1e-4, atol=1e-3)


def test_fused_log_prob_equals_sbi(setup, trained):
    """One context row per spectrum gives sbi's density exactly (and -inf outside the prior box)."""
    _, _, _, _, counts = setup
    x = trained._x(counts)[0]
    phi = torch.as_tensor(trained.space.to_phi(trained.sample(counts, 500, seed=4)), dtype=torch.float32)
    outside = phi[:5].clone()
    outside[:, 1] = 3.0  # PhoIndex beyond the prior's 2.5
    phi = torch.cat([phi, outside])
    with torch.no_grad():
        ref = trained._posterior.log_prob(phi, x=x, norm_posterior=False)
        fast = trained._log_prob_phi(phi, x)
    assert torch.all(torch.isinf(fast[-5:])) and torch.all(torch.isinf(ref[-5:]))
    np.testing.assert_allclose(fast[:-5].numpy(), ref[:-5].numpy(), rtol=1e-5, atol=1e-4)


def test_defensive_gaussian_is_full_rank_for_parameters_of_very_different_scales():
    # phi of a 5-parameter model: a log10 norm next to a linear bbodyrad norm of ~1e4; a raw
    # covariance of such samples looks singular to an eigenvalue cut-off, which once confined the
    # defensive draws to a hyperplane and widened the importance-sampled posteriors by ~10%
    from xsbi.inference.importance import _DefensiveGaussian

    rng = np.random.default_rng(3)
    scales = np.array([1e-3, 0.05, 1.0, 2e3, 1e5])
    a = rng.standard_normal((5, 5))
    c = a @ a.T + 0.3 * np.eye(5)
    corr_true = c / np.sqrt(np.outer(np.diag(c), np.diag(c)))
    z = rng.multivariate_normal(np.zeros(5), corr_true, size=20000)
    phi = 7.0 + z * scales
    g = _DefensiveGaussian(phi, widen=2.0)
    draws = g.rvs(200000, np.random.default_rng(4))
    # the draws fill all five directions with twice the samples' spread and their correlations
    np.testing.assert_allclose(draws.std(0) / phi.std(0), 2.0, rtol=0.01)
    np.testing.assert_allclose(np.corrcoef(draws.T), np.corrcoef(phi.T), atol=0.01)
    # logpdf is a normalised density: its mean over its own draws is minus the Gaussian entropy
    cov = np.cov(phi.T) * 4.0
    sign, logdet = np.linalg.slogdet(cov / np.outer(scales, scales))
    entropy = 0.5 * 5 * (1 + np.log(2 * np.pi)) + 0.5 * (logdet + 2 * np.sum(np.log(scales)))
    assert sign > 0
    assert abs(-g.logpdf(draws).mean() - entropy) < 0.02


@pytest.mark.parametrize("cut", [False, True])
def test_truncated_proposal_draws_the_truncated_prior(setup, trained, cut):
    # reference: plain rejection from the prior through the same HPD test (cheap on this small case);
    # with cut=True the base is itself a restricted prior (PhoIndex < 1.7), as after a classifier
    from scipy import stats
    from sbi.utils import RestrictedPrior as SbiRestrictedPrior

    from xsbi.inference.multiround import TruncatedProposal

    _, _, _, _, counts = setup
    box = trained.space.torch_prior()
    base = SbiRestrictedPrior(box, lambda phi: phi[:, 1] < 1.7, sample_with="rejection") if cut else box
    prop = TruncatedProposal(trained, base, counts, quantile=1e-3, seed=1)
    mine = prop.sample((4000,)).numpy()
    torch.manual_seed(2)
    ref_fn = (lambda phi: prop.accept_hpd(phi) & (phi[:, 1] < 1.7)) if cut else prop.accept_hpd
    ref = SbiRestrictedPrior(box, ref_fn, sample_with="rejection").sample((4000,)).numpy()
    assert 0.01 < prop.acceptance <= 1.0
    if cut:
        assert mine[:, 1].max() < 1.7
    for k in range(3):
        assert stats.ks_2samp(mine[:, k], ref[:, k]).pvalue > 1e-3, k
    if not cut:  # a truncated *prior*, not the posterior: wider than the network's posterior
        post = trained.space.to_phi(trained.sample(counts, 4000, seed=3))
        assert np.all(mine.std(0) > post.std(0))


def test_best_fit_is_the_minimum_reached_from_the_best_sample(setup, trained):
    from xsbi.inference import PosteriorResult
    from xsbi.likelihood import PoissonLikelihood, fit_cstat

    spec, model, _, _, counts = setup
    obs = spec.with_counts(counts)
    lik = PoissonLikelihood(obs, model, trained.space.prior)
    samples = trained.sample(counts, 2000, seed=5)
    raw = PosteriorResult.from_samples(samples, trained.space.names, obs, model, "npe")
    res = PosteriorResult.from_samples(samples, trained.space.names, obs, model, "npe", likelihood=lik)
    ref = fit_cstat(lik, n_starts=4, seed=0, delta_c=None)
    # the sample alone sits above the minimum (by ~d/2 for d parameters); the polished fit reaches it
    assert raw.fit["statistic"] == pytest.approx(res.fit["best_sample_statistic"])
    assert not raw.fit["polished"] and res.fit["polished"]
    assert res.fit["statistic"] < raw.fit["statistic"] - 0.01
    assert res.fit["statistic"] == pytest.approx(ref.cstat, abs=1e-3)
    np.testing.assert_allclose(list(res.best_fit.values()), ref.theta, rtol=2e-3, atol=1e-4)
    np.testing.assert_allclose(res.best_counts, lik.expected_counts(ref.theta)[0], rtol=2e-3)


def test_training_and_restriction_print_nothing_without_progress(setup, capfd):
    # `xsbi run --quiet` must be quiet: sbi prints epochs, convergence and rejection rates itself
    spec, model, prior, sim, counts = setup
    space = ParameterSpace(prior)
    r = restrict_with_classifier(sim, space, CountsWindow.around(counts.sum()), rounds=2, simulations=300,
                                 seed=0, progress=False)
    theta = r.sample(300, seed=1)
    NPE(model, prior, spec, **SMALL).append_simulations(theta, sim.sample(theta, seed=2)).train(
        seed=0, progress=False, max_epochs=3)
    out, _ = capfd.readouterr()
    assert out == ""

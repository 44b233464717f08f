"""Priors: densities, sampling, unconstrained maps and their Jacobians, joint priors on models."""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from xsbi import Frozen, JointPrior, LogUniform, Model, Normal, Uniform
from xsbi.errors import PriorError
from xsbi.priors import prior_from_spec

PRIORS = [Uniform(0.5, 2.5), LogUniform(0.01, 100.0), Normal(1.0, 0.3), Normal(0.2, 0.5, 0.0, 1e6)]


@pytest.mark.parametrize("prior", PRIORS, ids=repr)
def test_density_integrates_to_one(prior):
    lo = prior.low if math.isfinite(prior.low) else -50.0
    hi = prior.high if math.isfinite(prior.high) else 50.0
    pts = [x for x in (0.0, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0) if lo < x < hi]
    total = integrate.quad(lambda x: math.exp(prior.log_prob(x)), lo, hi, points=pts or None, limit=200)[0]
    assert total == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("prior", PRIORS, ids=repr)
def test_samples_follow_the_density(prior):
    x = prior.sample(20000, np.random.default_rng(1))
    assert np.all((x >= prior.low) & (x <= prior.high))
    cdf = lambda v: np.array([integrate.quad(lambda t: math.exp(prior.log_prob(t)), max(prior.low, -50), u)[0] for u in np.atleast_1d(v)])  # noqa: E731
    grid = np.quantile(x, [0.1, 0.3, 0.5, 0.7, 0.9])
    np.testing.assert_allclose(cdf(grid), [0.1, 0.3, 0.5, 0.7, 0.9], atol=0.012)


def test_loguniform_is_uniform_in_log10():
    x = LogUniform(0.01, 100.0).sample(50000, np.random.default_rng(2))
    assert stats.kstest((np.log10(x) + 2) / 4, "uniform").pvalue > 0.01
    assert np.exp(LogUniform(0.01, 100.0).log_prob(1.0)) == pytest.approx(1 / math.log(1e4))


@pytest.mark.parametrize("prior", PRIORS, ids=repr)
def test_unconstrained_round_trip_and_jacobian(prior):
    x = prior.sample(200, np.random.default_rng(3))
    u = prior.to_unconstrained(x)
    assert np.all(np.isfinite(u))
    np.testing.assert_allclose(prior.from_unconstrained(u), x, rtol=1e-10, atol=1e-12)
    h = 1e-6
    numeric = np.log(np.abs(prior.from_unconstrained(u + h) - prior.from_unconstrained(u - h)) / (2 * h))
    np.testing.assert_allclose(prior.log_abs_det_jacobian(u), numeric, atol=1e-5)


def test_prior_specs():
    assert isinstance(prior_from_spec({"uniform": [0, 1]}), Uniform)
    assert isinstance(prior_from_spec({"loguniform": [0.1, 10]}), LogUniform)
    assert prior_from_spec({"frozen": 0.2}).value == 0.2
    assert prior_from_spec(1.5).value == 1.5
    for bad, msg in [
        ({"uniform": [2, 1]}, "low < high"),
        ({"loguniform": [0, 1]}, "0 < low"),
        ({"gamma": [1, 2]}, "unknown prior type 'gamma'"),
        ({"uniform": [1]}, "got arguments"),
        ("wide", "cannot read prior"),
        ({"normal": [0, -1]}, "sigma > 0"),
    ]:
        with pytest.raises(PriorError, match=msg):
            prior_from_spec(bad)


def test_joint_prior_on_a_model():
    model = Model("tbabs*powerlaw")
    prior = JointPrior(
        model,
        {"tbabs.nH": {"frozen": 0.2}, "powerlaw.PhoIndex": {"uniform": [0.5, 2.5]}, "powerlaw.norm": {"loguniform": [0.01, 100]}},
    )
    assert model.frozen == {"tbabs.nH": 0.2}
    assert prior.names == ["powerlaw.PhoIndex", "powerlaw.norm"] == model.parameter_names
    theta = prior.sample(1000, seed=4)
    assert theta.shape == (1000, 2)
    np.testing.assert_array_equal(theta, prior.sample(1000, seed=4))
    lp = prior.log_prob(theta)
    np.testing.assert_allclose(lp, -math.log(2.0) - np.log(theta[:, 1]) - math.log(math.log(1e4)))
    assert prior.log_prob([[3.0, 1.0]])[0] == -np.inf
    np.testing.assert_allclose(prior.from_unconstrained(prior.to_unconstrained(theta)), theta, rtol=1e-10)


def test_joint_prior_errors():
    with pytest.raises(PriorError, match="no prior for free parameter.*powerlaw.norm"):
        JointPrior(Model("tbabs*powerlaw"), {"tbabs.nH": {"frozen": 0.2}, "powerlaw.PhoIndex": {"uniform": [1, 2]}})
    with pytest.raises(PriorError, match="outside its hard limits"):
        JointPrior(Model("powerlaw"), {"PhoIndex": {"uniform": [-5, 2]}, "norm": {"loguniform": [0.1, 1]}})
    with pytest.raises(PriorError, match="outside its hard limits"):
        JointPrior(Model("tbabs*powerlaw"), {"nH": {"uniform": [-0.1, 1]}, "PhoIndex": 2.0, "norm": 1.0})


def test_normal_prior_is_truncated_at_hard_limits():
    model = Model("tbabs*powerlaw")
    prior = JointPrior(model, {"nH": {"normal": [0.05, 0.1]}, "PhoIndex": 2.0, "norm": 1.0})
    x = prior.sample(5000, seed=5)
    assert x.min() >= 0.0 and prior.priors["tbabs.nH"].low == 0.0
    assert isinstance(prior.priors["powerlaw.norm"], Frozen)

"""Calibration diagnostics (xsbi.diagnostics.calibration, `xsbi validate`).

The statistics are tested on a conjugate Gaussian model whose exact posterior is known, so the
expected outcome does not depend on any network: the exact posterior is calibrated, a too narrow
one over-confident, a too wide one under-confident, a shifted one biased.  One end-to-end test
trains a tiny network with `xsbi run` and validates it from the command line.
"""

import json

import numpy as np
import pytest
from astropy.io import fits
from scipy import stats

from xsbi.cli import main
from xsbi.diagnostics.calibration import (coverage_verdict, expected_coverage, parameter_verdict, rank_shape,
                                          rank_uniformity, read_test_set, sbc_ranks, tarp, validate)
from xsbi.errors import XsbiError


class GaussianPosterior:
    """theta ~ N(0, 1)^d, x ~ N(theta, s^2): the exact posterior is N(x / (1 + s^2), s^2 / (1 + s^2)).

    ``scale`` multiplies its width, ``shift`` moves it by that many (exact) posterior widths; the
    interface is AmortizedPosterior's (sample_batched, log_prob, names).
    """

    def __init__(self, d=2, s=0.5, scale=1.0, shift=0.0):
        self.d, self.s, self.scale, self.shift = d, s, scale, shift
        self.names = [f"p{j}" for j in range(d)]
        self.sd = s / np.sqrt(1 + s**2)

    def simulate(self, n, seed):
        rng = np.random.default_rng(seed)
        theta = rng.standard_normal((n, self.d))
        return theta, theta + self.s * rng.standard_normal((n, self.d))

    def _mean_sd(self, x):
        x = np.atleast_2d(np.asarray(x, dtype=float))
        return x / (1 + self.s**2) + self.shift * self.sd, self.scale * self.sd

    def sample_batched(self, counts, n, seed=None, progress=False):
        mean, sd = self._mean_sd(counts)
        rng = np.random.default_rng(seed)
        return mean[:, None, :] + sd * rng.standard_normal((mean.shape[0], n, self.d))

    def log_prob(self, theta, counts):
        mean, sd = self._mean_sd(counts)
        return stats.norm.logpdf(np.atleast_2d(theta), mean[0], sd).sum(axis=1)


N_TEST, N_DRAWS = 1000, 500


def _check(post, seed=1):
    theta, x = post.simulate(N_TEST, seed)
    draws = post.sample_batched(x, N_DRAWS, seed=seed + 100)
    ranks = sbc_ranks(post, theta, x, N_DRAWS, draws=draws)
    uni = rank_uniformity(ranks, N_DRAWS, names=post.names)
    shape = rank_shape(ranks, N_DRAWS, names=post.names)
    verdicts = {n: parameter_verdict(shape[n], uni[n]) for n in post.names}
    cov = expected_coverage(post, theta, x, levels=(0.1, 0.3, 0.5, 0.6827, 0.9, 0.95), draws=draws)
    tr = tarp(theta, draws, seed=seed)
    return ranks, uni, shape, verdicts, cov, tr


def test_exact_posterior_is_calibrated():
    post = GaussianPosterior()
    ranks, uni, shape, verdicts, cov, tr = _check(post)
    assert ranks.shape == (N_TEST, 2) and ranks.min() >= 0 and ranks.max() <= N_DRAWS
    assert uni["p0"]["n_bins"] == 20 and sum(uni["p0"]["histogram"]) == N_TEST
    for n in post.names:
        assert uni[n]["chi2_p"] > 1e-3 and uni[n]["ks_p"] > 1e-3
        assert abs(shape[n]["bias"]) < 0.15 and abs(shape[n]["width_ratio"] - 1) < 0.08
        assert verdicts[n]["status"] == "calibrated", verdicts[n]["verdict"]
    # coverage on the diagonal within binomial error (3.5 sigma, plus the 1/L discreteness)
    for level, c, se in zip(cov["levels"], cov["coverage"], cov["stderr"]):
        assert abs(c - level) < 3.5 * se + 1.0 / N_DRAWS, (level, c)
    cv = coverage_verdict(cov, tr)
    assert cv["status"] == "calibrated", cv["verdict"]
    assert abs(tr["atc"]) < 0.02 and tr["ks_p"] > 1e-3
    assert tr["alpha"][0] == 0.0 and tr["alpha"][-1] == 1.0 and tr["ecp"][-1] == 1.0


@pytest.mark.parametrize("kwargs, status, coverage_status, atc_sign", [
    ({"scale": 0.5}, "over-confident", "over-confident", -1),
    ({"scale": 2.0}, "under-confident", "under-confident", +1),
    ({"shift": 1.0}, "biased high", "over-confident", 0),
    ({"shift": -1.0}, "biased low", "over-confident", 0),
])
def test_miscalibrated_posteriors_are_flagged(kwargs, status, coverage_status, atc_sign):
    post = GaussianPosterior(**kwargs)
    _, uni, shape, verdicts, cov, tr = _check(post)
    for n in post.names:
        assert min(uni[n]["chi2_p"], uni[n]["ks_p"]) < 1e-6
        assert verdicts[n]["status"] == status, verdicts[n]["verdict"]
    if "scale" in kwargs:
        assert "outside the central 68% interval" in verdicts["p0"]["verdict"]
        # 1/scale, less where the normal scores of ranks 0 and L truncate the tails (too narrow)
        assert shape["p0"]["width_ratio"] == pytest.approx(1 / kwargs["scale"], rel=0.15)
    else:
        assert shape["p0"]["bias"] == pytest.approx(kwargs["shift"], abs=0.15)
    assert coverage_verdict(cov, tr)["status"] == coverage_status
    if atc_sign:
        assert np.sign(tr["atc"]) == atc_sign and tr["ks_p"] < 1e-3


def test_rank_uniformity_rejects_piled_up_ranks_and_checks_input():
    rng = np.random.default_rng(0)
    ranks = np.concatenate([rng.integers(0, 1001, 300), rng.integers(450, 551, 200)])
    res = rank_uniformity(ranks, 1000)
    assert res["param_0"]["chi2_p"] < 1e-6 and res["param_0"]["ks_p"] < 1e-3
    assert rank_uniformity(rng.integers(0, 101, 49), 100)["param_0"]["n_bins"] == 7  # ~sqrt(N)
    with pytest.raises(XsbiError, match="0..100"):
        rank_uniformity(np.array([0, 101]), 100)


def test_tarp_agrees_with_sbi_implementation():
    torch = pytest.importorskip("torch")
    try:
        from sbi.diagnostics.tarp import _run_tarp
    except ImportError:  # pragma: no cover - private function of sbi 0.27
        pytest.skip("sbi.diagnostics.tarp._run_tarp not available")
    post = GaussianPosterior()
    theta, x = post.simulate(500, 3)
    draws = post.sample_batched(x, 300, seed=4)
    ours = tarp(theta, draws, seed=5)
    lo, hi = theta.min(0), theta.max(0)
    refs = lo + np.random.default_rng(5).uniform(size=theta.shape) * (hi - lo)  # the same reference points
    ecp, alpha = _run_tarp(torch.as_tensor(draws.transpose(1, 0, 2)), torch.as_tensor(theta),
                           torch.as_tensor(refs), num_bins=50, z_score_theta=True)
    mine = np.interp(alpha.numpy(), ours["alpha"], ours["ecp"])
    assert np.max(np.abs(mine - ecp.numpy())) < 0.03


def test_validate_writes_report(tmp_path):
    post = GaussianPosterior(scale=0.5)
    theta, x = post.simulate(300, 7)
    r = validate(post, theta, x, tmp_path, n_draws=200, seed=0)
    assert r["verdict"]["status"] == "over-confident"
    assert "outside the 68% HPD region" in r["coverage"]["verdict"]
    assert "only large miscalibration" in r["verdict"]["verdict"]  # fewer than 500 test spectra
    on_disk = json.loads((tmp_path / "validate.json").read_text())
    assert on_disk["parameters"]["p1"]["status"] == "over-confident"
    assert set(on_disk["parameters"]["p0"]["regression"]) >= {"slope", "intercept", "r2"}
    for png in ("sbc_ranks", "coverage", "regression"):
        assert (tmp_path / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "over-confident" in (tmp_path / "validate.md").read_text()


# ------------------------------------------------------------------------------ end to end
PRIORS = {"tbabs.nH": {"loguniform": [0.1, 0.3]}, "powerlaw.PhoIndex": {"uniform": [0.5, 2.5]},
          "powerlaw.norm": {"loguniform": [0.01, 100]}}
NAMES = ["tbabs.nH", "powerlaw.PhoIndex", "powerlaw.norm"]


@pytest.fixture(scope="module")
def rundir(tmp_path_factory):
    from xsbi.demo import write_demo_data
    from xsbi.pipeline import run_analysis

    pha = write_demo_data(tmp_path_factory.mktemp("demo"), seed=0)
    cfg = {"data": {"spectrum": str(pha)}, "model": "tbabs*powerlaw", "priors": PRIORS,
           "restriction": {"rounds": 3, "simulations": 1000},
           "inference": {"simulations": 1500, "hidden_features": 20, "num_transforms": 2, "max_epochs": 20,
                         "posterior_samples": 1000, "importance_sampling": False, "test_spectra": 60},
           "seed": 2, "plots": False}
    out = tmp_path_factory.mktemp("run")
    run_analysis(cfg, out, progress=False)
    return out


def test_run_saves_test_set_and_validate_cli(rundir, tmp_path, capsys):
    theta, counts, names, header = read_test_set(rundir / "test_set.fits")
    summary = json.loads((rundir / "summary.json").read_text())
    assert names == NAMES and theta.shape == (60, 3) and counts.shape == (60, summary["spectrum"]["n_bins"])
    assert header["PRIOR"] == "restricted" and header["SEED"] == 2 and np.all(counts == np.round(counts))
    assert summary["test_set"]["spectra"] == 60 and summary["test_set"]["file"] == "test_set.fits"

    out = tmp_path / "val"
    assert main(["validate", str(rundir), "--draws", "200", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "verdict:" in printed and "powerlaw.PhoIndex" in printed and "only 60 test spectra" in printed
    r = json.loads((out / "validate.json").read_text())
    assert set(r) >= {"spectra", "draws", "verdict", "parameters", "coverage", "tarp", "thresholds", "plots"}
    assert r["spectra"] == 60 and r["draws"] == 200 and list(r["parameters"]) == NAMES
    for p in r["parameters"].values():
        assert set(p) >= {"status", "verdict", "bias", "width_ratio", "outside_68", "ranks", "regression"}
        assert 0 <= p["ranks"]["chi2_p"] <= 1 and np.isfinite(p["regression"]["slope"])
    assert r["parameters"]["powerlaw.PhoIndex"]["regression"]["r2"] > 0.5  # nH is poorly constrained at 2,000 counts
    assert len(r["coverage"]["coverage"]) == len(r["coverage"]["levels"]) and -0.5 < r["tarp"]["atc"] < 0.5
    for png in ("sbc_ranks", "coverage", "regression"):
        assert (out / f"{png}.png").is_file()


def test_validate_cli_errors(rundir, tmp_path, capsys):
    assert main(["validate", str(rundir), "--test-set", str(tmp_path / "none.fits"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no test set" in err and "--test-set" in err and "test_spectra" in err
    assert main(["validate", str(tmp_path), "--quiet"]) == 2
    assert "no trained network" in capsys.readouterr().err

    with fits.open(rundir / "test_set.fits") as hdul:
        table, header = hdul["TESTSET"].data, hdul["TESTSET"].header
        cols = [fits.Column(name=n, format="D", array=table[n]) for n in NAMES]
        counts = np.asarray(table["COUNTS"])
    fewer = tmp_path / "fewer_bins.fits"
    fits.BinTableHDU.from_columns(cols + [fits.Column(name="COUNTS", format=f"{counts.shape[1] - 1}D",
                                                      array=counts[:, :-1])], name="TESTSET").writeto(fewer)
    assert main(["validate", str(rundir), "--test-set", str(fewer), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{counts.shape[1] - 1} bins" in err and f"trained on {counts.shape[1]} bins" in err
    renamed = tmp_path / "renamed.fits"
    cols[0] = fits.Column(name="phabs.nH", format="D", array=table["tbabs.nH"])
    fits.BinTableHDU.from_columns(cols + [fits.Column(name="COUNTS", format=f"{counts.shape[1]}D", array=counts)],
                                  name="TESTSET").writeto(renamed)
    assert main(["validate", str(rundir), "--test-set", str(renamed), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "missing: ['tbabs.nH']" in err and "phabs.nH" in err
    with pytest.raises(XsbiError, match="BINSHASH|different bin energies|not found"):
        hdr = dict(header)
        hdr["BINSHASH"] = "0" * 64
        from xsbi.diagnostics.calibration import check_test_set
        from xsbi.inference import AmortizedPosterior

        check_test_set(AmortizedPosterior.load(rundir / "network.pt"), np.column_stack([table[n] for n in NAMES]),
                       counts, NAMES, hdr)


def test_network_is_calibrated_against_its_own_draws(rundir):
    """Truths drawn from the network's own posterior for one spectrum are calibrated by
    construction: checks the real-network path (log10 parameter space, densities, Jacobian)."""
    from xsbi.inference import AmortizedPosterior

    post = AmortizedPosterior.load(rundir / "network.pt")
    _, counts, _, _ = read_test_set(rundir / "test_set.fits")
    truths = post.sample(counts[0], 150, seed=11)
    x = np.repeat(counts[:1], 150, axis=0)
    draws = post.sample_batched(x, 200, seed=12)
    ranks = sbc_ranks(post, truths, x, 200, draws=draws)
    for res in rank_uniformity(ranks, 200).values():
        assert res["chi2_p"] > 1e-3 and res["ks_p"] > 1e-3
    cov = expected_coverage(post, truths, x, draws=draws)
    for level, c, se in zip(cov["levels"], cov["coverage"], cov["stderr"]):
        assert abs(c - level) < 3.5 * se + 0.01, (level, c)
    assert coverage_verdict(cov, tarp(truths, draws, space=post.space))["status"] == "calibrated"

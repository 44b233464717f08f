"""Calibration of an amortized posterior on simulated test spectra (``xsbi validate``).

A network is calibrated when, over spectra simulated from the (restricted) prior, its credible
regions contain the true parameters as often as they claim.  Three checks, as in the seed paper
(Barret & Dupourque 2024) and the SBI literature:

* **Simulation-based calibration** (SBC, Talts et al. 2018, arXiv:1804.06788): the rank of each
  true parameter among L posterior draws is uniform on {0, ..., L}.  The rank histogram's shape
  says what is wrong: a U shape means posteriors too narrow (over-confident), a dome too wide
  (under-confident), a slope a bias.  :func:`sbc_ranks`, :func:`rank_uniformity`.
* **Expected coverage** of highest-posterior-density (HPD) regions (Hermans et al. 2022, "A trust
  crisis in simulation-based inference?"): the fraction of test spectra whose truth lies in the
  c-HPD region should be c at every level c.  And **TARP** (Lemos et al. 2023,
  arXiv:2302.03026), coverage of balls around random reference points, which needs no density.
  :func:`expected_coverage`, :func:`tarp`.
* **Regression** of the posterior median on the input (the paper's Figs. 5, 7, 8): slope,
  intercept and R^2 (:func:`xsbi.report.regression_summary`).

:func:`validate` runs all of them, writes ``validate.json``, ``validate.md``, ``sbc_ranks.png``,
``coverage.png`` and ``regression.png``, and states a verdict in plain words per parameter and
overall (thresholds in :func:`parameter_verdict` and :func:`coverage_verdict`).

The posterior is anything with ``sample_batched(counts, n, seed=None, progress=False)`` returning
(M, n, d) physical draws and ``log_prob(theta, counts)`` (log density of rows of ``theta`` given one
spectrum), such as :class:`xsbi.inference.AmortizedPosterior`; ``names`` and ``space`` (a
:class:`xsbi.inference.space.ParameterSpace`) are used when present.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from scipy import stats

from ..errors import XsbiError

__all__ = [
    "DEFAULT_LEVELS", "draw_posterior", "sbc_ranks", "rank_uniformity", "rank_shape", "hpd_credibility",
    "expected_coverage", "tarp", "parameter_verdict", "coverage_verdict", "validate", "read_test_set",
    "check_test_set",
]

DEFAULT_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.6827, 0.7, 0.8, 0.9, 0.95, 0.99)
LEVEL_68 = 0.6827
P_UNIFORM = 1e-3  # p-value below which a rank histogram is called non-uniform
MIN_SPECTRA = 500  # fewer test spectra than this: the verdict says the tests have little power


# ============================================================================ posterior draws
def draw_posterior(posterior, counts, n_draws: int = 1000, seed: int | None = 0, progress: bool = False) -> np.ndarray:
    """(M, n_draws, d) physical posterior draws for M spectra (``posterior.sample_batched``)."""
    if int(n_draws) < 20:
        raise XsbiError(f"n_draws must be at least 20 for calibration, got {n_draws}")
    draws = np.asarray(posterior.sample_batched(counts, int(n_draws), seed=seed, progress=progress), dtype=np.float64)
    if draws.ndim != 3:
        raise XsbiError(f"sample_batched returned shape {draws.shape}, expected (spectra, draws, parameters)")
    return draws


def _theta(theta, draws=None) -> np.ndarray:
    t = np.asarray(theta, dtype=np.float64)
    if t.ndim == 1:
        t = t[:, None]
    if draws is not None and (draws.shape[0] != t.shape[0] or draws.shape[2] != t.shape[1]):
        raise XsbiError(f"{t.shape[0]} true parameter vectors of dimension {t.shape[1]} but posterior draws of "
                        f"shape {draws.shape}")
    return t


def _names(names, posterior, d) -> list[str]:
    if names is None:
        names = getattr(posterior, "names", None)
    names = [f"param_{j}" for j in range(d)] if names is None else [str(n) for n in names]
    if len(names) != d:
        raise XsbiError(f"{len(names)} names for {d} parameters")
    return names


# ============================================================================ SBC ranks
def sbc_ranks(posterior, theta, counts, n_draws: int = 1000, seed: int | None = 0, draws=None,
              progress: bool = False) -> np.ndarray:
    """SBC ranks (Talts et al. 2018): per test spectrum and parameter, how many of ``n_draws``
    posterior draws lie below the true value; an (M, d) integer array with values in 0..n_draws.

    Ranks are computed in physical units; they are the same in the network's parameter space
    (log10 of log-uniform parameters), since ranks are invariant under monotone increasing
    transforms.  Pass ``draws`` ((M, L, d) physical) to reuse draws already made.
    """
    if draws is None:
        draws = draw_posterior(posterior, counts, n_draws, seed, progress)
    draws = np.asarray(draws, dtype=np.float64)
    t = _theta(theta, draws)
    return np.sum(draws < t[:, None, :], axis=1).astype(np.int64)


def _n_bins(n: int, n_draws: int) -> int:
    """About sqrt(N) bins, at most 20, at least 2, never more than the L + 1 rank values."""
    return int(max(2, min(20, int(np.sqrt(n)), n_draws + 1)))


def _bin_edges(n_draws: int, n_bins: int) -> np.ndarray:
    """Integer edges splitting the L + 1 rank values 0..L into ``n_bins`` near-equal bins."""
    return np.round(np.linspace(0, n_draws + 1, n_bins + 1)).astype(np.int64)


def rank_uniformity(ranks, n_draws: int, n_bins: int | None = None, names=None) -> dict:
    """Uniformity tests of SBC ranks, per parameter.

    Chi-square on a histogram of ``n_bins`` bins (default ~sqrt(N), at most 20) with the exact
    expected counts of the discrete uniform on 0..L, and a Kolmogorov-Smirnov test of the
    normalised ranks ``(r + 1/2) / (L + 1)`` against U(0, 1) (the discreteness, 1/(L + 1), is
    negligible against the KS critical value for L >= 100).

    Returns
    -------
    dict
        Per name (``param_j`` by default): ``chi2``, ``dof``, ``chi2_p``, ``ks``, ``ks_p``,
        ``histogram`` (counts), ``expected`` (counts), ``edges`` (integer rank edges),
        ``band99`` ([low, high] per bin: the central 99% binomial range of a uniform histogram).
    """
    r = np.asarray(ranks)
    if r.ndim == 1:
        r = r[:, None]
    n, d = r.shape
    if n < 2:
        raise XsbiError(f"rank uniformity needs at least 2 test spectra, got {n}")
    if r.min() < 0 or r.max() > n_draws:
        raise XsbiError(f"ranks must lie in 0..{n_draws}")
    n_bins = _n_bins(n, n_draws) if n_bins is None else int(n_bins)
    edges = _bin_edges(n_draws, n_bins)
    p = np.diff(edges) / (n_draws + 1.0)
    expected = n * p
    lo, hi = stats.binom.ppf(0.005, n, p), stats.binom.ppf(0.995, n, p)
    names = [f"param_{j}" for j in range(d)] if names is None else list(names)
    out = {}
    for j, name in enumerate(names):
        hist = np.histogram(r[:, j], bins=edges)[0]
        chi2 = float(np.sum((hist - expected) ** 2 / expected))
        u = (r[:, j] + 0.5) / (n_draws + 1.0)
        ks = stats.kstest(u, "uniform")
        out[name] = {"chi2": chi2, "dof": n_bins - 1, "chi2_p": float(stats.chi2.sf(chi2, n_bins - 1)),
                     "ks": float(ks.statistic), "ks_p": float(ks.pvalue), "n_bins": n_bins,
                     "histogram": hist.tolist(), "expected": expected.tolist(), "edges": edges.tolist(),
                     "band99": [lo.tolist(), hi.tolist()]}
    return out


def _null_score_std(n_draws: int) -> float:
    k = np.arange(n_draws + 1)
    s = stats.norm.ppf((k + 0.5) / (n_draws + 1.0))
    return float(np.sqrt(np.mean(s**2)))


def rank_shape(ranks, n_draws: int, names=None) -> dict:
    """What the rank histogram's shape says, per parameter, in posterior-width units.

    The normalised rank u = (r + 1/2)/(L + 1) is mapped to a normal score z = Phi^-1(u), which is
    N(0, 1) for a calibrated posterior whatever its shape.  For a Gaussian posterior shifted by
    ``delta`` widths, z has mean -delta; for one too narrow by a factor k, z has standard deviation
    1/k.  Hence

    * ``bias``: mean of z, with the sign of the posterior's error (the negative of mean z): > 0
      means the posterior sits above the truth (ranks piled at the low end), in posterior widths;
      ``bias_stderr`` = std(z)/sqrt(N) (wider when the posterior is also too narrow);
    * ``width_ratio``: std of z over its value for a calibrated posterior (the scores are truncated
      at +-Phi^-1(1 - 1/(2(L + 1)))): > 1 over-confident (U-shaped histogram), < 1 under-confident
      (dome);
    * ``outside_68``: fraction of test spectra whose truth lies outside the central 68.27% interval
      of the marginal posterior (0.3173 when calibrated).
    """
    r = np.asarray(ranks, dtype=np.float64)
    if r.ndim == 1:
        r = r[:, None]
    n, d = r.shape
    u = (r + 0.5) / (n_draws + 1.0)
    z = stats.norm.ppf(u)
    s0 = _null_score_std(n_draws)
    names = [f"param_{j}" for j in range(d)] if names is None else list(names)
    out = {}
    for j, name in enumerate(names):
        zj = z[:, j]
        sd = float(zj.std(ddof=1)) if n > 1 else float("nan")
        out[name] = {"bias": float(-zj.mean()), "bias_stderr": float(sd / np.sqrt(n)),
                     "width_ratio": sd / s0,
                     "width_ratio_stderr": float(1.0 / np.sqrt(2.0 * n)),
                     "outside_68": float(np.mean(np.abs(u[:, j] - 0.5) > LEVEL_68 / 2))}
    return out


# ============================================================================ coverage
def _network_log_prob(posterior, theta, counts) -> np.ndarray:
    lp = np.asarray(posterior.log_prob(theta, counts), dtype=np.float64).reshape(-1)
    space = getattr(posterior, "space", None)
    if space is not None and hasattr(space, "log_jacobian"):
        lp = lp - space.log_jacobian(theta)  # the density the network itself models (log10 axes)
    return lp


def hpd_credibility(posterior, theta, counts, draws) -> np.ndarray:
    """Per test spectrum, the credibility level of the smallest HPD region holding the truth:
    the fraction of posterior draws denser than the truth, log q(draw|x) > log q(true|x) (ties
    count half).  Uniform on [0, 1] for a calibrated posterior; near 1 when over-confident.

    Densities are taken in the network's parameter space when ``posterior.space`` is present
    (log10 for log-uniform parameters), as sbi's expected coverage does; any fixed
    parametrisation gives a valid test.
    """
    draws = np.asarray(draws, dtype=np.float64)
    t = _theta(theta, draws)
    counts = np.asarray(counts)
    alpha = np.empty(t.shape[0])
    for i in range(t.shape[0]):
        lp = _network_log_prob(posterior, np.vstack([draws[i], t[i][None]]), counts[i])
        lp_d, lp_t = lp[:-1], lp[-1]
        ok = ~np.isnan(lp_d)
        if not np.isfinite(lp_t):
            alpha[i] = 1.0  # the truth has no density at all: outside every credible region
            continue
        alpha[i] = (np.sum(lp_d[ok] > lp_t) + 0.5 * np.sum(lp_d[ok] == lp_t)) / max(1, ok.sum())
    return alpha


def expected_coverage(posterior, theta, counts, levels=DEFAULT_LEVELS, n_draws: int = 1000, seed: int | None = 0,
                      draws=None, progress: bool = False) -> dict:
    """HPD expected coverage (Hermans et al. 2022): empirical coverage at each nominal level.

    The truth of a test spectrum lies in the c-HPD region when its credibility level
    (:func:`hpd_credibility`) is below c; the empirical coverage at c is the fraction of test
    spectra for which it does.  Calibrated: coverage = c within the binomial error
    sqrt(c(1 - c)/N); below the diagonal: over-confident; above: under-confident.

    Returns
    -------
    dict
        ``levels``, ``coverage``, ``stderr`` (binomial, at the nominal level), ``credibility`` (per
        test spectrum), ``n``.
    """
    if draws is None:
        draws = draw_posterior(posterior, counts, n_draws, seed, progress)
    alpha = hpd_credibility(posterior, theta, counts, draws)
    levels = np.asarray(levels, dtype=np.float64)
    if np.any((levels <= 0) | (levels >= 1)):
        raise XsbiError("coverage levels must lie strictly between 0 and 1")
    n = len(alpha)
    cov = np.array([np.mean(alpha < c) for c in levels])
    return {"levels": levels.tolist(), "coverage": cov.tolist(), "stderr": np.sqrt(levels * (1 - levels) / n).tolist(),
            "credibility": alpha.tolist(), "n": int(n)}


def tarp(theta, draws, space=None, n_grid: int = 101, seed: int | None = 0) -> dict:
    """TARP expected coverage probability (Lemos et al. 2023, arXiv:2302.03026).

    As in ``sbi.diagnostics.tarp`` (sbi 0.27): parameters are min-max scaled over the test set
    (in the network's space when ``space`` is given: log10 for log-uniform parameters), one
    reference point per test spectrum is drawn uniformly in that box, and f_i is the fraction of
    posterior draws closer (L2) to the reference than the truth.  ECP(alpha) = fraction of test
    spectra with f_i < alpha, which is the diagonal for a calibrated posterior.

    Differences from sbi's implementation, on purpose: the ECP is the exact empirical CDF of f_i
    on a fixed grid over [0, 1] (sbi histograms f_i over its observed range, so a biased posterior
    whose f_i never reach 0 or 1 gets a rescaled alpha axis), and ``ks_p`` is the one-sample KS
    test of the f_i against U(0, 1) (sbi's ``check_tarp`` compares the ECP and alpha arrays).
    ``atc`` is sbi's: the area between the ECP and the diagonal for alpha > 0.5, positive when
    posteriors are too wide (under-confident), negative when too narrow (over-confident).
    """
    draws = np.asarray(draws, dtype=np.float64)
    t = _theta(theta, draws)
    if space is not None:
        t = space.to_phi(t)
        m, L, d = draws.shape
        draws = space.to_phi(draws.reshape(-1, d)).reshape(m, L, d)
    lo, hi = t.min(axis=0), t.max(axis=0)
    scale = np.where(hi > lo, hi - lo, 1.0)
    tz, dz = (t - lo) / scale, (draws - lo) / scale
    ref = np.random.default_rng(seed).uniform(0.0, 1.0, size=t.shape)
    d_true = np.linalg.norm(tz - ref, axis=1)
    d_draw = np.linalg.norm(dz - ref[:, None, :], axis=2)
    f = np.mean(d_draw < d_true[:, None], axis=1)
    alpha = np.linspace(0.0, 1.0, int(n_grid))
    ecp = np.mean(f[None, :] < alpha[:, None], axis=1)
    ecp[-1] = 1.0  # f_i = 1 (every draw closer than the truth) is inside the 100% region too
    mid = alpha > 0.5
    atc = float(np.sum((ecp[mid] - alpha[mid]) * (alpha[1] - alpha[0])))
    ks = stats.kstest(f, "uniform")
    return {"alpha": alpha.tolist(), "ecp": ecp.tolist(), "atc": atc, "ks": float(ks.statistic),
            "ks_p": float(ks.pvalue), "coverage_values": f.tolist(),
            "implementation": "xsbi (sbi.diagnostics.tarp's algorithm; exact ECDF on [0, 1])"}


# ============================================================================ verdicts
def _tolerance(stderr: float, floor: float) -> float:
    return max(3.0 * stderr, floor)


def parameter_verdict(shape: dict, uniformity: dict) -> dict:
    """Plain-words verdict for one parameter from :func:`rank_shape` and :func:`rank_uniformity`.

    Thresholds (N test spectra; deviations must be both significant, 3 standard errors, and
    large enough to matter):

    * biased high/low: abs(bias) > max(3 std(z)/sqrt(N), 0.1) posterior widths (rank histogram
      sloped; std(z) ~ 1 when calibrated, see :func:`rank_shape`);
    * over-confident: width_ratio > 1 + max(3/sqrt(2N), 0.1) (U-shaped histogram: posteriors
      too narrow); under-confident: width_ratio < 1 - max(3/sqrt(2N), 0.1) (dome: too wide);
    * otherwise, non-uniform: chi-square or KS p-value < 1e-3 (some other distortion);
    * otherwise calibrated.

    Returns ``{"status": ..., "verdict": ..., "flags": [...]}``; status is ``calibrated``,
    ``biased high``, ``biased low``, ``over-confident``, ``under-confident`` (the first flag) or
    ``non-uniform``.
    """
    flags, words = [], []
    out68 = shape["outside_68"]
    b, tb = shape["bias"], _tolerance(shape["bias_stderr"], 0.1)
    if abs(b) > tb:
        side = "high" if b > 0 else "low"
        ranks = "low" if b > 0 else "high"
        flags.append(f"biased {side}")
        words.append(f"biased {side} (posteriors sit {abs(b):.2f} posterior widths {'above' if b > 0 else 'below'} "
                     f"the truth on average: rank histogram skewed to {ranks} ranks)")
    w, tw = shape["width_ratio"], _tolerance(shape["width_ratio_stderr"], 0.1)
    if w > 1 + tw:
        flags.append("over-confident")
        words.append(f"over-confident (posteriors too narrow by a factor ~{w:.2f}: truth outside the central 68% "
                     f"interval in {out68:.0%} of test spectra, expected 32%; U-shaped rank histogram)")
    elif w < 1 - tw:
        flags.append("under-confident")
        words.append(f"under-confident (posteriors too wide by a factor ~{1 / w:.2f}: truth outside the central 68% "
                     f"interval in only {out68:.0%} of test spectra, expected 32%; dome-shaped rank histogram)")
    p = min(uniformity["chi2_p"], uniformity["ks_p"])
    if not flags and p < P_UNIFORM:
        flags.append("non-uniform")
        words.append(f"non-uniform ranks (p = {p:.2g}) though neither shifted nor too narrow or wide on average")
    if not flags:
        return {"status": "calibrated", "flags": [],
                "verdict": f"calibrated (ranks uniform: chi-square p = {uniformity['chi2_p']:.2g}, KS p = "
                           f"{uniformity['ks_p']:.2g}; truth outside the central 68% interval in {out68:.0%}, "
                           "expected 32%)"}
    return {"status": flags[0], "flags": flags, "verdict": "; ".join(words)}


def coverage_verdict(coverage: dict, tarp_result: dict | None = None,
                     check_levels=(0.5, LEVEL_68, 0.9, 0.95)) -> dict:
    """Plain-words verdict on the joint HPD coverage (and TARP).

    At each of ``check_levels`` c, the empirical coverage is compared with c; tolerance
    3 sqrt(c(1 - c)/N) + 0.01.  Coverage below the diagonal beyond it at some level (and above
    at none): over-confident; above: under-confident; both: miscalibrated.  If the HPD coverage
    is fine but TARP's coverage values are not uniform (KS p < 1e-3), the verdict is
    miscalibrated (TARP is sensitive to biases that HPD coverage can miss).
    """
    alpha = np.asarray(coverage["credibility"])
    n = len(alpha)
    devs = []
    for c in check_levels:
        cov = float(np.mean(alpha < c))
        tol = 3.0 * np.sqrt(c * (1 - c) / n) + 0.01
        devs.append((c, cov, cov - c, tol))
    low = [x for x in devs if x[2] < -x[3]]
    high = [x for x in devs if x[2] > x[3]]
    in68 = float(np.mean(alpha < LEVEL_68))
    tarp_note = ""
    if tarp_result is not None:
        tarp_note = f"; TARP ATC {tarp_result['atc']:+.3f}, KS p = {tarp_result['ks_p']:.2g}"
    where = f"truth outside the 68% HPD region in {1 - in68:.0%} of test spectra, expected 32%"
    if low and not high:
        # too narrow, or shifted: the per-parameter rank histograms tell which
        status, text = "over-confident", f"over-confident (posteriors too narrow or off-centre: {where}{tarp_note})"
    elif high and not low:
        status, text = "under-confident", f"under-confident (posteriors too wide: {where}{tarp_note})"
    elif high and low:
        status, text = "miscalibrated", (f"miscalibrated (coverage above the diagonal at some levels, below at others: "
                                         f"{where}{tarp_note})")
    elif tarp_result is not None and tarp_result["ks_p"] < P_UNIFORM:
        status, text = "miscalibrated", f"miscalibrated (HPD coverage fine, {where}, but TARP is not{tarp_note})"
    else:
        status, text = "calibrated", f"calibrated ({where}{tarp_note})"
    return {"status": status, "verdict": text,
            "levels_checked": [{"level": c, "coverage": cov, "tolerance": tol} for c, cov, _, tol in devs]}


def _overall(per_param: dict, cov: dict, n: int) -> dict:
    """Overall status: ``calibrated``; ``biased`` (some parameter biased, no width problem: the
    joint coverage then reads low because posteriors are off-centre); ``over-confident`` or
    ``under-confident`` (every flag agrees); otherwise ``miscalibrated``."""
    bad = {k: v for k, v in per_param.items() if v["status"] != "calibrated"}
    flags = [f for v in bad.values() for f in v["flags"]]
    biased = any(f.startswith("biased") for f in flags)
    others = {f for f in flags if not f.startswith("biased")}
    if cov["status"] == "calibrated" and not bad:
        status, text = "calibrated", f"every parameter's ranks uniform; joint coverage {cov['verdict']}"
    else:
        if biased:
            status = "biased" if not others else "miscalibrated"
        else:
            found = others | ({cov["status"]} if cov["status"] != "calibrated" else set())
            status = found.pop() if len(found) == 1 else "miscalibrated"
        parts = [f"joint coverage {cov['verdict']}"]
        parts += [f"{k}: {v['verdict']}" for k, v in bad.items()]
        text = "; ".join(parts)
    if n < MIN_SPECTRA:
        text += (f".  Only {n} test spectra (at least {MIN_SPECTRA} recommended): only large miscalibration can be "
                 "detected")
    return {"status": status, "verdict": text}


# ============================================================================ test sets
def read_test_set(path) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """Read a ``test_set.fits`` written by ``xsbi run``: (theta (M, d), counts (M, n_bins), names,
    header as a dict).  Raises XsbiError with what to do when the file is missing or not one."""
    from astropy.io import fits

    path = Path(path)
    if not path.is_file():
        raise XsbiError(f"test set {path} not found; `xsbi run` (inference.method npe, inference.test_spectra > 0) "
                        "writes test_set.fits next to network.pt; runs made before it did need rerunning, or pass "
                        "--test-set FILE")
    try:
        with fits.open(path, memmap=False) as hdul:
            hdu = hdul["TESTSET"] if "TESTSET" in hdul else next(h for h in hdul if isinstance(h, fits.BinTableHDU))
            data, header = hdu.data, dict(hdu.header)
            names = [c for c in data.columns.names if c.upper() != "COUNTS"]
            if "COUNTS" not in [c.upper() for c in data.columns.names]:
                raise XsbiError(f"{path} has no COUNTS column: not an xsbi test set (written by `xsbi run`)")
            counts = np.asarray(data["COUNTS"], dtype=np.float64)
            theta = np.column_stack([np.asarray(data[n], dtype=np.float64) for n in names]) if names else None
    except XsbiError:
        raise
    except StopIteration:
        raise XsbiError(f"{path} has no binary table: not an xsbi test set (written by `xsbi run`)") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise XsbiError(f"cannot read test set {path} ({exc.__class__.__name__}: {exc})") from None
    if theta is None or len(theta) == 0:
        raise XsbiError(f"{path} holds no test spectra or no parameter columns")
    if counts.ndim == 1:
        counts = counts[:, None]
    return theta, counts, names, header


def check_test_set(posterior, theta, counts, names, header=None, path="the test set") -> np.ndarray:
    """Check a test set against a trained network; return theta in the network's parameter order.

    Raises XsbiError naming what differs (parameters, number of bins, response, bin energies,
    exposure, parameters outside the network's prior) and how to fix it.
    """
    fix = ("use the test_set.fits written by the same `xsbi run` as the network (the default when both are in "
           "RUNDIR), or pass the matching --network/--test-set")
    net_names = list(posterior.names)
    missing = [n for n in net_names if n not in names]
    extra = [n for n in names if n not in net_names]
    if missing or extra:
        raise XsbiError(f"{path} has parameters {names} but the network infers {net_names}"
                        + (f" (missing: {missing})" if missing else "") + (f" (unknown: {extra})" if extra else "")
                        + f"; {fix}")
    spec = posterior.meta.get("spectrum", {}) if hasattr(posterior, "meta") else {}
    n_bins = spec.get("n_bins")
    if n_bins is not None and counts.shape[1] != n_bins:
        raise XsbiError(f"{path} has spectra of {counts.shape[1]} bins but the network was trained on {n_bins} bins; "
                        f"{fix}")
    header = header or {}
    problems = []
    if "RESPHASH" in header and spec.get("response_hash") and header["RESPHASH"] != spec["response_hash"]:
        problems.append("a different response (RMF/ARF)")
    if "BINSHASH" in header and spec.get("bins_hash") and header["BINSHASH"] != spec["bins_hash"]:
        problems.append("different bin energies (grouping or noticed band)")
    exposure = spec.get("exposure")
    if "EXPOSURE" in header and exposure and abs(float(header["EXPOSURE"]) - exposure) > 1e-6 * exposure:
        problems.append(f"exposure {float(header['EXPOSURE']):g} s, network trained for {spec['exposure']:g} s")
    if problems:
        raise XsbiError(f"{path} was simulated for " + "; ".join(problems) + f"; {fix}")
    order = [names.index(n) for n in net_names]
    theta = np.asarray(theta, dtype=np.float64)[:, order]
    if not np.all(np.isfinite(theta)) or not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise XsbiError(f"{path} has non-finite parameters or negative counts")
    space = getattr(posterior, "space", None)
    if space is not None:
        lo, hi = space.bounds_phi()
        phi = space.to_phi(theta) if np.all(theta[:, space.log] > 0) else np.full_like(theta, np.nan)
        outside = ~np.all((phi >= lo - 1e-9) & (phi <= hi + 1e-9), axis=1)
        if outside.any():
            raise XsbiError(f"{int(outside.sum())} of {len(theta)} test parameters in {path} lie outside the network's "
                            f"prior; {fix}")
    return theta


# ============================================================================ plots
def _plot_ranks(ranks_stats: dict, verdicts: dict, n_draws: int, path) -> None:
    from ..report._common import COLORS, grid_shape, new_figure, save

    names = list(ranks_stats)
    rows, cols = grid_shape(len(names))
    fig = new_figure((4.0 * cols, 3.3 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        s = ranks_stats[name]
        edges = np.asarray(s["edges"], dtype=float)
        lo, hi = (np.asarray(b, dtype=float) for b in s["band99"])
        ax.stairs(hi, edges, baseline=lo, fill=True, color="0.85", label="uniform, 99% band")
        ax.stairs(np.asarray(s["expected"]), edges, color="0.4", lw=1.0, ls="--", label="uniform")
        ax.stairs(np.asarray(s["histogram"]), edges, color=COLORS[0], lw=1.6, label="ranks")
        ax.set_xlim(0, n_draws + 1)
        ax.set_ylim(0, max(hi.max(), max(s["histogram"])) * 1.25)
        ax.set_xlabel(f"rank of true {name} among {n_draws} draws")
        ax.set_ylabel("test spectra")
        ax.set_title(f"{verdicts[name]['status']}   (chi2 p={s['chi2_p']:.2g}, KS p={s['ks_p']:.2g})", fontsize=8)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, frameon=False, loc="upper right")
    fig.tight_layout()
    save(fig, path)


def _plot_coverage(cov: dict, tarp_result: dict, shapes: dict, ranks: np.ndarray, n_draws: int, path) -> None:
    from ..report._common import COLORS, new_figure, save

    fig = new_figure((5.2, 4.8))
    ax = fig.subplots()
    grid = np.linspace(0, 1, 201)
    n = cov["n"]
    band = 2.576 * np.sqrt(grid * (1 - grid) / n)
    ax.fill_between(grid, grid - band, grid + band, color="0.88", label="calibrated, 99% band")
    ax.plot([0, 1], [0, 1], color="k", lw=1.0, ls="--")
    alpha = np.asarray(cov["credibility"])
    ax.plot(grid, [np.mean(alpha < c) for c in grid], color=COLORS[0], lw=1.8, label="HPD expected coverage")
    ax.plot(tarp_result["alpha"], tarp_result["ecp"], color=COLORS[1], lw=1.4, label="TARP")
    u = (np.asarray(ranks, dtype=float) + 0.5) / (n_draws + 1.0)
    for j, name in enumerate(shapes):
        central = np.abs(u[:, j] - 0.5) * 2  # level of the smallest central interval holding the truth
        ax.plot(grid, [np.mean(central < c) for c in grid], color=COLORS[(j + 2) % len(COLORS)], lw=0.9,
                alpha=0.8, label=f"{name} (central intervals)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("credibility level")
    ax.set_ylabel("fraction of test spectra with the truth inside")
    ax.text(0.97, 0.03, "below the diagonal: over-confident\nabove: under-confident", transform=ax.transAxes,
            ha="right", va="bottom", fontsize=7, color="0.3")
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    fig.tight_layout()
    save(fig, path)


# ============================================================================ the whole check
def validate(posterior, theta, counts, out, n_draws: int = 1000, levels=DEFAULT_LEVELS, seed: int = 0,
             names=None, log_params=None, plots: bool = True, progress: bool = False,
             extra: dict | None = None) -> dict:
    """Calibrate ``posterior`` on a test set and write the report to ``out``.

    One set of ``n_draws`` posterior draws per test spectrum serves every check: SBC ranks and
    their uniformity (per parameter), HPD expected coverage and TARP (joint), and the regression
    of posterior medians on the inputs.  Writes ``validate.json`` (every number and verdict),
    ``validate.md``, and with ``plots`` ``sbc_ranks.png``, ``coverage.png`` and ``regression.png``.

    Parameters
    ----------
    theta : (M, d) true physical parameters, in ``posterior.names`` order
    counts : (M, n_bins) spectra simulated from them
    log_params : names shown and regressed in log10; default: the network's log-uniform parameters
    extra : merged into validate.json (e.g. the files used)

    Returns
    -------
    dict
        What validate.json holds.
    """
    from ..report import plot_regression, regression_summary

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    counts = np.asarray(counts)
    theta = _theta(theta)
    if counts.shape[0] != theta.shape[0]:
        raise XsbiError(f"{theta.shape[0]} parameter vectors but {counts.shape[0]} spectra")
    names = _names(names, posterior, theta.shape[1])
    space = getattr(posterior, "space", None)
    if log_params is None:
        log_params = [n for n, lg in zip(names, space.log) if lg] if space is not None and hasattr(space, "log") else []
    timings = {}
    draws = draw_posterior(posterior, counts, n_draws, seed, progress)
    timings["sample"] = time.perf_counter() - t0
    _theta(theta, draws)

    ranks = sbc_ranks(posterior, theta, counts, n_draws, draws=draws)
    uni = rank_uniformity(ranks, n_draws, names=names)
    shapes = rank_shape(ranks, n_draws, names=names)
    verdicts = {n: parameter_verdict(shapes[n], uni[n]) for n in names}
    t1 = time.perf_counter()
    cov = expected_coverage(posterior, theta, counts, levels, draws=draws)
    timings["log_prob"] = time.perf_counter() - t1
    tr = tarp(theta, draws, space=space, seed=seed)
    cverdict = coverage_verdict(cov, tr)
    overall = _overall(verdicts, cverdict, len(theta))

    q16, med, q84 = np.percentile(draws, [15.87, 50, 84.13], axis=1)
    reg = regression_summary(theta, med, names=names, log_params=log_params)

    parameters = {}
    for n in names:
        parameters[n] = {"status": verdicts[n]["status"], "verdict": verdicts[n]["verdict"],
                         "flags": verdicts[n]["flags"], **shapes[n], "ranks": uni[n], "regression": reg[n]}
    result = {
        "spectra": int(len(theta)), "draws": int(n_draws), "seed": seed, "names": names,
        "verdict": overall,
        "parameters": parameters,
        "coverage": {**{k: cov[k] for k in ("levels", "coverage", "stderr")}, **cverdict,
                     "outside_68_hpd": float(1 - np.mean(np.asarray(cov["credibility"]) < LEVEL_68)),
                     "credibility": cov["credibility"]},
        "tarp": {k: v for k, v in tr.items()},
        "thresholds": {
            "bias": "|bias| > max(3 std(z)/sqrt(N), 0.1) posterior widths (z: normal scores of the ranks)",
            "width": "width_ratio outside 1 +- max(3/sqrt(2N), 0.1)",
            "uniformity": f"chi-square or KS p < {P_UNIFORM:g}",
            "coverage": "|coverage - c| > 3 sqrt(c(1-c)/N) + 0.01 at c in 0.5, 0.6827, 0.9, 0.95",
            "tarp": f"KS p of the TARP coverage values < {P_UNIFORM:g}",
        },
        "ranks_space": "physical (identical in the network's log10 space: ranks are invariant under monotone maps)",
        "density_space": "network" if space is not None else "as given",
    }
    plots_written = {}
    if plots:
        t2 = time.perf_counter()
        _plot_ranks(uni, verdicts, n_draws, out / "sbc_ranks.png")
        _plot_coverage(cov, tr, shapes, ranks, n_draws, out / "coverage.png")
        plot_regression(theta, med, q16, q84, names, out / "regression.png", log_params=log_params)
        plots_written = {"sbc_ranks": "sbc_ranks.png", "coverage": "coverage.png", "regression": "regression.png"}
        timings["plots"] = time.perf_counter() - t2
    result["plots"] = plots_written
    timings["total"] = time.perf_counter() - t0
    result["timings_s"] = timings
    if extra:
        result.update(extra)
    (out / "validate.json").write_text(json.dumps(result, indent=2, default=_jsonable) + "\n")
    (out / "validate.md").write_text(_markdown(result))
    return result


def _jsonable(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _markdown(r: dict) -> str:
    lines = [
        "# Calibration of the network (`xsbi validate`)", "",
        f"{r['spectra']} test spectra from the restricted prior, {r['draws']} posterior draws each.", "",
        f"**Verdict: {r['verdict']['status']}.** {r['verdict']['verdict']}", "",
        "| parameter | verdict | chi-square p | KS p | bias (widths) | width ratio | outside 68% | slope | intercept "
        "| R^2 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, p in r["parameters"].items():
        g = p["regression"]
        lines.append(f"| {n} | {p['status']} | {p['ranks']['chi2_p']:.3g} | {p['ranks']['ks_p']:.3g} | "
                     f"{p['bias']:+.3f} | {p['width_ratio']:.3f} | {p['outside_68']:.1%} | {g['slope']:.3f} | "
                     f"{g['intercept']:.3g} | {g['r2']:.3f} |")
    lines += ["", "Per parameter: " + "; ".join(f"**{n}**: {p['verdict']}" for n, p in r["parameters"].items()), "",
              "## Joint coverage", "",
              f"HPD expected coverage: {r['coverage']['verdict']}.", "",
              "| level | " + " | ".join(f"{c:.3g}" for c in r["coverage"]["levels"]) + " |",
              "|---|" + "---|" * len(r["coverage"]["levels"]),
              "| coverage | " + " | ".join(f"{c:.3f}" for c in r["coverage"]["coverage"]) + " |", "",
              f"TARP: ATC {r['tarp']['atc']:+.4f} (> 0 too wide, < 0 too narrow), KS p = {r['tarp']['ks_p']:.3g}.", "",
              "Thresholds: " + "; ".join(f"{k}: {v}" for k, v in r["thresholds"].items()) + ".", ""]
    if r.get("plots"):
        lines += ["Figures: " + ", ".join(f"`{f}`" for f in r["plots"].values()) + ".", ""]
    return "\n".join(lines)

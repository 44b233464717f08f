"""Re-run the seed paper's sections 4-7 (Barret & Dupourque 2024, Figs. 5-13) on the shared NICER set-up.

Three parts, each writing into ``OUT/<part>/``; ``OUT/report.md`` collects the numbers with the
settings, seeds, versions and timings (``OUT/results.json`` holds the same in JSON):

* ``posteriors`` (Figs. 5-10): the XSPEC-faked reference spectra
  ``Reference_pha_tbabs_powerlaw_{2000,20000}counts_groupconstant_5.pha`` analysed by ``xsbi run``
  with single-round NPE (20,000 simulations at 2,000 counts, 10,000 at 20,000 counts, as in the
  paper), multi-round NPE (3 rounds x 1,000, 2,000-count spectrum), emcee and UltraNest, all with the
  same priors (nH loguniform 0.1-0.3, PhoIndex uniform 0.5-2.5, norm loguniform 0.01-100), then
  ``xsbi compare`` against emcee.  The NPE rows are given for the importance-sampled posterior
  (what ``xsbi run`` returns) and for the raw network (``npe_parameters`` of ``summary.json``).
* ``minima`` (Fig. 11, section 6): ``tbabs*(powerlaw+bbodyrad)`` with the paper's model-2 priors,
  restricted to spectra of 10,000-100,000 counts on the 11.1 s NICER reference exposure; one NPE
  (50,000 simulations; the paper used 100,000), then on 500 held-out test spectra the C-stat of the
  NPE best fit as ``xsbi run`` reports it (the lowest-C-stat of 20,000 posterior draws, then a local
  C-stat fit from it; the draw alone is also reported) against single-start C-stat minimisations
  started (a) at the true parameters, (b) from a restricted-prior draw, (c) from a full-prior draw.
  The reference minimum of a spectrum is the lowest C-stat found by any of these and by a
  multi-start fit; an outlier is a C-stat above the reference by more than 2.71.
* ``pca`` (Figs. 12-13, section 7): the 2,000-count NPE trained on the same simulations with and
  without a PCA keeping 90% of the variance: input dimension and components, training and
  inference times, raw-network posterior widths (PCA / no PCA and against emcee); a third network
  keeps as many components as the paper's recipe (bins scaled to unit variance before the PCA).

Run: ``python benchmarks/replicate_paper.py --out replicate [--quick] [--seed 0]
[--parts posteriors,minima,pca] [--minima-simulations N]``; ``--rebuild-report`` rewrites
``report.md`` from ``results.json``.  ``--quick`` runs every part at reduced sizes (3-5 minutes on
2 cores; what ``tests/test_replicate_paper.py`` runs).  The full run took 63 minutes on the shared
2-core machine: posteriors 6, minima 53 (NPE training 9, C-stats of 20,000 draws per spectrum 24,
fits 19), PCA 5.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import io
import json
import math
import os
import platform
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

NICER = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nicer"
PL_FILE = "Reference_pha_tbabs_powerlaw_{}counts_groupconstant_5.pha"
BB_FILE = "Reference_pha_tbabs_powerlaw_bbodyrad_20000counts_groupconstant_5.pha"
ENERGY = [0.3, 10.0]
PRIORS_PL = {"tbabs.nH": {"loguniform": [0.1, 0.3]}, "powerlaw.PhoIndex": {"uniform": [0.5, 2.5]},
             "powerlaw.norm": {"loguniform": [0.01, 100.0]}}
# Table 1, model 2 (normalisations log-uniform, one of the paper's two options)
PRIORS_M2 = {"tbabs.nH": {"uniform": [0.15, 0.35]}, "powerlaw.PhoIndex": {"uniform": [1.0, 3.0]},
             "powerlaw.norm": {"loguniform": [0.01, 10.0]}, "bbodyrad.kT": {"uniform": [0.3, 3.0]},
             "bbodyrad.norm": {"loguniform": [1.0, 1.0e5]}}
TRUTH_PL = {"tbabs.nH": 0.2, "powerlaw.PhoIndex": 1.7, "powerlaw.norm": 1.0}
DELTA_C = 2.71  # outlier threshold of section 6 (90% for one parameter)
SHIFT_FLOOR, WIDTH_FLOOR, PCA_WIDTH_FLOOR = 0.15, 0.15, 0.10
PARTS = ("posteriors", "minima", "pca")

FULL = {
    "posteriors": {"spectra": ["2000", "20000"], "simulations": {"2000": 20000, "20000": 10000},
                   "snpe": {"2000": (3, 1000)}, "test_spectra": 500, "posterior_samples": 20000,
                   "live_points": 400, "stop_after_epochs": 20, "c2st_samples": 5000},
    "minima": {"simulations": 50000, "test_spectra": 500, "draws": 20000, "multi_starts": 3,
               "counts_window": [10_000, 100_000], "stop_after_epochs": 20},
    "pca": {"simulations": 20000, "test_spectra": 500, "test_draws": 1000, "pca": 0.90,
            "posterior_samples": 20000, "timing_repeats": 3, "stop_after_epochs": 20},
}
QUICK = {
    "posteriors": {"spectra": ["2000", "20000"], "simulations": {"2000": 3000, "20000": 2000},
                   "snpe": {"2000": (2, 600)}, "test_spectra": 40, "posterior_samples": 4000,
                   "live_points": 100, "stop_after_epochs": 10, "c2st_samples": 1000},
    "minima": {"simulations": 5000, "test_spectra": 30, "draws": 5000, "multi_starts": 2,
               "counts_window": [10_000, 100_000], "stop_after_epochs": 10},
    "pca": {"simulations": 3000, "test_spectra": 40, "test_draws": 500, "pca": 0.90,
            "posterior_samples": 5000, "timing_repeats": 1, "stop_after_epochs": 10},
}


# ================================================================================== helpers
def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _quiet():
    """sbi prints training progress (epoch counters, "converged after ...") to stdout; keep the log readable."""
    return contextlib.redirect_stdout(io.StringIO())


def _sigma(q16, q84) -> float:
    """Half the 68% interval, as ``xsbi compare`` defines sigma."""
    return 0.5 * (float(q84) - float(q16))


def _fmt(x, fmt="+.2f") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def _quantile_row(samples: np.ndarray) -> list[dict]:
    q16, med, q84 = np.quantile(samples, [0.16, 0.5, 0.84], axis=0)
    return [{"median": float(m), "q16": float(a), "q84": float(b), "sigma": _sigma(a, b)} for m, a, b in zip(med, q16, q84)]


def _against(stats: dict, ref: dict) -> dict:
    """shift (reference sigma) and width ratio of a {median, q16, q84} entry against the reference's."""
    s0 = _sigma(ref["q16"], ref["q84"])
    s = _sigma(stats["q16"], stats["q84"])
    return {"median": float(stats["median"]), "sigma": s, "shift": (float(stats["median"]) - float(ref["median"])) / s0,
            "width_ratio": s / s0}


def _meets(entry: dict, shift=SHIFT_FLOOR, width=WIDTH_FLOOR) -> bool:
    return abs(entry["shift"]) <= shift and abs(entry["width_ratio"] - 1.0) <= width


def _log_names(prior) -> list[str]:
    from xsbi.priors import LogUniform

    return [n for n in prior.names if isinstance(prior.priors[n], LogUniform)]


def _data_file(name: str) -> Path:
    path = (NICER / name).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"shared NICER data not found: {path} (the benchmark reads ../shared/data/nicer)")
    return path


# ================================================================================== part 1
def _config(path: Path, seed: int, s: dict, label: str, snpe=None) -> dict:
    inference = {"simulations": s["simulations"][label], "posterior_samples": s["posterior_samples"],
                 "test_spectra": s["test_spectra"], "stop_after_epochs": s["stop_after_epochs"],
                 "nested": {"live_points": s["live_points"]}}
    if snpe:
        inference.update(rounds=snpe[0], simulations_per_round=snpe[1])
    return {"data": {"spectrum": str(path), "energy": ENERGY}, "model": "tbabs*powerlaw", "priors": PRIORS_PL,
            "restriction": {"method": "counts"}, "inference": inference, "seed": seed, "plots": True}


def _raw_network_run(npe_dir: Path, raw_dir: Path, n: int) -> None:
    """A run directory holding the raw network's posterior (no importance sampling) for ``xsbi compare``."""
    from xsbi.config import load_config
    from xsbi.inference import AmortizedPosterior, PosteriorResult, summarize
    from xsbi.pipeline import load_observation, write_samples
    from xsbi.record import write_json

    summary = json.loads((npe_dir / "summary.json").read_text())
    cfg = load_config(summary["config"])
    spec = load_observation(cfg)
    prior = cfg.build_prior()
    post = AmortizedPosterior.load(npe_dir / "network.pt")
    samples = post.sample(spec.counts, n, seed=cfg.seed + 7)  # the draws `xsbi run` importance-samples
    label = "npe (raw network, no importance sampling)"
    res = PosteriorResult.from_samples(samples, prior.names, spec, prior.model, label)
    raw_dir.mkdir(parents=True, exist_ok=True)
    raw = {k: summary[k] for k in ("seed", "spectrum", "model", "priors", "config", "versions") if k in summary}
    timings = {k: v for k, v in (summary.get("timings_s") or {}).items() if k not in ("importance_sampling", "test_set")}
    raw.update(method="npe-raw", parameters=summarize(samples, prior.names),
               best_fit={"parameters": res.best_fit, **res.fit}, timings_s=timings,
               note=f"raw network of {npe_dir}, same draws as its 'npe_parameters'")
    write_samples(raw_dir / "posterior_samples.fits", samples, list(prior.names), label)
    write_json(raw_dir / "summary.json", raw)


def part_posteriors(out: Path, s: dict, seed: int) -> dict:
    from astropy.io import fits
    from xsbi.diagnostics.compare import load_runs, write_comparison
    from xsbi.pipeline import run_analysis

    results = {}
    for label in s["spectra"]:
        path = _data_file(PL_FILE.format(label))
        base = out / f"{label}counts"
        methods = ["mcmc", "nested", "npe"] + (["snpe"] if label in s["snpe"] else [])
        record = {"spectrum": str(path), "methods": {}, "wall_s": {}}
        for m in methods:
            cfg = _config(path, seed, s, label, s["snpe"].get(label) if m == "snpe" else None)
            _say(f"posteriors {label} counts: {m}")
            d = base / m
            if d.exists():
                shutil.rmtree(d)
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with _quiet():
                    summ = run_analysis(cfg, d, method=m, progress=False)
            record["wall_s"][m] = time.perf_counter() - t0
            record["methods"][m] = {"timings_s": summ.get("timings_s"), "best_fit": summ.get("best_fit"),
                                    "warnings": sorted({str(w.message) for w in caught})}
            for key in ("training", "importance_sampling", "mcmc", "nested", "restriction", "test_set"):
                if key in summ:
                    record["methods"][m][key] = summ[key]
            if "npe_parameters" in summ:
                record["methods"][m]["npe_parameters"] = summ["npe_parameters"]
        record["counts"] = int(summ["spectrum"]["counts"])
        record["n_bins"] = int(summ["spectrum"]["n_bins"])
        _raw_network_run(base / "npe", base / "npe_raw", s["posterior_samples"])
        dirs = [base / "mcmc", base / "nested", base / "npe", base / "npe_raw"] + (
            [base / "snpe"] if "snpe" in methods else [])
        labels = ["mcmc", "nested", "npe", "npe-raw"] + (["snpe"] if "snpe" in methods else [])
        _say(f"posteriors {label} counts: compare")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            comp = write_comparison(load_runs(dirs, labels=labels), base / "compare", c2st_samples=s["c2st_samples"],
                                    seed=seed)
        names = comp["names"]
        table = {}
        for lb in labels[1:]:
            table[lb] = {n: {k: comp["parameters"][n][lb][k] for k in ("median", "sigma", "shift", "width_ratio")}
                         for n in names}
        # raw multi-round network from summary.json's npe_parameters (`xsbi run` saves no SNPE network);
        # for NPE the same numbers come from the npe-raw run, which redraws them from network.pt
        raw = record["methods"].get("snpe", {}).get("npe_parameters")
        if raw:
            table["snpe-raw"] = {n: _against(raw[n], comp["parameters"][n]["mcmc"]) for n in names}
        raw = record["methods"]["npe"].get("npe_parameters")
        if raw:
            record["npe_raw_consistency"] = max(abs(_against(raw[n], comp["parameters"][n]["mcmc"])["shift"]
                                                    - table["npe-raw"][n]["shift"]) for n in names)
        record["unique_sample_fraction"] = {}
        for lb, d in zip(labels, dirs):
            with fits.open(d / "posterior_samples.fits") as h:
                arr = np.column_stack([np.asarray(h[1].data[c], dtype=float) for c in h[1].columns.names])
            record["unique_sample_fraction"][lb] = float(len(np.unique(arr, axis=0)) / len(arr))
        record["table"] = table
        record["c2st"] = comp["c2st"]
        record["reference"] = {n: comp["parameters"][n]["mcmc"] for n in names}
        record["floors_met"] = {lb: all(_meets(table[lb][n]) for n in names) for lb in table}
        record["compare"] = str(base / "compare" / "compare.md")
        results[label] = record
    return results


# ================================================================================== part 2
def part_minima(out: Path, s: dict, seed: int) -> dict:
    import xsbi
    from xsbi.inference import NPE, CountsWindow, ParameterSpace, restrict_with_classifier
    from xsbi.likelihood import PoissonLikelihood, fit_cstat
    from xsbi.stats import cstat

    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    setup = xsbi.load_spectrum(_data_file(BB_FILE)).notice(*ENERGY)
    model = xsbi.Model("tbabs*(powerlaw+bbodyrad)")
    prior = xsbi.JointPrior(model, PRIORS_M2)
    sim = xsbi.Simulator(model, setup)
    space = ParameterSpace(prior)
    window = CountsWindow(*s["counts_window"])
    timings = {}

    _say("minima: restricting the prior")
    t0 = time.perf_counter()
    with _quiet():
        restricted = restrict_with_classifier(sim, space, window, seed=seed + 1, progress=False)
    timings["restriction"] = time.perf_counter() - t0
    full_fraction = float(window(None, sim.sample(prior.sample(5000, seed=seed + 2), seed=seed + 3), None).mean())

    _say("minima: simulating and training")
    t0 = time.perf_counter()
    theta = restricted.sample(s["simulations"], seed=seed + 4)
    x = sim.sample(theta, seed=seed + 5)
    # test spectra: restricted-prior draws whose spectra have the required counts
    pool = restricted.sample(4 * s["test_spectra"], seed=seed + 6)
    x_pool = sim.sample(pool, seed=seed + 7)
    inside = window(pool, x_pool, None)
    if inside.sum() < s["test_spectra"]:
        raise RuntimeError(f"only {int(inside.sum())} of {len(pool)} restricted-prior draws have counts in the window")
    theta_test = pool[inside][: s["test_spectra"]]
    x_test = np.asarray(x_pool[inside][: s["test_spectra"]]).astype(np.int64)
    timings["simulate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with _quiet():
        post = NPE(model, prior, setup).append_simulations(theta, x).train(
            seed=seed + 8, progress=False, stop_after_epochs=s["stop_after_epochs"])
    timings["train"] = time.perf_counter() - t0

    starts_b = restricted.sample(len(theta_test), seed=seed + 10)
    starts_c = prior.sample(len(theta_test), seed=seed + 11)
    # "npe" is the best fit as `xsbi run` reports it (PosteriorResult.from_samples with a likelihood):
    # the lowest-C-stat draw ("npe_draw", the paper's definition), then a local minimisation from it
    kinds = ["npe", "npe_draw", "npe_1k", "truth", "restricted", "full", "multi"]
    cst = {k: np.full(len(theta_test), np.nan) for k in kinds}
    best_theta = {k: np.full((len(theta_test), prior.dim), np.nan) for k in kinds}
    fit_time = {k: 0.0 for k in kinds}
    timings["npe_sampling"] = 0.0
    n_small = min(1000, s["draws"])
    _say(f"minima: {len(theta_test)} test spectra: {s['draws']:,} NPE draws each, C-stat fits "
         f"({4 + s['multi_starts']} starts each)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(len(theta_test)):
            lik = PoissonLikelihood(setup.with_counts(x_test[i]), model, prior)
            t0 = time.perf_counter()
            draws = post.sample(x_test[i], s["draws"], seed=seed + 100_000 + i)
            timings["npe_sampling"] += time.perf_counter() - t0
            # NPE best fit: the draw of lowest C-stat; screened with the float32 simulator, the 20 best
            # recomputed exactly (float64 likelihood)
            t0 = time.perf_counter()
            c32 = cstat(x_test[i].astype(np.float64)[None, :], sim.expected_counts(draws).astype(np.float64),
                        validate=False)
            for kind, n_use in (("npe_draw", len(draws)), ("npe_1k", n_small)):
                top = np.argsort(c32[:n_use])[:20]
                c = lik.cstat(draws[top])
                j = int(np.argmin(c))
                cst[kind][i], best_theta[kind][i] = c[j], draws[top[j]]
            fit_time["npe_draw"] += time.perf_counter() - t0
            for kind, start in (("truth", theta_test[i]), ("restricted", starts_b[i]), ("full", starts_c[i]),
                                ("npe", best_theta["npe_draw"][i])):
                t0 = time.perf_counter()
                r = fit_cstat(lik, starts=[start], delta_c=None)
                fit_time[kind] += time.perf_counter() - t0
                cst[kind][i], best_theta[kind][i] = r.cstat, r.theta
            t0 = time.perf_counter()
            r = fit_cstat(lik, n_starts=s["multi_starts"], seed=seed + 1000 + i, delta_c=None)
            fit_time["multi"] += time.perf_counter() - t0
            cst["multi"][i], best_theta["multi"][i] = r.cstat, r.theta
            if (i + 1) % 50 == 0:
                _say(f"minima: {i + 1} spectra done")
    ref = np.nanmin(np.vstack([cst[k] for k in kinds]), axis=0)
    delta = {k: cst[k] - ref for k in kinds}
    outliers = {k: delta[k] > DELTA_C for k in kinds}
    labels = {"npe": f"NPE best fit (as `xsbi run`: lowest-C-stat draw, then a local fit from it)",
              "npe_draw": f"NPE lowest-C-stat draw of {s['draws']:,} (the paper's best fit)",
              "npe_1k": f"NPE lowest-C-stat draw, first {n_small:,} draws only",
              "truth": "single start (a): true parameters", "restricted": "single start (b): restricted-prior draw",
              "full": "single start (c): full-prior draw",
              "multi": f"multi-start fit ({s['multi_starts']} full-prior starts)"}
    width = prior.high - prior.low
    at_bound = {k: np.any((best_theta[k] - prior.low <= 1e-4 * width) | (prior.high - best_theta[k] <= 1e-4 * width), axis=1)
                for k in kinds}
    counts = x_test.sum(axis=1)
    res = {
        "model": model.expression, "priors": PRIORS_M2, "setup": str(_data_file(BB_FILE)),
        "exposure_s": float(setup.exposure), "n_bins": int(setup.n_bins),
        "counts_window": s["counts_window"], "full_prior_fraction_in_window": full_fraction,
        "restriction": restricted.record(), "simulations": int(s["simulations"]),
        "training": post.meta["training"], "test_spectra": int(len(theta_test)),
        "test_counts_range": [int(counts.min()), int(counts.max())], "draws_per_spectrum": int(s["draws"]),
        "threshold": DELTA_C, "labels": labels,
        "outlier_fraction": {k: float(outliers[k].mean()) for k in kinds},
        "outliers": {k: int(outliers[k].sum()) for k in kinds},
        "outliers_at_prior_bound": {k: int(np.sum(outliers[k] & at_bound[k])) for k in kinds},
        "median_delta": {k: float(np.median(delta[k])) for k in kinds},
        "max_delta": {k: float(np.max(delta[k])) for k in kinds},
        "npe_above_minimiser": {k: int(np.sum(cst["npe"] > cst[k] + DELTA_C)) for k in ("truth", "restricted", "full")},
        "minimiser_above_npe": {k: int(np.sum(cst[k] > cst["npe"] + DELTA_C)) for k in ("truth", "restricted", "full")},
        "fit_seconds": fit_time, "timings_s": timings,
    }
    single = [res["outlier_fraction"][k] for k in ("truth", "restricted", "full")]
    res["floor"] = {"npe_outliers": res["outliers"]["npe"], "single_start_outliers": {k: res["outliers"][k] for k in
                                                                                       ("truth", "restricted", "full")},
                    "met": res["outliers"]["npe"] == 0 and max(single) > 0,
                    "text": ("NPE has no outlier while single-start minimisation has some" if
                             res["outliers"]["npe"] == 0 and max(single) > 0 else
                             "NPE has outliers" if res["outliers"]["npe"] else
                             "neither NPE nor single-start minimisation has outliers (floor not exercised)")}
    np.savez(out / "minima.npz", theta_test=theta_test, counts=x_test, reference=ref,
             **{f"cstat_{k}": cst[k] for k in kinds}, **{f"theta_{k}": best_theta[k] for k in kinds},
             starts_restricted=starts_b, starts_full=starts_c)
    _plot_minima(out, cst, ref, labels, theta_test, prior.names)
    res["figures"] = ["fig11_cstat_scatter.png", "fig11_delta_cstat.png"]
    res["timings_s"]["total"] = time.perf_counter() - t_all
    (out / "minima.json").write_text(json.dumps(res, indent=2, default=_json) + "\n")
    return res


def _plot_minima(out: Path, cst: dict, ref: np.ndarray, labels: dict, theta_test, names) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6))
    lo = float(np.nanmin([np.nanmin(v) for v in cst.values()])) * 0.95
    hi = float(np.nanmax([np.nanmax(v) for v in cst.values()])) * 1.05
    for ax, kind in zip(axes, ("truth", "restricted", "full")):
        out_mask = cst[kind] > cst["npe"] + DELTA_C
        ax.scatter(cst["npe"][~out_mask], cst[kind][~out_mask], s=9, color="tab:blue", label="fits")
        ax.scatter(cst["npe"][out_mask], cst[kind][out_mask], s=16, color="tab:red",
                   label=f"fit C-stat > NPE + {DELTA_C} ({int(out_mask.sum())})")
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.plot([lo, hi], [lo + DELTA_C, hi + DELTA_C], color="tab:red", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("C-stat, NPE best fit")
        ax.set_ylabel("C-stat, minimiser")
        ax.set_title(labels[kind], fontsize=10)
        ax.legend(fontsize=8, frameon=False, loc="lower right")
    fig.suptitle("Fig. 11 analogue: tbabs*(powerlaw+bbodyrad), NPE best fit against single-start C-stat minimisation",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "fig11_cstat_scatter.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4.6))
    idx = np.arange(len(ref))
    marks = {"npe": ("o", "tab:green"), "npe_draw": (".", "tab:olive"), "truth": ("^", "tab:blue"), "restricted": ("s", "tab:orange"),
             "full": ("v", "tab:red"), "multi": ("x", "0.4")}
    for kind, (mk, col) in marks.items():
        ax.scatter(idx, np.maximum(cst[kind] - ref, 0.0), s=10, marker=mk, color=col, label=labels[kind], alpha=0.8)
    ax.axhline(DELTA_C, color="k", ls="--", lw=0.8)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(bottom=-0.05)
    ax.set_xlabel("test spectrum")
    ax.set_ylabel("C-stat - reference minimum")
    ax.legend(fontsize=7, frameon=False, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "fig11_delta_cstat.png", dpi=110)
    plt.close(fig)


# ================================================================================== part 3
def part_pca(out: Path, s: dict, seed: int) -> dict:
    import xsbi
    from xsbi.config import RestrictionConfig
    from xsbi.inference import NPE, CountsWindow, ParameterSpace, restrict_with_classifier
    from xsbi.likelihood import PoissonLikelihood, run_mcmc
    from xsbi.report import plot_corner, plot_regression, regression_summary

    out.mkdir(parents=True, exist_ok=True)
    obs = xsbi.load_spectrum(_data_file(PL_FILE.format("2000"))).notice(*ENERGY)
    model = xsbi.Model("tbabs*powerlaw")
    prior = xsbi.JointPrior(model, PRIORS_PL)
    sim = xsbi.Simulator(model, obs)
    space = ParameterSpace(prior)
    logs = _log_names(prior)

    _say("pca: emcee reference")
    t0 = time.perf_counter()
    ref = run_mcmc(PoissonLikelihood(obs, model, prior), seed=seed, progress=False).samples
    t_mcmc = time.perf_counter() - t0
    ref_q = _quantile_row(ref)

    _say("pca: restriction and simulations")
    window = CountsWindow(*RestrictionConfig().counts_range(obs.counts.sum()))  # `xsbi run`'s default window
    with _quiet():
        restricted = restrict_with_classifier(sim, space, window, seed=seed + 1, progress=False)
    theta = restricted.sample(s["simulations"] + s["test_spectra"], seed=seed + 4)
    x = sim.sample(theta, seed=seed + 5)
    theta_tr, x_tr = theta[: s["simulations"]], x[: s["simulations"]]
    theta_te, x_te = theta[s["simulations"]:], x[s["simulations"]:]
    # the paper's recipe: PCA of the training spectra after scaling every bin to zero mean, unit variance
    sd = x_tr.std(axis=0)
    z = (x_tr - x_tr.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    explained = np.cumsum(np.linalg.svd(z.astype(np.float64), compute_uv=False) ** 2)
    k_paper = int(np.searchsorted(explained / explained[-1], s["pca"]) + 1)
    # the variance fraction that gives xsbi's PCA (on Anscombe-transformed counts) that many components
    y = 2.0 * np.sqrt(x_tr.astype(np.float64) + 0.375)
    ev = np.cumsum(np.linalg.svd(y - y.mean(axis=0), compute_uv=False) ** 2)
    ev /= ev[-1]
    f_paper = float(0.5 * (ev[k_paper - 2] + ev[k_paper - 1])) if k_paper >= 2 else float(ev[0])

    res = {"spectrum": str(_data_file(PL_FILE.format("2000"))), "counts": int(obs.counts.sum()),
           "n_bins": int(obs.n_bins), "simulations": int(s["simulations"]), "pca_fraction": s["pca"],
           "test_spectra": int(len(theta_te)), "mcmc_seconds": t_mcmc, "components_zscored_counts": k_paper,
           "pca_fraction_paper_components": f_paper, "reference": ref_q, "names": list(prior.names),
           "runs": {}}
    samples, test_widths = {}, {}
    for label, pca in (("no_pca", None), ("pca", s["pca"]), ("pca_paper_k", f_paper)):
        _say(f"pca: training ({label})")
        with _quiet():
            post = NPE(model, prior, obs, pca=pca).append_simulations(theta_tr, x_tr).train(
                seed=seed + 6, progress=False, stop_after_epochs=s["stop_after_epochs"])
        tr = post.meta["training"]
        times = []
        for r in range(s["timing_repeats"]):
            t0 = time.perf_counter()
            smp = post.sample(obs.counts, s["posterior_samples"], seed=seed + 7 + r)
            times.append(time.perf_counter() - t0)
            if r == 0:
                samples[label] = smp
        t0 = time.perf_counter()
        draws = post.sample_batched(x_te, s["test_draws"], seed=seed + 8)
        t_test = time.perf_counter() - t0
        q16, med, q84 = np.percentile(draws, [15.87, 50, 84.13], axis=1)
        plot_regression(theta_te, med, q16, q84, space.names, out / f"regression_{label}.png", log_params=logs)
        # widths over the test set, in the network's coordinates (log10 for log-uniform priors), where
        # one network's error on one spectrum averages out
        p16, p84 = space.to_phi(q16), space.to_phi(q84)
        phi_te = space.to_phi(theta_te)
        test_widths[label] = (p84 - p16) / 2
        q = _quantile_row(samples[label])
        res["runs"][label] = {
            "input_dimension": int(obs.n_bins), "features": int(tr["pca_components"] or obs.n_bins),
            "train_seconds": float(tr["train_seconds"]), "epochs": tr["epochs"],
            "best_validation_loss": tr["best_validation_loss"],
            "sample_seconds": float(min(times)), "sample_seconds_all": times,
            "test_set_seconds": float(t_test), "test_draws": int(s["test_draws"]),
            "quantiles": q,
            "vs_mcmc": {n: _against(q[j], ref_q[j]) for j, n in enumerate(prior.names)},
            "regression": regression_summary(theta_te, med, names=space.names, log_params=logs),
            "test_coverage_68": {n: float(np.mean((phi_te[:, j] >= p16[:, j]) & (phi_te[:, j] <= p84[:, j])))
                                 for j, n in enumerate(prior.names)},
        }
    a, b = res["runs"]["no_pca"], res["runs"]["pca"]
    res["reduction_factor"] = a["features"] / b["features"]
    res["train_speedup"] = a["train_seconds"] / b["train_seconds"]
    res["sample_speedup"] = a["sample_seconds"] / b["sample_seconds"]
    res["test_set_speedup"] = a["test_set_seconds"] / b["test_set_seconds"]
    res["width_ratio_pca_over_no_pca"] = {n: b["quantiles"][j]["sigma"] / a["quantiles"][j]["sigma"]
                                          for j, n in enumerate(prior.names)}
    # per test spectrum, width with PCA over width without; the median over the test set
    res["test_width_ratio_pca_over_no_pca"] = {
        n: float(np.median(test_widths["pca"][:, j] / test_widths["no_pca"][:, j])) for j, n in enumerate(prior.names)}
    res["shift_pca_vs_no_pca"] = {n: (b["quantiles"][j]["median"] - a["quantiles"][j]["median"]) / a["quantiles"][j]["sigma"]
                                  for j, n in enumerate(prior.names)}
    c = res["runs"]["pca_paper_k"]
    res["paper_k"] = {"features": c["features"], "variance_fraction": f_paper,
                      "reduction_factor": a["features"] / c["features"],
                      "train_speedup": a["train_seconds"] / c["train_seconds"],
                      "sample_speedup": a["sample_seconds"] / c["sample_seconds"],
                      "width_ratio": {n: c["quantiles"][j]["sigma"] / a["quantiles"][j]["sigma"]
                                      for j, n in enumerate(prior.names)},
                      "test_width_ratio": {n: float(np.median(test_widths["pca_paper_k"][:, j] / test_widths["no_pca"][:, j]))
                                           for j, n in enumerate(prior.names)}}
    # judged on the test set: on one spectrum each network's own error (+-10% in width between
    # seeds, see npe_accuracy.py) dominates the comparison
    res["floor_met"] = all(abs(v - 1.0) <= PCA_WIDTH_FLOOR for v in res["test_width_ratio_pca_over_no_pca"].values())
    res["floor_met_reference_spectrum"] = all(abs(v - 1.0) <= PCA_WIDTH_FLOOR
                                              for v in res["width_ratio_pca_over_no_pca"].values())
    plot_corner([ref, samples["no_pca"], samples["pca"], samples["pca_paper_k"]], list(prior.names),
                out / "fig13_corner.png",
                labels=["emcee", "NPE (raw, no PCA)", f"NPE (raw, PCA {s['pca']:.0%}: {b['features']} components)",
                        f"NPE (raw, PCA {c['features']} components)"], log_params=logs,
                truths=[TRUTH_PL[n] for n in prior.names])
    res["figures"] = ["regression_no_pca.png", "regression_pca.png (Fig. 12)", "regression_pca_paper_k.png",
                      "fig13_corner.png"]
    (out / "pca.json").write_text(json.dumps(res, indent=2, default=_json) + "\n")
    return res


# ================================================================================== report
def _report(results: dict, meta: dict) -> str:
    L = ["# Seed-paper replication (Barret & Dupourque 2024, sections 4-7)", "",
         f"Generated {meta['date']} by `benchmarks/replicate_paper.py {' '.join(meta['argv'])}` "
         f"({'quick mode: reduced sizes, numbers are indicative only' if meta['quick'] else 'full run'}); "
         f"seed {meta['seed']}; machine: {meta['machine']}; torch threads {meta['torch_threads']}.", "",
         "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".", "",
         "Wall time per part: " + ", ".join(f"{k} {v:.0f} s" for k, v in meta["part_seconds"].items())
         + f"; total {meta['total_seconds']:.0f} s.", ""]
    for p, when in meta.get("kept_from_earlier_runs", {}).items():
        L += [f"Part `{p}` is kept from an earlier run into the same directory ({when['date']}, "
              f"`{' '.join(when['argv'])}`).", ""]
    if "posteriors" in results:
        s = meta["settings"]["posteriors"]
        L += ["## Figs. 5-10: single- and multi-round posteriors against emcee and nested sampling", "",
              "Spectra: the shared XSPEC-faked NICER reference spectra (tbabs*powerlaw, nH = 0.2, PhoIndex = 1.7, "
              "norm = 1; grouped by 5 channels, 0.3-10 keV) with the Gaussian-approximation RMF.  Priors: nH "
              "loguniform 0.1-0.3, PhoIndex uniform 0.5-2.5, norm loguniform 0.01-100.  `xsbi run` defaults "
              "otherwise (count-window restriction, MAF 5x50, importance sampling on).  NPE simulations: "
              + ", ".join(f"{s['simulations'][k]:,} at {int(k):,} counts" for k in s["spectra"])
              + "; multi-round NPE: " + ", ".join(f"{r} rounds x {n:,} at {int(k):,} counts" for k, (r, n) in s["snpe"].items())
              + f"; UltraNest with {s['live_points']} live points; {s['posterior_samples']:,} posterior samples.", "",
              "Each cell: shift of the median in emcee sigmas / width ratio sigma / sigma_emcee "
              "(sigma = half the 68% interval).  Floors: |shift| <= 0.15, ratio in [0.85, 1.15].  "
              "`npe` and `snpe` are importance-sampled on the exact likelihood (what `xsbi run` returns); "
              "`-raw` rows are the network alone (`npe-raw`: redrawn from `network.pt` with the run's seed, the draws "
              "`xsbi run` importance-samples; `snpe-raw`: `npe_parameters` of the SNPE `summary.json`).  C2ST "
              "(random forest, 5-fold) compares distinct samples: runs resampled with replacement "
              "(importance-sampled NPE, nested sampling; see 'unique samples') repeat points, which `xsbi "
              "compare` drops first.", ""]
        for label, rec in results["posteriors"].items():
            names = list(rec["reference"])
            L += [f"### {int(label):,}-count spectrum ({rec['counts']:,} counts, {rec['n_bins']} bins)", "",
                  "| method | " + " | ".join(names) + " | C2ST | unique samples | floors | wall (s) |",
                  "|---|" + "---|" * (len(names) + 4)]
            for lb, row in rec["table"].items():
                c2 = rec["c2st"].get(lb)
                m = lb.split("-")[0].split(" ")[0]
                wall = rec["wall_s"].get(m) if lb in ("npe", "snpe", "nested") else None
                L.append(f"| {lb} | " + " | ".join(f"{_fmt(row[n]['shift'])} / {_fmt(row[n]['width_ratio'], '.2f')}"
                                                    for n in names)
                         + f" | {_fmt(c2, '.2f')} | {_fmt(rec['unique_sample_fraction'].get(lb), '.0%')} | "
                         f"{'met' if rec['floors_met'][lb] else 'not met'} | {_fmt(wall, '.0f')} |")
            L.append("| mcmc (reference) | " + " | ".join(
                f"{rec['reference'][n]['median']:.4g} +/- {rec['reference'][n]['sigma']:.2g}" for n in names)
                + f" | - | {rec['unique_sample_fraction']['mcmc']:.0%} | - | {rec['wall_s']['mcmc']:.0f} |")
            m = rec["methods"]
            extra = []
            if "importance_sampling" in m.get("npe", {}):
                extra.append(f"NPE importance-sampling efficiency {m['npe']['importance_sampling']['efficiency']:.1%}")
            if "snpe" in m and "importance_sampling" in m["snpe"]:
                extra.append(f"SNPE {m['snpe']['importance_sampling']['efficiency']:.1%}")
            if "training" in m.get("npe", {}):
                extra.append(f"NPE training {m['npe']['training']['train_seconds']:.0f} s "
                             f"({m['npe']['training']['epochs']} epochs)")
            if "test_set" in m.get("npe", {}):
                reg = m["npe"]["test_set"]["regression"]
                extra.append("test-set regression slopes (Fig. " + ("8" if label == "2000" else "5") + " analogue): "
                             + ", ".join(f"{n} {v['slope']:.2f}" for n, v in reg.items()))
            L += ["", "; ".join(extra) + ".", "",
                  f"Figures: `posteriors/{label}counts/compare/compare_corner.png` (Figs. 6/9/10), "
                  f"`compare_spectrum.png` (Fig. 7), `npe/test_regression.png` (Figs. 5/8); "
                  f"table with medians: `posteriors/{label}counts/compare/compare.md`.", ""]
    if "minima" in results:
        r = results["minima"]
        L += ["## Fig. 11: local minima (section 6)", "",
              f"Model {r['model']} with the paper's model-2 priors (nH uniform 0.15-0.35, PhoIndex uniform 1-3, "
              "powerlaw norm loguniform 0.01-10, kT uniform 0.3-3, bbodyrad norm loguniform 1-1e5) on the NICER "
              f"set-up ({r['n_bins']} bins, exposure {r['exposure_s']:.3f} s of the 20,000-count reference), prior "
              f"restricted to {r['counts_window'][0]:,}-{r['counts_window'][1]:,} counts "
              f"({r['full_prior_fraction_in_window']:.0%} of the full prior).  NPE trained on "
              f"{r['simulations']:,} simulations ({r['training']['epochs']} epochs, {r['training']['train_seconds']:.0f} s); "
              f"{r['test_spectra']} test spectra ({r['test_counts_range'][0]:,}-{r['test_counts_range'][1]:,} counts) "
              f"drawn from the restricted prior.  NPE best fit, as `xsbi run` reports it: the lowest-C-stat of "
              f"{r['draws_per_spectrum']:,} posterior draws (the paper's definition, also listed alone), then a local "
              "C-stat fit started there.  Fits: `fit_cstat` (L-BFGS-B in the prior's logit coordinates, then a bounded "
              "polish of parameters stalled on a prior bound), single-threaded.  Reference "
              "minimum: the lowest C-stat any method found.  Outlier: C-stat > reference + 2.71.", "",
              "| method | outliers | fraction | of which at a prior bound | median dC | max dC "
              "| time (s, all spectra; NPE: sampling + C-stats) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
        for k, lb in r["labels"].items():
            t = None if k == "npe_1k" else r["fit_seconds"][k] + (r["timings_s"]["npe_sampling"] if k == "npe_draw" else 0.0)
            L.append(f"| {lb} | {r['outliers'][k]} | {r['outlier_fraction'][k]:.1%} | {r['outliers_at_prior_bound'][k]} | "
                     f"{r['median_delta'][k]:.2f} | "
                     f"{r['max_delta'][k]:.1f} | {_fmt(t, '.0f')} |")
        L += ["", "Paired with the NPE (as in the paper's figure): minimiser above NPE + 2.71 in "
              + ", ".join(f"{n} ({k})" for k, n in r["minimiser_above_npe"].items())
              + " spectra; NPE above minimiser + 2.71 in "
              + ", ".join(f"{n} ({k})" for k, n in r["npe_above_minimiser"].items()) + " spectra.", "",
              f"Floor (NPE has no outliers where single-start minimisation has some): "
              f"**{'met' if r['floor']['met'] else 'not met'}** - {r['floor']['text']}.", "",
              "The minimiser outliers from random starts mostly end with a parameter on a prior bound (typically "
              "the blackbody switched off: kT = 0.3 keV and norm = 1): constrained local minima the fit cannot "
              "leave.  The NPE draw lands in the global basin; where the network is a little off for a spectrum "
              "its best draw can sit a few units of C above the minimum, which the local fit from it removes.", "",
              "Figures: `minima/fig11_cstat_scatter.png`, `minima/fig11_delta_cstat.png`; per-spectrum numbers in "
              "`minima/minima.npz`.", ""]
    if "pca" in results:
        r = results["pca"]
        a, b, c = r["runs"]["no_pca"], r["runs"]["pca"], r["runs"]["pca_paper_k"]
        names = r["names"]
        L += ["## Figs. 12-13: PCA keeping 90% of the variance (section 7)", "",
              f"2,000-count reference spectrum ({r['counts']:,} counts, {r['n_bins']} bins); both networks trained on "
              f"the same {r['simulations']:,} restricted-prior simulations with the same seed; raw networks (no "
              f"importance sampling); {r['test_spectra']} test spectra.  Inference time: "
              f"{meta['settings']['pca']['posterior_samples']:,} samples for the reference spectrum (best of "
              f"{meta['settings']['pca']['timing_repeats']}); test set: {r['test_spectra']} spectra x {a['test_draws']:,} draws.", "",
              f"| | no PCA | PCA 90% | no PCA / PCA 90% | PCA, {c['features']} components (paper's reduction) |",
              "|---|---:|---:|---:|---:|",
              f"| network input dimension | {a['features']} | {b['features']} | reduction x{r['reduction_factor']:.1f} | "
              f"{c['features']} (x{r['paper_k']['reduction_factor']:.1f}; variance {r['paper_k']['variance_fraction']:.4f}) |",
              f"| training time (s) | {a['train_seconds']:.0f} ({a['epochs']} epochs) | {b['train_seconds']:.0f} "
              f"({b['epochs']} epochs) | speed-up x{r['train_speedup']:.2f} | {c['train_seconds']:.0f} ({c['epochs']} epochs) |",
              f"| inference, reference spectrum (s) | {a['sample_seconds']:.2f} | {b['sample_seconds']:.2f} | "
              f"speed-up x{r['sample_speedup']:.2f} | {c['sample_seconds']:.2f} |",
              f"| inference, test set (s) | {a['test_set_seconds']:.1f} | {b['test_set_seconds']:.1f} | "
              f"speed-up x{r['test_set_speedup']:.2f} | {c['test_set_seconds']:.1f} |", "",
              f"xsbi's PCA works on the Anscombe-transformed counts `2 sqrt(x + 3/8)` (unit Poisson noise per bin, "
              f"bins not rescaled), where the variance across the restricted prior is mostly the spectral shape and "
              f"level, so few components hold 90% of it.  The paper scaled every bin to zero mean and unit variance "
              f"first: on the same training spectra that recipe keeps {r['components_zscored_counts']} components "
              f"(x{r['n_bins'] / r['components_zscored_counts']:.1f}; the paper: 200 -> 60).", "",
              "| parameter | width PCA 90% / no PCA | shift PCA 90% - no PCA (no-PCA sigma) | "
              f"width PCA {c['features']} / no PCA | no PCA vs emcee | PCA 90% vs emcee | PCA {c['features']} vs emcee | "
              f"regression slope no PCA / PCA 90% / PCA {c['features']} |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for n in names:
            L.append(f"| {n} | {r['test_width_ratio_pca_over_no_pca'][n]:.3f} (reference spectrum "
                     f"{r['width_ratio_pca_over_no_pca'][n]:.3f}) | {_fmt(r['shift_pca_vs_no_pca'][n])} | "
                     f"{r['paper_k']['width_ratio'][n]:.3f} | "
                     f"{_fmt(a['vs_mcmc'][n]['shift'])} / {a['vs_mcmc'][n]['width_ratio']:.2f} | "
                     f"{_fmt(b['vs_mcmc'][n]['shift'])} / {b['vs_mcmc'][n]['width_ratio']:.2f} | "
                     f"{_fmt(c['vs_mcmc'][n]['shift'])} / {c['vs_mcmc'][n]['width_ratio']:.2f} | "
                     f"{a['regression'][n]['slope']:.3f} / {b['regression'][n]['slope']:.3f} / "
                     f"{c['regression'][n]['slope']:.3f} |")
        L += ["", "Widths: the median over the test spectra of the per-spectrum ratio of 68% half-widths (in "
              "log10 for log-uniform parameters), and in parentheses the ratio on the reference spectrum alone.  "
              "68% coverage of the test truths (no PCA / PCA 90% / PCA "
              f"{c['features']}): " + "; ".join(
                  f"{n} {a['test_coverage_68'][n]:.0%} / {b['test_coverage_68'][n]:.0%} / {c['test_coverage_68'][n]:.0%}"
                  for n in names) + ".", "",
              f"Floor (PCA posterior widths within 10% of those without PCA, over the test set): "
              f"**{'met' if r['floor_met'] else 'not met'}** (on the reference spectrum alone: "
              f"{'met' if r.get('floor_met_reference_spectrum') else 'not met'}).", "",
              "Figures: `pca/regression_pca.png` (Fig. 12), `pca/regression_no_pca.png`, `pca/regression_pca_paper_k.png`, "
              "`pca/fig13_corner.png` (Fig. 13).", ""]
    return "\n".join(L)


def _summary_lines(results: dict) -> list[str]:
    out = []
    for label, rec in results.get("posteriors", {}).items():
        cells = []
        for lb in ("npe", "npe-raw", "snpe", "nested"):
            if lb in rec["table"]:
                worst_s = max(abs(v["shift"]) for v in rec["table"][lb].values())
                worst_w = max(abs(v["width_ratio"] - 1) for v in rec["table"][lb].values())
                cells.append(f"{lb} max|shift| {worst_s:.2f}, max|width-1| {worst_w:.2f}")
        out.append(f"posteriors {label} counts vs mcmc: " + "; ".join(cells))
    if "minima" in results:
        r = results["minima"]
        out.append("minima outlier fractions: " + ", ".join(f"{k} {v:.1%}" for k, v in r["outlier_fraction"].items())
                   + f" ({r['test_spectra']} spectra); floor {'met' if r['floor']['met'] else 'not met'}")
    if "pca" in results:
        r = results["pca"]
        out.append(f"pca: {r['runs']['no_pca']['features']} -> {r['runs']['pca']['features']} features "
                   f"(x{r['reduction_factor']:.1f}); train x{r['train_speedup']:.2f}, sampling x{r['sample_speedup']:.2f}; "
                   "width ratios " + ", ".join(f"{v:.2f}" for v in r["width_ratio_pca_over_no_pca"].values()))
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--quick", action="store_true", help="reduced sizes (a few minutes on 2 cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--minima-simulations", type=int, default=None,
                    help="training simulations of the minima part (default 50,000; --quick 5,000)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (likelihood fits stay single-threaded)")
    ap.add_argument("--rebuild-report", action="store_true",
                    help="only rewrite OUT/report.md from OUT/results.json (no computation)")
    args = ap.parse_args(argv)
    if args.rebuild_report:
        saved = json.loads((Path(args.out) / "results.json").read_text())
        (Path(args.out) / "report.md").write_text(_report(saved["results"], saved["meta"]))
        return saved
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if not NICER.is_dir():
        sys.exit(f"shared NICER data not found at {NICER.resolve()}")

    from xsbi.record import versions

    torch.set_num_threads(args.threads)
    settings = json.loads(json.dumps(QUICK if args.quick else FULL))
    if args.minima_simulations:
        settings["minima"]["simulations"] = int(args.minima_simulations)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    funcs = {"posteriors": part_posteriors, "minima": part_minima, "pca": part_pca}
    results, part_seconds = {}, {}
    for p in parts:
        t0 = time.perf_counter()
        results[p] = funcs[p](out / p, settings[p], args.seed)
        part_seconds[p] = time.perf_counter() - t0
        _say(f"{p} done in {part_seconds[p]:.0f} s")
    meta = {"date": _dt.datetime.now().isoformat(timespec="minutes"), "argv": list(argv if argv is not None else sys.argv[1:]),
            "quick": bool(args.quick), "seed": args.seed, "parts": parts,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs ({platform.processor() or platform.platform()})",
            "torch_threads": torch.get_num_threads(), "versions": versions(),
            "settings": {p: settings[p] for p in parts}, "part_seconds": part_seconds,
            "total_seconds": time.perf_counter() - t_start}
    previous = out / "results.json"
    if previous.is_file() and set(parts) != set(PARTS):
        # parts not rerun are kept from the earlier run into OUT, with when and how they ran
        old = json.loads(previous.read_text())
        if bool(old["meta"].get("quick")) == bool(args.quick):
            for p, r in old["results"].items():
                if p not in results:
                    results[p] = r
                    meta["settings"][p] = old["meta"]["settings"][p]
                    meta["part_seconds"][p] = old["meta"]["part_seconds"][p]
                    meta.setdefault("kept_from_earlier_runs", {})[p] = old["meta"].get(
                        "kept_from_earlier_runs", {}).get(p, {"date": old["meta"]["date"], "argv": old["meta"]["argv"]})
            meta["total_seconds_this_run"] = meta["total_seconds"]
            meta["total_seconds"] = sum(meta["part_seconds"].values())
    (out / "report.md").write_text(_report(results, meta))
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=_json) + "\n")
    for line in _summary_lines(results):
        print(line)
    print(f"report: {out / 'report.md'} ({meta['total_seconds']:.0f} s)")
    return {"meta": meta, "results": results}


def _json(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


if __name__ == "__main__":
    main()

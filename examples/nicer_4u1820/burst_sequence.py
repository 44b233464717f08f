#!/usr/bin/env python
"""A photospheric-radius-expansion burst of 4U 1820-30 followed with ONE amortized network.

The seed paper (Barret & Dupourque 2024, section 8.3 and Fig. 15) fits 23 NICER spectra of 0.25 s
along a type I X-ray burst with a single network.  Only one of those spectra is available here
(``../shared/data/nicer/b_008_0.25s_raw_opt.pha``), so this walk-through *fakes* the sequence: 23
spectra with b_008's set-up (response, ARF, grouping, 0.25 s exposure) whose blackbody follows a
photospheric radius expansion -- the temperature falls to ~0.9 keV while the photosphere expands
to ~70 km, then rises again as it contracts back to ~10 km (touchdown), the bolometric flux staying
at the Eddington limit (norm * kT^4 constant) once the burst has risen -- on top of a fixed, faint
power law; nH = 0.2 and PhoIndex = 1.7 are frozen (Table 1, model 3: ``burst.yaml``).

Steps (each timed in ``summary.json``):

1. fake the 23 spectra (seeded Poisson draws of :class:`xsbi.Simulator`) and write them as PHA files
   in ``OUT/spectra/`` (with links to, or copies of, the RMF and ARF, so ``xsbi batch`` reads them);
2. restrict the prior once for all of them: a classifier keeping parameters whose spectra have
   300-7,000 counts in the band (``--restriction counts``, the paper's first method), or the union of
   the truncated coarse-NPE posteriors of every spectrum (``--restriction coarse``, its second);
3. train ONE network (single-round NPE) and save it (``OUT/network.pt``, usable by ``xsbi batch``);
4. draw posterior samples for every spectrum at once (amortized: no retraining), and for the real
   b_008 spectrum, which has the same set-up;
5. fit every spectrum by C-stat minimisation (``xsbi.likelihood.fit_cstat``, delta-C = 1 errors);
6. write ``OUT/table.csv``, ``OUT/table.md``, ``OUT/summary.json``, and plots in the style of
   Fig. 15: ``OUT/burst_sequence.png`` (kT, bbodyrad norm and radius at 8 kpc against time, NPE and
   C-stat side by side with the truth) and ``OUT/prior_predictive.png`` (the spectra inside the
   band of the restricted prior's spectra);
7. apply the saved network to the PHA files with :func:`xsbi.batch.run_batch` (what ``xsbi batch``
   does) as a cross-check: ``OUT/batch.csv``.

Run:  ``python examples/nicer_4u1820/burst_sequence.py --out DIR [--quick]``  (``--quick``: small
settings, about a minute on 2 CPU cores; the default settings take about 3 minutes, see README.md).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "burst.yaml"

N_SPECTRA = 23
DT = 0.25  # s, exposure of each spectrum (b_008's)
DISTANCE_KPC = 8.0  # 4U 1820-30 (NGC 6624); R_km = sqrt(norm) * D / 10 kpc
REAL_SLOT = 7  # where the real b_008 is drawn on the time axis (the 8th 0.25 s slot; for display only)
COUNTS_WINDOW = (300, 7000)  # total counts in the band kept by the counts restriction

# the photospheric-radius-expansion track (see light_curve)
TRACK = {"kt_max": 2.6, "kt_min": 0.9, "t_min": 2.0, "norm_touchdown": 130.0, "rise_time": 0.35,
         "rise_depth": 0.85, "pl_norm": 0.5}

FULL = {"simulations": 30_000, "restriction_simulations": 2000, "restriction_rounds": 6, "coarse_simulations": 10_000,
        "posterior_samples": 5000, "fit_starts": 8, "stop_after_epochs": 20, "max_epochs": None, "batch_samples": 1000,
        "prior_predictive": 2000}
QUICK = {"simulations": 3000, "restriction_simulations": 1000, "restriction_rounds": 3, "coarse_simulations": 2000,
         "posterior_samples": 1000, "fit_starts": 2, "stop_after_epochs": 10, "max_epochs": 80, "batch_samples": 500,
         "prior_predictive": 500}
# the counts restriction stops once this fraction of a round lies in the window (xsbi run's default, 0.5,
# would stop at once here: half of the full prior's spectra already have 300-7,000 counts)
STOP_FRACTION = 0.9


# ---------------------------------------------------------------------------------- pure functions
def light_curve(n: int = N_SPECTRA, dt: float = DT, kt_max: float = TRACK["kt_max"], kt_min: float = TRACK["kt_min"],
                t_min: float = TRACK["t_min"], norm_touchdown: float = TRACK["norm_touchdown"],
                rise_time: float = TRACK["rise_time"], rise_depth: float = TRACK["rise_depth"],
                pl_norm: float = TRACK["pl_norm"]) -> dict:
    """True parameters of ``n`` consecutive spectra of ``dt`` seconds along a PRE burst.

    The blackbody temperature falls from ``kt_max`` to ``kt_min`` at ``t_min`` (maximum expansion)
    and rises back to ``kt_max`` at the end (touchdown); the bolometric flux, proportional to
    ``norm * kT**4``, is constant (Eddington-limited) apart from the burst's rise, an exponential
    of ``rise_time`` seconds starting at ``1 - rise_depth`` of it.  So the bbodyrad norm moves
    opposite to kT, from ``norm_touchdown`` at ``kt_max`` up to ~``norm_touchdown * (kt_max /
    kt_min)**4``.  The power-law norm is constant.

    Returns a dict of (n,) arrays: ``time`` (centre of each spectrum, s), ``t_start``, ``t_stop``,
    ``kT`` (keV), ``norm`` (bbodyrad), ``radius_km`` (at ``DISTANCE_KPC``), ``pl_norm``.
    """
    if n < 3 or dt <= 0 or not 0 < t_min < n * dt:
        raise ValueError(f"need n >= 3, dt > 0 and 0 < t_min < n*dt, got n={n}, dt={dt}, t_min={t_min}")
    t_start = np.arange(n) * dt
    t = t_start + 0.5 * dt
    total = n * dt
    u = np.where(t < t_min, (t_min - t) / t_min, (t - t_min) / (total - t_min))  # 1 at the ends, 0 at t_min
    kT = kt_min + (kt_max - kt_min) * u ** 1.5
    luminosity = 1.0 - rise_depth * np.exp(-t / rise_time)
    norm = norm_touchdown * (kt_max / kT) ** 4 * luminosity
    return {"time": t, "t_start": t_start, "t_stop": t_start + dt, "kT": kT, "norm": norm,
            "radius_km": radius_km(norm), "pl_norm": np.full(n, float(pl_norm))}


def radius_km(norm, distance_kpc: float = DISTANCE_KPC):
    """Blackbody radius in km from the bbodyrad norm = R_km^2 / D_10^2 (D_10: distance in 10 kpc)."""
    return np.sqrt(np.asarray(norm, dtype=np.float64)) * distance_kpc / 10.0


def truth_theta(lc: dict, names) -> np.ndarray:
    """(n, d) true parameters in the model's free-parameter order ``names``."""
    column = {"powerlaw.norm": lc["pl_norm"], "bbodyrad.kT": lc["kT"], "bbodyrad.norm": lc["norm"]}
    missing = [n for n in names if n not in column]
    if missing:
        raise ValueError(f"no track for {missing}: the burst model frees powerlaw.norm, bbodyrad.kT, bbodyrad.norm")
    return np.column_stack([column[n] for n in names])


def interval_summary(samples, names) -> dict:
    """Per parameter: median, q16, q84 of (n, d) samples (as summary.json's ``parameters``)."""
    q16, med, q84 = np.percentile(samples, [15.87, 50.0, 84.13], axis=0)
    return {n: {"median": float(med[j]), "q16": float(q16[j]), "q84": float(q84[j])} for j, n in enumerate(names)}


def pearson(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.corrcoef(a, b)[0, 1])


# ---------------------------------------------------------------------------------- the set-up
def load_setup(config=CONFIG):
    """``(cfg, prior, spec_full, spec)``: burst.yaml, its prior (model inside, nH and PhoIndex
    frozen), b_008 with the file's grouping over all channels, and as noticed for inference."""
    import xsbi
    from xsbi.config import load_config
    from xsbi.data.preparation import prepare_spectrum, preparation_record

    cfg = load_config(config)
    spec_full = xsbi.load_spectrum(cfg.data.spectrum, rmf=cfg.data.rmf, arf=cfg.data.arf, background=False)
    spec = prepare_spectrum(spec_full, preparation_record(cfg.data.group, cfg.data.energy))
    return cfg, cfg.build_prior(), spec_full, spec


def fake_counts(model, spec_full, theta, seed: int) -> np.ndarray:
    """Seeded Poisson spectra (n, n_bins of spec_full) for the true parameters ``theta``."""
    import xsbi

    return np.asarray(xsbi.Simulator(model, spec_full).sample(theta, seed=seed), dtype=np.int64)


def noticed(spec_full, counts, spec) -> list:
    """The faked spectra as Spectrum objects, noticed like ``spec`` (what the network reads)."""
    ranges = [tuple(r) for r in spec.notice_ranges]
    return [spec_full.with_counts(c).notice(ranges) for c in counts]


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.symlink(src.resolve(), dst)
    except OSError:
        shutil.copy2(src, dst)


def write_spectra(spec_full, counts, outdir: Path) -> list[Path]:
    """Write each faked spectrum as ``burst_NN.pha`` (OGIP type I, the file's grouping) with its
    RMF and ARF next to it (symbolic links to the originals, or copies), as ``write_pha`` needs."""
    from xsbi.data.writer import write_pha

    outdir.mkdir(parents=True, exist_ok=True)
    names = {}
    for kind, src in (("respfile", spec_full.respfile), ("ancrfile", spec_full.ancrfile)):
        if src:
            src = Path(src)
            _link_or_copy(src, outdir / src.name)
            names[kind] = src.name
    paths = []
    for i, c in enumerate(counts):
        path = outdir / f"burst_{i + 1:02d}.pha"
        write_pha(spec_full.with_counts(c), path, overwrite=True, **names)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------- inference
def restrict(method, prior, spec, observations, settings, seed, progress):
    import xsbi
    from xsbi.inference import restriction as R
    from xsbi.inference.npe import NPE
    from xsbi.inference.space import ParameterSpace

    space = ParameterSpace(prior)
    sim = xsbi.Simulator(prior.model, spec)
    if method == "counts":
        return R.restrict_with_classifier(sim, space, R.CountsWindow(*COUNTS_WINDOW),
                                          rounds=settings["restriction_rounds"],
                                          simulations=settings["restriction_simulations"],
                                          stop_fraction=STOP_FRACTION, seed=seed, progress=progress)
    # the paper's second method: a quick NPE on the full prior, its posterior truncated at every
    # spectrum, the union of those regions
    return R.restrict_with_coarse_npe(lambda: NPE(prior.model, prior, spec, hidden_features=25, num_transforms=3),
                                      sim, space, list(observations), simulations=settings["coarse_simulations"],
                                      seed=seed, progress=progress)


def train_network(prior, spec, restricted, settings, seed, progress):
    import xsbi
    from xsbi.inference.npe import NPE

    theta = restricted.sample(settings["simulations"], seed=seed)
    x = xsbi.Simulator(prior.model, spec).sample(theta, seed=seed + 1)
    posterior = NPE(prior.model, prior, spec).append_simulations(theta, x).train(
        stop_after_epochs=settings["stop_after_epochs"], max_epochs=settings["max_epochs"], seed=seed + 2,
        progress=progress)
    return posterior, theta, x


def fit_all(prior, spectra, npe_samples, starts: int, seed: int) -> tuple[list, list[dict]]:
    """C-stat fit of every spectrum, with delta-C = 1 (profile) intervals.

    Each fit starts from ``starts`` draws of the full prior and from the NPE draw with the lowest
    C-stat (as an XSPEC user would start from a sensible guess): the fit's result is the minimum
    of the C-stat whatever the start, and ``info`` records whether the prior draws alone found it
    (section 6 of the seed paper: local minima of classical minimisation).
    """
    import warnings

    from xsbi.likelihood import PoissonLikelihood, fit_cstat

    fits, info = [], []
    for i, s in enumerate(spectra):
        lik = PoissonLikelihood(s, prior.model, prior)
        draws = npe_samples[i]
        npe_best = draws[int(np.argmin(lik.cstat(draws)))]
        x0 = np.vstack([prior.sample(starts, seed=seed + i), npe_best[None, :]])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            f = fit_cstat(lik, starts=x0, delta_c="profile")
        for w in caught:
            print(f"  spectrum {i + 1}: {w.message}", flush=True)
        prior_best = min(r.cstat for r in f.starts[:-1])
        info.append({"prior_starts_missed": bool(prior_best > f.cstat + 0.1),
                     "prior_starts_best_cstat": float(prior_best), "warnings": [str(w.message) for w in caught]})
        fits.append(f)
    return fits, info


# ---------------------------------------------------------------------------------- outputs
def build_rows(lc, counts, names, npe_samples, fits, real=None) -> list[dict]:
    """One row per spectrum (and one for the real b_008 when given): truth, NPE, C-stat fit."""
    rows = []
    n = len(lc["time"])
    for i in range(n + (1 if real is not None else 0)):
        is_real = i == n
        row = {"spectrum": "b_008 (real)" if is_real else f"burst_{i + 1:02d}",
               "time_s": float(lc["time"][REAL_SLOT]) if is_real else float(lc["time"][i]),
               "counts": int(real["counts"] if is_real else counts[i])}
        truth = None if is_real else {"powerlaw.norm": lc["pl_norm"][i], "bbodyrad.kT": lc["kT"][i],
                                      "bbodyrad.norm": lc["norm"][i]}
        s = npe_samples[i]
        r = np.sqrt(s[:, names.index("bbodyrad.norm")]) * DISTANCE_KPC / 10.0
        summ = interval_summary(np.column_stack([s, r]), list(names) + ["radius_km"])
        f = fits[i]
        for j, name in enumerate(list(names) + ["radius_km"]):
            row[f"{name}_true"] = (float(radius_km(truth["bbodyrad.norm"])) if name == "radius_km" else
                                   float(truth[name])) if truth else float("nan")
            row[f"{name}_npe_median"] = summ[name]["median"]
            row[f"{name}_npe_q16"] = summ[name]["q16"]
            row[f"{name}_npe_q84"] = summ[name]["q84"]
            if name == "radius_km":
                k = names.index("bbodyrad.norm")
                best, lo, hi = f.theta[k], f.interval[k, 0], f.interval[k, 1]
                row[f"{name}_fit"] = float(radius_km(best))
                row[f"{name}_fit_lo"], row[f"{name}_fit_hi"] = float(radius_km(lo)), float(radius_km(hi))
            else:
                row[f"{name}_fit"] = float(f.theta[j])
                row[f"{name}_fit_lo"], row[f"{name}_fit_hi"] = float(f.interval[j, 0]), float(f.interval[j, 1])
        row["fit_cstat"], row["fit_expected_cstat"], row["fit_cstat_std"] = float(f.cstat), float(f.expected), float(f.std)
        rows.append(row)
    return rows


def recovery(rows, names) -> dict:
    """How well NPE and the C-stat fits follow the true track (fake spectra only)."""
    fake = [r for r in rows if not r["spectrum"].startswith("b_008")]
    out = {}
    for name in list(names) + ["radius_km"]:
        truth = np.array([r[f"{name}_true"] for r in fake])
        med = np.array([r[f"{name}_npe_median"] for r in fake])
        lo, hi = np.array([r[f"{name}_npe_q16"] for r in fake]), np.array([r[f"{name}_npe_q84"] for r in fake])
        fit = np.array([r[f"{name}_fit"] for r in fake])
        flo, fhi = np.array([r[f"{name}_fit_lo"] for r in fake]), np.array([r[f"{name}_fit_hi"] for r in fake])
        sig_fit = 0.5 * (fhi - flo)
        sig_npe = 0.5 * (hi - lo)
        entry = {
            "npe_inside_68": float(np.mean((truth >= lo) & (truth <= hi))),
            "fit_inside_68": float(np.mean((truth >= flo) & (truth <= fhi))),
            "npe_vs_fit_shift_median": float(np.median(np.abs(med - fit) / sig_fit)),
            "npe_vs_fit_shift_max": float(np.max(np.abs(med - fit) / sig_fit)),
            "npe_over_fit_width_median": float(np.median(sig_npe / sig_fit)),
        }
        if np.ptp(truth) > 0:  # the power-law norm is constant: no correlation to speak of
            entry["pearson_npe"] = pearson(med, truth)
            entry["pearson_fit"] = pearson(fit, truth)
        out[name] = entry
    return out


def write_table(rows, names, outdir: Path) -> tuple[Path, Path]:
    import csv

    csv_path, md_path = outdir / "table.csv", outdir / "table.md"
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})

    def cell(r, name, fmt):
        m, lo, hi = r[f"{name}_npe_median"], r[f"{name}_npe_q16"], r[f"{name}_npe_q84"]
        b, flo, fhi = r[f"{name}_fit"], r[f"{name}_fit_lo"], r[f"{name}_fit_hi"]
        npe = f"{fmt(m)} ({fmt(lo)}-{fmt(hi)})"
        fit = f"{fmt(b)} ({fmt(flo)}-{fmt(fhi)})"
        truth = r[f"{name}_true"]
        return ("-" if math.isnan(truth) else fmt(truth)), npe, fit

    f2 = lambda v: f"{v:.2f}"  # noqa: E731
    f0 = lambda v: f"{v:.0f}"  # noqa: E731
    f1 = lambda v: f"{v:.1f}"  # noqa: E731
    lines = ["| spectrum | t (s) | counts | kT true | kT NPE | kT C-stat fit | norm true | norm NPE | norm C-stat fit "
             "| R true (km) | R NPE | R C-stat fit | C-stat (expected) |",
             "|---|---:|---:|---:|---|---|---:|---|---|---:|---|---|---|"]
    for r in rows:
        kt = cell(r, "bbodyrad.kT", f2)
        nm = cell(r, "bbodyrad.norm", f0)
        rk = cell(r, "radius_km", f1)
        lines.append(f"| {r['spectrum']} | {r['time_s']:.3f} | {r['counts']} | {' | '.join(kt)} | {' | '.join(nm)} | "
                     f"{' | '.join(rk)} | {r['fit_cstat']:.1f} ({r['fit_expected_cstat']:.1f} +/- {r['fit_cstat_std']:.1f}) |")
    md_path.write_text("NPE: median (68% interval); C-stat fit: best fit (delta-C = 1 interval); "
                       f"R at {DISTANCE_KPC:g} kpc.\n\n" + "\n".join(lines) + "\n")
    return csv_path, md_path


def plot_sequence(rows, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fake = [r for r in rows if not r["spectrum"].startswith("b_008")]
    real = [r for r in rows if r["spectrum"].startswith("b_008")]
    t = np.array([r["time_s"] for r in fake])
    off = 0.04
    fig, axes = plt.subplots(3, 1, figsize=(7.0, 8.2), sharex=True)
    panels = [("bbodyrad.kT", "kT (keV)", False), ("bbodyrad.norm", "bbodyrad norm", True),
              ("radius_km", f"R (km) at {DISTANCE_KPC:g} kpc", False)]
    for ax, (name, label, log) in zip(axes, panels):
        truth = np.array([r[f"{name}_true"] for r in fake])
        ax.step(np.r_[t - DT / 2, t[-1] + DT / 2], np.r_[truth, truth[-1]], where="post", color="0.55", lw=1.2,
                label="true (faked)")
        for key, dx, colour, marker, lab in (("npe", -off, "C0", "o", "NPE (median, 68%)"),
                                             ("fit", off, "C3", "s", "C-stat fit (best, $\\Delta C = 1$)")):
            if key == "npe":
                mid = np.array([r[f"{name}_npe_median"] for r in fake])
                lo, hi = np.array([r[f"{name}_npe_q16"] for r in fake]), np.array([r[f"{name}_npe_q84"] for r in fake])
            else:
                mid = np.array([r[f"{name}_fit"] for r in fake])
                lo, hi = np.array([r[f"{name}_fit_lo"] for r in fake]), np.array([r[f"{name}_fit_hi"] for r in fake])
            ax.errorbar(t + dx, mid, yerr=[np.clip(mid - lo, 0, None), np.clip(hi - mid, 0, None)], fmt=marker,
                        ms=3.5, color=colour, elinewidth=1, capsize=0, label=lab)
        for r in real:
            for key, dx, colour in (("npe", -off, "k"), ("fit", off, "0.35")):
                if key == "npe":
                    mid, lo, hi = r[f"{name}_npe_median"], r[f"{name}_npe_q16"], r[f"{name}_npe_q84"]
                else:
                    mid, lo, hi = r[f"{name}_fit"], r[f"{name}_fit_lo"], r[f"{name}_fit_hi"]
                ax.errorbar([r["time_s"] + dx], [mid], yerr=[[max(mid - lo, 0)], [max(hi - mid, 0)]], fmt="*",
                            ms=10, mfc="none", color=colour,
                            label=("real b_008: NPE" if key == "npe" else "real b_008: C-stat fit")
                            if name == "bbodyrad.norm" else None)
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2, loc="lower center")
    axes[-1].set_xlabel("time since the start of the burst (s)")
    axes[0].set_title("PRE burst (23 faked 0.25 s NICER spectra): one amortized network vs C-stat fits", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_coverage(spec, x_prior, spectra, real_spec, path: Path) -> Path:
    """Fig. 15 (left): the spectra inside the band of spectra simulated from the restricted prior."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bounds = np.asarray(spec.energy_bounds, dtype=np.float64)
    e = 0.5 * (bounds[:, 0] + bounds[:, 1])
    de = bounds[:, 1] - bounds[:, 0]
    rate = lambda c: np.asarray(c, dtype=np.float64) / de / spec.exposure  # noqa: E731  counts/s/keV
    lo, hi = np.percentile(rate(x_prior), [0.5, 99.5], axis=0)
    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    floor = 0.3  # empty bins are drawn below the axis (its bottom is 1 count/s/keV)
    ax.fill_between(e, np.maximum(lo, floor), hi, step="mid", color="0.8", label="restricted prior, 99% of spectra")
    cmap = plt.get_cmap("viridis")
    for i, s in enumerate(spectra):
        ax.step(e, np.maximum(rate(s.counts), floor), where="mid", lw=0.6, color=cmap(i / max(1, len(spectra) - 1)))
    if real_spec is not None:
        ax.step(e, np.maximum(rate(real_spec.counts), floor), where="mid", lw=1.2, color="k", label="real b_008")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(bottom=1.0)
    ax.set_xlabel("energy (keV)")
    ax.set_ylabel("counts s$^{-1}$ keV$^{-1}$")
    ax.set_title("23 faked burst spectra (colour: time) inside the restricted prior", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _batch_agreement(csv_path: Path, rows, names) -> float:
    """Largest |median(batch) - median(here)| / sigma(here) over spectra and parameters."""
    import csv

    with open(csv_path, newline="") as fh:
        batch_rows = list(csv.DictReader(fh))
    worst = 0.0
    for b, r in zip(batch_rows, rows):
        if b["status"] != "ok":
            continue
        for name in names:
            sigma = 0.5 * (r[f"{name}_npe_q84"] - r[f"{name}_npe_q16"])
            worst = max(worst, abs(float(b[f"{name}_median"]) - r[f"{name}_npe_median"]) / sigma)
    return float(worst)


# ---------------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quick", action="store_true", help="small settings (a couple of minutes; for tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--restriction", choices=["counts", "coarse"], default="counts",
                   help=f"counts: classifier on {COUNTS_WINDOW[0]}-{COUNTS_WINDOW[1]} counts (default); "
                        "coarse: union of the coarse-NPE posteriors of all spectra")
    p.add_argument("--simulations", type=int, help="training spectra of the network (default: 30,000; quick 3,000)")
    p.add_argument("--no-real", action="store_true", help="leave out the real b_008 spectrum")
    p.add_argument("--no-batch", action="store_true", help="skip the xsbi batch cross-check")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: this small network trains fastest on one thread, several times "
                        "faster than on two when the cores are shared with other jobs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from xsbi.data.preparation import preparation_record
    from xsbi.record import versions, write_json

    settings = dict(QUICK if args.quick else FULL)
    settings["threads"] = args.threads
    if args.simulations:
        settings["simulations"] = int(args.simulations)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.quiet
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    def tick(stage, t0):
        timings[stage] = round(time.perf_counter() - t0, 2)
        print(f"[{stage}] {timings[stage]:.1f} s", flush=True)

    t0 = time.perf_counter()
    if args.threads:
        torch.set_num_threads(int(args.threads))
    torch.manual_seed(args.seed)
    cfg, prior, spec_full, spec = load_setup()
    names = list(prior.names)
    lc = light_curve()
    theta_true = truth_theta(lc, names)
    counts_full = fake_counts(prior.model, spec_full, theta_true, seed=args.seed + 100)
    fakes = noticed(spec_full, counts_full, spec)
    counts = [int(s.counts.sum()) for s in fakes]
    paths = write_spectra(spec_full, counts_full, out / "spectra")
    real = None if args.no_real else spec
    print(f"{len(fakes)} faked spectra of {DT} s with {Path(cfg.data.spectrum).name}'s set-up "
          f"({spec.n_bins} bins, {spec.energy_bounds[0, 0]:.2f}-{spec.energy_bounds[-1, 1]:.2f} keV), written to "
          f"{out / 'spectra'}")
    print("  #   t (s)   kT (keV)   norm    R (km)  counts")
    for i in range(len(fakes)):
        print(f"  {i + 1:2d}  {lc['time'][i]:5.3f}   {lc['kT'][i]:6.3f}  {lc['norm'][i]:7.1f}  {lc['radius_km'][i]:6.1f}  "
              f"{counts[i]:6d}")
    print(f"  counts from {min(counts)} to {max(counts)}" +
          (f"; real b_008: {int(spec.counts.sum())} counts" if real is not None else ""))
    tick("fake", t0)

    observations = [s.counts for s in fakes] + ([real.counts] if real is not None else [])
    t0 = time.perf_counter()
    restricted = restrict(args.restriction, prior, spec, observations, settings, args.seed + 1, progress)
    tick("restriction", t0)

    t0 = time.perf_counter()
    posterior, theta_train, x_train = train_network(prior, spec, restricted, settings, args.seed + 10, progress)
    posterior.meta["preparation"] = preparation_record(cfg.data.group, cfg.data.energy)  # for xsbi batch
    network = posterior.save(out / "network.pt")
    train_counts = x_train.sum(axis=1)
    tick("train", t0)

    t0 = time.perf_counter()
    if real is not None:
        posterior.check_compatible(real)  # same response, bins and exposure: the network applies as is
    x_obs = np.stack([np.asarray(c, dtype=np.float64) for c in observations])
    npe_samples = posterior.sample_batched(x_obs, settings["posterior_samples"], seed=args.seed + 20)
    tick("npe_sample", t0)

    t0 = time.perf_counter()
    fits, fit_info = fit_all(prior, fakes + ([real] if real is not None else []), npe_samples, settings["fit_starts"],
                             args.seed + 30)
    tick("cstat_fits", t0)

    t0 = time.perf_counter()
    rows = build_rows(lc, counts, names, npe_samples, fits,
                      real={"counts": int(real.counts.sum())} if real is not None else None)
    rec = recovery(rows, names)
    csv_path, md_path = write_table(rows, names, out)
    plots = {"sequence": plot_sequence(rows, out / "burst_sequence.png").name}
    n_pp = settings["prior_predictive"]
    x_pp = x_train[:n_pp] if len(x_train) >= n_pp else x_train
    plots["prior_predictive"] = plot_coverage(spec, x_pp, fakes, real, out / "prior_predictive.png").name
    tick("outputs", t0)

    batch = None
    if not args.no_batch:
        from xsbi.batch import run_batch

        t0 = time.perf_counter()
        batch_inputs = [str(p) for p in paths] + ([str(cfg.data.spectrum)] if real is not None else [])
        res = run_batch(network, batch_inputs, out / "batch", n_samples=settings["batch_samples"],
                        seed=args.seed, progress=False)
        batch = {"line": res.line(), "table": "batch.csv", "max_median_difference_sigma": _batch_agreement(
            out / "batch.csv", rows, names)}
        print(f"xsbi batch on the PHA files: {res.line()}; its medians differ from the ones above by at most "
              f"{batch['max_median_difference_sigma']:.2f} sigma (Monte-Carlo noise of "
              f"{settings['batch_samples']} draws)")
        tick("batch", t0)
    timings["total"] = round(time.perf_counter() - t_all, 2)

    summary = {
        "settings": {**settings, "quick": bool(args.quick), "seed": args.seed, "restriction": args.restriction,
                     "counts_window": list(COUNTS_WINDOW) if args.restriction == "counts" else None,
                     "distance_kpc": DISTANCE_KPC, "track": TRACK, "config": str(CONFIG)},
        "spectra": {"n": len(fakes), "exposure_s": DT, "n_bins": int(spec.n_bins), "counts": counts,
                    "energy_range_keV": [float(spec.energy_bounds[0, 0]), float(spec.energy_bounds[-1, 1])],
                    "files": [str(p.relative_to(out)) for p in paths]},
        "real_b008": None if real is None else {"counts": int(real.counts.sum()), "compatible": True,
                                                "row": rows[-1]},
        "restriction": restricted.record(),
        "training": {**posterior.meta["training"], "train_counts_range": [int(train_counts.min()), int(train_counts.max())]},
        "recovery": rec,
        "fits": {"starts": f"{settings['fit_starts']} prior draws + the NPE draw with the lowest C-stat",
                 "prior_starts_missed_minimum": int(sum(f["prior_starts_missed"] for f in fit_info)),
                 "per_spectrum": fit_info},
        "rows": rows,
        "batch": batch,
        "network": network.name,
        "tables": [csv_path.name, md_path.name],
        "plots": plots,
        "timings_s": timings,
        "versions": versions(),
    }
    write_json(out / "summary.json", summary)
    print("recovery of the true track (23 faked spectra):")
    for name, r in rec.items():
        corr = (f"Pearson r NPE {r['pearson_npe']:.3f}, fit {r['pearson_fit']:.3f}; " if "pearson_npe" in r else "")
        print(f"  {name:<15s} {corr}truth inside 68%: NPE {r['npe_inside_68']:.0%}, fit {r['fit_inside_68']:.0%}; "
              f"|NPE median - fit| / fit sigma: median {r['npe_vs_fit_shift_median']:.2f}; "
              f"NPE/fit width {r['npe_over_fit_width_median']:.2f}")
    missed = sum(f["prior_starts_missed"] for f in fit_info)
    print(f"C-stat fits: {missed} of {len(fit_info)} would have stopped in a local minimum from "
          f"{settings['fit_starts']} prior draws alone (the NPE start found the minimum)")
    if real is not None:
        r = rows[-1]
        print(f"real b_008: kT NPE {r['bbodyrad.kT_npe_median']:.3f} ({r['bbodyrad.kT_npe_q16']:.3f}-"
              f"{r['bbodyrad.kT_npe_q84']:.3f}), fit {r['bbodyrad.kT_fit']:.3f}; norm NPE "
              f"{r['bbodyrad.norm_npe_median']:.0f}, fit {r['bbodyrad.norm_fit']:.0f}")
    print(f"total {timings['total']:.0f} s; results in {out}: summary.json, table.csv, table.md, "
          f"{', '.join(plots.values())}, network.pt, spectra/" + (", batch.csv" if batch else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``xsbi compare``: analyses of the same spectrum by different methods, side by side.

Each run directory is the ``--out`` of ``xsbi run`` (``summary.json`` and
``posterior_samples.fits``, see docs/outputs.md).  Against a reference run (by default the first),
every run gets, per parameter, its median and 68% interval, the shift of its median in units of
the reference's half 68% width and the ratio of the widths, and, for the joint posterior, a
classifier two-sample test (C2ST: 0.5 indistinguishable, 1.0 disjoint).

>>> runs = load_runs(["results-mcmc", "results-npe"])            # doctest: +SKIP
>>> result = write_comparison(runs, "xsbi-compare")              # doctest: +SKIP
>>> result["parameters"]["powerlaw.PhoIndex"]["npe"]["shift"]    # doctest: +SKIP
0.04
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import XsbiError

__all__ = ["Run", "load_run", "load_runs", "check_compatible", "c2st_score", "compare_runs",
           "format_table", "write_comparison", "SHIFT_AGREE", "WIDTH_AGREE"]

# The project's accuracy floors (README "Accuracy"): medians within 0.15 reference sigma and
# widths within 15% count as agreement.
SHIFT_AGREE = 0.15
WIDTH_AGREE = 0.15
C2ST_SAMPLES = 5000
SUMMARY, SAMPLES = "summary.json", "posterior_samples.fits"
_SPECTRUM_KEYS = ("path", "counts", "n_bins", "energy_range_keV")
_HINT = ("pass the --out directory of `xsbi run` (it holds summary.json and posterior_samples.fits), "
         "or run `xsbi run CONFIG --out DIR` to make one")


@dataclass
class Run:
    """One ``xsbi run`` output directory: its posterior samples and its ``summary.json``."""

    path: Path
    label: str
    names: list[str]
    samples: np.ndarray
    summary: dict = field(repr=False)
    header_method: str = ""

    @property
    def method(self) -> str:
        return str(self.summary.get("method") or self.header_method.split(" ")[0] or "?")

    @property
    def log_params(self) -> list[str]:
        """Parameters with a log-uniform prior (compared in log10 by the C2ST, drawn in log10)."""
        priors = self.summary.get("priors") or {}
        return [n for n in self.names if isinstance(priors.get(n), dict) and "loguniform" in priors[n]]

    @property
    def wall_time_s(self) -> float | None:
        t = self.summary.get("timings_s")
        return float(sum(t.values())) if isinstance(t, dict) and t else None


# ================================================================================== loading
def load_run(directory, label: str | None = None) -> Run:
    """Read an ``xsbi run`` output directory.

    Parameters
    ----------
    directory : str or Path
        Holds ``summary.json`` and ``posterior_samples.fits``.
    label : str, optional
        Name shown in tables and legends; default the run's method (``summary["method"]``).

    Raises
    ------
    XsbiError
        The directory does not exist, a file is missing or unreadable, or the samples do not
        match the summary.
    """
    d = Path(directory)
    if not d.exists():
        raise XsbiError(f"run directory {d} does not exist; {_HINT}")
    if not d.is_dir():
        raise XsbiError(f"{d} is a file, not a run directory; {_HINT}")
    for name in (SUMMARY, SAMPLES):
        if not (d / name).is_file():
            raise XsbiError(f"{d} is not an xsbi run directory: {name} is missing; {_HINT}")
    try:
        summary = json.loads((d / SUMMARY).read_text())
    except (OSError, ValueError) as exc:
        raise XsbiError(f"cannot read {d / SUMMARY}: {exc}; re-run the analysis to rewrite it") from exc
    if not isinstance(summary, dict):
        raise XsbiError(f"{d / SUMMARY} is not an xsbi summary (a JSON object); re-run the analysis")
    names, samples, header_method = _read_samples(d / SAMPLES)
    expected = list((summary.get("parameters") or {}).keys())
    if expected and set(expected) != set(names):
        raise XsbiError(f"{d}: {SAMPLES} has columns {names} but {SUMMARY} summarises {expected}; "
                        "the two files come from different runs - re-run the analysis")
    finite = np.all(np.isfinite(samples), axis=1)
    if not finite.any():
        raise XsbiError(f"{d / SAMPLES} holds no finite posterior samples; re-run the analysis")
    run = Run(path=d, label="", names=names, samples=samples[finite], summary=summary,
              header_method=header_method)
    run.label = str(label) if label else run.method
    return run


def _read_samples(path: Path):
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdul:
            tables = [h for h in hdul if isinstance(h, fits.BinTableHDU)]
            hdu = next((h for h in tables if h.name == "POSTERIOR"), tables[0] if tables else None)
            if hdu is None:
                raise XsbiError(f"{path} has no binary table of posterior samples; re-run the analysis")
            names = [str(n) for n in hdu.columns.names]
            data = hdu.data
            samples = np.column_stack([np.asarray(data[n], dtype=np.float64) for n in names]) if names \
                else np.empty((0, 0))
            method = str(hdu.header.get("METHOD", ""))
    except XsbiError:
        raise
    except (OSError, ValueError, TypeError) as exc:
        raise XsbiError(f"cannot read {path}: {exc}; re-run the analysis to rewrite it") from exc
    if not names or samples.shape[0] == 0:
        raise XsbiError(f"{path} holds no posterior samples; re-run the analysis")
    return names, samples, method


def _same_path(a, b) -> bool:
    return os.path.normpath(os.path.abspath(str(a))) == os.path.normpath(os.path.abspath(str(b)))


def check_compatible(runs) -> None:
    """Raise :class:`XsbiError` unless every run has the reference's parameters and spectrum.

    The spectrum is compared through ``summary["spectrum"]``: ``path``, ``counts``, ``n_bins`` and
    ``energy_range_keV`` (keys missing from a summary are not compared).  Column order may differ
    between runs; each run's samples are put in the first run's order.
    """
    runs = list(runs)
    if len(runs) < 2:
        raise XsbiError(f"compare needs at least two runs, got {len(runs)}")
    first = runs[0]
    for run in runs[1:]:
        if set(run.names) != set(first.names):
            only_a = [n for n in first.names if n not in run.names]
            only_b = [n for n in run.names if n not in first.names]
            parts = ([f"only in {first.path} ({first.label}): {', '.join(only_a)}"] if only_a else []) + \
                    ([f"only in {run.path} ({run.label}): {', '.join(only_b)}"] if only_b else [])
            raise XsbiError("the runs have different free parameters (" + "; ".join(parts) + "); compare "
                            "runs of the same model with the same frozen parameters")
        if run.names != first.names:
            order = [run.names.index(n) for n in first.names]
            run.samples, run.names = run.samples[:, order], list(first.names)
        a, b = first.summary.get("spectrum") or {}, run.summary.get("spectrum") or {}
        differ = []
        for key in _SPECTRUM_KEYS:
            if key not in a or key not in b:
                continue
            same = _same_path(a[key], b[key]) if key == "path" else (
                np.allclose(a[key], b[key], rtol=1e-6, atol=0) if key == "energy_range_keV" else a[key] == b[key])
            if not same:
                differ.append(f"{key} {a[key]} vs {b[key]}")
        if differ:
            raise XsbiError(f"{first.path} ({first.label}) and {run.path} ({run.label}) analysed different spectra: "
                            + "; ".join(differ) + ".  xsbi compare compares methods on the same spectrum, "
                            "band and grouping; re-run one of them with the other's data settings")


def load_runs(directories, labels=None, reference=None) -> list[Run]:
    """Load and check several run directories; the reference run (if given) comes first.

    Parameters
    ----------
    directories : list of str or Path
    labels : list of str, optional
        One per directory (not counting a ``reference`` that is not among them).
    reference : str or Path, optional
        The reference run: one of ``directories`` or another run directory.  Default: the first.
    """
    directories = [Path(d) for d in directories]
    if labels is not None and len(labels) != len(directories):
        raise XsbiError(f"{len(labels)} labels for {len(directories)} run directories; give one label per directory")
    runs = [load_run(d, lb) for d, lb in zip(directories, labels or [None] * len(directories))]
    if reference is not None:
        i = next((k for k, d in enumerate(directories) if _same_path(d, reference)), None)
        if i is None:
            runs.insert(0, load_run(reference))
        else:
            runs.insert(0, runs.pop(i))
    _unique_labels(runs)
    check_compatible(runs)
    return runs


def _unique_labels(runs) -> None:
    """Labels must tell runs apart: repeated ones get the directory name, then a number."""
    labels = [r.label for r in runs]
    for r in runs:
        if labels.count(r.label) > 1:
            r.label = f"{r.label} ({r.path.name})"
    labels = [r.label for r in runs]
    for k, r in enumerate(runs):
        if labels.count(r.label) > 1:
            r.label = f"{r.label} #{k + 1}"


# ================================================================================== numbers
def c2st_score(a, b, max_samples: int = C2ST_SAMPLES, seed: int = 0, log_columns=()) -> float:
    """Classifier two-sample test accuracy between sample sets ``a`` and ``b`` (n, d).

    Columns in ``log_columns`` (indices) are compared in log10.  Repeated rows are dropped first:
    equally weighted samples from nested sampling or importance resampling, and MCMC chains that
    stay put on a rejected move, repeat points, and a point in both a training and a test fold is
    recognised by the classifier, which would make identical posteriors look different.  Both
    sets are then subsampled to the
    same size, at most ``max_samples`` (balanced classes keep chance at 0.5), standardised with
    ``a``'s mean and standard deviation, and given to ``sbi.utils.metrics.c2st`` (random forest,
    5-fold cross-validation) with a fixed seed.  0.5: indistinguishable; 1.0: disjoint.
    """
    a = np.array(a, dtype=np.float64, ndmin=2)
    b = np.array(b, dtype=np.float64, ndmin=2)
    if a.shape[1] != b.shape[1]:
        raise XsbiError(f"c2st_score: {a.shape[1]} columns against {b.shape[1]}")
    for j in log_columns:
        if np.all(a[:, j] > 0) and np.all(b[:, j] > 0):
            a[:, j], b[:, j] = np.log10(a[:, j]), np.log10(b[:, j])
    a, b = np.unique(a, axis=0), np.unique(b, axis=0)
    rng = np.random.default_rng(seed)
    n = int(min(len(a), len(b), max_samples))
    if n < 10:
        raise XsbiError(f"c2st_score needs at least 10 samples in each set, got {len(a)} and {len(b)}")
    a = a[rng.choice(len(a), n, replace=False)]
    b = b[rng.choice(len(b), n, replace=False)]
    mean, std = a.mean(axis=0), a.std(axis=0)
    std[~(std > 1e-14)] = 1.0
    a, b = (a - mean) / std, (b - mean) / std
    try:
        import torch
        from sbi.utils.metrics import c2st
    except ImportError:  # pragma: no cover - sbi is a dependency; same test with sklearn directly
        return _c2st_sklearn(a, b, seed)
    return float(c2st(torch.from_numpy(a), torch.from_numpy(b), seed=seed, z_score=False))


def _c2st_sklearn(a, b, seed):  # pragma: no cover - fallback only
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import KFold, cross_val_score

    data = np.concatenate([a, b])
    target = np.concatenate([np.zeros(len(a)), np.ones(len(b))])
    cv = KFold(n_splits=5, shuffle=True, random_state=seed)
    return float(cross_val_score(RandomForestClassifier(random_state=seed), data, target, cv=cv).mean())


def _quantiles(col):
    q16, med, q84 = np.quantile(col, [0.16, 0.5, 0.84])
    return float(med), float(q16), float(q84)


def _finite(x):
    return None if x is None or not math.isfinite(x) else float(x)


def compare_runs(runs, reference=0, c2st_samples: int = C2ST_SAMPLES, seed: int = 0) -> dict:
    """Per parameter and run: median, 68% interval, shift and width ratio against the reference.

    Parameters
    ----------
    runs : list of Run
        Same parameters, same spectrum (see :func:`check_compatible`).
    reference : int or str
        Index or label of the reference run.
    c2st_samples : int
        At most this many samples of each run enter the C2ST (0 skips the test).
    seed : int
        Seed of the subsampling and the classifier.

    Returns
    -------
    dict
        ``reference`` (label), ``labels``, ``names``, ``parameters``
        ``{name: {label: {median, q16, q84, sigma, shift, width_ratio}}}`` where
        ``sigma = (q84 - q16) / 2``, ``shift = (median - median_ref) / sigma_ref`` and
        ``width_ratio = sigma / sigma_ref``; ``c2st`` ``{label: accuracy}`` (None for the
        reference), ``c2st_log10`` (parameters compared in log10), ``runs`` (per label: directory,
        method, samples, best fit C-stat, expected C-stat and its sd, wall time) and ``verdicts``
        (per label: agreement with the reference, in words).
    """
    runs = list(runs)
    check_compatible(runs)
    if c2st_samples < 0:
        raise XsbiError(f"c2st_samples must be >= 0 (0 skips the C2ST), got {c2st_samples}")
    labels = [r.label for r in runs]
    if isinstance(reference, str):
        if reference not in labels:
            raise XsbiError(f"reference {reference!r} is not one of the runs {labels}")
        reference = labels.index(reference)
    ref = runs[reference]
    names = list(ref.names)
    log_params = ref.log_params
    stats = {r.label: [_quantiles(r.samples[:, j]) for j in range(len(names))] for r in runs}
    params: dict = {}
    for j, name in enumerate(names):
        m0, lo0, hi0 = stats[ref.label][j]
        s0 = 0.5 * (hi0 - lo0)
        params[name] = {}
        for r in runs:
            m, lo, hi = stats[r.label][j]
            s = 0.5 * (hi - lo)
            shift = (m - m0) / s0 if s0 > 0 else (0.0 if m == m0 else math.inf)
            ratio = s / s0 if s0 > 0 else (1.0 if s == 0 else math.inf)
            params[name][r.label] = {"median": m, "q16": lo, "q84": hi, "sigma": s,
                                     "shift": _finite(shift), "width_ratio": _finite(ratio)}
    c2 = {}
    for r in runs:
        if r is ref or not c2st_samples:
            c2[r.label] = None
        else:
            c2[r.label] = c2st_score(ref.samples, r.samples, max_samples=c2st_samples, seed=seed,
                                     log_columns=[names.index(n) for n in log_params])
    info = {}
    for r in runs:
        fit = r.summary.get("best_fit") or {}
        info[r.label] = {"directory": str(r.path), "method": r.method, "method_detail": r.header_method,
                         "samples": int(len(r.samples)),
                         "best_fit_cstat": fit.get("cstat"), "expected_cstat": fit.get("expected_cstat"),
                         "cstat_std": fit.get("cstat_std"), "best_fit_statistic": fit.get("statistic"),
                         "wall_time_s": r.wall_time_s}
    result = {"reference": ref.label, "labels": labels, "names": names, "parameters": params,
              "c2st": c2, "c2st_log10": log_params, "c2st_samples": int(c2st_samples),
              "thresholds": {"shift_sigma": SHIFT_AGREE, "width_fraction": WIDTH_AGREE},
              "spectrum": ref.summary.get("spectrum"), "runs": info}
    notes = []
    for r in runs:
        if r is not ref and (r.summary.get("priors") or {}) != (ref.summary.get("priors") or {}):
            notes.append(f"{r.label} used different priors from {ref.label}: the posteriors may differ for that "
                         "reason alone")
    result["notes"] = notes
    result["verdicts"] = {r.label: _verdict(result, r.label) for r in runs if r is not ref}
    return result


def _verdict(result, label) -> dict:
    ref = result["reference"]
    bad = []
    for name in result["names"]:
        p = result["parameters"][name][label]
        shift, ratio = p["shift"], p["width_ratio"]
        why = []
        if shift is None or abs(shift) >= SHIFT_AGREE:
            why.append("median shifted by " + ("an infinite number of" if shift is None else f"{shift:+.2f}")
                       + " sigma")
        if ratio is None or abs(ratio - 1.0) >= WIDTH_AGREE:
            why.append("width ratio " + ("infinite" if ratio is None else f"{ratio:.2f}"))
        if why:
            bad.append(f"{name} ({', '.join(why)})")
    agrees = not bad
    if agrees:
        text = (f"{label} agrees with {ref} (|shift| < {SHIFT_AGREE:g} sigma, widths within "
                f"{WIDTH_AGREE:.0%} for every parameter)")
    else:
        text = f"{label} disagrees with {ref} on " + "; ".join(bad)
    c2 = result["c2st"].get(label)
    if c2 is not None:
        words = ("a classifier cannot tell the joint posteriors apart" if c2 < 0.55 else
                 "a classifier tells the joint posteriors apart a little" if c2 < 0.7 else
                 "a classifier tells the joint posteriors apart clearly")
        text += f"; C2ST {c2:.2f}: {words}"
    return {"agrees": agrees, "text": text + "."}


# ================================================================================== tables
def _fmt_interval(med, lo, hi) -> str:
    minus, plus = med - lo, hi - med
    errors = [e for e in (minus, plus) if e > 0 and math.isfinite(e)]
    if not errors:
        return f"{med:.4g}"
    scale = max(abs(med), *errors)
    if scale >= 1e5 or scale < 1e-3:
        return f"{med:.3e} -{minus:.2g} +{plus:.2g}"
    digits = int(np.clip(1 - math.floor(math.log10(min(errors))), 0, 10))
    return f"{med:.{digits}f} -{minus:.{digits}f} +{plus:.{digits}f}"


def _num(x, fmt) -> str:
    return "-" if x is None else format(x, fmt)


def format_table(result) -> str:
    """The comparison as Markdown: a table per parameter and method, one per method, verdicts."""
    ref = result["reference"]
    lines = [f"Reference: {ref}.  Shift: (median - median_ref) / sigma_ref, with sigma = (q84 - q16) / 2; "
             "width ratio: sigma / sigma_ref.", "",
             "| parameter | method | median -/+ (68%) | shift (ref sigma) | width ratio |",
             "|---|---|---|---|---|"]
    for name in result["names"]:
        for k, label in enumerate(result["labels"]):
            p = result["parameters"][name][label]
            is_ref = label == ref
            lines.append(f"| {name if k == 0 else ''} | {label}{' (reference)' if is_ref else ''} | "
                         f"{_fmt_interval(p['median'], p['q16'], p['q84'])} | "
                         f"{'-' if is_ref else _num(p['shift'], '+.2f')} | "
                         f"{'-' if is_ref else _num(p['width_ratio'], '.2f')} |")
    logs = result.get("c2st_log10") or []
    lines += ["", f"| method | C2ST vs {ref} | best-fit C-stat | expected C-stat | wall time (s) | samples |",
              "|---|---|---|---|---|---|"]
    for label in result["labels"]:
        r, c2 = result["runs"][label], result["c2st"].get(label)
        exp = "-" if r["expected_cstat"] is None else \
            f"{r['expected_cstat']:.1f} +/- {_num(r['cstat_std'], '.1f')}"
        lines.append(f"| {label} | {'(reference)' if label == ref else _num(c2, '.3f')} | "
                     f"{_num(r['best_fit_cstat'], '.1f')} | {exp} | {_num(r['wall_time_s'], '.1f')} | {r['samples']} |")
    lines += ["", "C2ST: accuracy of a classifier told to separate each run's samples from the reference's "
              "(0.5: indistinguishable, 1.0: disjoint)"
              + (f"; {', '.join(logs)} compared in log10 (log-uniform priors)." if logs else "."), ""]
    lines += [f"- {v['text']}" for v in result["verdicts"].values()]
    lines += [f"- Note: {n}." for n in result.get("notes", [])]
    return "\n".join(lines) + "\n"


# ================================================================================== files
def write_comparison(runs, out, reference=0, c2st_samples: int = C2ST_SAMPLES, seed: int = 0) -> dict:
    """Compare ``runs`` and write ``compare.json``, ``compare.md``, ``compare_corner.png`` and
    ``compare_spectrum.png`` to ``out``; returns what ``compare.json`` holds.

    The spectrum plot rebuilds the observation from the reference run's recorded configuration;
    when that is no longer possible (data files moved), the plot is skipped with a warning and
    the reason is recorded under ``plots`` in ``compare.json``.
    """
    from ..record import write_json
    from ..report import plot_corner

    runs = list(runs)
    result = compare_runs(runs, reference=reference, c2st_samples=c2st_samples, seed=seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ordered = [r for r in runs if r.label == result["reference"]] + [r for r in runs if r.label != result["reference"]]
    colors = _colors(len(runs))
    color_of = {r.label: c for r, c in zip(runs, colors)}
    plots: dict = {}
    log_params = [n for n in result["c2st_log10"]
                  if all(np.all(r.samples[:, r.names.index(n)] > 0) for r in runs)]
    plot_corner([r.samples for r in ordered], result["names"], out / "compare_corner.png",
                labels=[r.label for r in ordered], colors=[color_of[r.label] for r in ordered],
                log_params=log_params)
    plots["corner"] = "compare_corner.png"
    try:
        _plot_spectra(runs, ordered[0], out / "compare_spectrum.png", color_of)
        plots["spectrum"] = "compare_spectrum.png"
    except XsbiError as exc:
        msg = f"compare_spectrum.png not written: cannot rebuild the observation of {ordered[0].path} ({exc})"
        warnings.warn(msg, stacklevel=2)
        plots["spectrum"] = None
        plots["spectrum_skipped"] = msg
        result["notes"].append(msg)
    result["plots"] = plots
    spec = result.get("spectrum") or {}
    head = ["# xsbi compare", ""]
    if spec:
        head.append(f"Spectrum: {spec.get('path')} ({spec.get('counts')} counts in {spec.get('n_bins')} bins, "
                    f"{_energy(spec.get('energy_range_keV'))}).")
    head += ["Runs: " + ", ".join(f"{lb} ({result['runs'][lb]['directory']})" for lb in result["labels"]) + ".", ""]
    md = "\n".join(head) + "\n" + format_table(result)
    md += "\n" + "".join(f"![{k}]({v})\n" for k, v in plots.items() if k in ("corner", "spectrum") and v)
    (out / "compare.md").write_text(md)
    write_json(out / "compare.json", result)
    return result


def _energy(rng) -> str:
    try:
        return f"{float(rng[0]):g}-{float(rng[1]):g} keV"
    except (TypeError, ValueError, IndexError):
        return "band unknown"


def _colors(n):
    from ..report._common import COLORS

    return [COLORS[k % len(COLORS)] for k in range(n)]


def _observation(run):
    from ..config import load_config
    from ..pipeline import load_observation

    cfg_dict = run.summary.get("config")
    if not isinstance(cfg_dict, dict):
        raise XsbiError(f"{run.path / SUMMARY} records no configuration")
    cfg = load_config(cfg_dict)
    try:
        spec = load_observation(cfg)
    except OSError as exc:
        raise XsbiError(str(exc)) from exc
    return cfg, spec


def _plot_spectra(runs, ref, path, color_of) -> None:
    """Observed folded spectrum with every run's best-fit folded model, and residuals."""
    import torch

    from ..config import load_config
    from ..report._common import new_figure, save, step_xy
    from ..report.spectrum import poisson_errors, residual_sigma
    from ..simulate import Simulator

    _, spec = _observation(ref)
    counts = np.asarray(spec.counts, dtype=np.float64)
    recorded = (ref.summary.get("spectrum") or {}).get("counts")
    if recorded is not None and int(counts.sum()) != int(recorded):
        warnings.warn(f"the spectrum of {ref.path} now has {int(counts.sum())} counts, the run recorded {recorded}: "
                      "the data file changed since the run", stacklevel=3)
    background = None
    if spec.background_counts is not None:
        background = np.asarray(spec.background_counts, float) * np.asarray(spec.background_ratio)
    models = {}
    for r in runs:
        best = (r.summary.get("best_fit") or {}).get("parameters")
        if not isinstance(best, dict) or set(best) != set(r.names):
            continue
        if not isinstance(r.summary.get("config"), dict):
            continue
        model = load_config(r.summary["config"]).build_prior().model
        theta = np.array([[best[n] for n in model.parameter_names]], dtype=np.float64)
        mu = Simulator(model, spec, dtype=torch.float64).expected_counts(theta)[0]
        models[r.label] = np.asarray(mu, dtype=np.float64) + (background if background is not None else 0.0)
    if not models:
        raise XsbiError("no run records a best fit with its configuration")

    bounds = np.asarray(spec.energy_bounds, dtype=np.float64)
    centre = np.sqrt(bounds[:, 0] * bounds[:, 1])
    xerr = np.vstack([centre - bounds[:, 0], bounds[:, 1] - centre])
    scale = 1.0 / (spec.exposure * (bounds[:, 1] - bounds[:, 0]))
    lower, upper = poisson_errors(counts)
    fig = new_figure((7.0, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.3], "hspace": 0.0})
    det = counts > 0
    top.errorbar(centre[det], (counts * scale)[det], xerr=xerr[:, det],
                 yerr=np.vstack([lower, upper])[:, det] * scale[det], fmt="o", ms=2.5, color="k",
                 ecolor="0.4", elinewidth=0.8, label="data", zorder=3)
    lim = 3.5
    for k, (label, mu) in enumerate(models.items()):
        fit = runs[[r.label for r in runs].index(label)].summary["best_fit"]
        stat = fit.get("cstat")
        text = f"{label}" + (f" (C = {stat:.1f})" if stat is not None else "")
        x, y = step_xy(bounds, np.where(mu > 0, mu * scale, np.nan))
        top.plot(x, y, color=color_of[label], lw=1.4, ls=("-", "--", ":", "-.")[k % 4], label=text, zorder=2)
        resid = (counts - mu) / residual_sigma(counts, mu)
        x, y = step_xy(bounds, resid)
        bottom.plot(x, y, color=color_of[label], lw=1.0, ls=("-", "--", ":", "-.")[k % 4])
        lim = max(lim, 1.1 * float(np.max(np.abs(resid))) + 0.5)
    if background is not None:
        x, y = step_xy(bounds, np.where(background > 0, background * scale, np.nan))
        top.plot(x, y, color="0.5", lw=1.0, ls="--", label="background (scaled)", zorder=1)
    top.set_xscale("log")
    top.set_yscale("log")
    shown = np.concatenate([((counts - lower) * scale)[det]] + [(m * scale)[m > 0] for m in models.values()])
    shown = shown[shown > 0]
    if shown.size:
        top.set_ylim(0.5 * shown.min(), 2.0 * max(shown.max(), ((counts + upper) * scale).max()))
    top.set_ylabel("counts s$^{-1}$ keV$^{-1}$")
    top.set_title("best fit of each method" + (" (models include the background)" if background is not None else ""),
                  fontsize=10)
    top.legend(fontsize=9, frameon=False)
    bottom.axhline(0.0, color="0.3", lw=0.8)
    bottom.set_ylim(-lim, lim)
    bottom.set_xlabel("Energy (keV)")
    bottom.set_ylabel(r"(data$-$model)/$\sqrt{\rm model}$")
    bottom.set_xlim(bounds[0, 0] * 0.95, bounds[-1, 1] * 1.05)
    fig.align_ylabels([top, bottom])
    save(fig, path)

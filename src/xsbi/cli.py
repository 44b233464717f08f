"""Command line: ``xsbi run``, ``demo``, ``validate``, ``batch``, ``info``, ``compare``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import XsbiError


def _demo(args) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), seed=args.seed, simulations=args.simulations, progress=not args.quiet)
    return 0


def _run(args) -> int:
    from .config import load_config
    from .pipeline import run_analysis

    overrides = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"xsbi: error: --set expects key=value, got '{item}'", file=sys.stderr)
            return 2
        overrides[key.strip()] = value
    if args.method:
        overrides["inference.method"] = args.method
    if args.seed is not None:
        overrides["seed"] = str(args.seed)
    cfg = load_config(args.config, overrides=overrides or None)
    summary = run_analysis(cfg, args.out, progress=not args.quiet)
    _print_summary(summary, Path(args.out))
    return 0


def _print_summary(summary: dict, out: Path) -> None:
    print(f"method: {summary['method']}   spectrum: {summary['spectrum']['counts']} counts in {summary['spectrum']['n_bins']} bins")
    for name, s in summary["parameters"].items():
        print(f"  {name:<22s} {s['median']:.5g}  (-{s['median'] - s['q16']:.3g} +{s['q84'] - s['median']:.3g})")
    if "importance_sampling" in summary:
        isr = summary["importance_sampling"]
        print(f"importance sampling on the exact likelihood: efficiency {isr['efficiency']:.1%} "
              f"(ESS {isr['ess']:.0f} of {isr['proposal_samples']} network samples)")
    fit = summary["best_fit"]
    print(f"best fit {fit.get('statistic_name', 'C-stat')} {fit['cstat']:.1f} "
          f"(expected {fit['expected_cstat']:.1f} +/- {fit['cstat_std']:.1f})")
    total = sum(summary["timings_s"].values())
    print(f"total {total:.1f} s; results in {out}/summary.json, posterior_samples.fits and the PNG plots")


def _validate(args) -> int:
    from .diagnostics.calibration import check_test_set, read_test_set, validate
    from .inference import AmortizedPosterior

    rundir = Path(args.rundir)
    if not rundir.is_dir():
        raise XsbiError(f"run directory {rundir} not found (give the --out directory of an `xsbi run`)")
    network = Path(args.network) if args.network else rundir / "network.pt"
    test_set = Path(args.test_set) if args.test_set else rundir / "test_set.fits"
    if not network.is_file():
        raise XsbiError(f"no trained network {network}: `xsbi run` writes network.pt with inference.method npe "
                        "(snpe networks are trained for one observation and not saved); or pass --network FILE")
    if not test_set.is_file():
        raise XsbiError(f"no test set {test_set}: `xsbi run` writes test_set.fits with inference.method npe and "
                        "inference.test_spectra > 0 (default 500); rerun it (runs made before xsbi saved test sets "
                        "have none), or pass --test-set FILE")
    posterior = AmortizedPosterior.load(network)
    theta, counts, names, header = read_test_set(test_set)
    theta = check_test_set(posterior, theta, counts, names, header, path=test_set)
    out = Path(args.out) if args.out else rundir
    r = validate(posterior, theta, counts, out, n_draws=args.draws, seed=args.seed, progress=not args.quiet,
                 extra={"network": str(network), "test_set": str(test_set)})
    print(f"calibration on {r['spectra']} test spectra, {r['draws']} posterior draws each "
          f"({r['timings_s']['total']:.1f} s)")
    for name, p in r["parameters"].items():
        print(f"  {name:<22s} {p['verdict']}")
    print(f"  joint HPD coverage: {r['coverage']['verdict']}")
    print(f"verdict: {r['verdict']['status']}")
    if r["spectra"] < 500:
        print(f"  (only {r['spectra']} test spectra: at least 500 are needed to detect all but large miscalibration)")
    print(f"results in {out}: validate.json, validate.md" + "".join(f", {f}" for f in r["plots"].values()))
    return 0


def _expand_spectra(patterns) -> list[str]:
    """Paths in order; a pattern the shell did not expand (quoted, or on Windows) is globbed here.
    A pattern matching nothing stays as given, to be reported as not found."""
    import glob

    paths = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else []
        paths.extend(matches or [pattern])
    return paths


def _batch(args) -> int:
    from .batch import run_batch, table_paths
    from .inference import AmortizedPosterior

    posterior = AmortizedPosterior.load(args.network)
    spectra = _expand_spectra(args.spectra)
    csv_path, fits_path = table_paths(args.out)
    r = run_batch(posterior, spectra, args.out, n_samples=args.samples, seed=args.seed, progress=not args.quiet,
                  workers=args.workers, importance=args.importance)
    print(f"{r.line()}; table in {csv_path} and {fits_path}")
    return 0


def _info(args) -> int:
    from .data import load_spectrum

    spec = load_spectrum(args.spectrum)
    if args.energy:
        spec = spec.notice(*args.energy)
    print(spec)
    lo, hi = spec.energy_bounds[0, 0], spec.energy_bounds[-1, 1]
    print(f"  bins: {spec.n_bins} ({lo:.3f}-{hi:.3f} keV), counts: {int(spec.counts.sum())}, exposure: {spec.exposure:g} s")
    print(f"  response: {spec.respfile}  arf: {spec.ancrfile}  background: {spec.backfile}")
    if spec.background_counts is not None:
        scaled = float((spec.background_counts * spec.background_ratio).sum())
        print(f"  background counts: {int(spec.background_counts.sum())} (scaled to source region: {scaled:.1f})")
    return 0


def _compare(args) -> int:
    from .diagnostics.compare import format_table, load_runs, write_comparison

    runs = load_runs(args.dirs, labels=args.labels, reference=args.reference)
    result = write_comparison(runs, args.out, c2st_samples=args.c2st_samples, seed=args.seed)
    print(format_table(result), end="")
    written = ["compare.json", "compare.md"] + [v for k, v in result["plots"].items() if k in ("corner", "spectrum") and v]
    print(f"written to {Path(args.out)}: {', '.join(written)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xsbi", description="X-ray spectral fitting with simulation-based inference.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser(
        "run",
        help="run an analysis described by a YAML file (see docs/config.md)",
        description="Load the spectrum, restrict the prior, infer the posterior (NPE, multi-round NPE, C-stat fit or "
        "MCMC) and write summary.json, posterior_samples.fits, the trained network and plots to --out.",
    )
    r.add_argument("config", help="YAML configuration (data, model and priors are required)")
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--method", choices=["npe", "snpe", "cstat", "mcmc", "nested"], help="override inference.method")
    r.add_argument("--seed", type=int, help="override the seed")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any setting, e.g. --set inference.simulations=5000 (repeatable)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=_run)

    d = sub.add_parser(
        "demo",
        help="the whole pipeline on a built-in NICER-like spectrum (no files needed)",
        description="Simulate the reference tbabs*powerlaw spectrum (nH=0.2, PhoIndex=1.7, norm=1, ~2,000 counts) on a "
        "NICER-like instrument built in code, write it as OGIP files with a YAML configuration, and run it: "
        "restricted prior, single-round NPE, posterior, plots.",
    )
    d.add_argument("--out", default="xsbi-demo", help="output directory (default: %(default)s)")
    d.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    d.add_argument("--simulations", type=int, default=20_000, help="NPE training spectra (default: %(default)s)")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=_demo)

    v = sub.add_parser(
        "validate",
        help="calibration of a trained network on held-out test spectra (SBC ranks, coverage, regression)",
        description="Simulation-based calibration of the network of an `xsbi run` (method npe) on the test spectra it "
        "saved (test_set.fits, drawn from the restricted prior): rank histograms with chi-square and KS uniformity "
        "tests per parameter, HPD expected coverage and TARP, regression of the posterior median on the input; "
        "a verdict in plain words (calibrated, over-/under-confident, biased).  Writes validate.json, validate.md, "
        "sbc_ranks.png, coverage.png and regression.png.",
    )
    v.add_argument("rundir", help="output directory of `xsbi run` (with network.pt and test_set.fits)")
    v.add_argument("--network", metavar="FILE", help="trained network (default: RUNDIR/network.pt)")
    v.add_argument("--test-set", metavar="FILE", help="test spectra (default: RUNDIR/test_set.fits)")
    v.add_argument("--draws", type=int, default=1000, metavar="N",
                   help="posterior draws per test spectrum (default: %(default)s)")
    v.add_argument("--out", metavar="DIR", help="output directory (default: RUNDIR)")
    v.add_argument("--seed", type=int, default=0, help="seed of the posterior draws (default: %(default)s)")
    v.add_argument("--quiet", action="store_true", help="no progress bars")
    v.set_defaults(func=_validate)

    b = sub.add_parser(
        "batch",
        help="apply a saved network (network.pt) to many PHA files: one table row per spectrum",
        description="Amortized inference over many spectra: each PHA file is grouped and noticed as the network's "
        "training spectrum was, checked against the training set-up (bins, response, exposure: the training one, "
        "or any in the range of a network trained with inference.exposure; background: the training one, or "
        "one of its shape at any level in the range of a network trained with inference.background_level) and "
        "given posterior draws; its row holds per parameter the median and 16%/84% quantiles, and the best "
        "fit among the draws with its C-stat against the expected value (Kaastra 2017).  Spectra the network "
        "was not trained for, and unreadable files, get a 'skipped' row with the reason.  Writes TABLE.csv "
        "(row by row) and TABLE.fits.",
    )
    b.add_argument("network", help="trained network (network.pt of an `xsbi run` with method npe)")
    b.add_argument("spectra", nargs="+", metavar="SPECTRUM", help="PHA files or glob patterns (e.g. 'obs/*.pha')")
    b.add_argument("--out", required=True, metavar="TABLE", help="table path stem: writes TABLE.csv and TABLE.fits "
                   "(a .csv or .fits suffix is dropped)")
    b.add_argument("--samples", type=int, default=1000, metavar="N", help="posterior draws per spectrum (default: %(default)s)")
    b.add_argument("--seed", type=int, default=0, help="seed of the draws (default: %(default)s)")
    b.add_argument("--importance", action="store_true",
                   help="reweight each spectrum's draws by the exact likelihood (neural importance sampling, as "
                   "`xsbi run` does): quantiles of the exact posterior, and a column is_efficiency; about 2.3x "
                   "the time per spectrum")
    b.add_argument("--workers", type=int, metavar="N", help="spectra processed in parallel by N worker processes "
                   "(threads where fork is unavailable), one core each; 1: one process on all of torch's threads "
                   "(default: torch's thread count, usually the physical cores)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_batch)

    i = sub.add_parser("info", help="load a PHA file with its responses and background and summarise it")
    i.add_argument("spectrum", help="OGIP PHA file")
    i.add_argument("--energy", nargs=2, type=float, metavar=("EMIN", "EMAX"), help="notice this band (keV)")
    i.set_defaults(func=_info)

    c = sub.add_parser(
        "compare",
        help="compare runs of different methods on the same spectrum (tables and overlaid plots)",
        description="Compare the posteriors of several `xsbi run` output directories made on the same spectrum "
        "(e.g. npe, cstat, mcmc): per parameter the median and 68% interval, the shift of the median in units of "
        "the reference's sigma = (q84 - q16)/2 and the width ratio; per run a classifier two-sample test (C2ST, "
        "0.5 = indistinguishable, 1 = disjoint; log-uniform parameters in log10), the best-fit and expected C-stat "
        "and the wall time.  Writes compare.json, compare.md, compare_corner.png and compare_spectrum.png to "
        "--out and prints the table.",
    )
    c.add_argument("dirs", nargs="+", metavar="DIR", help="run directories (each with summary.json and "
                   "posterior_samples.fits); at least two, counting --reference")
    c.add_argument("--reference", metavar="DIR", help="the run the others are measured against: one of DIR or "
                   "another run directory (default: the first DIR)")
    c.add_argument("--out", default="xsbi-compare", help="output directory (default: %(default)s)")
    c.add_argument("--labels", nargs="+", metavar="LABEL", help="names of the runs, one per DIR in order "
                   "(default: each run's method; a --reference outside DIR keeps its method)")
    c.add_argument("--c2st-samples", type=int, default=5000, metavar="N",
                   help="at most N samples of each run enter the C2ST; 0 skips it (default: %(default)s)")
    c.add_argument("--seed", type=int, default=0, help="seed of the C2ST subsampling and classifier (default: %(default)s)")
    c.set_defaults(func=_compare)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except XsbiError as exc:
        print(f"xsbi: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Command line: ``xsbi demo``, ``xsbi info``."""

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
    print(f"best fit C-stat {fit['cstat']:.1f} (expected {fit['expected_cstat']:.1f} +/- {fit['cstat_std']:.1f})")
    total = sum(summary["timings_s"].values())
    print(f"total {total:.1f} s; results in {out}/summary.json, posterior_samples.fits and the PNG plots")


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

    i = sub.add_parser("info", help="load a PHA file with its responses and background and summarise it")
    i.add_argument("spectrum", help="OGIP PHA file")
    i.add_argument("--energy", nargs=2, type=float, metavar=("EMIN", "EMAX"), help="notice this band (keV)")
    i.set_defaults(func=_info)
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

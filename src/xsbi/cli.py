"""Command line: ``xsbi demo``, ``xsbi info``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import XsbiError


def _demo(args) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), seed=args.seed, n_sims=args.simulations)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xsbi", description="X-ray spectral fitting with simulation-based inference.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser(
        "demo",
        help="simulate the built-in NICER-like tbabs*powerlaw spectrum and plot it (no files needed)",
        description="Simulate the reference tbabs*powerlaw spectrum (nH=0.2, PhoIndex=1.7, norm=1, ~2,000 counts) "
        "on a NICER-like instrument built in code, measure the simulator's speed, and write a plot and a "
        "record (versions, seed, settings, timings) to --out.",
    )
    d.add_argument("--out", default="xsbi-demo", help="output directory (default: %(default)s)")
    d.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    d.add_argument("--simulations", type=int, default=100_000, help="spectra simulated for the speed figure (default: %(default)s)")
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

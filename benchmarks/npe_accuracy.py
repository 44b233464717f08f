"""NPE posteriors against emcee on the exact likelihood, over several training seeds.

Prints, per parameter, the shift of the NPE median in units of the reference sigma and the width
ratio sigma_NPE / sigma_ref, for single-round NPE (count-window restricted prior, 20,000
simulations) on spectra faked with xsbi on the NICER set-up (grouped by 5, 0.3-10 keV).
Issue floors: |shift| <= 0.15 and ratio in [0.85, 1.15] (3 parameters).
Run: ``python benchmarks/npe_accuracy.py --counts 2000 --seeds 0 1 2 [--ensemble 1]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import xsbi
from xsbi.inference import NPE, CountsWindow, ParameterSpace, restrict_with_classifier
from xsbi.likelihood import PoissonLikelihood, run_mcmc

NICER = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nicer"
PRIORS = {"tbabs.nH": {"loguniform": [0.1, 0.3]}, "powerlaw.PhoIndex": {"uniform": [0.5, 2.5]},
          "powerlaw.norm": {"loguniform": [0.01, 100]}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--counts", choices=["2000", "20000", "200000"], default="2000")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--simulations", type=int, default=20000)
    ap.add_argument("--ensemble", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=50, help="hidden units per MADE layer")
    ap.add_argument("--transforms", type=int, default=5)
    ap.add_argument("--batch", type=int, default=200, help="training batch size")
    ap.add_argument("--patience", type=int, default=20, help="epochs without validation improvement before stopping")
    args = ap.parse_args(argv)
    name = f"Reference_pha_tbabs_powerlaw_{args.counts}counts_groupconstant_5.pha"
    if not (NICER / name).is_file():
        sys.exit(f"shared NICER data not found at {NICER}")
    torch.set_num_threads(2)
    setup = xsbi.load_spectrum(NICER / name).notice(0.3, 10.0)
    model = xsbi.Model("tbabs*powerlaw")
    prior = xsbi.JointPrior(model, PRIORS)
    sim = xsbi.Simulator(model, setup)
    obs = setup.with_counts(sim.sample([[0.2, 1.7, 1.0]], seed=42)[0].astype(np.int64))
    ref = run_mcmc(PoissonLikelihood(obs, model, prior), seed=0, progress=False).samples
    space = ParameterSpace(prior)
    restricted = restrict_with_classifier(sim, space, CountsWindow.around(obs.counts.sum()), seed=0, progress=False)
    theta = restricted.sample(args.simulations, seed=1)
    x = sim.sample(theta, seed=2)
    print(f"{int(obs.counts.sum())} counts; reference: emcee on the exact likelihood; shift (sigma) / width ratio")
    for seed in args.seeds:
        post = NPE(model, prior, obs, ensemble=args.ensemble, hidden_features=args.hidden,
                   num_transforms=args.transforms).append_simulations(theta, x).train(
            seed=seed, progress=False, training_batch_size=args.batch, stop_after_epochs=args.patience)
        s = post.sample(obs.counts, 20000, seed=seed)
        cells = []
        for i, n in enumerate(prior.names):
            sd = ref[:, i].std()
            cells.append(f"{n} {(np.median(s[:, i]) - np.median(ref[:, i])) / sd:+.2f}/{s[:, i].std() / sd:.2f}")
        print(f"seed {seed}: " + "  ".join(cells) + f"  ({post.meta['training']['train_seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

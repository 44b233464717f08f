"""The embedded demo: the seed paper's reference analysis on a NICER-like instrument built in code.

It fakes the reference ``tbabs*powerlaw`` spectrum (nH = 0.2, PhoIndex = 1.7, norm = 1, ~2,000
counts), writes it with its response as OGIP files and a YAML configuration into the output
directory (so the run can be repeated with ``xsbi run``), and runs the standard pipeline:
count-window restricted prior, single-round NPE, posterior, plots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from .data.writer import write_arf, write_pha, write_rmf
from .instruments import nicer_like_spectrum
from .models import Model
from .pipeline import run_analysis
from .simulate import Simulator

TRUTH = {"tbabs.nH": 0.2, "powerlaw.PhoIndex": 1.7, "powerlaw.norm": 1.0}
PRIORS = {
    "tbabs.nH": {"loguniform": [0.1, 0.3]},
    "powerlaw.PhoIndex": {"uniform": [0.5, 2.5]},
    "powerlaw.norm": {"loguniform": [0.01, 100.0]},
}
#: seconds giving ~2,000 counts in 0.3-10 keV for TRUTH on the built-in response
EXPOSURE = 1.25


def write_demo_data(out: Path, seed: int = 0) -> Path:
    """Fake the reference spectrum and write demo.pha/.rmf/.arf; return the PHA path."""
    out.mkdir(parents=True, exist_ok=True)
    spec = nicer_like_spectrum(exposure=EXPOSURE)
    model = Model("tbabs*powerlaw")
    counts = Simulator(model, spec).sample(np.array([[TRUTH[n] for n in model.parameter_names]]), seed=seed)[0]
    obs = spec.with_counts(counts.astype(np.int64))
    write_rmf(spec.rmf, out / "demo.rmf", overwrite=True)
    write_arf(spec.arf, out / "demo.arf", overwrite=True)
    return write_pha(obs, out / "demo.pha", respfile=out / "demo.rmf", ancrfile=out / "demo.arf", overwrite=True)


def run_demo(out: Path, seed: int = 0, simulations: int = 20_000, progress: bool = True) -> dict:
    out = Path(out)
    pha = write_demo_data(out, seed)
    config = {
        "data": {"spectrum": pha.name, "energy": [0.3, 10.0]},
        "model": "tbabs*powerlaw",
        "priors": PRIORS,
        "restriction": {"method": "counts"},
        "inference": {"method": "npe", "simulations": simulations, "posterior_samples": 20000},
        "seed": seed,
    }
    (out / "demo.yaml").write_text(
        "# The demo's analysis; rerun it with: xsbi run demo.yaml --out results\n" + yaml.safe_dump(config, sort_keys=False)
    )
    from .config import load_config

    summary = run_analysis(load_config(out / "demo.yaml"), out / "results", progress=progress)
    from .cli import _print_summary

    print("truth: " + ", ".join(f"{k} = {v:g}" for k, v in TRUTH.items()))
    _print_summary(summary, out / "results")
    return summary

"""examples/nicer_4u1820: the 4U 1820-30 walk-throughs (seed paper section 8) stay runnable.

Fast tests: the YAML configurations load and validate (paths resolve to the shared NICER files,
models and priors parse, nH and PhoIndex frozen in the burst), the run scripts are valid bash, and
the pure functions of burst_sequence.py give a photospheric-radius-expansion track whose faked
spectra have 400-5,000 counts.  One slow test runs ``burst_sequence.py --quick`` end to end.
Everything that reads ../shared/data/nicer skips with the reason when it is absent.
"""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xsbi.config import load_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "nicer_4u1820"
NICER = ROOT / ".." / "shared" / "data" / "nicer"
SCRIPT = EXAMPLE / "burst_sequence.py"


@pytest.fixture
def nicer() -> Path:
    if not (NICER / "b_008_0.25s_raw_opt.pha").is_file() or not (NICER / "pre_burst_spectrum_opt.pha").is_file():
        pytest.skip(f"NICER data of 4U 1820-30 not available: {NICER.resolve()} does not hold "
                    "pre_burst_spectrum_opt.pha and b_008_0.25s_raw_opt.pha")
    return NICER.resolve()


@pytest.fixture(scope="module")
def bs():
    """burst_sequence.py imported as a module (its pure functions)."""
    spec = importlib.util.spec_from_file_location("burst_sequence", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------ configurations
def test_pre_burst_config(nicer):
    cfg = load_config(EXAMPLE / "pre_burst.yaml")
    assert cfg.data.spectrum == nicer / "pre_burst_spectrum_opt.pha"
    assert cfg.data.spectrum.is_file()
    assert cfg.model.expression.replace(" ", "") == "tbabs*(powerlaw+bbodyrad)"
    # Table 1, model 2, uniform priors for every parameter (section 8.2)
    assert cfg.priors == {
        "tbabs.nH": {"uniform": [0.15, 0.35]},
        "powerlaw.PhoIndex": {"uniform": [1.0, 3.0]},
        "powerlaw.norm": {"uniform": [0.01, 10.0]},
        "bbodyrad.kT": {"uniform": [0.3, 3.0]},
        "bbodyrad.norm": {"uniform": [1.0, 1.0e5]},
    }
    prior = cfg.build_prior()
    assert list(prior.names) == ["tbabs.nH", "powerlaw.PhoIndex", "powerlaw.norm", "bbodyrad.kT", "bbodyrad.norm"]
    assert prior.model.frozen == {}
    assert cfg.restriction.method == "cstat" and cfg.restriction.fraction == 0.25
    assert cfg.inference.method == "npe" and cfg.inference.rounds == 3


def test_burst_config(nicer):
    cfg = load_config(EXAMPLE / "burst.yaml")
    assert cfg.data.spectrum == nicer / "b_008_0.25s_raw_opt.pha"
    assert cfg.data.spectrum.is_file()
    prior = cfg.build_prior()
    # Table 1, model 3: nH and PhoIndex frozen
    assert prior.model.frozen == {"tbabs.nH": 0.2, "powerlaw.PhoIndex": 1.7}
    assert list(prior.names) == ["powerlaw.norm", "bbodyrad.kT", "bbodyrad.norm"]
    assert cfg.priors["powerlaw.norm"] == {"loguniform": [0.1, 10.0]}
    assert cfg.priors["bbodyrad.kT"] == {"uniform": [0.1, 4.5]}
    assert cfg.priors["bbodyrad.norm"] == {"loguniform": [0.1, 1.0e5]}


@pytest.mark.parametrize("name", ["pre_burst.yaml", "burst.yaml"])
def test_configs_load_their_spectrum(nicer, name):
    """The header's RESPFILE/ANCRFILE resolve and the band keeps the bulk of the counts."""
    from xsbi.pipeline import load_observation

    cfg = load_config(EXAMPLE / name)
    spec = load_observation(cfg)
    assert spec.respfile and Path(spec.respfile).is_file()
    assert spec.ancrfile and Path(spec.ancrfile).is_file()
    assert spec.exposure == pytest.approx(124.66 if name == "pre_burst.yaml" else 0.25, rel=1e-3)
    total = 224_600 if name == "pre_burst.yaml" else 3_932
    assert 0.9 * total < spec.counts.sum() <= total


def test_method_overrides_validate(nicer):
    """What the run scripts ask for: every method on both configurations."""
    for name in ("pre_burst.yaml", "burst.yaml"):
        for method in ("npe", "snpe", "mcmc", "nested"):
            assert load_config(EXAMPLE / name, overrides={"inference.method": method}).inference.method == method


@pytest.mark.parametrize("name", ["run_pre_burst.sh", "run_burst.sh", "run_case.sh"])
def test_run_scripts_are_valid_bash(name):
    path = EXAMPLE / name
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    assert "compare" in text
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not available")
    subprocess.run([bash, "-n", str(path)], check=True)


def test_results_are_git_ignored():
    assert "results/" in (EXAMPLE / ".gitignore").read_text().split()


# ------------------------------------------------------------------------------ burst sequence
def test_light_curve_is_a_radius_expansion(bs):
    lc = bs.light_curve()
    n = 23
    for key in ("time", "kT", "norm", "radius_km", "pl_norm"):
        assert lc[key].shape == (n,)
    assert np.allclose(np.diff(lc["time"]), 0.25)
    assert np.allclose(lc["t_stop"] - lc["t_start"], 0.25)
    kT, norm = lc["kT"], lc["norm"]
    # kT falls to a minimum inside the burst and rises again; the norm does the opposite, step by step
    i = int(np.argmin(kT))
    assert 0 < i < n - 1 and int(np.argmax(norm)) == i
    assert np.all(np.diff(kT[: i + 1]) < 0) and np.all(np.diff(kT[i:]) > 0)
    assert np.all(np.sign(np.diff(kT)) == -np.sign(np.diff(norm)))
    assert 0.8 < kT.min() < 1.2 and 2.2 < kT.max() < 3.0
    assert np.allclose(lc["radius_km"], np.sqrt(norm) * 0.8)  # R = sqrt(norm) D / 10 kpc at 8 kpc
    assert np.ptp(lc["pl_norm"]) == 0
    # the truth in the model's parameter order
    theta = bs.truth_theta(lc, ["powerlaw.norm", "bbodyrad.kT", "bbodyrad.norm"])
    assert theta.shape == (n, 3) and np.allclose(theta[:, 1], kT)
    with pytest.raises(ValueError):
        bs.truth_theta(lc, ["tbabs.nH"])


def test_radius_and_summaries(bs):
    assert bs.radius_km(100.0) == pytest.approx(8.0)
    assert bs.radius_km(100.0, distance_kpc=10.0) == pytest.approx(10.0)
    s = bs.interval_summary(np.random.default_rng(0).normal(size=(20000, 1)), ["a"])["a"]
    assert s["median"] == pytest.approx(0.0, abs=0.03)
    assert s["q84"] - s["q16"] == pytest.approx(2.0, abs=0.06)
    assert bs.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)


def test_faked_spectra_counts(nicer, bs):
    cfg, prior, spec_full, spec = bs.load_setup()
    assert prior.model.frozen == {"tbabs.nH": 0.2, "powerlaw.PhoIndex": 1.7}
    theta = bs.truth_theta(bs.light_curve(), prior.names)
    counts_full = bs.fake_counts(prior.model, spec_full, theta, seed=100)
    assert counts_full.shape == (23, spec_full.n_bins)
    fakes = bs.noticed(spec_full, counts_full, spec)
    totals = np.array([s.counts.sum() for s in fakes])
    assert np.all((totals >= 400) & (totals <= 5000)), totals
    assert all(s.n_bins == spec.n_bins and s.exposure == spec.exposure for s in fakes)
    # the expected counts too, not just this draw
    import xsbi

    mu = xsbi.Simulator(prior.model, spec).expected_counts(theta).sum(axis=1)
    assert np.all((mu >= 450) & (mu <= 4700)), mu


def test_written_spectra_read_back(nicer, bs, tmp_path):
    """The PHA files the script writes load with their RMF/ARF and give the same grouped counts."""
    import xsbi
    from xsbi.data.preparation import prepare_spectrum, preparation_record

    cfg, prior, spec_full, spec = bs.load_setup()
    theta = bs.truth_theta(bs.light_curve(), prior.names)[:2]
    counts_full = bs.fake_counts(prior.model, spec_full, theta, seed=1)
    paths = bs.write_spectra(spec_full, counts_full, tmp_path / "spectra")
    assert [p.name for p in paths] == ["burst_01.pha", "burst_02.pha"]
    for path, c in zip(paths, counts_full):
        back = prepare_spectrum(xsbi.load_spectrum(path), preparation_record(cfg.data.group, cfg.data.energy))
        assert back.response_hash == spec.response_hash
        assert np.array_equal(back.counts, spec_full.with_counts(c).notice([tuple(r) for r in spec.notice_ranges]).counts)


@pytest.mark.slow
def test_burst_sequence_quick(nicer, tmp_path):
    """The whole walk-through at --quick settings: outputs exist and the kT track is recovered."""
    out = tmp_path / "seq"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--quick", "--quiet"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("summary.json", "table.csv", "table.md", "burst_sequence.png", "prior_predictive.png",
                 "network.pt", "batch.csv", "batch.fits"):
        assert (out / name).is_file(), name
    assert len(list((out / "spectra").glob("burst_*.pha"))) == 23
    summary = json.loads((out / "summary.json").read_text())
    assert summary["spectra"]["n"] == 23
    assert all(400 <= c <= 5000 for c in summary["spectra"]["counts"])
    rec = summary["recovery"]
    assert rec["bbodyrad.kT"]["pearson_npe"] > 0.8
    assert rec["bbodyrad.norm"]["pearson_npe"] > 0.8
    assert rec["bbodyrad.kT"]["pearson_fit"] > 0.8
    assert summary["real_b008"]["compatible"]
    # the saved network serves `xsbi batch`: every faked file and the real b_008 are fitted
    lines = (out / "batch.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 24 and all(",ok," in line for line in lines[1:])
    from xsbi.inference import AmortizedPosterior

    posterior = AmortizedPosterior.load(out / "network.pt")
    assert posterior.names == ["powerlaw.norm", "bbodyrad.kT", "bbodyrad.norm"]

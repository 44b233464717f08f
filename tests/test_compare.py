"""`xsbi compare`: shifts, widths and C2ST between runs, the files it writes, and its errors."""

import json

import numpy as np
import pytest
from astropy.io import fits
from test_pipeline import config, demo_pha  # noqa: F401  (demo_pha is a fixture)

from xsbi.cli import main
from xsbi.diagnostics import c2st_score, compare_runs, load_run, load_runs, write_comparison
from xsbi.errors import XsbiError
from xsbi.pipeline import run_analysis

NAMES = ["tbabs.nH", "powerlaw.PhoIndex", "powerlaw.norm"]
SPECTRUM = {"path": "/data/obs.pha", "n_bins": 100, "counts": 2000, "exposure_s": 1000.0,
            "energy_range_keV": [0.3, 10.0], "background": False}
PNG = b"\x89PNG\r\n\x1a\n"


def fake_run(path, samples, method, spectrum=None, names=NAMES):
    """A run directory as `xsbi run` writes it (summary.json + posterior_samples.fits), no config."""
    path.mkdir(parents=True)
    cols = [fits.Column(name=n, format="D", array=samples[:, i]) for i, n in enumerate(names)]
    hdu = fits.BinTableHDU.from_columns(cols, name="POSTERIOR")
    hdu.header["METHOD"] = method
    hdu.writeto(path / "posterior_samples.fits")
    q16, med, q84 = np.quantile(samples, [0.16, 0.5, 0.84], axis=0)
    summary = {"method": method, "seed": 0, "spectrum": {**SPECTRUM, **(spectrum or {})},
               "priors": {n: {"uniform": [-10.0, 10.0]} for n in names},
               "parameters": {n: {"median": med[i], "q16": q16[i], "q84": q84[i]} for i, n in enumerate(names)},
               "best_fit": {"parameters": dict(zip(names, med)), "statistic": 101.0, "cstat": 101.0,
                            "expected_cstat": 98.0, "cstat_std": 14.0},
               "timings_s": {"load": 0.5, "fit": 2.0}}
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def gaussian(n, mean, sd, seed):
    return np.random.default_rng(seed).normal(mean, sd, size=(n, len(mean)))


MEAN, SD = np.array([1.0, 2.0, 0.5]), np.array([0.1, 0.2, 0.05])


def test_shift_and_width_ratio_of_known_gaussians(tmp_path):
    shift = np.array([0.5, -1.0, 0.0])
    scale = np.array([1.0, 1.2, 0.8])
    n = 20_000
    ref = fake_run(tmp_path / "ref", gaussian(n, MEAN, SD, 1), "mcmc")
    other = fake_run(tmp_path / "other", gaussian(n, MEAN + shift * SD, SD * scale, 2), "npe")
    runs = load_runs([ref, other])
    assert [r.label for r in runs] == ["mcmc", "npe"] and runs[0].names == NAMES
    res = compare_runs(runs, c2st_samples=0)
    assert res["reference"] == "mcmc" and res["c2st"] == {"mcmc": None, "npe": None}
    # sampling error of a median difference ~ 1.25 sqrt(2/n) sigma ~ 0.013; of a width ratio ~ 0.01
    for j, name in enumerate(NAMES):
        p = res["parameters"][name]
        assert p["mcmc"]["shift"] == 0 and p["mcmc"]["width_ratio"] == 1
        assert p["npe"]["shift"] == pytest.approx(shift[j], abs=0.05)
        assert p["npe"]["width_ratio"] == pytest.approx(scale[j], abs=0.04)
        assert p["npe"]["sigma"] == pytest.approx(SD[j] * scale[j], rel=0.04)
    assert not res["verdicts"]["npe"]["agrees"]
    assert "tbabs.nH" in res["verdicts"]["npe"]["text"] and "powerlaw.PhoIndex" in res["verdicts"]["npe"]["text"]

    # the reference may be chosen; a run compared with a copy of itself agrees
    same = fake_run(tmp_path / "same", gaussian(n, MEAN, SD, 3), "nested")
    res = compare_runs(load_runs([other, ref, same], reference=ref), c2st_samples=0)
    assert res["reference"] == "mcmc" and res["labels"] == ["mcmc", "npe", "nested"]
    assert res["verdicts"]["nested"]["agrees"]
    assert res["verdicts"]["nested"]["text"].startswith("nested agrees with mcmc")


def test_c2st_same_and_separated_distributions():
    a, b = gaussian(3000, MEAN, SD, 1), gaussian(3000, MEAN, SD, 2)
    assert c2st_score(a, b, max_samples=2000, seed=0) == pytest.approx(0.5, abs=0.06)
    far = gaussian(3000, MEAN + 5 * SD, SD, 3)
    assert c2st_score(a, far, max_samples=2000, seed=0) > 0.95
    # log10 columns: a log-normal pair that is the same distribution stays indistinguishable
    assert c2st_score(np.exp(a), np.exp(b), max_samples=1000, seed=0, log_columns=[0, 2]) == pytest.approx(0.5, abs=0.07)


def test_c2st_is_not_fooled_by_repeated_samples():
    # equally weighted samples that repeat points (importance resampling, nested sampling) from the
    # same distribution as the reference: the random forest would recognise points seen in training
    rng = np.random.default_rng(5)
    ref = rng.standard_normal((3000, 3))
    pool = rng.standard_normal((800, 3))
    resampled = pool[rng.integers(0, len(pool), 3000)]
    assert len(np.unique(resampled, axis=0)) < 800
    assert c2st_score(ref, resampled, max_samples=3000, seed=0) == pytest.approx(0.5, abs=0.06)


def test_write_comparison_without_config_skips_only_the_spectrum(tmp_path):
    runs = load_runs([fake_run(tmp_path / "a", gaussian(2000, MEAN, SD, 1), "mcmc"),
                      fake_run(tmp_path / "b", gaussian(2000, MEAN, SD, 2), "mcmc")])
    assert [r.label for r in runs] == ["mcmc (a)", "mcmc (b)"]  # same method: told apart by directory
    with pytest.warns(UserWarning, match="compare_spectrum.png not written"):
        res = write_comparison(runs, tmp_path / "out", c2st_samples=500)
    assert res["plots"]["spectrum"] is None and (tmp_path / "out" / "compare_corner.png").read_bytes()[:8] == PNG
    assert json.loads((tmp_path / "out" / "compare.json").read_text())["runs"]["mcmc (b)"]["wall_time_s"] == 2.5
    assert "| mcmc (b) |" in (tmp_path / "out" / "compare.md").read_text()


@pytest.fixture(scope="module")
def likelihood_runs(demo_pha, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for method in ("cstat", "mcmc"):
        run_analysis({**config(demo_pha), "plots": False}, root / method, method=method, progress=False)
        out[method] = root / method
    return out


def test_cli_compare_mcmc_and_cstat_end_to_end(likelihood_runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(likelihood_runs["mcmc"]), str(likelihood_runs["cstat"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "powerlaw.PhoIndex" in printed and "C2ST" in printed and "compare.json" in printed
    for png in ("compare_corner.png", "compare_spectrum.png"):
        assert (out / png).read_bytes()[:8] == PNG
    res = json.loads((out / "compare.json").read_text())
    assert res["reference"] == "mcmc" and res["labels"] == ["mcmc", "cstat"]
    assert res["c2st_log10"] == ["tbabs.nH", "powerlaw.norm"]
    for name in NAMES:
        p = res["parameters"][name]["cstat"]
        assert abs(p["shift"]) < 0.3 and 0.8 < p["width_ratio"] < 1.2
    assert 0.4 < res["c2st"]["cstat"] < 0.7
    summary = json.loads((likelihood_runs["cstat"] / "summary.json").read_text())
    assert res["runs"]["cstat"]["best_fit_cstat"] == pytest.approx(summary["best_fit"]["cstat"])
    md = (out / "compare.md").read_text()
    assert "shift (ref sigma)" in md and "best-fit C-stat" in md and "wall time" in md
    assert "cstat agrees with mcmc" in md or "cstat disagrees with mcmc" in md

    # --reference among the directories, --labels in the order of the directories, no C2ST
    out2 = tmp_path / "cmp2"
    assert main(["compare", str(likelihood_runs["cstat"]), str(likelihood_runs["mcmc"]), "--reference",
                 str(likelihood_runs["mcmc"]), "--labels", "fit", "chains", "--c2st-samples", "0",
                 "--out", str(out2)]) == 0
    res2 = json.loads((out2 / "compare.json").read_text())
    assert res2["reference"] == "chains" and res2["labels"] == ["chains", "fit"] and res2["c2st"]["fit"] is None
    assert res2["parameters"]["tbabs.nH"]["fit"]["shift"] == pytest.approx(res["parameters"]["tbabs.nH"]["cstat"]["shift"])


def test_clear_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    good = fake_run(tmp_path / "good", gaussian(500, MEAN, SD, 1), "mcmc")
    assert main(["compare", str(good), str(empty), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "summary.json is missing" in err and str(empty) in err and "xsbi run" in err
    with pytest.raises(XsbiError, match="does not exist"):
        load_run(tmp_path / "nowhere")
    (empty / "summary.json").write_text("{}")
    with pytest.raises(XsbiError, match="posterior_samples.fits is missing"):
        load_run(empty)

    other = fake_run(tmp_path / "other", gaussian(500, MEAN, SD, 2), "npe",
                     spectrum={"path": "/data/other.pha", "counts": 2500})
    with pytest.raises(XsbiError, match="different spectra") as exc:
        load_runs([good, other])
    assert "path" in str(exc.value) and "counts 2000 vs 2500" in str(exc.value) and "n_bins" not in str(exc.value)

    bb = fake_run(tmp_path / "bb", gaussian(500, MEAN, SD, 3), "npe",
                  names=["tbabs.nH", "bbodyrad.kT", "bbodyrad.norm"])
    with pytest.raises(XsbiError, match="different free parameters") as exc:
        load_runs([good, bb])
    assert "bbodyrad.kT" in str(exc.value) and "powerlaw.PhoIndex" in str(exc.value)
    assert main(["compare", str(good), "--out", str(tmp_path / "o")]) == 2
    assert "at least two runs" in capsys.readouterr().err
    assert main(["compare", str(good), str(good), "--labels", "x", "--out", str(tmp_path / "o")]) == 2
    assert "labels" in capsys.readouterr().err

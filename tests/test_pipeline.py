"""`xsbi run` and `xsbi demo` end to end on the built-in instrument (small, fast settings)."""

import json

import numpy as np
import pytest
from astropy.table import Table

import xsbi
from xsbi.cli import main
from xsbi.demo import write_demo_data
from xsbi.inference import AmortizedPosterior
from xsbi.pipeline import run_analysis

PRIORS = {"tbabs.nH": {"loguniform": [0.1, 0.3]}, "powerlaw.PhoIndex": {"uniform": [0.5, 2.5]},
          "powerlaw.norm": {"loguniform": [0.01, 100]}}


@pytest.fixture(scope="module")
def demo_pha(tmp_path_factory):
    return write_demo_data(tmp_path_factory.mktemp("demo"), seed=0)


def config(pha, **inference):
    return {"data": {"spectrum": str(pha)}, "model": "tbabs*powerlaw", "priors": PRIORS,
            "restriction": {"rounds": 4, "simulations": 1000},
            "inference": {"simulations": 2000, "hidden_features": 20, "num_transforms": 2, "max_epochs": 40,
                          "posterior_samples": 4000, "test_spectra": 20, **inference}, "seed": 3}


def test_run_npe_writes_summary_samples_network_and_plots(demo_pha, tmp_path):
    out = tmp_path / "npe"
    run_analysis(config(demo_pha), out, progress=False)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["parameters"].keys() == {"tbabs.nH", "powerlaw.PhoIndex", "powerlaw.norm"}
    for s in on_disk["parameters"].values():
        assert s["q16"] <= s["median"] <= s["q84"] and s["std"] > 0
    # the demo spectrum was faked at PhoIndex 1.7: the posterior must contain it
    ph = on_disk["parameters"]["powerlaw.PhoIndex"]
    assert abs(ph["median"] - 1.7) < 4 * ph["std"]
    assert on_disk["importance_sampling"]["ess"] > 100 and "npe_parameters" in on_disk
    assert on_disk["best_fit"]["cstat"] == pytest.approx(on_disk["best_fit"]["statistic"])
    assert abs(on_disk["best_fit"]["cstat_z"]) < 4
    assert on_disk["prior_predictive"]["covered"]
    assert on_disk["restriction"]["rounds"][-1]["good_fraction"] >= 0.5
    assert set(on_disk["timings_s"]) >= {"restriction", "train", "sample", "importance_sampling"}
    assert on_disk["config"]["inference"]["simulations"] == 2000 and on_disk["versions"]["torch"]
    table = Table.read(out / "posterior_samples.fits")
    assert table.colnames == ["tbabs.nH", "powerlaw.PhoIndex", "powerlaw.norm"] and len(table) == 4000
    assert np.median(table["powerlaw.PhoIndex"]) == pytest.approx(ph["median"])
    for png in ("corner", "spectrum", "prior_restricted", "prior_predictive", "test_regression"):
        assert (out / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    post = AmortizedPosterior.load(out / "network.pt")
    assert post.sample(xsbi.load_spectrum(demo_pha).notice(0.3, 10.0), 10, seed=0).shape == (10, 3)


def test_cli_run_likelihood_methods_and_errors(demo_pha, tmp_path, capsys):
    import yaml

    cfg = tmp_path / "a.yaml"
    cfg.write_text(yaml.safe_dump(config(demo_pha)))
    assert main(["run", str(cfg), "--out", str(tmp_path / "fit"), "--method", "cstat", "--quiet"]) == 0
    fit = json.loads((tmp_path / "fit" / "summary.json").read_text())
    assert fit["method"] == "cstat" and fit["fit"]["parameters"]["powerlaw.PhoIndex"]["error"] > 0
    assert "powerlaw.PhoIndex" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {spectrum: nowhere.pha}\nmodel: tbabs*powerlaw\npriors: {tbabs.nH: {uniform: [1, 0]}}\n")
    assert main(["run", str(bad), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "data.spectrum" in err and "priors" in err

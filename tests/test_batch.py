"""`xsbi batch`: a saved network applied to many PHA files (and to in-memory spectra)."""

import math

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Table

import xsbi
from xsbi.batch import cstat_moments, run_batch, run_batch_counts, table_columns, table_paths
from xsbi.cli import main
from xsbi.data.preparation import describe, prepare_spectrum, preparation_record
from xsbi.data.writer import write_arf, write_pha, write_rmf
from xsbi.errors import DataError
from xsbi.inference import AmortizedPosterior, PosteriorResult
from xsbi.inference.npe import NPE
from xsbi.instruments import nicer_like_spectrum

PRIORS = {"tbabs.nH": {"loguniform": [0.1, 0.3]}, "powerlaw.PhoIndex": {"uniform": [0.5, 2.5]},
          "powerlaw.norm": {"loguniform": [0.33, 3.0]}}
TRUTHS = [[0.2, 1.7, 1.0], [0.15, 2.0, 0.6], [0.25, 1.3, 2.0], [0.12, 1.9, 1.5]]
NAMES = ["tbabs.nH", "powerlaw.PhoIndex", "powerlaw.norm"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Files on disk sharing one RMF/ARF, and a small network trained on that set-up."""
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("batch")
    base = nicer_like_spectrum(exposure=1.25)
    write_rmf(base.rmf, d / "a.rmf")
    write_arf(base.arf, d / "a.arf")
    model = xsbi.Model("tbabs*powerlaw")
    sim = xsbi.Simulator(model, base)
    x = sim.sample(np.asarray(TRUTHS), seed=1).astype(np.int64)
    ok = []
    for i, c in enumerate(x):
        ok.append(write_pha(base.with_counts(c), d / f"ok_{i}.pha", respfile=d / "a.rmf", ancrfile=d / "a.arf"))
    # the network is trained on the set-up as read back from the files (float32 response)
    spec = xsbi.load_spectrum(ok[0]).notice(0.3, 10.0)
    prior = xsbi.JointPrior(model, PRIORS)
    fsim = xsbi.Simulator(model, spec)
    theta = prior.sample(4000, seed=2)
    post = NPE(model, prior, spec, hidden_features=20, num_transforms=2).append_simulations(
        theta, fsim.sample(theta, seed=3)).train(seed=0, progress=False, max_epochs=60)
    net = post.save(d / "network.pt")
    return {"dir": d, "ok": ok, "counts": x, "spec": spec, "network": net, "posterior": post, "model": model}


def _other_files(s):
    """Spectra the network was not trained for, and broken files."""
    d, c0 = s["dir"], s["counts"][0]
    base = nicer_like_spectrum(exposure=1.25)
    exp5 = write_pha(base.with_counts(c0), d / "exposure5.pha", respfile=d / "a.rmf", ancrfile=d / "a.arf",
                     overwrite=True)
    fits.setval(exp5, "EXPOSURE", value=5.0, ext=1)
    # the same counts, channel by channel, without the grouping: 1,501 bins instead of 194
    raw = xsbi.load_spectrum(s["ok"][0]).ungroup()
    ungrouped = write_pha(raw, d / "ungrouped.pha", counts=base.with_counts(c0).channel_counts,
                          respfile=d / "a.rmf", ancrfile=d / "a.arf", overwrite=True)
    arf = base.arf
    write_arf(type(arf)(arf.energ_lo, arf.energ_hi, 0.9 * arf.specresp), d / "b.arf", overwrite=True)
    other_arf = write_pha(base.with_counts(c0), d / "other_arf.pha", respfile=d / "a.rmf", ancrfile=d / "b.arf",
                          overwrite=True)
    corrupt = d / "corrupt.pha"
    corrupt.write_text("SIMPLE  = this is not a FITS file\n")
    return {"exposure": exp5, "ungrouped": ungrouped, "other_arf": other_arf, "corrupt": corrupt,
            "missing": d / "missing.pha"}


def test_cli_batch_rows_reasons_csv_fits_and_one_response_load(setup, monkeypatch, capsys):
    import xsbi.data.response as response

    s = setup
    d = s["dir"]
    other = _other_files(s)
    reads = {"rmf": 0}
    real = response.read_rmf

    def counting(path):
        reads["rmf"] += 1
        return real(path)

    monkeypatch.setattr(response, "read_rmf", counting)
    args = ["batch", str(s["network"]), str(d / "ok_*.pha"), str(other["exposure"]), str(other["ungrouped"]),
            str(other["other_arf"]), str(other["corrupt"]), str(other["missing"]), str(s["ok"][1]),
            "--out", str(d / "table.csv"), "--quiet", "--samples", "2000"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "5 ok, 5 skipped" in out and "exposure differs" in out and "table.fits" in out
    assert reads["rmf"] == 1  # one RMF for ten files
    csv_t, fits_t = Table.read(d / "table.csv", format="ascii.csv"), Table.read(d / "table.fits")
    assert csv_t.colnames == fits_t.colnames == table_columns(NAMES)
    files = [str(p) for p in s["ok"]] + [str(other[k]) for k in
                                         ("exposure", "ungrouped", "other_arf", "corrupt", "missing")] + [str(s["ok"][1])]
    assert list(csv_t["file"]) == files and [str(f).strip() for f in fits_t["file"]] == files  # input order
    # the CSV and the FITS table hold the same numbers and strings
    for c in csv_t.colnames:
        a, b = csv_t[c], fits_t[c]
        if a.dtype.kind in "fi" or b.dtype.kind in "fi":
            fa = np.ma.filled(np.ma.asarray(a, dtype=float), np.nan)
            fb = np.ma.filled(np.ma.asarray(b, dtype=float), np.nan)
            np.testing.assert_array_equal(fa, fb, err_msg=c)
        else:
            sa = [("" if v is np.ma.masked else str(v)) for v in a]
            sb = [("" if v is np.ma.masked else str(v)) for v in b]
            assert sa == sb, c
    status = list(csv_t["status"])
    assert status == ["ok"] * 4 + ["skipped"] * 5 + ["ok"]
    reason = {f: ("" if r is np.ma.masked else str(r)) for f, r in zip(files, csv_t["reason"])}
    assert "exposure 5 s, network trained for 1.25 s" in reason[str(other["exposure"])]
    assert "bins" in reason[str(other["ungrouped"])]
    assert "response" in reason[str(other["other_arf"])]
    assert "FITS" in reason[str(other["corrupt"])]
    assert "not found" in reason[str(other["missing"])]
    # recovered parameters: the truth within a few posterior sigma, C-stat consistent with the model
    for i, truth in enumerate(TRUTHS):
        row = csv_t[i]
        assert row["counts"] == int(s["counts"][i].sum()) and row["exposure"] == pytest.approx(1.25)
        for name, t in zip(NAMES, truth):
            med, lo, hi = row[f"{name}_median"], row[f"{name}_q16"], row[f"{name}_q84"]
            assert lo < med < hi
            assert abs(med - t) < 4 * (hi - lo) / 2, (i, name, med, t)
        assert abs(row["cstat_sigma"]) < 5
        assert row["cstat_sigma"] == pytest.approx((row["cstat"] - row["expected_cstat"]) / row["cstat_std"])
    # the same spectrum at two positions: same data, independent draws, same summary within noise
    a, b = csv_t[1], csv_t[9]
    for name in NAMES:
        assert abs(a[f"{name}_median"] - b[f"{name}_median"]) < 0.2 * (a[f"{name}_q84"] - a[f"{name}_q16"])
    assert fits.getheader(d / "table.fits", "BATCH")["NOK"] == 5


def test_best_fit_is_the_draw_with_the_lowest_cstat(setup):
    """The batch's best fit and C-stat against the expected value are those of `xsbi run`."""
    from xsbi.batch import _Engine, cstat_moments

    s = setup
    post, spec, model = s["posterior"], s["spec"], s["model"]
    engine = _Engine(post, 1000, 0)
    items = [engine.item_from_spectrum(i, str(p), xsbi.load_spectrum(p)) for i, p in enumerate(s["ok"][:2])]
    assert all(it.reason is None for it in items)
    theta = np.stack([post.sample(it.counts, 1000, seed=i) for i, it in enumerate(items)])
    fit = engine.best_fit(items, theta)
    for i, it in enumerate(items):
        ref = PosteriorResult.from_samples(theta[i], post.names, it.spectrum, model, "npe").fit
        assert fit[0, i] == pytest.approx(ref["cstat"], rel=1e-9)
        assert fit[1, i] == pytest.approx(ref["expected_cstat"], rel=1e-6)
        assert fit[2, i] == pytest.approx(ref["cstat_std"], rel=1e-6)
        assert fit[3, i] == pytest.approx(ref["cstat_z"], abs=1e-5)
    # the tabulated Kaastra moments agree with the exact sums over four decades and beyond
    from xsbi.stats import cstat_variance, expected_cstat

    mu = 10 ** np.random.default_rng(0).uniform(-8, 4, (3, 500))
    e, sd = cstat_moments(mu)
    np.testing.assert_allclose(e, expected_cstat(mu), rtol=1e-6)
    np.testing.assert_allclose(sd, np.sqrt(cstat_variance(mu)), rtol=1e-6)


def test_recorded_preparation_regroups_new_files_and_old_networks_load(setup, tmp_path):
    s = setup
    other = _other_files(s)
    post = AmortizedPosterior.load(s["network"])
    # NPE records the training spectrum's preparation: the file's grouping and the band
    assert post.preparation == {"group": {"method": "file"}, "notice_ranges": [[0.3, 10.0]]}
    assert describe(post.preparation) == "the file's grouping, 0.3-10 keV"
    # a network whose training spectrum was grouped by xsbi (`xsbi run` with data.group) groups
    # new files the same way: the ungrouped file then gives the grouped file's bins and counts
    post.meta["preparation"] = preparation_record({"method": "constant", "n": 5}, (0.3, 10.0))
    grouped = post.save(tmp_path / "grouped.pt")
    r1 = run_batch(grouped, [other["ungrouped"]], None, n_samples=500, progress=False)
    r0 = run_batch(s["network"], [s["ok"][0]], None, n_samples=500, progress=False)
    assert r1.ok == r0.ok == 1
    np.testing.assert_allclose(r1.rows[0][3:], r0.rows[0][3:], rtol=1e-9)  # same counts, seed, position
    prepared = prepare_spectrum(xsbi.load_spectrum(other["ungrouped"]), post.meta["preparation"])
    np.testing.assert_array_equal(prepared.counts, s["counts"][0])
    # networks saved before the preparation was recorded: the file's grouping, the trained band
    del post.meta["preparation"]
    old = post.save(tmp_path / "old.pt")
    loaded = AmortizedPosterior.load(old)
    assert loaded.preparation == {"group": {"method": "file"}, "notice_ranges": [[0.3, 10.0]]}
    r2 = run_batch(old, [s["ok"][0], other["ungrouped"]], None, n_samples=500, progress=False)
    assert [row[1] for row in r2.rows] == ["ok", "skipped"]
    np.testing.assert_allclose(r2.rows[0][3:], r0.rows[0][3:], rtol=1e-9)
    # `xsbi run` prepares its observation with the same record (data.group)
    from xsbi.config import load_config
    from xsbi.pipeline import load_observation

    cfg = load_config({"data": {"spectrum": str(other["ungrouped"]), "group": {"constant": 5}},
                       "model": "tbabs*powerlaw", "priors": PRIORS})
    obs = load_observation(cfg)
    assert obs.n_bins == s["spec"].n_bins and np.array_equal(obs.energy_bounds, s["spec"].energy_bounds)


def test_in_memory_counts_workers_and_table_paths(setup, tmp_path, monkeypatch):
    s = setup
    post, spec = s["posterior"], s["spec"]
    x = xsbi.Simulator(s["model"], spec).sample(np.repeat([TRUTHS[0]], 40, axis=0), seed=5)
    counts = list(x) + [np.ones(10), -np.ones(spec.n_bins)]  # wrong length, negative: skipped rows
    r1 = run_batch_counts(post, counts, spec, out=tmp_path / "mem.fits", n_samples=300, workers=1, batch_size=8)
    r2 = run_batch_counts(post, iter(counts), spec, n_samples=300, workers=2, batch_size=8)
    assert (r1.ok, r1.skipped) == (r2.ok, r2.skipped) == (40, 2)
    assert r1.reasons == {"binning or band differs": 1, "invalid counts": 1}
    t = Table.read(tmp_path / "mem.csv", format="ascii.csv")
    assert list(t["file"][:3]) == ["#0", "#1", "#2"] and len(t) == 42
    np.testing.assert_allclose(np.asarray(t["powerlaw.PhoIndex_median"][:40], dtype=float),
                               [row[8] for row in r2.rows[:40]], rtol=1e-4)  # float32 rounding only
    med = np.asarray(t["powerlaw.PhoIndex_median"][:40], dtype=float)
    assert abs(np.mean(med) - 1.7) < 0.15  # 40 spectra of the same source
    assert table_paths("a/b") == table_paths("a/b.csv") == table_paths("a/b.fits")
    assert [p.name for p in table_paths("a/b.v2.fits")] == ["b.v2.csv", "b.v2.fits"]
    with pytest.raises(DataError, match="exposure"):
        run_batch_counts(post, counts[:1], nicer_like_spectrum(exposure=5.0))
    assert math.isnan(r2.rows[-1][5]) and r2.rows[-1][1] == "skipped"
    # a spectrum for which the network puts (almost) nothing inside the prior is skipped, not fatal:
    # here the prior box is moved away from every draw
    lo, hi = post.space.bounds_phi()
    monkeypatch.setattr(post.space, "bounds_phi", lambda: (lo + 100, hi + 100))
    r3 = run_batch_counts(post, counts[:3], spec, n_samples=50)
    assert r3.reasons == {"outside the trained prior": 3} and "almost no probability" in r3.rows[0][2]


def test_worker_processes_give_the_rows_of_one_process_in_input_order(setup, tmp_path, monkeypatch):
    """Blocks spread over forked workers: the same rows as one process, in input order, each
    response read once; a worker's failure ends the run with its error instead of hanging."""
    import xsbi.batch as batch

    s = setup
    if not batch._use_processes(2):
        pytest.skip("worker processes need fork (Linux); elsewhere the threads of the other tests run")
    paths = [s["ok"][i % 4] for i in range(13)]
    paths.insert(9, s["dir"] / "missing.pha")  # a skipped row inside a worker's block
    one = run_batch(s["network"], paths, None, n_samples=400, progress=False, workers=1, batch_size=3)
    two = run_batch(s["network"], iter(paths), tmp_path / "t", n_samples=400, progress=False, workers=2,
                    batch_size=3)
    assert (two.ok, two.skipped) == (one.ok, one.skipped) == (13, 1) and two.reasons == {"file not found": 1}
    assert two.response_loads == {"rmf": 1, "arf": 1}  # the workers inherit the responses read first
    t = Table.read(tmp_path / "t.csv", format="ascii.csv")
    assert list(t["file"]) == [str(p) for p in paths] and t["status"][9] == "skipped"
    for r1, r2 in zip(one.rows, t):
        assert r1[0] == r2["file"]
        if r1[1] == "ok":  # float32 kernels on one or two threads: rounding only
            np.testing.assert_allclose(r1[5:], [r2[c] for c in t.colnames[5:]], rtol=2e-4)
    # in memory, the same through processes as in one process
    x = list(s["counts"]) * 5
    mem = [run_batch_counts(s["posterior"], x, s["spec"], n_samples=300, workers=w, batch_size=4) for w in (1, 2)]
    np.testing.assert_allclose([r[5:] for r in mem[0].rows], [r[5:] for r in mem[1].rows], rtol=2e-4)
    # where fork is unavailable (macOS, Windows): threads and a reader thread, the same rows
    monkeypatch.setattr(batch, "_use_processes", lambda workers: False)
    threads = run_batch(s["network"], paths, None, n_samples=400, progress=False, workers=2, batch_size=3)
    assert [r[:2] for r in threads.rows] == [r[:2] for r in one.rows]
    assert threads.response_loads == {"rmf": 1, "arf": 1}
    for r1, r2 in zip(one.rows, threads.rows):
        if r1[1] == "ok":
            np.testing.assert_allclose(r1[5:], r2[5:], rtol=2e-4)
    monkeypatch.undo()

    def broken(self, block):
        if block[0].index >= 6:
            raise RuntimeError("worker failure for the test")
        return real(self, block)

    real = batch._Engine.process
    monkeypatch.setattr(batch._Engine, "process", broken)  # inherited by the forked workers
    with pytest.raises(RuntimeError, match="worker failure for the test"):
        run_batch(s["network"], paths, None, n_samples=100, progress=False, workers=2, batch_size=3)


def test_importance_reweighting_gives_the_mcmc_posterior(setup, tmp_path, capsys):
    """--importance: the small test network is off by up to a sigma on these spectra; its draws
    reweighted by the exact likelihood give emcee's quantiles."""
    from xsbi.likelihood.poisson import weighted_quantiles
    from xsbi.likelihood import PoissonLikelihood, run_mcmc

    s = setup
    model, rough = s["model"], s["network"]
    prior = xsbi.JointPrior(model, PRIORS)
    files = [s["ok"][0], s["ok"][1]]
    raw = run_batch(rough, files, None, n_samples=3000, progress=False, workers=1)
    r = run_batch(rough, files, tmp_path / "is", n_samples=3000, progress=False, workers=1, importance=True)
    t = Table.read(tmp_path / "is.csv", format="ascii.csv")
    assert t.colnames == table_columns(NAMES, importance=True) and t.colnames[-1] == "is_efficiency"
    assert fits.getheader(tmp_path / "is.fits", "BATCH")["IMPORTNC"] is True
    worst_raw = worst_is = 0.0
    for i, f in enumerate(files):
        ref = run_mcmc(PoissonLikelihood(xsbi.load_spectrum(f).notice(0.3, 10.0), model, prior), seed=i,
                       progress=False).samples
        lo, med, hi = np.quantile(ref, [0.16, 0.5, 0.84], axis=0)
        sd = (hi - lo) / 2
        assert 0.05 < t["is_efficiency"][i] <= 1.0
        for j, name in enumerate(NAMES):
            shift = abs(t[f"{name}_median"][i] - med[j]) / sd[j]
            width = (t[f"{name}_q84"][i] - t[f"{name}_q16"][i]) / (hi[j] - lo[j])
            assert shift < 0.2 and 0.8 < width < 1.2, (f, name, shift, width)
            worst_is = max(worst_is, shift)
            worst_raw = max(worst_raw, abs(raw.rows[i][5 + 3 * j] - med[j]) / sd[j])
    assert worst_raw > 2 * worst_is  # the reweighting did the work, not the rough network
    assert r.ok == 2 and r.columns == t.colnames
    # the command line: --importance adds the column, --workers must be a positive count
    assert main(["batch", str(rough), str(files[0]), "--out", str(tmp_path / "cli"), "--importance", "--workers",
                 "1", "--samples", "500", "--quiet"]) == 0
    assert Table.read(tmp_path / "cli.csv", format="ascii.csv").colnames[-1] == "is_efficiency"
    assert main(["batch", str(rough), str(files[0]), "--out", str(tmp_path / "cli0"), "--workers", "0"]) == 2
    assert "workers must be at least 1" in capsys.readouterr().err
    # no draw with a finite posterior density (here: a prior that is zero everywhere): a skipped row
    post = AmortizedPosterior.load(rough)
    post.space.prior.log_prob = lambda theta: np.full(np.shape(theta)[0], -np.inf)
    bad = run_batch(post, files[:1], None, n_samples=200, progress=False, workers=1, importance=True)
    assert bad.reasons == {"importance sampling failed": 1} and bad.rows[0][1] == "skipped"
    # weighted quantiles: equal weights give numpy's 'hazen' quantiles; zero weights drop out
    x, qs = np.random.default_rng(0).normal(size=(101, 2)), [0.16, 0.5, 0.84]
    np.testing.assert_allclose(weighted_quantiles(x, np.ones(101), qs), np.quantile(x, qs, axis=0, method="hazen"))
    w = np.r_[np.ones(50), np.zeros(51)]
    np.testing.assert_allclose(weighted_quantiles(x, w, qs), np.quantile(x[:50], qs, axis=0, method="hazen"))


def test_background_network_reads_backfile_and_picks_the_lowest_wstat(tmp_path):
    from xsbi.data import Spectrum
    from xsbi.instruments.nicer_like import N_CHANNELS, nicer_like_response
    from xsbi.simulate import PoissonBackground, SourceAndBackground

    from xsbi.batch import _Engine

    rmf, arf = nicer_like_response()
    write_rmf(rmf, tmp_path / "r.rmf")
    write_arf(arf, tmp_path / "r.arf")

    def empty(backscal, background=None):
        return Spectrum(np.arange(N_CHANNELS), np.zeros(N_CHANNELS, dtype=np.int64), 1.25, rmf=rmf, arf=arf,
                        backscal=backscal, background=background)

    grouped = empty(1.0, background=empty(10.0)).group_constant(5).notice(0.3, 10.0)
    model = xsbi.Model("tbabs*powerlaw")
    rng = np.random.default_rng(5)
    mu = xsbi.Simulator(model, grouped).expected_counts(np.array([TRUTHS[0]]))[0]
    b = rng.poisson(np.full(grouped.n_bins, 20.0))
    paths = []
    for i, bkg in enumerate([b, b, b + 1]):  # the third has another background spectrum
        obs = grouped.with_counts(rng.poisson(mu + 0.1 * bkg), background_counts=bkg)
        write_pha(obs.background, tmp_path / f"bkg{i}.pha", respfile="r.rmf")
        paths.append(write_pha(obs, tmp_path / f"src{i}.pha", respfile="r.rmf", ancrfile="r.arf",
                               backfile=f"bkg{i}.pha"))
    spec = xsbi.load_spectrum(paths[0]).notice(0.3, 10.0)
    bkg = PoissonBackground(spec)
    prior = xsbi.JointPrior(model, PRIORS)
    theta = prior.sample(3000, seed=1)
    x = SourceAndBackground(xsbi.Simulator(model, spec), bkg).sample(theta, seed=2)
    post = NPE(model, prior, spec, hidden_features=20, num_transforms=2, background=bkg).append_simulations(
        theta, x).train(seed=0, progress=False, max_epochs=30)
    r = run_batch(post.save(tmp_path / "bkg.pt"), paths, tmp_path / "t", n_samples=500, progress=False)
    assert list(Table.read(tmp_path / "t.csv", format="ascii.csv")["status"]) == ["ok", "ok", "skipped"]
    assert r.reasons == {"background differs": 1} and r.response_loads == {"rmf": 1, "arf": 1, "background": 3}
    assert fits.getheader(tmp_path / "t.fits", "BATCH")["BESTFIT"] == "wstat"
    # in memory: the source counts, alone or followed by the trained background, give the file's row
    both = np.r_[spec.counts, spec.background_counts]
    mem = run_batch_counts(post, [spec.counts, both, both + np.r_[np.zeros(spec.n_bins), np.ones(spec.n_bins)]],
                           spec, n_samples=500)
    assert [row[1] for row in mem.rows] == ["ok", "ok", "skipped"] and mem.reasons == {"background differs": 1}
    from_file = run_batch(post, paths[:1], None, n_samples=500, progress=False).rows[0]
    np.testing.assert_allclose(mem.rows[0][3:], from_file[3:], rtol=1e-4)  # W-stat moments by bootstrap
    # the best fit is the draw with the lowest W-stat, as in `xsbi run`
    engine = _Engine(post, 500, 0)
    items = [engine.item_from_spectrum(0, str(paths[0]), xsbi.load_spectrum(paths[0]))]
    draws = post.sample(spec, 500, seed=3)[None]
    fit = engine.best_fit(items, draws)
    ref = PosteriorResult.from_samples(draws[0], post.names, items[0].spectrum, model, "npe").fit
    assert ref["statistic_name"] == "W-stat"  # W-stat chose the draw and is reported, with bootstrap moments
    np.testing.assert_allclose(fit[:, 0], [ref["cstat"], ref["expected_cstat"], ref["cstat_std"], ref["cstat_z"]],
                               rtol=1e-9)
    # importance sampling on the W-stat likelihood (-W/2): emcee's quantiles on the same data (the
    # network is rough here, efficiency ~2%: 10,000 draws keep the Monte-Carlo noise ~0.1 sigma)
    from xsbi.likelihood import PoissonLikelihood, run_mcmc

    r = run_batch(post, paths[:1], None, n_samples=10_000, progress=False, workers=1, importance=True)
    lik = PoissonLikelihood(spec, model, prior)
    assert lik.statistic.lower().startswith("w")
    lo, med, hi = np.quantile(run_mcmc(lik, seed=0, progress=False).samples, [0.16, 0.5, 0.84], axis=0)
    row = r.rows[0]
    for j in range(3):
        q16, q50, q84 = row[6 + 3 * j], row[5 + 3 * j], row[7 + 3 * j]
        assert abs(q50 - med[j]) < 0.3 * (hi[j] - lo[j]) / 2 and 0.8 < (q84 - q16) / (hi[j] - lo[j]) < 1.2, j

"""Run configuration: defaults, round trip, error collection, overrides, path resolution."""

import pickle
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from xsbi import JointPrior, XsbiError
from xsbi.config import (
    ConfigError, DataConfig, FitConfig, GroupConfig, InferenceConfig, MCMCConfig, ModelConfig,
    NestedConfig, RestrictionConfig, RunConfig, load_config,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "config.md"

MINIMAL = """
data:
  spectrum: obs.pha
model: tbabs*powerlaw
priors:
  tbabs.nH: {loguniform: [0.01, 1.0]}
  powerlaw.PhoIndex: {uniform: [0.5, 3.0]}
  powerlaw.norm: {loguniform: [0.01, 100]}
"""


def write(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def obs(tmp_path):
    """An (empty) spectrum file: validation only checks that data files exist."""
    path = tmp_path / "obs.pha"
    path.write_bytes(b"")
    return path


def problems(exc_info):
    return exc_info.value.errors


# ------------------------------------------------------------------------------ loading
def test_minimal_config_takes_every_default(tmp_path, obs):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert isinstance(cfg, RunConfig)
    assert cfg.data == DataConfig(spectrum=obs.resolve())
    assert cfg.data.energy == ((0.3, 10.0),)
    assert cfg.data.rmf is cfg.data.arf is cfg.data.background is cfg.data.group is None
    assert cfg.model == ModelConfig("tbabs*powerlaw", {})
    assert cfg.priors == {
        "tbabs.nH": {"loguniform": [0.01, 1.0]},
        "powerlaw.PhoIndex": {"uniform": [0.5, 3.0]},
        "powerlaw.norm": {"loguniform": [0.01, 100.0]},
    }
    assert cfg.restriction == RestrictionConfig()
    assert cfg.restriction.method == "counts" and cfg.restriction.counts is None
    assert cfg.inference == InferenceConfig()
    assert (cfg.inference.method, cfg.inference.simulations, cfg.inference.density_estimator) == ("npe", 20000, "maf")
    assert cfg.inference.mcmc == MCMCConfig(32, None)
    assert cfg.inference.nested == NestedConfig(400) and cfg.inference.fit == FitConfig(5)
    assert cfg.seed == 0 and cfg.plots is True


def test_config_is_frozen(tmp_path, obs):
    cfg = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(AttributeError):
        cfg.seed = 3
    with pytest.raises(AttributeError):
        cfg.inference.simulations = 3


def test_build_prior_gives_joint_prior_on_the_model(tmp_path, obs):
    cfg = load_config(write(tmp_path, MINIMAL), overrides={"priors.tbabs.nH": 0.2})
    prior = cfg.build_prior()
    assert isinstance(prior, JointPrior)
    assert prior.names == ["powerlaw.PhoIndex", "powerlaw.norm"]
    assert prior.model.frozen == {"tbabs.nH": 0.2}
    assert cfg.build_model().parameter_names == ["tbabs.nH", "powerlaw.PhoIndex", "powerlaw.norm"]


FULL = """
data:
  spectrum: obs.pha
  energy: [[0.3, 1.5], [2.5, 10]]
  rmf: resp.rmf
  arf: false
  background: bkg.pha
  group: {min_counts: 20}
model:
  expression: tbabs*(powerlaw + bbodyrad)
  options:
    tbabs: {table: xsect.fits, abund: wilm}
priors:
  nH: 0.2                                   # bare name, bare number = frozen
  powerlaw.phoindex: {normal: [1.7, 0.3]}   # case-insensitive
  powerlaw.norm: {loguniform: [1.0e-2, 1e2]}
  bbodyrad.kT: {uniform: [0.1, 3]}
  bbodyrad.norm: {normal: [10, 5, 0, 100]}
restriction:
  method: cstat
  counts: [500, 8000]
  fraction: 0.3
  rounds: 4
  simulations: 1000
  stop_fraction: 0.8
  coarse_simulations: 3000
  coarse_quantile: 1e-3
inference:
  method: mcmc
  simulations: 5000
  rounds: 2
  simulations_per_round: 500
  posterior_samples: 4000
  density_estimator: NSF
  hidden_features: 64
  num_transforms: 3
  preprocessing: log1p
  pca: 0.9
  training_batch_size: 100
  learning_rate: 1.0e-3
  validation_fraction: 0.2
  stop_after_epochs: 10
  max_epochs: 300
  test_spectra: 0
  device: cuda:0
  mcmc: {walkers: 16, steps: 2000}
  nested: {live_points: 100}
  fit: {starts: 3}
seed: 42
plots: false
"""


def test_full_config_round_trips_through_to_dict(tmp_path, obs):
    for name in ("resp.rmf", "bkg.pha", "xsect.fits"):
        (tmp_path / name).write_bytes(b"")
    cfg = load_config(write(tmp_path, FULL))
    assert cfg.data.energy == ((0.3, 1.5), (2.5, 10.0))
    assert cfg.data.rmf == (tmp_path / "resp.rmf").resolve() and cfg.data.arf is False
    assert cfg.data.group == GroupConfig("min_counts", 20)
    assert cfg.model.options == {"tbabs": {"table": str((tmp_path / "xsect.fits").resolve()), "abund": "wilm"}}
    assert cfg.priors["tbabs.nH"] == {"frozen": 0.2}
    assert cfg.priors["powerlaw.PhoIndex"] == {"normal": [1.7, 0.3]}
    assert cfg.restriction.counts == (500.0, 8000.0) and cfg.restriction.coarse_quantile == 1e-3
    assert cfg.inference.density_estimator == "nsf" and cfg.inference.mcmc == MCMCConfig(16, 2000)
    assert cfg.seed == 42 and cfg.plots is False

    plain = cfg.to_dict()
    # plain types only: survives YAML (and hence JSON-like) serialisation
    assert yaml.safe_load(yaml.safe_dump(plain)) == plain
    assert yaml.safe_load(cfg.to_yaml()) == plain
    again = load_config(plain, base_dir="/nonexistent")  # paths are absolute now
    assert again == cfg
    assert again.to_dict() == plain
    # and through a YAML file elsewhere
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert load_config(write(other, cfg.to_yaml())) == cfg


def test_group_forms(tmp_path, obs):
    base = {"data": {"spectrum": str(obs)}, "model": "powerlaw", "priors": {"PhoIndex": {"uniform": [1, 2]}, "norm": 1}}
    for group, expected in [(None, None), (False, GroupConfig("none")), ({"constant": 5}, GroupConfig("constant", 5))]:
        cfg = load_config({**base, "data": {"spectrum": str(obs), "group": group}})
        assert cfg.data.group == expected
        assert load_config(cfg.to_dict()) == cfg


# ------------------------------------------------------------------------------ errors
BROKEN = """
data:
  spectrum: obs.pha
  energy: [10, 0.3]
model: tbabs*powerlaw
priors:
  tbabs.nH: {loguniform: [0.1, 0.3]}
  powerlaw.PhoIndex: {uniform: [3, 1]}
  powerlaw.norm: {gaussian: [1, 2]}
restriction:
  method: foo
  fraction: 1.5
inference:
  simulation: 100
  simulations: -5
  density_estimator: maf
  device: tpu
sead: 1
plots: yes please
"""


def test_every_mistake_is_reported_with_its_location(tmp_path, obs):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, BROKEN))
    errors = problems(info)
    expected = [
        "data.energy: needs 0 <= low < high (keV), got [10, 0.3]",
        "priors.powerlaw.PhoIndex: uniform needs [low, high] with low < high, got [3, 1]",
        "priors.powerlaw.norm: unknown prior type 'gaussian'",
        "restriction.method: unknown 'foo'; choose one of counts, cstat, coarse, none",
        "restriction.fraction: must be a number in (0, 1], got 1.5",
        "inference.simulation: unknown key (did you mean 'simulations'?)",
        "inference.simulations: must be a positive integer, got -5",
        "inference.device: must be cpu, cuda, cuda:N or mps, got 'tpu'",
        "sead: unknown key (did you mean 'seed'?)",
        "plots: must be true or false, got 'yes please'",
    ]
    for e in expected:
        assert any(err.startswith(e) for err in errors), (e, errors)
    assert len(errors) == len(expected), errors
    message = str(info.value)
    assert f"{len(expected)} problems" in message and str(tmp_path / "run.yaml") in message
    assert "inference.simulations: must be a positive integer, got -5 (line 15)" in message
    assert isinstance(info.value, XsbiError)


def test_config_error_pickles(tmp_path, obs):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, BROKEN))
    again = pickle.loads(pickle.dumps(info.value))
    assert again.errors == info.value.errors and str(again) == str(info.value)


@pytest.mark.parametrize("key, value, message", [
    ("inference.simulations", 0, "must be a positive integer, got 0"),
    ("inference.simulations", 2.5, "must be a positive integer, got 2.5"),
    ("inference.simulations", True, "must be a positive integer, got true"),
    ("inference.test_spectra", -1, "must be a non-negative integer, got -1"),
    ("inference.pca", 0, "must be a number in (0, 1] or null, got 0"),
    ("inference.learning_rate", "fast", "must be a positive number, got 'fast'"),
    ("inference.max_epochs", 0, "must be a positive integer or null, got 0"),
    ("inference.preprocessing", "sqrt", "unknown 'sqrt'; choose one of anscombe, log1p, none"),
    ("inference.method", "abc", "unknown 'abc'; choose one of npe, snpe, cstat, mcmc, nested"),
    ("inference.mcmc.steps", -1, "must be a positive integer or null, got -1"),
    ("inference.mcmc.walker", 8, "unknown key (did you mean 'walkers'?)"),
    ("restriction.counts", [100, 10], "must be null or [cmin, cmax] total counts with 0 <= cmin < cmax, got [100, 10]"),
    ("restriction.coarse_quantile", 1, "must be a number in (0, 1), got 1"),
    ("data.energy", [[0.3, 2], [5]], "must be [low, high] in keV or a list of such pairs, got [5]"),
    ("data.group", {"min_count": 20}, "unknown key (did you mean 'min_counts'?)"),
    ("data.group", {"constant": 0}, "must be a positive integer, got 0"),
    ("data.rmf", False, "must be a file path, got false"),
    ("model", "tbabs*", "model expression 'tbabs*' is incomplete"),
    ("model", "tbabs*powerlow", "unknown model component 'powerlow'"),
    ("seed", -3, "must be a non-negative integer, got -3"),
])
def test_single_mistakes(tmp_path, obs, key, value, message):
    raw = yaml.safe_load(MINIMAL)
    node = raw
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    with pytest.raises(ConfigError) as info:
        load_config(raw, base_dir=tmp_path)
    errors = problems(info)
    loc = {"data.energy": "data.energy[1]", "data.group": "data.group"}.get(key, key)
    if key == "data.group":
        loc = "data.group.min_count" if "min_count" in value else "data.group.constant"
    assert any(e.startswith(f"{loc}: {message}") for e in errors), errors


def test_numeric_strings_and_float_integers_are_accepted(tmp_path, obs):
    cfg = load_config(write(tmp_path, MINIMAL + "inference: {simulations: 2.0e4, learning_rate: 1e-3}\n"))
    assert cfg.inference.simulations == 20000 and isinstance(cfg.inference.simulations, int)
    assert cfg.inference.learning_rate == 1e-3


def test_missing_required_sections(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "inference: {method: npe}\n"))
    errors = problems(info)
    assert any(e.startswith("data: required") for e in errors)
    assert any(e.startswith("model: required") for e in errors)
    assert any(e.startswith("priors: required") for e in errors)
    with pytest.raises(ConfigError, match="data.spectrum: required"):
        load_config({"data": {"energy": [1, 2]}, "model": "powerlaw", "priors": {"PhoIndex": 2, "norm": {"uniform": [0, 1]}}})


def test_missing_spectrum_is_reported_with_its_resolved_path(tmp_path):
    sub = tmp_path / "cfg"
    sub.mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(write(sub, MINIMAL.replace("obs.pha", "../data/nope.pha")))
    resolved = (tmp_path / "data" / "nope.pha").resolve()
    assert any(e.startswith(f"data.spectrum: file not found: {resolved}") for e in problems(info)), problems(info)
    assert "'../data/nope.pha'" in str(info.value)


def test_missing_optional_files_are_reported(tmp_path, obs):
    text = MINIMAL.replace("spectrum: obs.pha", "spectrum: obs.pha\n  rmf: r.rmf\n  arf: a.arf\n  background: b.pha")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    errors = problems(info)
    for key, name in (("rmf", "r.rmf"), ("arf", "a.arf"), ("background", "b.pha")):
        assert any(e.startswith(f"data.{key}: file not found: {tmp_path / name}") for e in errors), errors


def test_relative_paths_resolve_against_the_yaml_directory(tmp_path, monkeypatch):
    (tmp_path / "project" / "data").mkdir(parents=True)
    (tmp_path / "project" / "data" / "obs.pha").write_bytes(b"")
    (tmp_path / "project" / "data" / "bkg.pha").write_bytes(b"")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    text = MINIMAL.replace("spectrum: obs.pha", "spectrum: data/obs.pha\n  background: data/bkg.pha")
    cfg = load_config(write(tmp_path / "project", text))
    assert cfg.data.spectrum == (tmp_path / "project" / "data" / "obs.pha").resolve()
    assert cfg.data.background == (tmp_path / "project" / "data" / "bkg.pha").resolve()
    assert cfg.data.spectrum.is_absolute()
    # an explicit base_dir wins over the file's directory
    cfg2 = load_config(yaml.safe_load(text), base_dir=tmp_path / "project")
    assert cfg2.data == cfg.data
    with pytest.raises(ConfigError, match="file not found"):
        load_config(yaml.safe_load(text))  # a dict resolves against the current directory


def test_reference_spectrum_path(tmp_path, shared_data):
    pha = shared_data / "nicer" / "Reference_pha_tbabs_powerlaw_2000counts_groupconstant_5.pha"
    if not pha.is_file():
        pytest.skip(f"{pha} not present")
    cfg = load_config({"data": {"spectrum": str(pha)}, "model": "tbabs*powerlaw",
                       "priors": {"nH": {"loguniform": [0.01, 1]}, "PhoIndex": {"uniform": [0.5, 3]},
                                  "norm": {"loguniform": [0.01, 100]}}})
    assert cfg.data.spectrum == pha


# ------------------------------------------------------------------------------ priors
def test_unknown_prior_parameter_lists_the_model_parameters(tmp_path, obs):
    text = MINIMAL.replace("powerlaw.PhoIndex:", "powerlaw.PhoIndx:")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    errors = problems(info)
    bad = [e for e in errors if e.startswith("priors.powerlaw.PhoIndx:")]
    assert bad, errors
    assert "did you mean 'powerlaw.PhoIndex'?" in bad[0]
    assert "tbabs.nH, powerlaw.PhoIndex, powerlaw.norm" in bad[0]
    # and the parameter left without a prior is reported too
    assert any(e.startswith("priors: no prior for parameter(s) powerlaw.PhoIndex") for e in errors), errors


def test_prior_mistakes(tmp_path, obs):
    raw = {
        "data": {"spectrum": str(obs)},
        "model": "tbabs*(powerlaw+bbodyrad)",
        "priors": {
            "tbabs.nH": {"uniform": [-1, 1]},          # outside the hard limits
            "powerlaw.PhoIndex": {"loguniform": [0, 2]},
            "powerlaw.norm": {"normal": [1, -1]},
            "PhoIndex": 2,                              # same parameter twice
            "bbodyrad.kT": {"uniform": [1, 2], "frozen": 1},
            "norm": {"uniform": [0, 1]},               # ambiguous bare name
        },
    }
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    errors = problems(info)
    starts = [
        "priors.tbabs.nH: prior {uniform: [-1.0, 1.0]} extends outside the hard limits of tbabs.nH, [0, 1e+06]",
        "priors.powerlaw.PhoIndex: loguniform needs [low, high] with 0 < low < high, got [0, 2]",
        "priors.powerlaw.norm: normal needs [mean, sigma] with sigma > 0",
        "priors.PhoIndex: is powerlaw.PhoIndex again, which priors.powerlaw.PhoIndex already sets",
        "priors.bbodyrad.kT: a prior is one of",
        "priors.norm: model 'tbabs*(powerlaw+bbodyrad)' has no parameter 'norm' (ambiguous: powerlaw.norm, bbodyrad.norm)",
        "priors: no prior for parameter(s) bbodyrad.norm",
    ]
    for s in starts:
        assert any(e.startswith(s) for e in errors), (s, errors)
    assert len(errors) == len(starts), errors


def test_all_frozen_is_an_error(tmp_path, obs):
    raw = {"data": {"spectrum": str(obs)}, "model": "powerlaw", "priors": {"PhoIndex": 2, "norm": 1}}
    with pytest.raises(ConfigError, match="every parameter is frozen"):
        load_config(raw)


def test_model_options_must_name_components(tmp_path, obs):
    raw = yaml.safe_load(MINIMAL)
    raw["model"] = {"expression": "tbabs*powerlaw", "options": {"tbabss": {"abund": "wilm"}}, "expresion": 1}
    raw["data"]["spectrum"] = str(obs)
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    errors = problems(info)
    assert any(e.startswith("model.options.tbabss: no component labelled 'tbabss'") and "did you mean 'tbabs'" in e
               for e in errors), errors
    assert any(e.startswith("model.expresion: unknown key (did you mean 'expression'?)") for e in errors), errors


def test_mcmc_needs_enough_walkers(tmp_path, obs):
    with pytest.raises(ConfigError, match=re.escape("inference.mcmc.walkers: needs at least 2 x 3 free parameters = 6 walkers, got 4")):
        load_config(write(tmp_path, MINIMAL), overrides={"inference.method": "mcmc", "inference.mcmc.walkers": "4"})


# ------------------------------------------------------------------------------ overrides
def test_overrides_apply_before_validation(tmp_path, obs):
    path = write(tmp_path, MINIMAL + "inference: {method: npe, simulations: 1000}\n")
    cfg = load_config(path, overrides={
        "inference.method": "mcmc",
        "inference.simulations": "5000",                # command-line strings are read as YAML
        "inference.pca": "null",
        "inference.mcmc.steps": 300,
        "restriction.counts": "[100, 4000]",
        "data.energy": "[0.5, 8]",
        "seed": "7",
        "plots": "false",
        "priors.powerlaw.PhoIndex.uniform": "[1, 2]",   # replaces the file's prior kind too
        "priors.norm": 1.5,                             # bare name replaces powerlaw.norm
    })
    assert cfg.inference.method == "mcmc" and cfg.inference.simulations == 5000
    assert cfg.inference.pca is None and cfg.inference.mcmc.steps == 300
    assert cfg.restriction.counts == (100.0, 4000.0)
    assert cfg.data.energy == ((0.5, 8.0),)
    assert cfg.seed == 7 and cfg.plots is False
    assert cfg.priors["powerlaw.PhoIndex"] == {"uniform": [1.0, 2.0]}
    assert cfg.priors["powerlaw.norm"] == {"frozen": 1.5}
    assert len(cfg.priors) == 3


def test_override_model_expression_and_priors_together(tmp_path, obs):
    cfg = load_config(write(tmp_path, MINIMAL), overrides={
        "model.expression": "phabs*powerlaw",
        "priors.phabs.nH": "{uniform: [0.0, 2.0]}",
        "priors.tbabs.nH": None,                     # null removes a prior
    })
    assert cfg.model.expression == "phabs*powerlaw"
    assert cfg.priors["phabs.nH"] == {"uniform": [0.0, 2.0]}


def test_override_mistakes_are_reported(tmp_path, obs):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, MINIMAL), overrides={
            "inference.simulation": "10", "data.spectrum.path": 3, "inference..method": "npe",
            "inference.simulations": "-5",
        })
    errors = problems(info)
    assert any(e.startswith("inference.simulation: unknown key (did you mean 'simulations'?)") for e in errors)
    assert any(e.startswith("override 'data.spectrum.path': cannot set it: 'data.spectrum' is not a section") for e in errors)
    assert any(e.startswith("override 'inference..method': not a dotted key") for e in errors)
    assert any(e.startswith("inference.simulations: must be a positive integer, got -5") for e in errors)


def test_override_paths_resolve_against_the_current_directory(tmp_path, obs, monkeypatch):
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "other.pha").write_bytes(b"")
    monkeypatch.chdir(tmp_path / "cwd")
    cfg = load_config(write(tmp_path, MINIMAL), overrides={"data.spectrum": "other.pha"})
    assert cfg.data.spectrum == (tmp_path / "cwd" / "other.pha").resolve()


# ------------------------------------------------------------------------------ YAML
def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "data:\n  spectrum: obs.pha\nmodel: tbabs*powerlaw\npriors:\n  nH: {uniform: [0.1, 1]\n  x: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "YAML syntax error at line" in message and str(path) in message
    line = int(re.search(r"at line (\d+)", message).group(1))
    assert line in (5, 6)


def test_tab_indentation_is_a_syntax_error(tmp_path):
    with pytest.raises(ConfigError, match=r"YAML syntax error at line 2"):
        load_config(write(tmp_path, "data:\n\tspectrum: obs.pha\n"))


def test_duplicate_keys_are_reported(tmp_path, obs):
    with pytest.raises(ConfigError, match=re.escape("inference.simulations: given twice (lines 9 and 10)")):
        load_config(write(tmp_path, MINIMAL.strip() + "\ninference:\n  simulations: 10\n  simulations: 20\n"))


def test_unreadable_inputs(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="the configuration is empty"):
        load_config(write(tmp_path, ""))
    with pytest.raises(ConfigError, match="must be a mapping of sections"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_yaml_tags_are_not_executed(tmp_path):
    with pytest.raises(ConfigError, match="YAML syntax error"):
        load_config(write(tmp_path, "seed: !!python/object/apply:os.system ['echo hi']\n"))


# ------------------------------------------------------------------------------ restriction helper
def test_default_count_range():
    r = RestrictionConfig()
    assert r.counts_range(3000) == (1000.0, 9000.0)
    assert r.counts_range(20) == (0.0, 60.0)  # N - 5 sqrt(N) < 0
    lo, hi = r.counts_range(4)
    assert lo == 0.0 and hi == pytest.approx(4 + 5 * 2)  # N + 5 sqrt(N) > 3N
    assert r.counts_range(0) == (0.0, 10.0)
    assert RestrictionConfig(counts=(5.0, 50.0)).counts_range(3000) == (5.0, 50.0)


# ------------------------------------------------------------------------------ the documentation
def _yaml_blocks():
    return re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.S)


def test_documented_complete_example_matches_the_defaults(tmp_path, obs):
    blocks = _yaml_blocks()
    minimal, complete = blocks[0], blocks[1]
    assert "restriction:" in complete and "inference:" in complete
    assert load_config(write(tmp_path, complete, "complete.yaml")) == load_config(write(tmp_path, minimal, "min.yaml"))


def test_every_field_is_documented():
    text = DOCS.read_text()
    for cls in (DataConfig, RestrictionConfig, InferenceConfig, MCMCConfig, NestedConfig, FitConfig):
        for name in cls.__dataclass_fields__:
            assert f"`{name}`" in text or f".{name}`" in text or f"  {name}:" in text, (cls.__name__, name)

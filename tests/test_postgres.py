"""A shared Optuna study on a real PostgreSQL cluster, runs logged to a real MLflow server whose
backend store is on the same cluster, two sweep workers at once; all on 127.0.0.1.

Without PostgreSQL's server installed the tests skip, saying what to install; under CI (`CI=true`)
that is an error (`helpers.system.require`), since `.ci/run` installs it.
"""
from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from helpers.cli import HANG_S, cli_env, error_line, finish_all, run_cli, start_cli, together
from helpers.overrides import QUICK_SWEEP
from helpers.servers import PG_PASSWORD, MlflowServer, PostgresCluster, free_port, missing_postgres
from helpers.store import client_for, parents_and_children
from helpers.system import require

OBJECTIVE = "align/anticorrelation"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    require(missing_postgres())
    cluster = PostgresCluster().start()
    try:
        study_url = cluster.create_database("optuna")
        server = MlflowServer(cluster.create_database("mlflow"), tmp_path_factory.mktemp("mlflow") / "artifacts")
        server.start(timeout_s=HANG_S)
        try:
            yield cluster, study_url, server
        finally:
            server.stop()
    finally:
        cluster.stop()


@pytest.mark.slow
def test_two_workers_share_a_postgres_study_and_log_to_the_mlflow_server(servers, tmp_path):
    _, study_url, server = servers
    env = cli_env(MLFLOW_TRACKING_URI=server.url)
    search = ["-m", "search=optuna", f"hydra.sweeper.storage={study_url}", "hydra.sweeper.study_name=pg",
              "hydra.sweeper.n_trials=3", *QUICK_SWEEP]
    finish_all([start_cli(tmp_path, *search, env=env) for _ in range(2)])

    trials = optuna.load_study(study_name="pg", storage=study_url).get_trials()
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in trials)

    parents, children = parents_and_children(server.url)
    assert len(parents) == 2 and {p.info.status for p in parents} == {"FINISHED"}
    assert {p.data.tags["optuna_storage"] for p in parents} == {study_url.replace(PG_PASSWORD, "***")}
    assert sorted(int(r.data.tags["optuna_trial"]) for r in children) == list(range(6))  # one run per trial
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {p.info.run_id for p in parents}
    for t in trials:
        run = next(r for r in children if r.data.tags["optuna_trial"] == str(t.number))
        assert run.info.status == "FINISHED"
        assert t.value == pytest.approx(run.data.metrics[OBJECTIVE], rel=1e-12)
    # Artifacts go through the server to its --artifacts-destination.
    assert "config.yaml" in {a.path for a in client_for(server.url).list_artifacts(children[0].info.run_id)}


def test_a_missing_database_or_a_closed_port_is_one_line_with_the_password_masked(servers, tmp_path):
    cluster, _, server = servers
    missing_db = cluster.url("no_such_db")
    closed = f"postgresql://lv:{PG_PASSWORD}@127.0.0.1:{free_port()}/optuna"
    cases = [(f"hydra.sweeper.storage={missing_db}", "hydra.sweeper.storage", missing_db),
             (f"tracking.uri={closed}", "tracking.uri", closed)]
    procs = together({field: (lambda override=override: run_cli(tmp_path, "-m", "search=optuna", override, *QUICK_SWEEP,
                                                                env=cli_env(MLFLOW_TRACKING_URI=server.url)))
                      for override, field, _ in cases})  # both at once: each is refused before it writes
    for _, field, url in cases:
        line = error_line(procs[field])
        masked = url.replace(PG_PASSWORD, "***")
        assert line.startswith(f"lvsweep: error: {field}: cannot reach {masked}: ") and PG_PASSWORD not in line
    assert not list(tmp_path.rglob("attention.csv"))  # nothing trained

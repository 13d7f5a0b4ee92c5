"""Re-run a recorded run and check that it reproduces: `python -m lvsweep.replay RUN_ID`.

The run's `config.yaml` artifact holds everything that sets its numbers, seed included. A replay
runs that config again through the ordinary command (`python -m lvsweep tracking.replay_of=ID`, so
the same code path, signals and failure handling), as a new run in the same experiment tagged
`lvsweep.replay_of`, then compares every final metric of the two runs.

How close they must be follows from what the two runs share. With the same commit (no
uncommitted changes, or the same ones), the same lvsweep version and the same numeric environment
(`environment.json`: Python, CPU, BLAS and its kernel, threads, package versions), a run is
deterministic and must reproduce bit for bit. Otherwise a stated relative tolerance applies, and
what differs is listed beside the table. Wall times are not results and are not compared.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from lvsweep.errors import LvsweepError, exit_with_error
from lvsweep.tracking import provenance

CONFIG_FILE = "config.yaml"
RUN_ID_FIELD = "RUN_ID"
# A replay of a sweep: its parent run, told to the command's sweep callback, which names it after it.
REPLAY_PARENT_ENV = "LVSWEEP_REPLAY_PARENT"
DEFAULT_RTOL = 1e-6  # across environments: what reproduces the printed digits of every metric
NOT_RESULTS = ("swept/", "sweep/")  # a sweep's bookkeeping of its children, not a measurement
WALL_TIME_SUFFIX = "seconds"  # e.g. estimate/seconds: how long it took, never the same twice


@dataclass
class Comparison:
    """The final metrics of a run and its replay, each judged identical, within the tolerance,
    differing, or not compared; with what the two runs' provenance says about the tolerance."""

    original: Any
    replay: Any
    rtol: float
    bitwise: bool
    notes: list[str] = field(default_factory=list)  # differences of code and environment
    rows: list[tuple[str, Optional[float], Optional[float], str]] = field(default_factory=list)
    config_edits: list[str] = field(default_factory=list)  # config.yaml against the run's params

    @property
    def differing(self) -> list[str]:
        return [name for name, _, _, verdict in self.rows if verdict == "differs"] + \
               [f"config {edit.split(':')[0]}" for edit in self.config_edits]

    @property
    def reproduces(self) -> bool:
        return not self.differing


def _client(uri: str) -> Any:
    from lvsweep.tracking.report import open_client

    try:
        return open_client(uri)
    except LvsweepError as exc:
        raise LvsweepError("--tracking-uri", exc.problem) from None


def get_run(client: Any, run_id: str, field_name: str = RUN_ID_FIELD) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        raise LvsweepError(field_name, f"no run '{run_id}' in this store") from None


def read_config(client: Any, run: Any) -> DictConfig:
    """The run's recorded config.yaml; a run without one cannot be replayed."""
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    if CONFIG_FILE not in names:
        raise LvsweepError(RUN_ID_FIELD, f"run {run.info.run_id} ({run.info.run_name}) has no {CONFIG_FILE} artifact, "
                                         "so what it ran is not known; it cannot be replayed")
    with tempfile.TemporaryDirectory(prefix="lvsweep-replay-") as folder:
        path = client.download_artifacts(run.info.run_id, CONFIG_FILE, folder)
        return OmegaConf.load(path)  # type: ignore[return-value]


def read_json(client: Any, run: Any, name: str) -> Optional[dict[str, Any]]:
    if name not in {a.path for a in client.list_artifacts(run.info.run_id)}:
        return None
    with tempfile.TemporaryDirectory(prefix="lvsweep-replay-") as folder:
        return json.loads(Path(client.download_artifacts(run.info.run_id, name, folder)).read_text())


def check_data_file(run: Any) -> Optional[str]:
    """The observed-data file the run read, as long as it is still there and unchanged."""
    tags = run.data.tags
    path = tags.get(provenance.DATA_FILE_TAG)
    if path is None:
        return None
    where = f"run {run.info.run_id} ({run.info.run_name}) read {path}"
    if not Path(path).is_file():
        raise LvsweepError("data.path", f"{where}, which is gone; it cannot be replayed")
    if provenance.sha256(Path(path)) != tags.get(provenance.DATA_SHA_TAG):
        raise LvsweepError("data.path", f"{where}, which has changed since (its sha256 differs from the one "
                                        "recorded); it cannot be replayed")
    return path


def check_replayable(client: Any, run: Any) -> DictConfig:
    """Everything that can refuse a replay, before anything runs: the run's state, its config, its data."""
    status = run.info.status
    if status != "FINISHED":
        why = run.data.tags.get("lvsweep.error", "")
        raise LvsweepError(RUN_ID_FIELD, f"run {run.info.run_id} ({run.info.run_name}) is {status}"
                                         f"{': ' + why.splitlines()[0][:200] if why else ''}; only a finished "
                                         "run has final metrics to reproduce")
    config = read_config(client, run)
    check_data_file(run)
    return config


def recorded_config(current: DictConfig, run_id: str) -> DictConfig:
    """The config a job replaying `run_id` runs: the recorded one, with this command's tracking
    (store, experiment), named after the original and tagged with its id. Called by the job."""
    from lvsweep.tracking.runs import resolve_uri

    client = _client(resolve_uri(current.tracking.uri))
    run = get_run(client, run_id, "tracking.replay_of")
    config = check_replayable(client, run)
    tracking = OmegaConf.to_container(current.tracking)
    assert isinstance(tracking, dict)
    tracking.update(run_name=f"replay of {run.info.run_name}", tags={provenance.REPLAY_TAG: run_id})
    config.tracking = tracking
    data_file = check_data_file(run)
    if data_file is not None:  # read from where it was, whatever directory the replay starts in
        config.data.path = data_file
    return config


def config_edits(client: Any, run: Any) -> list[str]:
    """Where the recorded config.yaml disagrees with the params the run logged from the same
    config when it started: an edit made to the artifact afterwards."""
    from lvsweep.tracking.runs import flatten

    recorded = {k: str(v) for k, v in flatten(OmegaConf.to_container(read_config(client, run))).items()}
    params = run.data.params
    out = []
    for key in sorted(set(recorded) | set(params)):
        if key.startswith("tracking."):
            continue
        if recorded.get(key) != params.get(key):
            out.append(f"{key}: logged {params.get(key)!r}, config.yaml {recorded.get(key)!r}")
    return out


def same_code(client: Any, original: Any) -> list[str]:
    """How the code that replays differs from the code that ran; empty when it is the same."""
    tags = original.data.tags
    now = provenance.run_tags()
    notes = []
    if tags.get(provenance.VERSION_TAG) != now[provenance.VERSION_TAG]:
        notes.append(f"lvsweep version: {tags.get(provenance.VERSION_TAG, 'not recorded')} → "
                     f"{now[provenance.VERSION_TAG]}")
    commit, here = tags.get(provenance.COMMIT_TAG), now.get(provenance.COMMIT_TAG)
    if commit != here:
        notes.append(f"commit: recorded at {commit or 'no commit (not a git checkout, or not recorded)'}, "
                     f"replayed at {here or 'no commit (not a git checkout)'}")
    else:
        state = provenance.source_state()
        diff = state.diff if state is not None else ""
        if tags.get(provenance.DIRTY_TAG) == "true" or diff:
            recorded_diff = _read_text(client, original, provenance.DIFF_FILE) or ""
            if recorded_diff != diff:
                notes.append("uncommitted changes: the source tree's code.diff differs from the one recorded")
    return notes


def _read_text(client: Any, run: Any, name: str) -> Optional[str]:
    if name not in {a.path for a in client.list_artifacts(run.info.run_id)}:
        return None
    with tempfile.TemporaryDirectory(prefix="lvsweep-replay-") as folder:
        return Path(client.download_artifacts(run.info.run_id, name, folder)).read_text()


def compare(client: Any, original: Any, replay: Any, rtol: Optional[float]) -> Comparison:
    """Judge every final metric of the replay against the original's."""
    notes = same_code(client, original)
    recorded_env = read_json(client, original, provenance.ENVIRONMENT_FILE)
    replay_env = read_json(client, replay, provenance.ENVIRONMENT_FILE)
    if recorded_env is None or replay_env is None:
        notes.append(f"environment: not recorded with the {'original' if recorded_env is None else 'replay'}")
    else:
        differences = provenance.environment_differences(recorded_env, replay_env)
        if not provenance.numerically_same(recorded_env, replay_env):
            notes += [f"environment {d}" for d in differences]
    bitwise = not notes
    tolerance = rtol if rtol is not None else (0.0 if bitwise else DEFAULT_RTOL)
    result = Comparison(original, replay, tolerance, bitwise, notes, config_edits=config_edits(client, original))
    a, b = original.data.metrics, replay.data.metrics
    for name in sorted(set(a) | set(b)):
        if name.startswith(NOT_RESULTS):
            continue
        x, y = a.get(name), b.get(name)
        if name.endswith(WALL_TIME_SUFFIX):
            verdict = "not compared (wall time)"
        elif x is None or y is None:
            verdict = "differs"
        elif x == y or (math.isnan(x) and math.isnan(y)):
            verdict = "identical"
        elif math.isfinite(x) and math.isfinite(y) and abs(x - y) <= tolerance * max(abs(x), abs(y)):
            verdict = "within tolerance"
        else:
            verdict = "differs"
        result.rows.append((name, x, y, verdict))
    return result


def _shown(value: Optional[float]) -> str:
    return "—" if value is None else repr(value)


def format_comparison(c: Comparison) -> str:
    """The table of one replay: each metric's two values and verdict, the tolerance and why."""
    o, r = c.original.info, c.replay.info
    width = max([len(name) for name, *_ in c.rows] + [6])
    lines = [f"replay of run {o.run_id} ({o.run_name}) as run {r.run_id}",
             f"  tolerance: {'bitwise (same code, machine and packages)' if c.bitwise and c.rtol == 0 else f'relative {c.rtol:g}'}"]
    lines += [f"    {note}" for note in c.notes]
    lines += [f"  config.yaml was edited after the run: {edit}" for edit in c.config_edits]
    lines.append(f"  {'metric':<{width}}  {'recorded':>24}  {'replayed':>24}  verdict")
    lines += [f"  {name:<{width}}  {_shown(x):>24}  {_shown(y):>24}  {verdict}" for name, x, y, verdict in c.rows]
    counts = {v: sum(row[3] == v for row in c.rows) for v in ("identical", "within tolerance", "differs")}
    lines.append(f"  {counts['identical']} identical, {counts['within tolerance']} within tolerance, "
                 f"{counts['differs']} differ: " + ("reproduces" if c.reproduces else
                                                    f"DOES NOT reproduce ({', '.join(c.differing)})"))
    return "\n".join(lines)


def targets(client: Any, run: Any, all_children: bool) -> tuple[list[Any], list[str]]:
    """The runs to replay (the run itself, or every child of a sweep or study) and, for --all, a
    line for each child that cannot be."""
    if not all_children:
        check_replayable(client, run)
        return [run], []
    from lvsweep.tracking.runs import child_runs

    children = child_runs(client, run.info.experiment_id, run.info.run_id)
    if not children:
        raise LvsweepError("--all", f"run {run.info.run_id} ({run.info.run_name}) has no child runs; "
                                    "give a sweep's or a study's parent run")
    ok, skipped = [], []
    for child in children:
        try:
            check_replayable(client, child)
            ok.append(child)
        except LvsweepError as exc:
            skipped.append(exc.problem)
    if not ok:
        raise LvsweepError("--all", f"no child of run {run.info.run_id} can be replayed: {skipped[0]}")
    return ok, skipped


def launch(uri: str, experiment: str, runs: Sequence[Any], parent: Optional[Any]) -> int:
    """The ordinary command on the recorded configs: one run, or a multirun over the runs' ids."""
    ids = ",".join(f"'{r.info.run_id}'" for r in runs)
    argv = [sys.executable, "-m", "lvsweep", *(["-m"] if parent is not None else []),
            f"tracking.uri={uri}", f"tracking.experiment={experiment}", f"tracking.replay_of={ids}"]
    env = {**os.environ}
    if parent is not None:
        env[REPLAY_PARENT_ENV] = parent.info.run_id
    env.pop(provenance.COMMAND_ENV, None)  # the replay's own command line, not the one that called it
    print(f"replaying {len(runs)} run(s): python -m lvsweep {' '.join(argv[3:])}", flush=True)
    return subprocess.run(argv, env=env).returncode


def find_replay(client: Any, original: Any, after_ms: int) -> Optional[Any]:
    found = client.search_runs([original.info.experiment_id],
                               filter_string=f"tags.`{provenance.REPLAY_TAG}` = '{original.info.run_id}' "
                                             f"and attributes.start_time >= {after_ms}",
                               order_by=["attributes.start_time DESC"], max_results=1)
    return found[0] if found else None


EPILOG = """examples:
  python -m lvsweep.replay 3f2a...        re-run one run and compare its final metrics
  python -m lvsweep.replay --all 9c1e...  every child of a sweep or study
  python -m lvsweep.replay 3f2a... --rtol 1e-3 --tracking-uri sqlite:///mlruns/mlflow.db

exit status: 0 when every metric reproduces, 1 naming each that does not (or a config.yaml edited
after its run), 2 with one line for a run that cannot be replayed."""


def main(argv: Optional[Sequence[str]] = None) -> None:
    from lvsweep.tracking.report import OneLineParser

    parser = OneLineParser(prog="python -m lvsweep.replay",
                           description=textwrap.fill(" ".join(__doc__.split("\n\n")[1].split()), 88),
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_id", metavar=RUN_ID_FIELD, help="the run to replay (with --all: a sweep's parent)")
    parser.add_argument("--all", action="store_true", help="replay every child of the sweep or study RUN_ID")
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else "
                                               "sqlite:///mlruns/mlflow.db)")
    parser.add_argument("--rtol", type=float, help="relative tolerance (default: 0, bitwise, when code, machine and "
                                                   f"packages are the same; else {DEFAULT_RTOL:g})")
    args = parser.parse_args(argv)
    provenance.mark_command()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per small file read back
    try:
        if args.rtol is not None and not (math.isfinite(args.rtol) and args.rtol >= 0):
            raise LvsweepError("--rtol", f"must be a finite number >= 0, got {args.rtol}")
        if args.tracking_uri:
            from lvsweep.tracking.stores import check_reachable

            check_reachable(args.tracking_uri, "--tracking-uri")
        from lvsweep.tracking.runs import resolve_uri

        uri = resolve_uri(args.tracking_uri)
        client = _client(uri)
        run = get_run(client, args.run_id)
        runs, skipped = targets(client, run, args.all)
        experiment = client.get_experiment(run.info.experiment_id).name
    except LvsweepError as exc:
        exit_with_error(str(exc))
    import time

    start_ms = int(time.time() * 1000)
    status = launch(uri, experiment, runs, run if args.all else None)
    comparisons, failed = [], []
    for original in runs:
        replay = find_replay(client, original, start_ms)
        if replay is None or replay.info.status != "FINISHED":
            failed.append(f"{original.info.run_name} ({original.info.run_id[:8]}): the replay "
                          + ("did not start" if replay is None else f"is {replay.info.status}"))
            continue
        comparison = compare(client, original, replay, args.rtol)
        comparisons.append(comparison)
        print(format_comparison(comparison))
    bad = [c for c in comparisons if not c.reproduces]
    if args.all or skipped:
        print(f"replayed {len(comparisons)} of {len(runs) + len(skipped)} runs: "
              f"{len(comparisons) - len(bad)} reproduce, {len(bad)} do not, {len(failed)} failed to replay, "
              f"{len(skipped)} cannot be replayed")
        for line in skipped:
            print(f"  not replayed: {line}")
    for line in failed:
        print(f"  replay failed: {line}", file=sys.stderr)
    for c in bad:
        print(f"lvsweep: {c.original.info.run_name} ({c.original.info.run_id[:8]}) does not reproduce: "
              f"{', '.join(c.differing)}", file=sys.stderr)
    if failed and not comparisons and status != 0:
        raise SystemExit(status)
    raise SystemExit(1 if bad or failed else 0)

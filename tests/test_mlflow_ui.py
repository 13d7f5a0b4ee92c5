"""What a researcher sees in MLflow's web UI, checked in a real browser.

A real `mlflow server` over the store of a small real sweep made with the CLI, driven by headless
Chromium through Playwright. Waits are on page elements and network responses; the timeouts only
guard against hangs on a loaded machine. Screenshots go to $LVSWEEP_TEST_ARTIFACTS (else the
test's tmp_path) so a failure can be looked at.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import QUICK, run_cli, store_uri
from tests.helpers.servers import MlflowServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HANG_MS = 90_000  # against a hung page only: a loaded CI machine renders in seconds


def _missing_browser() -> str:
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is missing (pip install playwright)"
    return ""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, list[Any], Any]:
    """A two-job noise sweep and its report, made with the real CLI: (dir, client, children, parent)."""
    cwd = tmp_path_factory.mktemp("ui")
    proc = run_cli(cwd, "-m", "noise=0,1", *QUICK)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from lvsweep.tracking.report import main as report_main

    old = os.getcwd()
    os.chdir(cwd)
    try:
        report_main(["--tracking-uri", store_uri(cwd)])
    finally:
        os.chdir(old)
    client = MlflowClient(store_uri(cwd))
    exp = client.get_experiment_by_name("lvsweep")
    runs = client.search_runs([exp.experiment_id])
    children = sorted((r for r in runs if "mlflow.parentRunId" in r.data.tags), key=lambda r: r.data.params["noise.level"])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    return cwd, client, children, parent


def test_the_sweep_is_recorded_for_the_ui(sweep: tuple[Path, Any, list[Any], Any]) -> None:
    """No browser needed: the experiment kind, the swept-param tag and metric, root-level figures
    and the self-contained HTML report are in the store."""
    _, client, children, parent = sweep
    exp = client.get_experiment(children[0].info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert len(children) == 2
    for child, level in zip(children, (0.0, 1.0)):
        assert child.data.tags["lvsweep.swept"] == "noise.level"
        assert child.data.metrics["swept/noise.level"] == level
        assert child.data.params["noise.level"] in ("0", "0.0", "1", "1.0")  # the record stays as it was
        files = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"timeseries.png", "figures"} <= files
        assert "figures/timeseries.png" in {a.path for a in client.list_artifacts(child.info.run_id, "figures")}
    assert parent.data.tags["lvsweep.swept"] == "noise.level"
    page = Path(client.download_artifacts(parent.info.run_id, "report/report.html", tempfile.mkdtemp()))
    html = page.read_text()
    assert "data:image/png;base64," in html and "<table>" in html and html.count("<tr>") == 3


@pytest.fixture(scope="module")
def server(sweep: tuple[Path, Any, list[Any], Any]) -> Iterator[MlflowServer]:
    if reason := _missing_browser():
        pytest.skip(reason)
    cwd = sweep[0]
    srv = MlflowServer(store_uri(cwd), cwd / "served-artifacts").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    root = os.environ.get("LVSWEEP_TEST_ARTIFACTS")
    out = Path(root) / "mlflow_ui" if root else tmp_path / "shots"
    out.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {out}")
    return out


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    profile = tmp_path / "chromium-profile"
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                        headless=True, viewport={"width": 1600, "height": 1000})
        context.set_default_timeout(HANG_MS)
        try:
            yield context.new_page()
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def test_a_researcher_browses_the_sweep(server: MlflowServer, sweep: tuple[Path, Any, list[Any], Any],
                                        page: Any, shots: Path) -> None:
    _, client, children, parent = sweep
    eid = children[0].info.experiment_id
    ids = [c.info.run_id for c in children]

    # The experiment's link (as we print it) opens the training runs table, not the GenAI overview.
    page.goto(f"{server.url}/#/experiments/{eid}?workflowType=machine_learning")
    page.wait_for_url(re.compile(rf"#/experiments/{eid}/runs"))
    page.get_by_role("columnheader", name="Run Name").first.wait_for()
    page.screenshot(path=str(shots / "1_experiment.png"))
    assert "/overview" not in page.url
    assert page.get_by_text("Evaluation runs", exact=True).count() == 0  # the GenAI side nav is not shown

    # The runs table: the sweep's children, with the swept param and the alignment as columns.
    columns = ["params.`noise.level`", "metrics.`align/spearman`"]
    flt = f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    page.goto(f"{server.url}/#/experiments/{eid}/runs?workflowType=machine_learning&searchFilter={quote(flt)}"
              f"&selectedColumns={quote(json.dumps(['attributes.`Run Name`', *columns]))}")
    parent_row = page.get_by_role("row").filter(has_text=parent.info.run_name[:20])
    parent_row.get_by_role("button").first.click()  # children are nested under their parent
    for child in children:
        page.get_by_role("row").filter(has_text=child.info.run_name[:40]).first.wait_for()
    for name in ("noise.level", "align/spearman"):  # MLflow 3.17 shows chosen columns only
        page.get_by_role("button", name="Columns").click()
        page.get_by_role("dialog").get_by_role("textbox").or_(page.get_by_placeholder(re.compile("search", re.I))).first.fill(name)
        page.get_by_role("dialog").get_by_text(name, exact=True).first.click()
        page.keyboard.press("Escape")
        page.get_by_role("columnheader", name=name).first.wait_for()
    page.screenshot(path=str(shots / "2_runs_table.png"))
    headers = page.get_by_role("columnheader").all_inner_texts()
    assert any("noise.level" in h for h in headers), headers
    assert any("align/spearman" in h for h in headers), headers

    # The compare page for the two children; a root-level figure shown side by side.
    page.goto(f"{server.url}/#/compare-runs?runs={quote(json.dumps(ids))}&experiments={quote(json.dumps([eid]))}")
    page.get_by_text("Run details").wait_for()
    page.get_by_text("noise.level", exact=True).first.wait_for()
    figure = page.get_by_text("timeseries.png", exact=True).first
    figure.wait_for()
    with page.expect_response(lambda r: "get-artifact" in r.url and "timeseries.png" in r.url) as first:
        figure.dispatch_event("click")
    assert first.value.status == 200
    images = page.locator("img[src*='timeseries.png'], img[src^='blob:']")
    images.first.wait_for()
    page.wait_for_function("n => [...document.images].filter(i => i.complete && i.naturalWidth > 0).length >= n", arg=2)
    figure.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "3_compare.png"))

    # One run's figure under figures/, as the run page shows it.
    with page.expect_response(lambda r: "get-artifact" in r.url and "figures%2Ftimeseries.png" in r.url) as resp:
        page.goto(f"{server.url}/#/experiments/{eid}/runs/{ids[0]}/artifacts/figures/timeseries.png"
                  "?workflowType=machine_learning")
    assert resp.value.status == 200
    page.wait_for_function("() => [...document.images].some(i => i.complete && i.naturalWidth > 300)")
    page.screenshot(path=str(shots / "4_figure.png"))

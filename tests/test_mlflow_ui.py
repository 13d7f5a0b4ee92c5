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

from helpers.cli import run_cli
from helpers.overrides import QUICK
from helpers.servers import MlflowServer
from helpers.store import store_uri
from helpers.system import require

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HANG_MS = 90_000  # against a hung page only: a loaded CI machine renders in seconds


def _missing_browser() -> str:
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} is missing: bash .ci/system-packages chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is missing (pip install playwright)"
    return ""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, list[Any], Any]:
    """A two-job noise sweep and its report, made with the real CLI: (dir, client, children, parent)."""
    cwd = tmp_path_factory.mktemp("ui")
    proc = run_cli(cwd, "-m", "noise=0,1", *QUICK, "analysis.figures=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (cwd / "stdout.txt").write_text(proc.stdout)  # the links the sweep printed, for the browser to follow
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


@pytest.mark.slow  # shares the browser test's sweep and report (~30 s)
def test_the_sweep_is_recorded_for_the_ui(sweep: tuple[Path, Any, list[Any], Any]) -> None:
    """No browser needed: the experiment kind, the swept-param tag and metric, figures under
    figures/ only (no root-level copies), the parent's sweep overview and the self-contained HTML
    report are in the store."""
    _, client, children, parent = sweep
    exp = client.get_experiment(children[0].info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert len(children) == 2
    for child, level in zip(children, (0.0, 1.0)):
        assert child.data.tags["lvsweep.swept"] == "noise.level"
        assert child.data.metrics["swept/noise.level"] == level
        assert child.data.params["noise.level"] in ("0", "0.0", "1", "1.0")  # the record stays as it was
        files = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert "figures" in files and not any(f.endswith(".png") for f in files), files
        assert "figures/timeseries.png" in {a.path for a in client.list_artifacts(child.info.run_id, "figures")}
    assert parent.data.tags["lvsweep.swept"] == "noise.level"
    assert "sweep_overview.png" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    page = Path(client.download_artifacts(parent.info.run_id, "report/report.html", tempfile.mkdtemp()))
    html = page.read_text()
    assert "data:image/png;base64," in html and "<table>" in html and html.count("<tr>") == 3


@pytest.fixture(scope="module")
def server(sweep: tuple[Path, Any, list[Any], Any]) -> Iterator[MlflowServer]:
    require(_missing_browser())
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


def _close_assistant(page: Any) -> None:
    """MLflow 3.17 opens its "MLflow Assistant" side panel on a first visit, narrowing the page and
    covering the compare page's file list; close it (it stays closed for the session)."""
    close = page.locator("button[data-component-id='mlflow.assistant.chat_panel.close']")
    if close.count():
        close.click()
        close.wait_for(state="detached")


def _choose_column(page: Any, name: str) -> None:
    """Tick one param or metric in the runs table's column chooser (searching narrows the tree)."""
    page.get_by_role("button", name="Columns").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_placeholder("Search columns").fill(name)
    exact = re.compile(rf"^{re.escape(name)}$")  # not swept/noise.level, nor align/spearman_mean
    node = dialog.locator(".du-bois-light-tree-treenode").filter(has_text=exact)
    node.first.locator(".du-bois-light-tree-checkbox").click()
    dialog.locator(".du-bois-light-tree-treenode-checkbox-checked").filter(has_text=exact).first.wait_for()
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")


def _fresh(page: Any, url: str) -> None:
    """Load a page from scratch: a hash change alone keeps the previous view's images in the DOM."""
    page.goto("about:blank")
    page.goto(url)


@pytest.mark.slow  # ~80 s on a loaded 2-core machine: the sweep ~30 s, the server ~25 s, the browsing ~25 s
def test_a_researcher_browses_the_sweep(server: MlflowServer, sweep: tuple[Path, Any, list[Any], Any],
                                        page: Any, shots: Path) -> None:
    _, client, children, parent = sweep
    eid = children[0].info.experiment_id
    ids = [c.info.run_id for c in children]
    levels = [float(c.data.params["noise.level"]) for c in children]
    spearman = [c.data.metrics["align/spearman"] for c in children]
    ml = "workflowType=machine_learning"

    # 1. The experiment's link (as we print it) opens the training runs table, not the GenAI overview.
    page.goto(f"{server.url}/#/experiments/{eid}?{ml}")
    page.wait_for_url(re.compile(rf"#/experiments/{eid}/runs"))
    page.get_by_role("columnheader", name="Run Name").first.wait_for()
    page.screenshot(path=str(shots / "1_experiment.png"))
    assert "/overview" not in page.url
    assert page.get_by_text("Evaluation runs", exact=True).count() == 0  # the GenAI side nav is not shown
    assert page.get_by_role("button", name="Columns").count() == 1  # the training runs table's toolbar
    _close_assistant(page)

    # 2. The runs table: the parent unfolds into the sweep's children, each with the swept param and
    # the alignment in chosen columns (MLflow 3.17 shows no param or metric columns until chosen).
    columns = {"noise.level": "params.`noise.level`", "align/spearman": "metrics.`align/spearman`"}
    for name in columns:
        _choose_column(page, name)
    page.locator(f"[role=row][row-id='{parent.info.run_id}'] button[data-component-id*='runnamecellrenderer']").first.click()
    for run_id in ids:
        page.locator(f".ag-center-cols-container [role=row][row-id='{run_id}']").wait_for()
    # Chosen columns go to the right end of a grid that renders only the columns in view: scroll there.
    page.locator(".ag-body-horizontal-scroll-viewport").evaluate("e => { e.scrollLeft = e.scrollWidth; }")
    for col in columns.values():
        page.locator(f".ag-header-cell[col-id='{col}']").wait_for()
    page.screenshot(path=str(shots / "2_runs_table.png"))
    for run_id, level, rho in zip(ids, levels, spearman):
        row = page.locator(f".ag-center-cols-container [role=row][row-id='{run_id}']")
        assert float(row.locator(f"[col-id='{columns['noise.level']}']").inner_text()) == level
        assert float(row.locator(f"[col-id='{columns['align/spearman']}']").inner_text()) == pytest.approx(rho, abs=1e-9)

    # 3. The compare page for the two children: their noise.level and align/spearman side by side.
    page.goto(f"{server.url}/#/compare-runs?runs={quote(json.dumps(ids))}&experiments={quote(json.dumps([eid]))}&{ml}")
    page.get_by_text("Run details").wait_for()
    order = page.locator("tr").filter(has_text=re.compile(r"^Run ID:")).first.locator("th.data-value").all_inner_texts()
    assert sorted(t.strip() for t in order) == sorted(ids), order
    shown = [levels[ids.index(t.strip())] for t in order], [spearman[ids.index(t.strip())] for t in order]
    param = page.locator("tr").filter(has=page.locator("th").filter(has_text=re.compile(r"^noise\.level$")))
    assert [float(v) for v in param.first.locator("td").all_inner_texts()] == shown[0]
    # Metrics are a virtualised two-part grid, names | values, 45 px rows; the values of a name sit at its
    # height in the other part (rendered ahead of scrolling; MLflow 3.17 does not move the names part
    # when the values part is scrolled programmatically, so the grid is left as it is).
    name = page.get_by_text("align/spearman", exact=True).first
    top = name.evaluate("""e => {
        const cell = e.closest('.ReactVirtualized__Grid__innerScrollContainer > div');
        let box = cell.closest('.ReactVirtualized__Grid');
        while (box.querySelectorAll('.ReactVirtualized__Grid').length < 2) box = box.parentElement;
        [...box.querySelectorAll('.ReactVirtualized__Grid')].find(g => !g.contains(e)).dataset.test = 'metric-values';
        return cell.style.top;
    }""")
    cells = page.locator(".ReactVirtualized__Grid[data-test='metric-values'] .ReactVirtualized__Grid__innerScrollContainer > div"
                         ).filter(has=page.locator(f"xpath=self::*[contains(@style, 'top: {top};')]"))
    cells.nth(1).wait_for()
    assert cells.count() == 2
    by_left = sorted(cells.evaluate_all("cs => cs.map(c => [parseFloat(c.style.left), c.innerText])"))
    assert [float(t) for _, t in by_left] == pytest.approx(shown[1], abs=1e-3)  # shown to 3 decimals
    page.get_by_text("Metrics", exact=True).first.evaluate("e => e.scrollIntoView({block: 'center'})")
    page.screenshot(path=str(shots / "3a_compare_values.png"))
    # 3b. The sweep's figures compared in one image: the parent's sweep_overview.png (the compare page
    # cannot show figures side by side at laptop size, so runs carry no root-level copies for it).
    with page.expect_response(lambda r: "get-artifact" in r.url and "sweep_overview.png" in r.url
                              and parent.info.run_id in r.url) as resp:
        _fresh(page, f"{server.url}/#/experiments/{eid}/runs/{parent.info.run_id}/artifacts/sweep_overview.png?{ml}")
    assert resp.value.status == 200
    page.wait_for_function("() => [...document.images].some(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 300)")
    page.screenshot(path=str(shots / "3b_sweep_overview.png"))

    # 4. One run's figure under figures/, as its run page's artifact view shows it.
    with page.expect_response(lambda r: "get-artifact" in r.url and "figures%2Ftimeseries.png" in r.url
                              and ids[0] in r.url) as resp:
        _fresh(page, f"{server.url}/#/experiments/{eid}/runs/{ids[0]}/artifacts/figures/timeseries.png?{ml}")
    assert resp.value.status == 200
    page.wait_for_function("() => [...document.images].some(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 300)")
    page.screenshot(path=str(shots / "4_run_figure.png"))

    # 5. The sweep's report.html: MLflow renders .html artifacts in a sandboxed iframe (a blob: URL).
    with page.expect_response(lambda r: "get-artifact" in r.url and "report%2Freport.html" in r.url) as resp:
        _fresh(page, f"{server.url}/#/experiments/{eid}/runs/{parent.info.run_id}/artifacts/report/report.html?{ml}")
    assert resp.value.status == 200 and resp.value.headers["content-type"].startswith("text/html")
    report = page.frame_locator("iframe.mlflow-html-iframe")
    report.get_by_role("heading", name=re.compile(r"^Ablation report")).wait_for()
    rows = report.locator("table tr")
    assert rows.count() == 3  # the header and one row per noise level
    assert [float(t) for t in rows.locator("td:first-child").all_inner_texts()] == sorted(levels)
    report.locator("img").first.wait_for()
    assert report.locator("img").first.evaluate("i => i.complete && i.naturalWidth > 0 || new Promise(r => i.onload = () => r(i.naturalWidth > 0))")
    page.screenshot(path=str(shots / "5_report_html.png"))


@pytest.mark.slow  # shares the sweep and the server with the test above (~20 s more)
def test_run_pages_state_the_verdict_and_the_printed_link_opens_the_parent(
        server: MlflowServer, sweep: tuple[Path, Any, list[Any], Any], page: Any, shots: Path) -> None:
    cwd, client, children, parent = sweep
    eid = parents_id = children[0].info.experiment_id
    # 1. The link the sweep printed last opens its parent run's page, whose name is the sweep's.
    printed = re.findall(r"then open (http://127\.0\.0\.1:5000/\S+)", (cwd / "stdout.txt").read_text())
    assert printed and f"/runs/{parent.info.run_id}?" in printed[0], printed
    page.goto(printed[0].replace("http://127.0.0.1:5000", server.url))
    page.get_by_role("heading", name=parent.info.run_name).wait_for()
    _close_assistant(page)
    page.screenshot(path=str(shots / "6_parent_run_page.png"))
    assert f"/experiments/{parents_id}/runs/{parent.info.run_id}" in page.url
    # 2. A child run's page opens on its note: the verdicts the terminal printed, as Markdown.
    child = children[0]
    note = child.data.tags["mlflow.note.content"]
    first_verdict = next(line[2:] for line in note.splitlines() if line.startswith("- "))
    _fresh(page, f"{server.url}/#/experiments/{eid}/runs/{child.info.run_id}?workflowType=machine_learning")
    page.get_by_text("Verdict", exact=True).first.wait_for()
    item = page.locator("li").filter(has_text=first_verdict[:60]).first
    item.wait_for()
    assert first_verdict.startswith(item.inner_text().strip()[:60])
    page.locator("table").filter(has_text="val/r2").first.wait_for()  # the key numbers, as a rendered table
    page.screenshot(path=str(shots / "7_run_page_note.png"))


def _chart(page: Any, title: str) -> Any:
    """The run page's chart card titled `title` (the innermost element holding the title and a plot)."""
    page.get_by_text(title, exact=True).first.wait_for()
    return page.locator("div").filter(has=page.get_by_text(title, exact=True)).filter(
        has=page.locator(".js-plotly-plot")).last


def _chosen(page: Any, box: str) -> list[str]:
    """The items chosen in the compare page's plot control headed `box` ("Parameters:", "Metrics:")."""
    items = page.locator(f"xpath=//div[text()='{box}']/following-sibling::div[1]"
                         "//span[contains(@class, 'selection-item-content')]")
    items.first.wait_for()
    return items.all_inner_texts()


@pytest.mark.slow  # shares the sweep and the server with the tests above (~15 s more)
def test_values_logged_once_are_bars_and_the_compare_page_opens_on_the_objective(
        server: MlflowServer, sweep: tuple[Path, Any, list[Any], Any], page: Any, shots: Path) -> None:
    _, client, children, parent = sweep
    eid, ids = children[0].info.experiment_id, [c.info.run_id for c in children]
    child = children[0]
    # 1. A value logged once (at step 0) is a labelled bar in the run's Model metrics, not a lone dot
    # on an axis one step wide; a history (logged at 0, 20, 40) stays a line.
    page.goto(f"{server.url}/#/experiments/{eid}/runs/{child.info.run_id}/model-metrics?workflowType=machine_learning")
    _close_assistant(page)
    excess = _chart(page, "excess")
    excess.locator(".barlayer .point").first.wait_for()
    labels = excess.locator("text.bartext").evaluate_all("ts => ts.map(t => t.textContent)")
    assert labels == [f"{child.data.metrics['align/excess']:.2f}"]
    history = _chart(page, "anticorrelation")
    history.locator(".scatterlayer .trace").first.wait_for()
    assert history.locator(".barlayer .point").count() == 0
    page.screenshot(path=str(shots / "8_model_metrics_once_as_bars.png"))
    # 2. The compare page's parallel coordinates open on the objective against the swept param.
    page.goto(f"{server.url}/#/compare-runs?runs={quote(json.dumps(ids))}&experiments={quote(json.dumps([eid]))}"
              "&workflowType=machine_learning")
    page.get_by_text("Parallel Coordinates Plot").first.wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    assert _chosen(page, "Metrics:") == ["align/anticorrelation"]
    assert "noise.level" in _chosen(page, "Parameters:")
    page.screenshot(path=str(shots / "9_compare_parallel_coordinates.png"))

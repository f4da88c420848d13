"""The console at ``/ui`` in Chromium against ``serve --demo``: sign in, models, a model, the split (admin, with
confirmation), figures that follow traffic, a read key refused, and charts drawn from the planned stats shape."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from service.schemas.examples import PREDICT_EXAMPLE
from tests.helpers.server import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.integration]

DEMO_SPLIT = [{"version": "1", "weight": 90}, {"version": "2", "weight": 10}]


def _split(server: ServerProcess) -> list[dict[str, Any]]:
    with server.admin() as client:
        return list(client.get("/admin/models/digits/traffic").json()["splits"])


@pytest.fixture
def demo_split(demo_server: ServerProcess) -> Any:
    """Puts the demo's 90/10 split back after a test that changes it."""
    yield
    with demo_server.admin() as client:
        assert client.put("/admin/models/digits/traffic", json={"splits": DEMO_SPLIT}).status_code == 200


def _set_weights(page: Any, weights: dict[str, int]) -> None:
    for version, weight in weights.items():
        page.fill(f"#weight-{version}", str(weight))


def test_admin_sees_models_and_changes_the_split(open_tab: Any, demo_server: ServerProcess, demo_split: Any) -> None:
    tab = open_tab()
    page = tab.page
    page.goto(f"{tab.base_url}/ui")
    page.get_by_label("API key").wait_for()
    tab.shot("console-sign-in")
    tab.sign_in(demo_server.env["MODELPORT_ADMIN_TOKEN"])
    assert page.locator("#role").inner_text() == "admin key"
    assert page.evaluate("Object.keys(sessionStorage)").count("modelport.key") == 1
    assert page.evaluate("Object.keys(localStorage).length") == 0 and page.context.cookies() == []
    row = page.locator("#models-list tr", has_text="digits")
    row.wait_for()
    assert "v1" in row.inner_text() and "v1 90 % · v2 10 %" in row.inner_text()
    tab.shot("console-models")
    page.get_by_label("Search").fill("no-such-model")
    page.get_by_text("No model matches the search.").wait_for()
    page.get_by_label("Search").fill("digi")
    page.get_by_role("link", name="digits").click()

    page.locator("#routing-facts").wait_for()
    versions = page.locator("table", has=page.locator("caption", has_text="Versions"))
    assert "onnx" in versions.inner_text() and "pytorch" in versions.inner_text()
    assert page.locator("code.sha").count() == 2
    assert page.locator("#fact-split").inner_text().endswith("v1 90 % · v2 10 %")

    _set_weights(page, {"1": 60, "2": 40})  # cancelled: nothing changes
    page.locator("#apply-split").click()
    page.locator("#confirm").get_by_role("button", name="Cancel").click()
    assert _split(demo_server) == DEMO_SPLIT

    _set_weights(page, {"1": 50, "2": 50})
    page.locator("#apply-split").click()
    dialog = page.locator("#confirm")
    assert "v1 50 % · v2 50 %" in dialog.inner_text() and "now: v1 90 % · v2 10 %" in dialog.inner_text()
    tab.shot("console-split-confirm")
    page.locator("#confirm-ok").click()
    page.locator("#fact-split", has_text="v1 50 % · v2 50 %").wait_for()
    assert _split(demo_server) == [{"version": "1", "weight": 50}, {"version": "2", "weight": 50}]
    audit = page.locator("table", has=page.locator("caption", has_text="Audit trail"))
    assert "traffic.set" in audit.locator("tbody tr").first.inner_text()
    assert page.locator("#notice").inner_text().startswith("Split set")
    tab.shot("console-model")


def _total_requests(page: Any) -> int:
    cells = page.locator("#figures tbody tr").evaluate_all("rows => rows.map(r => r.children[2].textContent)")
    return sum(int(c) for c in cells if c.isdigit())


def test_figures_follow_traffic(open_tab: Any, demo_server: ServerProcess) -> None:
    tab = open_tab()
    tab.sign_in(demo_server.env["MODELPORT_ADMIN_TOKEN"])
    tab.page.goto(f"{tab.base_url}/ui#/models/digits/compare")
    tab.page.locator("#figures").get_by_role("table").or_(tab.page.locator("#figures .empty")).first.wait_for()
    tab.page.locator("#updated", has_text="Updated").wait_for()
    before = _total_requests(tab.page)
    with httpx.Client(base_url=demo_server.base_url, timeout=30) as client:
        for i in range(20):
            reply = client.post("/v1/models/digits/predict", json=PREDICT_EXAMPLE, headers={"X-Routing-Key": str(i)})
            assert reply.status_code == 200, reply.text
    deadline = time.monotonic() + 15
    while _total_requests(tab.page) < before + 20:
        assert time.monotonic() < deadline, "the figures did not follow the traffic"
        tab.page.wait_for_timeout(250)
    assert tab.page.locator("#control").inner_text() == "v1"
    # the server's own timeline (fleet-wide buckets) is drawn: one line per version that served
    tab.page.locator("[data-chart='chart-requests-per-bucket'] path.line").first.wait_for(state="attached")
    tab.shot("console-compare")


def test_read_key_is_read_only_and_refused(open_tab: Any, demo_server: ServerProcess, read_key: str) -> None:
    tab = open_tab()
    page = tab.page
    tab.sign_in(read_key)
    assert page.locator("#role").inner_text() == "read-only key"
    page.get_by_role("link", name="digits").click()
    page.locator("#split-form").wait_for()
    assert page.locator("#apply-split").is_disabled() and page.locator("#alias-form button").is_disabled()
    assert "need an admin key" in page.locator("#split-form .read-only").inner_text()
    # a stale page or a hand-enabled button still meets the server's refusal, shown plainly
    page.evaluate("document.querySelectorAll('#split-form [disabled]').forEach(el => { el.disabled = false; })")
    _set_weights(page, {"1": 50, "2": 50})
    page.locator("#apply-split").click()
    page.locator("#confirm-ok").click()
    notice = page.locator("#notice.error")
    notice.wait_for()
    assert notice.inner_text().startswith("Refused (403)") and "admin" in notice.inner_text()
    assert _split(demo_server) == DEMO_SPLIT
    tab.shot("console-read-only-refused")


def _estimate(
    control: float, arm: float, interval: list[float], p: float, verdict: str, n_control: int, n_arm: int
) -> dict[str, Any]:
    keys = ("control", "arm", "difference", "interval", "p_value", "verdict", "n_control", "n_arm")
    return dict(zip(keys, (control, arm, round(arm - control, 6), interval, p, verdict, n_control, n_arm), strict=True))


def _planned_stats(points: int) -> dict[str, Any]:
    """The stats response the fleet-wide rebuild will serve (timeline, feedback, sequential verdicts)."""
    now = datetime.now(UTC).replace(microsecond=0)
    timeline = [
        {
            "at": (now - timedelta(minutes=points - i)).isoformat().replace("+00:00", "Z"),
            "versions": {
                "1": {
                    "requests": 10 + i,
                    "errors": i % 2,
                    "latency_ms": {"p50": 1.1, "p99": 4.0 + i},
                    "feedback": {"count": 3, "accuracy": 0.66},
                },
                "2": {"requests": 2 + i, "errors": 0, "latency_ms": {"p50": 1.4, "p99": 5.0}},
            },
        }
        for i in range(points)
    ]
    comparison = {
        "error_rate": _estimate(0.01, 0.02, [-0.01, 0.03], 0.4, "no difference yet", 100, 12),
        "accuracy": _estimate(0.9, 0.95, [0.01, 0.09], 0.01, "better", 40, 10),
        "reward": {},
        "latency_ms": {},
    }
    return {
        "model_name": "digits",
        "control": "1",
        "alpha": 0.05,
        "traffic": DEMO_SPLIT,
        "shadow": {"version": "3", "percent": 20},
        "versions": {
            "1": {
                "requests": 100,
                "errors": 1,
                "error_rate": 0.01,
                "latency_ms": {"p50": 1.2, "p95": 3.0, "p99": 5.1, "mean": 1.5},
                "feedback": {"count": 40, "accuracy": 0.9, "reward_mean": None},
            },
            "2": {"requests": 12},
        },
        "comparison": {"control": "1", "alpha": 0.05, "arms": {"2": comparison}},
        "timeline": {"bucket_s": 60, "points": timeline},
    }


def test_comparison_charts_from_the_planned_stats(open_tab: Any, demo_server: ServerProcess) -> None:
    tab = open_tab()
    page = tab.page
    served: list[str] = []

    def stats(route: Any) -> None:
        served.append(route.request.url)
        route.fulfill(status=200, content_type="application/json", body=json.dumps(_planned_stats(5 + len(served))))

    page.route(re.compile(r".*/admin/models/digits/stats\?.*"), stats)
    tab.sign_in(demo_server.env["MODELPORT_ADMIN_TOKEN"])
    page.goto(f"{tab.base_url}/ui#/models/digits/compare")
    requests_chart = page.locator("[data-chart='chart-requests-per-bucket'] path.line")
    requests_chart.first.wait_for()
    assert requests_chart.count() == 2  # one line per version
    assert page.locator("[data-chart='chart-latency-p50-p99-ms-'] path.line.dashed").count() == 2
    assert page.locator("[data-chart='chart-accuracy'] path.line").count() == 1  # only v1 has feedback
    assert page.locator("[data-chart='chart-reward']").count() == 0
    verdicts = page.locator("#verdicts").inner_text()
    assert "no difference yet" in verdicts and "better" in verdicts
    assert page.locator("#verdicts svg.interval").count() == 2
    assert "window=3600" in served[0] and "bucket=60" in served[0]
    figures = page.locator("#figures tbody tr", has_text="v2").inner_text()
    assert figures.count("—") >= 6  # v2 reports requests only: the rest is a dash, not an error
    first = requests_chart.first.get_attribute("d")
    line = "document.querySelector(`[data-chart='chart-requests-per-bucket'] path.line`)"
    changed = f"before => {line}.getAttribute('d') !== before"
    page.wait_for_function(changed, arg=first, timeout=10_000)  # the next poll redraws with one more bucket
    page.get_by_label("Window").select_option("900")
    page.wait_for_function("() => document.querySelector('#updated').textContent !== ''")
    deadline = time.monotonic() + 10
    while not any("window=900" in url and "bucket=15" in url for url in served):
        assert time.monotonic() < deadline, served[-3:]
        page.wait_for_timeout(200)
    tab.shot("console-compare-charts")


def test_phone_layout_fits_the_screen(open_tab: Any, demo_server: ServerProcess) -> None:
    tab = open_tab(width=390, height=844)
    tab.sign_in(demo_server.env["MODELPORT_ADMIN_TOKEN"])
    tab.page.get_by_role("link", name="digits").click()
    tab.page.locator("#split-form").wait_for()
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= 390  # wide tables scroll in their box
    # keyboard: a new view moves focus to its heading, and Tab continues into the view
    assert tab.page.evaluate("document.activeElement.tagName + ' ' + document.activeElement.textContent") == "H1 digits"
    tab.page.keyboard.press("Tab")
    assert tab.page.evaluate("document.activeElement.textContent") == "Overview"
    tab.shot("console-phone-model")


def _start_rollout(server: ServerProcess) -> dict[str, Any]:
    """v2 of digits against production (v1), held at its first step: an hour's hold and a million samples."""
    body = {
        "candidate": "2",
        "steps": [5, 50, 100],
        "hold_s": 3600,
        "min_samples": 1_000_000,
        "guards": {"max_error_rate_increase": 0.01, "max_latency_ratio": 1.5, "min_shadow_agreement": 0.9},
    }
    with server.admin() as client:
        reply = client.post("/admin/models/digits/rollouts", json=body)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def test_rollout_shown_and_aborted_by_admin_only(
    open_tab: Any, demo_server: ServerProcess, read_key: str, demo_split: Any
) -> None:
    rollout = _start_rollout(demo_server)
    reader = open_tab()
    reader.sign_in(read_key)
    reader.page.goto(f"{reader.base_url}/ui#/models/digits")
    panel = reader.page.locator("#rollout")
    panel.wait_for()
    assert f"Rollout #{rollout['id']}: v2 against v1" in panel.inner_text()
    assert reader.page.locator("#rollout-stage").inner_text() == "step 1 of 3: 5 % of unversioned calls"
    assert reader.page.locator("#abort-rollout").count() == 0
    assert "aborting a rollout needs an admin key" in panel.inner_text()
    reader.shot("console-rollout-read-only")

    tab = open_tab()
    page = tab.page
    tab.sign_in(demo_server.env["MODELPORT_ADMIN_TOKEN"])
    page.goto(f"{tab.base_url}/ui#/models/digits")
    page.locator("#rollout").wait_for()
    assert page.locator("#fact-split").inner_text().endswith("v1 95 % · v2 5 %")
    steps = page.locator("#rollout-steps li")
    assert steps.all_inner_texts() == ["5 %", "50 %", "100 %"]
    assert steps.nth(0).get_attribute("aria-current") == "step"
    guards = page.locator("#rollout-guards tbody tr").all_inner_texts()
    assert len(guards) == 3 and "+1.00 %" in guards[0] and "1.50× control's" in guards[1] and "90.0 %" in guards[2]
    # the controller checks every MODELPORT_ROLLOUT_INTERVAL_S (5 s): once it has, the panel says what it waits for
    page.locator("#abort-rollout").click()
    dialog = page.locator("#confirm")
    assert "Production goes back to v1" in dialog.inner_text()
    dialog.get_by_role("button", name="Cancel").click()
    with demo_server.admin() as client:
        assert client.get(f"/admin/models/digits/rollouts/{rollout['id']}").json()["state"] == "running"
    tab.shot("console-rollout")

    page.locator("#abort-rollout").click()
    page.locator("#confirm-ok").click()
    page.locator("#rollout-last", has_text="aborted").wait_for()
    assert page.locator("#notice").inner_text().startswith(f"Rollout #{rollout['id']} aborted")
    page.locator("#fact-split", has_text="none").wait_for()
    with demo_server.admin() as client:
        assert client.get(f"/admin/models/digits/rollouts/{rollout['id']}").json()["state"] == "aborted"
        assert client.get("/admin/models/digits").json()["aliases"]["production"] == "1"
    assert _split(demo_server) == []
    audit = page.locator("table", has=page.locator("caption", has_text="Audit trail"))
    assert "rollout.abort" in audit.inner_text()

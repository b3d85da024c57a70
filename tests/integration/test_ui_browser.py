"""The web UI in a real headless Chromium, against the real API server with the operator
and its webhooks running: each user runs `cerebelum ui` with their own kubeconfig, so every
request is theirs (the webhook records who decided, and refuses who may not)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import Cluster
from tests.harness.cluster import eventually, free_port
from tests.harness.operator import OperatorProcess
from tests.harness.ui import UiProcess, chromium
from tests.harness.workflows import get, wait_for_phase, wait_for_step_phase, workflow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GATED = workflow(
    "release",
    [
        {"name": "build", "noop": {"with": {"image": "web:1.4"}}},
        {
            "name": "gate",
            "approval": {"approvers": {"users": ["alice"]}, "message": "ship web:1.4?"},
        },
        {"name": "ship", "noop": {}},
    ],
)


@pytest.fixture
def users(cluster: Cluster) -> dict[str, Path]:
    cp = cluster.control_plane
    if cp is None:
        pytest.skip(
            "signs in alice and mallory with client certificates of the local control plane"
        )
    return {u: cp.kubeconfig_for_user(u, ("system:masters",)) for u in ("alice", "mallory")}


@pytest.fixture
def ui(users: dict[str, Path], namespace: str, tmp_path: Path) -> Iterator[dict[str, UiProcess]]:
    started = {}
    try:
        for user, kubeconfig in users.items():
            started[user] = UiProcess(kubeconfig, namespace, tmp_path / f"ui-{user}.log")
            started[user].start()
        yield started
    finally:
        for process in started.values():
            process.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    driver = chromium(tmp_path)
    try:
        yield driver
    finally:
        driver.quit()


def find(driver: Any, css: str, timeout: float = 10) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def _acting(driver: Any, css: str, act: Callable[[Any], None], attempts: int = 5) -> None:
    """Do ``act`` to what matches ``css``, finding it again when a live update replaced it
    between the find and the act (Selenium's stale element): the page re-renders on every
    change of the workflow, putting back what was typed, as a user sees it."""
    from selenium.common.exceptions import StaleElementReferenceException

    for attempt in range(attempts):
        try:
            act(find(driver, css))
            return
        except StaleElementReferenceException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1)


def click(driver: Any, css: str) -> None:
    _acting(driver, css, lambda e: e.click())


def type_into(driver: Any, css: str, text: str) -> None:
    def typed(element: Any) -> None:
        element.clear()  # a retry starts again from nothing
        element.send_keys(text)

    _acting(driver, css, typed)


def text_of(driver: Any, css: str) -> str:
    """The text of what matches, read in one go (a live update may replace the elements)."""
    script = "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent).join(' ')"
    return str(driver.execute_script(script, css))


def wait_text(driver: Any, css: str, needle: str, timeout: float = 10) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if needle in text_of(driver, css):
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} never appeared in {css}: {text_of(driver, css)!r}")


def test_alice_approves_from_waiting_for_me_and_the_page_shows_her_as_decider(
    cluster: Cluster,
    namespace: str,
    webhook_operator: OperatorProcess,
    ui: dict[str, UiProcess],
    browser: Any,
    tmp_path: Path,
) -> None:
    cluster.apply(GATED, namespace)
    wait_for_phase(cluster, namespace, "release", "WaitingForApproval")
    browser.get(ui["alice"].url + "#/waiting")
    find(browser, 'li[data-gate="release/gate"]')
    assert "ship web:1.4?" in text_of(browser, "#waiting")
    browser.save_screenshot(str(tmp_path / "waiting.png"))
    click(browser, 'li[data-gate="release/gate"] a.open')
    type_into(browser, "#reason-gate", "change 42 reviewed")
    browser.save_screenshot(str(tmp_path / "approval-form.png"))
    click(browser, "#gate-gate button.approve")
    browser.switch_to.alert.accept()
    took = wait_text(browser, 'tr[data-step="gate"] .decided', "decidedBy: alice", timeout=5)
    print(f"decidedBy shown {took:.2f}s after the click")
    assert took < 1.5, f"the decision took {took:.2f}s to show"
    assert "reason: change 42 reviewed" in text_of(browser, 'tr[data-step="gate"]')
    done = wait_for_phase(cluster, namespace, "release", "Succeeded")
    assert done["status"]["steps"]["gate"]["approval"]["decidedBy"] == "alice"
    wait_text(browser, "h1", "Succeeded")
    browser.save_screenshot(str(tmp_path / "workflow.png"))


def test_mallory_sees_the_button_disabled_and_a_forced_request_shows_the_refusal(
    cluster: Cluster,
    namespace: str,
    webhook_operator: OperatorProcess,
    ui: dict[str, UiProcess],
    browser: Any,
) -> None:
    cluster.apply(GATED, namespace)
    wait_for_phase(cluster, namespace, "release", "WaitingForApproval")
    browser.get(ui["mallory"].url + "#/waiting")
    find(browser, "#waiting-empty")
    browser.get(ui["mallory"].url + f"#/wf/{namespace}/release")
    button = find(browser, "#gate-gate button.approve")
    assert not button.is_enabled()
    assert "mallory is not among the approvers of gate" in text_of(browser, "#why-gate")
    browser.execute_script("arguments[0].disabled = false", button)  # forced
    button.click()
    browser.switch_to.alert.accept()
    wait_text(browser, "#flash", "mallory may not approve step 'gate'")
    assert get(cluster, namespace, "release")["status"]["phase"] == "WaitingForApproval"


def test_the_graph_of_the_parallel_example_shows_its_branches(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
    ui: dict[str, UiProcess],
    browser: Any,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By

    cluster.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / "parallel.yaml"))
    name = yaml.safe_load((EXAMPLES / "parallel.yaml").read_text())["metadata"]["name"]
    wait_for_phase(cluster, namespace, name, "Succeeded", timeout=30)
    browser.get(ui["alice"].url + f"#/wf/{namespace}/{name}")
    find(browser, 'svg#graph g.node[data-step="go_live"].phase-Succeeded')
    column = {
        n.get_attribute("data-step"): int(n.get_attribute("data-column"))
        for n in browser.find_elements(By.CSS_SELECTOR, "svg#graph g.node")
    }
    assert column["verify_ssh"] == column["verify_http"] == column["provision"] + 1
    assert column["go_live"] == column["verify_ssh"] + 1
    edges = {
        (e.get_attribute("data-from"), e.get_attribute("data-to"))
        for e in browser.find_elements(By.CSS_SELECTOR, "svg#graph path.edge")
    }
    assert {("provision", "verify_ssh"), ("provision", "verify_http")} <= edges
    assert {("verify_ssh", "go_live"), ("verify_http", "go_live")} <= edges
    browser.save_screenshot(str(tmp_path / "graph.png"))
    browser.get(ui["alice"].url + "#/workflows")
    find(browser, f'tr[data-workflow="{name}"]')
    browser.save_screenshot(str(tmp_path / "list.png"))


def test_a_countdown_reaches_zero_and_the_step_moves_on_without_a_reload(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
    ui: dict[str, UiProcess],
    browser: Any,
) -> None:
    cluster.apply(
        workflow(
            "nap", [{"name": "nap", "sleep": {"duration": "6s"}}, {"name": "after", "noop": {}}]
        ),
        namespace,
    )
    wait_for_step_phase(cluster, namespace, "nap", "nap", "Sleeping")
    browser.get(ui["alice"].url + f"#/wf/{namespace}/nap")
    find(browser, 'tr[data-step="nap"] [data-deadline]')
    browser.execute_script("window.sameDocument = true")
    first = text_of(browser, 'tr[data-step="nap"] [data-deadline]')
    assert first.endswith("s") and 0 < int(first[:-1]) <= 6, first
    wait_text(browser, 'tr[data-step="nap"] .step-phase', "Succeeded", timeout=10)
    assert browser.execute_script("return window.sameDocument") is True, "the page reloaded"


def test_an_output_holding_html_renders_as_text(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
    ui: dict[str, UiProcess],
    browser: Any,
) -> None:
    attack = "<img src=x onerror=window.pwned=1><script>window.pwned=2</script>"
    cluster.apply(
        workflow("xss", [{"name": "evil", "noop": {"with": {"html": attack}}, "when": "true"}]),
        namespace,
    )
    wait_for_phase(cluster, namespace, "xss", "Succeeded")
    browser.get(ui["alice"].url + f"#/wf/{namespace}/xss")
    click(browser, 'tr[data-step="evil"] details')
    assert attack in text_of(browser, 'tr[data-step="evil"] pre')
    time.sleep(0.5)
    assert browser.execute_script("return window.pwned") is None
    from selenium.webdriver.common.by import By

    assert browser.find_elements(By.CSS_SELECTOR, "main img, main script") == []


class _Evil(BaseHTTPRequestHandler):
    """Another site, whose page posts a form to the UI as soon as it loads."""

    target = ""

    def do_GET(self) -> None:
        page = (
            f'<form id="f" method="post" action="{self.target}">'
            '<input name="x" value="1"></form><script>document.getElementById("f").submit()</script>'
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(page.encode())

    def log_message(self, *args: Any) -> None:
        pass


def test_a_cross_site_post_is_refused(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
    ui: dict[str, UiProcess],
    browser: Any,
) -> None:
    cluster.apply(workflow("long", [{"name": "nap", "sleep": {"duration": "1h"}}]), namespace)
    wait_for_phase(cluster, namespace, "long", "Sleeping")
    alice = ui["alice"]
    browser.get(alice.url)  # alice has the UI open: its cookies are in this browser
    find(browser, "#workflows")
    _Evil.target = f"{alice.url}api/workflows/{namespace}/long/cancel"
    port = free_port()
    evil = ThreadingHTTPServer(("127.0.0.1", port), _Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://localhost:{port}/")  # another origin
        eventually(lambda: "refused" in browser.page_source or None, timeout=10)
    finally:
        evil.shutdown()
    assert "cross-site request refused" in browser.page_source or "CSRF" in browser.page_source
    time.sleep(1)
    assert get(cluster, namespace, "long")["status"]["phase"] == "Sleeping", "nothing was cancelled"
    # Without the browser: no CSRF token, a foreign Origin, another Host are all refused.
    for headers, status in (
        ({}, 403),
        ({"Origin": "http://evil.example", "X-CSRF-Token": "t", "Cookie": "cerebelum_csrf=t"}, 403),
        ({"Host": f"evil.example:{alice.port}"}, 421),
    ):
        request = urllib.request.Request(
            _Evil.target, data=json.dumps({}).encode(), headers=headers, method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == status
    answer = urllib.request.urlopen(alice.url, timeout=5)
    policy = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy


def test_a_template_runs_from_its_form_and_a_callback_is_answered(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
    ui: dict[str, UiProcess],
    browser: Any,
) -> None:
    from selenium.webdriver.support.ui import Select

    cluster.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / "template.yaml"))
    cluster.kubectl("-n", namespace, "delete", "workflow", "release-1-4-2")
    browser.get(ui["alice"].url + "#/templates")
    type_into(browser, "#input-release-version", "2.0.0")
    Select(find(browser, "#input-release-environment")).select_by_visible_text("production")
    click(browser, 'form[data-template="release"] button[type="submit"]')
    wait_text(browser, "h1", "release-", timeout=10)
    name = browser.current_url.rsplit("/", 1)[1]
    done = wait_for_phase(cluster, namespace, name, "Succeeded", timeout=30)
    assert done["spec"]["inputs"] == {
        "version": "2.0.0",
        "environment": "production",
        "canaryPercent": 10,
    }
    cluster.apply(workflow("ci", [{"name": "build", "callback": {"timeout": "1h"}}]), namespace)
    wait_for_phase(cluster, namespace, "ci", "WaitingForCallback")
    browser.get(ui["alice"].url + f"#/wf/{namespace}/ci")
    type_into(browser, "#callback-data-build", '{"artifact": "web.tar"}')
    click(browser, "#callback-build button.primary")
    browser.switch_to.alert.accept()
    done = wait_for_phase(cluster, namespace, "ci", "Succeeded", timeout=20)
    assert done["status"]["steps"]["build"]["output"] == {"artifact": "web.tar"}

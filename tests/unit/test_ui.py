"""The UI below the browser: its pages as pure functions, and the guard every request passes
(CSRF, Origin, Host, CSP, sign-in), through aiohttp's test client. No API server is needed:
every request here is refused or answered before one would be asked."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cerebelum.ui import views
from cerebelum.ui.identity import LocalIdentity, TokenIdentity
from cerebelum.ui.server import CSRF_COOKIE, UiServer, UiSettings, _action_patch


def wf(name: str, phase: str, created: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
        "spec": {"steps": [{"name": "a", "noop": {}}]},
        "status": {"phase": phase, **status},
    }


def test_the_list_is_newest_first_filtered_searched_and_paged() -> None:
    items = [
        wf(
            f"w{i:03}",
            "Succeeded" if i % 3 else "Failed",
            f"2026-01-01T00:{i // 60:02}:{i % 60:02}Z",
        )
        for i in range(120)
    ]
    page = views.list_page(items, size=50)
    assert page["total"] == 120 and page["pages"] == 3 and page["items"][0]["name"] == "w119"
    assert page["counts"] == {"Succeeded": 80, "Failed": 40}
    failed = views.list_page(items, phases={"Failed"}, size=50, page=9)
    assert failed["total"] == 40 and failed["page"] == 1 and failed["pages"] == 1
    assert [r["name"] for r in views.list_page(items, query="W11")["items"]][:2] == ["w119", "w118"]


GATE: dict[str, Any] = {
    "metadata": {
        "name": "rel",
        "namespace": "ns",
        "annotations": {"cerebelum.io/created-by": "bob"},
    },
    "spec": {
        "steps": [
            {"name": "team", "approval": {"approvers": {"groups": ["ops"]}}},
            {"name": "self", "approval": {"allowSelfApproval": False}},
            {"name": "open", "approval": {}},
        ]
    },
    "status": {
        "phase": "WaitingForApproval",
        "steps": {
            n: {"phase": "WaitingForApproval", "approval": {"deadline": d}}
            for n, d in (
                ("team", "2026-01-01T01:00:00Z"),
                ("self", None),
                ("open", "2026-01-01T00:30:00Z"),
            )
        },
    },
}


def test_waiting_for_me_lists_only_gates_the_user_may_decide_soonest_first() -> None:
    assert [w["step"] for w in views.waiting_for([GATE], "alice", ["ops"])] == [
        "open",
        "team",
        "self",
    ]
    assert [w["step"] for w in views.waiting_for([GATE], "bob", [])] == ["open"]
    allowed, why = views.may_decide(GATE, "self", "bob", [])
    assert not allowed and "refuses self-approval" in why
    assert views.may_decide(GATE, "team", "carol", ["dev"]) == (
        False,
        "carol is not among the approvers of team",
    )


def test_the_graph_lays_out_branches_gotos_and_finally() -> None:
    obj = {
        "spec": {
            "steps": [
                {"name": "a", "noop": {}},
                {"name": "b", "dependsOn": ["a"], "noop": {}},
                {"name": "c", "dependsOn": ["a"], "sleep": {"duration": "1s"}, "noop": {}},
                {
                    "name": "d",
                    "dependsOn": ["b", "c"],
                    "noop": {},
                    "next": [{"when": "false", "goto": "a"}],
                },
            ],
            "finally": [{"name": "z", "noop": {}}],
        },
        "status": {"steps": {"a": {"phase": "Succeeded"}}},
    }
    g = views.graph(obj)
    where = {n["name"]: (n["column"], n["row"]) for n in g["nodes"]}
    assert where == {"a": (0, 0), "b": (1, 0), "c": (1, 1), "d": (2, 0), "z": (3, 0)}
    assert {"from": "d", "to": "a", "type": "goto"} in g["edges"]
    assert {"from": "d", "to": "z", "type": "finally"} in g["edges"]
    kinds = {n["name"]: n["kind"] for n in g["nodes"]}
    assert kinds["c"] == "sleep + noop" and g["nodes"][0]["phase"] == "Succeeded"


def test_actions_are_the_annotations_kubectl_would_write() -> None:
    assert _action_patch("approve", {"step": "gate", "reason": "ok", "data": {"n": 1}}) == {
        "metadata": {
            "annotations": {
                "cerebelum.io/approve": "gate",
                "cerebelum.io/reason": "ok",
                "cerebelum.io/approval-data": '{"n": 1}',
            }
        }
    }
    assert _action_patch("suspend", {}) == {"spec": {"suspend": True}}
    assert _action_patch("cancel", {}) == {
        "metadata": {"annotations": {"cerebelum.io/cancel": "true"}}
    }


class _NoApi:
    async def close(self) -> None:
        pass


async def _client(server: UiServer) -> TestClient:  # type: ignore[type-arg]
    client = TestClient(TestServer(server.app))
    await client.start_server()
    return client


@pytest.mark.asyncio
async def test_writes_need_the_csrf_token_and_a_same_origin() -> None:
    server = UiServer(LocalIdentity(_NoApi()), UiSettings(secure_cookies=False))
    client = await _client(server)
    try:
        page = await client.get("/")
        assert page.status == 200
        token = page.cookies[CSRF_COOKIE].value
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        url = "/api/workflows/ns/w/cancel"
        no_token = await client.post(url, json={})
        assert no_token.status == 403 and "CSRF" in (await no_token.json())["error"]
        wrong = await client.post(url, json={}, headers={"X-CSRF-Token": "guess"})
        assert wrong.status == 403
        foreign = await client.post(
            url, json={}, headers={"X-CSRF-Token": token, "Origin": "http://evil.example"}
        )
        assert foreign.status == 403 and "cross-site" in (await foreign.json())["error"]
        too_big = await client.post(url, data=b"x" * (70 * 1024), headers={"X-CSRF-Token": token})
        assert too_big.status == 413
        escape = await client.get("/static/..%2Fserver.py")
        assert escape.status == 404
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_an_unknown_host_is_refused_against_dns_rebinding() -> None:
    server = UiServer(LocalIdentity(_NoApi()), UiSettings(allowed_hosts=["127.0.0.1:1"]))
    client = await _client(server)
    try:
        answer = await client.get("/", headers={"Host": "evil.example:1"})
        assert answer.status == 421
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_in_cluster_mode_without_a_token_gets_the_login_page() -> None:
    server = UiServer(TokenIdentity("https://127.0.0.1:1", None), UiSettings(mode="cluster"))
    client = await _client(server)
    try:
        page = await client.get("/", allow_redirects=False)
        assert page.status == 302 and page.headers["Location"] == "/login"
        api = await client.get("/api/workflows")
        assert api.status == 401
        login = await client.get("/login")
        assert "Sign in to Cerebelum" in await login.text()
        forged = await client.post("/login", data={"token": "t", "csrf": "nope"})
        assert forged.status == 403
    finally:
        await client.close()

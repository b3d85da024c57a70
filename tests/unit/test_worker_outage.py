"""A worker rides out an API server outage: a result is written once the server is back, and
a claim that failed is looked at again instead of being retried from a stale copy.

The Kubernetes API here is a small in-memory StepRun store with a resourceVersion check and
a switch that makes it unreachable (this is a unit test, below the API layer); the same
paths run against a real kube-apiserver that is killed three times in
``tests/integration/test_api_outage.py``.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from cerebelum.actions.api_retry import object_missing
from cerebelum.api.steprun import StepRunPhase
from cerebelum.worker import loop
from cerebelum.worker.loop import Worker, WorkerSettings
from cerebelum.worker.runner import StepOutcome


def _not_found(details: dict[str, Any]) -> ApiException:
    exc = ApiException(status=404, reason="Not Found")
    exc.body = json.dumps({"kind": "Status", "code": 404, "details": details}).encode()
    return exc


def test_only_a_404_that_names_the_object_means_it_was_deleted() -> None:
    assert object_missing(_not_found({"name": "wf", "kind": "workflows"}), "wf")
    # A starting kube-apiserver answers 404 for a resource it does not serve yet.
    assert not object_missing(_not_found({}), "wf")
    assert not object_missing(_not_found({"name": "other"}), "wf")
    plain = ApiException(status=404, reason="Not Found")
    plain.body = b"404 page not found"
    assert not object_missing(plain, "wf")
    assert not object_missing(ConnectionRefusedError(), "wf")


class _Store:
    """StepRuns by name, with optimistic concurrency and an outage switch."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.version = 1
        self.body["metadata"]["resourceVersion"] = "1"
        self.away = 0  # requests still to refuse
        self.lose_reply = False  # apply the next write but break the connection
        self.writes: list[dict[str, Any]] = []

    def _gate(self) -> None:
        if self.away:
            self.away -= 1
            raise ConnectionRefusedError("connect call failed")

    async def replace_namespaced_custom_object_status(
        self, group: str, version: str, ns: str, plural: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        self._gate()
        if body["metadata"].get("resourceVersion") != str(self.version):
            raise ApiException(status=409, reason="Conflict")
        self.version += 1
        self.body = copy.deepcopy(body)
        self.body["metadata"]["resourceVersion"] = str(self.version)
        self.writes.append(copy.deepcopy(self.body["status"]))
        if self.lose_reply:
            self.lose_reply = False
            raise ConnectionResetError("connection reset by peer")
        return copy.deepcopy(self.body)

    async def get_namespaced_custom_object(
        self, group: str, version: str, ns: str, plural: str, name: str
    ) -> dict[str, Any]:
        self._gate()
        return copy.deepcopy(self.body)


def _steprun() -> dict[str, Any]:
    return {
        "apiVersion": "cerebelum.io/v1alpha1",
        "kind": "StepRun",
        "metadata": {"namespace": "ns", "name": "wf-step-1-1"},
        "spec": {"workflow": "wf", "step": "step", "function": "f", "attempt": 1, "visit": 1},
        "status": {},
    }


def _worker(store: _Store) -> Worker:
    settings = WorkerSettings(
        queue="default", namespaces=("ns",), identity="w1", lease=datetime.timedelta(seconds=30)
    )
    worker = Worker(api=None, settings=settings, functions={})
    worker.custom = store  # type: ignore[assignment]  # a store below the API layer
    return worker


async def test_a_result_is_written_after_the_api_server_comes_back(monkeypatch: Any) -> None:
    monkeypatch.setattr(loop, "_FIRST_RETRY_SECONDS", 0.01)
    store = _Store(_steprun())
    worker = _worker(store)
    claimed = await store.replace_namespaced_custom_object_status(
        "", "", "ns", "", "", {**store.body, "status": {"phase": "Running", "claimedBy": "w1"}}
    )
    holder = loop._Holder(claimed, claims=0)
    store.away = 7  # writes and reads refused for a while, as during a restart
    await asyncio.wait_for(worker._report(("ns", "wf-step-1-1"), holder, StepOutcome(ok=True)), 5)
    assert store.body["status"]["phase"] == StepRunPhase.SUCCEEDED
    assert store.away == 0


async def test_a_result_whose_reply_was_lost_is_found_written_not_written_twice(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(loop, "_FIRST_RETRY_SECONDS", 0.01)
    store = _Store(_steprun())
    worker = _worker(store)
    claimed = await store.replace_namespaced_custom_object_status(
        "", "", "ns", "", "", {**store.body, "status": {"phase": "Running", "claimedBy": "w1"}}
    )
    holder = loop._Holder(claimed, claims=0)
    store.lose_reply = True
    await asyncio.wait_for(worker._report(("ns", "wf-step-1-1"), holder, StepOutcome(ok=True)), 5)
    assert [w["phase"] for w in store.writes] == ["Running", "Succeeded"]


async def test_a_claim_that_failed_is_read_again_not_retried_from_the_stale_copy(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(loop, "_RETRY_SECONDS", 0.01)
    store = _Store(_steprun())
    worker = _worker(store)
    store.lose_reply = True  # the claim lands, its reply does not
    worker.observe("ADDED", copy.deepcopy(store.body))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if not worker.running and not worker._looks and not worker._timers:
            break
    # One claim write, then a read found the StepRun claimed by this worker: it waits for
    # its own lease to run out (a takeover), instead of writing claims from a stale copy.
    assert [w["phase"] for w in store.writes] == ["Running"]
    assert worker.known[("ns", "wf-step-1-1")]["status"]["claimedBy"] == "w1"
    assert ("ns", "wf-step-1-1") in worker._timers
    await worker.stop(0)

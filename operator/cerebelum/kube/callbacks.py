"""The callback endpoint: outside systems ``POST`` to the URL a step handed them.

``POST /callbacks/TOKEN`` (JSON payload: the step's output), ``POST /callbacks/TOKEN/fail``
(``{"message": ...}``: the attempt fails with ``CallbackFailed``) and ``POST
/callbacks/TOKEN/heartbeat``, over HTTPS on the operator's own port.

Every replica serves it, leader or not, and none changes status here: the receiving
replica checks the delivery and records it as an annotation on the Workflow
(``callback.cerebelum.io/STEP``: outcome, payload, the token's hash), written with the
object's resourceVersion as a precondition. The leader reads that annotation like any
other input, applies it, and removes it. A delivery is therefore durable as soon as the
caller gets its 202, whichever replica answered and whether or not a leader is running
at that moment, and it is applied exactly once.

What is refused, and how:

- a token this operator did not sign, for an attempt that is no longer waiting (used,
  expired, revoked by the step ending another way, a workflow deleted and created again),
  or already delivered: the same 404 with the same body. The signature is checked first,
  in constant time, before any lookup, so without a valid token nothing about which
  workflows exist can be learnt;
- a payload over the size limit, not JSON, or not matching ``callback.schema``: 400
  saying why, and the step keeps waiting;
- anything else (other paths, methods, a body that is not ``application/json``): 404,
  405 or 415. No cookie is read, so a cross-site request gains nothing; nothing of the
  request is echoed back.

The token never reaches a log line, an Event or status: only its hash is compared.
"""

from __future__ import annotations

import datetime
import json
import logging
import ssl
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from cerebelum.actions.errors import ApiError
from cerebelum.api import GROUP, PLURAL, VERSION
from cerebelum.api.durations import format_time
from cerebelum.api.spec import CALLBACK_PAYLOAD_LIMIT_BYTES, WorkflowSpec
from cerebelum.api.status import StepPhase
from cerebelum.api.tokens import CallbackIssuer, TokenClaims, token_hash
from cerebelum.engine.callback import payload_problem
from cerebelum.engine.types import CallbackOutcome
from cerebelum.kube import metrics
from cerebelum.kube.failures import describe_failure
from cerebelum.kube.rest import RestClient, path_of
from cerebelum.kube.settings import CALLBACK_RECEIVED_PREFIX, CallbackSettings

logger = logging.getLogger("cerebelum.callbacks")

_NOT_FOUND = {"error": "no such callback"}
_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
_TRIES = 3


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


def _reply(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status, headers=_HEADERS)


class CallbackEndpoint:
    """The HTTP side of callback waits, for one operator process."""

    def __init__(self, rest: RestClient, issuer: CallbackIssuer) -> None:
        self._rest = rest
        self.issuer = issuer
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        # A body past the limit is cut off by aiohttp as it is read, never held whole.
        app = web.Application(client_max_size=CALLBACK_PAYLOAD_LIMIT_BYTES + 1)
        app.router.add_post("/callbacks/{token}", self._succeeded)
        app.router.add_post("/callbacks/{token}/fail", self._failed)
        app.router.add_post("/callbacks/{token}/heartbeat", self._heartbeat)
        app.router.add_get("/healthz", self._health)
        return app

    async def start(self, settings: CallbackSettings) -> None:
        assert settings.port is not None
        context: ssl.SSLContext | None = None
        if settings.cert and settings.cert_key:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(settings.cert, settings.cert_key)
        self._runner = web.AppRunner(self.app(), access_log=None)  # URLs hold tokens
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.addr, settings.port, ssl_context=context)
        await site.start()
        scheme = "https" if context else "http"
        logger.info("callback endpoint on %s://%s:%d", scheme, settings.addr, settings.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- handlers ------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return _reply(200, {"ok": True})

    async def _succeeded(self, request: web.Request) -> web.Response:
        return await self._receive(request, CallbackOutcome.SUCCEEDED)

    async def _failed(self, request: web.Request) -> web.Response:
        return await self._receive(request, CallbackOutcome.FAILED)

    async def _heartbeat(self, request: web.Request) -> web.Response:
        return await self._receive(request, CallbackOutcome.HEARTBEAT)

    async def _receive(self, request: web.Request, outcome: CallbackOutcome) -> web.Response:
        token = request.match_info["token"]
        claims = self.issuer.verify(token)
        if claims is None:
            metrics.CALLBACKS.labels("not_found").inc()
            return _reply(404, _NOT_FOUND)
        try:
            data = await _payload(request, outcome)
            for _ in range(_TRIES):
                try:
                    await self._record(claims, token_hash(token), outcome, data)
                    break
                except ApiError as exc:
                    if exc.status != 409:  # 409: it changed since we read it: look again
                        raise
            else:
                raise _Refused(503, "the workflow keeps changing; try again")
        except _Refused as refused:
            result = "not_found" if refused.status == 404 else "invalid"
            metrics.CALLBACKS.labels(result).inc()
            body = _NOT_FOUND if refused.status == 404 else {"error": refused.message}
            return _reply(refused.status, body)
        except Exception as exc:  # the API server refused or is away: the caller retries
            logger.warning(
                "a callback for %s/%s could not be recorded: %s",
                claims.namespace,
                claims.workflow,
                describe_failure(exc),
            )
            return _reply(503, {"error": "the callback could not be recorded; try again"})
        metrics.CALLBACKS.labels("accepted").inc()
        return _reply(202, {"accepted": True})

    async def _record(
        self, claims: TokenClaims, hashed: str, outcome: CallbackOutcome, data: Any
    ) -> None:
        """Check that the attempt still waits for this callback, then record it durably."""
        # A list by name: the verb the operator's watch needs anyway (no extra RBAC).
        found = await self._rest.request(
            "GET",
            path_of(GROUP, VERSION, PLURAL, claims.namespace),
            params={"fieldSelector": f"metadata.name={claims.workflow}"},
        )
        if not found.get("items"):
            raise _Refused(404, "")
        body: dict[str, Any] = found["items"][0]
        meta = body.get("metadata") or {}
        if meta.get("uid") != claims.uid:
            raise _Refused(404, "")
        status = ((body.get("status") or {}).get("steps") or {}).get(claims.step) or {}
        cb = status.get("callback") or {}
        waiting = status.get("phase") in (StepPhase.WAITING_FOR_CALLBACK, StepPhase.RUNNING)
        if (
            not waiting
            or status.get("visits") != claims.visit
            or cb.get("attempt") != claims.attempt
            or cb.get("tokenHash") != hashed
            or cb.get("receivedAt")
            or cb.get("early")
        ):
            raise _Refused(404, "")
        key = CALLBACK_RECEIVED_PREFIX + claims.step
        pending = (meta.get("annotations") or {}).get(key)
        if pending is not None:
            try:
                previous = json.loads(pending)
            except ValueError:
                previous = {}
            if previous.get("tokenHash") == hashed and previous.get("outcome") != "heartbeat":
                raise _Refused(404, "")  # delivered already, not yet applied
        if outcome == CallbackOutcome.SUCCEEDED:
            try:
                spec = WorkflowSpec.model_validate(body.get("spec") or {})
                problem = payload_problem(spec.step(claims.step), data)
            except (ValidationError, KeyError, StopIteration):
                raise _Refused(404, "") from None
            if problem is not None:
                raise _Refused(400, problem)
        record = {
            "outcome": str(outcome),
            "tokenHash": hashed,
            "data": data,
            "at": format_time(datetime.datetime.now(datetime.UTC)),
        }
        patch = {
            "metadata": {
                "resourceVersion": meta.get("resourceVersion"),
                "annotations": {key: json.dumps(record, separators=(",", ":"))},
            }
        }
        await self._rest.request(
            "PATCH",
            path_of(GROUP, VERSION, PLURAL, claims.namespace, claims.workflow),
            body=patch,
            content_type="application/merge-patch+json",
        )


async def _payload(request: web.Request, outcome: CallbackOutcome) -> Any:
    """The request's JSON body (None if empty), refused with a reason if it is not one."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raw = b"x" * (CALLBACK_PAYLOAD_LIMIT_BYTES + 1)
    if not raw:
        return None
    if len(raw) > CALLBACK_PAYLOAD_LIMIT_BYTES:
        raise _Refused(400, f"the payload is over the {CALLBACK_PAYLOAD_LIMIT_BYTES}-byte limit")
    if request.content_type != "application/json":
        raise _Refused(415, "the payload must be JSON (Content-Type: application/json)")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Refused(400, f"the payload is not JSON: {type(exc).__name__}") from None

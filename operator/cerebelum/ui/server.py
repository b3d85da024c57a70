"""The web UI's HTTP server (aiohttp): a static single-page app and a small JSON API over
the user's own view of Workflows, WorkflowTemplates and CronWorkflows.

Every read and write is made with the requesting user's credentials (``ui.identity``).
What a browser can reach is hardened here, in one place:

- CSRF: every write needs the ``X-CSRF-Token`` header to equal the ``cerebelum_csrf``
  cookie (a cross-site form cannot set a header, nor read the cookie), and an ``Origin``,
  when sent, must be this server;
- a strict Content-Security-Policy (scripts and styles from this server only, no inline
  code, no framing), ``nosniff``, no referrer;
- a Host check (DNS rebinding: a page on another name cannot talk to the local UI);
- small request bodies, and the API server's own refusals passed back as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import web
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from cerebelum.api import API_VERSION, GROUP, KIND, VERSION
from cerebelum.api.annotations import (
    APPROVAL_DATA,
    APPROVE,
    CALLBACK,
    CALLBACK_DATA,
    CALLBACK_OUTCOME,
    CANCEL,
    CHOICE,
    REASON,
    REJECT,
)
from cerebelum.api.cronworkflow import CRON_PLURAL, run_manifest
from cerebelum.api.workflowtemplate import TEMPLATE_PLURAL, InvalidInputs, resolve
from cerebelum.ui import views
from cerebelum.ui.cache import WatchCache
from cerebelum.ui.identity import LocalIdentity, Session, TokenIdentity

logger = logging.getLogger(__name__)

CSRF_COOKIE = "cerebelum_csrf"
TOKEN_COOKIE = "cerebelum_token"
MAX_BODY = 64 * 1024
HEARTBEAT_SECONDS = 15.0
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_SESSION = web.RequestKey("session", Session)


@dataclass
class UiSettings:
    namespace: str = "default"
    #: Host headers accepted (host:port); empty: any (behind an Ingress that checks it).
    allowed_hosts: list[str] = field(default_factory=list)
    #: Cookies only over HTTPS (the in-cluster default; local mode is plain http).
    secure_cookies: bool = True
    #: Mode shown to the browser: "local" (the kubeconfig's user) or "cluster" (tokens).
    mode: str = "local"


def _static(name: str) -> bytes:
    return (resources.files("cerebelum.ui") / "static" / name).read_bytes()


_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}


class UiServer:
    def __init__(self, identity: LocalIdentity | TokenIdentity, settings: UiSettings) -> None:
        self.identity = identity
        self.settings = settings
        self.app = web.Application(
            client_max_size=MAX_BODY, middlewares=[self._guard, self._authenticate]
        )
        r = self.app.router
        r.add_get("/", self.index)
        r.add_get("/login", self.login_page)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        r.add_get("/static/{file}", self.static)
        r.add_get("/healthz", self.healthz)
        r.add_get("/api/me", self.me)
        r.add_get("/api/workflows", self.workflows)
        r.add_get("/api/waiting", self.waiting)
        r.add_get("/api/workflows/{ns}/{name}", self.workflow)
        r.add_post("/api/workflows/{ns}/{name}/{action}", self.act)
        r.add_get("/api/stream", self.stream)
        r.add_get("/api/templates", self.templates)
        r.add_post("/api/templates/{ns}/{name}/submit", self.submit)
        r.add_get("/api/crons", self.crons)
        r.add_post("/api/crons/{ns}/{name}/trigger", self.trigger)
        self.app.on_cleanup.append(self._close)

    async def _close(self, _: web.Application) -> None:
        await self.identity.close()

    # -- the guard every request passes ----------------------------------------------------

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        allowed = self.settings.allowed_hosts
        if allowed and request.host not in allowed:
            return _headers(web.Response(status=421, text="unknown host\n"))
        if request.method not in ("GET", "HEAD"):
            problem = self._csrf_problem(request)
            if problem:
                return _headers(web.json_response({"error": problem}, status=403))
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            _headers(exc)
            raise
        except ApiException as exc:
            response = web.json_response({"error": _api_message(exc)}, status=exc.status or 502)
        return _headers(response)

    def _csrf_problem(self, request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        if origin is not None and origin not in (
            f"http://{request.host}",
            f"https://{request.host}",
        ):
            return f"cross-site request refused (Origin {origin[:100]})"
        if request.headers.get("Sec-Fetch-Site") == "cross-site":
            return "cross-site request refused"
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = request.headers.get("X-CSRF-Token")
        if sent is None and request.path == "/login":
            return None  # checked against the form's field (a login form cannot set headers)
        if not cookie or not sent or not hmac.compare_digest(cookie, sent):
            return "missing or wrong CSRF token: reload the page"
        return None

    @web.middleware
    async def _authenticate(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in ("/login", "/healthz") or request.path.startswith("/static/"):
            return await handler(request)
        token = None
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            token = header[7:].strip()
        token = token or request.cookies.get(TOKEN_COOKIE)
        session = await self.identity.session_for(token)
        if session is None:
            if request.path.startswith("/api/"):
                return web.json_response({"error": "not signed in"}, status=401)
            raise web.HTTPFound("/login")
        request[_SESSION] = session
        return await handler(request)

    # -- pages ------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        response = web.Response(body=_static("index.html"), content_type="text/html")
        self._ensure_csrf(request, response)
        return response

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        response = web.Response(body=_static("login.html"), content_type="text/html")
        self._ensure_csrf(request, response)
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = str(form.get("csrf") or "")
        if not cookie or not hmac.compare_digest(cookie, sent):
            return web.json_response({"error": "missing or wrong CSRF token"}, status=403)
        token = str(form.get("token") or "").strip()
        session = await self.identity.session_for(token) if token else None
        if session is None:
            raise web.HTTPFound("/login?error=1")
        try:
            await session.whoami()
        except ApiException:
            raise web.HTTPFound("/login?error=1") from None
        response = web.HTTPFound("/")
        response.set_cookie(
            TOKEN_COOKIE,
            token,
            httponly=True,
            secure=self.settings.secure_cookies,
            samesite="Strict",
            max_age=8 * 3600,
        )
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        response = web.HTTPFound("/login")
        response.del_cookie(TOKEN_COOKIE)
        raise response

    def _ensure_csrf(self, request: web.Request, response: web.StreamResponse) -> None:
        if not request.cookies.get(CSRF_COOKIE):
            response.set_cookie(
                CSRF_COOKIE,
                secrets.token_urlsafe(32),
                secure=self.settings.secure_cookies,
                samesite="Strict",
            )

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["file"]
        kind = next((t for ext, t in _TYPES.items() if name.endswith(ext)), None)
        if kind is None or "/" in name or name.startswith("."):
            raise web.HTTPNotFound()
        try:
            body = _static(name)
        except (FileNotFoundError, IsADirectoryError):
            raise web.HTTPNotFound() from None
        return web.Response(body=body, content_type=kind)

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok\n")

    # -- reading --------------------------------------------------------------------------

    def _session(self, request: web.Request) -> Session:
        return request[_SESSION]

    def _namespace(self, request: web.Request) -> str:
        ns = request.query.get("ns") or self.settings.namespace
        if not ns or len(ns) > 63:
            raise web.HTTPBadRequest(text="bad namespace")
        return ns

    async def _cache(self, request: web.Request) -> WatchCache:
        session = self._session(request)
        ns = self._namespace(request)
        async with session.lock:
            cache = session.caches.get(ns)
            if cache is None:
                cache = WatchCache(session.api, ns)
                session.caches[ns] = cache
                cache.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(cache.ready.wait(), 10)
        if cache.error is not None:
            raise cache.error
        return cache

    async def me(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        user, groups = await session.whoami()
        ns = self._namespace(request)
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    group=GROUP, resource="workflows", verb="patch", namespace=ns
                )
            )
        )
        answer = await client.AuthorizationV1Api(session.api).create_self_subject_access_review(
            review
        )
        return web.json_response(
            {
                "user": user,
                "groups": groups,
                "namespace": ns,
                "mode": self.settings.mode,
                "canPatch": bool(answer.status.allowed),
            }
        )

    async def workflows(self, request: web.Request) -> web.StreamResponse:
        cache = await self._cache(request)
        q = request.query
        phases = {p for p in (q.get("phase") or "").split(",") if p}
        try:
            page, size = int(q.get("page") or 1), int(q.get("size") or views.PAGE_SIZE)
        except ValueError:
            raise web.HTTPBadRequest(text="page and size are numbers") from None
        return web.json_response(
            views.list_rows(
                cache.rows.values(), phases=phases, query=q.get("q") or "", page=page, size=size
            )
        )

    async def waiting(self, request: web.Request) -> web.StreamResponse:
        cache = await self._cache(request)
        user, groups = await self._session(request).whoami()
        return web.json_response({"items": views.waiting_for(cache.items.values(), user, groups)})

    async def workflow(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        ns, name = request.match_info["ns"], request.match_info["name"]
        custom = client.CustomObjectsApi(session.api)
        obj = await custom.get_namespaced_custom_object(GROUP, VERSION, ns, "workflows", name)
        user, groups = await session.whoami()
        out = views.detail(obj, user, groups)
        try:
            events = await client.CoreV1Api(session.api).list_namespaced_event(
                ns, field_selector=f"involvedObject.name={name},involvedObject.kind={KIND}"
            )
            out["events"] = [
                {
                    "type": e.type,
                    "reason": e.reason,
                    "message": e.message,
                    "time": (e.last_timestamp or e.event_time or e.metadata.creation_timestamp)
                    and str(e.last_timestamp or e.event_time or e.metadata.creation_timestamp),
                    "count": e.count,
                }
                for e in events.items
            ][-50:]
        except ApiException:
            out["events"] = None  # the user may not read Events: the page says so
        return web.json_response(out)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: a line per change of a workflow in the namespace."""
        cache = await self._cache(request)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        _headers(response)
        await response.prepare(request)
        queue = cache.subscribe()
        try:
            await response.write(b"event: ready\ndata: {}\n\n")
            while True:
                try:
                    change = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    await response.write(b": heartbeat\n\n")
                    continue
                await response.write(f"event: change\ndata: {json.dumps(change)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            cache.unsubscribe(queue)
        return response

    async def templates(self, request: web.Request) -> web.StreamResponse:
        session, ns = self._session(request), self._namespace(request)
        listed = await client.CustomObjectsApi(session.api).list_namespaced_custom_object(
            GROUP, VERSION, ns, TEMPLATE_PLURAL
        )
        items = [
            {"name": t["metadata"]["name"], "inputs": (t.get("spec") or {}).get("inputs") or {}}
            for t in listed["items"]
        ]
        return web.json_response({"items": items})

    async def crons(self, request: web.Request) -> web.StreamResponse:
        session, ns = self._session(request), self._namespace(request)
        listed = await client.CustomObjectsApi(session.api).list_namespaced_custom_object(
            GROUP, VERSION, ns, CRON_PLURAL
        )
        items = [
            {
                "name": c["metadata"]["name"],
                "schedule": (c.get("spec") or {}).get("schedule"),
                "suspend": bool((c.get("spec") or {}).get("suspend")),
                "status": c.get("status") or {},
            }
            for c in listed["items"]
        ]
        return web.json_response({"items": items})

    # -- writing (each as the user) -----------------------------------------------------------

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text="the body must be JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="the body must be a JSON object")
        return body

    async def act(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        ns, name, action = (request.match_info[k] for k in ("ns", "name", "action"))
        body = await self._body(request)
        patch = _action_patch(action, body)
        custom = client.CustomObjectsApi(session.api)
        await custom.patch_namespaced_custom_object(  # type: ignore[call-arg]
            GROUP,
            VERSION,
            ns,
            "workflows",
            name,
            patch,
            _content_type="application/merge-patch+json",
        )
        return web.json_response({"ok": True, "action": action})

    async def submit(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        ns, name = request.match_info["ns"], request.match_info["name"]
        body = await self._body(request)
        inputs = body.get("inputs") or {}
        if not isinstance(inputs, dict):
            raise web.HTTPBadRequest(text="inputs must be an object")
        custom = client.CustomObjectsApi(session.api)
        template = await custom.get_namespaced_custom_object(
            GROUP, VERSION, ns, TEMPLATE_PLURAL, name
        )
        spec: dict[str, Any] = {"templateRef": {"name": name}, "inputs": inputs}
        try:
            resolve(template, spec)
        except (InvalidInputs, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=422)
        manifest = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"generateName": f"{name[:57]}-"},
            "spec": spec,
        }
        created = await custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, "workflows", manifest
        )
        return web.json_response({"name": created["metadata"]["name"]})

    async def trigger(self, request: web.Request) -> web.StreamResponse:
        import datetime

        session = self._session(request)
        ns, name = request.match_info["ns"], request.match_info["name"]
        custom = client.CustomObjectsApi(session.api)
        cron = await custom.get_namespaced_custom_object(GROUP, VERSION, ns, CRON_PLURAL, name)
        now = datetime.datetime.now(datetime.UTC)
        run = f"{name[:45]}-manual-{int(now.timestamp())}"
        created = await custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, "workflows", run_manifest(cron, run, now)
        )
        return web.json_response({"name": created["metadata"]["name"]})


def _text(body: dict[str, Any], key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise web.HTTPBadRequest(text=f"{key} must be text of at most {limit} characters")
    return value


def _action_patch(action: str, body: dict[str, Any]) -> dict[str, Any]:
    """The merge patch of one action: the same annotations `kubectl annotate` and the CLI
    write, so the webhook and the operator see exactly what they always see."""
    step = _text(body, "step", 63)
    reason = _text(body, "reason", 1024)
    annotations: dict[str, str | None] = {}
    if action in ("approve", "reject"):
        if not step:
            raise web.HTTPBadRequest(text="which step?")
        annotations[APPROVE if action == "approve" else REJECT] = step
        annotations[REASON] = reason
        if action == "approve":
            if "data" in body and body["data"] is not None:
                annotations[APPROVAL_DATA] = json.dumps(body["data"])[: 32 * 1024]
            annotations[CHOICE] = _text(body, "choice", 63)
        return {"metadata": {"annotations": {k: v for k, v in annotations.items() if v}}}
    if action == "signal":
        if not step:
            raise web.HTTPBadRequest(text="which step?")
        annotations[CALLBACK] = step
        if body.get("data") is not None:
            annotations[CALLBACK_DATA] = json.dumps(body["data"])[: 32 * 1024]
        outcome = _text(body, "outcome", 16)
        if outcome not in (None, "failed", "heartbeat"):
            raise web.HTTPBadRequest(text="outcome is failed or heartbeat")
        annotations[CALLBACK_OUTCOME] = outcome
        return {"metadata": {"annotations": {k: v for k, v in annotations.items() if v}}}
    if action == "cancel":
        return {"metadata": {"annotations": {CANCEL: "true"}}}
    if action in ("suspend", "resume"):
        return {"spec": {"suspend": action == "suspend"}}
    raise web.HTTPNotFound(text=f"no action {action!r}")


def _api_message(exc: ApiException) -> str:
    try:
        message = json.loads(exc.body or b"{}").get("message") or ""
    except (ValueError, TypeError, AttributeError):
        message = ""
    return str(message or f"the API server answered HTTP {exc.status}")


def _headers(response: web.StreamResponse) -> web.StreamResponse:
    if response.prepared:
        return response
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers.setdefault("Cache-Control", "no-store")
    return response

"""Sending notices (``engine.notify`` decides what and when; this sends one).

The target's webhook URL is read from its Secret on each send (it is a secret: Slack's
holds a token) and scrubbed from anything reported. The body says what waits, since and
until when, who may decide and how (the exact ``kubectl annotate`` and ``cerebelum``
commands). Every send carries the notice's dedupe key, in the body and as the
``Idempotency-Key`` header, so a receiver can drop the resend a restart may cause.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cerebelum.actions import ActionContext
from cerebelum.actions.errors import ActionError
from cerebelum.api.durations import format_time, parse_time
from cerebelum.kube import settings as names

_GENERIC = "Generic"


@dataclass(frozen=True)
class NotifySettings:
    #: The web UI's address: a notice links to the workflow's (and step's) page there.
    ui_url: str | None = None


def page_link(ui_url: str | None, namespace: str | None, name: str | None) -> str | None:
    """The UI's page of a workflow (None without a UI)."""
    if not (ui_url and namespace and name):
        return None
    return f"{ui_url.rstrip('/')}/#/wf/{quote(namespace)}/{quote(name)}"


def _when(stamp: Any) -> str | None:
    if not stamp:
        return None
    try:
        return format_time(parse_time(str(stamp)))
    except ValueError:
        return None


def describe(params: dict[str, Any], ui_url: str | None = None) -> dict[str, Any]:
    """The notice's facts, and the sentence and commands a person reads (and, with a UI,
    the link to the workflow's page, where the gate can be answered)."""
    notice = params.get("notice") or {}
    wf = params.get("workflow") or {}
    name, namespace, step = wf.get("name"), wf.get("namespace"), notice.get("step")
    event = notice.get("event")
    since, until = _when(notice.get("since")), _when(notice.get("until"))
    how: list[str] = []
    who = None
    if event == "ApprovalRequested":
        approval = params.get("approval") or {}
        approvers = approval.get("approvers") or {}
        people = [*approvers.get("users", []), *(f"group {g}" for g in approvers.get("groups", []))]
        who = ", ".join(people) or "anyone allowed to annotate the workflow"
        text = f"Workflow {namespace}/{name}: step {step} waits for approval"
        if approval.get("message"):
            text += f": {approval['message']}"
        how = [
            f"kubectl -n {namespace} annotate workflow {name} {names.APPROVE}={step}",
            f"kubectl -n {namespace} annotate workflow {name} {names.REJECT}={step} "
            f"{names.REASON}='why'",
            f"cerebelum -n {namespace} approve {name} {step}",
        ]
    elif event == "CallbackRequested":
        text = f"Workflow {namespace}/{name}: step {step} waits for a callback"
        how = [
            f"kubectl -n {namespace} annotate workflow {name} {names.CALLBACK}={step} "
            f"{names.CALLBACK_DATA}='{{...}}'",
            f"cerebelum -n {namespace} signal {name} {step} --data '{{...}}'",
        ]
    else:
        text = f"Workflow {namespace}/{name} {str(event).lower()}"
        if wf.get("message"):
            text += f": {wf['message']}"
    if since:
        text += f" (since {since}" + (f", until {until})" if until else ")")
    if who:
        text += f"; who may decide: {who}"
    link = page_link(ui_url, namespace, name)
    if link:
        how = [f"open {link}", *how]
    return {
        "link": link,
        "text": text,
        "workflow": name,
        "namespace": namespace,
        "step": step,
        "event": event,
        "since": since,
        "until": until,
        "whoMayDecide": who,
        "how": how,
        "dedupeKey": notice.get("key"),
    }


def body(params: dict[str, Any], ui_url: str | None = None) -> dict[str, Any]:
    facts = describe(params, ui_url)
    if ((params.get("target") or {}).get("format") or _GENERIC) == _GENERIC:
        return facts
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": facts["text"]}}
    ]
    if facts["how"]:
        commands = "\n".join(f"`{c}`" for c in facts["how"])
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": commands}})
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"dedupe key {facts['dedupeKey']}"}],
        }
    )
    return {"text": facts["text"], "blocks": blocks}


async def send(params: dict[str, Any], context: ActionContext) -> Any:
    """POST the notice to its target; any non-2xx answer is a failed send (retried)."""
    import aiohttp

    ref = (params.get("target") or {}).get("urlSecretRef") or {}
    url = await context.secrets.read(ref.get("name", ""), ref.get("key", ""))
    timeout = aiohttp.ClientTimeout(
        total=(context.timeout or datetime.timedelta(seconds=10)).total_seconds()
    )
    headers = {"Idempotency-Key": context.idempotency_key}
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(
            url.strip(),
            json=body(params, getattr(context.settings, "ui_url", None)),
            headers=headers,
        ) as reply,
    ):
        if reply.status >= 300:
            raise ActionError(
                "NotificationRefused", f"the target answered HTTP {reply.status}", retryable=True
            )
    return {"sent": True}

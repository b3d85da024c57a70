"""The ``spec`` of a Workflow: what to run, in which order, and how to wait.

Every description here is what ``kubectl explain workflow.spec...`` prints, so it is
written for the user. Cross-field rules that the schema cannot state are the
``x-kubernetes-validations`` attached with ``rules(...)``, checked by the API server itself.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from cerebelum.api.base import ApiModel
from cerebelum.api.durations import Duration
from cerebelum.api.templates import MAX_EXPRESSION_LENGTH, bounds_problem, templated_problems

STEP_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
StepName = Annotated[str, Field(pattern=STEP_NAME_PATTERN, min_length=1, max_length=63)]


def _bounded_expression(text: str) -> str:
    problem = bounds_problem(text)
    if problem:
        raise ValueError(f"the expression {problem}")
    return text


Expression = Annotated[
    str,
    Field(min_length=1, max_length=MAX_EXPRESSION_LENGTH),
    AfterValidator(_bounded_expression),
]

#: Action kinds a step may carry; at most one per step.
ACTION_KINDS = ("noop", "fail", "http", "tcp", "ssh", "digitalocean", "job", "python")


def rules(*pairs: tuple[str, str] | tuple[str, str, str]) -> dict[str, Any]:
    """``x-kubernetes-validations`` for a model: (rule, message[, fieldPath]) tuples."""
    out = []
    for pair in pairs:
        rule: dict[str, str] = {"rule": pair[0], "message": pair[1]}
        if len(pair) == 3:
            rule["fieldPath"] = pair[2]
        out.append(rule)
    return {"x-kubernetes-validations": out}


def count_present(fields: tuple[str, ...]) -> str:
    """CEL: how many of ``fields`` ``self`` has. A sum of conditionals, not a list filtered:
    the API server evaluates these rules on every create, and building and folding a list
    made them its dearest part (``bench/status_cost.py``)."""
    return "(" + " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in fields) + ")"


class NoopAction(ApiModel):
    """An action that does nothing and returns ``with`` as its output. For tests, demos and
    for shaping data: ``with`` values may use ${{ }} expressions."""

    with_: dict[str, Any] | None = Field(
        default=None,
        alias="with",
        description="The step's output. Strings may contain ${{ expr }} expressions.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class FailAction(ApiModel):
    """An action that fails, for testing retries and error routing. With ``times`` it fails
    that many attempts of each visit and then succeeds."""

    error_class: str = Field(
        default="Transient",
        max_length=63,
        description="Error class reported by the failure (matched by retry.retryOn and next[].when).",
    )
    message: str = Field(default="failed on purpose", max_length=1024, description="Error message.")
    retryable: bool = Field(default=True, description="Whether the error may be retried.")
    times: int | None = Field(
        default=None,
        ge=0,
        description="Fail only the first N attempts of a visit, then succeed. Unset: always fail.",
    )


class SecretKeyRef(ApiModel):
    """A key of a Secret in the Workflow's namespace. Its value is read when the action
    runs and never written to status, Events or logs."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    key: str = Field(min_length=1, max_length=253, description="Key within the Secret.")


class SecretHeader(ApiModel):
    """A request header whose value comes from a Secret."""

    name: str = Field(min_length=1, max_length=256, description="Header name, e.g. Authorization.")
    secret_key_ref: SecretKeyRef = Field(description="Where the value is.")
    prefix: str | None = Field(
        default=None, max_length=64, description='Put before the value, e.g. "Bearer ".'
    )


class HttpMethod(StrEnum):
    GET = "GET"
    HEAD = "HEAD"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"


class HttpAction(ApiModel):
    """Action: an HTTP request. Output: {status, headers, body} (JSON parsed when the reply is
    JSON; large bodies are cut to 16 KiB with truncated: true). Transport errors, timeouts, 429
    and 5xx are retryable (Retry-After is honoured); other unexpected statuses are not, unless
    listed in retryableStatus. POST/PUT/PATCH send an Idempotency-Key header."""

    url: str = Field(min_length=1, max_length=4096, description="The URL; may use ${{ }}.")
    method: HttpMethod | None = Field(default=None, description="HTTP method (default GET).")
    headers: dict[str, str] | None = Field(default=None, description="Request headers.")
    headers_from: list[SecretHeader] | None = Field(
        default=None, max_length=16, description="Headers whose values come from Secrets."
    )
    body: Any | None = Field(
        default=None,
        description="JSON request body; strings may use ${{ }}.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    body_text: str | None = Field(
        default=None, max_length=65536, description="Raw text request body."
    )
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        default=None, max_length=32, description="Statuses that mean success (default: any 2xx)."
    )
    retryable_status: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        default=None,
        max_length=32,
        description="Extra statuses to treat as retryable (429 and 5xx always are).",
    )


class TcpAction(ApiModel):
    """Action: check that a TCP port accepts connections (e.g. that SSH answers). Output:
    {reachable: true, latencyMs}. A refused or timed-out connection is a retryable error."""

    host: str = Field(min_length=1, max_length=253, description="Host name or IP; may use ${{ }}.")
    port: int | str = Field(
        description="Port number (or an expression giving one).",
        json_schema_extra={"x-kubernetes-int-or-string": True},
    )
    connect_timeout: Duration | None = Field(
        default=None, description="Limit for the connection (default 5s)."
    )


class DigitalOceanAction(ApiModel):
    """Action: a DigitalOcean API call through the official pydo client. droplets.create is
    exactly-once: the droplet is tagged with a key derived from the workflow and step, and an
    existing droplet with that tag is returned instead of creating a second one. 429 and 5xx
    are retryable with the Retry-After the API sends."""

    token_secret_ref: SecretKeyRef = Field(description="Secret key holding the API token.")
    call: str = Field(
        description="The operation, e.g. droplets.create, droplets.get, droplets.list, droplets.delete, "
        "droplet_actions.post, actions.get.",
        max_length=64,
    )
    params: dict[str, Any] | None = Field(
        default=None,
        description="Path and query parameters, e.g. {droplet_id: ...} or {tag_name: ...}.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    body: dict[str, Any] | None = Field(
        default=None,
        description="Request body (for create and post calls).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    endpoint: str | None = Field(
        default=None, max_length=1024, description="API endpoint (default: the operator's setting)."
    )


class SecretEnv(ApiModel):
    """An environment variable whose value comes from a Secret (the operator never reads it:
    the kubelet does)."""

    name: str = Field(min_length=1, max_length=253, description="Variable name.")
    secret_key_ref: SecretKeyRef = Field(description="Where the value is.")


class Resources(ApiModel):
    """Container resources, as in a Pod spec."""

    requests: dict[str, str] | None = Field(
        default=None, description="e.g. {cpu: 100m, memory: 128Mi}."
    )
    limits: dict[str, str] | None = Field(
        default=None, description="e.g. {cpu: 500m, memory: 256Mi}."
    )


class JobAction(ApiModel):
    """Action: run a container as a Kubernetes Job owned by the Workflow. The step succeeds
    or fails with the Job. If the container writes JSON to its termination message
    (/dev/termination-log), that JSON is the step's output. Job names are derived from the
    step's attempt, so a restarted operator finds its Job instead of creating a second one;
    a cancelled or timed-out attempt deletes its Job."""

    image: str = Field(min_length=1, max_length=1024, description="Container image.")
    command: list[str] | None = Field(
        default=None, max_length=64, description="Entrypoint; may use ${{ }}."
    )
    args: list[str] | None = Field(
        default=None, max_length=256, description="Arguments; may use ${{ }}."
    )
    env: dict[str, str] | None = Field(
        default=None, description="Environment; values may use ${{ }}."
    )
    env_from_secrets: list[SecretEnv] | None = Field(
        default=None, max_length=64, description="Environment variables taken from Secrets."
    )
    resources: Resources | None = Field(default=None, description="Requests and limits.")
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, description="Limit for the whole Job."
    )
    backoff_limit: int | None = Field(
        default=None, ge=0, le=100, description="Pod retries inside the Job (default 0)."
    )
    service_account_name: str | None = Field(
        default=None, max_length=253, description="Service account of the pod."
    )


class KnownHosts(
    ApiModel,
    json_schema_extra=rules(
        (
            "has(self.inline) != has(self.secretKeyRef)",
            "knownHosts needs exactly one of inline or secretKeyRef",
        ),
    ),
):
    """Host keys to trust, in OpenSSH's known_hosts format: one ``HOST KEYTYPE KEY`` per
    line, ``[host]:port`` for a port other than 22 (what ``ssh-keyscan -p PORT HOST`` prints)."""

    inline: str | None = Field(
        default=None, max_length=65536, description="The known_hosts lines themselves."
    )
    secret_key_ref: SecretKeyRef | None = Field(
        default=None, description="A Secret key holding the known_hosts lines."
    )


class SshAction(
    ApiModel,
    json_schema_extra=rules(
        (
            "has(self.knownHosts) != (has(self.acceptNew) && self.acceptNew)",
            "ssh needs exactly one host key policy: knownHosts (pinned) or acceptNew: true "
            "(trust on first use)",
        ),
        ("!(has(self.command) && has(self.script))", "ssh takes command or script, not both"),
    ),
):
    """Action: log in over SSH with a key (asyncssh) and, optionally, run a command or a
    script. Without either it only connects and authenticates. Output: {exitStatus, stdout,
    stderr, hostKeyFingerprint}; stdout and stderr are cut at 16 KiB each (truncated: true).
    Errors: ConnectionRefused, Unreachable, Timeout, AuthFailed (all retryable: cloud-init
    often opens sshd before the key is installed), HostKeyMismatch (never retried),
    NonZeroExit (error.details holds exitStatus, stdout, stderr), InvalidAction."""

    host: str = Field(min_length=1, max_length=253, description="Host name or IP; may use ${{ }}.")
    port: int | str | None = Field(
        default=None,
        description="Port (default 22), or an expression giving one.",
        json_schema_extra={"x-kubernetes-int-or-string": True},
    )
    user: str | None = Field(default=None, max_length=64, description="User name (default root).")
    key_secret_ref: SecretKeyRef = Field(
        description="Secret key holding the private key (OpenSSH or PEM format)."
    )
    passphrase_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the private key's passphrase, if any."
    )
    known_hosts: KnownHosts | None = Field(
        default=None, description="Pinned host keys: only these are trusted."
    )
    accept_new: bool | None = Field(
        default=None,
        description=(
            "Trust the key the host shows the first time (recorded in status.pins), and "
            "require that same key for every later ssh step of this workflow to the same "
            "host and port."
        ),
    )
    command: str | None = Field(
        default=None, max_length=65536, description="Command to run (by the remote shell)."
    )
    script: str | None = Field(
        default=None, max_length=262144, description="Script sent to `sh -s` on stdin."
    )
    env: dict[str, str] | None = Field(
        default=None,
        description="Variables exported by the remote shell before the command or script.",
    )
    expect_exit: list[Annotated[int, Field(ge=0, le=255)]] | None = Field(
        default=None,
        max_length=32,
        description="Exit statuses that mean success (default [0]); others fail with NonZeroExit.",
    )
    connect_timeout: Duration | None = Field(
        default=None, description="Limit for the connection and login (default 10s)."
    )

    @model_validator(mode="after")
    def _one_policy(self) -> SshAction:
        """The schema's rules, for the SDK and the webhook to say the same at once."""
        if (self.known_hosts is not None) == bool(self.accept_new):
            raise ValueError(
                "ssh needs exactly one host key policy: knownHosts (pinned) or acceptNew: true"
            )
        if self.command is not None and self.script is not None:
            raise ValueError("ssh takes command or script, not both")
        return self


QUEUE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class PythonAction(ApiModel):
    """Action: call a Python function that a ``cerebelum worker`` process has loaded. The
    operator never imports user code: it creates a StepRun resource, one worker of the queue
    claims it, runs the function and writes the result back. The function's return value is
    the step's output; an exception fails the attempt with the exception's type as error class
    (retryable, so retry applies). Steps written with the cerebelum SDK render to this."""

    function: str = Field(
        min_length=3,
        max_length=512,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*:[A-Za-z_][A-Za-z0-9_.]*$",
        description=(
            "The function as module:name, e.g. deploy:create_droplet. The module is what the "
            "worker imports: a dotted name, or a file's stem (01_hello_world, my-steps)."
        ),
    )
    queue: str | None = Field(
        default=None,
        max_length=63,
        pattern=QUEUE_PATTERN,
        description="Worker queue that runs it (default: default).",
    )
    arguments: dict[str, Any] | None = Field(
        default=None,
        description=(
            "Keyword arguments after the context, e.g. {inputs: '${{ inputs }}', "
            "create_droplet: '${{ steps.create_droplet.output }}'}."
        ),
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    checks: list[Annotated[str, Field(pattern=STEP_NAME_PATTERN, max_length=63)]] | None = Field(
        default=None,
        max_length=8,
        description=(
            "Python conditions registered with the function (e.g. poll, branch) that the worker "
            "evaluates on the output; read in expressions as checks.NAME."
        ),
    )


class SleepSpec(
    ApiModel,
    json_schema_extra=rules(
        ("has(self.duration) != has(self.until)", "sleep needs exactly one of duration or until"),
    ),
):
    """Wait before the step's approval and action (or as the whole step). Waiting is a
    deadline in status, not a blocked thread: it survives operator restarts."""

    duration: Duration | None = Field(
        default=None, description="How long to wait, e.g. 30s, 5m, 1h30m."
    )
    until: str | None = Field(
        default=None,
        description="Wait until this RFC 3339 time, e.g. 2026-01-02T15:04:05Z. May be an expression.",
        max_length=256,
    )


class Outcome(StrEnum):
    FAIL = "Fail"
    APPROVE = "Approve"
    GOTO = "Goto"


class Approvers(ApiModel):
    """Who may approve or reject. Empty means anyone allowed to annotate the Workflow."""

    users: list[Annotated[str, Field(max_length=253)]] | None = Field(
        default=None, max_length=64, description="User names allowed to decide."
    )
    groups: list[Annotated[str, Field(max_length=253)]] | None = Field(
        default=None, max_length=64, description="Groups whose members are allowed to decide."
    )

    def admits(self, user: str, groups: list[str]) -> bool:
        """The user may decide (the webhook's rule; the UI greys out a button with it)."""
        if not self.users and not self.groups:
            return True
        return user in (self.users or []) or bool(set(groups) & set(self.groups or []))


def instance_problem(schema: dict[str, Any], data: Any, what: str) -> str | None:
    """Why ``data`` does not match ``schema`` (the most relevant error), or None."""
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{what} does not match the schema{f' at {where}' if where else ''}: {error.message}"


def schema_problem(schema: dict[str, Any]) -> None:
    """Raise ValueError naming what is wrong if ``schema`` is not a valid JSON Schema."""
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise ValueError(
            f"schema is not a valid JSON Schema: {exc.message}" + (f" at {where}" if where else "")
        ) from None


def _a_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema that is not one would refuse everything: said at apply time instead."""
    schema_problem(schema)
    return schema


#: A JSON Schema given in a spec (checked to be one).
JsonSchema = Annotated[dict[str, Any], AfterValidator(_a_schema)]


class ApprovalSpec(
    ApiModel,
    json_schema_extra=rules(
        (
            "!has(self.onTimeout) || self.onTimeout != 'Goto' || has(self.timeoutGoto)",
            "onTimeout: Goto needs timeoutGoto",
            ".timeoutGoto",
        ),
        (
            "!has(self.onReject) || self.onReject != 'Goto' || has(self.rejectGoto)",
            "onReject: Goto needs rejectGoto",
            ".rejectGoto",
        ),
        (
            "!has(self.onReject) || self.onReject != 'Approve'",
            "onReject may be Fail or Goto",
            ".onReject",
        ),
    ),
):
    """A human gate: the step waits until someone runs
    ``kubectl annotate workflow NAME cerebelum.io/approve=STEP`` (or ``cerebelum.io/reject=STEP``,
    with an optional ``cerebelum.io/reason``). The decision and who made it are kept in status."""

    timeout: Duration | None = Field(
        default=None, description="How long to wait for a decision. Unset: forever."
    )
    on_timeout: Outcome | None = Field(
        default=None,
        description="What a timeout does: Fail (default), Approve, or Goto timeoutGoto.",
    )
    timeout_goto: StepName | None = Field(
        default=None, description="Step to go to when onTimeout is Goto."
    )
    on_reject: Outcome | None = Field(
        default=None, description="What a rejection does: Fail (default) or Goto rejectGoto."
    )
    reject_goto: StepName | None = Field(
        default=None, description="Step to go to when onReject is Goto."
    )
    approvers: Approvers | None = Field(default=None, description="Who may decide.")
    message: str | None = Field(
        default=None, max_length=1024, description="Shown to approvers in status."
    )
    required: int | None = Field(
        default=None,
        ge=1,
        le=10,
        description=(
            "Distinct approvers needed (default 1); each vote is kept with who and when. One "
            "rejection ends the gate. More than 1 needs the webhook, which stamps who voted."
        ),
    )
    allow_self_approval: bool | None = Field(
        default=None,
        description=(
            "false: the workflow's creator (cerebelum.io/created-by, stamped by the webhook "
            "at create) may not approve; refused at kubectl annotate."
        ),
    )
    options: list[Annotated[str, Field(min_length=1, max_length=63)]] | None = Field(
        default=None,
        min_length=2,
        max_length=20,
        description=(
            "The approver picks one (cerebelum.io/choice=OPTION); it is output.choice, for "
            "next[].when. onTimeout: Approve picks the first."
        ),
    )
    data_schema: JsonSchema | None = Field(
        default=None,
        alias="schema",
        description=(
            "JSON Schema for the approval data (cerebelum.io/approval-data); data that does "
            "not match is refused. onTimeout: Approve applies its properties' defaults."
        ),
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )

    def data_problem(self, data: Any) -> str | None:
        """Why approval data is refused by the schema, or None."""
        if self.data_schema is None:
            return None
        return instance_problem(self.data_schema, data, "the approval data")

    def defaults(self) -> dict[str, Any]:
        """What an approval by timeout gives: the schema's defaults, and the first option."""
        props = (self.data_schema or {}).get("properties") or {}
        out = {k: v["default"] for k, v in props.items() if isinstance(v, dict) and "default" in v}
        if self.options:
            out["choice"] = self.options[0]
        return out


#: Callback payloads (and approval data checked by a schema) larger than this are refused.
CALLBACK_PAYLOAD_LIMIT_BYTES = 32 * 1024


class CallbackSpec(
    ApiModel,
    json_schema_extra=rules(
        (
            "!has(self.onTimeout) || self.onTimeout != 'Goto' || has(self.timeoutGoto)",
            "onTimeout: Goto needs timeoutGoto",
            ".timeoutGoto",
        ),
        (
            "!has(self.onTimeout) || self.onTimeout != 'Approve'",
            "onTimeout may be Fail or Goto",
            ".onTimeout",
        ),
    ),
):
    """Wait for an outside system to call back. The step's action (if any) starts the work
    and hands over ``${{ callback.url }}`` or ``${{ callback.token }}``; the step then waits
    until a callback arrives (``POST`` to the operator's callback endpoint, or ``kubectl
    annotate workflow NAME cerebelum.io/callback=STEP``). Its JSON payload is the output."""

    timeout: Duration | None = Field(
        default=None, description="How long to wait for the callback. Unset: forever."
    )
    on_timeout: Outcome | None = Field(
        default=None, description="What a timeout does: Fail (default) or Goto timeoutGoto."
    )
    timeout_goto: StepName | None = Field(
        default=None, description="Step to go to when onTimeout is Goto."
    )
    heartbeat_timeout: Duration | None = Field(
        default=None,
        description=(
            "If set, the outside system must POST .../heartbeat at least this often; a missed "
            "heartbeat fails the attempt with HeartbeatTimeout (retryable: retry applies)."
        ),
    )
    payload_schema: JsonSchema | None = Field(
        default=None,
        alias="schema",
        description=(
            "JSON Schema the payload must match; a payload that does not is refused (HTTP 400, "
            "or a Warning Event) and the step keeps waiting."
        ),
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class PollSpec(
    ApiModel,
    json_schema_extra=rules(
        (
            "has(self.maxAttempts) || has(self.timeout)",
            "poll needs maxAttempts or timeout (or both)",
        ),
        (
            "!has(self.onTimeout) || self.onTimeout != 'Goto' || has(self.timeoutGoto)",
            "onTimeout: Goto needs timeoutGoto",
            ".timeoutGoto",
        ),
        (
            "!has(self.onTimeout) || self.onTimeout != 'Approve'",
            "onTimeout may be Fail or Goto",
            ".onTimeout",
        ),
    ),
):
    """Re-run the step's action every ``interval`` until ``until`` holds on its output.
    Between attempts nothing runs: the next attempt time is a deadline in status."""

    until: Expression = Field(
        description=(
            "CEL condition on `output` (and `attempt`, and `checks` of python steps); the poll "
            "ends when true."
        )
    )
    interval: Duration = Field(
        description="Time between the end of one attempt and the start of the next."
    )
    max_attempts: int | None = Field(
        default=None, ge=1, le=100000, description="Give up after this many attempts."
    )
    timeout: Duration | None = Field(
        default=None, description="Give up this long after the first attempt started."
    )
    backoff_factor: float | None = Field(
        default=None,
        ge=1,
        le=10,
        description="Multiply the interval by this after each attempt (default 1).",
    )
    max_interval: Duration | None = Field(default=None, description="Cap for the growing interval.")
    on_timeout: Outcome | None = Field(
        default=None,
        description="When attempts or time run out: Fail (default) or Goto timeoutGoto.",
    )
    timeout_goto: StepName | None = Field(
        default=None, description="Step to go to when onTimeout is Goto."
    )


class Backoff(ApiModel):
    """Wait before retry n: delay × factor^(n-1), capped at maxDelay, then ± jitter."""

    delay: Duration | None = Field(
        default=None, description="Wait before the first retry (default 1s)."
    )
    factor: float | None = Field(
        default=None, ge=1, le=10, description="Growth per retry (default 2)."
    )
    max_delay: Duration | None = Field(
        default=None, description="Cap for the wait (default: none)."
    )
    jitter: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Random spread as a fraction of the wait, 0.2 = ±20% (default 0).",
    )


class RetrySpec(ApiModel):
    """Re-run a failed action. ``limit`` counts retries, not attempts: limit 3 means at most
    4 attempts. The first retry waits ``backoff.delay``. The step's ``timeout`` applies to each
    attempt separately; the workflow's ``activeDeadline`` bounds them all."""

    limit: int = Field(
        ge=0, le=1000, description="How many times to retry after the first attempt."
    )
    backoff: Backoff | None = Field(default=None, description="Waits between attempts.")
    retry_on: list[Annotated[str, Field(max_length=63)]] | None = Field(
        default=None,
        max_length=32,
        description=(
            "Error classes to retry (e.g. Timeout, Transient). Unset: every error the action "
            'reports as retryable. "*": every error.'
        ),
    )


class NextRule(
    ApiModel,
    json_schema_extra=rules(
        (
            f"{count_present(('goto', 'fail', 'continue', 'end'))} == 1",
            "a next rule needs exactly one of goto, fail, continue or end",
        ),
    ),
):
    """Where to go after the step ends. Rules are tried in order; the first whose ``when``
    holds wins. With no match the workflow continues after success and fails after failure."""

    when: Expression | None = Field(
        default=None,
        description=(
            "CEL on `output`, `error` (null on success), `phase` and `checks` (python steps). "
            "Unset: always."
        ),
    )
    goto: StepName | None = Field(
        default=None,
        description="Run this step next (loops allowed, bounded by spec.maxStepVisits).",
    )
    fail: str | None = Field(
        default=None, max_length=1024, description="Fail the workflow with this message."
    )
    continue_: bool | None = Field(
        default=None, alias="continue", description="Carry on as normal."
    )
    end: bool | None = Field(
        default=None,
        description=(
            "Finish the workflow here: steps not started are Skipped, running ones cancelled, "
            "and the workflow succeeds (after a failed step too: the rule handled it)."
        ),
    )


_ACTION_PRESENT = count_present(ACTION_KINDS)


class Step(
    ApiModel,
    json_schema_extra=rules(
        (
            f"{_ACTION_PRESENT} <= 1",
            f"a step has at most one action kind ({', '.join(ACTION_KINDS)})",
        ),
        (
            f"{_ACTION_PRESENT} == 1 || has(self.sleep) || has(self.approval) "
            "|| has(self.callback)",
            "a step needs an action, a sleep, an approval or a callback",
        ),
        (f"!has(self.poll) || {_ACTION_PRESENT} == 1", "poll needs an action to repeat", ".poll"),
        (
            f"!has(self.retry) || {_ACTION_PRESENT} == 1",
            "retry needs an action to repeat",
            ".retry",
        ),
        (
            "!has(self.dependsOn) || !(self.name in self.dependsOn)",
            "a step cannot depend on itself",
            ".dependsOn",
        ),
    ),
):
    """One step. Order inside a step: ``when`` (skip if false), ``sleep``, ``approval``, then
    the action with ``poll``/``retry``, then ``callback``, then ``next`` rules."""

    name: StepName = Field(
        description="Unique, identifier-like name; outputs are read as steps.NAME.output."
    )
    depends_on: list[StepName] | None = Field(
        default=None,
        max_length=20,
        description=(
            "Steps that must finish first. Unset: the previous step in the list (a timeline). "
            "[]: none, so the step starts at once. Steps whose dependencies are done run in parallel."
        ),
    )
    when: Expression | None = Field(
        default=None,
        description="CEL condition; when false the step is Skipped and its dependents go on.",
    )
    timeout: Duration | None = Field(
        default=None, description="Limit for each attempt of the action."
    )
    noop: NoopAction | None = Field(
        default=None, description="Action: return `with` as the output."
    )
    fail: FailAction | None = Field(
        default=None, description="Action: fail with a chosen error (testing)."
    )
    http: HttpAction | None = Field(default=None, description="Action: an HTTP request.")
    tcp: TcpAction | None = Field(default=None, description="Action: a TCP reachability check.")
    ssh: SshAction | None = Field(
        default=None, description="Action: an SSH login, and a command or script."
    )
    digitalocean: DigitalOceanAction | None = Field(
        default=None, description="Action: a DigitalOcean API call."
    )
    job: JobAction | None = Field(
        default=None, description="Action: run a container as a Kubernetes Job."
    )
    python: PythonAction | None = Field(
        default=None, description="Action: a Python function run by a cerebelum worker."
    )
    sleep: SleepSpec | None = Field(default=None, description="Wait before the rest of the step.")
    approval: ApprovalSpec | None = Field(default=None, description="Wait for a human decision.")
    callback: CallbackSpec | None = Field(
        default=None, description="After the action, wait for an outside system to call back."
    )
    poll: PollSpec | None = Field(
        default=None, description="Repeat the action until a condition holds."
    )
    retry: RetrySpec | None = Field(default=None, description="Retry the action when it fails.")
    next: list[NextRule] | None = Field(
        default=None, max_length=10, description="Routing after the step ends."
    )

    @model_validator(mode="after")
    def _templates_within_limits(self) -> Step:
        """Strings with ${{ }} are bounded (size, count, nesting) before anything parses them."""
        problems: list[str] = []
        kind = self.action_kind()
        if kind is not None:
            problems += templated_problems(getattr(self, kind).to_wire(), kind)
        if self.sleep is not None and self.sleep.until:
            problems += templated_problems(self.sleep.until, "sleep.until")
        if self.approval is not None and self.approval.message:
            problems += templated_problems(self.approval.message, "approval.message")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def action_kind(self) -> str | None:
        return next((kind for kind in ACTION_KINDS if getattr(self, kind) is not None), None)

    def dependencies(self, previous: str | None) -> list[str]:
        if self.depends_on is not None:
            return list(self.depends_on)
        return [previous] if previous else []

    def goto_targets(self) -> list[str]:
        targets = [rule.goto for rule in self.next or [] if rule.goto]
        for gate in (self.approval, self.poll):
            if gate is not None and gate.timeout_goto:
                targets.append(gate.timeout_goto)
        if self.approval is not None and self.approval.reject_goto:
            targets.append(self.approval.reject_goto)
        return targets


_NAMES = "self.steps.map(t, t.name)"
#: How long finally steps may take when the spec does not say.
DEFAULT_FINALLY_DEADLINE = "10m"


class NotifyEvent(StrEnum):
    APPROVAL = "Approval"
    CALLBACK = "Callback"
    END = "End"


class NotifyFormat(StrEnum):
    GENERIC = "Generic"
    SLACK = "Slack"


class NotifyTarget(ApiModel):
    """Where notices go: a webhook URL read from a Secret (a Slack incoming webhook keeps
    its token in the URL, so the URL is a secret). Sending never blocks or fails the
    workflow; it is retried with backoff, and each notice carries a stable dedupe key."""

    name: StepName = Field(description="Names the target in status.notifications.")
    url_secret_ref: SecretKeyRef = Field(description="The Secret key holding the webhook URL.")
    format: NotifyFormat | None = Field(
        default=None,
        description="Generic (default): a JSON body with every field; Slack: text and blocks.",
    )
    on: list[NotifyEvent] | None = Field(
        default=None,
        max_length=3,
        description=(
            "What to send: Approval (a step waits for approval), Callback (a step waits for "
            "a callback), End (the workflow finished). Unset: all three."
        ),
    )


def _reference_rules(part: str) -> list[tuple[str, str, str]]:
    """The CEL rules that keep the references of one list of steps (``steps`` or
    ``finally``) inside that list: a finally step cannot depend on or jump to a main step,
    nor a main step to a finally step."""
    names = f"self.{part}.map(t, t.name)"
    where = f"spec.{part}"
    each = f"!has(self.{part}) || self.{part}.all"
    return [
        (
            f"{each}(s, !has(s.dependsOn) || s.dependsOn.all(d, d in {names}))",
            f"dependsOn must name steps of {where}",
            f".{part}",
        ),
        (
            f"{each}(s, !has(s.next) || s.next.all(n, !has(n.goto) || n.goto in {names}))",
            f"next[].goto must name a step of {where}",
            f".{part}",
        ),
        (
            f"{each}(s, !has(s.approval) || ((!has(s.approval.timeoutGoto) || "
            f"s.approval.timeoutGoto in {names}) && (!has(s.approval.rejectGoto) || "
            f"s.approval.rejectGoto in {names})))",
            f"approval timeoutGoto/rejectGoto must name a step of {where}",
            f".{part}",
        ),
        (
            f"{each}(s, !has(s.poll) || !has(s.poll.timeoutGoto) || s.poll.timeoutGoto in {names})",
            f"poll.timeoutGoto must name a step of {where}",
            f".{part}",
        ),
    ]


BODY_RULES = (
    *_reference_rules("steps"),
    *_reference_rules("finally"),
    (
        f"!has(self.finally) || !has(self.steps) || self.finally.all(f, !(f.name in {_NAMES}))",
        "finally step names must differ from the names of spec.steps",
        ".finally",
    ),
)


class WorkflowBody(ApiModel):
    """What a Workflow and a WorkflowTemplate have in common: the steps and how they run.
    (Not a kind of its own: the base of both specs.)"""

    steps: list[Step] = Field(
        default_factory=list,
        max_length=100,
        description="The steps; names are unique. (A Workflow with templateRef has them from the template.)",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    active_deadline: Duration | None = Field(
        default=None,
        description="Fail the workflow if it has not finished this long after it started.",
    )
    max_step_visits: int | None = Field(
        default=None,
        ge=1,
        le=100000,
        description="Cap on step starts, loops included (default 1000).",
    )
    ttl_after_finished: Duration | None = Field(
        default=None,
        description=(
            "Delete the workflow this long after it finished (with its StepRuns and Jobs). "
            "Unset: the operator's default (Helm: ttlAfterFinished; none: kept)."
        ),
    )
    notify: list[NotifyTarget] | None = Field(
        default=None,
        max_length=5,
        description="Send notices when a step waits for approval or a callback, and at the end.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    finally_: list[Step] | None = Field(
        default=None,
        alias="finally",
        max_length=20,
        description=(
            "Steps that run once after the main steps end for any reason (success, failure, "
            "cancel, activeDeadline). They read workflow.phase and workflow.failures."
        ),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    finally_deadline: Duration | None = Field(
        default=None,
        description=(
            f"How long the finally steps may take, from when they start (default "
            f"{DEFAULT_FINALLY_DEADLINE}); then they are cancelled and the workflow fails."
        ),
    )

    def all_steps(self) -> list[Step]:
        """The main steps, then the finally steps."""
        return [*self.steps, *(self.finally_ or [])]

    def find(self, name: str) -> Step | None:
        return next((s for s in self.all_steps() if s.name == name), None)

    def step(self, name: str) -> Step:
        step = self.find(name)
        if step is None:
            raise KeyError(name)
        return step


#: The fields of a WorkflowBody, as written in a manifest: what a template gives a workflow.
BODY_FIELDS = tuple(info.alias or name for name, info in WorkflowBody.model_fields.items())


class TemplateRef(ApiModel):
    """The WorkflowTemplate a workflow is made from."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="The WorkflowTemplate, in the workflow's namespace.",
    )
    resource_version: str | None = Field(
        default=None,
        description=(
            "Set by the operator when it copies the template's steps into this spec: the "
            "version copied. Later edits of the template do not change this workflow."
        ),
    )


class WorkflowSpec(
    WorkflowBody,
    json_schema_extra=rules(
        *BODY_RULES,
        (
            "(has(self.steps) && size(self.steps) > 0) || has(self.templateRef)",
            "a workflow needs spec.steps (at least 1) or spec.templateRef",
        ),
    ),
):
    """What the workflow runs. Steps run in list order unless they name ``dependsOn``."""

    inputs: dict[str, Any] | None = Field(
        default=None,
        description="Free-form inputs, read in expressions as inputs.NAME.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    template_ref: TemplateRef | None = Field(
        default=None,
        description=(
            "Run a WorkflowTemplate with these inputs: the operator checks them against the "
            "template's schema, applies its defaults and copies its steps here at the start."
        ),
    )
    suspend: bool | None = Field(
        default=None, description="While true no new step starts; waits keep their deadlines."
    )
    cancel: bool | None = Field(
        default=None,
        description="Set true to cancel (as does the annotation cerebelum.io/cancel). Waiting steps stop at once.",
    )

    @model_validator(mode="after")
    def _has_steps(self) -> WorkflowSpec:
        if not self.steps and self.template_ref is None:
            raise ValueError("a workflow needs spec.steps (at least 1) or spec.templateRef")
        return self

    @property
    def unresolved(self) -> bool:
        """Made from a template whose steps have not been copied in yet."""
        return self.template_ref is not None and not self.steps

"""CronWorkflow schedules with fake time: the cron syntax, time zones around DST changes,
missed runs, every concurrencyPolicy and the history limits."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from pydantic import ValidationError

from cerebelum.api.cron import InvalidSchedule, latest_at_or_before, next_after, parse_schedule
from cerebelum.api.cronworkflow import CronWorkflowSpec, CronWorkflowStatus
from cerebelum.engine.schedule import Child, CronDecision, CronMeta, decide, run_name

UTC = datetime.UTC


def t(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- the syntax ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("* * * * *", "2026-01-01T10:00:30", "2026-01-01T10:01:00"),
        ("* * * * *", "2026-01-01T10:01:00", "2026-01-01T10:02:00"),  # strictly after
        ("*/15 * * * *", "2026-01-01T10:07:00", "2026-01-01T10:15:00"),
        ("5,35 9-17 * * *", "2026-01-01T17:40:00", "2026-01-02T09:05:00"),
        ("0 0 * * mon-fri", "2026-01-02T12:00:00", "2026-01-05T00:00:00"),  # Fri -> Mon
        ("0 12 1 jan,jul *", "2026-02-01T00:00:00", "2026-07-01T12:00:00"),
        ("0 0 13 * 5", "2026-01-01T00:00:00", "2026-01-02T00:00:00"),  # the 13th OR a Friday
        ("0 0 * * 7", "2026-01-01T00:00:00", "2026-01-04T00:00:00"),  # 7 is Sunday
        ("0 0 29 2 *", "2026-01-01T00:00:00", "2028-02-29T00:00:00"),
        ("@hourly", "2026-01-01T10:00:00", "2026-01-01T11:00:00"),
        ("@daily", "2026-01-01T10:00:00", "2026-01-02T00:00:00"),
        ("@weekly", "2026-01-01T10:00:00", "2026-01-04T00:00:00"),
        ("@monthly", "2026-01-15T00:00:00", "2026-02-01T00:00:00"),
        ("@yearly", "2026-01-15T00:00:00", "2027-01-01T00:00:00"),
        ("@every 90s", "2026-01-01T00:00:00", "2026-01-01T00:01:30"),
    ],
)
def test_next_after(schedule: str, after: str, expected: str) -> None:
    assert next_after(schedule, t(after)) == t(expected)


def test_a_schedule_that_never_fires_has_no_next_time() -> None:
    assert next_after("0 0 31 2 *", t("2026-01-01T00:00:00")) is None


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("* * * *", "4 fields; a schedule has 5"),
        ("60 * * * *", "minute: '60' is outside 0-59"),
        ("* 5-2 * * *", "hour: range '5-2' runs backwards"),
        ("* * * foo *", "month: 'foo' is not a number"),
        ("*/0 * * * *", "minute: step '0' is not a positive number"),
        ("@sometimes", "unknown macro '@sometimes'"),
        ("@every soon", "@every takes a duration"),
        ("* * * * * ;rm", "6 fields"),
    ],
)
def test_a_bad_schedule_is_refused_saying_why(schedule: str, message: str) -> None:
    with pytest.raises(InvalidSchedule, match=message.replace("*", r"\*")):
        parse_schedule(schedule)


def test_the_model_refuses_a_bad_schedule_or_time_zone() -> None:
    base: dict[str, Any] = {"workflowSpec": {"steps": [{"name": "a", "noop": {}}]}}
    with pytest.raises(ValidationError, match="outside 0-59"):
        CronWorkflowSpec.model_validate({**base, "schedule": "61 * * * *"})
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        CronWorkflowSpec.model_validate({**base, "schedule": "@daily", "timeZone": "Mars/Olympus"})


# -- time zones and DST --------------------------------------------------------------------


def test_a_time_zone_moves_the_schedule() -> None:
    # 09:00 in Madrid is 08:00 UTC in winter and 07:00 UTC in summer.
    assert next_after("0 9 * * *", t("2026-01-10T00:00:00"), "Europe/Madrid") == t(
        "2026-01-10T08:00:00"
    )
    assert next_after("0 9 * * *", t("2026-07-10T00:00:00"), "Europe/Madrid") == t(
        "2026-07-10T07:00:00"
    )


def test_a_time_skipped_by_the_spring_change_does_not_fire_that_day() -> None:
    # New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT, so 02:30 does not exist.
    before = t("2026-03-08T06:00:00")  # 01:00 EST
    assert next_after("30 2 * * *", before, "America/New_York") == t("2026-03-09T06:30:00")
    # An hourly schedule goes from 01:00 EST straight to 03:00 EDT.
    assert next_after("0 * * * *", before, "America/New_York") == t("2026-03-08T07:00:00")


def test_a_time_repeated_by_the_autumn_change_fires_once() -> None:
    # New York, 2026-11-01: 02:00 EDT goes back to 01:00 EST, so 01:30 happens twice.
    first = next_after("30 1 * * *", t("2026-11-01T04:00:00"), "America/New_York")
    assert first == t("2026-11-01T05:30:00")  # 01:30 EDT
    assert first is not None
    assert next_after("30 1 * * *", first, "America/New_York") == t("2026-11-02T06:30:00")
    # Every 30 minutes through the repeated hour: 01:00 and 01:30 once each, then 02:00 EST.
    times = []
    moment = t("2026-11-01T04:45:00")
    for _ in range(4):
        nxt = next_after("*/30 * * * *", moment, "America/New_York")
        assert nxt is not None
        times.append(nxt)
        moment = nxt
    assert times == [
        t("2026-11-01T05:00:00"),
        t("2026-11-01T05:30:00"),
        t("2026-11-01T07:00:00"),
        t("2026-11-01T07:30:00"),
    ]


def test_the_latest_missed_time_is_found_after_a_long_absence() -> None:
    found = latest_at_or_before(
        "0 3 * * *", t("2026-06-10T12:00:00"), t("2026-01-01T00:00:00"), "UTC"
    )
    assert found == t("2026-06-10T03:00:00")
    assert (
        latest_at_or_before("0 3 * * *", t("2026-06-10T02:00:00"), t("2026-06-09T03:00:00")) is None
    )


# -- decisions -----------------------------------------------------------------------------

CREATED = t("2026-01-01T00:00:30")
META = CronMeta(name="nightly", created=CREATED)


def spec(**fields: Any) -> CronWorkflowSpec:
    return CronWorkflowSpec.model_validate(
        {"schedule": "* * * * *", "workflowSpec": {"steps": [{"name": "a", "noop": {}}]}, **fields}
    )


def status(last: str | None = None, **fields: Any) -> CronWorkflowStatus:
    return CronWorkflowStatus(last_schedule_time=t(last) if last else None, **fields)


def running(name: str, scheduled: str) -> Child:
    return Child(name=name, phase="Running", scheduled=t(scheduled), created=t(scheduled))


def done(name: str, phase: str, finished: str) -> Child:
    return Child(name=name, phase=phase, scheduled=t(finished), finished=t(finished))


def test_nothing_is_due_before_the_first_scheduled_time() -> None:
    out = decide(spec(), None, META, [], t("2026-01-01T00:00:50"))
    assert out.create is None
    assert out.wake_at == t("2026-01-01T00:01:00")
    assert out.status.next_schedule_time == t("2026-01-01T00:01:00")


def test_at_its_time_one_run_starts_named_after_the_scheduled_time() -> None:
    out = decide(spec(), None, META, [], t("2026-01-01T00:01:00.200"))
    due = t("2026-01-01T00:01:00")
    assert out.create == (run_name("nightly", due), due)
    assert out.create[0] == f"nightly-{int(due.timestamp())}"
    assert out.status.last_schedule_time == due
    assert out.status.active is not None and [a.name for a in out.status.active] == [out.create[0]]
    assert [e.reason for e in out.events] == ["RunStarted"]
    assert out.wake_at == t("2026-01-01T00:02:00")


def test_deciding_again_starts_nothing_more() -> None:
    first = decide(spec(), None, META, [], t("2026-01-01T00:01:00"))
    assert first.create is not None
    child = running(first.create[0], "2026-01-01T00:01:00")
    again = decide(spec(), first.status, META, [child], t("2026-01-01T00:01:20"))
    assert again.create is None and again.events == []


def test_after_downtime_only_the_most_recent_missed_run_starts() -> None:
    out = decide(spec(), status("2026-01-01T00:01:00"), META, [], t("2026-01-01T05:17:10"))
    assert out.create is not None and out.create[1] == t("2026-01-01T05:17:00")


def test_a_missed_run_past_the_starting_deadline_is_skipped() -> None:
    s = spec(startingDeadlineSeconds=30)
    late = decide(s, status("2026-01-01T00:01:00"), META, [], t("2026-01-01T00:05:45"))
    assert late.create is None
    assert [e.reason for e in late.events] == ["MissedSchedule"]
    assert late.status.message is not None and "45s late" in late.status.message
    in_time = decide(s, status("2026-01-01T00:01:00"), META, [], t("2026-01-01T00:05:20"))
    assert in_time.create is not None and in_time.create[1] == t("2026-01-01T00:05:00")


def test_allow_starts_a_run_beside_the_running_one() -> None:
    active = [running("nightly-a", "2026-01-01T00:01:00")]
    out = decide(spec(), status("2026-01-01T00:01:00"), META, active, t("2026-01-01T00:02:00"))
    assert out.create is not None and out.cancel == []
    assert out.status.active is not None and len(out.status.active) == 2


def test_forbid_postpones_while_a_run_is_active_then_starts_it() -> None:
    s = spec(concurrencyPolicy="Forbid")
    active = [running("nightly-a", "2026-01-01T00:01:00")]
    waiting = decide(s, status("2026-01-01T00:01:00"), META, active, t("2026-01-01T00:02:00"))
    assert waiting.create is None and [e.reason for e in waiting.events] == ["RunPostponed"]
    quiet = decide(s, waiting.status, META, active, t("2026-01-01T00:02:10"))
    assert quiet.events == [], "the same news is not repeated"
    finished = [done("nightly-a", "Succeeded", "2026-01-01T00:02:20")]
    later = decide(s, waiting.status, META, finished, t("2026-01-01T00:02:21"))
    assert later.create is not None and later.create[1] == t("2026-01-01T00:02:00")


def test_forbid_drops_a_postponed_run_past_its_starting_deadline() -> None:
    s = spec(concurrencyPolicy="Forbid", startingDeadlineSeconds=10)
    finished = [done("nightly-a", "Succeeded", "2026-01-01T00:02:40")]
    out = decide(s, status("2026-01-01T00:01:00"), META, finished, t("2026-01-01T00:02:41"))
    assert out.create is None and out.status.message is not None
    assert "startingDeadlineSeconds=10" in out.status.message


def test_replace_cancels_the_active_runs_and_starts_the_new_one() -> None:
    s = spec(concurrencyPolicy="Replace")
    active = [running("nightly-a", "2026-01-01T00:01:00")]
    out = decide(s, status("2026-01-01T00:01:00"), META, active, t("2026-01-01T00:02:00"))
    assert out.cancel == ["nightly-a"] and out.create is not None
    assert out.status.active is not None
    assert [a.name for a in out.status.active] == [out.create[0]]
    assert "replacing nightly-a" in (out.status.message or "")


def test_suspend_starts_nothing_and_has_no_next_time() -> None:
    out = decide(
        spec(suspend=True), status("2026-01-01T00:01:00"), META, [], t("2026-01-01T00:09:00")
    )
    assert out.create is None and out.wake_at is None and out.status.next_schedule_time is None
    resumed = decide(spec(), out.status, META, [], t("2026-01-01T00:09:05"))
    assert resumed.create is not None and resumed.create[1] == t("2026-01-01T00:09:00")


def test_history_limits_delete_the_oldest_finished_runs() -> None:
    children = [done(f"ok-{i}", "Succeeded", f"2026-01-01T00:0{i}:30") for i in range(1, 6)]
    children += [
        done(f"bad-{i}", "Failed" if i % 2 else "Cancelled", f"2026-01-01T00:0{i}:40")
        for i in range(1, 4)
    ]
    out: CronDecision = decide(
        spec(successfulHistoryLimit=2),
        status("2026-01-01T00:06:00"),
        META,
        children,
        t("2026-01-01T00:06:50"),
    )
    assert sorted(out.delete) == ["bad-1", "bad-2", "ok-1", "ok-2", "ok-3"]
    assert out.status.last_successful_time == t("2026-01-01T00:05:30")


def test_a_time_zone_schedule_decides_in_local_time() -> None:
    s = spec(schedule="0 9 * * *", timeZone="Europe/Madrid")
    meta = CronMeta(name="morning", created=t("2026-07-09T12:00:00"))
    out = decide(s, None, meta, [], t("2026-07-10T07:00:05"))
    assert out.create is not None and out.create[1] == t("2026-07-10T07:00:00")

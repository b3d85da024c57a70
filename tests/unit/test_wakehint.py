"""The wake-up hint's pure part (kube/wakehint.py): which deadlines it keeps, how they read
back, and which workflows a restarted operator fetches first. Fake time throughout."""

from __future__ import annotations

import datetime

from cerebelum.kube.wakehint import DATA_KEY, LOOKAHEAD, decode, due, encode, soonest

NOW = datetime.datetime(2026, 12, 5, 12, 0, tzinfo=datetime.UTC)


def at(seconds: float) -> datetime.datetime:
    return NOW + datetime.timedelta(seconds=seconds)


def test_keeps_the_soonest_deadlines_within_the_horizon_and_the_limit() -> None:
    deadlines = {
        ("a", "later"): at(100),
        ("a", "first"): at(-5),  # already due: kept, first
        ("b", "soon"): at(3),
        ("a", "beyond"): at(121),
        ("b", "next"): at(50),
    }
    horizon = datetime.timedelta(seconds=120)
    assert soonest(deadlines, NOW, horizon, limit=10) == [
        (at(-5), ("a", "first")),
        (at(3), ("b", "soon")),
        (at(50), ("b", "next")),
        (at(100), ("a", "later")),
    ]
    assert [key for _, key in soonest(deadlines, NOW, horizon, limit=2)] == [
        ("a", "first"),
        ("b", "soon"),
    ]
    assert soonest({}, NOW, horizon, limit=10) == []


def test_reads_back_what_it_wrote_in_the_watched_namespaces_only() -> None:
    entries = [(at(-1.5), ("team-a", "w1")), (at(2), ("team-b", "w2")), (at(9), ("team-a", "w3"))]
    data = encode(entries)
    assert data[DATA_KEY].splitlines()[0] == "2026-12-05T11:59:58.500Z team-a w1"
    assert decode(data, ()) == (entries, 0)
    assert decode(data, {"team-a"}) == ([entries[0], entries[2]], 0)


def test_lines_that_do_not_parse_are_counted_and_skipped() -> None:
    data = {
        DATA_KEY: "2026-12-05T12:00:00.000Z ns good\n"
        "garbage\n"
        "2026-12-05T12:00:00.000Z ns two words extra\n"
        "yesterday ns name\n"
        "2026-12-05T12:00:00 ns no-timezone\n"
        "\n"
    }
    assert decode(data, ()) == ([(NOW, ("ns", "good"))], 4)
    assert decode({}, ()) == ([], 0)
    assert decode({"other": "x"}, ()) == ([], 0)


def test_fetches_the_due_ones_and_those_about_to_be_soonest_first_once() -> None:
    ahead = LOOKAHEAD.total_seconds()
    entries = [
        (at(ahead + 1), ("ns", "not-yet")),
        (at(1), ("ns", "soon")),
        (at(-30), ("ns", "overdue")),
        (at(ahead), ("ns", "edge")),
        (at(-1), ("ns", "soon")),  # twice (a stale line): fetched once
    ]
    assert due(entries, NOW) == [("ns", "overdue"), ("ns", "soon"), ("ns", "edge")]


def test_settings_default_to_off_and_to_the_leases_namespace() -> None:
    from cerebelum.kube.settings import WakeHintSettings

    assert WakeHintSettings.from_env({}) == WakeHintSettings()
    assert not WakeHintSettings().enabled
    chart = WakeHintSettings.from_env(
        {"CEREBELUM_WAKE_HINT": "true", "CEREBELUM_LEASE_NAMESPACE": "ops"}
    )
    assert (chart.enabled, chart.namespace, chart.name) == (True, "ops", WakeHintSettings.name)
    own = WakeHintSettings.from_env(
        {
            "CEREBELUM_WAKE_HINT_NAMESPACE": "hints",
            "CEREBELUM_LEASE_NAMESPACE": "ops",
            "CEREBELUM_WAKE_HINT_NAME": "mine",
            "CEREBELUM_WAKE_HINT_SECONDS": "2",
        }
    )
    assert (own.namespace, own.name, own.interval) == ("hints", "mine", 2.0)

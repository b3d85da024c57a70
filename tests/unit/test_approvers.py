"""Who may approve, and what the decided-by annotation ends up saying."""

from __future__ import annotations

from cerebelum.kube.approvers import Decision, decided_by_patch, decisions_in, refusal

SPEC = {
    "steps": [
        {"name": "open", "approval": {}},
        {
            "name": "gated",
            "approval": {"approvers": {"users": ["alice"], "groups": ["ops", "sre"]}},
        },
        {"name": "groups_only", "approval": {"approvers": {"groups": ["ops"]}}},
    ]
}


def test_only_added_or_changed_decisions_count() -> None:
    assert decisions_in({}, {"cerebelum.io/approve": "gated"}) == [Decision("gated", "approve")]
    assert decisions_in({"cerebelum.io/approve": "gated"}, {"cerebelum.io/approve": "gated"}) == []
    assert decisions_in({"cerebelum.io/approve": "gated"}, {}) == [], "removal is not a decision"
    assert decisions_in(None, {"cerebelum.io/reject": "open", "other": "x"}) == [
        Decision("open", "reject")
    ]


def test_listed_users_and_group_members_may_decide() -> None:
    assert refusal(SPEC, [Decision("gated", "approve")], "alice", []) is None
    assert refusal(SPEC, [Decision("gated", "reject")], "bob", ["devs", "sre"]) is None
    assert refusal(SPEC, [Decision("open", "approve")], "anyone", []) is None


def test_others_are_refused_with_who_may() -> None:
    message = refusal(SPEC, [Decision("gated", "approve")], "mallory", ["devs"])
    assert (
        message
        == "mallory may not approve step 'gated': only users alice or members of ops, sre may"
    )
    assert refusal(SPEC, [Decision("groups_only", "reject")], "alice", []) == (
        "alice may not reject step 'groups_only': only members of ops may"
    )


def test_unknown_step_is_refused() -> None:
    assert "no step named 'typo'" in (
        refusal(SPEC, [Decision("typo", "approve")], "alice", []) or ""
    )


def test_decided_by_is_the_authenticated_user_and_cannot_be_forged() -> None:
    approve = {"cerebelum.io/approve": "gated"}
    assert decided_by_patch({}, approve, "alice") == "alice"
    assert (
        decided_by_patch({}, {**approve, "cerebelum.io/decided-by": "the-ceo"}, "alice") == "alice"
    )
    assert decided_by_patch({}, {"cerebelum.io/decided-by": "the-ceo"}, "mallory") == "", (
        "forged: removed"
    )
    assert decided_by_patch({"cerebelum.io/decided-by": "alice"}, {}, "operator") is None, (
        "consumption is fine"
    )
    assert decided_by_patch({}, {}, "anyone") is None

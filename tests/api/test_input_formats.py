"""IDs and timestamps in bodies are parsed exactly (issue 31): UUIDs only in the canonical 8-4-4-4-12 form
(either case), timestamps only as RFC 3339 date-time; anything else is 422 keyed by the field's path."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from notifications_api.web.schemas import parse_rfc3339

PREFIX = "/api/v1/notifications"
LOOSE_UUIDS = {
    "urn": "urn:uuid:{}",
    "braces": "{{{}}}",
    "no hyphens": "{hex}",
    "hyphens elsewhere": "0000-0000-0000-4000-8000-0000-0000-0001",
    "surrounding space": " {} ",
    "hyphen missing": "{hex8}-{rest}",
}


def _loose(form: str, user_id: str) -> str:
    hex_ = user_id.replace("-", "")
    return LOOSE_UUIDS[form].format(user_id, hex=hex_, hex8=hex_[:8], rest=user_id[9:].replace("-", "", 1))


def _errors(response, status: int = 422) -> dict:
    assert response.status_code == status, (response.status_code, response.get_json())
    body = response.get_json()
    assert body["code"] == "validation_error"
    return body["errors"]


@pytest.mark.parametrize("form", sorted(LOOSE_UUIDS))
def test_a_uuid_not_in_the_canonical_form_is_422_by_its_path(client, service_headers, user, user_headers, form):
    loose = _loose(form, user)
    create = {"notification_type": "comment", "title": "x"}
    cases = [
        (PREFIX, service_headers, {**create, "user_id": loose}, "user_id"),
        (PREFIX, service_headers, {**create, "user_ids": [user, loose]}, "user_ids.1"),
        (PREFIX, service_headers, {**create, "user_id": user, "actor_user_id": loose}, "actor_user_id"),
        (f"{PREFIX}/mark-read", user_headers(user), {"notification_ids": [loose]}, "notification_ids.0"),
        (f"{PREFIX}/bulk", user_headers(user), {"action": "read", "notification_ids": [loose]}, "notification_ids.0"),
        (f"{PREFIX}/retract", service_headers, {"dedupe_key": "k", "actor_user_id": loose}, "actor_user_id"),
        (f"{PREFIX}/retract", service_headers, {"dedupe_key": "k", "user_ids": [loose]}, "user_ids.0"),
    ]
    for path, headers, body, key in cases:
        errors = _errors(client.post(path, json=body, headers=headers))
        assert errors == {key: ["Not a UUID in the 8-4-4-4-12 form."]}, (path, body, errors)


def test_the_canonical_form_is_accepted_in_either_case(client, service_headers, user, user_headers):
    for spelling in (user.lower(), user.upper()):
        response = client.post(PREFIX, headers=service_headers, json={
            "user_id": spelling, "notification_type": "comment", "title": "x", "actor_user_id": spelling.upper()})
        assert response.status_code == 201, response.get_json()
        result = response.get_json()["results"][0]
        assert result["user_id"] == user and result["notification"]["actor_user_id"] == user  # returned canonical
        notification_id = result["notification"]["notification_id"]
        marked = client.post(f"{PREFIX}/mark-read", headers=user_headers(user),
                             json={"notification_ids": [notification_id.upper()]})
        assert marked.status_code == 200 and marked.get_json()["updated_count"] == 1


def _rfc3339_spellings(moment: datetime) -> dict[str, str]:
    """RFC 3339 spellings of `moment` (UTC, whole seconds) that must be accepted."""
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    shifted = (moment + timedelta(hours=5, minutes=30)).strftime("%Y-%m-%dT%H:%M:%S")
    return {"Z": base + "Z", "lower-case t and z": base.replace("T", "t") + "z",
            "offset": shifted + "+05:30", "fraction (cut to microseconds)": base + ".000000999Z", "-00:00": base + "-00:00"}


def _refused_spellings(moment: datetime) -> dict[str, str]:
    """Near misses of RFC 3339 that must be refused (several are ISO 8601 that Python would take)."""
    return {"no seconds": moment.strftime("%Y-%m-%dT%H:%MZ"), "basic format": moment.strftime("%Y%m%dT%H%M%SZ"),
            "empty fraction": moment.strftime("%Y-%m-%dT%H:%M:%S.Z"),
            "no offset": moment.strftime("%Y-%m-%dT%H:%M:%S"), "space": moment.strftime("%Y-%m-%d %H:%M:%SZ"),
            "offset without colon": moment.strftime("%Y-%m-%dT%H:%M:%S+0000"),
            "hour offset": moment.strftime("%Y-%m-%dT%H:%M:%S+00"), "24:00": moment.strftime("%Y-%m-%dT24:00:00Z"),
            "day 32": moment.strftime("%Y-%m-32T%H:%M:%SZ"), "offset +24:00": moment.strftime("%Y-%m-%dT%H:%M:%S+24:00"),
            "week date": moment.strftime("%G-W%V-%uT%H:%M:%SZ"), "not a string": 1767225600}


def _timestamp_cases(user: str, notification_id: str, moment: str):
    """(method, path, credential, body, error key) for each timestamp input."""
    return [
        ("put", f"{PREFIX}/{notification_id}/snooze", "user", {"until": moment}, "until"),
        ("post", f"{PREFIX}/mark-read", "user", {"all": True, "before": moment}, "before"),
        ("post", f"{PREFIX}/bulk", "user", {"action": "seen", "all": True, "before": moment}, "before"),
        ("post", PREFIX, "service", {"user_id": user, "notification_type": "comment", "title": "x",
                                     "expires_at": moment}, "expires_at"),
    ]


@pytest.fixture
def soon():
    """A moment every timestamp input accepts: in the future, less than 90 days ahead, whole seconds."""
    return (datetime.now(timezone.utc) + timedelta(days=2)).replace(microsecond=0)


def test_every_rfc3339_spelling_is_accepted_everywhere(client, service_headers, user, user_headers, notify, soon):
    notification_id = notify(user)["notification_id"]
    credentials = {"user": user_headers(user), "service": service_headers}
    for name, spelling in _rfc3339_spellings(soon).items():
        assert parse_rfc3339(spelling) == soon
        for method, path, credential, body, key in _timestamp_cases(user, notification_id, spelling):
            response = client.open(path, method=method, json=body, headers=credentials[credential])
            assert response.status_code in (200, 201), (name, path, response.get_json())
            if key == "until":
                assert response.get_json()["snoozed_until"] == soon.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
            if key == "expires_at":
                stored = response.get_json()["results"][0]["notification"]["expires_at"]
                assert stored == soon.strftime("%Y-%m-%dT%H:%M:%S.000000Z"), (name, stored)


def test_anything_else_is_422_keyed_by_the_field(client, service_headers, user, user_headers, notify, soon):
    notification_id = notify(user)["notification_id"]
    credentials = {"user": user_headers(user), "service": service_headers}
    for name, spelling in _refused_spellings(soon).items():
        for method, path, credential, body, key in _timestamp_cases(user, notification_id, spelling):
            errors = _errors(client.open(path, method=method, json=body, headers=credentials[credential]))
            assert list(errors) == [key], (name, path, errors)


def test_a_leap_second_is_the_last_microsecond_of_its_minute():
    assert parse_rfc3339("2016-12-31T23:59:60Z") == datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
    assert parse_rfc3339("2027-01-01T00:00:00.5+01:00") == datetime(2026, 12, 31, 23, 0, 0, 500000,
                                                                    tzinfo=timezone.utc)

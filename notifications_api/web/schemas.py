"""Marshmallow schemas: one per use (query, create, update, output). They never touch the database."""
from __future__ import annotations

import json
import re
import uuid
import zoneinfo
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

TYPE_PATTERN = r"^[a-z][a-z0-9_.:-]{0,63}$"
TYPE_RE = re.compile(TYPE_PATTERN)
TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
PRIORITIES = ("low", "normal", "high", "urgent")
STATUSES = ("unread", "read", "archived", "snoozed", "all")
BULK_ACTIONS = ("seen", "read", "unread", "archive", "unarchive", "delete")
BULK_STATUSES = ("unread", "read", "archived", "snoozed")
CHANNELS = ("in_app", "email", "push")
MAX_PAYLOAD_BYTES = 16 * 1024
MAX_TYPE_FILTERS = 20
MAX_TYPE_PREFERENCES = 200


# In tzdata's file list but not IANA zone names a user could mean ("localtime" is the host's zone).
NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@lru_cache(maxsize=1)
def iana_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - NOT_ZONES


def check_text(value: str) -> None:
    """Reject what PostgreSQL text cannot store: NUL and lone surrogates."""
    if "\x00" in value:
        raise ValidationError("Must not contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("Must be valid Unicode text.") from None


class Text(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        check_text(text)
        return text


class FullMatch(validate.Regexp):
    """Regexp that must match the whole value (`$` alone also matches before a final newline)."""

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


# IDs in the canonical 8-4-4-4-12 form only (either case): fields.UUID would also take 32 bare hex
# digits, `urn:uuid:...`, `{...}` and hyphens anywhere.
UUID_PATTERN = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
UUID_RE = re.compile(UUID_PATTERN)


class CanonicalUUID(fields.UUID):
    """A UUID written 8-4-4-4-12 (upper or lower case), nothing else."""

    default_error_messages = {"invalid_uuid": "Not a UUID in the 8-4-4-4-12 form."}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or UUID_RE.fullmatch(value) is None:
            raise self.make_error("invalid_uuid")
        return uuid.UUID(value)


# RFC 3339 `date-time` exactly (section 5.6): seconds required, `T`/`Z` in either case, an offset
# required. datetime.fromisoformat would also take `2027-01-01T00:00Z` or the basic format.
RFC3339_PATTERN = (r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
                   r"(?:([Zz])|([+-])(\d{2}):(\d{2}))$")
RFC3339_RE = re.compile(RFC3339_PATTERN, re.ASCII)


def parse_rfc3339(text: str) -> datetime:
    """An aware datetime from an RFC 3339 date-time; ValueError when it is not one. A leap second
    (`:60`) is read as the last microsecond of its minute; fractions beyond microseconds are cut."""
    match = RFC3339_RE.fullmatch(text)
    if match is None:
        raise ValueError(text)
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    micro = int((match[7] or "0")[:6].ljust(6, "0"))
    if match[8]:
        offset = timedelta(0)
    else:
        hours, minutes = int(match[10]), int(match[11])
        if hours > 23 or minutes > 59:
            raise ValueError(text)
        offset = timedelta(hours=hours, minutes=minutes) * (-1 if match[9] == "-" else 1)
    if second == 60:
        second, micro = 59, 999999
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=timezone(offset))


class Rfc3339DateTime(fields.DateTime):
    """A timestamp input: RFC 3339 date-time (with its offset), nothing looser."""

    default_error_messages = {"invalid": "Not a valid RFC 3339 date-time (such as 2027-01-01T00:00:00Z)."}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            return parse_rfc3339(value)
        except (ValueError, OverflowError):
            raise self.make_error("invalid") from None


class StrictBoolean(fields.Boolean):
    """JSON true/false only: no "yes", 1 or "on" (1 == True in Python, so check the type)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class QueryBoolean(fields.Field):
    """Query-string boolean: true/false/1/0 and nothing else."""

    SPELLINGS = {"true": True, "1": True, "false": False, "0": False}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or value not in self.SPELLINGS:
            raise ValidationError("Must be one of: true, false, 1, 0.")
        return self.SPELLINGS[value]


class QueryInteger(fields.Field):
    """Query-string integer: plain digits only (no sign, spaces, decimals)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 9:
            raise ValidationError("Must be a whole number.")
        return int(value)


class TypeList(fields.Field):
    """Notification types from a repeated and/or comma-separated query parameter."""

    def _deserialize(self, value, attr, data, **kwargs):
        values = value if isinstance(value, list) else [value]
        types: list[str] = []
        for item in values:
            if not isinstance(item, str):
                raise ValidationError("Must be a notification type.")
            for part in item.split(","):
                part = part.strip()
                if not TYPE_RE.fullmatch(part):
                    raise ValidationError(f"Not a valid notification type: {part[:64]!r}.")
                if part not in types:
                    types.append(part)
        if len(types) > MAX_TYPE_FILTERS:
            raise ValidationError(f"At most {MAX_TYPE_FILTERS} types.")
        return types


LATEST_TIMESTAMP = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
SNOOZE_MIN, SNOOZE_MAX = timedelta(seconds=60), timedelta(days=90)


def _future(value: datetime) -> None:
    try:
        utc = value.astimezone(timezone.utc)
    except OverflowError:
        utc = None
    if utc is None or utc > LATEST_TIMESTAMP:  # PostgreSQL would store year 10000, unreadable
        raise ValidationError("Must be before 9999-12-31T23:59:59Z.")
    if utc <= datetime.now(timezone.utc):
        raise ValidationError("Must be in the future.")


# ---- query schemas -----------------------------------------------------------------------

class ListQuerySchema(Schema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    type = TypeList()
    limit = QueryInteger(validate=validate.Range(1, 100, error="Must be between {min} and {max}."),
                         load_default=20)
    cursor = fields.String(validate=validate.Length(1, 512))


class GroupsQuerySchema(Schema):
    limit = QueryInteger(validate=validate.Range(1, 100, error="Must be between {min} and {max}."),
                         load_default=20)
    cursor = fields.String(validate=validate.Length(1, 512))
    unread = QueryBoolean(load_default=False)


class DeleteQuerySchema(Schema):
    permanent = QueryBoolean(load_default=False)


class EmptyQuerySchema(Schema):
    pass


# ---- request bodies ----------------------------------------------------------------------

class CreateNotificationSchema(Schema):
    user_id = CanonicalUUID()
    user_ids = fields.List(CanonicalUUID(), validate=validate.Length(1, 1000))
    notification_type = Text(required=True, validate=FullMatch(TYPE_PATTERN))
    title = Text(required=True, validate=validate.Length(1, 200))
    message = Text(allow_none=True, validate=validate.Length(max=2000))
    actor_user_id = CanonicalUUID(allow_none=True)
    target_type = Text(allow_none=True, validate=validate.Length(1, 100))
    target_id = Text(allow_none=True, validate=validate.Length(1, 255))
    action_url = fields.Url(allow_none=True, schemes={"http", "https"}, require_tld=False,
                            validate=validate.Length(max=2048))
    payload = fields.Dict(keys=fields.String(), load_default=dict)
    priority = fields.String(validate=validate.OneOf(PRIORITIES), load_default="normal")
    group_key = Text(allow_none=True, validate=validate.Length(1, 255))
    expires_at = Rfc3339DateTime(allow_none=True, validate=_future)
    dedupe_key = Text(allow_none=True, validate=validate.Length(1, 128))

    @validates("payload")
    def _payload_size(self, value: dict, data_key: str) -> None:
        try:
            # allow_nan=False: 1e400 parses as inf, which jsonb cannot store (a 500 otherwise)
            encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                                 allow_nan=False).encode("utf-8")
        except (UnicodeEncodeError, ValueError):
            raise ValidationError("Must be valid JSON text.") from None
        if b"\\u0000" in encoded:
            raise ValidationError("Must not contain NUL characters.")
        if len(encoded) > MAX_PAYLOAD_BYTES:
            raise ValidationError(f"Must be at most {MAX_PAYLOAD_BYTES} bytes serialized.")

    @validates_schema
    def _one_target(self, data: dict, **kwargs) -> None:
        if ("user_id" in data) == ("user_ids" in data):
            raise ValidationError("Exactly one of user_id and user_ids is required.", "user_id")
        if len(set(data.get("user_ids") or ())) != len(data.get("user_ids") or ()):
            raise ValidationError("User ids must be unique.", "user_ids")


class MarkReadSchema(Schema):
    notification_ids = fields.List(CanonicalUUID(), validate=validate.Length(1, 1000))
    notification_type = Text(validate=FullMatch(TYPE_PATTERN))
    all = StrictBoolean()
    before = Rfc3339DateTime()

    @validates_schema
    def _selector(self, data: dict, **kwargs) -> None:
        if not (data.get("notification_ids") or data.get("notification_type") or data.get("all")):
            raise ValidationError(
                "Give at least one of notification_ids, notification_type or all: true.", "all")


class BulkSchema(Schema):
    action = fields.String(required=True, validate=validate.OneOf(BULK_ACTIONS))
    notification_ids = fields.List(CanonicalUUID(), validate=validate.Length(1, 1000))
    notification_type = Text(validate=FullMatch(TYPE_PATTERN))
    group_key = Text(validate=validate.Length(1, 255))
    status = fields.String(validate=validate.OneOf(BULK_STATUSES))
    all = StrictBoolean()
    before = Rfc3339DateTime()

    @validates_schema
    def _selector(self, data: dict, **kwargs) -> None:
        selectors = ("notification_ids", "notification_type", "group_key", "status", "all")
        if not any(data.get(k) for k in selectors):
            raise ValidationError("Give at least one of notification_ids, notification_type, group_key, "
                                  "status or all: true.", "all")


def _snooze_range(value: datetime) -> None:
    try:
        utc = value.astimezone(timezone.utc)
    except OverflowError:
        utc = None
    now = datetime.now(timezone.utc)
    if utc is None or not now + SNOOZE_MIN <= utc <= now + SNOOZE_MAX:
        raise ValidationError("Must be at least 60 seconds and at most 90 days ahead.")


class SnoozeSchema(Schema):
    until = Rfc3339DateTime(required=True, validate=_snooze_range)


class RetractSchema(Schema):
    dedupe_key = Text(validate=validate.Length(1, 128))
    target_type = Text(validate=validate.Length(1, 100))
    target_id = Text(validate=validate.Length(1, 255))
    notification_type = Text(validate=FullMatch(TYPE_PATTERN))
    actor_user_id = CanonicalUUID()
    user_ids = fields.List(CanonicalUUID(), validate=validate.Length(1, 1000))

    @validates_schema
    def _one_selector(self, data: dict, **kwargs) -> None:
        by_target = "target_type" in data or "target_id" in data
        if ("dedupe_key" in data) == by_target:
            raise ValidationError("Give exactly one of dedupe_key or target_type with target_id.",
                                  "dedupe_key")
        for field in ("target_type", "target_id"):
            if by_target and field not in data:
                raise ValidationError("target_type and target_id go together.", field)


class ChannelPreferencesSchema(Schema):
    in_app = StrictBoolean()
    email = StrictBoolean()
    push = StrictBoolean()


class IanaZone(fields.String):
    """An IANA time zone name (quiet hours, the daily e-mail digest)."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if text not in iana_zones():
            raise ValidationError("Must be an IANA time zone name such as Europe/Amsterdam.")
        return text


class QuietHoursSchema(Schema):
    start = fields.String(required=True, validate=FullMatch(TIME_RE, error="Must be HH:MM."))
    end = fields.String(required=True, validate=FullMatch(TIME_RE, error="Must be HH:MM."))
    timezone = IanaZone(required=True)

    @validates_schema
    def _distinct(self, data: dict, **kwargs) -> None:
        if data.get("start") and data.get("start") == data.get("end"):
            raise ValidationError("Must differ from start.", "end")


class EmailDigestSchema(Schema):
    """API.md "E-mail digests": batched (default) or daily at a local time; replaced whole."""

    frequency = fields.String(required=True, validate=validate.OneOf(("batched", "daily")),
                              metadata={"description": "`batched`: one e-mail once the oldest unseen "
                                        "notification has waited EMAIL_DIGEST_DELAY_SECONDS; `daily`: one a "
                                        "day at `at` local time."})
    at = fields.String(allow_none=True, load_default=None,
                       validate=FullMatch(TIME_RE, error="Must be HH:MM."),
                       metadata={"description": "HH:MM, required with daily, null with batched. A time "
                                 "that does not exist that day (DST) goes at the next minute that does; one "
                                 "that happens twice goes once."})
    timezone = IanaZone(allow_none=True, load_default=None,
                        metadata={"description": "IANA name, required with daily, null with batched."})

    @validates_schema
    def _by_frequency(self, data: dict, **kwargs) -> None:
        daily = data.get("frequency") == "daily"
        errors = {}
        for field in ("at", "timezone"):
            if daily and data.get(field) is None:
                errors[field] = ["Required with frequency daily."]
            elif not daily and data.get(field) is not None:
                errors[field] = ["Must be null with frequency batched."]
        if errors and "frequency" in data:
            raise ValidationError(errors)


class TypeName(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not TYPE_RE.fullmatch(text):
            raise ValidationError("Not a valid notification type.")
        return text


class SettingsPatchSchema(Schema):
    in_app_enabled = StrictBoolean()
    email_enabled = StrictBoolean()
    push_enabled = StrictBoolean()
    type_preferences = fields.Dict(
        keys=TypeName(), values=fields.Nested(ChannelPreferencesSchema, allow_none=True),
        validate=validate.Length(max=MAX_TYPE_PREFERENCES))
    quiet_hours = fields.Nested(QuietHoursSchema, allow_none=True)
    email_digest = fields.Nested(EmailDigestSchema, allow_none=True, metadata={
        "description": "Replaced whole; null restores the default (batched)."})


# ---- responses (documented in OpenAPI; the views use the fast dumpers below) -------------

class NotificationSchema(Schema):
    notification_id = fields.UUID(required=True)
    user_id = fields.UUID(required=True)
    notification_type = fields.String(required=True)
    title = fields.String(required=True)
    message = fields.String(allow_none=True)
    actor_user_id = fields.UUID(allow_none=True)
    target_type = fields.String(allow_none=True)
    target_id = fields.String(allow_none=True)
    action_url = fields.String(allow_none=True)
    payload = fields.Dict(required=True)
    priority = fields.String(required=True, validate=validate.OneOf(PRIORITIES))
    group_key = fields.String(allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf(("unread", "read", "archived", "snoozed")))
    created_at = fields.String(required=True, metadata={"format": "date-time"})
    delivered_at = fields.String(required=True, metadata={
        "format": "date-time",
        "description": "When it entered the inbox: created_at, or the end of its last snooze. Lists are "
                       "ordered by (delivered_at, notification_id)."})
    seen_at = fields.String(allow_none=True, metadata={
        "format": "date-time", "description": "When the user first saw it (action seen, or reading it)."})
    read_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    archived_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    snoozed_until = fields.String(allow_none=True, metadata={
        "format": "date-time", "description": "The end of the current or last snooze."})
    expires_at = fields.String(allow_none=True, metadata={"format": "date-time"})


class NotificationListSchema(Schema):
    items = fields.List(fields.Nested(NotificationSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class GroupSchema(Schema):
    group_key = fields.String(allow_none=True, required=True, metadata={
        "description": "null: a notification without a group_key, a group of one."})
    notifications_count = fields.Integer(required=True)
    unread_count = fields.Integer(required=True)
    sample_actor_user_ids = fields.List(fields.UUID(), required=True, metadata={
        "description": "The distinct non-null actor_user_ids among the group's 10 most recent members, "
                       "newest first, at most 3."})
    latest = fields.Nested(NotificationSchema, required=True, metadata={
        "description": "The member with the greatest (delivered_at, notification_id)."})
    oldest_delivered_at = fields.String(required=True, metadata={"format": "date-time"})


class GroupListSchema(Schema):
    items = fields.List(fields.Nested(GroupSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class UnreadCountSchema(Schema):
    unread_count = fields.Integer(required=True)
    unseen_count = fields.Integer(required=True)
    by_type = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


class MarkReadResultSchema(Schema):
    updated_count = fields.Integer(required=True)
    unread_count = fields.Integer(required=True)
    unseen_count = fields.Integer(required=True)


class BulkResultSchema(Schema):
    updated_count = fields.Integer(required=True)
    unread_count = fields.Integer(required=True)
    unseen_count = fields.Integer(required=True)


class RetractResultSchema(Schema):
    retracted_count = fields.Integer(required=True)
    has_more = fields.Boolean(required=True)


class CreateResultSchema(Schema):
    user_id = fields.UUID(required=True)
    result = fields.String(required=True, validate=validate.OneOf(
        ("created", "duplicate", "suppressed", "user_not_found", "user_inactive")))
    notification = fields.Nested(NotificationSchema, allow_none=True, required=True)


class CreateResponseSchema(Schema):
    created_count = fields.Integer(required=True)
    results = fields.List(fields.Nested(CreateResultSchema), required=True)


class SettingsSchema(Schema):
    in_app_enabled = fields.Boolean(required=True)
    email_enabled = fields.Boolean(required=True)
    push_enabled = fields.Boolean(required=True)
    type_preferences = fields.Dict(keys=fields.String(), values=fields.Nested(ChannelPreferencesSchema),
                                   required=True)
    quiet_hours = fields.Nested(QuietHoursSchema, allow_none=True, required=True)
    updated_at = fields.String(allow_none=True, required=True, metadata={"format": "date-time"})
    email_digest = fields.Nested(EmailDigestSchema, required=True)


class ProblemSchema(Schema):
    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    code = fields.String(required=True)
    detail = fields.String(required=True)
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    request_id = fields.String(required=True)


class HealthSchema(Schema):
    status = fields.String(required=True)
    checks = fields.Dict(keys=fields.String(), values=fields.String())


class IndexLinksSchema(Schema):
    api = fields.String(required=True, metadata={"description": "The notifications collection."})
    health = fields.String(required=True)
    docs = fields.String(metadata={"description": "Swagger UI (only with ENABLE_DOCS)."})
    openapi = fields.String(metadata={"description": "The OpenAPI document (only with ENABLE_DOCS)."})


class IndexSchema(Schema):
    name = fields.String(required=True)
    links = fields.Nested(IndexLinksSchema, required=True)


# ---- loading helpers ---------------------------------------------------------------------

def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested error dicts -> {"user_ids.3": [...], "quiet_hours.timezone": [...]}."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key == "value" and isinstance(value, dict) and prefix:
                flat.update(flatten_errors(value, prefix))  # Dict field value errors
                continue
            if key in ("key", "_schema") and prefix:  # errors of the object itself: its own path
                flat.update(flatten_errors(value, prefix))
                continue
            path = f"{prefix}.{key}" if prefix else str(key)
            flat.update(flatten_errors(value, path))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        flat[prefix or "_schema"] = list(messages)
    else:
        flat[prefix or "_schema"] = [str(messages)]
    return flat

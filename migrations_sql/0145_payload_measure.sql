-- migrate:no-transaction
-- 0145: the payload limit measured one way (issue 26). API.md's "≤ 16 KiB serialized" is compact
-- JSON: the API's schema and sp_inbox_create (activity._compact_json_octets) measure that. The
-- table's check measured jsonb's own text form (a space after every ':' and ','), up to 1.5 times
-- longer, and refused payloads the contract allows; it becomes a backstop on that text at twice
-- the limit, which no payload the rule lets through reaches. Each statement alone; all can run again.
SET lock_timeout = '5s';
-- migrate:split
ALTER TABLE activity.notifications DROP CONSTRAINT IF EXISTS notifications_payload_backstop;
-- migrate:split
ALTER TABLE activity.notifications ADD CONSTRAINT notifications_payload_backstop
    CHECK (jsonb_typeof(payload) = 'object' AND octet_length(payload::text) <= 32768) NOT VALID;
-- migrate:split
ALTER TABLE activity.notifications VALIDATE CONSTRAINT notifications_payload_backstop;
-- migrate:split
ALTER TABLE activity.notifications DROP CONSTRAINT IF EXISTS notifications_payload_object;

-- wsproof key registry, schema version 1. Applied by "wsproof db migrate"
-- (postgres.Admin.Migrate) in one transaction, which also records the
-- version in wsproof_schema.

-- One row per registry entry. entry is the source of truth: the entry in the
-- registry file format (one member of a registry file's "keys" array), read
-- with keys.ParseEntry. The other columns repeat parts of it for queries and
-- for the uniqueness of keys; a row whose columns disagree with its entry is
-- refused by every server, as if it were absent.
CREATE TABLE wsproof_keys (
    -- The spec's key id rules: 1 to 128 printable ASCII characters. They
    -- also keep every NOTIFY payload far below its 8000-byte limit.
    kid        text PRIMARY KEY CHECK (octet_length(kid) BETWEEN 1 AND 128 AND kid ~ '^[!-~]+$'),
    -- Far more than the largest entry the registry rules allow (an RSA-4096
    -- key with 64 groups of 128 bytes is under 11 KiB).
    entry      text NOT NULL CHECK (octet_length(entry) <= 65536),
    -- RFC 7638 thumbprint of the key: one key has one entry (spec section
    -- "One key, one algorithm").
    thumbprint text NOT NULL UNIQUE,
    subject    text NOT NULL,
    revoked    boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX wsproof_keys_subject ON wsproof_keys (subject);

-- Every change to wsproof_keys, written by the trigger below, so that changes
-- made with raw SQL are recorded too. Pruning old rows is up to the operator.
CREATE TABLE wsproof_audit (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    -- actor is who the change was made for, as its maker claims;
    -- db_role is the database role that made it.
    actor     text NOT NULL,
    db_role   text NOT NULL,
    action    text NOT NULL CHECK (action IN ('insert', 'update', 'delete')),
    kid       text NOT NULL,
    old_entry text,
    new_entry text
);

CREATE INDEX wsproof_audit_kid ON wsproof_audit (kid, id);

-- Audits each change and announces the key ids it touched on channel
-- wsproof_keys, where every server LISTENs. Notifications are delivered at
-- commit, and not at all on rollback.
CREATE FUNCTION wsproof_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    -- The Admin API names the actor with set_config('wsproof.actor', ..., true);
    -- anyone else is recorded as their database role.
    who text := coalesce(nullif(current_setting('wsproof.actor', true), ''), session_user);
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO wsproof_audit (actor, db_role, action, kid, new_entry)
            VALUES (who, session_user, 'insert', NEW.kid, NEW.entry);
        PERFORM pg_notify('wsproof_keys', NEW.kid);
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO wsproof_audit (actor, db_role, action, kid, old_entry, new_entry)
            VALUES (who, session_user, 'update', NEW.kid, OLD.entry, NEW.entry);
        PERFORM pg_notify('wsproof_keys', NEW.kid);
        IF OLD.kid <> NEW.kid THEN
            PERFORM pg_notify('wsproof_keys', OLD.kid);
        END IF;
    ELSE
        INSERT INTO wsproof_audit (actor, db_role, action, kid, old_entry)
            VALUES (who, session_user, 'delete', OLD.kid, OLD.entry);
        PERFORM pg_notify('wsproof_keys', OLD.kid);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER wsproof_keys_changed
    AFTER INSERT OR UPDATE OR DELETE ON wsproof_keys
    FOR EACH ROW EXECUTE FUNCTION wsproof_keys_changed();

-- Keeps updated_at right for changes made with raw SQL too.
CREATE FUNCTION wsproof_keys_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER wsproof_keys_touch
    BEFORE UPDATE ON wsproof_keys
    FOR EACH ROW EXECUTE FUNCTION wsproof_keys_touch();

-- TRUNCATE fires no row triggers: it would bypass both the audit and the
-- notifications, so that servers kept serving deleted keys until their next
-- full reload. Refuse it.
CREATE FUNCTION wsproof_keys_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'wsproof_keys cannot be truncated: use DELETE, so that the change is audited and announced';
END
$$;

CREATE TRIGGER wsproof_keys_no_truncate
    BEFORE TRUNCATE ON wsproof_keys
    FOR EACH STATEMENT EXECUTE FUNCTION wsproof_keys_no_truncate();

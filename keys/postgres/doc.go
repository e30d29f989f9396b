// Package postgres is a client-key registry (spec section "Key registry")
// kept in PostgreSQL, for deployments of several servers that must agree on
// the keys and see a revocation within the one second of spec section
// "Revocation". Registry is what a server uses; Admin is what "wsproof keys"
// and "wsproof db" use to change it.
//
// # Schema
//
// Admin.Migrate ("wsproof db migrate") creates and upgrades the schema,
// recording each applied version in wsproof_schema. Migrations run one
// transaction each, under an advisory lock, so several nodes may migrate at
// once. Open refuses a database whose schema is older or newer than the
// code's (ErrSchemaVersion).
//
// wsproof_keys holds one row per registry entry. Its entry column is the
// source of truth: the entry exactly as it would appear in a registry file's
// "keys" array, read with keys.ParseEntry, so that the database accepts
// exactly what the registry file accepts. The kid, thumbprint, subject and
// revoked columns repeat parts of it for queries and for the uniqueness of
// key ids and keys (one key, one entry). A row whose entry does not load, or
// whose columns disagree with its entry, is treated by every server as
// absent: it fails closed, and is logged by key id and counted. Change rows
// with Admin, which writes both; raw SQL works too, if it keeps them
// consistent.
//
// A trigger on wsproof_keys records every insert, update and delete in
// wsproof_audit, with the actor the Admin caller names (the wsproof.actor
// setting, else the database role) and the database role, and announces
// the key ids changed with pg_notify on channel wsproof_keys. It covers
// changes made with raw SQL. TRUNCATE, which fires no row triggers, is
// refused.
//
// Privileges: the servers' role needs SELECT on wsproof_keys and
// wsproof_schema; the CLI's role also INSERT, UPDATE and DELETE on wsproof_keys,
// INSERT on wsproof_audit and USAGE on its id sequence (the trigger runs
// with the rights of whoever makes the change).
//
// # Caching and notifications
//
// A Registry answers Lookup from memory: a map under a read-write mutex,
// where a change to one key touches one map entry however large the
// registry. Run holds one connection per server. On every (re)connection it
// LISTENs first, then reloads every row, and only then counts as
// connected: a change committed after the reload's snapshot was taken is
// announced on a channel already listened to, so none falls in between.
// Notifications carry only a key id and no authority: Run drains those
// pending, fetches their rows with one query, and updates, adds or removes
// each key; then it calls OnChange once, and the server rechecks its live
// sessions. From commit to OnChange takes milliseconds. A full reload every
// ResyncInterval (five minutes) is a safety net for notifications lost
// otherwise, such as with triggers disabled by hand.
//
// Connect directly, or through a proxy in session mode: LISTEN does not
// work through transaction pooling.
//
// # Outages
//
// Run notices a lost database at once when the connection fails, and within
// PingInterval plus PingTimeout (seven seconds by default) when the network
// drops packets silently: after PingInterval without a notification it
// pings. It then logs a warning, sets wsproof_registry_db_up to 0, and
// reconnects with jittered exponential backoff from 100 ms to 10 s.
//
// Meanwhile the registry keeps serving the keys it knows, and Check stays
// nil, until Grace (five minutes by default) after the last contact with
// the database. During that time a revocation made in the database does not
// reach this node: Grace trades the one-second revocation bound for
// availability through short outages, so choose it accordingly. When Grace
// runs out, Check fails with an error wrapping keys.ErrUnavailable and Run
// calls OnChange at that moment: the server refuses every handshake and
// ends every session with internal_error, which clients retry with backoff.
// When the database is back, Run reloads every key (picking up all changes
// missed meanwhile), and only once the reloaded keys are in the cache does
// Check return nil again, so that no key revoked during the outage is
// served by a node that reports itself current; then OnChange is called.
//
// # Metrics
//
// With Config.Metrics set: wsproof_registry_db_up,
// wsproof_registry_db_last_contact_timestamp_seconds,
// wsproof_registry_db_reconnects_total,
// wsproof_registry_db_notifications_total,
// wsproof_registry_db_bad_entries_total and wsproof_registry_keys.
package postgres

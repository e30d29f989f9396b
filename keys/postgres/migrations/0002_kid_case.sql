-- wsproof key registry, schema version 2: key ids that differ only in case are
-- one key id (spec section "Load-time rules"), as in a registry file, where
-- such a file is refused as a whole. The index refuses the second of two such
-- rows, whoever writes it, plain SQL included; if a database already holds
-- two, this migration fails and names the index: remove or rename one of the
-- pair, then migrate again.
CREATE UNIQUE INDEX wsproof_keys_kid_folded ON wsproof_keys (lower(kid));

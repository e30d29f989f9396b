package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wsproof/wsproof/keys"
)

// Errors of the Admin methods, for callers to branch on.
var (
	ErrDuplicateKeyID = errors.New("postgres: key id already in the registry")
	ErrDuplicateKey   = errors.New("postgres: key already enrolled")
	ErrNotFound       = errors.New("postgres: no such key id")
	ErrAlreadyRevoked = errors.New("postgres: key already revoked")
)

// DuplicateError is returned by Add and Import for an entry that would
// break a registry rule: its key id is taken (Err is ErrDuplicateKeyID), or
// its key is enrolled already, since one key has one entry (Err is
// ErrDuplicateKey; spec section "One key, one algorithm").
type DuplicateError struct {
	KeyID string // of the entry already in the registry
	Err   error  // ErrDuplicateKeyID or ErrDuplicateKey
}

func (e *DuplicateError) Error() string {
	if e.Err == ErrDuplicateKeyID {
		return fmt.Sprintf("postgres: key id %q is already in the registry", e.KeyID)
	}
	return fmt.Sprintf("postgres: the key is already enrolled as %q", e.KeyID)
}

func (e *DuplicateError) Unwrap() error { return e.Err }

// AuditRecord is one row of wsproof_audit: one change to wsproof_keys, made
// through Admin or with raw SQL.
type AuditRecord struct {
	ID     int64
	At     time.Time // the start of the changing transaction
	Actor  string    // the actor given to Admin (as its caller claims), else the database role
	Role   string    // the database role that made the change
	Action string    // "insert", "update" or "delete"
	KeyID  string
	Old    []byte // the entry before the change; nil for an insert
	New    []byte // the entry after the change; nil for a delete
}

// Admin edits the registry in the database, for "wsproof keys" and
// "wsproof db". It holds one connection and is not safe for concurrent use.
// Every change is made in a transaction that names its actor in the audit
// log, and reaches running servers through the schema's notification
// trigger within their propagation time.
type Admin struct {
	conn    *pgx.Conn
	checked bool // the schema version was checked
}

// Connect connects to the database at url (a postgres:// URL or libpq
// key=value string). The caller closes the Admin.
func Connect(ctx context.Context, url string) (*Admin, error) {
	cfg, err := parseURL(url)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	return &Admin{conn: conn}, nil
}

// Close closes the connection.
func (a *Admin) Close(ctx context.Context) error { return a.conn.Close(ctx) }

// Migrate brings the schema up to the version this package needs, applying
// each pending migration in its own transaction, and returns the versions
// it applied (none if the schema was current). It is safe to run from
// several nodes at once: an advisory lock serializes them. It fails,
// wrapping ErrSchemaVersion, if the schema is newer than this package.
func (a *Admin) Migrate(ctx context.Context) ([]int, error) {
	return migrate(ctx, a.conn)
}

// Add enrolls e. It fails with a *DuplicateError if e's key id is taken or
// its key is enrolled already, and with an error wrapping keys.ErrInvalidKey
// if e breaks the registry rules. actor names who made the change in the
// audit log; empty means the database role.
func (a *Admin) Add(ctx context.Context, e *keys.Entry, actor string) error {
	rw, err := newRow(e)
	if err != nil {
		return err
	}
	return a.change(ctx, actor, func(tx pgx.Tx) error {
		dup, err := insert(ctx, tx, rw)
		if dup != nil {
			return dup
		}
		return err
	})
}

// Import enrolls es in one transaction, all or nothing, by the rules of
// "wsproof keys import": an entry whose key is enrolled already, in the
// database or earlier in es, is skipped, and existing[i] is the key id that
// holds es[i]'s key; existing[i] is "" for an entry added. A key id that is
// taken fails the whole import with a *DuplicateError.
func (a *Admin) Import(ctx context.Context, es []*keys.Entry, actor string) (existing []string, err error) {
	if len(es) == 0 {
		return []string{}, nil
	}
	rows := make([]row, len(es))
	for i, e := range es {
		if rows[i], err = newRow(e); err != nil {
			return nil, fmt.Errorf("postgres: import entry %d: %w", i, err)
		}
	}
	err = a.change(ctx, actor, func(tx pgx.Tx) error {
		existing = make([]string, len(es))
		tps := make([]string, len(rows))
		for i, rw := range rows {
			tps[i] = rw.thumbprint
		}
		enrolled := map[string]string{} // thumbprint to kid
		var tp, kid string
		q, err := tx.Query(ctx, "SELECT thumbprint, kid FROM wsproof_keys WHERE thumbprint = ANY($1)", tps)
		if err != nil {
			return err
		}
		if _, err := pgx.ForEachRow(q, []any{&tp, &kid}, func() error { enrolled[tp] = kid; return nil }); err != nil {
			return err
		}
		// One round trip for all the inserts; conflicts, rare, are
		// sorted out after.
		var todo []int
		batch := &pgx.Batch{}
		for i, rw := range rows {
			if kid, ok := enrolled[rw.thumbprint]; ok {
				existing[i] = kid
				continue
			}
			enrolled[rw.thumbprint] = rw.kid
			todo = append(todo, i)
			batch.Queue(insertRow, rw.kid, rw.entry, rw.thumbprint, rw.subject, rw.revoked)
		}
		res := tx.SendBatch(ctx, batch)
		var conflicts []int
		for _, i := range todo {
			tag, err := res.Exec()
			if err != nil {
				res.Close()
				return err
			}
			if tag.RowsAffected() == 0 {
				conflicts = append(conflicts, i)
			}
		}
		if err := res.Close(); err != nil {
			return err
		}
		for _, i := range conflicts {
			dup, err := conflict(ctx, tx, rows[i])
			switch {
			case err != nil:
				return err
			case dup.Err == ErrDuplicateKey: // enrolled meanwhile
				existing[i] = dup.KeyID
			default:
				return dup
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return existing, nil
}

const insertRow = `INSERT INTO wsproof_keys (kid, entry, thumbprint, subject, revoked)
	VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`

// insert adds rw, or returns the DuplicateError that keeps it out.
func insert(ctx context.Context, tx pgx.Tx, rw row) (*DuplicateError, error) {
	// ON CONFLICT DO NOTHING rather than catching the unique violation,
	// which would abort the transaction.
	tag, err := tx.Exec(ctx, insertRow, rw.kid, rw.entry, rw.thumbprint, rw.subject, rw.revoked)
	if err != nil || tag.RowsAffected() == 1 {
		return nil, err
	}
	return conflict(ctx, tx, rw)
}

// conflict returns the DuplicateError for rw, whose insert did nothing. The
// key id is checked before the key, as "wsproof keys add" does.
func conflict(ctx context.Context, tx pgx.Tx, rw row) (*DuplicateError, error) {
	var kid string
	var sameKID bool
	// Key ids that differ only in case are one key id (schema version 2).
	err := tx.QueryRow(ctx, `SELECT kid, lower(kid) = lower($1) FROM wsproof_keys
		WHERE lower(kid) = lower($1) OR thumbprint = $2
		ORDER BY lower(kid) = lower($1) DESC LIMIT 1`, rw.kid, rw.thumbprint).Scan(&kid, &sameKID)
	switch {
	case errors.Is(err, pgx.ErrNoRows): // the conflicting row went away meanwhile
		return nil, fmt.Errorf("concurrent change to key %q: try again", rw.kid)
	case err != nil:
		return nil, err
	case sameKID:
		return &DuplicateError{KeyID: kid, Err: ErrDuplicateKeyID}, nil
	}
	return &DuplicateError{KeyID: kid, Err: ErrDuplicateKey}, nil
}

// Revoke marks the key kid as revoked; running servers close its sessions
// within their propagation time. The entry stays, so that the revocation is
// visible. It fails with ErrNotFound if there is no such key, and with
// ErrAlreadyRevoked, changing nothing, if it is revoked already.
func (a *Admin) Revoke(ctx context.Context, kid, actor string) error {
	return a.Update(ctx, kid, actor, func(e *keys.Entry) error {
		if e.Revoked {
			return fmt.Errorf("%w: %q", ErrAlreadyRevoked, kid)
		}
		e.Revoked = true
		return nil
	})
}

// Update changes the entry of the key kid in one transaction: change is
// called with a copy of the entry as it is in the database, with the row
// locked against other changes, and the copy it leaves is written back if it
// differs, checked by the registry rules (it fails with an error wrapping
// keys.ErrInvalidKey if it breaks one, writing nothing). change may alter
// anything but the key id and the key; an error it returns aborts the
// update, and Update returns it as is. Running servers apply the change to
// live sessions within their propagation time (spec section "Revocation":
// a session whose key is revoked, leaves its validity window or is no
// longer authorized ends). It fails with ErrNotFound if there is no such
// key.
func (a *Admin) Update(ctx context.Context, kid, actor string, change func(*keys.Entry) error) error {
	return a.change(ctx, actor, func(tx pgx.Tx) error {
		var rw row
		err := tx.QueryRow(ctx, selectRows+" WHERE kid = $1 FOR UPDATE", kid).
			Scan(&rw.kid, &rw.entry, &rw.thumbprint, &rw.subject, &rw.revoked)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %q", ErrNotFound, kid)
		}
		if err != nil {
			return err
		}
		e, err := rw.parse()
		if err != nil {
			// Servers refuse the key already; fixing the row is a job
			// for SQL, with care.
			return fmt.Errorf("the row of key %q does not load: %w", kid, err)
		}
		c := *e
		c.Groups = slices.Clone(e.Groups)
		if err := change(&c); err != nil {
			return &changeError{err}
		}
		if c.KeyID != e.KeyID || c.Thumbprint != e.Thumbprint {
			return errors.New("an update cannot change the key id or the key")
		}
		nrw, err := newRow(&c)
		if err != nil || nrw.entry == rw.entry {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE wsproof_keys SET entry = $2, subject = $3, revoked = $4 WHERE kid = $1",
			kid, nrw.entry, nrw.subject, nrw.revoked)
		return err
	})
}

// changeError carries the error of Update's change function through change,
// which returns it unwrapped.
type changeError struct{ err error }

func (e *changeError) Error() string { return e.err.Error() }
func (e *changeError) Unwrap() error { return e.err }

// Remove deletes the entry of the key kid. Running servers close its
// sessions within their propagation time, and refuse it from then on, as
// for a revoked key; but nothing records that the key was refused, so it
// may be enrolled again. It fails with ErrNotFound if there is no such key.
func (a *Admin) Remove(ctx context.Context, kid, actor string) error {
	return a.change(ctx, actor, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM wsproof_keys WHERE kid = $1", kid)
		if err == nil && tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: %q", ErrNotFound, kid)
		}
		return err
	})
}

// List returns every entry, oldest first. Rows that do not load, which
// servers treat as absent, are left out and named, by key id, in the error
// returned along with the other entries.
func (a *Admin) List(ctx context.Context) ([]*keys.Entry, error) {
	if err := a.ready(ctx); err != nil {
		return nil, err
	}
	rows, err := a.conn.Query(ctx, selectRows+" ORDER BY created_at, kid")
	if err != nil {
		return nil, fmt.Errorf("postgres: list: %w", err)
	}
	var (
		out  []*keys.Entry
		bad  []error
		rw   row
		cols = []any{&rw.kid, &rw.entry, &rw.thumbprint, &rw.subject, &rw.revoked}
	)
	_, err = pgx.ForEachRow(rows, cols, func() error {
		e, err := rw.parse()
		if err != nil {
			bad = append(bad, fmt.Errorf("postgres: key %q does not load: %w", rw.kid, err))
			return nil
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list: %w", err)
	}
	return out, errors.Join(bad...)
}

// Audit returns the last limit records of the audit log, newest first.
func (a *Admin) Audit(ctx context.Context, limit int) ([]AuditRecord, error) {
	if limit <= 0 {
		return nil, errors.New("postgres: audit limit must be positive")
	}
	if err := a.ready(ctx); err != nil {
		return nil, err
	}
	rows, err := a.conn.Query(ctx, `SELECT id, at, actor, db_role, action, kid, old_entry, new_entry
		FROM wsproof_audit ORDER BY id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: audit: %w", err)
	}
	var (
		out      []AuditRecord
		rec      AuditRecord
		old, new *string
	)
	_, err = pgx.ForEachRow(rows, []any{&rec.ID, &rec.At, &rec.Actor, &rec.Role, &rec.Action, &rec.KeyID, &old, &new}, func() error {
		r := rec
		if old != nil {
			r.Old = []byte(*old)
		}
		if new != nil {
			r.New = []byte(*new)
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: audit: %w", err)
	}
	return out, nil
}

// change runs fn in a transaction that names actor for the audit trigger.
func (a *Admin) change(ctx context.Context, actor string, fn func(pgx.Tx) error) error {
	if err := a.ready(ctx); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, a.conn, func(tx pgx.Tx) error {
		// Local to the transaction: a later change on this connection
		// cannot inherit the actor by mistake.
		if _, err := tx.Exec(ctx, "SELECT set_config('wsproof.actor', $1, true)", actor); err != nil {
			return err
		}
		return fn(tx)
	})
	var (
		dup *DuplicateError
		ce  *changeError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return ce.err
	case errors.As(err, &dup), errors.Is(err, ErrNotFound), errors.Is(err, keys.ErrInvalidKey):
		return err
	}
	return fmt.Errorf("postgres: %w", err)
}

// ready checks the schema version once per Admin.
func (a *Admin) ready(ctx context.Context) error {
	if a.checked {
		return nil
	}
	if err := checkSchema(ctx, a.conn); err != nil {
		return err
	}
	a.checked = true
	return nil
}

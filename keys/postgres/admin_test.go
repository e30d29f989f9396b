package postgres

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsproof/wsproof/internal/pgtest"
	"github.com/wsproof/wsproof/keys"
)

func TestMigrationFiles(t *testing.T) {
	for i, m := range migrations {
		if m.version != i+1 {
			t.Errorf("migration %s has version %d, want %d: versions start at 1 without gaps", m.name, m.version, i+1)
		}
	}
}

func TestMigrateIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t)
	ctx := testCtx(t)

	url := c.NewDatabase(t)
	a := connect(t, url)
	var all []int
	for _, m := range migrations {
		all = append(all, m.version)
	}
	got, err := a.Migrate(ctx)
	if err != nil || !slices.Equal(got, all) {
		t.Fatalf("first Migrate: %v, %v; want %v", got, err, all)
	}
	got, err = a.Migrate(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("second Migrate: %v, %v; want nothing applied", got, err)
	}

	// Eight nodes migrating one fresh database at once: each migration is
	// applied exactly once, and nobody fails.
	url = c.NewDatabase(t)
	const nodes = 8
	admins := make([]*Admin, nodes)
	for i := range admins {
		admins[i] = connect(t, url)
	}
	var wg sync.WaitGroup
	results := make([][]int, nodes)
	errs := make([]error, nodes)
	for i, a := range admins {
		wg.Go(func() { results[i], errs[i] = a.Migrate(ctx) })
	}
	wg.Wait()
	var applied []int
	for i := range nodes {
		if errs[i] != nil {
			t.Errorf("node %d: %v", i, errs[i])
		}
		applied = append(applied, results[i]...)
	}
	slices.Sort(applied)
	want := []int{}
	for _, m := range migrations {
		want = append(want, m.version)
	}
	if !slices.Equal(applied, want) {
		t.Errorf("versions applied across nodes: %v, want each of %v once", applied, want)
	}
	var rows int
	if err := admins[0].conn.QueryRow(ctx, "SELECT count(*) FROM wsproof_schema").Scan(&rows); err != nil || rows != len(migrations) {
		t.Errorf("wsproof_schema has %d rows (%v), want %d", rows, err, len(migrations))
	}
}

func TestSchemaVersionMismatch(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t)
	ctx := testCtx(t)
	url := c.NewDatabase(t)

	_, err := Open(ctx, &Config{URL: url})
	if !errors.Is(err, ErrSchemaVersion) || !strings.Contains(err.Error(), "wsproof db migrate") {
		t.Errorf("Open of an empty database: %v; want ErrSchemaVersion telling to run wsproof db migrate", err)
	}
	a := connect(t, url)
	if _, err := a.List(ctx); !errors.Is(err, ErrSchemaVersion) {
		t.Errorf("List on an empty database: %v; want ErrSchemaVersion", err)
	}
	if _, err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}

	// A newer wsproof migrated the database.
	sql(t, url, "INSERT INTO wsproof_schema (version) VALUES ($1)", schemaVersion+1)
	_, err = Open(ctx, &Config{URL: url})
	if !errors.Is(err, ErrSchemaVersion) || !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open of a newer schema: %v; want ErrSchemaVersion saying it is newer", err)
	}
	if err := connect(t, url).Add(ctx, mustEntry(t, "k"), "test"); !errors.Is(err, ErrSchemaVersion) {
		t.Errorf("Add on a newer schema: %v; want ErrSchemaVersion", err)
	}
	if _, err := a.Migrate(ctx); !errors.Is(err, ErrSchemaVersion) {
		t.Errorf("Migrate of a newer schema: %v; want ErrSchemaVersion", err)
	}
}

// auditRec is what the tests compare of an audit record.
type auditRec struct{ actor, action, kid string }

// auditLog returns the audit log, newest first, and what the tests compare
// of it.
func auditLog(t *testing.T, a *Admin) ([]AuditRecord, []auditRec) {
	t.Helper()
	recs, err := a.Audit(testCtx(t), 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []auditRec
	for _, r := range recs {
		got = append(got, auditRec{r.Actor, r.Action, r.KeyID})
	}
	return recs, got
}

func mustEntry(t *testing.T, kid string) *keys.Entry {
	e, _ := newEntry(t, kid, "sub-"+kid)
	return e
}

func marshal(t *testing.T, e *keys.Entry) []byte {
	t.Helper()
	data, err := keys.MarshalEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestAdminRoundTrip(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t)
	ctx := testCtx(t)
	url, a := migrated(t, c)

	alice, _ := newEntry(t, "alice-1", "alice", "chat", "admin")
	bob, _ := newEntry(t, "bob-1", "bob")
	for _, e := range []*keys.Entry{alice, bob} {
		if err := a.Add(ctx, e, "operator-anna"); err != nil {
			t.Fatalf("Add %s: %v", e.KeyID, err)
		}
	}

	// The registry rules of "wsproof keys add".
	var dup *DuplicateError
	other := mustEntry(t, "alice-1")
	if err := a.Add(ctx, other, "x"); !errors.Is(err, ErrDuplicateKeyID) || !errors.As(err, &dup) || dup.KeyID != "alice-1" {
		t.Errorf("Add of a taken key id: %v; want ErrDuplicateKeyID naming alice-1", err)
	}
	// Key ids that differ only in case are one key id (spec section
	// "Load-time rules"), refused by Add and, for raw SQL, by the schema.
	if err := a.Add(ctx, mustEntry(t, "ALICE-1"), "x"); !errors.Is(err, ErrDuplicateKeyID) || !errors.As(err, &dup) || dup.KeyID != "alice-1" {
		t.Errorf("Add of a case variant of a taken key id: %v; want ErrDuplicateKeyID naming alice-1", err)
	}
	variant, err := keys.MarshalEntry(mustEntry(t, "Bob-1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.conn.Exec(ctx, `INSERT INTO wsproof_keys (kid, entry, thumbprint, subject) VALUES ('Bob-1', $1, 'x', 's')`,
		string(variant)); err == nil || !strings.Contains(err.Error(), "wsproof_keys_kid_folded") {
		t.Errorf("raw INSERT of a case variant of a taken key id: %v; want the unique index to refuse it", err)
	}
	sameKey := *alice
	sameKey.KeyID, sameKey.Thumbprint = "alice-2", ""
	if err := a.Add(ctx, &sameKey, "x"); !errors.Is(err, ErrDuplicateKey) || !errors.As(err, &dup) || dup.KeyID != "alice-1" {
		t.Errorf("Add of an enrolled key under a new key id: %v; want ErrDuplicateKey naming alice-1", err)
	}
	noSub := mustEntry(t, "nosub")
	noSub.Subject = ""
	if err := a.Add(ctx, noSub, "x"); !errors.Is(err, keys.ErrInvalidKey) {
		t.Errorf("Add of an entry without subject: %v; want keys.ErrInvalidKey", err)
	}
	// A private key must never reach the database.
	priv, signer := newEntry(t, "private", "p")
	priv.Key = signer
	if err := a.Add(ctx, priv, "x"); !errors.Is(err, keys.ErrInvalidKey) {
		t.Errorf("Add of an entry holding a private key: %v; want keys.ErrInvalidKey", err)
	}

	list, err := a.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || !bytes.Equal(marshal(t, list[0]), marshal(t, alice)) || !bytes.Equal(marshal(t, list[1]), marshal(t, bob)) {
		t.Fatalf("List = %d entries, want alice-1 and bob-1 as added", len(list))
	}

	if err := a.Revoke(ctx, "bob-1", "operator-ben"); err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(ctx, "bob-1", "operator-ben"); !errors.Is(err, ErrAlreadyRevoked) {
		t.Errorf("second Revoke: %v; want ErrAlreadyRevoked", err)
	}
	if err := a.Revoke(ctx, "nobody", "operator-ben"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revoke of an unknown key id: %v; want ErrNotFound", err)
	}
	list, _ = a.List(ctx)
	if !list[1].Revoked || list[0].Revoked {
		t.Errorf("after Revoke: revoked = %v, %v; want false, true", list[0].Revoked, list[1].Revoked)
	}
	var revokedCol bool
	if err := a.conn.QueryRow(ctx, "SELECT revoked FROM wsproof_keys WHERE kid = 'bob-1'").Scan(&revokedCol); err != nil || !revokedCol {
		t.Errorf("revoked column of bob-1: %v, %v; want true", revokedCol, err)
	}

	// Import: keys enrolled already, in the database or earlier in the
	// batch, are skipped and named.
	carol, _ := newEntry(t, "carol-1", "carol")
	dave, _ := newEntry(t, "dave-1", "dave")
	carolAgain := *carol
	carolAgain.KeyID, carolAgain.Thumbprint = "carol-2", ""
	bobAgain := *bob
	bobAgain.KeyID, bobAgain.Thumbprint, bobAgain.Revoked = "bob-2", "", false
	existing, err := a.Import(ctx, []*keys.Entry{carol, &bobAgain, dave, &carolAgain}, "importer")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"", "bob-1", "", "carol-1"}; !slices.Equal(existing, want) {
		t.Errorf("Import existing = %q, want %q", existing, want)
	}
	if existing, err := a.Import(ctx, nil, "importer"); err != nil || len(existing) != 0 {
		t.Errorf("empty Import: %q, %v", existing, err)
	}
	// A taken key id fails the whole import: erin is not added either.
	erin, _ := newEntry(t, "erin-1", "erin")
	daveClash := mustEntry(t, "dave-1")
	if _, err := a.Import(ctx, []*keys.Entry{erin, daveClash}, "importer"); !errors.Is(err, ErrDuplicateKeyID) {
		t.Errorf("Import with a taken key id: %v; want ErrDuplicateKeyID", err)
	}
	list, _ = a.List(ctx)
	var kids []string
	for _, e := range list {
		kids = append(kids, e.KeyID)
	}
	if want := []string{"alice-1", "bob-1", "carol-1", "dave-1"}; !slices.Equal(kids, want) {
		t.Errorf("after imports: %q, want %q", kids, want)
	}

	// Raw SQL is audited too, as the database role; TRUNCATE is refused
	// because it would bypass the audit and the notifications.
	sql(t, url, "DELETE FROM wsproof_keys WHERE kid = 'dave-1'")
	if _, err := a.conn.Exec(ctx, "TRUNCATE wsproof_keys"); err == nil || !strings.Contains(err.Error(), "cannot be truncated") {
		t.Errorf("TRUNCATE: %v; want it refused", err)
	}

	recs, got := auditLog(t, a)
	want := []auditRec{ // newest first
		{"postgres", "delete", "dave-1"},
		{"importer", "insert", "dave-1"},
		{"importer", "insert", "carol-1"},
		{"operator-ben", "update", "bob-1"},
		{"operator-anna", "insert", "bob-1"},
		{"operator-anna", "insert", "alice-1"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("audit log:\n got %v\nwant %v", got, want)
	}
	for _, r := range recs {
		if r.Role != "postgres" {
			t.Errorf("audit record %d: role %q, want postgres", r.ID, r.Role)
		}
	}
	if r := recs[3]; r.Old == nil || r.New == nil || !strings.Contains(string(r.New), `"revoked":true`) || strings.Contains(string(r.Old), `"revoked"`) {
		t.Errorf("audit of the revocation: old %s, new %s", r.Old, r.New)
	}
	if r := recs[0]; r.Old == nil || r.New != nil {
		t.Errorf("audit of the delete: old %s, new %s; want old only", r.Old, r.New)
	}
	if r := recs[5]; r.Old != nil || !bytes.Equal(r.New, marshal(t, alice)) {
		t.Errorf("audit of the first insert: old %s, new %s; want the entry as new", r.Old, r.New)
	}
	if recs, err := a.Audit(ctx, 2); err != nil || len(recs) != 2 || recs[0].KeyID != "dave-1" {
		t.Errorf("Audit(2): %d records, %v", len(recs), err)
	}
}

// TestListBadRows: List names the rows servers refuse, and returns the
// others.
func TestListBadRows(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t)
	ctx := testCtx(t)
	url, a := migrated(t, c)
	if err := a.Add(ctx, mustEntry(t, "good"), "t"); err != nil {
		t.Fatal(err)
	}
	sql(t, url, `INSERT INTO wsproof_keys (kid, entry, thumbprint, subject, revoked) VALUES ('broken', '{"kty":"OKP"}', 'x', 's', false)`)
	list, err := a.List(ctx)
	if len(list) != 1 || list[0].KeyID != "good" || err == nil || !strings.Contains(err.Error(), `"broken"`) {
		t.Errorf("List = %d entries, %v; want the good one and an error naming broken", len(list), err)
	}
}

// TestAdminUpdateRemove: Update changes an entry under the registry rules
// and Remove deletes it; each change is audited with its actor and reaches
// a running registry through its notification.
func TestAdminUpdateRemove(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t)
	ctx := testCtx(t)
	url, a := migrated(t, c)
	alice, _ := newEntry(t, "alice-1", "alice", "chat", "admin")
	if err := a.Add(ctx, alice, "operator-anna"); err != nil {
		t.Fatal(err)
	}
	rr := start(t, url, Config{})

	t0 := time.Now()
	if err := a.Update(ctx, "alice-1", "operator-ben", func(e *keys.Entry) error {
		e.Subject, e.Groups, e.RequireChannelBinding = "alice@example.com", []string{"chat"}, true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	d := waitChange(t, rr, t0, "update alice-1", func() bool {
		e, ok := rr.Lookup("alice-1")
		return ok && e.Subject == "alice@example.com" && slices.Equal(e.Groups, []string{"chat"}) && e.RequireChannelBinding
	})
	t.Logf("update reached a running registry %v after the call began", d.Round(time.Millisecond))
	var subjectCol string
	if err := a.conn.QueryRow(ctx, "SELECT subject FROM wsproof_keys WHERE kid = 'alice-1'").Scan(&subjectCol); err != nil || subjectCol != "alice@example.com" {
		t.Errorf("subject column after Update: %q, %v", subjectCol, err)
	}

	// Refused: an entry that breaks a rule, a change of key id, an error
	// of change itself, an unknown key id. None writes anything.
	if err := a.Update(ctx, "alice-1", "x", func(e *keys.Entry) error { e.Subject = ""; return nil }); !errors.Is(err, keys.ErrInvalidKey) {
		t.Errorf("Update to an empty subject: %v; want keys.ErrInvalidKey", err)
	}
	if err := a.Update(ctx, "alice-1", "x", func(e *keys.Entry) error { e.KeyID = "alice-2"; return nil }); err == nil {
		t.Error("Update changed the key id")
	}
	mine := errors.New("mine")
	if err := a.Update(ctx, "alice-1", "x", func(*keys.Entry) error { return mine }); err != mine {
		t.Errorf("Update returned %v, want change's own error", err)
	}
	if err := a.Update(ctx, "nobody", "x", func(*keys.Entry) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("Update of an unknown key id: %v; want ErrNotFound", err)
	}
	// Nothing changed, nothing written: no audit record.
	if err := a.Update(ctx, "alice-1", "x", func(*keys.Entry) error { return nil }); err != nil {
		t.Errorf("empty Update: %v", err)
	}

	t0 = time.Now()
	if err := a.Remove(ctx, "alice-1", "operator-cleo"); err != nil {
		t.Fatal(err)
	}
	d = waitChange(t, rr, t0, "remove alice-1", func() bool {
		_, ok := rr.Lookup("alice-1")
		return !ok
	})
	t.Logf("removal reached a running registry %v after the call began", d.Round(time.Millisecond))
	if err := a.Remove(ctx, "alice-1", "operator-cleo"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v; want ErrNotFound", err)
	}

	recs, got := auditLog(t, a)
	want := []auditRec{ // newest first
		{"operator-cleo", "delete", "alice-1"},
		{"operator-ben", "update", "alice-1"},
		{"operator-anna", "insert", "alice-1"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("audit log:\n got %v\nwant %v", got, want)
	}
	if r := recs[1]; !strings.Contains(string(r.Old), `"sub":"alice"`) || !strings.Contains(string(r.New), `"sub":"alice@example.com"`) {
		t.Errorf("audit of the update: old %s, new %s", r.Old, r.New)
	}
	if r := recs[0]; r.New != nil || !strings.Contains(string(r.Old), `"sub":"alice@example.com"`) {
		t.Errorf("audit of the removal: old %s, new %s; want the last entry as old", r.Old, r.New)
	}
}

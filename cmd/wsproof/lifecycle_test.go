package main

import (
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wsproof/wsproof/client"
	"github.com/wsproof/wsproof/internal/pgtest"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// The tests in this file hold "wsproof keys update" and "wsproof keys
// remove" to spec section "Revocation", for a registry file and for the
// database of fleet mode: a live session whose key loses the group the
// server requires, or whose key is removed, ends with session_revoked
// (4011) within a second of the command's return, on a real "wsproof
// serve" (issue 14, item 1).

// endsLive opens a session with k on srv, runs the wsproof command args, and
// checks that the session ends with session_revoked within a second of the
// command's return. It returns the command's output.
func endsLive(t *testing.T, srv *registryServer, k clientKey, args ...string) string {
	t.Helper()
	conn, err := srv.dial(k.kid, k.signer)
	if err != nil {
		t.Fatalf("dial with %s: %v", k.kid, err)
	}
	defer conn.Close()
	type end struct {
		err error
		at  time.Time
	}
	ended := make(chan end, 1)
	go func() {
		for {
			if _, err := conn.Read(context.Background()); err != nil {
				ended <- end{err, time.Now()}
				return
			}
		}
	}()
	out := run(t, args...)
	returned := time.Now()
	select {
	case e := <-ended:
		var ce *client.CloseError
		if !errors.As(e.err, &ce) || ce.Code != protocol.CodeSessionRevoked.CloseCode() {
			t.Fatalf("wsproof %s: the session of %s ended with %v, want close %d", strings.Join(args[:2], " "), k.kid, e.err, protocol.CodeSessionRevoked.CloseCode())
		}
		d := e.at.Sub(returned)
		t.Logf("wsproof %s: the session of %s closed with %d %v after the command returned (limit 1s)",
			strings.Join(args[:2], " "), k.kid, ce.Code, d.Round(time.Millisecond))
		if d >= time.Second {
			t.Errorf("wsproof %s: the session of %s took %v to close, limit 1s", strings.Join(args[:2], " "), k.kid, d)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("wsproof %s: the session of %s is still open 5s after the command returned", strings.Join(args[:2], " "), k.kid)
	}
	return out
}

// lifecycle runs the same steps on a server of either registry: reg are
// the flags that name the registry to the keys commands.
func lifecycle(t *testing.T, srv *registryServer, ks []clientKey, reg ...string) {
	cmd := func(args ...string) []string { return append(args, reg...) }
	// An update that changes nothing the session depends on leaves it open.
	run(t, cmd("keys", "update", ks[0].kid, "--sub", "renamed", "--add-group", "extra")...)
	srv.waitAccepts(t, ks[0], true, "after a harmless update")
	// Losing the group the server requires ends the session, and the key is
	// refused from then on; getting it back lets the key in again.
	endsLive(t, srv, ks[0], cmd("keys", "update", ks[0].kid, "--remove-group", "devices")...)
	srv.waitAccepts(t, ks[0], false, "after the group was removed")
	run(t, cmd("keys", "update", ks[0].kid, "--add-group", "devices")...)
	srv.waitAccepts(t, ks[0], true, "after the group was given back")
	// So does a validity window that has ended.
	endsLive(t, srv, ks[1], cmd("keys", "update", ks[1].kid, "--not-after", "2020-01-01T00:00:00Z")...)
	// And removal.
	endsLive(t, srv, ks[2], cmd("keys", "remove", ks[2].kid)...)
	srv.waitAccepts(t, ks[2], false, "after the removal")
}

// TestKeyLifecycleFile: update and remove on a registry file.
func TestKeyLifecycleFile(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "registry.jwks")
	ks := newClientKeys(t, "k", 3)
	var entries []*keys.Entry
	for _, k := range ks {
		e := k.entry(t)
		e.Groups = []string{"devices"}
		entries = append(entries, e)
	}
	writeRegistry(t, reg, entries)
	srv := serveWith(t, dir, "--registry", reg, "--required-group", "devices")
	lifecycle(t, srv, ks, "--registry", reg)
}

// TestKeyLifecycleFleet: update and remove in the database of fleet mode,
// which reach the node through its notification, and are audited with the
// operator's name.
func TestKeyLifecycleFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and a node")
	}
	db := pgtest.Start(t)
	run(t, "db", "migrate", "--db", db.URL())
	ks := newClientKeys(t, "k", 3)
	for _, k := range ks {
		run(t, "keys", "add", "--db", db.URL(), "--jwk", k.jwk, "--sub", "device-"+k.kid, "--groups", "devices")
	}
	// Shell completion reads the key ids from the database the command
	// would open.
	if got, want := run(t, "__complete", "keys", "show", "--db", db.URL(), "k00"), "k000\nk001\nk002\n"; got != want {
		t.Errorf("completion of a key id in the database: %q, want %q", got, want)
	}
	srv := serveWith(t, t.TempDir(), "--db", db.URL(), "--required-group", "devices")
	lifecycle(t, srv, ks, "--db", db.URL())

	audit := run(t, "db", "audit", "--db", db.URL())
	for _, re := range []string{
		`(?m)\stester\s+postgres\s+update\s+k000$`,
		`(?m)\stester\s+postgres\s+update\s+k001$`,
		`(?m)\stester\s+postgres\s+delete\s+k002$`,
	} {
		if !regexp.MustCompile(re).MatchString(audit) {
			t.Errorf("db audit lacks %s:\n%s", re, audit)
		}
	}
	if n := strings.Count(audit, " update "); n != 4 {
		t.Errorf("db audit has %d updates, want 4, one per update command:\n%s", n, audit)
	}
}

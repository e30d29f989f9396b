package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsproof/wsproof/internal/configmap"
	"github.com/wsproof/wsproof/keys"
)

// The tests in this file hold "wsproof keys" on a registry file to spec
// section "Reload": concurrent editors never lose a change, an editor
// killed at any point leaves a registry that loads, and a registry reached
// through symbolic links stays a link (issue 17).

// runCLI runs the command in this process and returns its exit code and
// output.
func runCLI(args ...string) (int, string) {
	var out bytes.Buffer
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &out, getenv: func(string) string { return "" }}
	code := c.run(context.Background(), args)
	return code, out.String()
}

// clientAlg is the algorithm of the tests' client keys: P-256, whose keys
// are checked several times faster than Ed25519 keys (whose encoding and
// order checks dominate loading), which matters to editors that load
// registries of hundreds of keys by the hundred.
const clientAlg = keys.ES256

// newClientKey returns a fresh key and its public JWK with key id kid, as
// "wsproof keys add --jwk" takes it.
func newClientKey(t testing.TB, kid string) (crypto.Signer, string) {
	t.Helper()
	k, err := keys.Generate(clientAlg, nil)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := keys.MarshalJWK(k.Public(), kid, clientAlg)
	if err != nil {
		t.Fatal(err)
	}
	return k, string(jwk)
}

// readRegistry loads the registry file at path, failing the test if it does
// not load.
func readRegistry(t testing.TB, path string) *keys.Set {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := keys.ParseRegistry(data)
	if err != nil {
		t.Fatalf("%s does not load: %v\n%s", path, err, data)
	}
	return s
}

// setTestHook installs hook for the rest of the test. Tests that set it do
// not run in parallel: every edit in this process calls it.
func setTestHook(t *testing.T, hook func(step string)) {
	testHook = hook
	t.Cleanup(func() { testHook = nil })
}

// TestConcurrentEditsSerialized: two editors of one registry file, the
// second starting while the first has checked that the file is unchanged
// but not yet replaced it. Both changes must be in the file afterwards
// (issue 17, defect 1): the first editor waits there for up to a second for
// the second to finish, which an editor that does not hold the lock from
// its read to its rename does, and then overwrites its change.
func TestConcurrentEditsSerialized(t *testing.T) {
	reg := t.TempDir() + "/registry.jwks"
	_, jwk1 := newClientKey(t, "k1")
	_, jwk2 := newClientKey(t, "k2")
	if code, out := runCLI("keys", "add", "--registry", reg, "--jwk", jwk1, "--sub", "one"); code != 0 {
		t.Fatal(out)
	}
	checked, secondDone := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	setTestHook(t, func(step string) {
		if step == "checked" && first.CompareAndSwap(false, true) {
			close(checked)
			select {
			case <-secondDone:
			case <-time.After(time.Second):
			}
		}
	})
	revoked := make(chan string, 1)
	go func() {
		code, out := runCLI("keys", "revoke", "--registry", reg, "k1")
		if code != 0 {
			out = "failed: " + out
		}
		revoked <- out
	}()
	<-checked
	code, out := runCLI("keys", "add", "--registry", reg, "--jwk", jwk2, "--sub", "two")
	close(secondDone)
	if code != 0 {
		t.Errorf("second editor: %s", out)
	}
	if out := <-revoked; strings.HasPrefix(out, "failed: ") {
		t.Errorf("first editor: %s", out)
	}
	s := readRegistry(t, reg)
	e1, ok1 := s.Lookup("k1")
	_, ok2 := s.Lookup("k2")
	if !ok1 || !e1.Revoked {
		t.Error("the revocation of k1 was lost")
	}
	if !ok2 {
		t.Error("the addition of k2 was lost")
	}
}

// TestSymlinkedRegistry: editing a registry reached through links writes
// through them to the file, and leaves every link a link (issue 17, defect
// 2); a link to a missing file is refused, and left alone.
func TestSymlinkedRegistry(t *testing.T) {
	dir := t.TempDir()
	_, jwk1 := newClientKey(t, "k1")
	_, jwk2 := newClientKey(t, "k2")
	// The registry mounted as Kubernetes mounts a ConfigMap: registry.jwks
	// -> ..data/registry.jwks, ..data -> a timestamped folder.
	if err := configmap.Update(dir, map[string][]byte{"registry.jwks": []byte(`{"keys":[]}`)}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "registry.jwks")
	file, err := filepath.EvalSymlinks(link)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"keys", "add", "--registry", link, "--jwk", jwk1, "--sub", "one"},
		{"keys", "add", "--registry", link, "--jwk", jwk2, "--sub", "two"},
		{"keys", "revoke", "--registry", link, "k1"},
	} {
		if code, out := runCLI(args...); code != 0 {
			t.Fatalf("%v: %s", args, out)
		}
	}
	for _, l := range []string{link, filepath.Join(dir, configmap.DataLink)} {
		if fi, err := os.Lstat(l); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s is no longer a symbolic link (%v, %v)", l, fi.Mode(), err)
		}
	}
	s := readRegistry(t, file)
	if e, ok := s.Lookup("k1"); !ok || !e.Revoked || s.Len() != 2 {
		t.Errorf("the file behind the links holds %d keys, k1 revoked %v; want both keys, k1 revoked", s.Len(), ok && e.Revoked)
	}
	if code, out := runCLI("keys", "list", "--registry", link); code != 0 || !strings.Contains(out, "k2") {
		t.Errorf("keys list through the link: %s", out)
	}
	// Nothing is left beside the file but its lock.
	names, _ := os.ReadDir(filepath.Dir(file))
	for _, d := range names {
		if d.Name() != "registry.jwks" && d.Name() != "registry.jwks"+lockSuffix {
			t.Errorf("left in the registry's folder: %s", d.Name())
		}
	}

	// The mount swaps a new version in: the next edit goes to its file.
	if err := configmap.Update(dir, map[string][]byte{"registry.jwks": []byte(`{"keys":[]}`)}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if code, out := runCLI("keys", "add", "--registry", link, "--jwk", jwk1, "--sub", "one"); code != 0 {
		t.Fatal(out)
	}
	if s := readRegistry(t, link); s.Len() != 1 {
		t.Errorf("after the swap and an add, the registry holds %d keys, want 1", s.Len())
	}

	dangling := filepath.Join(dir, "dangling.jwks")
	if err := os.Symlink("missing.jwks", dangling); err != nil {
		t.Fatal(err)
	}
	code, out := runCLI("keys", "add", "--registry", dangling, "--jwk", jwk1, "--sub", "one")
	if code == 0 || !strings.Contains(out, "symbolic link to a missing file") {
		t.Errorf("keys add through a dangling link: exit %d, %s", code, out)
	}
	if fi, err := os.Lstat(dangling); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the dangling link was replaced")
	}
}

// TestDashKeyID: a key id may start with '-' (one random key id in 32
// does, thumbprints being base64url), and every keys command that names a
// key takes it, after its flags or before them, and after "--". Before the
// fix, "keys revoke -KID" failed with "flag provided but not defined".
func TestDashKeyID(t *testing.T) {
	reg := t.TempDir() + "/registry.jwks"
	_, jwk := newClientKey(t, "-dash")
	_, jwk2 := newClientKey(t, "--h")
	for _, args := range [][]string{
		{"keys", "add", "--registry", reg, "--jwk", jwk, "--sub", "one"},
		{"keys", "add", "--registry", reg, "--jwk", jwk2, "--sub", "two"},
		{"keys", "show", "--registry", reg, "-dash"},
		{"keys", "show", "-dash", "--registry", reg, "--json"},
		{"keys", "update", "-dash", "--registry", reg, "--sub", "uno"},
		{"keys", "update", "--registry", reg, "--groups", "g", "--", "-dash"},
		{"keys", "show", "--registry", reg, "--", "--h"}, // spelled like a flag: after "--" only
		{"keys", "revoke", "--registry", reg, "-dash"},
		{"keys", "remove", "--registry", reg, "--", "--h"},
	} {
		if code, out := runCLI(args...); code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, out)
		}
	}
	s := readRegistry(t, reg)
	if e, ok := s.Lookup("-dash"); !ok || !e.Revoked || e.Subject != "uno" || len(e.Groups) != 1 {
		t.Errorf("-dash after the commands: %+v; want revoked, subject uno, one group", e)
	}
	if _, ok := s.Lookup("--h"); ok || s.Len() != 1 {
		t.Errorf("--h was not removed")
	}
	// A mistyped flag is still one, when it cannot be the key id.
	for _, args := range [][]string{
		{"keys", "revoke", "--regsitry", reg, "-dash"},
		{"keys", "revoke", "-dash", "--regsitry", reg},
	} {
		if code, out := runCLI(args...); code != 2 || !strings.Contains(out, `flag provided but not defined: --regsitry (did you mean "--registry"?)`) {
			t.Errorf("%q: exit %d: %s", args, code, out)
		}
	}
	if code, out := runCLI("keys", "revoke", "--registry", reg, "-nope"); code != 1 ||
		!strings.Contains(out, `no key "-nope" in `) || !strings.Contains(out, "if it was meant as a flag") {
		t.Errorf("keys revoke -nope: exit %d: %s", code, out)
	}
}

// TestKeysJSON holds "wsproof keys list --json" and "show --json" to the
// shape keysListUsage documents: exactly its members, times in RFC 3339 or
// null, the public JWK only, and ASCII output.
func TestKeysJSON(t *testing.T) {
	reg := t.TempDir() + "/registry.jwks"
	_, jwk := newClientKey(t, "k1")
	if code, out := runCLI("keys", "add", "--registry", reg, "--jwk", jwk, "--sub", "José\u202e", "--not-after", "2030-01-02T03:04:05Z"); code != 0 {
		t.Fatal(out)
	}
	code, list := runCLI("keys", "list", "--registry", reg, "--json")
	if code != 0 {
		t.Fatal(list)
	}
	code, show := runCLI("keys", "show", "--registry", reg, "--json", "k1")
	if code != 0 {
		t.Fatal(show)
	}
	var doc struct{ Keys []map[string]json.RawMessage }
	var one map[string]json.RawMessage
	if err := json.Unmarshal([]byte(list), &doc); err != nil || len(doc.Keys) != 1 {
		t.Fatalf("list --json: %v\n%s", err, list)
	}
	if err := json.Unmarshal([]byte(show), &one); err != nil {
		t.Fatalf("show --json: %v\n%s", err, show)
	}
	want := map[string]string{
		"kid": `"k1"`, "alg": `"ES256"`, "sub": `"Jos\u00e9\u202e"`, "groups": `[]`,
		"not_before": `null`, "not_after": `"2030-01-02T03:04:05Z"`, "revoked": `false`, "cb_required": `false`,
	}
	for _, got := range []map[string]json.RawMessage{doc.Keys[0], one} {
		var names []string
		for k := range got {
			names = append(names, k)
		}
		slices.Sort(names)
		if wantNames := []string{"alg", "cb_required", "groups", "jwk", "kid", "not_after", "not_before", "revoked", "sub", "thumbprint"}; !slices.Equal(names, wantNames) {
			t.Errorf("members %q, want %q", names, wantNames)
		}
		for k, v := range want {
			if string(got[k]) != v {
				t.Errorf("%s = %s, want %s", k, got[k], v)
			}
		}
		pub, err := keys.ParsePublicKey(got["jwk"])
		if err != nil {
			t.Errorf("jwk: %v", err)
		} else if tp, _ := keys.Thumbprint(pub); `"`+tp+`"` != string(got["thumbprint"]) {
			t.Errorf("thumbprint %s is not the jwk's %s", got["thumbprint"], tp)
		}
	}
	for i := range len(list) {
		if list[i] >= 0x80 {
			t.Fatalf("list --json wrote a byte outside ASCII at %d:\n%s", i, list)
		}
	}
}

// FuzzParseKID: the key id parser of the keys commands never panics, and
// what it returns is one of its arguments and a valid key id.
func FuzzParseKID(f *testing.F) {
	for _, s := range []string{"k1", "-dash", "--registry\x00f\x00-dash", "-dash\x00--registry\x00f", "--\x00-h", "-h",
		"---x", "-=x", "--=x", "a\x00b", "--regsitry\x00f\x00k", "--registry=f\x00--\x00--", "-", "--"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args := strings.Split(s, "\x00")
		c := &cli{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
		fs := c.newFlags("keys revoke", keysRevokeUsage)
		addRegistryFlags(fs)
		kid, err := c.parseKID(fs, args)
		if err != nil {
			return
		}
		if keys.CheckKeyID(kid) != nil || !slices.Contains(args, kid) {
			t.Fatalf("parseKID(%q) = %q", args, kid)
		}
	})
}

package vectors

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"testing/cryptotest"

	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/internal/vectors/sessions"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json")

// generate runs the generator with crypto/rand made deterministic, which
// fixes the AES-GCM IVs go-jose draws.
func generate(t *testing.T) []byte {
	t.Helper()
	cryptotest.SetGlobalRandom(t, 1)
	f, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	b, err := vectorfile.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVectorsUpToDate fails if testdata/vectors.json differs from what the
// generator produces now: the vectors are generated, never edited by hand.
func TestVectorsUpToDate(t *testing.T) {
	upToDate(t, vectorfile.Path, generate(t))
}

// TestSessionVectorsUpToDate is TestVectorsUpToDate for the session vector
// file, testdata/session-vectors.json.
func TestSessionVectorsUpToDate(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 2)
	f, err := sessions.Generate()
	if err != nil {
		t.Fatal(err)
	}
	got, err := vectorfile.MarshalSession(f)
	if err != nil {
		t.Fatal(err)
	}
	upToDate(t, vectorfile.SessionPath, got)
}

// upToDate fails unless the repository file at path holds got; with -update
// it writes got there first.
func upToDate(t *testing.T, path string, got []byte) {
	t.Helper()
	full := filepath.Join("..", "..", path)
	if *update {
		if err := os.WriteFile(full, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run go test ./internal/vectors -update", path)
	}
}

// TestSpecUpToDate runs after TestVectorsUpToDate (tests run in source
// order), so one -update run refreshes the vectors and then the spec.
// It fails if the generated parts of spec/wsproof-v1.md (the
// examples and the negative cases table) differ from what testdata/vectors.json
// gives, if a vector's rule names no section or step of the spec, or if the
// spec's error table differs from protocol's. With -update it rewrites the
// generated parts; the other checks need a hand edit.
func TestSpecUpToDate(t *testing.T) {
	f, err := vectorfile.Load(filepath.Join("..", "..", vectorfile.Path))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", SpecPath)
	spec, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := RenderSpec(spec, f)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range CheckSpec(got, f) {
		t.Errorf("%s: %v", SpecPath, err)
	}
	if bytes.Equal(got, spec) {
		return
	}
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s is stale: run go test ./internal/vectors -update", SpecPath)
}

// TestGenerateDeterministic guards the drift test itself: two runs must agree.
func TestGenerateDeterministic(t *testing.T) {
	a := generate(t)
	var b []byte
	t.Run("again", func(t *testing.T) { b = generate(t) })
	if !bytes.Equal(a, b) {
		t.Fatal("two generator runs differ")
	}
}

// unscripted are the rows of the spec's state tables that no session vector
// can exercise, as the spec's "Session vectors" section says: the HTTP
// upgrade, which needs a live server, and a failure inside the server.
var unscripted = map[string]bool{"S1": true, "S2": true, "S3": true, "S4": true, "S5": true, "S32": true, "C1": true, "C2": true}

// TestSessionRowsCovered checks that every row of the spec's state tables
// has a session vector, except the unscripted ones, and that every row a
// vector names exists.
func TestSessionRowsCovered(t *testing.T) {
	spec, err := os.ReadFile(filepath.Join("..", "..", SpecPath))
	if err != nil {
		t.Fatal(err)
	}
	f, err := vectorfile.LoadSession(filepath.Join("..", "..", vectorfile.SessionPath))
	if err != nil {
		t.Fatal(err)
	}
	inSpec := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\| ([SC][0-9]+) \|`).FindAllSubmatch(spec, -1) {
		inSpec[string(m[1])] = true
	}
	if len(inSpec) < 50 {
		t.Fatalf("found only %d rows in the spec's state tables", len(inSpec))
	}
	covered := map[string]bool{}
	for _, v := range f.Vectors {
		if len(v.Rows) == 0 {
			t.Errorf("%s names no row", v.ID)
		}
		for _, r := range v.Rows {
			if !inSpec[r] {
				t.Errorf("%s names row %s, which the spec does not have", v.ID, r)
			}
			if (r[0] == 'S') != (v.Role == vectorfile.SessionServerRole) {
				t.Errorf("%s is a %s script but names row %s", v.ID, v.Role, r)
			}
			covered[r] = true
		}
	}
	for r := range inSpec {
		if !covered[r] && !unscripted[r] {
			t.Errorf("row %s has no session vector", r)
		}
		if covered[r] && unscripted[r] {
			t.Errorf("row %s is listed as unscripted but has a vector", r)
		}
	}
}

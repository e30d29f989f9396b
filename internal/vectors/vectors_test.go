package vectors

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"testing/cryptotest"

	"github.com/wsproof/wsproof/internal/vectorfile"
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
	got := generate(t)
	path := filepath.Join("..", "..", vectorfile.Path)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run go test ./internal/vectors -update", vectorfile.Path)
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

package vectors

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/wsproof/wsproof/internal/vectorfile"
)

// TestSpecUpToDate fails if the generated parts of spec/wsproof-v1.md (the
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
	t.Errorf("%s is stale: run go test ./internal/vectors -run TestSpecUpToDate -update", SpecPath)
}

package protocol

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/wsproof/wsproof/internal/vectorfile"
)

func readVectors(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", vectorfile.Path))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestVectors runs every vector in testdata/vectors.json through this
// package and fails on any difference from its expected outcome.
func TestVectors(t *testing.T) {
	res, err := RunVectors(readVectors(t))
	if err != nil {
		t.Fatal(err)
	}
	invalid := 0
	for _, r := range res {
		if r.Want != vectorfile.Valid {
			invalid++
		}
		t.Run(r.ID, func(t *testing.T) {
			if !r.OK {
				t.Fatalf("%s vector: got %s, want %s", r.Role, r.Got, r.Want)
			}
		})
	}
	if invalid < 40 {
		t.Fatalf("only %d negative vectors, the spec promises at least 40", invalid)
	}
}

// TestRunVectorsDetectsChanges guards the runner: a vector whose expected
// code is changed must fail.
func TestRunVectorsDetectsChanges(t *testing.T) {
	f, err := vectorfile.Parse(readVectors(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range f.Vectors {
		if f.Vectors[i].Error == string(CodeBadSignature) {
			f.Vectors[i].Error = string(CodeMalformed)
		}
	}
	data, _ := vectorfile.Marshal(f)
	res, err := RunVectors(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Want == string(CodeMalformed) && r.Got == string(CodeBadSignature) && !r.OK {
			return
		}
	}
	t.Fatal("a changed expectation went unnoticed")
}

func loadVectors(t testing.TB) *vectorEnv {
	t.Helper()
	f, err := vectorfile.Parse(readVectors(t))
	if err != nil {
		t.Fatal(err)
	}
	env, err := newVectorEnv(f)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

package protocol

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/wsproof/wsproof/internal/vectorfile"
)

func readSessionVectors(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", vectorfile.SessionPath))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestSessionVectors runs every script of testdata/session-vectors.json
// through ServerConn and ClientConn.
func TestSessionVectors(t *testing.T) {
	res, err := RunSessionVectors(readSessionVectors(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) == 0 {
		t.Fatal("no session vectors")
	}
	for _, r := range res {
		t.Run(r.ID, func(t *testing.T) {
			if !r.OK {
				t.Fatal(r.Got)
			}
		})
	}
}

// TestRunSessionVectorsDetectsChanges guards the runner: a changed
// expectation, a dropped action and a changed state must each fail.
func TestRunSessionVectorsDetectsChanges(t *testing.T) {
	mutations := map[string]func(*vectorfile.SessionVector) bool{
		"code": func(v *vectorfile.SessionVector) bool {
			for i := range v.Steps {
				for j := range v.Steps[i].Expect {
					if e := &v.Steps[i].Expect[j]; e.Error == string(CodeSessionRevoked) {
						e.Error = string(CodeTokenExpired)
						return true
					}
				}
			}
			return false
		},
		"dropped action": func(v *vectorfile.SessionVector) bool {
			for i := range v.Steps {
				if n := len(v.Steps[i].Expect); n > 0 {
					v.Steps[i].Expect = v.Steps[i].Expect[:n-1]
					return true
				}
			}
			return false
		},
		"state": func(v *vectorfile.SessionVector) bool {
			v.Steps[len(v.Steps)-1].State = StateOpen.String() + "X"
			return true
		},
		"exp": func(v *vectorfile.SessionVector) bool {
			for i := range v.Steps {
				for j := range v.Steps[i].Expect {
					if e := &v.Steps[i].Expect[j]; e.Exp != 0 {
						e.Exp++
						return true
					}
				}
			}
			return false
		},
	}
	for name, mutate := range mutations {
		t.Run(name, func(t *testing.T) {
			f, err := vectorfile.ParseSession(readSessionVectors(t))
			if err != nil {
				t.Fatal(err)
			}
			changed := map[string]bool{}
			for i := range f.Vectors {
				if mutate(&f.Vectors[i]) {
					changed[f.Vectors[i].ID] = true
				}
			}
			if len(changed) == 0 {
				t.Fatal("the mutation applies to no vector")
			}
			data, _ := vectorfile.MarshalSession(f)
			res, err := RunSessionVectors(data)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				if changed[r.ID] && r.OK {
					t.Errorf("%s: a changed expectation went unnoticed", r.ID)
				}
			}
		})
	}
}

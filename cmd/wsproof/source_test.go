package main

import (
	"context"
	"io"
	"net/http/httptest"
	"testing"

	"github.com/wsproof/wsproof/keys"
)

// fakeSource is a registrySource whose health the test sets.
type fakeSource struct {
	keys.Registry
	problem string
	serving bool
}

func (f *fakeSource) Len() int                                  { return 0 }
func (f *fakeSource) watch(ctx context.Context, changed func()) {}
func (f *fakeSource) health() (string, bool)                    { return f.problem, f.serving }
func (f *fakeSource) describe() string                          { return "fake" }

func TestHealthHandler(t *testing.T) {
	for _, tc := range []struct {
		problem, keysProblem string
		serving              bool
		status               int
		body                 string
	}{
		{"", "", true, 200, "ok\n"},
		{"database unreachable", "", true, 200, "degraded: database unreachable\n"},
		{"", "key file broken", true, 200, "degraded: key file broken\n"},
		{"database unreachable", "key file broken", true, 200, "degraded: database unreachable; key file broken\n"},
		{"past the grace period", "", false, 503, "unavailable: past the grace period\n"},
	} {
		h := healthHandler(&fakeSource{problem: tc.problem, serving: tc.serving}, func() string { return tc.keysProblem })
		rec := httptest.NewRecorder()
		h(rec, httptest.NewRequest("GET", "/healthz", nil))
		body, _ := io.ReadAll(rec.Result().Body)
		if rec.Code != tc.status || string(body) != tc.body {
			t.Errorf("%+v: got %d %q", tc, rec.Code, body)
		}
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := parsePrefixes([]string{"10.0.0.2", "192.168.1.77/24", "::ffff:10.0.0.3", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.2/32", "192.168.1.0/24", "10.0.0.3/32", "2001:db8::/32"}
	for i, p := range got {
		if p.String() != want[i] {
			t.Errorf("prefix %d = %s, want %s", i, p, want[i])
		}
	}
	for _, bad := range []string{"10.0.0", "10.0.0.0/33", "host.example"} {
		if _, err := parsePrefixes([]string{bad}); err == nil {
			t.Errorf("parsePrefixes(%q) accepted", bad)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://wsproof:s3cret@db:5432/wsproof?sslmode=verify-full": "postgres://wsproof:xxxxx@db:5432/wsproof?sslmode=verify-full",
		"postgres://db/wsproof?password=s3cret&user=w":                  "postgres://db/wsproof?password=xxxxx&user=w",
		"host=db user=w password=s3cret dbname=wsproof":                 "host=db user=w password=xxxxx dbname=wsproof",
		"host=db password='s e c' dbname=wsproof":                       "host=db password=xxxxx dbname=wsproof",
		"postgres://wsproof@db/wsproof":                                 "postgres://wsproof@db/wsproof",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

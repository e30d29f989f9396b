package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/wsproof/wsproof/internal/pgtest"
)

// serveFlags is the names of the flags of "wsproof serve", from its own
// flag set.
func serveFlags(t *testing.T) []string {
	t.Helper()
	var sets []*flag.FlagSet
	c := &cli{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }, flagSets: &sets}
	c.run(context.Background(), []string{"serve", "-h"})
	if len(sets) != 1 {
		t.Fatalf("serve -h made %d flag sets", len(sets))
	}
	var names []string
	sets[0].VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

// checkConfig runs "wsproof serve ARGS --check-config" in process.
func checkConfig(t *testing.T, args ...string) {
	t.Helper()
	var out, errOut bytes.Buffer
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
	if code := c.run(context.Background(), append(append([]string{"serve"}, args...), "--check-config")); code != 0 || !strings.Contains(out.String(), "configuration OK") {
		t.Fatalf("serve %s --check-config: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
	}
}

// TestExampleConfig keeps docs/wsproof.toml whole: it names every flag of
// serve (as a setting or as a commented default), nothing else, and passes
// --check-config as written.
func TestExampleConfig(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "wsproof.toml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	setting := regexp.MustCompile(`(?m)^#? ?([a-z0-9-]+) = `)
	var named []string
	for _, m := range setting.FindAllStringSubmatch(string(data), -1) {
		named = append(named, m[1])
	}
	for _, f := range serveFlags(t) {
		if f != "config" && f != "check-config" && !slices.Contains(named, f) {
			t.Errorf("docs/wsproof.toml does not name --%s", f)
		}
	}
	for _, n := range named {
		if !slices.Contains(serveFlags(t), n) {
			t.Errorf("docs/wsproof.toml names %q, which is not a flag of serve", n)
		}
	}
	checkConfig(t, "--config", path, "--state", t.TempDir())
}

// TestSystemdUnit checks docs/wsproof.service: systemd-analyze verify
// accepts it (with the binary where it says), its exposure score is "OK"
// or better, and its two command lines are valid: run with the example
// configuration, they pass --check-config.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if pgtest.Required() {
			t.Fatal("systemd-analyze is not installed: apt-get install systemd")
		}
		t.Skip("systemd-analyze is not installed")
	}
	unit, err := os.ReadFile(filepath.Join("..", "..", "docs", "wsproof.service"))
	if err != nil {
		t.Fatal(err)
	}

	// verify looks for the unit, the units it names and the binary under
	// --root: a copy of the system's units, the unit, and this test binary
	// standing in for wsproof.
	root := t.TempDir()
	copyTree(t, "/usr/lib/systemd/system", filepath.Join(root, "usr/lib/systemd/system"))
	writeFile(t, filepath.Join(root, "etc/systemd/system/wsproof.service"), unit, 0o644)
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "usr/local/bin/wsproof"), self, 0o755)
	// verify exits 0 on a setting it ignores with a warning: any output
	// is a failure.
	if out, err := exec.Command(analyze, "verify", "--root="+root, "wsproof.service").CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The threshold is on a 0 to 100 scale: 20 is an exposure of 2.0, "OK".
	if out, err := exec.Command(analyze, "security", "--offline=yes", "--threshold=20",
		filepath.Join(root, "etc/systemd/system/wsproof.service")).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze security: %v\n%s", err, out)
	}

	state := t.TempDir()
	config := filepath.Join("..", "..", "docs", "wsproof.toml")
	lines := regexp.MustCompile(`(?m)^ExecStart(?:Pre)?=/usr/local/bin/wsproof (.*)$`).FindAllStringSubmatch(string(unit), -1)
	if len(lines) != 2 {
		t.Fatalf("found %d wsproof command lines in the unit, want 2", len(lines))
	}
	for _, m := range lines {
		args := strings.Fields(strings.NewReplacer("${STATE_DIRECTORY}", state, "/etc/wsproof/wsproof.toml", config).Replace(m[1]))
		if args[0] != "serve" {
			t.Fatalf("unit runs %q", m[1])
		}
		checkConfig(t, slices.DeleteFunc(args[1:], func(a string) bool { return a == "--check-config" })...)
	}
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v\n%s", from, to, err, out)
	}
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

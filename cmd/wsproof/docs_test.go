package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// markdownBlock returns the first sh block after the heading in the
// Markdown file at path.
func markdownBlock(t *testing.T, path, heading string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(data), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("%s has no heading %q", path, heading)
	}
	for _, b := range fencedBlocks(after) {
		if b.lang == "sh" {
			return b.text
		}
	}
	t.Fatalf("%s: no sh block after %q", path, heading)
	return ""
}

// trailingComment is a comment after a command: two spaces or more, then #.
var trailingComment = regexp.MustCompile(`\s{2,}#.*$`)

// walkthroughScript turns the README's walk-through into a testscript, so
// that the test runs what the README says, as it says it. The only
// liberties, each forced by running it unattended:
//   - "go install" is skipped: the test binary is wsproof;
//   - "wsproof serve" listens on a free port instead of 127.0.0.1:7700, and
//     every later 127.0.0.1:7700 is that address;
//   - the "wsproof keys add" line with "..." is a pattern: keygen must have
//     printed a command it matches, and that command is run; then the test
//     waits until the server has loaded the change (within a second), as
//     the time a person takes to type the next command does;
//   - after "wsproof connect", the lines alternate between what is typed and
//     what is printed back.
func walkthroughScript(block string) (string, error) {
	var script, files strings.Builder
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		l = strings.TrimSpace(trailingComment.ReplaceAllString(l, ""))
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	served := false
	connects, enrolled := 0, 0
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if served {
			l = strings.ReplaceAll(l, "127.0.0.1:7700", "$ADDR")
		}
		switch {
		case l == "go install ./cmd/wsproof":
		case l == "wsproof serve":
			script.WriteString("exec wsproof serve --listen 127.0.0.1:0 --addr-file addr &server&\nwaitfile addr ADDR\nwaithttp http://$ADDR/healthz '(?m)^ok$'\n")
			served = true
		case strings.HasPrefix(l, "wsproof keys add") && strings.Contains(l, "..."):
			pattern := strings.ReplaceAll(regexp.QuoteMeta(l), regexp.QuoteMeta("..."), ".*")
			fmt.Fprintf(&script, "stdoutvar ENROLL '^\\s+(%s)$'\nexec sh -c $ENROLL\n", strings.ReplaceAll(pattern, "'", "''"))
			if enrolled++; served {
				fmt.Fprintf(&script, "waithttp http://$ADDR/metrics '(?m)^wsproof_registry_keys %d$'\n", enrolled)
			}
		case strings.HasPrefix(l, "wsproof connect "):
			connects++
			name := fmt.Sprintf("typed-%d.txt", connects)
			var expect []string
			fmt.Fprintf(&files, "-- %s --\n", name)
			for i+2 < len(lines)+1 && i+1 < len(lines) && !strings.HasPrefix(lines[i+1], "wsproof ") {
				if i+2 >= len(lines) {
					return "", fmt.Errorf("typed line %q has no printed line after it", lines[i+1])
				}
				files.WriteString(lines[i+1] + "\n")
				expect = append(expect, lines[i+2])
				i += 2
			}
			fmt.Fprintf(&script, "stdin %s\nexec %s\n", name, l)
			for _, e := range expect {
				fmt.Fprintf(&script, "stdout '^%s$'\n", strings.ReplaceAll(regexp.QuoteMeta(e), "'", "''"))
			}
		case strings.HasPrefix(l, "wsproof "):
			fmt.Fprintf(&script, "exec %s\n", l)
		default:
			return "", fmt.Errorf("cannot run %q", l)
		}
	}
	if served {
		script.WriteString("kill -INT server\nwait server\n")
	}
	return script.String() + files.String(), nil
}

// TestREADMEWalkthrough runs the README's walk-through as written (see
// walkthroughScript): a server, a key made and enrolled as keygen says,
// and a session that echoes and broadcasts.
func TestREADMEWalkthrough(t *testing.T) {
	script, err := walkthroughScript(markdownBlock(t, filepath.Join("..", "..", "README.md"), "## Walk-through: two terminals"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "walkthrough.txt"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("the README's walk-through as a script:\n%s", script)
	p := scriptParams(t)
	p.Dir = dir
	testscript.Run(t, p)
}

package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/crypto/ssh"

	"github.com/wsproof/wsproof/internal/pgtest"
)

// mdBlock is a fenced code block of a Markdown file.
type mdBlock struct {
	lang, text string
}

// markdownBlocks returns the fenced code blocks of the Markdown file at
// path, in order.
func markdownBlocks(t *testing.T, path string) []mdBlock {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fencedBlocks(string(data))
}

// fencedBlocks returns the fenced code blocks of Markdown text, in order.
func fencedBlocks(text string) []mdBlock {
	var blocks []mdBlock
	var cur *mdBlock
	for _, line := range strings.Split(text, "\n") {
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &mdBlock{lang: strings.TrimPrefix(line, "```")}
		case cur != nil && line == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		}
	}
	return blocks
}

// shLines joins continued lines (ending in \) and drops comments and blank
// lines.
func shLines(text string) []string {
	var out []string
	text = strings.ReplaceAll(text, "\\\n", " ")
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(trailingComment.ReplaceAllString(l, ""))
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// TestFleetGuide runs steps 1 to 4 of docs/fleet.md as written, in order,
// against a throwaway PostgreSQL cluster and the real HAProxy: the SQL as
// the guide's superuser, the shell commands with sh, the node with the
// nodes' role, and each HAProxy configuration through "haproxy -c". An edit
// to the guide is an edit to this test. The liberties, each forced by a
// test machine, are the replacements below: the database is on loopback
// without TLS, so it is reached as the guide says a local test cluster is
// (127.0.0.1, sslmode=disable); placeholders (PASSWORD, KID, OLD-KID) get
// real values; files under /etc are in the test's folder; a node listens
// on a free loopback port.
func TestFleetGuide(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and a node")
	}
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		if pgtest.Required() {
			t.Fatal("haproxy is not installed: apt-get install haproxy (bash .ci/run does)")
		}
		t.Skip("haproxy is not installed")
	}
	psql, err := exec.LookPath("psql")
	if err != nil {
		if pgtest.Required() {
			t.Fatal("psql is not installed: apt-get install postgresql-client (bash .ci/run installs postgresql)")
		}
		t.Skip("psql is not installed")
	}
	db := pgtest.Start(t)
	super := db.URL() // postgres://postgres@127.0.0.1:PORT/test?sslmode=disable
	hostPort := regexp.MustCompile(`@([^/]+)/`).FindStringSubmatch(super)[1]
	superDB := func(name string) string { return strings.Replace(super, "/test?", "/"+name+"?", 1) }

	// Placeholders and what runs them here.
	subst := strings.NewReplacer(
		"db.internal:5432", hostPort,
		"sslmode=verify-full", "sslmode=disable",
		"'NODE-PASSWORD'", "'node-pw'", ":NODE-PASSWORD@", ":node-pw@",
		"'PASSWORD'", "'operator-pw'", ":PASSWORD@", ":operator-pw@",
		"/etc/wsproof/server.jwks", "server.jwks",
		"--listen 10.0.0.11:7700", "--listen 127.0.0.1:0 --addr-file addr",
		"/etc/haproxy/ws.example.com.pem", "lb.pem",
	)

	var script, files strings.Builder
	sqlN, cfgN := 0, 0
	step := ""
	for _, b := range markdownBlocks(t, filepath.Join("..", "..", "docs", "fleet.md")) {
		text := subst.Replace(b.text)
		switch b.lang {
		case "sql":
			// The first block creates the role and its database, as the
			// superuser in any database; later ones run in the wsproof
			// database, as the guide says.
			sqlN++
			name := fmt.Sprintf("step-%d.sql", sqlN)
			fmt.Fprintf(&files, "-- %s --\n%s", name, text)
			target := superDB("postgres")
			if sqlN > 1 {
				target = superDB("wsproof")
			}
			fmt.Fprintf(&script, "exec %s -v ON_ERROR_STOP=1 -d %s -f %s\n", psql, target, name)
		case "sh":
			lines := shLines(text)
			if len(lines) > 0 && strings.HasPrefix(lines[0], "wsproof serve ...") {
				continue // the TLS variant of a node's command line, shown in part
			}
			for _, l := range lines {
				switch {
				case strings.HasPrefix(l, "export "):
					kv := strings.TrimPrefix(l, "export ")
					k, v, _ := strings.Cut(kv, "=")
					fmt.Fprintf(&script, "env %s=%s\n", k, strings.Trim(v, "'"))
				case strings.HasPrefix(l, "wsproof serve "):
					// exec: the signal that ends the node must reach wsproof, not sh.
					fmt.Fprintf(&script, "exec sh -c 'exec %s' &node&\nwaitfile addr ADDR\nwaithttp http://$ADDR/healthz '(?m)^ok$'\n", l)
					step = "node"
				default:
					// KID: in the key commands the key just added, in the
					// rotation the key just added to the server keys;
					// OLD-KID the key it replaces.
					l = strings.ReplaceAll(l, "OLD-KID", "$OLDKID")
					l = regexp.MustCompile(`\bKID\b`).ReplaceAllString(l, "$$KID")
					fmt.Fprintf(&script, "exec sh -c '%s'\n", strings.ReplaceAll(l, "'", "''"))
					switch {
					case strings.HasPrefix(l, "wsproof keys add "):
						script.WriteString("stdoutvar KID '^added (\\S+) '\n")
					case strings.HasPrefix(l, "wsproof server-keys init "):
						script.WriteString("stdoutvar OLDKID 'signing key (\\S+),'\n")
					case strings.HasPrefix(l, "wsproof server-keys add --signing"):
						script.WriteString("stdoutvar KID '^added signing key (\\S+) '\n")
					}
				}
			}
		case "haproxy":
			cfgN++
			name := fmt.Sprintf("haproxy-%d.cfg", cfgN)
			fmt.Fprintf(&files, "-- %s --\n%s", name, text)
			fmt.Fprintf(&script, "exec %s -c -f %s\n", haproxy, name)
		}
	}
	if step != "node" || sqlN != 2 || cfgN != 2 {
		t.Fatalf("the guide changed shape: node started %v, %d SQL blocks, %d HAProxy configurations", step == "node", sqlN, cfgN)
	}
	// The node reads the registry through the nodes' role: the key the guide
	// enrolled, then revoked, then imported, is there.
	script.WriteString("waithttp http://$ADDR/metrics '(?m)^wsproof_registry_keys [1-9]'\nkill -INT node\nwait node\n")

	dir := t.TempDir()
	writeGuideFiles(t, dir)
	all := script.String() + files.String()
	t.Logf("docs/fleet.md as a script:\n%s", all)
	if err := os.WriteFile(filepath.Join(dir, "fleetguide.txt"), []byte(all), 0o644); err != nil {
		t.Fatal(err)
	}
	p := scriptParams(t)
	p.Dir = dir
	setup := p.Setup
	p.Setup = func(env *testscript.Env) error {
		for _, f := range []string{"device.pub.pem", "fleet.pub", "lb.pem"} {
			data, err := os.ReadFile(filepath.Join(dir, "files", f))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(env.WorkDir, f), data, 0o600); err != nil {
				return err
			}
		}
		return setup(env)
	}
	testscript.Run(t, p)
}

// writeGuideFiles writes the files the guide's commands name: a device's
// public key, an OpenSSH authorized_keys file, and the balancer's
// certificate and key in one PEM file.
func writeGuideFiles(t *testing.T, dir string) {
	t.Helper()
	files := filepath.Join(dir, "files")
	if err := os.MkdirAll(files, 0o755); err != nil {
		t.Fatal(err)
	}
	dev, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&dev.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(files, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("device.pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	write("fleet.pub", append([]byte(strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))), " sensor-18@fleet\n"...))
	lb, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ws.example.com"},
		DNSNames: []string{"ws.example.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &lb.PublicKey, lb)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(lb)
	if err != nil {
		t.Fatal(err)
	}
	write("lb.pem", append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})...))
}

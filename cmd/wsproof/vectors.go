package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"

	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/internal/vectors"
	"github.com/wsproof/wsproof/internal/vectors/sessions"
	"github.com/wsproof/wsproof/protocol"
)

const vectorsUsage = `Usage:
    wsproof vectors check [FILE]
    wsproof vectors generate DIR

check runs every vector of FILE through this implementation, prints each
failure and a summary line "N passed, M failed", and exits 1 if any vector
failed. FILE is a vector file (vectors.json) or a session vector file
(session-vectors.json, scripts through the state machines); without FILE,
check runs both of the repository's, testdata/vectors.json and
testdata/session-vectors.json.

generate writes freshly generated vector files to DIR/vectors.json and
DIR/session-vectors.json; it never overwrites one. The exchanges are the same
as the repository's, but AES-GCM IVs come from crypto/rand, so the session
tokens differ: the byte-identical files are reproduced with
"go test ./internal/vectors -update".
`

func (c *cli) vectors(ctx context.Context, args []string) error {
	fs := c.newFlags("vectors", vectorsUsage)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return c.usageErr(fs, "vectors needs a command: check or generate")
	}
	switch pos[0] {
	case "check":
		if len(pos) > 2 {
			return c.usageErr(fs, "vectors check takes at most one file")
		}
		if len(pos) == 2 {
			return c.vectorsCheck(pos[1])
		}
		if err := c.vectorsCheck(vectorfile.Path); err != nil {
			return err
		}
		return c.vectorsCheck(vectorfile.SessionPath)
	case "generate":
		if len(pos) != 2 {
			return c.usageErr(fs, "vectors generate takes one folder")
		}
		return c.vectorsGenerate(pos[1])
	}
	return c.unknownSub("vectors", pos[0], vectorsUsage)
}

func (c *cli) vectorsCheck(path string) error {
	data, err := readSmall(path, 256<<20)
	if err != nil {
		return &userError{fmt.Sprintf("cannot read the vector file %s", path), "give the path of a vectors.json, such as the repository's testdata/vectors.json", err}
	}
	// A session vector file is told apart by its "client" section; each
	// runner refuses the other kind's unknown members.
	var top map[string]json.RawMessage
	run := protocol.RunVectors
	if json.Unmarshal(data, &top) == nil && top["client"] != nil {
		run = protocol.RunSessionVectors
	}
	results, err := run(data)
	if err != nil {
		return &userError{fmt.Sprintf("cannot run the vectors of %s", path), "the file is not a wsproof v1 vector file this version understands", err}
	}
	failed := 0
	for _, r := range results {
		if !r.OK {
			failed++
			fmt.Fprintf(c.stdout, "FAIL %s (%s): want %s, got %s\n", r.ID, r.Role, r.Want, r.Got)
		}
	}
	fmt.Fprintf(c.stdout, "%d passed, %d failed\n", len(results)-failed, failed)
	if failed > 0 {
		return &userError{fmt.Sprintf("%d of %d vectors failed", failed, len(results)), "each failure is listed above with the outcome the spec expects", nil}
	}
	return nil
}

func (c *cli) vectorsGenerate(dir string) error {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return &userError{fmt.Sprintf("%s is not a folder", dir), "create it first", nil}
	}
	f, err := vectors.Generate()
	if err != nil {
		return err
	}
	data, err := vectorfile.Marshal(f)
	if err != nil {
		return err
	}
	sf, err := sessions.Generate()
	if err != nil {
		return err
	}
	sdata, err := vectorfile.MarshalSession(sf)
	if err != nil {
		return err
	}
	for _, out := range []struct {
		name string
		data []byte
		n    int
	}{{"vectors.json", data, len(f.Vectors)}, {"session-vectors.json", sdata, len(sf.Vectors)}} {
		path := filepath.Join(dir, out.name)
		created, err := writeNew(path, out.data, 0o644)
		if err != nil {
			return &userError{fmt.Sprintf("cannot write %s", path), "check the folder is writable", err}
		}
		if !created {
			return &userError{fmt.Sprintf("%s already exists", path), "choose another folder; the repository's file is regenerated with \"go test ./internal/vectors -update\"", nil}
		}
		fmt.Fprintf(c.stdout, "wrote %d vectors to %s\n", out.n, path)
	}
	return nil
}

func (c *cli) version(ctx context.Context, args []string) error {
	fs := c.newFlags("version", "Usage: wsproof version\n\nPrints the module version, the protocol version and the Go version.\n")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return c.usageErr(fs, "version takes no arguments")
	}
	v := "(unknown)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		v = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
	}
	fmt.Fprintf(c.stdout, "wsproof %s, protocol %s, %s %s/%s\n", v, protocol.Subprotocol, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/keys/postgres"
)

const keysUsage = `Usage: wsproof keys COMMAND [flags]

Edits a key registry: the client keys a server accepts, in a registry file or,
with --db, in the PostgreSQL registry of fleet mode. A running server picks up
each change within a second; a file is replaced atomically, and a database
change is one transaction, recorded in the audit log ("wsproof db audit").
Commands that change one file at once take turns: each holds the lock file
FILE.lock from its read to its write, so that none loses another's change.

Commands:
    add       enroll one key
    list      print the registry as a table
    revoke    revoke a key: its live sessions end within a second
    import    enroll every key of an OpenSSH authorized_keys file

Run "wsproof keys COMMAND -h" for its flags. Every command takes
    --registry FILE   the registry (default STATE/registry.jwks)
    --db URL          the registry database instead (default $WSPROOF_DATABASE_URL,
                      unless --registry is given)
    --state DIR       state folder (default $WSPROOF_STATE, else $HOME/.wsproof)
`

const keysAddUsage = `Usage: wsproof keys add (--key FILE | --jwk JSON) --sub SUBJECT [flags]

Enrolls one client key. Only the public half of a private key file is stored.

Flags:
    --key FILE             the key: PEM (public or private, PKCS #8, SEC 1, PKCS #1,
                           OpenSSH), a JWK, or one OpenSSH public key line
    --jwk JSON             the public key as an inline JWK, as "wsproof keygen" prints it
    --sub SUBJECT          who the key authenticates as (required)
    --groups G,...         groups the key belongs to (repeatable)
    --kid KID              key id (default the JWK's kid, else the RFC 7638 thumbprint)
    --alg ALG              algorithm (default the JWK's alg, else the only one the key
                           type allows; RSA keys need RS256 or PS256)
    --not-before TIME      the key is not valid before TIME (RFC 3339)
    --not-after TIME       the key is not valid at or after TIME (RFC 3339)
    --cb-required          accept the key only with TLS channel binding
    --registry FILE        the registry (default STATE/registry.jwks)
    --db URL               the registry database instead (see "wsproof keys -h")
    --state DIR            state folder (default $WSPROOF_STATE, else $HOME/.wsproof)
`

const keysListUsage = `Usage: wsproof keys list [--registry FILE | --db URL]

Prints every key of the registry: key id, algorithm, subject, groups, validity,
whether it is revoked, and whether it needs channel binding.
`

const keysRevokeUsage = `Usage: wsproof keys revoke KID [--registry FILE | --db URL]

Marks the key KID as revoked. A running server closes its live sessions
within a second and refuses it from then on. The entry stays in the registry,
so that the revocation is visible.
`

const keysImportUsage = `Usage: wsproof keys import --authorized-keys FILE [flags]

Enrolls every key of an OpenSSH authorized_keys file. The subject of each key
is its comment, or --sub. Keys already in the registry are skipped;
authorized_keys options are ignored.

Flags:
    --authorized-keys FILE  the file to import (required)
    --groups G,...          groups for every key (repeatable)
    --sub SUBJECT           subject for every key (default each line's comment)
    --alg ALG               algorithm for RSA keys: RS256 or PS256
    --not-before TIME       as for "wsproof keys add"
    --not-after TIME        as for "wsproof keys add"
    --cb-required           as for "wsproof keys add"
    --registry FILE         the registry (default STATE/registry.jwks)
    --db URL                the registry database instead (see "wsproof keys -h")
    --state DIR             state folder (default $WSPROOF_STATE, else $HOME/.wsproof)
`

func (c *cli) keys(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, keysUsage)
		return errUsage
	}
	switch args[0] {
	case "add":
		return c.keysAdd(ctx, args[1:])
	case "list":
		return c.keysList(ctx, args[1:])
	case "revoke":
		return c.keysRevoke(ctx, args[1:])
	case "import":
		return c.keysImport(ctx, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.stdout, keysUsage)
		return nil
	}
	return c.unknownSub("keys", args[0], keysUsage)
}

// registryFlags are the flags every keys command takes.
type registryFlags struct {
	registry, db, state *string
}

func addRegistryFlags(fs *flag.FlagSet) registryFlags {
	return registryFlags{registry: fs.String("registry", "", ""), db: fs.String("db", "", ""), state: fs.String("state", "", "")}
}

// keyStore is the registry a keys command edits: a file or the database.
// Changes are staged by add and revoke and made by save, all at once.
type keyStore interface {
	name() string
	list() []*keys.Entry
	byKID(kid string) (int, *keys.Entry)
	byThumbprint(tp string) *keys.Entry
	add(e *keys.Entry) error
	revoke(i int)
	save(ctx context.Context) error
	close()
}

// access is what a keys command does with the registry.
type access int

const (
	readOnly     access = iota // list it
	edit                       // change it; it must exist
	editOrCreate               // change it; a missing file is an empty registry
)

// openStore opens the registry the flags name: --db, else --registry, else
// $WSPROOF_DATABASE_URL, else the state folder's registry file.
func (c *cli) openStore(ctx context.Context, f registryFlags, a access) (keyStore, error) {
	if *f.db != "" && *f.registry != "" {
		return nil, &userError{"both --db and --registry given", "use one of them", nil}
	}
	url := *f.db
	if url == "" && *f.registry == "" {
		url = c.getenv("WSPROOF_DATABASE_URL")
	}
	if url != "" {
		a, err := c.dbAdmin(ctx, url)
		if err != nil {
			return nil, err
		}
		es, err := a.List(ctx)
		if err != nil {
			a.Close(context.Background())
			hint := ""
			if errors.Is(err, postgres.ErrSchemaVersion) {
				hint = "run \"wsproof db migrate\""
			}
			return nil, &userError{fmt.Sprintf("cannot read the registry in %s", redactURL(url)), hint, err}
		}
		actor := c.getenv("USER")
		if actor == "" {
			actor = "wsproof"
		}
		return &dbDoc{admin: a, url: redactURL(url), entries: es, actor: actor}, nil
	}
	path, err := c.registryPath(f)
	if err != nil {
		return nil, err
	}
	return loadRegistry(ctx, path, a)
}

func (c *cli) registryPath(f registryFlags) (string, error) {
	if *f.registry != "" {
		return *f.registry, nil
	}
	dir, err := c.stateDir(*f.state)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, registryFile), nil
}

// entryFlags are the flags that describe a new entry, shared by add and import.
type entryFlags struct {
	groups               listFlag
	sub, alg             *string
	notBefore, notAfter  *string
	cbRequired           *bool
	parsedNBF, parsedExp time.Time
}

func addEntryFlags(fs *flag.FlagSet) *entryFlags {
	e := &entryFlags{
		sub:        fs.String("sub", "", ""),
		alg:        fs.String("alg", "", ""),
		notBefore:  fs.String("not-before", "", ""),
		notAfter:   fs.String("not-after", "", ""),
		cbRequired: fs.Bool("cb-required", false, ""),
	}
	fs.Var(&e.groups, "groups", "")
	return e
}

// check validates the flags that do not depend on the key.
func (e *entryFlags) check() error {
	var err error
	if *e.notBefore != "" {
		if e.parsedNBF, err = time.Parse(time.RFC3339, *e.notBefore); err != nil {
			return fmt.Errorf("--not-before %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", *e.notBefore)
		}
	}
	if *e.notAfter != "" {
		if e.parsedExp, err = time.Parse(time.RFC3339, *e.notAfter); err != nil {
			return fmt.Errorf("--not-after %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", *e.notAfter)
		}
	}
	if !e.parsedNBF.IsZero() && !e.parsedExp.IsZero() && !e.parsedNBF.Before(e.parsedExp) {
		return errors.New("--not-before must be before --not-after")
	}
	if *e.alg != "" {
		if _, err := keys.ParseAlgorithm(*e.alg); err != nil {
			return fmt.Errorf("unknown algorithm %q: choose one of %s", *e.alg, algList())
		}
	}
	return nil
}

// entry builds a registry entry for pub. flagAlg is the algorithm chosen on
// the command line, if any; kidHint and algHint come from the key's own JWK,
// if it had one.
func (e *entryFlags) entry(pub crypto.PublicKey, flagAlg, kid, kidHint string, algHint keys.Algorithm, sub string) (*keys.Entry, error) {
	alg, err := chooseAlg(pub, flagAlg, algHint)
	if err != nil {
		return nil, err
	}
	thumb, err := keys.Thumbprint(pub)
	if err != nil {
		return nil, err
	}
	if kid == "" {
		kid = kidHint
	}
	if kid == "" {
		kid = thumb
	}
	if err := checkKID(kid); err != nil {
		return nil, &userError{fmt.Sprintf("bad key id %q", kid), err.Error(), nil}
	}
	return &keys.Entry{
		KeyID: kid, Key: pub, Algorithm: alg, Subject: sub, Groups: []string(e.groups),
		NotBefore: e.parsedNBF, NotAfter: e.parsedExp, RequireChannelBinding: *e.cbRequired,
		Thumbprint: thumb,
	}, nil
}

// chooseAlg picks the algorithm of a key: the flag, else the hint from its
// JWK, else the only one its type allows.
func chooseAlg(pub crypto.PublicKey, flagAlg string, hint keys.Algorithm) (keys.Algorithm, error) {
	alg := hint
	if flagAlg != "" {
		alg = keys.Algorithm(flagAlg)
	}
	if alg == "" {
		algs := keys.AlgorithmsFor(pub)
		if len(algs) != 1 {
			return "", &userError{"an RSA key signs with RS256 or PS256", "choose one with --alg (it must be the algorithm the client signs with)", nil}
		}
		alg = algs[0]
	}
	if err := keys.CheckKey(alg, pub); err != nil {
		var fit []string
		for _, a := range keys.AlgorithmsFor(pub) {
			fit = append(fit, string(a))
		}
		return "", &userError{fmt.Sprintf("the key does not fit algorithm %s", alg), "use --alg " + strings.Join(fit, " or "), nil}
	}
	return alg, nil
}

// registryDoc is a registry as read from disk, with what is needed to
// write it back safely.
type registryDoc struct {
	path    string // as given
	target  string // the file path names (linkTarget), which is read and replaced
	entries []*keys.Entry
	sum     [sha256.Size]byte // of the bytes read; zero for a new file
	mode    fs.FileMode
	exists  bool
	lock    *os.File // held from the read to close, unless read-only
}

// lockSuffix names the lock file of a registry file: registry.jwks.lock.
// Every "wsproof keys" command that changes the file holds an exclusive
// lock on it (lockFile) from before it reads the file until after it has
// replaced it, so that two editors never both edit the same version and the
// second one's rename drops the first one's change (spec section "Reload").
// Other tools that edit the file should take the same lock. A server never
// reads the lock file: it watches the registry's path only.
const lockSuffix = ".lock"

// loadRegistry reads the registry at path; to edit it, it first takes the
// registry's lock, which close releases. A missing file is an empty
// registry for editOrCreate, and an error otherwise. Through symbolic links,
// the file read, locked and replaced is the one they lead to.
func loadRegistry(ctx context.Context, path string, a access) (*registryDoc, error) {
	notExist := &userError{fmt.Sprintf("registry %s does not exist", path),
		"run \"wsproof serve\" once to create it, or enroll a key with \"wsproof keys add\"", nil}
	target, err := linkTarget(path)
	if err != nil {
		return nil, &userError{fmt.Sprintf("cannot open the registry %s", path), "check --registry", err}
	}
	r := &registryDoc{path: path, target: target, mode: 0o644}
	if a != readOnly {
		switch _, err := os.Stat(target); {
		case errors.Is(err, fs.ErrNotExist) && a == edit:
			return nil, notExist
		case errors.Is(err, fs.ErrNotExist):
			if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
				return nil, &userError{fmt.Sprintf("cannot create the folder of %s", target), "check --registry", err}
			}
		}
		// The lock is beside the file rather than the link, so that editors
		// that reach one file by different paths take turns too.
		lock, err := lockFile(ctx, target+lockSuffix)
		if err != nil {
			hint := "check that its folder is writable"
			if errors.Is(err, errLockBusy) {
				hint = fmt.Sprintf("another \"wsproof keys\" command has been editing it for %v; find it with: fuser %s", lockWait, target+lockSuffix)
			}
			return nil, &userError{fmt.Sprintf("cannot lock the registry %s", path), hint, err}
		}
		r.lock = lock
		removeStaleTemps(target)
	}
	err = r.read()
	if errors.Is(err, fs.ErrNotExist) && a == editOrCreate {
		err = nil
	} else if errors.Is(err, fs.ErrNotExist) {
		err = notExist
	}
	if err != nil {
		r.close()
		return nil, err
	}
	editStep("read")
	return r, nil
}

// read reads the file into r.
func (r *registryDoc) read() error {
	data, err := readSmall(r.target, keys.MaxRegistryFile)
	if errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err != nil {
		return &userError{fmt.Sprintf("cannot read the registry %s", r.path), "check --registry", err}
	}
	set, err := keys.ParseRegistry(data)
	if err != nil {
		return &userError{fmt.Sprintf("the registry %s does not load", r.path), "fix the file; a running server keeps its last good copy meanwhile", err}
	}
	fi, err := os.Stat(r.target)
	if err != nil {
		return err
	}
	r.entries, r.sum, r.mode, r.exists = set.Entries(), sha256.Sum256(data), fi.Mode().Perm(), true
	return nil
}

// removeStaleTemps removes the temporary files that editors killed while
// writing path left behind. Called with the lock held: every editor that
// writes one holds the lock until it has renamed it, so any one found then
// is an editor's that died.
func removeStaleTemps(path string) {
	dir, prefix := filepath.Dir(path), tempPrefix(path)
	names, _ := os.ReadDir(dir)
	for _, d := range names {
		if strings.HasPrefix(d.Name(), prefix) {
			os.Remove(filepath.Join(dir, d.Name()))
		}
	}
}

// save validates the entries as a whole and replaces the file atomically.
// The lock keeps other "wsproof keys" commands out from the read on; save
// still refuses if the file changed since it was read, for writers that do
// not take the lock (an operator's text editor, configuration management).
func (r *registryDoc) save(context.Context) error {
	if _, err := keys.NewSet(r.entries); err != nil {
		return &userError{"the registry would not load", "nothing was written", err}
	}
	data, err := keys.MarshalRegistry(r.entries)
	if err != nil {
		return &userError{"the registry would not load", "nothing was written", err}
	}
	// A link moved meanwhile (a configuration mount swapping in a new
	// version) would have the edit written to a file no longer read.
	target, err := linkTarget(r.path)
	var now []byte
	if err == nil && target == r.target {
		now, err = os.ReadFile(r.target)
	} else if err == nil {
		err = fmt.Errorf("%s now links to %s", r.path, target)
	}
	switch {
	case err == nil && (!r.exists || sha256.Sum256(now) != r.sum),
		err != nil && (r.exists || !errors.Is(err, fs.ErrNotExist)):
		return &userError{fmt.Sprintf("%s changed while it was being edited", r.path), "nothing was written; run the command again", nil}
	}
	editStep("checked")
	if err := writeAtomic(r.target, data, r.mode); err != nil {
		return &userError{fmt.Sprintf("cannot write %s", r.target), "check the folder is writable", err}
	}
	return nil
}

func (r *registryDoc) name() string        { return r.path }
func (r *registryDoc) list() []*keys.Entry { return r.entries }

func (r *registryDoc) close() {
	if r.lock != nil {
		unlockFile(r.lock)
		r.lock = nil
	}
}

// revoke replaces entry i with a revoked copy: entries are immutable once in
// a set.
func (r *registryDoc) revoke(i int) {
	revoked := *r.entries[i]
	revoked.Revoked = true
	r.entries[i] = &revoked
}

func (r *registryDoc) byKID(kid string) (int, *keys.Entry) { return byKID(r.entries, kid) }
func (r *registryDoc) byThumbprint(tp string) *keys.Entry  { return byThumbprint(r.entries, tp) }

func byKID(es []*keys.Entry, kid string) (int, *keys.Entry) {
	for i, e := range es {
		if e.KeyID == kid {
			return i, e
		}
	}
	return -1, nil
}

func byThumbprint(es []*keys.Entry, tp string) *keys.Entry {
	for _, e := range es {
		if e.Thumbprint == tp {
			return e
		}
	}
	return nil
}

// add appends e, refusing a duplicate key id or a key that is enrolled
// already: one key has one entry and one algorithm (spec section "One key,
// one algorithm").
func (r *registryDoc) add(e *keys.Entry) error {
	if err := checkNew(r, e); err != nil {
		return err
	}
	r.entries = append(r.entries, e)
	return nil
}

// checkNew refuses an entry whose key id is taken or whose key is enrolled
// already: one key has one entry and one algorithm (spec section "One key,
// one algorithm").
func checkNew(s keyStore, e *keys.Entry) error {
	if _, old := s.byKID(e.KeyID); old != nil {
		return &userError{fmt.Sprintf("key id %s is already in %s", e.KeyID, s.name()), "choose another --kid, or see \"wsproof keys list\"", nil}
	}
	if old := s.byThumbprint(e.Thumbprint); old != nil {
		return &userError{fmt.Sprintf("this key is already enrolled as %s", old.KeyID), "one key has one entry; see \"wsproof keys list\"", nil}
	}
	return nil
}

// dbDoc is the registry in the database, as listed when the command began.
type dbDoc struct {
	admin   *postgres.Admin
	url     string // without credentials
	actor   string // for the audit log
	entries []*keys.Entry
	added   []*keys.Entry
	revoked []string
}

func (d *dbDoc) name() string        { return d.url }
func (d *dbDoc) list() []*keys.Entry { return d.entries }
func (d *dbDoc) close()              { d.admin.Close(context.Background()) }

func (d *dbDoc) byKID(kid string) (int, *keys.Entry) { return byKID(d.entries, kid) }
func (d *dbDoc) byThumbprint(tp string) *keys.Entry  { return byThumbprint(d.entries, tp) }

func (d *dbDoc) add(e *keys.Entry) error {
	if err := checkNew(d, e); err != nil {
		return err
	}
	d.entries = append(d.entries, e)
	d.added = append(d.added, e)
	return nil
}

func (d *dbDoc) revoke(i int) { d.revoked = append(d.revoked, d.entries[i].KeyID) }

// save makes the staged changes: the additions in one transaction, then
// each revocation. The database enforces the registry's uniqueness rules
// again, against changes made meanwhile by others.
func (d *dbDoc) save(ctx context.Context) error {
	var err error
	switch len(d.added) {
	case 0:
	case 1:
		err = d.admin.Add(ctx, d.added[0], d.actor)
	default:
		var existing []string
		if existing, err = d.admin.Import(ctx, d.added, d.actor); err == nil && slices.ContainsFunc(existing, func(s string) bool { return s != "" }) {
			err = errors.New("keys were enrolled by someone else meanwhile")
		}
	}
	if err != nil {
		var dup *postgres.DuplicateError
		if errors.As(err, &dup) {
			return &userError{dup.Error(), "nothing was written; see \"wsproof keys list\"", nil}
		}
		return &userError{fmt.Sprintf("cannot write to %s", d.url), "nothing was written", err}
	}
	for _, kid := range d.revoked {
		if err := d.admin.Revoke(ctx, kid, d.actor); err != nil && !errors.Is(err, postgres.ErrAlreadyRevoked) {
			return &userError{fmt.Sprintf("cannot revoke %s in %s", printable(kid), d.url), "", err}
		}
	}
	return nil
}

func (c *cli) keysAdd(ctx context.Context, args []string) error {
	fs := c.newFlags("keys add", keysAddUsage)
	rf := addRegistryFlags(fs)
	ef := addEntryFlags(fs)
	keyFile := fs.String("key", "", "")
	inline := fs.String("jwk", "", "")
	kid := fs.String("kid", "", "")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return c.usageErr(fs, "keys add takes no arguments, got %q", pos[0])
	case (*keyFile == "") == (*inline == ""):
		return c.usageErr(fs, "give the key with either --key FILE or --jwk JSON")
	case *ef.sub == "":
		return c.usageErr(fs, "--sub is required: it names who the key authenticates as")
	case len(*ef.sub) > keys.MaxSubjectLen:
		return c.usageErr(fs, "--sub is at most %d bytes", keys.MaxSubjectLen)
	}
	if *kid != "" {
		if err := checkKID(*kid); err != nil {
			return c.usageErr(fs, "bad --kid: %v", err)
		}
	}
	if err := ef.check(); err != nil {
		return c.usageErr(fs, "%v", err)
	}
	var (
		pub     crypto.PublicKey
		kidHint string
		algHint keys.Algorithm
	)
	if *inline != "" {
		pub, kidHint, algHint, err = inlineJWK(*inline)
	} else {
		pub, kidHint, algHint, err = readPublicKey(*keyFile)
	}
	if err != nil {
		return err
	}
	reg, err := c.openStore(ctx, rf, editOrCreate)
	if err != nil {
		return err
	}
	defer reg.close()
	e, err := ef.entry(pub, *ef.alg, *kid, kidHint, algHint, *ef.sub)
	if err != nil {
		return err
	}
	if err := reg.add(e); err != nil {
		return err
	}
	if err := reg.save(ctx); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "added %s (%s) for %s to %s\n", e.KeyID, e.Algorithm, printable(e.Subject), reg.name())
	return nil
}

// inlineJWK reads a public JWK given on the command line. A private JWK is
// refused: command lines end up in shell histories and process lists.
func inlineJWK(s string) (crypto.PublicKey, string, keys.Algorithm, error) {
	data := []byte(s)
	if _, err := keys.ParsePrivateKey(data); err == nil {
		return nil, "", "", &userError{"--jwk holds a private key", "never put a private key on a command line; give the public JWK, or --key FILE", nil}
	}
	pub, err := keys.ParsePublicKey(data)
	if err != nil {
		return nil, "", "", &userError{"--jwk is not a usable public JWK", "paste the JWK that \"wsproof keygen\" printed", err}
	}
	kid, alg := jwkHints(data)
	return pub, kid, alg, nil
}

// jwkHints returns the kid and alg of a JWK, if data is one that has them.
func jwkHints(data []byte) (string, keys.Algorithm) {
	if !bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) {
		return "", ""
	}
	_, kid, alg, err := keys.ParseJWK(data)
	if err != nil {
		return "", ""
	}
	return kid, alg
}

// readPublicKey reads a key file in any format keys reads, keeping only the
// public half, with the kid and alg hints of a JWK.
func readPublicKey(path string) (crypto.PublicKey, string, keys.Algorithm, error) {
	data, err := readSmall(path, maxKeyFile)
	if err != nil {
		return nil, "", "", &userError{fmt.Sprintf("cannot read the key file %s", path), "check --key", err}
	}
	kid, alg := jwkHints(data)
	pub, perr := keys.ParsePublicKey(data)
	if perr == nil {
		return pub, kid, alg, nil
	}
	priv, err := keys.ParsePrivateKey(data)
	switch {
	case err == nil:
		return priv.Public(), kid, alg, nil
	case errors.Is(err, keys.ErrPassphraseRequired):
		return nil, "", "", &userError{fmt.Sprintf("%s is encrypted with a passphrase", path), "give its public key instead (the .pub file)", nil}
	case bytes.Contains(data, []byte("PRIVATE KEY")):
		perr = err
	}
	return nil, "", "", &userError{fmt.Sprintf("cannot use the key in %s", path),
		"give a PEM or OpenSSH key, or a JWK, of type EC (P-256, P-384, P-521), RSA (2048 to 4096 bits) or Ed25519", perr}
}

func (c *cli) keysList(ctx context.Context, args []string) error {
	fs := c.newFlags("keys list", keysListUsage)
	rf := addRegistryFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return c.usageErr(fs, "keys list takes no arguments, got %q", pos[0])
	}
	reg, err := c.openStore(ctx, rf, readOnly)
	if err != nil {
		return err
	}
	defer reg.close()
	if len(reg.list()) == 0 {
		fmt.Fprintf(c.stdout, "%s has no keys; enroll one with \"wsproof keys add\"\n", reg.name())
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tSUB\tGROUPS\tVALIDITY\tREVOKED\tCB")
	for _, e := range reg.list() {
		groups := "-"
		if len(e.Groups) > 0 {
			qs := make([]string, len(e.Groups))
			for i, g := range e.Groups {
				qs[i] = printable(g)
			}
			groups = strings.Join(qs, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.KeyID, e.Algorithm, printable(e.Subject), groups,
			validity(e, now), yesNo(e.Revoked), yesNo(e.RequireChannelBinding))
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// validity describes an entry's validity window and where now stands in it.
func validity(e *keys.Entry, now time.Time) string {
	f := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	var s string
	switch {
	case e.NotBefore.IsZero() && e.NotAfter.IsZero():
		return "always"
	case e.NotAfter.IsZero():
		s = "from " + f(e.NotBefore)
	case e.NotBefore.IsZero():
		s = "until " + f(e.NotAfter)
	default:
		s = f(e.NotBefore) + ".." + f(e.NotAfter)
	}
	switch {
	case !e.NotBefore.IsZero() && now.Before(e.NotBefore):
		s += " (not yet)"
	case !e.NotAfter.IsZero() && !now.Before(e.NotAfter):
		s += " (expired)"
	}
	return s
}

// printable returns s as is if it is printable text without spaces that
// could break a table column, and quoted otherwise: registry strings must
// not drive the terminal.
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

func (c *cli) keysRevoke(ctx context.Context, args []string) error {
	fs := c.newFlags("keys revoke", keysRevokeUsage)
	rf := addRegistryFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return c.usageErr(fs, "keys revoke takes one key id")
	}
	kid := pos[0]
	reg, err := c.openStore(ctx, rf, edit)
	if err != nil {
		return err
	}
	defer reg.close()
	i, e := reg.byKID(kid)
	if e == nil {
		return &userError{fmt.Sprintf("no key %s in %s", printable(kid), reg.name()), "\"wsproof keys list\" shows the key ids", nil}
	}
	if e.Revoked {
		fmt.Fprintf(c.stdout, "%s was already revoked\n", kid)
		return nil
	}
	reg.revoke(i)
	if err := reg.save(ctx); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "revoked %s (%s); a running server closes its sessions within a second\n", kid, printable(e.Subject))
	return nil
}

func (c *cli) keysImport(ctx context.Context, args []string) error {
	fs := c.newFlags("keys import", keysImportUsage)
	rf := addRegistryFlags(fs)
	ef := addEntryFlags(fs)
	file := fs.String("authorized-keys", "", "")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return c.usageErr(fs, "keys import takes no arguments, got %q", pos[0])
	case *file == "":
		return c.usageErr(fs, "--authorized-keys FILE is required")
	case len(*ef.sub) > keys.MaxSubjectLen:
		return c.usageErr(fs, "--sub is at most %d bytes", keys.MaxSubjectLen)
	}
	if err := ef.check(); err != nil {
		return c.usageErr(fs, "%v", err)
	}
	if a := keys.Algorithm(*ef.alg); a != "" && a != keys.RS256 && a != keys.PS256 {
		return c.usageErr(fs, "--alg is for RSA keys: RS256 or PS256")
	}
	data, err := readSmall(*file, keys.MaxRegistryFile)
	if err != nil {
		return &userError{fmt.Sprintf("cannot read %s", *file), "check --authorized-keys", err}
	}
	aks, err := keys.ParseAuthorizedKeys(data)
	if err != nil {
		var le *keys.LineError
		if errors.As(err, &le) {
			return &userError{fmt.Sprintf("%s line %d is not a usable key", *file, le.Line),
				"remove or fix the line: wsproof takes ssh-ed25519, ecdsa-sha2-nistp256/384/521 and ssh-rsa keys of 2048 to 4096 bits", le.Err}
		}
		return &userError{fmt.Sprintf("cannot import %s", *file), "check the file is in authorized_keys format", err}
	}
	if len(aks) == 0 {
		return &userError{fmt.Sprintf("%s has no keys", *file), "check --authorized-keys", nil}
	}
	reg, err := c.openStore(ctx, rf, editOrCreate)
	if err != nil {
		return err
	}
	defer reg.close()
	var added []*keys.Entry
	for _, ak := range aks {
		sub := *ef.sub
		if sub == "" {
			sub = ak.Comment
		}
		if sub == "" {
			return &userError{fmt.Sprintf("%s line %d has no comment to use as the subject", *file, ak.Line), "add one, or pass --sub", nil}
		}
		if len(sub) > keys.MaxSubjectLen {
			return &userError{fmt.Sprintf("%s line %d has a comment longer than %d bytes", *file, ak.Line, keys.MaxSubjectLen), "shorten it, or pass --sub", nil}
		}
		thumb, err := keys.Thumbprint(ak.Key)
		if err != nil {
			return err
		}
		if old := reg.byThumbprint(thumb); old != nil {
			fmt.Fprintf(c.stdout, "skipped line %d: the key is already enrolled as %s\n", ak.Line, old.KeyID)
			continue
		}
		// --alg is for RSA keys: every other key type allows one algorithm.
		var flagAlg string
		if _, ok := ak.Key.(*rsa.PublicKey); ok {
			flagAlg = *ef.alg
		}
		e, err := ef.entry(ak.Key, flagAlg, "", "", "", sub)
		if ue, ok := err.(*userError); ok {
			ue.what = fmt.Sprintf("%s line %d: %s", *file, ak.Line, ue.what)
			return ue
		} else if err != nil {
			return err
		}
		if len(ak.Options) > 0 {
			fmt.Fprintf(c.stdout, "line %d: authorized_keys options are ignored\n", ak.Line)
		}
		if err := reg.add(e); err != nil {
			return err
		}
		added = append(added, e)
	}
	if len(added) > 0 {
		if err := reg.save(ctx); err != nil {
			return err
		}
	}
	for _, e := range added {
		fmt.Fprintf(c.stdout, "added %s (%s) for %s\n", e.KeyID, e.Algorithm, printable(e.Subject))
	}
	fmt.Fprintf(c.stdout, "imported %d of %d keys into %s\n", len(added), len(aks), reg.name())
	return nil
}

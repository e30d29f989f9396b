package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

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
    list      print the registry as a table, or as JSON (--json)
    show      print one key
    update    change a key's subject, groups, algorithm, validity or channel
              binding: a wrong enrollment is fixed in place
    revoke    revoke a key: its live sessions end within a second, and the
              entry stays, marked revoked, so that the key stays refused
    remove    delete a key's entry: its live sessions end within a second
    import    enroll every key of an OpenSSH authorized_keys file

The commands that name a key take its key id, KID, before or after their
flags. A key id may start with "-": an argument that is not one of the
command's flags is taken as the key id, and after "--" every argument is
(a key id spelled like a flag needs it: wsproof keys show -- -h).

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

const keysListUsage = `Usage: wsproof keys list [--json] [--registry FILE | --db URL]

Prints every key of the registry: key id, algorithm, subject, groups, validity,
whether it is revoked, and whether it needs channel binding.

With --json, prints {"keys": [KEY, ...]} instead, in registry order, where each
KEY is an object with exactly these members (more may be added, never removed
or changed):

    kid          string   the key id
    alg          string   the algorithm: ES256, ES384, ES512, RS256, PS256 or EdDSA
    thumbprint   string   the RFC 7638 SHA-256 thumbprint of the key (base64url)
    sub          string   the subject
    groups       array    of strings; [] for none
    not_before   string   RFC 3339 time in UTC, or null: valid from this time on
    not_after    string   RFC 3339 time in UTC, or null: not valid at or after it
    revoked      boolean
    cb_required  boolean  the key needs TLS channel binding
    jwk          object   the public key as a JWK (never any private member)

Characters outside ASCII are written as \u escapes.
`

const keysShowUsage = `Usage: wsproof keys show KID [--json] [--registry FILE | --db URL]

Prints the key KID: what "wsproof keys list" prints of it, and its
thumbprint. With --json, prints it as one KEY object of "wsproof keys list
--json".
`

const keysUpdateUsage = `Usage: wsproof keys update KID [flags]

Changes the entry of the key KID; what no flag names stays as it is. The entry
is checked by the same rules as "wsproof keys add". A running server applies
the change to live sessions within a second: a session whose key leaves its
validity window, no longer has a group the server requires, or now needs
channel binding that the session lacks is closed (session_revoked, 4011).

A revoked key cannot be updated: revocation is final. To enroll the same key
again, remove it ("wsproof keys remove") and add it afresh.

Flags:
    --sub SUBJECT          the new subject
    --groups G,...         the new groups, replacing the old (repeatable);
                           --groups '' removes every group
    --add-group G,...      add groups (repeatable)
    --remove-group G,...   remove groups (repeatable); each must be the key's
    --alg ALG              the algorithm, which must fit the key (RS256 or PS256 for RSA)
    --not-before TIME      the key is not valid before TIME (RFC 3339); '' removes the bound
    --not-after TIME       the key is not valid at or after TIME (RFC 3339); '' removes the bound
    --cb-required=BOOL     true: accept the key only with TLS channel binding; false: without too
    --registry FILE        the registry (default STATE/registry.jwks)
    --db URL               the registry database instead (see "wsproof keys -h")
    --state DIR            state folder (default $WSPROOF_STATE, else $HOME/.wsproof)
`

const keysRevokeUsage = `Usage: wsproof keys revoke KID [--registry FILE | --db URL]

Marks the key KID as revoked. A running server closes its live sessions
within a second and refuses it from then on. The entry stays in the registry,
so that the revocation is visible and the key cannot be enrolled again by
mistake; a revoked entry cannot be updated.
`

const keysRemoveUsage = `Usage: wsproof keys remove KID [--registry FILE | --db URL]

Deletes the entry of the key KID. A running server closes its live sessions
within a second (session_revoked, 4011) and refuses it from then on. Unlike
"wsproof keys revoke", nothing remembers the key: it can be enrolled again,
and removing a revoked key undoes its revocation for whoever enrolls it again.
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
	case "show":
		return c.keysShow(ctx, args[1:])
	case "update":
		return c.keysUpdate(ctx, args[1:])
	case "revoke":
		return c.keysRevoke(ctx, args[1:])
	case "remove":
		return c.keysRemove(ctx, args[1:])
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
// Changes are staged by add, replace and remove, and made by save, all at
// once; the commands go through changeKey, add and remove, the same for
// both.
type keyStore interface {
	name() string
	list() []*keys.Entry
	byKID(kid string) (int, *keys.Entry)
	byThumbprint(tp string) *keys.Entry
	add(e *keys.Entry) error
	// replace stages e, which change made of a copy of entry i, in its
	// place. The database applies change again, to the entry as it is
	// when it writes.
	replace(i int, e *keys.Entry, change func(*keys.Entry) error)
	remove(i int)
	save(ctx context.Context) error
	close()
}

// changeKey applies change to a copy of the entry of kid, checks the result
// by the registry rules, and stages it in reg. It returns the entry before
// and after the change.
func changeKey(reg keyStore, kid string, change func(*keys.Entry) error) (old, changed *keys.Entry, err error) {
	i, old := reg.byKID(kid)
	if old == nil {
		return nil, nil, noKey(reg, kid)
	}
	c := *old
	c.Groups = slices.Clone(old.Groups)
	if err := change(&c); err != nil {
		return nil, nil, err
	}
	if _, err := keys.NewSet([]*keys.Entry{&c}); err != nil {
		return nil, nil, &userError{fmt.Sprintf("cannot update %q", kid), "nothing was written", err}
	}
	reg.replace(i, &c, change)
	return old, &c, nil
}

// noKey is the error for a key id that is not in reg.
func noKey(reg keyStore, kid string) error {
	hint := "\"wsproof keys list\" shows the key ids"
	if strings.HasPrefix(kid, "-") {
		hint += "; if it was meant as a flag, the command's -h lists them"
	}
	return &userError{fmt.Sprintf("no key %q in %s", kid, reg.name()), hint, nil}
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
	if e.parsedNBF, err = timeFlag("not-before", *e.notBefore); err != nil {
		return err
	}
	if e.parsedExp, err = timeFlag("not-after", *e.notAfter); err != nil {
		return err
	}
	if !e.parsedNBF.IsZero() && !e.parsedExp.IsZero() && !e.parsedNBF.Before(e.parsedExp) {
		return errors.New("--not-before must be before --not-after")
	}
	return algFlag(*e.alg)
}

// timeFlag parses the value of the time flag --name: RFC 3339, or "" for
// none (the zero time).
func timeFlag(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("--%s %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", name, v)
	}
	return t, nil
}

// algFlag checks the value of --alg, if any, names an algorithm.
func algFlag(v string) error {
	if v == "" {
		return nil
	}
	if _, err := keys.ParseAlgorithm(v); err != nil {
		return fmt.Errorf("unknown algorithm %q: choose one of %s", v, algList())
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

func (r *registryDoc) replace(i int, e *keys.Entry, _ func(*keys.Entry) error) { r.entries[i] = e }
func (r *registryDoc) remove(i int)                                            { r.entries = slices.Delete(r.entries, i, i+1) }

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
	changes []dbChange
}

// dbChange is a change to one entry, staged by replace or remove.
type dbChange struct {
	kid    string
	change func(*keys.Entry) error // nil to remove the entry
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

func (d *dbDoc) replace(i int, e *keys.Entry, change func(*keys.Entry) error) {
	d.changes = append(d.changes, dbChange{d.entries[i].KeyID, change})
	d.entries[i] = e
}

func (d *dbDoc) remove(i int) {
	d.changes = append(d.changes, dbChange{kid: d.entries[i].KeyID})
	d.entries = slices.Delete(d.entries, i, i+1)
}

// save makes the staged changes: the additions in one transaction, then
// each change of an entry in its own. The database enforces the registry's
// rules again, against changes made meanwhile by others: each change is
// applied to the entry as it is then.
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
	for _, c := range d.changes {
		if c.change == nil {
			err = d.admin.Remove(ctx, c.kid, d.actor)
		} else {
			err = d.admin.Update(ctx, c.kid, d.actor, c.change)
		}
		var ue *userError
		switch {
		case err == nil:
		case errors.As(err, &ue):
			return err
		case errors.Is(err, postgres.ErrNotFound):
			return &userError{fmt.Sprintf("key %q was removed from %s meanwhile", c.kid, d.url), "see \"wsproof keys list\"", nil}
		case errors.Is(err, keys.ErrInvalidKey):
			return &userError{fmt.Sprintf("cannot update %q", c.kid), "nothing was written", err}
		default:
			return &userError{fmt.Sprintf("cannot change key %q in %s", c.kid, d.url), "", err}
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
	asJSON := fs.Bool("json", false, "")
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
	if *asJSON {
		out := struct {
			Keys []keyJSON `json:"keys"`
		}{Keys: []keyJSON{}}
		for _, e := range reg.list() {
			out.Keys = append(out.Keys, newKeyJSON(e))
		}
		return c.printJSON(out)
	}
	if len(reg.list()) == 0 {
		fmt.Fprintf(c.stdout, "%s has no keys; enroll one with \"wsproof keys add\"\n", reg.name())
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tSUB\tGROUPS\tVALIDITY\tREVOKED\tCB")
	for _, e := range reg.list() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.KeyID, e.Algorithm, printable(e.Subject), groupList(e.Groups),
			validity(e, now), yesNo(e.Revoked), yesNo(e.RequireChannelBinding))
	}
	return tw.Flush()
}

// keyJSON is an entry as "wsproof keys list --json" and "wsproof keys show
// --json" print it: a documented shape (keysListUsage), kept stable for
// scripts. Members may be added, never removed or changed.
type keyJSON struct {
	KID        string          `json:"kid"`
	Alg        keys.Algorithm  `json:"alg"`
	Thumbprint string          `json:"thumbprint"`
	Subject    string          `json:"sub"`
	Groups     []string        `json:"groups"`
	NotBefore  *string         `json:"not_before"`
	NotAfter   *string         `json:"not_after"`
	Revoked    bool            `json:"revoked"`
	CBRequired bool            `json:"cb_required"`
	JWK        json.RawMessage `json:"jwk"`
}

func newKeyJSON(e *keys.Entry) keyJSON {
	t := func(t time.Time) *string {
		if t.IsZero() {
			return nil
		}
		s := t.UTC().Format(time.RFC3339)
		return &s
	}
	// The entry's key is public and passed the registry rules, which
	// MarshalJWK checks again.
	jwk, err := keys.MarshalJWK(e.Key, e.KeyID, e.Algorithm)
	if err != nil {
		jwk = []byte("null")
	}
	groups := e.Groups
	if groups == nil {
		groups = []string{}
	}
	return keyJSON{KID: e.KeyID, Alg: e.Algorithm, Thumbprint: e.Thumbprint, Subject: e.Subject, Groups: groups,
		NotBefore: t(e.NotBefore), NotAfter: t(e.NotAfter), Revoked: e.Revoked, CBRequired: e.RequireChannelBinding, JWK: jwk}
}

// printJSON prints v as indented JSON in ASCII: every other character is a
// \u escape, so that no registry string can drive the terminal.
func (c *cli) printJSON(v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, r := range string(data) {
		switch {
		case r < utf8.RuneSelf:
			b.WriteRune(r)
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			fmt.Fprintf(&b, "\\u%04x\\u%04x", r1, r2)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
	}
	b.WriteByte('\n')
	_, err = io.WriteString(c.stdout, b.String())
	return err
}

// groupList is the groups as a list column: "-" for none.
func groupList(groups []string) string {
	if len(groups) == 0 {
		return "-"
	}
	qs := make([]string, len(groups))
	for i, g := range groups {
		qs[i] = printable(g)
	}
	return strings.Join(qs, ",")
}

// keyFields are what "wsproof keys show" prints of an entry, as label and
// value; "wsproof keys update" prints those that changed.
func keyFields(e *keys.Entry, now time.Time) [][2]string {
	return [][2]string{
		{"kid", e.KeyID},
		{"alg", string(e.Algorithm)},
		{"thumbprint", e.Thumbprint},
		{"sub", printable(e.Subject)},
		{"groups", groupList(e.Groups)},
		{"validity", validity(e, now)},
		{"revoked", yesNo(e.Revoked)},
		{"cb required", yesNo(e.RequireChannelBinding)},
	}
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

// parseKID parses the arguments of a keys command that names one key: its
// flags, and the key id before, between or after them. A key id may start
// with '-' (one random key id in 32 does, a thumbprint being base64url): an
// argument that is not one of the command's flags is taken as the key id,
// and after "--" every argument is. It fails with a usage error unless
// there is exactly one argument, a key id.
func (c *cli) parseKID(fs *flag.FlagSet, args []string) (string, error) {
	pos, flagErr, err := parseArgs(fs, args, true)
	switch {
	case err != nil:
		return "", err
	case len(pos) > 1 && flagErr != nil:
		// "--regsitry FILE KID": a mistyped flag, not a key id.
		return "", parseFailed(fs, flagErr)
	case len(pos) != 1:
		return "", c.usageErr(fs, "%s takes one key id, got %d arguments; \"wsproof keys list\" shows the key ids", fs.Name(), len(pos))
	case keys.CheckKeyID(pos[0]) != nil:
		return "", c.usageErr(fs, "the argument of %s is not a key id: %v", fs.Name(), checkKID(pos[0]))
	}
	return pos[0], nil
}

// openKID parses the arguments of a keys command that names one key, as
// parseKID does, and opens the registry its flags name for a.
func (c *cli) openKID(ctx context.Context, fs *flag.FlagSet, rf registryFlags, args []string, a access) (keyStore, string, error) {
	kid, err := c.parseKID(fs, args)
	if err != nil {
		return nil, "", err
	}
	reg, err := c.openStore(ctx, rf, a)
	return reg, kid, err
}

func (c *cli) keysShow(ctx context.Context, args []string) error {
	fs := c.newFlags("keys show", keysShowUsage)
	rf := addRegistryFlags(fs)
	asJSON := fs.Bool("json", false, "")
	reg, kid, err := c.openKID(ctx, fs, rf, args, readOnly)
	if err != nil {
		return err
	}
	defer reg.close()
	_, e := reg.byKID(kid)
	switch {
	case e == nil:
		return noKey(reg, kid)
	case *asJSON:
		return c.printJSON(newKeyJSON(e))
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for _, f := range keyFields(e, time.Now()) {
		fmt.Fprintf(tw, "%s:\t%s\n", f[0], f[1])
	}
	return tw.Flush()
}

func (c *cli) keysUpdate(ctx context.Context, args []string) error {
	fs := c.newFlags("keys update", keysUpdateUsage)
	rf := addRegistryFlags(fs)
	var groups, addGroups, removeGroups listFlag
	fs.Var(&groups, "groups", "")
	fs.Var(&addGroups, "add-group", "")
	fs.Var(&removeGroups, "remove-group", "")
	sub := fs.String("sub", "", "")
	alg := fs.String("alg", "", "")
	notBefore := fs.String("not-before", "", "")
	notAfter := fs.String("not-after", "", "")
	cbRequired := fs.Bool("cb-required", false, "")
	kid, err := c.parseKID(fs, args)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	delete(set, "registry")
	delete(set, "db")
	delete(set, "state")
	if len(set) == 0 {
		return c.usageErr(fs, "nothing to change: give at least one of --sub, --groups, --add-group, --remove-group, --alg, --not-before, --not-after, --cb-required")
	}
	if set["groups"] && (set["add-group"] || set["remove-group"]) {
		return c.usageErr(fs, "--groups sets every group: use it without --add-group and --remove-group")
	}
	nbf, err := timeFlag("not-before", *notBefore)
	if err != nil {
		return c.usageErr(fs, "%v", err)
	}
	exp, err := timeFlag("not-after", *notAfter)
	if err != nil {
		return c.usageErr(fs, "%v", err)
	}
	if err := algFlag(*alg); err != nil {
		return c.usageErr(fs, "%v", err)
	}
	// change is applied to the entry as read here and, in the database,
	// again to the entry as it is when the change is written.
	change := func(e *keys.Entry) error {
		if e.Revoked {
			return &userError{fmt.Sprintf("key %q is revoked", e.KeyID),
				"a revoked key cannot be updated; to enroll the key again, remove it (\"wsproof keys remove\") and add it afresh", nil}
		}
		if set["sub"] {
			e.Subject = *sub
		}
		if set["groups"] {
			e.Groups = slices.Clone([]string(groups))
		}
		for _, g := range addGroups {
			if !slices.Contains(e.Groups, g) {
				e.Groups = append(e.Groups, g)
			}
		}
		for _, g := range removeGroups {
			i := slices.Index(e.Groups, g)
			if i < 0 {
				return &userError{fmt.Sprintf("key %q is not in group %q", e.KeyID, g), "see \"wsproof keys show\"; nothing was written", nil}
			}
			e.Groups = slices.Delete(e.Groups, i, i+1)
		}
		if set["alg"] {
			a, err := chooseAlg(e.Key, *alg, "")
			if err != nil {
				return err
			}
			e.Algorithm = a
		}
		if set["not-before"] {
			e.NotBefore = nbf
		}
		if set["not-after"] {
			e.NotAfter = exp
		}
		if set["cb-required"] {
			e.RequireChannelBinding = *cbRequired
		}
		return nil
	}
	reg, err := c.openStore(ctx, rf, edit)
	if err != nil {
		return err
	}
	defer reg.close()
	old, changed, err := changeKey(reg, kid, change)
	if err != nil {
		return err
	}
	now := time.Now()
	before, after := keyFields(old, now), keyFields(changed, now)
	var diff []string
	for i := range before {
		if before[i] != after[i] {
			diff = append(diff, fmt.Sprintf("    %s: %s -> %s\n", after[i][0], before[i][1], after[i][1]))
		}
	}
	if len(diff) == 0 {
		fmt.Fprintf(c.stdout, "%s already has these settings; nothing was written\n", kid)
		return nil
	}
	if err := reg.save(ctx); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "updated %s in %s; a running server applies the change to live sessions within a second\n%s",
		kid, reg.name(), strings.Join(diff, ""))
	return nil
}

func (c *cli) keysRevoke(ctx context.Context, args []string) error {
	fs := c.newFlags("keys revoke", keysRevokeUsage)
	rf := addRegistryFlags(fs)
	reg, kid, err := c.openKID(ctx, fs, rf, args, edit)
	if err != nil {
		return err
	}
	defer reg.close()
	if _, e := reg.byKID(kid); e != nil && e.Revoked {
		fmt.Fprintf(c.stdout, "%s was already revoked\n", kid)
		return nil
	}
	_, e, err := changeKey(reg, kid, func(e *keys.Entry) error { e.Revoked = true; return nil })
	if err != nil {
		return err
	}
	if err := reg.save(ctx); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "revoked %s (%s); a running server closes its sessions within a second\n", kid, printable(e.Subject))
	return nil
}

func (c *cli) keysRemove(ctx context.Context, args []string) error {
	fs := c.newFlags("keys remove", keysRemoveUsage)
	rf := addRegistryFlags(fs)
	reg, kid, err := c.openKID(ctx, fs, rf, args, edit)
	if err != nil {
		return err
	}
	defer reg.close()
	i, e := reg.byKID(kid)
	if e == nil {
		return noKey(reg, kid)
	}
	reg.remove(i)
	if err := reg.save(ctx); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "removed %s (%s) from %s; a running server closes its sessions within a second\n", kid, printable(e.Subject), reg.name())
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

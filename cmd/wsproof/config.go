package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/jackc/pgx/v5"

	"github.com/wsproof/wsproof/keys"
)

// A flag of "wsproof serve" can come from four places, in this order of
// precedence: the command line, the environment (WSPROOF_ and the flag's
// name in capitals, dashes as underscores: --handshake-rate is
// $WSPROOF_HANDSHAKE_RATE), the configuration file (--config FILE or
// $WSPROOF_CONFIG; its keys are the flags' names), and the default. One
// name per setting everywhere, so that the help, the file and the
// environment cannot disagree.
//
// The file is TOML, read with github.com/BurntSushi/toml: a format with
// types (numbers, booleans, strings, arrays) and comments, without YAML's
// indentation and implicit-typing traps, that operators of Centrifugo and
// others already write; parsing it by hand would be more code than the
// rest of this file, and worse.

// configSources records where each flag that is not at its default came
// from, for --check-config.
type configSources map[string]string

// envName is the environment variable of flag name.
func envName(name string) string {
	return "WSPROOF_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// ownEnv lists the flags whose environment variable is read elsewhere,
// with its own rule: --db's $WSPROOF_DATABASE_URL, which every command
// shares and which --registry overrides, and the file path flags that make
// no sense to set for every command.
var ownEnv = map[string]bool{"db": true, "config": true, "check-config": true}

// applyConfig sets every flag of fs that the command line did not set from
// the environment, then from the configuration file (path, else
// $WSPROOF_CONFIG, else none). An unknown key or a value of the wrong type
// in the file, or an invalid value anywhere, is an error naming where it
// came from.
func (c *cli) applyConfig(fs *flag.FlagSet, path string) (configSources, error) {
	src := configSources{}
	fs.Visit(func(f *flag.Flag) { src[f.Name] = "command line" })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := envName(f.Name)
		v := c.getenv(env)
		if src[f.Name] != "" || ownEnv[f.Name] || v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("$%s: invalid value %q: %v", env, v, err))
			return
		}
		src[f.Name] = "$" + env
	})
	if path == "" {
		path = c.getenv("WSPROOF_CONFIG")
	}
	if path != "" {
		file, err := readConfig(path)
		if err != nil {
			return nil, err
		}
		names := slices.Sorted(func(yield func(string) bool) {
			for k := range file {
				if !yield(k) {
					return
				}
			}
		})
		for _, name := range names {
			f := fs.Lookup(name)
			if f == nil || name == "config" || name == "check-config" {
				var known []string
				fs.VisitAll(func(f *flag.Flag) { known = append(known, f.Name) })
				errs = append(errs, fmt.Errorf("%s: unknown setting %q%s", path, name, didYouMean(name, known)))
				continue
			}
			if src[name] != "" {
				continue // the command line and the environment win
			}
			values, err := configValues(file[name])
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %v", path, name, err))
				continue
			}
			if _, isList := f.Value.(*listFlag); !isList && len(values) != 1 {
				errs = append(errs, fmt.Errorf("%s: %s takes one value, not a list", path, name))
				continue
			}
			for _, v := range values {
				if err := fs.Set(name, v); err != nil {
					errs = append(errs, fmt.Errorf("%s: %s: invalid value %q: %v", path, name, v, err))
				}
			}
			src[name] = path
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, &userError{"invalid configuration", "", err}
	}
	return src, nil
}

// readConfig reads a TOML configuration file into its top-level keys.
func readConfig(path string) (map[string]any, error) {
	data, err := readSmall(path, 1<<20)
	if err != nil {
		return nil, &userError{fmt.Sprintf("cannot read the configuration file %s", path), "check --config or $WSPROOF_CONFIG", err}
	}
	var m map[string]any
	if err := toml.Unmarshal(data, &m); err != nil {
		return nil, &userError{fmt.Sprintf("the configuration file %s is not valid TOML", path), "fix the line it names", err}
	}
	return m, nil
}

// configValues turns a TOML value into the text(s) a flag is set from: a
// list gives one per element (for repeatable flags), a duration is written
// as a string ("30s"), and numbers and booleans as Go writes them.
func configValues(v any) ([]string, error) {
	switch v := v.(type) {
	case string:
		return []string{v}, nil
	case bool:
		return []string{strconv.FormatBool(v)}, nil
	case int64:
		return []string{strconv.FormatInt(v, 10)}, nil
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return nil, errors.New("not a finite number")
		}
		return []string{strconv.FormatFloat(v, 'g', -1, 64)}, nil
	case []any:
		var out []string
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("a list must hold strings, not %T", e)
			}
			out = append(out, s)
		}
		return out, nil
	case time.Time:
		return nil, errors.New("a date is not a setting: durations are strings such as \"30s\"")
	}
	return nil, fmt.Errorf("a table (%T) is not a setting: the file's keys are the flags' names", v)
}

// printConfig prints the effective value of every flag of fs that is not
// at its default, with where it came from. A database URL's password is
// not printed.
func printConfig(w io.Writer, fs *flag.FlagSet, src configSources) {
	fs.VisitAll(func(f *flag.Flag) {
		from := src[f.Name]
		if from == "" || f.Name == "check-config" || f.Name == "config" {
			return
		}
		v := f.Value.String()
		if f.Name == "db" {
			v = redactDB(v)
		}
		fmt.Fprintf(w, "  %-24s %s (%s)\n", f.Name, v, from)
	})
}

// redactDB hides the password of a PostgreSQL connection string, in URL
// or keyword form.
func redactDB(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return u.Redacted()
	}
	return dbPassword.ReplaceAllString(s, "${1}xxxxx")
}

var dbPassword = regexp.MustCompile(`(password\s*=\s*)('[^']*'|\S+)`)

// serveFiles are the settings of serve that name files or addresses.
type serveFiles struct {
	state, serverKeys, registry, db, tlsCert, tlsKey string
	tlsDev                                           bool
	listen                                           string
}

// checkServeConfig is "serve --check-config": the flags have been checked
// already; it loads what serve would load (the server keys, the registry,
// the TLS certificate), creates nothing, connects to nothing, and prints
// the effective settings. A file serve would create on first run is
// reported as such, not as an error.
func (c *cli) checkServeConfig(fs *flag.FlagSet, src configSources, f serveFiles) error {
	var notes []string
	dir, err := c.stateDir(f.state)
	if err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(f.listen); err != nil {
		return &userError{fmt.Sprintf("--listen %q is not host:port", f.listen), "give an address such as 0.0.0.0:7700", err}
	}
	keysPath := f.serverKeys
	if keysPath == "" {
		keysPath = filepath.Join(dir, serverKeysFile)
	}
	if _, err := os.Stat(keysPath); f.serverKeys == "" && errors.Is(err, os.ErrNotExist) {
		notes = append(notes, fmt.Sprintf("server keys %s do not exist yet: serve creates them", keysPath))
	} else {
		sk, err := c.loadServerKeys(keysPath, "fix the file or restore it from a copy")
		if err != nil {
			return err
		}
		notes = append(notes, fmt.Sprintf("server keys %s: %d signing, %d token", keysPath, len(sk.Signing), len(sk.Token)))
	}
	switch {
	case f.db != "":
		if _, err := pgx.ParseConfig(f.db); err != nil {
			return &userError{"the database URL does not parse", "see docs/fleet.md for its form", errors.New(redactDB(err.Error()))}
		}
		notes = append(notes, "registry database URL parses (not connected)")
	default:
		regPath := f.registry
		if regPath == "" {
			regPath = filepath.Join(dir, registryFile)
		}
		if _, err := os.Stat(regPath); f.registry == "" && errors.Is(err, os.ErrNotExist) {
			notes = append(notes, fmt.Sprintf("registry %s does not exist yet: serve creates it empty", regPath))
			break
		}
		reg, err := keys.OpenFile(regPath)
		if err != nil {
			return &userError{fmt.Sprintf("cannot load the registry %s", regPath), "fix the file", err}
		}
		notes = append(notes, fmt.Sprintf("registry %s: %d keys", regPath, reg.Current().Len()))
	}
	now := time.Now()
	switch {
	case f.tlsCert != "":
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return &userError{"cannot load the TLS certificate", "check --tls-cert and --tls-key name a matching PEM certificate chain and private key", err}
		}
		if err := certCurrent(cert, now); err != nil {
			return &userError{fmt.Sprintf("the TLS certificate %s cannot be served", f.tlsCert), "renew it", err}
		}
		notes = append(notes, fmt.Sprintf("TLS certificate %s valid until %s", f.tlsCert, cert.Leaf.NotAfter.UTC().Format(time.DateOnly)))
	case f.tlsDev:
		certPath := filepath.Join(dir, devCertFile)
		if _, err := os.Stat(certPath); errors.Is(err, os.ErrNotExist) {
			notes = append(notes, fmt.Sprintf("development certificate %s does not exist yet: serve creates it", certPath))
			break
		}
		cert, err := tls.LoadX509KeyPair(certPath, filepath.Join(dir, devKeyFile))
		if err != nil {
			return &userError{"cannot load the development certificate", "remove tls-dev.crt and tls-dev.key from the state folder to have a new one made", err}
		}
		if err := certCurrent(cert, now); err != nil {
			return &userError{fmt.Sprintf("the development certificate %s cannot be served", certPath), "remove tls-dev.crt and tls-dev.key from the state folder to have a new one made", err}
		}
		notes = append(notes, fmt.Sprintf("development certificate %s valid until %s", certPath, cert.Leaf.NotAfter.UTC().Format(time.DateOnly)))
	}
	fmt.Fprintln(c.stdout, "configuration OK")
	printConfig(c.stdout, fs, src)
	for _, n := range notes {
		fmt.Fprintf(c.stdout, "  %s\n", n)
	}
	return nil
}

// certCurrent reports an error when the leaf certificate of cert is not
// valid at now.
func certCurrent(cert tls.Certificate, now time.Time) error {
	leaf := cert.Leaf
	if leaf == nil {
		return errors.New("no certificate")
	}
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Errorf("it expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("it is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

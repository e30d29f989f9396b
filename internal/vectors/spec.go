package vectors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// SpecPath is the specification, relative to the repository root.
const SpecPath = "spec/wsproof-v1.md"

// The generated parts of the spec. An example is a marker line followed by a
// fenced code block that RenderSpec fills:
//
//	<!-- example: <vector-id> [<field>] -->  the field's exact value (strings
//	                                         as is, JSON pretty-printed); no
//	                                         field: the whole vector
//	<!-- example: keys <member> -->          a member of the file's "keys"
//	<!-- decoded: <vector-id> <field> -->    the JOSE headers and payloads of
//	                                         a message, pretty-printed; a
//	                                         token is decrypted with the
//	                                         file's token keys; a JSON text
//	                                         (an accept, a key set) is
//	                                         pretty-printed
//
// The negative cases table goes between negativeStart and negativeEnd.
var exampleRE = regexp.MustCompile("(?m)^<!-- (example|decoded): ([^ ]+)(?: ([^ ]+))? -->\n```[a-z]*\n(?s:.*?)^```$")

const (
	negativeStart = "<!-- negative-cases -->\n"
	negativeEnd   = "<!-- end negative-cases -->"
)

// RenderSpec returns spec with every generated part filled from f.
func RenderSpec(spec []byte, f *vectorfile.File) ([]byte, error) {
	var errs []string
	out := exampleRE.ReplaceAllFunc(spec, func(block []byte) []byte {
		m := exampleRE.FindSubmatch(block)
		kind, id, field := string(m[1]), string(m[2]), string(m[3])
		text, err := example(f, kind, id, field)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %s %s: %v", kind, id, field, err))
			return block
		}
		lang := ""
		if strings.HasPrefix(text, "{") {
			lang = "json"
		}
		return fmt.Appendf(nil, "<!-- %s: %s -->\n```%s\n%s\n```", kind, strings.TrimSpace(id+" "+field), lang, text)
	})
	if len(errs) > 0 {
		return nil, fmt.Errorf("spec examples: %s", strings.Join(errs, "; "))
	}
	i := bytes.Index(out, []byte(negativeStart))
	j := bytes.Index(out, []byte(negativeEnd))
	if i < 0 || j < i {
		return nil, fmt.Errorf("spec has no %q ... %q section", strings.TrimSpace(negativeStart), negativeEnd)
	}
	return slices.Concat(out[:i+len(negativeStart)], []byte(negativeTable(f)), out[j:]), nil
}

// example returns the text of one example block.
func example(f *vectorfile.File, kind, id, field string) (string, error) {
	var src any
	if id == "keys" {
		src = f.Keys
	} else if i := slices.IndexFunc(f.Vectors, func(v vectorfile.Vector) bool { return v.ID == id }); i >= 0 {
		src = f.Vectors[i]
	} else {
		return "", fmt.Errorf("no such vector")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // show comments as written
	if err := enc.Encode(src); err != nil {
		return "", err
	}
	raw := bytes.TrimSpace(buf.Bytes())
	if field != "" {
		var members map[string]json.RawMessage
		if err := json.Unmarshal(raw, &members); err != nil {
			return "", err
		}
		if raw = members[field]; raw == nil {
			return "", fmt.Errorf("no such field")
		}
	}
	var s string
	if json.Unmarshal(raw, &s) != nil { // not a string: pretty-print the JSON
		return pretty(raw)
	}
	if kind == "example" {
		return s, nil
	}
	return decode(f, s)
}

// decode shows the JSON inside a message: an accept or a key set, or the
// protected header and payload of a JWS, or, for a session token, the JWE
// header, then the inner JWS header and claims.
func decode(f *vectorfile.File, msg string) (string, error) {
	if strings.HasPrefix(msg, "{") {
		return pretty([]byte(msg))
	}
	seg := strings.Split(msg, ".")
	var parts []string
	switch len(seg) {
	case 3:
		parts = seg[:2]
	case 5:
		obj, err := jose.ParseEncryptedCompact(msg, []jose.KeyAlgorithm{keys.TokenDir, keys.TokenA256KW}, []jose.ContentEncryption{jose.A256GCM})
		if err != nil {
			return "", err
		}
		sk, err := keys.ParseServerKeys(f.Keys.ServerPrivate)
		if err != nil {
			return "", err
		}
		tk, ok := sk.TokenKeyByID(obj.Header.KeyID)
		if !ok {
			return "", fmt.Errorf("no token key %q", obj.Header.KeyID)
		}
		inner, err := obj.Decrypt(tk.Secret)
		if err != nil {
			return "", err
		}
		parts = append([]string{seg[0]}, strings.Split(string(inner), ".")[:2]...)
	default:
		return "", fmt.Errorf("not a compact JWS or JWE")
	}
	var out []string
	for _, p := range parts {
		b, err := b64u.Decode(p)
		if err != nil {
			return "", err
		}
		s, err := pretty(b)
		if err != nil {
			return "", err
		}
		out = append(out, s)
	}
	return strings.Join(out, "\n\n"), nil
}

func pretty(raw []byte) (string, error) {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return "", err
	}
	return b.String(), nil
}

// negativeTable lists every invalid vector as a Markdown table.
func negativeTable(f *vectorfile.File) string {
	var b strings.Builder
	b.WriteString("\n| Vector | Role | Rule | Error | JOSE | What it tests |\n|---|---|---|---|---|---|\n")
	cell := strings.NewReplacer("|", `\|`, "\n", " ").Replace
	for _, v := range f.Vectors {
		if v.Result != vectorfile.Invalid {
			continue
		}
		title, step, _ := strings.Cut(v.Rule, ", ")
		rule := "[" + title + "](#" + slug(title) + ")"
		if step != "" {
			rule += ", " + step
		}
		jose := ""
		if v.JOSE {
			jose = "yes"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | `%s` | %s | %s |\n", v.ID, v.Role, rule, v.Error, jose, cell(v.Comment))
	}
	b.WriteString("\n")
	return b.String()
}

// slug is the anchor GitHub gives a heading.
func slug(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

// CheckSpec reports where spec disagrees with f and with the protocol
// package: a vector's rule that names no section or step of the spec, and
// any difference between the spec's error table and protocol's.
func CheckSpec(spec []byte, f *vectorfile.File) []error {
	var errs []error
	sections := map[string]string{} // heading title -> section text
	for _, sec := range regexp.MustCompile(`(?m)^#+ `).Split(string(spec), -1)[1:] {
		title, body, _ := strings.Cut(sec, "\n")
		sections[title] = body
	}
	seen := map[string]bool{}
	for _, v := range f.Vectors {
		if seen[v.Rule] {
			continue
		}
		seen[v.Rule] = true
		title, step, _ := strings.Cut(v.Rule, ", step ")
		body, ok := sections[title]
		if !ok {
			errs = append(errs, fmt.Errorf("rule %q (first used by %s): the spec has no section %q", v.Rule, v.ID, title))
		} else if step != "" && !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(step)+`\. `).MatchString(body) {
			errs = append(errs, fmt.Errorf("rule %q (first used by %s): section %q has no step %s", v.Rule, v.ID, title, step))
		}
	}

	// The error table: | `code` | condition | close code | HTTP status | retry | `reason` |
	want := map[string]string{}
	for _, c := range protocol.Codes() {
		want[string(c)] = strings.Join([]string{dash(c.CloseCode()), dash(c.HTTPStatus()), map[bool]string{true: "yes", false: "no"}[c.Retryable()], "`" + c.Reason() + "`"}, " | ")
	}
	rows := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| .*? \\| (.*) \\|$").FindAllStringSubmatch(sections["Errors"], -1)
	for _, r := range rows {
		code, cols := r[1], r[2]
		w, ok := want[code]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("error table: %s is not a protocol code", code))
		case cols != w:
			errs = append(errs, fmt.Errorf("error table: %s is | %s |, protocol/errors.go says | %s |", code, cols, w))
		}
		delete(want, code)
	}
	for code := range want {
		errs = append(errs, fmt.Errorf("error table: no row for %s", code))
	}
	return errs
}

func dash(n int) string {
	if n == 0 {
		return "—"
	}
	return strconv.Itoa(n)
}

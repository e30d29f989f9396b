package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strings"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// userError is an error as a person reads it: what went wrong, and in one
// plain sentence what to do about it.
type userError struct {
	what string // what failed, with the names a person needs (file, key id)
	hint string // what to do; may be empty
	err  error  // the cause: its detail is shown after what
}

func (e *userError) Error() string {
	var b strings.Builder
	b.WriteString(e.what)
	if e.err != nil {
		if d := detail(e.err); d != "" {
			b.WriteString(" (")
			b.WriteString(d)
			b.WriteString(")")
		}
	}
	if e.hint != "" {
		b.WriteString(": ")
		b.WriteString(e.hint)
	}
	return b.String()
}

func (e *userError) Unwrap() error { return e.err }

// explain turns any error into the single line printed after "wsproof: ".
func explain(err error) string {
	var ue *userError
	if errors.As(err, &ue) {
		return oneLine(ue.Error())
	}
	if code := protocol.CodeOf(err); code != "" {
		return oneLine(codeLabel(code) + ": " + detail(err))
	}
	return oneLine(detail(err))
}

// detail is the message of a cause, with the spec code named when there is
// one and the package prefixes of library errors removed, which mean
// nothing to a person reading a command's output.
func detail(err error) string {
	msg := err.Error()
	for _, p := range []string{"keys: ", "protocol: ", "server: ", "client: ", "vectorfile: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	// The caller names the file or address; the system error says the rest.
	var pe *fs.PathError
	var oe *net.OpError
	switch {
	case errors.As(err, &pe):
		msg = pe.Err.Error()
	case errors.As(err, &oe) && oe.Err != nil:
		msg = oe.Err.Error()
	}
	if errors.Is(err, keys.ErrInvalidKey) || errors.Is(err, keys.ErrUnknownAlgorithm) {
		msg = string(protocol.CodeBadKey) + ": " + msg
	}
	return msg
}

// codeLabel names a spec error code the way a person meets it: its reason
// text, the code, and the close code or HTTP status it travels as.
func codeLabel(code protocol.Code) string {
	switch {
	case code.CloseCode() != 0:
		return fmt.Sprintf("%s (%s, %d)", code.Reason(), code, code.CloseCode())
	case code.HTTPStatus() != 0:
		return fmt.Sprintf("%s (%s, HTTP %d)", code.Reason(), code, code.HTTPStatus())
	}
	return fmt.Sprintf("%s (%s)", code.Reason(), code)
}

// oneLine folds a message onto one line and strips control characters, so
// that no error can break the one-line-per-error rule or drive a terminal.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)), " ")
	return s
}

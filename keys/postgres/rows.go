package postgres

import (
	"errors"

	"github.com/wsproof/wsproof/keys"
)

// maxEntry bounds the entry column, as the schema does.
const maxEntry = 64 << 10

// row is a row of wsproof_keys, in the column order of selectRows.
type row struct {
	kid, entry, thumbprint, subject string
	revoked                         bool
}

// parse returns the row's entry, or why the row is refused. The entry
// column is the source of truth; the other columns must agree with it, so
// that a hand-made UPDATE of one column (SET revoked = true, say) can
// never leave a key usable under rules other than those its entry states:
// the row is refused, and the key treated as absent, until the row is
// consistent again.
func (rw *row) parse() (*keys.Entry, error) {
	if len(rw.entry) > maxEntry {
		return nil, errors.New("postgres: entry larger than 64 KiB")
	}
	e, err := keys.ParseEntry([]byte(rw.entry))
	switch {
	case err != nil:
		return nil, err
	case e.KeyID != rw.kid:
		return nil, errors.New("postgres: the kid column disagrees with the entry")
	case e.Thumbprint != rw.thumbprint:
		return nil, errors.New("postgres: the thumbprint column disagrees with the entry")
	case e.Subject != rw.subject:
		return nil, errors.New("postgres: the subject column disagrees with the entry")
	case e.Revoked != rw.revoked:
		return nil, errors.New("postgres: the revoked column disagrees with the entry")
	}
	return e, nil
}

// newRow returns the row for e, checked by the rules of keys.ParseEntry: the
// entry stored is exactly what every server will read back.
func newRow(e *keys.Entry) (row, error) {
	c := *e // MarshalEntry fills in the thumbprint: leave the caller's entry alone
	data, err := keys.MarshalEntry(&c)
	if err != nil {
		return row{}, err
	}
	// Read back, so that what is stored is what servers accept: this
	// refuses, for one, an entry holding a private key.
	back, err := keys.ParseEntry(data)
	if err != nil {
		return row{}, err
	}
	return row{kid: back.KeyID, entry: string(data), thumbprint: back.Thumbprint, subject: back.Subject, revoked: back.Revoked}, nil
}

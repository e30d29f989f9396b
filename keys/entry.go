package keys

import (
	"fmt"
)

// Limits on registry entries, spec section "Limits".
const (
	MaxKeyIDLen   = 128
	MaxSubjectLen = 256
	MaxGroups     = 64
	MaxGroupLen   = 128
)

func invalidKey(kid, reason string) error {
	return fmt.Errorf("%w: key %q: %s", ErrInvalidKey, kid, reason)
}

// CheckKeyID enforces the key id rule of spec section "Key registry": 1 to
// MaxKeyIDLen printable ASCII characters (0x21 to 0x7e). Key ids appear in
// logs and on command lines, so nothing else is allowed.
func CheckKeyID(kid string) error {
	if len(kid) == 0 || len(kid) > MaxKeyIDLen {
		return fmt.Errorf("%w: key id of %d bytes, want 1 to %d", ErrInvalidKey, len(kid), MaxKeyIDLen)
	}
	for i := 0; i < len(kid); i++ {
		if kid[i] < 0x21 || kid[i] > 0x7e {
			return fmt.Errorf("%w: key id with a byte outside printable ASCII", ErrInvalidKey)
		}
	}
	return nil
}

// checkEntry applies the registry rules of spec section "Key registry" and
// fills in the thumbprint.
func checkEntry(e *Entry) error {
	if e == nil {
		return fmt.Errorf("%w: nil registry entry", ErrInvalidKey)
	}
	if err := CheckKeyID(e.KeyID); err != nil {
		return err
	}
	if err := CheckKey(e.Algorithm, e.Key); err != nil {
		return fmt.Errorf("keys: key %q: %w", e.KeyID, err)
	}
	if len(e.Subject) == 0 || len(e.Subject) > MaxSubjectLen {
		return invalidKey(e.KeyID, fmt.Sprintf("subject of %d bytes, want 1 to %d", len(e.Subject), MaxSubjectLen))
	}
	if len(e.Groups) > MaxGroups {
		return invalidKey(e.KeyID, fmt.Sprintf("%d groups, want at most %d", len(e.Groups), MaxGroups))
	}
	for _, g := range e.Groups {
		if len(g) == 0 || len(g) > MaxGroupLen {
			return invalidKey(e.KeyID, fmt.Sprintf("group of %d bytes, want 1 to %d", len(g), MaxGroupLen))
		}
	}
	if !e.NotBefore.IsZero() && !e.NotAfter.IsZero() && !e.NotBefore.Before(e.NotAfter) {
		return invalidKey(e.KeyID, "validity window ends before it starts")
	}
	tp, err := thumbprint(e.Key)
	if err != nil {
		return err
	}
	if e.Thumbprint != "" && e.Thumbprint != tp {
		return invalidKey(e.KeyID, "thumbprint does not match the key")
	}
	e.Thumbprint = tp
	return nil
}

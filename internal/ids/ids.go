// Package ids makes and checks the identifiers licet hands out: random IDs
// with a type prefix, secrets, and the slugs that administrators choose.
package ids

import (
	"crypto/rand"
	"encoding/hex"
	"regexp"

	"github.com/licet/licet/errs"
)

// New returns prefix, a dash and 16 random hex digits, e.g. "ord-3f2a…".
func New(prefix string) string {
	return prefix + "-" + hex.EncodeToString(Random(8))
}

// Random returns n random bytes.
func Random(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return b
}

var slugRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// CheckSlug checks an administrator-chosen identifier such as a product or
// customer ID; field names the flag or JSON field for the error message.
func CheckSlug(field, v string) error {
	if !slugRE.MatchString(v) {
		return errs.E(errs.Invalid, "%s %q is not valid: use 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", field, v)
	}
	return nil
}

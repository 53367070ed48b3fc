package licenseserver

import (
	"strings"
	"testing"

	"github.com/licet/licet/errs"
)

func TestCheckSystemID(t *testing.T) {
	for _, id := range []string{"", "sys-0011223344556677", "host:42", "A.b_c-9", strings.Repeat("x", MaxSystemIDLen)} {
		if err := checkSystemID(id); err != nil {
			t.Errorf("checkSystemID(%q): %v", id, err)
		}
	}
	for _, id := range []string{"sys 1", "a/b", "x\x00", "ü", strings.Repeat("x", MaxSystemIDLen+1)} {
		if err := checkSystemID(id); !errs.Is(err, errs.Invalid) {
			t.Errorf("checkSystemID(%q) = %v, want an Invalid error", id, err)
		}
	}
}

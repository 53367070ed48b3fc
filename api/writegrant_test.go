package api

import (
	"net/http/httptest"
	"testing"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/licensing/licenseserver"
)

// writeGrant writes the bytes and headers writeJSON writes for the same
// answer: for armored licenses, and for licenses with bytes JSON escapes
// (which go through writeJSON).
func TestWriteGrantIsWriteJSON(t *testing.T) {
	armored := string(armor.Encode(armor.Block{Type: armor.TypeLicense, Version: 1, Body: make([]byte, 5000)}))
	for _, license := range []string{
		armored, "", "no newline", "\n\n", "a\nb\n",
		"quote \" here", "back\\slash", "<html>", "a & b", "tab\there", "del \x7f", "caf\u00e9", "bad \xff utf-8", "\u2028",
	} {
		for _, flags := range [][2]bool{{false, false}, {true, false}, {false, true}} {
			g := &licenseserver.Grant{Assignment: &licenseserver.Assignment{LicenseID: 1 << 40, Temporary: flags[1]}, Reissued: flags[0], File: []byte(license)}
			got, want := httptest.NewRecorder(), httptest.NewRecorder()
			writeGrant(got, g)
			writeJSON(want, 200, GrantResponse{LicenseID: g.Assignment.LicenseID, Reissued: g.Reissued, Temporary: g.Assignment.Temporary, License: license})
			if got.Body.String() != want.Body.String() || got.Code != want.Code ||
				got.Header().Get("Content-Length") != want.Header().Get("Content-Length") || got.Header().Get("Content-Type") != want.Header().Get("Content-Type") {
				t.Fatalf("license %.40q %v: writeGrant wrote %d %v\n%.200q\nwriteJSON %d %v\n%.200q", license, flags,
					got.Code, got.Header(), got.Body.String(), want.Code, want.Header(), want.Body.String())
			}
		}
	}
}

package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/licensing/licenseserver"
)

// fuzzBodyLimit is the size limit FuzzReadJSON puts on request bodies, as
// the server's plumbing does (smaller, so that the fuzzer reaches it).
const fuzzBodyLimit = 512

// FuzzReadJSON feeds arbitrary request bodies to readJSON, for several of
// the request types the routes decode: it must not panic; a body it refuses
// is an error of kind Invalid (or TooLarge, for a body over the limit); a
// body it accepts re-encodes to JSON that readJSON accepts again and that
// re-encodes to the same bytes.
func FuzzReadJSON(f *testing.F) {
	valid := []any{
		licenseserver.ChallengeRequest{SoftwareID: 0x01020304, ProductID: "app", ClientKey: bytes.Repeat([]byte{1}, 32)},
		licenseserver.GrantRequest{ChallengeID: "ch-AAAA", Answer: []byte{1, 2, 3}, ClientKey: bytes.Repeat([]byte{2}, 32),
			ClientHPKEKey: []byte{3}, SystemID: "sys-0123456789abcdef", ProductID: "app", Signature: bytes.Repeat([]byte{4}, 64)},
		UpgradeRequest{License: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"},
		ReleaseRequest{Version: "2.1"},
		clearinghouse.Product{},
	}
	for i, v := range valid {
		b, err := json.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), b)
	}
	f.Add(uint8(0), []byte(`{"software_id": -1}`))
	f.Add(uint8(0), []byte(`{"software_id": 1e3, "product_id": "\ud800"}`))
	f.Add(uint8(1), []byte(`{"answer": "!!", "unknown": 1}`))
	f.Add(uint8(2), []byte(`{"license": "x"} trailing`))
	f.Add(uint8(3), []byte(`[`))
	f.Add(uint8(3), []byte(`null`))
	f.Add(uint8(4), bytes.Repeat([]byte(`[`), 2*fuzzBodyLimit))
	f.Add(uint8(1), []byte(`{"product_id": "`+string(bytes.Repeat([]byte("a"), fuzzBodyLimit))+`"}`))
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		var v, again any
		switch which % 5 {
		case 0:
			v, again = new(licenseserver.ChallengeRequest), new(licenseserver.ChallengeRequest)
		case 1:
			v, again = new(licenseserver.GrantRequest), new(licenseserver.GrantRequest)
		case 2:
			v, again = new(UpgradeRequest), new(UpgradeRequest)
		case 3:
			v, again = new(ReleaseRequest), new(ReleaseRequest)
		default:
			v, again = new(clearinghouse.Product), new(clearinghouse.Product)
		}
		read := func(b []byte, into any) error {
			r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(b))
			r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, fuzzBodyLimit)
			return readJSON(r, into)
		}
		if err := read(body, v); err != nil {
			switch k := errs.KindOf(err); {
			case k == errs.Invalid:
			case k == errs.TooLarge && len(body) > fuzzBodyLimit:
			default:
				t.Fatalf("readJSON(%q) refused it with an error of kind %s: %v", body, k, err)
			}
			return
		}
		enc, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("readJSON(%q) gave %+v, which does not encode: %v", body, v, err)
		}
		if len(enc) > fuzzBodyLimit {
			return // the re-encoding (escaped) no longer fits the limit
		}
		if err := read(enc, again); err != nil {
			t.Fatalf("readJSON(%q) gave %+v, whose encoding %q it refuses: %v", body, v, enc, err)
		}
		enc2, err := json.Marshal(again)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("readJSON(%q): the encoding %q reads back as %q (%v)", body, enc, enc2, err)
		}
	})
}

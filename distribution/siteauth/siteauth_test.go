package siteauth

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/testpki"
	"github.com/licet/licet/pki"
)

var now = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// TestRequest: a signed request verifies and names the site's customer; a
// changed body, path or time, another vendor's root and a stale clock are
// refused.
func TestRequest(t *testing.T) {
	root := testpki.Root(t, "Vendor", now)
	iss := testpki.Issuing(t, root, now)
	site := testpki.Site(t, iss, "site-1", "acme", now)
	chain := [][]byte{site.Cert.Raw, iss.Cert.Raw}
	sign := func(method, url string, body []byte, at time.Time) *http.Request {
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		Sign(req, body, site.Signer, chain, at)
		return req
	}
	body := []byte(`[{"status":"installed"}]`)
	got, err := Verify(sign("POST", "http://v/v1/dist/reports", body, now), body, root.Cert, now)
	if err != nil || got.CustomerID != "acme" {
		t.Fatalf("verify: %v %+v", err, got)
	}
	other := testpki.Root(t, "Other", now)
	for name, tc := range map[string]struct {
		req  *http.Request
		body []byte
		root *pki.Authority
		at   time.Time
	}{
		"changed body": {sign("POST", "http://v/v1/dist/reports", body, now), []byte(`[]`), root, now},
		"stale clock":  {sign("POST", "http://v/v1/dist/reports", body, now.Add(-10*time.Minute)), body, root, now},
		"other root":   {sign("POST", "http://v/v1/dist/reports", body, now), body, other, now},
	} {
		rootCert := tc.root.Cert
		if _, err := Verify(tc.req, tc.body, rootCert, tc.at); !errs.Is(err, errs.Unauthenticated) {
			t.Errorf("%s: %v, want Unauthenticated", name, err)
		}
	}
	req := sign("GET", "http://v/v1/dist/blobs/aa", nil, now)
	req.URL.Path = "/v1/dist/blobs/bb"
	if _, err := Verify(req, nil, root.Cert, now); !errs.Is(err, errs.Unauthenticated) {
		t.Errorf("changed path: %v", err)
	}
	if _, err := Verify(&http.Request{Header: http.Header{}}, nil, root.Cert, now); !errs.Is(err, errs.Unauthenticated) {
		t.Errorf("unsigned: %v", err)
	}
}

// TestFile: a signed file verifies; a payload altered and re-armored (so
// its checksum matches) fails the signature.
func TestFile(t *testing.T) {
	root := testpki.Root(t, "Vendor", now)
	iss := testpki.Issuing(t, root, now)
	site := testpki.Site(t, iss, "site-1", "acme", now)
	file := SignFile([]byte(`[{"status":"installed"}]`), site.Signer, [][]byte{site.Cert.Raw, iss.Cert.Raw})
	s, payload, err := VerifyFile(file, root.Cert, now)
	if err != nil || s.CustomerID != "acme" || string(payload) != `[{"status":"installed"}]` {
		t.Fatalf("verify file: %v %q", err, payload)
	}
	blk, _ := armor.Decode(file, FileType)
	var f signedFile
	json.Unmarshal(blk.Body, &f)
	f.Payload = []byte(`[{"status":"failed"}]`)
	body, _ := json.Marshal(f)
	forged := armor.Encode(armor.Block{Type: FileType, Version: 1, Body: body})
	if _, _, err := VerifyFile(forged, root.Cert, now); !errs.Is(err, errs.Invalid) {
		t.Fatalf("altered payload: %v, want Invalid", err)
	}
}

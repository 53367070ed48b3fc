package verify_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/licet/licet/envelope"
	"github.com/licet/licet/internal/testpki"
	"github.com/licet/licet/verify"
)

// FuzzParseRevocations feeds arbitrary revocation lists (what a gateway
// reads from a file or the vendor's URL) to ParseRevocations: it must not
// panic; a list it refuses is an error wrapping one of the package's
// errors, with no list; a list it accepts is the one the test's
// clearinghouse signed (a fuzzer cannot forge another), fresh at the time.
func FuzzParseRevocations(f *testing.F) {
	root := testpki.Root(f, "Acme", epoch.Add(-24*time.Hour))
	rootV, err := verify.New(root.Cert.Raw)
	if err != nil {
		f.Fatal(err)
	}
	ch := testpki.Clearinghouse(f, root, epoch.Add(-24*time.Hour))
	site := testpki.Site(f, root, "Acme Site", "cust-1", epoch.Add(-24*time.Hour))
	l := &verify.Revocations{Vendor: "Acme", Number: 1, Issued: epoch.Add(-time.Hour), NextUpdate: epoch.Add(7 * 24 * time.Hour),
		Sites: []verify.RevokedSite{{SiteID: site.Cert.Subject.SerialNumber, CustomerID: "cust-1", Revoked: epoch.Add(-2 * time.Hour), Reason: "test"}}}
	s, err := envelope.Sign(verify.RevokedSitesType, verify.RevokedSitesVersion, l, ch.Signer, [][]byte{ch.Cert.Raw})
	if err != nil {
		f.Fatal(err)
	}
	valid := s.Marshal()
	if _, err := rootV.ParseRevocations(valid, epoch); err != nil {
		f.Fatalf("the valid seed is refused: %v", err)
	}
	f.Add(valid)
	f.Add(bytes.Replace(valid, []byte(`"version":1`), []byte(`"version":2`), 1))
	f.Add(bytes.Replace(valid, []byte(verify.RevokedSitesType), []byte(verify.StatementType), 1))
	f.Add(valid[:len(valid)/2])
	f.Add([]byte(`{"type":"licet.revoked-sites","version":1,"payload":"e30=","signatures":[],"certificates":[]}`))
	f.Add([]byte{})
	known := []error{verify.ErrMalformed, verify.ErrBadSignature, verify.ErrUntrustedSite, verify.ErrStaleRevocations, verify.ErrExpired, verify.ErrNotYetValid}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := rootV.ParseRevocations(raw, epoch)
		if err != nil {
			if got != nil {
				t.Fatalf("ParseRevocations returned a list with the error %v", err)
			}
			for _, k := range known {
				if errors.Is(err, k) {
					return
				}
			}
			t.Fatalf("ParseRevocations refused with an error of no known kind: %v", err)
		}
		if got.Number != l.Number || !got.Issued.Equal(l.Issued) || !got.NextUpdate.Equal(l.NextUpdate) || len(got.Sites) != 1 ||
			got.Lookup(site.Cert.Subject.SerialNumber) == nil {
			b, _ := json.Marshal(got)
			t.Fatalf("ParseRevocations accepted a list the clearinghouse never signed: %s", b)
		}
	})
}

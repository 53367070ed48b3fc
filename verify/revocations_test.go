package verify_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/licet/licet/envelope"
	"github.com/licet/licet/internal/testpki"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/verify"
)

// signList signs a revocation list as the vendor's clearinghouse ch does
// (type and version given, so that tests can relabel them).
func signList(t *testing.T, ch *pki.Authority, typ string, version int, l *verify.Revocations) []byte {
	t.Helper()
	s, err := envelope.Sign(typ, version, l, ch.Signer, [][]byte{ch.Cert.Raw})
	if err != nil {
		t.Fatal(err)
	}
	return s.Marshal()
}

// revokedList lists site as revoked, issued at epoch, next update a week later.
func revokedList(site *pki.Authority) *verify.Revocations {
	return &verify.Revocations{Vendor: "Acme", Number: 1, Issued: epoch.Add(-time.Hour), NextUpdate: epoch.Add(7 * 24 * time.Hour),
		Sites: []verify.RevokedSite{{SiteID: site.Cert.Subject.SerialNumber, CustomerID: "cust-1", Revoked: epoch.Add(-2 * time.Hour), Reason: "duplicate serials"}}}
}

// TestRevokedSite: with the vendor's list, a license of a revoked site fails
// with ErrRevokedSite, at once and from the cache of verified sites alike;
// without the list, or with a list that does not name the site, it passes.
func TestRevokedSite(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	ch := testpki.Clearinghouse(t, f.root, epoch.Add(-24*time.Hour))
	raw := signList(t, ch, verify.RevokedSitesType, verify.RevokedSitesVersion, revokedList(f.site))
	l, err := v.ParseRevocations(raw, epoch)
	if err != nil {
		t.Fatalf("ParseRevocations: %v", err)
	}
	if _, err := v.Verify(f.licPEM, verify.Options{Now: epoch}); err != nil {
		t.Fatalf("without the list: %v", err)
	}
	_, err = v.Verify(f.licPEM, verify.Options{Now: epoch, Revocations: l})
	if !errors.Is(err, verify.ErrRevokedSite) {
		t.Fatalf("license of a revoked site: %v, want ErrRevokedSite", err)
	}
	other := revokedList(newSite(t, f.root, "Globex"))
	lo, err := v.ParseRevocations(signList(t, ch, verify.RevokedSitesType, 1, other), epoch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(f.licPEM, verify.Options{Now: epoch, Revocations: lo}); err != nil {
		t.Fatalf("list of another site: %v", err)
	}
}

// TestStaleRevocations: a list past its next update plus RevocationGrace (or
// issued in the future) is refused when parsed, and a list that goes stale
// while in use fails every verification with ErrStaleRevocations instead of
// passing licenses of sites revoked since.
func TestStaleRevocations(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	ch := testpki.Clearinghouse(t, f.root, epoch.Add(-24*time.Hour))
	other := revokedList(newSite(t, f.root, "Globex"))
	raw := signList(t, ch, verify.RevokedSitesType, 1, other)
	l, err := v.ParseRevocations(raw, epoch)
	if err != nil {
		t.Fatal(err)
	}
	justUsable := other.NextUpdate.Add(verify.RevocationGrace - time.Second)
	if _, err := v.ParseRevocations(raw, justUsable); err != nil {
		t.Fatalf("list within the grace after its next update: %v", err)
	}
	for name, at := range map[string]time.Time{
		"past next update and grace": other.NextUpdate.Add(verify.RevocationGrace),
		"issued in the future":       other.Issued.Add(-time.Hour),
	} {
		if _, err := v.ParseRevocations(raw, at); !errors.Is(err, verify.ErrStaleRevocations) {
			t.Errorf("%s: ParseRevocations = %v, want ErrStaleRevocations", name, err)
		}
	}
	late := other.NextUpdate.Add(verify.RevocationGrace + time.Minute)
	_, err = v.Verify(f.licPEM, verify.Options{Now: epoch, Revocations: l})
	if err != nil {
		t.Fatalf("fresh list: %v", err)
	}
	// The license itself is still valid then (60 days): only the list is stale.
	_, err = v.VerifyChain([][]byte{f.licDER, f.site.Cert.Raw}, verify.Options{Now: late, Revocations: l})
	if !errors.Is(err, verify.ErrStaleRevocations) {
		t.Fatalf("stale list in use: %v, want ErrStaleRevocations", err)
	}
	if err := l.Check("site-x", late); !errors.Is(err, verify.ErrStaleRevocations) {
		t.Fatalf("Check with a stale list: %v", err)
	}
}

// TestForgedRevocations: a list signed by anyone but this vendor's
// clearinghouse (another vendor's, the site's own key), altered after
// signing, or relabelled with another type or format version, is refused.
func TestForgedRevocations(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	ch := testpki.Clearinghouse(t, f.root, epoch.Add(-24*time.Hour))
	l := revokedList(f.site)
	good := signList(t, ch, verify.RevokedSitesType, 1, l)

	otherRoot := newRoot(t, "Initech")
	otherCH := testpki.Clearinghouse(t, otherRoot, epoch.Add(-24*time.Hour))
	if _, err := v.ParseRevocations(signList(t, otherCH, verify.RevokedSitesType, 1, l), epoch); !errors.Is(err, verify.ErrUntrustedSite) {
		t.Errorf("another vendor's list: %v, want ErrUntrustedSite", err)
	}
	if _, err := v.ParseRevocations(signList(t, f.site, verify.RevokedSitesType, 1, l), epoch); !errors.Is(err, verify.ErrUntrustedSite) {
		t.Errorf("a list signed by a site: %v, want ErrUntrustedSite", err)
	}

	var env envelope.Signed
	if err := json.Unmarshal(good, &env); err != nil {
		t.Fatal(err)
	}
	empty := *l
	empty.Sites, empty.Number = []verify.RevokedSite{}, 0
	tampered := env
	tampered.Payload, _ = json.Marshal(&empty)
	if _, err := v.ParseRevocations(tampered.Marshal(), epoch); !errors.Is(err, verify.ErrBadSignature) {
		t.Errorf("list emptied after signing: %v, want ErrBadSignature", err)
	}
	relabelled := env
	relabelled.Version = 2
	if _, err := v.ParseRevocations(relabelled.Marshal(), epoch); err == nil {
		t.Error("a version 1 list relabelled version 2 was accepted")
	}
	retyped := env
	retyped.Type = verify.StatementType
	if _, err := v.ParseRevocations(retyped.Marshal(), epoch); !errors.Is(err, verify.ErrMalformed) {
		t.Errorf("a list relabelled as a pack statement: %v, want ErrMalformed", err)
	}
	// A signature made for version 2 does not verify as version 1 (the
	// version is inside the signed message).
	v2 := signList(t, ch, verify.RevokedSitesType, 2, l)
	var e2 envelope.Signed
	if err := json.Unmarshal(v2, &e2); err != nil {
		t.Fatal(err)
	}
	e2.Version = 1
	if _, err := v.ParseRevocations(e2.Marshal(), epoch); !errors.Is(err, verify.ErrBadSignature) {
		t.Errorf("a version 2 signature relabelled version 1: %v, want ErrBadSignature", err)
	}
}

package verify_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/licet/licet/internal/testpki"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/verify"
)

// soldPack is the statement of a pack of 10 seats (serials 500-509, 2
// temporary licenses 510-511 of at most 14 days) of acme-cad 4.2 with the
// features render and export, sold to site, expiring 90 days after epoch.
func soldPack(site *pki.Authority) *verify.Statement {
	exp := epoch.Add(90 * 24 * time.Hour)
	return &verify.Statement{
		PackID: "pack-7", SiteID: site.Cert.Subject.SerialNumber, CustomerID: "cust-1", ProductID: "acme-cad", ProductVersion: "4.2",
		Platform: "linux-amd64", Features: []string{"render", "export"}, BeginSerial: 500, Quantity: 10, Expires: &exp,
		Temporary: &verify.TemporaryAllowance{Count: 2, MaxDays: 14, BeginSerial: 510},
	}
}

// TestLicenseBoundToSale: a license that the site signs with its own key
// outside what the clearinghouse sold (another product, a feature never
// sold, a serial outside the range, beyond the pack's expiry, a temporary
// license beyond the allowance, another site's pack) fails offline with
// ErrNotSold; one inside it passes.
func TestLicenseBoundToSale(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	ch := testpki.Clearinghouse(t, f.root, epoch.Add(-24*time.Hour))
	statement := testpki.SignStatement(t, ch, soldPack(f.site))
	other := newSite(t, f.root, "Globex")
	otherStatement := testpki.SignStatement(t, ch, soldPack(other))

	base := func() verify.Attributes {
		return verify.Attributes{LicenseID: 503, PackID: "pack-7", ProductID: "acme-cad", ProductVersion: "4.2",
			Platform: "linux-amd64", Features: []string{"render"}, PackStatement: statement}
	}
	issue := func(a verify.Attributes, days int) []byte {
		t.Helper()
		der, err := license.Issue(f.site, f.clientPub, a, epoch.Add(-5*time.Minute), epoch.Add(time.Duration(days)*24*time.Hour-5*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	check := func(der []byte, product string) error {
		_, err := v.VerifyChain([][]byte{der, f.site.Cert.Raw}, verify.Options{Now: epoch, Product: product, AllowUnbound: true})
		return err
	}
	if err := check(issue(base(), 30), "acme-cad"); err != nil {
		t.Fatalf("license inside the pack: %v", err)
	}
	tmp := base()
	tmp.LicenseID, tmp.Flags = 511, verify.FlagTemporary
	if err := check(issue(tmp, 14), "acme-cad"); err != nil {
		t.Fatalf("temporary license inside the allowance: %v", err)
	}

	for name, tc := range map[string]struct {
		mod  func(*verify.Attributes)
		days int
	}{
		"product never sold":             {func(a *verify.Attributes) { a.ProductID = "acme-cam" }, 30},
		"feature everything":             {func(a *verify.Attributes) { a.Features = []string{"render", "everything"} }, 30},
		"another version":                {func(a *verify.Attributes) { a.ProductVersion = "5.0" }, 30},
		"another platform":               {func(a *verify.Attributes) { a.Platform = "windows" }, 30},
		"serial below the range":         {func(a *verify.Attributes) { a.LicenseID = 499 }, 30},
		"serial above the range":         {func(a *verify.Attributes) { a.LicenseID = 510 }, 30},
		"beyond the pack's expiry":       {func(a *verify.Attributes) {}, 365},
		"another pack ID":                {func(a *verify.Attributes) { a.PackID = "pack-8" }, 30},
		"another site's pack":            {func(a *verify.Attributes) { a.PackStatement = otherStatement }, 30},
		"temporary from the seat range":  {func(a *verify.Attributes) { a.Flags = verify.FlagTemporary }, 14},
		"temporary above its allowance":  {func(a *verify.Attributes) { a.Flags, a.LicenseID = verify.FlagTemporary, 512 }, 14},
		"temporary longer than allowed":  {func(a *verify.Attributes) { a.Flags, a.LicenseID = verify.FlagTemporary, 510 }, 20},
		"upgrade from a pack of seats":   {func(a *verify.Attributes) { a.Flags = verify.FlagUpgraded }, 30},
		"seat serial of the temporaries": {func(a *verify.Attributes) { a.LicenseID = 511 }, 30},
	} {
		a := base()
		tc.mod(&a)
		err := check(issue(a, tc.days), "")
		if !errors.Is(err, verify.ErrNotSold) {
			t.Errorf("%s: got %v, want ErrNotSold", name, err)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
}

// TestStatementSigner: the statement must be signed by a clearinghouse the
// root certified directly: not by another vendor's, not by a certificate the
// site (itself a CA) made for its own key, not altered.
func TestStatementSigner(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	issue := func(statement []byte) error {
		t.Helper()
		a := testAttrs()
		a.PackStatement = statement
		der, err := license.Issue(f.site, f.clientPub, a, epoch.Add(-time.Hour), epoch.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.VerifyChain([][]byte{der, f.site.Cert.Raw}, verify.Options{Now: epoch})
		return err
	}
	st := testpki.StatementFor(f.site, testAttrs(), nil, 60)

	otherRoot := newRoot(t, "Initech")
	if err := issue(testpki.SignStatement(t, testpki.Clearinghouse(t, otherRoot, epoch.Add(-24*time.Hour)), st)); !errors.Is(err, verify.ErrNotSold) {
		t.Errorf("another vendor's clearinghouse: %v, want ErrNotSold", err)
	}

	// The site certifies a "clearinghouse" key of its own.
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, err := f.site.IssueClearinghouse(pub, "Acme", epoch.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	fake, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	signer := keys.NewSigner(priv)
	if err := issue(testpki.SignStatement(t, &pki.Authority{Cert: fake, Signer: signer}, st)); !errors.Is(err, verify.ErrNotSold) {
		t.Errorf("clearinghouse certificate made by the site: %v, want ErrNotSold", err)
	}

	// A genuine statement with its payload changed.
	ch := testpki.Clearinghouse(t, f.root, epoch.Add(-24*time.Hour))
	good := testpki.SignStatement(t, ch, st)
	var env map[string]any
	if err := json.Unmarshal(good, &env); err != nil {
		t.Fatal(err)
	}
	wide := *st
	wide.Quantity = 1000
	payload, _ := json.Marshal(wide)
	env["payload"] = payload
	altered, _ := json.Marshal(env)
	if err := issue(altered); !errors.Is(err, verify.ErrBadSignature) {
		t.Errorf("altered statement: %v, want ErrBadSignature", err)
	}
	if err := issue(good); err != nil {
		t.Errorf("genuine statement: %v", err)
	}
}

// TestUnboundLicense: a license without a pack statement (from a license
// server older than statements, or made with the site key alone) is refused
// by default and accepted only with AllowUnbound.
func TestUnboundLicense(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	der, err := license.Issue(f.site, f.clientPub, testAttrs(), epoch.Add(-time.Hour), epoch.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	chain := [][]byte{der, f.site.Cert.Raw}
	if _, err := v.VerifyChain(chain, verify.Options{Now: epoch}); !errors.Is(err, verify.ErrNotSold) {
		t.Fatalf("unbound license by default: %v, want ErrNotSold", err)
	}
	lic, err := v.VerifyChain(chain, verify.Options{Now: epoch, AllowUnbound: true})
	if err != nil {
		t.Fatalf("unbound license with AllowUnbound: %v", err)
	}
	if lic.Statement != nil {
		t.Error("an unbound license reports a statement")
	}
	bound, err := v.Verify(f.licPEM, verify.Options{Now: epoch})
	if err != nil {
		t.Fatal(err)
	}
	if bound.Statement == nil || bound.Statement.PackID != "pack-7" || bound.CustomerID != "cust-1" {
		t.Errorf("bound license: statement %+v, customer %q", bound.Statement, bound.CustomerID)
	}
}

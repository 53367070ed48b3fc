package licenseserver_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/envelope"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/licensing/clientimage"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/store"
	"github.com/licet/licet/verify"
)

// newVendor makes a vendor (root and clearinghouse) with product app and
// customer acme in a directory of its own.
func newVendor(t *testing.T) *clearinghouse.Service {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "vendor")
	_, err := clearinghouse.Init(ctx, dir, "Checks", "", store.OpenVendor)
	must(t, err)
	vs, err := clearinghouse.Open(ctx, dir, "", store.OpenVendor)
	must(t, err)
	t.Cleanup(func() { vs.Close() })
	must(t, vs.AddProduct(ctx, &clearinghouse.Product{ID: "app", Version: "1.0"}))
	must(t, vs.AddCustomer(ctx, &clearinghouse.Customer{ID: "acme"}))
	return vs
}

// enrolledSite makes a site certified by vs, without packs or images.
func enrolledSite(t *testing.T, vs *clearinghouse.Service) *licenseserver.Server {
	t.Helper()
	ctx := context.Background()
	code, _, err := vs.CreateEnrollment(ctx, "acme")
	must(t, err)
	id, _, err := licenseserver.Init(ctx, filepath.Join(t.TempDir(), "site"), licenseserver.InitOptions{
		Enroll: func(ctx context.Context, req []byte) ([]byte, error) {
			chain, err := vs.EnrollSite(ctx, code, mustDecode(t, req))
			return licenseserver.EncodeCertificate(chain), err
		}}, store.OpenSite)
	must(t, err)
	st, err := id.OpenStore(ctx, "", store.OpenSite)
	must(t, err)
	t.Cleanup(func() { st.Close() })
	return &licenseserver.Server{ID: id, Store: st, Now: time.Now}
}

// TestGrantSignatureChecked: a grant request with the challenged client key
// (so the challenge opens) but not signed by that key, or changed after
// signing, is refused by the signature check itself.
func TestGrantSignatureChecked(t *testing.T) {
	srv, sid, image := newSite(t, 10)
	sig, dec := newClient(t)
	other, _ := newClient(t)
	ctx := context.Background()
	for name, forge := range map[string]func(r *licenseserver.GrantRequest){
		"signed by another key": func(r *licenseserver.GrantRequest) { r.Signature = other.Sign(licenseserver.GrantMessage(r)) },
		"no signature":          func(r *licenseserver.GrantRequest) { r.Signature = nil },
		"system ID changed":     func(r *licenseserver.GrantRequest) { r.SystemID = "sys-other" },
		"HPKE key changed": func(r *licenseserver.GrantRequest) {
			d, _ := keys.GenerateDecrypter()
			r.ClientHPKEKey = d.PublicBytes()
		},
	} {
		req := grantRequest(t, srv, sid, image, nil, sig, dec)
		forge(req)
		_, err := srv.Grant(ctx, req)
		refused(t, err, "not signed by the client key", name)
	}
	if _, err := srv.Grant(ctx, grantRequest(t, srv, sid, image, nil, sig, dec)); err != nil {
		t.Fatalf("a properly signed request: %v", err)
	}
}

// TestChallengeExpiry: a right answer after the challenge's two minutes is
// refused, and a fresh challenge then succeeds.
func TestChallengeExpiry(t *testing.T) {
	srv, sid, image := newSite(t, 10)
	sig, dec := newClient(t)
	ctx := context.Background()
	req := grantRequest(t, srv, sid, image, nil, sig, dec)
	srv.Now = func() time.Time { return time.Now().Add(licenseserver.ChallengeTTL + time.Second) }
	_, err := srv.Grant(ctx, req)
	refused(t, err, "challenge expired", "an answer after the challenge expired")
	srv.Now = func() time.Time { return time.Now().Add(licenseserver.ChallengeTTL - 5*time.Second) }
	if _, err := srv.Grant(ctx, req); err != nil {
		t.Fatalf("the same answer just before expiry: %v", err)
	}
}

// TestUpgradeOfSiblingSiteLicense: a site refuses to upgrade a license that
// a sibling site of the same vendor issued, although it verifies against
// the same root.
func TestUpgradeOfSiblingSiteLicense(t *testing.T) {
	vs := newVendor(t)
	a, b := enrolledSite(t, vs), enrolledSite(t, vs)
	client, _ := newClient(t)
	siteB := &pki.Authority{Cert: mustCert(t, b.ID.SiteChain()[0]), Signer: b.ID.Signer}
	now := time.Now()
	der, err := license.Issue(siteB, client.Public(), verify.Attributes{LicenseID: 5, PackID: "pk-b", ProductID: "app", ProductVersion: "1.0", Platform: "non-windows"},
		now.Add(-48*time.Hour), now.Add(-time.Hour))
	must(t, err)
	// The license file as site B writes it: the license, then B's chain
	// without the root.
	file := license.EncodePEM(append([][]byte{der}, b.ID.SiteChain()...))
	v, err := a.Verifier()
	must(t, err)
	if _, err := v.Verify(file, verify.Options{Now: now, AllowExpired: true, AllowUnbound: true}); err != nil {
		t.Fatalf("the sibling's license does not verify at site A, so the test would not isolate the issuer check: %v", err)
	}
	_, err = a.Upgrade(context.Background(), file)
	if !errs.Is(err, errs.Forbidden) || !strings.Contains(err.Error(), "not by this one") {
		t.Fatalf("upgrade of a sibling site's license: got %v, want a Forbidden error saying it was issued elsewhere", err)
	}
}

func mustCert(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	must(t, err)
	return c
}

// TestAddImageChecks: site image add refuses an image that does not match
// its signature, a signature file changed after signing, and a signature by
// another vendor's clearinghouse.
func TestAddImageChecks(t *testing.T) {
	vs := newVendor(t)
	srv := enrolledSite(t, vs)
	ctx := context.Background()
	image := bytes.Repeat([]byte("licet client image "), 1000)
	sum, size, err := clientimage.Hash(bytes.NewReader(image))
	must(t, err)
	m := &clientimage.Manifest{SoftwareID: 0x20010001, Name: "app", SHA256: sum, Size: size}
	sigFile, err := clientimage.Sign(m, vs.Clearinghouse, vs.ClearinghouseChain)
	must(t, err)
	wantInvalid := func(what string, err error, substr string) {
		t.Helper()
		if err == nil || !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), substr) {
			t.Fatalf("%s: got %v, want an invalid error saying %q", what, err, substr)
		}
	}

	changed := bytes.Clone(image)
	changed[len(changed)/2] ^= 1
	_, err = srv.AddImage(ctx, sigFile, bytes.NewReader(changed))
	wantInvalid("an image changed by one bit", err, "does not match its signature")
	_, err = srv.AddImage(ctx, sigFile, bytes.NewReader(append(bytes.Clone(image), 0)))
	wantInvalid("an image one byte longer", err, "does not match its signature")

	// The signature file with its manifest changed to the changed image's hash.
	blk, err := armor.Decode(sigFile, armor.TypeImageSignature)
	must(t, err)
	sd, err := envelope.ParseSigned(blk.Body, clientimage.Type, clientimage.Version)
	must(t, err)
	csum, _, _ := clientimage.Hash(bytes.NewReader(changed))
	sd.Payload = bytes.Replace(sd.Payload, []byte(sum), []byte(csum), 1)
	tampered := armor.Encode(armor.Block{Type: armor.TypeImageSignature, Version: blk.Version, Body: sd.Marshal()})
	_, err = srv.AddImage(ctx, tampered, bytes.NewReader(changed))
	wantInvalid("a tampered signature file", err, "does not verify")

	// Signed by another vendor's clearinghouse, with its certificate.
	other := newVendor(t)
	foreign, err := clientimage.Sign(m, other.Clearinghouse, other.ClearinghouseChain)
	must(t, err)
	_, err = srv.AddImage(ctx, foreign, bytes.NewReader(image))
	wantInvalid("a signature by another vendor's clearinghouse", err, "not by this vendor's clearinghouse")
	// Another vendor's key presented with this vendor's certificate.
	forged, err := clientimage.Sign(m, other.Clearinghouse, vs.ClearinghouseChain)
	must(t, err)
	_, err = srv.AddImage(ctx, forged, bytes.NewReader(image))
	wantInvalid("another clearinghouse key with this vendor's certificate", err, "is not signed by key")

	if _, err := srv.AddImage(ctx, sigFile, bytes.NewReader(image)); err != nil {
		t.Fatalf("the image with its own signature: %v", err)
	}
}

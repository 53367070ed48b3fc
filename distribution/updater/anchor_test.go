package updater_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/distribution/catalog"
	"github.com/licet/licet/distribution/disttest"
	"github.com/licet/licet/distribution/tufmeta"
	"github.com/licet/licet/distribution/updater"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/pki"
)

// export returns the vendor's export file for acme.
func (w *world) export() []byte {
	w.T.Helper()
	var buf bytes.Buffer
	if err := w.Cat.Export(w.T.Context(), "acme", 30*24*time.Hour, &buf); err != nil {
		w.T.Fatal(err)
	}
	return buf.Bytes()
}

// TestAnchorForgedDistributionKey: root metadata anchored by a distribution
// key that another vendor's root certified, or that a site certified (a CA
// under the issuing CA, as every customer's site is), or the issuing CA
// itself, is refused by the site on import and by a device at init; the
// genuine distribution key's anchor is accepted by both.
func TestAnchorForgedDistributionKey(t *testing.T) {
	w := newWorld(t)
	w.Bundle("g1", w.Release("1.0", script("one")))
	now := w.Now

	// A customer's site under the vendor's issuing CA.
	ik, _ := keys.GenerateSigner()
	issDER, err := w.RootAuth.IssueIssuing(ik.Public(), "Vendor", now)
	if err != nil {
		t.Fatal(err)
	}
	issuing := authority(t, issDER, ik)
	sk, _ := keys.GenerateSigner()
	hk, _ := keys.GenerateDecrypter()
	csr, _ := pki.NewSiteRequest(sk, hk.PublicBytes(), "acme-site")
	req, err := pki.ParseSiteRequest(csr)
	if err != nil {
		t.Fatal(err)
	}
	siteDER, err := issuing.CertifySite(req, "acme", now)
	if err != nil {
		t.Fatal(err)
	}
	site := authority(t, siteDER, sk)
	_, otherDist := disttest.NewVendor(t, "Other", now)

	genuine := w.Cat.Anchor
	for _, c := range []struct {
		what string
		dist *pki.Authority
		rest [][]byte // certificates after the distribution certificate
	}{
		{"a distribution key certified by another vendor's root", otherDist, nil},
		{"a distribution key certified by a site", disttest.Issue(t, site, now), [][]byte{siteDER, issDER}},
		{"a distribution key certified by the issuing CA", disttest.Issue(t, issuing, now), [][]byte{issDER}},
	} {
		t.Run(c.what, func(t *testing.T) {
			sign := catalog.SignAnchor(c.dist)
			w.Cat.Anchor = func(msg []byte) catalog.Anchor {
				a := sign(msg)
				a.Chain = append(a.Chain, c.rest...)
				return a
			}
			defer func() { w.Cat.Anchor = genuine }()
			_, err := w.Mir.Import(context.Background(), bytes.NewReader(w.export()))
			wantRejected(t, err, "site import")
			if _, _, err := w.Mir.Anchor(t.Context()); err == nil {
				t.Fatal("the site stored a refused anchor")
			}
			// The same anchor, checked as a device does.
			roots, _ := w.Cat.Roots(t.Context())
			wantRejected(t, w.Cat.Anchor(catalog.AnchorMessage(roots[0].Body)).Verify(roots[0].Body, w.Root, now), "device check")
		})
	}

	// The genuine anchor: stored by the site, accepted by a device.
	w.Transfer()
	u := w.device("dev-g1", w.Site.URL)
	if res, err := u.Apply(t.Context(), updater.Options{}); err != nil || res.Status != catalog.StatusInstalled {
		t.Fatalf("apply: %v %+v", err, res)
	}
	// A device given another vendor's root refuses the site's anchor.
	other, _ := disttest.NewVendor(t, "Other", now)
	_, err = updater.Init(t.Context(), t.TempDir(), updater.Config{Server: w.Site.URL, Token: w.Tokens["dev-g1"], App: "app", Platform: "linux-amd64"}, other.Cert)
	wantRejected(t, err, "device with another vendor root")
	// A signature of another root metadata under the genuine certificate.
	roots, _ := w.Cat.Roots(t.Context())
	a := w.Cat.Anchor(catalog.AnchorMessage(roots[0].Body))
	wantRejected(t, a.Verify(append([]byte(" "), roots[0].Body...), w.Root, now), "anchor of other root metadata")
	// An expired distribution certificate.
	wantRejected(t, a.Verify(roots[0].Body, w.Root, now.Add(pki.DistributionValidity+time.Hour)), "expired distribution certificate")
}

func authority(t *testing.T, der []byte, s *keys.Signer) *pki.Authority {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.Authority{Cert: c, Signer: s}
}

// TestLegacyRootKeys: a deployment made before the distribution key, whose
// role keys derive from the vendor root key's seed and whose root version 1
// the root key itself anchored. Without the root key the vendor cannot sign
// (and says what to do); with it, once, the role keys move to the
// distribution key in root version 2. A site that imported the root-signed
// anchor keeps it, a device accepts it and follows version 2, and after the
// root key is gone again the vendor publishes a new release that the device
// installs.
func TestLegacyRootKeys(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	rootKey := w.RootAuth.Signer.Private()
	legacy := rootKey.Seed()
	// Root version 1 as licet made it before the distribution key.
	roles := map[string]tufmeta.RoleKeys{}
	var rootSigner []ed25519.PrivateKey
	k := catalog.Keyring{}
	for _, r := range tufmeta.Roles {
		p, err := tufmeta.DeriveKey(legacy, r, 0)
		if err != nil {
			t.Fatal(err)
		}
		roles[r] = tufmeta.RoleKeys{Keys: []ed25519.PublicKey{p.Public().(ed25519.PublicKey)}, Threshold: 1}
		if r == tufmeta.RoleRoot {
			rootSigner = append(rootSigner, p)
		}
		k[r] = catalog.KeyState{Generation: 0, Threshold: 1}
	}
	body, err := tufmeta.SignRoot(1, w.Now.Add(365*24*time.Hour), roles, rootSigner)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Cat.Store.AddDistRoot(ctx, &catalog.RootRecord{Version: 1, Body: body, Keyring: k}); err != nil {
		t.Fatal(err)
	}
	r1 := w.Release("1.0", script("one"))
	// Root key offline: nothing can be signed, and the error says what to do.
	if err := w.Cat.CheckKeys(ctx); err == nil || !strings.Contains(err.Error(), "root.key") {
		t.Fatalf("legacy keys without the root key: %v", err)
	}
	if _, err := w.Cat.AddBundle(ctx, &catalog.Bundle{Customer: "acme", Group: "g1", Release: r1.ID}); err == nil {
		t.Fatal("published with role keys derived from an absent root key")
	}
	// The root key back once: the keys move; the anchor is the root key's, as before.
	w.Cat.LegacySecret = legacy
	w.Cat.Anchor = func(msg []byte) catalog.Anchor { return catalog.Anchor{Signature: ed25519.Sign(rootKey, msg)} }
	if err := w.Cat.CheckKeys(ctx); err != nil {
		t.Fatal(err)
	}
	roots, _ := w.Cat.Roots(ctx)
	if len(roots) != 2 || !bytes.Equal(roots[0].Body, body) {
		t.Fatalf("after the move: %d root versions", len(roots))
	}
	for r, st := range roots[1].Keyring {
		if st.From != catalog.KeysFromDistribution || st.Generation != 1 {
			t.Fatalf("role %s after the move: %+v", r, st)
		}
	}
	w.Bundle("g1", r1)
	w.Transfer()
	if _, a, err := w.Mir.Anchor(ctx); err != nil || len(a.Chain) != 0 {
		t.Fatalf("site's stored anchor: %+v %v", a, err)
	}
	u := w.device("dev-g1", w.Site.URL)
	if res, err := u.Apply(ctx, updater.Options{}); err != nil || res.Status != catalog.StatusInstalled {
		t.Fatalf("apply 1.0: %v %+v", err, res)
	}
	// The root key offline again: the distribution key anchors and signs.
	w.Cat.LegacySecret = nil
	w.Cat.Anchor = catalog.SignAnchor(w.Dist)
	w.Bundle("g1", w.Release("2.0", script("two")))
	w.Transfer()
	if res, err := u.Apply(ctx, updater.Options{}); err != nil || res.Plan.Installed != "2.0" {
		t.Fatalf("apply 2.0: %v %+v", err, res)
	}
	// A new device of the old site still accepts the root-signed anchor.
	w.device("dev-g2", w.Site.URL)
}

// TestReplacedDistributionKey: a distribution key other than the one whose
// seed derived the current root version's keys (distribution.key replaced)
// is reported, and signing fails with that report instead of looping.
func TestReplacedDistributionKey(t *testing.T) {
	w := newWorld(t)
	w.Bundle("g1", w.Release("1.0", script("one")))
	w.Transfer()
	if err := w.Cat.CheckKeys(t.Context()); err != nil {
		t.Fatalf("genuine key: %v", err)
	}
	_, other := disttest.NewVendor(t, "Vendor", w.Now)
	w.Cat.Secret = other.Signer.Private().Seed()
	if err := w.Cat.CheckKeys(t.Context()); err == nil || !strings.Contains(err.Error(), "distribution.key was replaced") {
		t.Fatalf("replaced key: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var buf bytes.Buffer
	if err := w.Cat.Export(ctx, "acme", time.Hour, &buf); err == nil || !strings.Contains(err.Error(), "distribution.key was replaced") {
		t.Fatalf("export with a replaced key: %v", err)
	}
}

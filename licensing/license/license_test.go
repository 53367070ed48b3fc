package license_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/licet/licet/internal/testpki"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/verify"
)

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newRoot(t *testing.T) *pki.Authority {
	t.Helper()
	return testpki.Root(t, "Acme", epoch.Add(-24*time.Hour))
}

func newSite(t *testing.T, root *pki.Authority) *pki.Authority {
	t.Helper()
	return testpki.Site(t, root, "Acme Site Berlin", "cust-1", epoch.Add(-24*time.Hour))
}

func attrs() verify.Attributes {
	return verify.Attributes{
		LicenseID: 77, PackID: "pack-1", ProductID: "acme-cad", ProductVersion: "4.2",
		Platform: "linux-amd64", Features: []string{"render"}, Flags: verify.FlagTemporary,
	}
}

type setup struct {
	root, site *pki.Authority
	pub        ed25519.PublicKey
	priv       ed25519.PrivateKey
	der        []byte
	file       []byte // the license file: license then site certificate
}

func newSetup(t *testing.T) *setup {
	t.Helper()
	s := &setup{root: newRoot(t)}
	s.site = newSite(t, s.root)
	var err error
	if s.pub, s.priv, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	a := attrs()
	testpki.Bind(t, s.root, s.site, &a)
	if s.der, err = license.Issue(s.site, s.pub, a, epoch.Add(-time.Hour), epoch.Add(30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	s.file = license.EncodePEM([][]byte{s.der, s.site.Cert.Raw})
	return s
}

func (s *setup) verifier(t *testing.T) *verify.Verifier {
	t.Helper()
	v, err := verify.New(s.root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestIssue(t *testing.T) {
	s := newSetup(t)
	c, err := x509.ParseCertificate(s.der)
	if err != nil {
		t.Fatal(err)
	}
	id := verify.ClientID(s.pub)
	switch {
	case c.Subject.CommonName != id || c.Subject.SerialNumber != id:
		t.Errorf("subject %v, want CN and serialNumber %s", c.Subject, id)
	case c.SerialNumber.Cmp(big.NewInt(77)) != 0:
		t.Errorf("serial %v, want the license ID 77", c.SerialNumber)
	case c.IsCA || !c.BasicConstraintsValid:
		t.Errorf("IsCA %v, basic constraints %v", c.IsCA, c.BasicConstraintsValid)
	case c.KeyUsage != x509.KeyUsageDigitalSignature:
		t.Errorf("key usage %v", c.KeyUsage)
	case len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth:
		t.Errorf("ext key usage %v", c.ExtKeyUsage)
	case !bytes.Equal(c.RawIssuer, s.site.Cert.RawSubject):
		t.Errorf("issuer %v", c.Issuer)
	case c.SignatureAlgorithm != x509.PureEd25519:
		t.Errorf("signature algorithm %v", c.SignatureAlgorithm)
	case !c.PublicKey.(ed25519.PublicKey).Equal(s.pub):
		t.Error("subject key is not the client key")
	}
	if err := c.CheckSignatureFrom(s.site.Cert); err != nil {
		t.Errorf("not signed by the site: %v", err)
	}
	var sawRole, sawAttrs bool
	for _, e := range c.Extensions {
		switch {
		case e.Id.Equal(verify.OIDRole):
			var r string
			if _, err := asn1.UnmarshalWithParams(e.Value, &r, "utf8"); err != nil || r != verify.RoleLicense || e.Critical {
				t.Errorf("role extension %q critical=%v err=%v", r, e.Critical, err)
			}
			sawRole = true
		case e.Id.Equal(verify.OIDLicense):
			a, err := verify.ParseAttributes(e.Value)
			if err != nil || e.Critical {
				t.Fatalf("attributes extension critical=%v err=%v", e.Critical, err)
			}
			want := attrs()
			want.ClientID, want.DataVersion = id, verify.CurrentDataVersion
			if fmt.Sprint(a) != fmt.Sprint(want) {
				t.Errorf("attributes %+v, want %+v", a, want)
			}
			sawAttrs = true
		}
	}
	if !sawRole || !sawAttrs {
		t.Errorf("role extension %v, attributes extension %v", sawRole, sawAttrs)
	}
	lic, err := s.verifier(t).Verify(s.file, verify.Options{Now: epoch, Product: "acme-cad", ClientKey: s.pub})
	if err != nil {
		t.Fatal(err)
	}
	if !lic.Temporary() || lic.SiteID != pki.SiteID(s.site.Signer.Public()) {
		t.Errorf("verified license %+v from %s", lic.Attributes, lic.SiteID)
	}
}

func TestIssueClampsToSite(t *testing.T) {
	s := newSetup(t)
	der, err := license.Issue(s.site, s.pub, attrs(), epoch, epoch.Add(100*365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	if !c.NotAfter.Equal(s.site.Cert.NotAfter) {
		t.Fatalf("NotAfter %s, want the site's %s", c.NotAfter, s.site.Cert.NotAfter)
	}
	// A license starting after the site certificate ends is no license.
	if _, err := license.Issue(s.site, s.pub, attrs(), s.site.Cert.NotAfter.Add(time.Hour), s.site.Cert.NotAfter.Add(2*time.Hour)); err == nil {
		t.Fatal("license outliving its site issued")
	}
}

func TestIssueRejects(t *testing.T) {
	s := newSetup(t)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	mod := func(f func(*verify.Attributes)) verify.Attributes { a := attrs(); f(&a); return a }
	for name, tc := range map[string]struct {
		site  *pki.Authority
		pub   ed25519.PublicKey
		attrs verify.Attributes
		from  time.Time
	}{
		"short key":        {s.site, s.pub[:31], attrs(), epoch},
		"no license ID":    {s.site, s.pub, mod(func(a *verify.Attributes) { a.LicenseID = 0 }), epoch},
		"negative ID":      {s.site, s.pub, mod(func(a *verify.Attributes) { a.LicenseID = -3 }), epoch},
		"no product":       {s.site, s.pub, mod(func(a *verify.Attributes) { a.ProductID = "" }), epoch},
		"other client ID":  {s.site, s.pub, mod(func(a *verify.Attributes) { a.ClientID = verify.ClientID(other) }), epoch},
		"root as issuer":   {s.root, s.pub, attrs(), epoch},
		"nil site":         {nil, s.pub, attrs(), epoch},
		"empty validity":   {s.site, s.pub, attrs(), epoch.Add(time.Hour)},
		"site key swapped": {&pki.Authority{Cert: s.site.Cert, Signer: s.root.Signer}, s.pub, attrs(), epoch},
	} {
		if _, err := license.Issue(tc.site, tc.pub, tc.attrs, tc.from, epoch.Add(time.Hour)); err == nil {
			t.Errorf("%s: issued", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestEncodePEM(t *testing.T) {
	s := newSetup(t)
	rest := s.file
	for i, want := range [][]byte{s.der, s.site.Cert.Raw} {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil || blk.Type != "CERTIFICATE" || !bytes.Equal(blk.Bytes, want) {
			t.Fatalf("block %d: %v", i, blk)
		}
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("trailing data %q", rest)
	}
	// Byte for byte what encoding/pem writes (license files made before
	// EncodePEM wrote them itself are the same).
	var want bytes.Buffer
	for _, der := range [][]byte{s.der, s.site.Cert.Raw} {
		pem.Encode(&want, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	if !bytes.Equal(s.file, want.Bytes()) {
		t.Fatalf("EncodePEM wrote\n%s\nencoding/pem writes\n%s", s.file, want.Bytes())
	}
}

// clientCertificate is what a client presents in TLS: its license file and its key.
func (s *setup) clientCertificate(t *testing.T) tls.Certificate {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(s.priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(s.file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatalf("the license file is not usable as a TLS certificate chain: %v", err)
	}
	return cert
}

// serverCertificate makes a throwaway TLS server certificate for 127.0.0.1.
func serverCertificate(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "gateway"},
		NotBefore:    epoch.Add(-time.Hour),
		NotAfter:     epoch.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: c}, pool
}

// handshake runs a TLS handshake on loopback between a server that requires
// client certificates chaining to root (and, if v is set, checks the license
// with it) and a client presenting cert. It returns the server's view.
func handshake(t *testing.T, root *x509.Certificate, v *verify.Verifier, cert tls.Certificate) (tls.ConnectionState, *verify.License, error) {
	t.Helper()
	srvCert, srvPool := serverCertificate(t)
	roots := x509.NewCertPool()
	roots.AddCert(root) // the vendor root only: the site certificate comes from the client
	clock := func() time.Time { return epoch }
	var lic *verify.License
	srvConf := &tls.Config{
		Certificates: []tls.Certificate{srvCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
		Time:         clock,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if v == nil {
				return nil
			}
			chain := make([][]byte, len(cs.PeerCertificates))
			for i, c := range cs.PeerCertificates {
				chain[i] = c.Raw
			}
			var err error
			lic, err = v.VerifyChain(chain, verify.Options{Now: epoch, Product: "acme-cad"})
			return err
		},
	}
	cliConf := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: srvPool, ServerName: "127.0.0.1", Time: clock}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		cs  tls.ConnectionState
		err error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer conn.Close()
		srv := tls.Server(conn, srvConf)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = srv.HandshakeContext(ctx)
		if err == nil {
			// Read the client's byte so that the client learns of a rejection in TLS 1.3.
			_, err = srv.Read(make([]byte, 1))
		}
		done <- result{srv.ConnectionState(), err}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cli := tls.Client(conn, cliConf)
	_ = cli.SetDeadline(time.Now().Add(10 * time.Second))
	if err := cli.Handshake(); err == nil {
		_, _ = cli.Write([]byte{1})
	}
	r := <-done
	return r.cs, lic, r.err
}

func TestTLSClientCertificate(t *testing.T) {
	s := newSetup(t)
	v := s.verifier(t)
	cs, lic, err := handshake(t, s.root.Cert, v, s.clientCertificate(t))
	if err != nil {
		t.Fatalf("TLS handshake with the license as client certificate: %v", err)
	}
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) != 3 {
		t.Fatalf("verified chains %v", cs.VerifiedChains)
	}
	chain := cs.VerifiedChains[0]
	if chain[0].Subject.CommonName != verify.ClientID(s.pub) || !bytes.Equal(chain[1].Raw, s.site.Cert.Raw) || !bytes.Equal(chain[2].Raw, s.root.Cert.Raw) {
		t.Fatalf("verified chain %s <- %s <- %s", chain[0].Subject, chain[1].Subject, chain[2].Subject)
	}
	if lic == nil || lic.LicenseID != 77 || !lic.ClientKey.Equal(s.pub) {
		t.Fatalf("license checked in the handshake: %+v", lic)
	}
	t.Logf("TLS %s: client %s, license %d, site %s", tls.VersionName(cs.Version), chain[0].Subject.CommonName, lic.LicenseID, lic.SiteID)
}

func TestTLSRejectsUntrustedSite(t *testing.T) {
	s := newSetup(t)
	rogue := &setup{root: newRoot(t)}
	rogue.site = newSite(t, rogue.root)
	rogue.pub, rogue.priv = s.pub, s.priv
	var err error
	if rogue.der, err = license.Issue(rogue.site, s.pub, attrs(), epoch.Add(-time.Hour), epoch.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	rogue.file = license.EncodePEM([][]byte{rogue.der, rogue.site.Cert.Raw})
	// crypto/tls alone (no licet verifier) refuses the chain.
	if _, _, err := handshake(t, s.root.Cert, nil, rogue.clientCertificate(t)); err == nil {
		t.Fatal("a license from a site the vendor never certified passes TLS client authentication")
	} else {
		t.Log(err)
	}
}

func TestTLSRejectsCopiedLicense(t *testing.T) {
	s := newSetup(t)
	// Someone else's key with this client's license file: the handshake
	// signature (CertificateVerify) cannot match the license's key.
	_, thief, _ := ed25519.GenerateKey(rand.Reader)
	cert := tls.Certificate{Certificate: [][]byte{s.der, s.site.Cert.Raw}, PrivateKey: thief}
	if _, _, err := handshake(t, s.root.Cert, s.verifier(t), cert); err == nil {
		t.Fatal("a copied license authenticates a client with another key")
	} else {
		t.Log(err)
	}
}

func TestTLSRejectsWrongProduct(t *testing.T) {
	s := newSetup(t)
	a := attrs()
	a.ProductID = "acme-cam"
	der, err := license.Issue(s.site, s.pub, a, epoch.Add(-time.Hour), epoch.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der, s.site.Cert.Raw}, PrivateKey: s.priv}
	_, _, err = handshake(t, s.root.Cert, s.verifier(t), cert)
	if err == nil || !errors.Is(err, verify.ErrWrongProduct) {
		t.Fatalf("handshake with a license for another product: %v", err)
	}
}

// TestOpenSSL checks the license file the way nginx's ssl_verify_client does:
// OpenSSL with the vendor root as the only trust anchor.
func TestOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("no openssl command")
	}
	s := newSetup(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	root := write("root.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.root.Cert.Raw}))
	file := write("license.pem", s.file)
	leaf := write("leaf.pem", license.EncodePEM([][]byte{s.der}))
	out, err := exec.Command(openssl, "verify", "-CAfile", root, "-untrusted", file, "-purpose", "sslclient",
		"-attime", fmt.Sprint(epoch.Unix()), leaf).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "unknown option") || strings.Contains(string(out), "algorithm") {
			t.Skipf("this openssl cannot check Ed25519 chains: %s", out)
		}
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
	t.Logf("openssl: %s", bytes.TrimSpace(out))
	// And it refuses the license after expiry.
	out, err = exec.Command(openssl, "verify", "-CAfile", root, "-untrusted", file, "-purpose", "sslclient",
		"-attime", fmt.Sprint(epoch.Add(31*24*time.Hour).Unix()), leaf).CombinedOutput()
	if err == nil {
		t.Fatalf("openssl accepts an expired license: %s", out)
	}
}

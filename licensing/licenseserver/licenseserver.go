// Package licenseserver is the customer's license server (the site): its
// identity certified by the vendor root, and the license packs it installs
// into its store. Later issues add the grant of client licenses.
package licenseserver

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/auth"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/fsutil"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/licensing/pack"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/verify"
)

// Files in a site data directory.
const (
	fileConfig   = "site.json"
	fileKey      = "site.key"
	fileHPKEKey  = "site-hpke.key"
	fileRequest  = "site-request.txt"
	fileCert     = "site-certificate.txt"
	fileRootCert = "root.crt"
	defaultDB    = "site.db"
)

// DefaultTemporaryFor is the validity of temporary licenses unless configured.
const DefaultTemporaryFor = 60 * 24 * time.Hour

// CertificateVersion is the format version of the armored site certificate file.
const CertificateVersion = 1

// Config is the site's site.json.
type Config struct {
	Name      string `json:"name"`
	DB        string `json:"db"`                   // SQLite path relative to the data dir, or a postgres:// URL
	VendorURL string `json:"vendor_url,omitempty"` // for online purchases
}

// OpenStore opens a store by DSN (package store provides it).
type OpenStore func(ctx context.Context, dsn string) (StoreCloser, error)

// StoreCloser is a Store that must be closed.
type StoreCloser interface {
	Store
	io.Closer
}

// Identity is the site's key material and, once certified, its certificate.
// The certificate is swapped whole when it is renewed (InstallCertificate,
// ReloadCertificate): readers take one snapshot (Certificate) with an
// atomic load and use it throughout.
type Identity struct {
	Dir       string
	Config    Config
	Signer    *keys.Signer
	Decrypter *keys.Decrypter
	SiteID    string

	cert     atomic.Pointer[Certificate] // nil until certified
	reloadMu sync.Mutex                  // one reload at a time; guards seen
	seen     []byte                      // the certificate file last read by ReloadCertificate
}

// Certificate is one certificate of the site, as a whole: a renewal
// replaces it by another, never changes it.
type Certificate struct {
	Chain [][]byte          // site certificate, the vendor's issuing CA's if any, then the root, DER
	Root  *x509.Certificate // the vendor root
	Site  *pki.Site         // the verified certificate contents
	// replacedEnd is the end of the certificate this one replaced in this
	// process (zero if none): licenses that end then were cut short by it
	// and are signed again at their client's next request (Server.staleLicense).
	replacedEnd time.Time

	issuerOnce sync.Once
	issuer     *license.Issuer
}

// Certificate returns the site's current certificate; nil until certified.
func (id *Identity) Certificate() *Certificate { return id.cert.Load() }

// Site returns the verified contents of the current site certificate; nil
// until certified.
func (id *Identity) Site() *pki.Site {
	if c := id.cert.Load(); c != nil {
		return c.Site
	}
	return nil
}

// Root returns the vendor root the site is certified under; nil until certified.
func (id *Identity) Root() *x509.Certificate {
	if c := id.cert.Load(); c != nil {
		return c.Root
	}
	return nil
}

// SiteChain returns the current chain without the root (the site
// certificate and, if the vendor's issuing CA certified the site, the
// issuing CA's), which the site sends with what it signs; nil until certified.
func (id *Identity) SiteChain() [][]byte {
	if c := id.cert.Load(); c != nil {
		return c.Chain[:len(c.Chain)-1]
	}
	return nil
}

// issuerFor returns the license.Issuer of this certificate and the site key
// signer, made once per certificate: it signs without
// x509.CreateCertificate's verification of each signature, after checking
// once that it builds the same certificates (else it uses license.Issue).
func (c *Certificate) issuerFor(signer *keys.Signer) *license.Issuer {
	c.issuerOnce.Do(func() {
		site := &pki.Authority{Cert: c.Site.Cert, Signer: signer}
		var err error
		if c.issuer, err = license.NewIssuer(site); err != nil {
			c.issuer = license.IssueWith(site) // the reference license failed: Issue will say why
		}
	})
	return c.issuer
}

// Enroller exchanges an armored certification request for the armored site
// certificate file, online at the vendor.
type Enroller func(ctx context.Context, request []byte) ([]byte, error)

// InitOptions are the choices made when a site is created.
type InitOptions struct {
	Name            string   // a name for the site; default its site ID
	DB              string   // SQLite file in the data directory (default site.db) or postgres:// URL
	VendorURL       string   // the vendor API, for online enrollment and purchases
	RootFingerprint string   // expected vendor root fingerprint, checked on enrollment
	Enroll          Enroller // enrolls online; nil leaves the site to offline certification
}

// Init creates a site data directory with the site's keys, its certification
// request (written to site-request.txt) and its database. With opts.Enroll, the
// site is certified online first, and nothing is written if that fails. It
// returns the identity and the first admin token of the site API.
func Init(ctx context.Context, dir string, opts InitOptions, open OpenStore) (*Identity, string, error) {
	name, dsn := opts.Name, opts.DB
	if _, err := os.Stat(filepath.Join(dir, fileConfig)); err == nil {
		return nil, "", errs.E(errs.Conflict, "%s is already a site data directory; use it, or choose another --data", dir)
	}
	if dsn == "" {
		dsn = defaultDB
	}
	sig, err := keys.GenerateSigner()
	if err != nil {
		return nil, "", err
	}
	dec, err := keys.GenerateDecrypter()
	if err != nil {
		return nil, "", err
	}
	if name == "" {
		name = pki.SiteID(sig.Public())
	}
	csr, err := pki.NewSiteRequest(sig, dec.PublicBytes(), name)
	if err != nil {
		return nil, "", errs.Wrap(errs.Internal, err, "make certification request")
	}
	request := armor.Encode(armor.Block{Type: armor.TypeCertRequest, Version: 1, Body: csr})
	id := &Identity{Dir: dir, Config: Config{Name: name, DB: dsn, VendorURL: opts.VendorURL}, Signer: sig, Decrypter: dec, SiteID: pki.SiteID(sig.Public())}
	var certFile []byte
	if opts.Enroll != nil {
		if certFile, err = opts.Enroll(ctx, request); err != nil {
			return nil, "", err
		}
		c, err := id.checkCertificate(certFile, opts.RootFingerprint)
		if err != nil {
			return nil, "", err
		}
		id.cert.Store(c)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", errs.Wrap(errs.Internal, err, "create data directory")
	}
	if err := sig.Save(filepath.Join(dir, fileKey)); err != nil {
		return nil, "", errs.Wrap(errs.Internal, err, "save site key")
	}
	if err := dec.Save(filepath.Join(dir, fileHPKEKey)); err != nil {
		return nil, "", errs.Wrap(errs.Internal, err, "save site encryption key")
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, fileRequest), request, 0o644); err != nil {
		return nil, "", errs.Wrap(errs.Internal, err, "write certification request")
	}
	if c := id.cert.Load(); c != nil {
		if err := id.writeCertificate(c); err != nil {
			return nil, "", err
		}
	}
	st, err := open(ctx, resolveDSN(dir, dsn))
	if err != nil {
		return nil, "", err
	}
	defer st.Close()
	token, err := auth.NewToken(ctx, st, "initial site admin token", time.Now())
	if err != nil {
		return nil, "", err
	}
	// The config is written last: its presence marks a complete data directory.
	if err := id.saveConfig(); err != nil {
		return nil, "", err
	}
	return id, token, nil
}

func resolveDSN(dir, dsn string) string {
	if strings.Contains(dsn, "://") || filepath.IsAbs(dsn) {
		return dsn
	}
	return filepath.Join(dir, dsn)
}

// LoadIdentity reads a site data directory made by Init.
func LoadIdentity(dir string) (*Identity, error) {
	raw, err := os.ReadFile(filepath.Join(dir, fileConfig))
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "%s is not a site data directory (run 'licet site init --data %s' first)", dir, dir)
	}
	id := &Identity{Dir: dir}
	if err := json.Unmarshal(raw, &id.Config); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "read %s", fileConfig)
	}
	if id.Signer, err = keys.LoadSigner(filepath.Join(dir, fileKey)); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "load site key")
	}
	if id.Decrypter, err = keys.LoadDecrypter(filepath.Join(dir, fileHPKEKey)); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "load site encryption key")
	}
	id.SiteID = pki.SiteID(id.Signer.Public())
	certFile, err := os.ReadFile(filepath.Join(dir, fileCert))
	if errors.Is(err, fs.ErrNotExist) {
		return id, nil
	}
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "read site certificate")
	}
	c, err := id.checkCertificate(certFile, "")
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "the installed site certificate no longer verifies")
	}
	id.cert.Store(c)
	id.seen = certFile
	return id, nil
}

// LicenseChain returns the certificates of a license file: the license
// certificate, then the site's current chain without the root (the site
// certificate and, if the vendor's issuing CA certified the site, the
// issuing CA's). A license signed under an earlier certificate of the site
// verifies with it too: the same key and name sign both.
func (id *Identity) LicenseChain(license []byte) [][]byte {
	return append([][]byte{license}, id.SiteChain()...)
}

// Certified reports whether the site holds a certificate.
func (id *Identity) Certified() bool { return id.cert.Load() != nil }

// RenewBefore is how long before its end the site warns that its
// certificate needs renewing (site report, site serve).
const RenewBefore = 30 * 24 * time.Hour

// CheckCurrent returns an error telling the admin how to renew unless the
// site is certified and its certificate valid at now: licenses a site signs
// end with its certificate, so one with an expired certificate would
// issue licenses that no verifier accepts.
func (id *Identity) CheckCurrent(now time.Time) error {
	if err := id.RequireCertified(); err != nil {
		return err
	}
	c := id.Site().Cert
	if !now.Before(c.NotAfter) {
		return errs.E(errs.Forbidden, "the certificate of license server %s expired at %s: it cannot issue licenses that verify. The administrator renews it with 'licet site renew --data DIR' (online) or 'licet site renew --data DIR --out FILE' (by file); a running 'licet site serve' takes the new certificate within a minute, or at once on SIGHUP",
			id.SiteID, c.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore) {
		return errs.E(errs.Forbidden, "the certificate of license server %s is valid from %s, it is now %s; check the server's clock", id.SiteID, c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// RequireCertified returns an error telling the admin how to certify the site.
func (id *Identity) RequireCertified() error {
	if id.Certified() {
		return nil
	}
	return errs.E(errs.Invalid, "site %s is not certified yet: enroll it online ('licet site init --vendor URL --enroll CODE') or install the certificate the vendor sent ('licet site cert install FILE')", id.SiteID)
}

type certFileBody struct {
	Certificates [][]byte `json:"certificates"` // site certificate, then the vendor root
}

// EncodeCertificate writes a certificate chain as an armored site certificate file.
func EncodeCertificate(chain [][]byte) []byte {
	body, _ := json.Marshal(certFileBody{Certificates: chain})
	return armor.Encode(armor.Block{Type: armor.TypeSiteCertificate, Version: CertificateVersion, Body: body})
}

// checkCertificate verifies an armored certificate file against this site's
// keys, against the pinned root (if any) and against rootFingerprint (if given).
func (id *Identity) checkCertificate(file []byte, rootFingerprint string) (*Certificate, error) {
	blk, err := armor.Decode(file, armor.TypeSiteCertificate)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "site certificate rejected")
	}
	if blk.Version > CertificateVersion {
		return nil, errs.E(errs.Invalid, "site certificate format version %d is newer than this licet reads (%d)", blk.Version, CertificateVersion)
	}
	var body certFileBody
	if err := json.Unmarshal(blk.Body, &body); err != nil || len(body.Certificates) < 2 {
		return nil, errs.E(errs.Invalid, "site certificate file must hold the site certificate and the vendor root")
	}
	chain := body.Certificates
	root, err := pki.ParseRoot(chain[len(chain)-1])
	if err != nil {
		return nil, err
	}
	fp := pki.Fingerprint(root.Raw)
	if rootFingerprint != "" && !strings.EqualFold(strings.ReplaceAll(rootFingerprint, ":", ""), fp) {
		return nil, errs.E(errs.Invalid, "vendor root fingerprint is %s, not the %s you expected; do not install this certificate", fp, rootFingerprint)
	}
	if pinned, err := os.ReadFile(filepath.Join(id.Dir, fileRootCert)); err == nil {
		blk, _ := pem.Decode(pinned)
		if blk == nil || string(blk.Bytes) != string(root.Raw) {
			return nil, errs.E(errs.Invalid, "certificate chains to vendor root %s, but this site already trusts another root", fp[:16])
		}
	}
	// The chain is checked at a time within the site certificate's
	// validity: an expired certificate still identifies the site (which
	// must be able to renew it), and CheckCurrent says whether it may issue.
	at := time.Now()
	if leaf, err := x509.ParseCertificate(chain[0]); err == nil {
		if at.After(leaf.NotAfter) {
			at = leaf.NotAfter.Add(-time.Second)
		}
		if at.Before(leaf.NotBefore) {
			at = leaf.NotBefore
		}
	}
	site, err := pki.VerifySite(chain[:len(chain)-1], root, at)
	if err != nil {
		return nil, err
	}
	if site.SiteID != id.SiteID || string(site.HPKEKey) != string(id.Decrypter.PublicBytes()) {
		return nil, errs.E(errs.Invalid, "certificate is for site %s, not for this site (%s)", site.SiteID, id.SiteID)
	}
	return &Certificate{Chain: chain, Root: root, Site: site}, nil
}

// InstallCertificate checks and installs the certificate file the vendor
// issued for this site (at enrollment or renewal), pinning the vendor root
// on first install. A certificate that has expired at now is refused, and so
// is one that ends before the installed one (an older file).
func (id *Identity) InstallCertificate(file []byte, rootFingerprint string, now time.Time) (*pki.Site, error) {
	id.reloadMu.Lock()
	defer id.reloadMu.Unlock()
	c, err := id.checkCertificate(file, rootFingerprint)
	if err != nil {
		return nil, err
	}
	if !now.Before(c.Site.Cert.NotAfter) {
		return nil, errs.E(errs.Invalid, "this site certificate expired at %s; nothing was installed: renew the site ('licet site renew') to get a current one", c.Site.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	old := id.cert.Load()
	if old != nil && c.Site.Cert.NotAfter.Before(old.Site.Cert.NotAfter) {
		return nil, errs.E(errs.Conflict, "this site certificate ends at %s, before the installed one (%s): it is an older file; nothing was installed",
			c.Site.Cert.NotAfter.UTC().Format(time.RFC3339), old.Site.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if err := id.writeCertificate(c); err != nil {
		return nil, err
	}
	id.swap(old, c)
	id.seen = EncodeCertificate(c.Chain)
	return c.Site, nil
}

// swap makes c the current certificate in place of old.
func (id *Identity) swap(old, c *Certificate) {
	if old != nil && !old.Site.Cert.NotAfter.Equal(c.Site.Cert.NotAfter) {
		c.replacedEnd = old.Site.Cert.NotAfter
	}
	id.cert.Store(c)
}

// ReloadCertificate reads the site certificate file again (a renewal by
// another process, 'licet site renew' or 'site cert install', wrote it) and,
// if it holds a certificate of this site's keys under the pinned root that
// ends after the current one and is valid at now, makes it the current
// certificate for every reader at once. It returns the new certificate's
// contents, or nil if the file is unchanged or holds the current
// certificate; an error (and no change) for a file that does not verify, is
// another site's, has expired or is older than the current certificate (the
// same error again at the next call: the caller reports it once). Reading
// an unchanged file costs a read and a comparison: 'licet site serve' calls
// it every minute and on SIGHUP.
func (id *Identity) ReloadCertificate(now time.Time) (*pki.Site, error) {
	id.reloadMu.Lock()
	defer id.reloadMu.Unlock()
	file, err := os.ReadFile(filepath.Join(id.Dir, fileCert))
	if errors.Is(err, fs.ErrNotExist) && id.cert.Load() == nil {
		return nil, nil // not certified yet
	}
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "read the site certificate %s", filepath.Join(id.Dir, fileCert))
	}
	if bytes.Equal(file, id.seen) {
		return nil, nil
	}
	c, err := id.checkCertificate(file, "")
	if err != nil {
		return nil, errs.Wrap(errs.KindOf(err), err, "the site certificate file %s was changed but is not used", filepath.Join(id.Dir, fileCert))
	}
	old := id.cert.Load()
	switch {
	case old != nil && bytes.Equal(c.Chain[0], old.Chain[0]):
		id.seen = file
		return nil, nil // the same certificate, written again
	case !now.Before(c.Site.Cert.NotAfter):
		return nil, errs.E(errs.Invalid, "the site certificate file %s was changed to a certificate that expired at %s; the current one (to %s) stays in use: renew the site ('licet site renew')",
			filepath.Join(id.Dir, fileCert), c.Site.Cert.NotAfter.UTC().Format(time.RFC3339), fmtEnd(old))
	case old != nil && !c.Site.Cert.NotAfter.After(old.Site.Cert.NotAfter):
		return nil, errs.E(errs.Conflict, "the site certificate file %s was changed to a certificate that ends at %s, not after the current one (%s): an older file; the current one stays in use",
			filepath.Join(id.Dir, fileCert), c.Site.Cert.NotAfter.UTC().Format(time.RFC3339), fmtEnd(old))
	}
	id.swap(old, c)
	id.seen = file
	return c.Site, nil
}

// fmtEnd is the end of certificate c, for messages.
func fmtEnd(c *Certificate) string {
	if c == nil {
		return "none: the site is not certified"
	}
	return c.Site.Cert.NotAfter.UTC().Format(time.RFC3339)
}

// writeCertificate writes the pinned root and the certificate chain of c.
func (id *Identity) writeCertificate(c *Certificate) error {
	rootPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Root.Raw})
	if err := fsutil.WriteFileAtomic(filepath.Join(id.Dir, fileRootCert), rootPEM, 0o644); err != nil {
		return errs.Wrap(errs.Internal, err, "write vendor root")
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(id.Dir, fileCert), EncodeCertificate(c.Chain), 0o644); err != nil {
		return errs.Wrap(errs.Internal, err, "write site certificate")
	}
	return nil
}

func (id *Identity) saveConfig() error {
	cfg, _ := json.MarshalIndent(id.Config, "", "  ")
	if err := fsutil.WriteFileAtomic(filepath.Join(id.Dir, fileConfig), append(cfg, '\n'), 0o600); err != nil {
		return errs.Wrap(errs.Internal, err, "write configuration")
	}
	return nil
}

// OpenStore opens the site's database; a non-empty dsn overrides the configured one.
func (id *Identity) OpenStore(ctx context.Context, dsn string, open OpenStore) (StoreCloser, error) {
	if dsn == "" {
		dsn = id.Config.DB
	}
	return open(ctx, resolveDSN(id.Dir, dsn))
}

// Server is a license server: an identity and its store.
type Server struct {
	ID    *Identity
	Store Store
	Now   func() time.Time
	// TemporaryFor is the validity of the temporary license a system gets
	// once when no seat is free; zero grants none.
	TemporaryFor time.Duration
	// TemporaryForProduct overrides TemporaryFor for the products it names
	// (zero: no temporary licenses of that product).
	TemporaryForProduct map[string]time.Duration
	// ClientLimits bound each client key's challenges and wrong answers;
	// nil means DefaultClientLimits.
	ClientLimits *ClientLimits

	sealOnce  sync.Once // derives seal, the AEAD of challenge IDs, from the site key
	seal      cipher.AEAD
	poolOnce  sync.Once             // starts pools
	pool      atomic.Pointer[pools] // the precomputed challenges; nil until started
	limitOnce sync.Once             // makes limits from ClientLimits
	limits    *clientLimiters
	seatOnce  sync.Once // makes seatPool, the seats leased to this Server
	seatPool  *seatPool
	verOnce   sync.Once // loads ver, the verifier of licenses against the vendor root
	ver       *verify.Verifier
	verErr    error
}

// Verifier returns the verifier of licenses against the site's vendor root
// (made once); an error if the site is not certified yet.
func (s *Server) Verifier() (*verify.Verifier, error) {
	if err := s.ID.RequireCertified(); err != nil {
		return nil, err
	}
	s.verOnce.Do(func() { s.ver, s.verErr = verify.New(s.ID.Root().Raw) }) // the root is pinned: a renewal keeps it
	if s.verErr != nil {
		return nil, errs.Wrap(errs.Internal, s.verErr, "load the vendor root")
	}
	return s.ver, nil
}

// PurchaseRequest writes the armored purchase request for an order.
func (s *Server) PurchaseRequest(orderID string) ([]byte, error) {
	if err := s.ID.RequireCertified(); err != nil {
		return nil, err
	}
	if orderID == "" {
		return nil, errs.E(errs.Usage, "--order: the order ID the vendor gave you is required")
	}
	return pack.NewPurchaseRequest(s.ID.Signer, s.ID.SiteChain(), orderID, s.Now())
}

// InstallPack verifies, decrypts and installs a pack file. Nothing is written
// unless every check passes; installing happens in one transaction.
func (s *Server) InstallPack(ctx context.Context, file []byte) (*InstalledPack, error) {
	if err := s.ID.RequireCertified(); err != nil {
		return nil, err
	}
	now := s.Now().UTC()
	p, err := pack.Open(file, s.ID.Decrypter, s.ID.SiteID, s.ID.Root(), now)
	if err != nil {
		return nil, err
	}
	ip := &InstalledPack{
		PackID: p.PackID, OrderID: p.OrderID, ProductID: p.Product.ID, ProductName: p.Product.Name,
		ProductVersion: p.Product.Version, Platform: p.Platform, Features: p.Features,
		Quantity: p.Quantity, BeginSerial: p.BeginSerial, FirstActive: p.FirstActive, Expires: p.Expires,
		Descriptions: p.Descriptions, Manufacturer: p.Manufacturer, ProductData: p.ProductData,
		Installed: now, File: file, Upgrade: p.Upgrade, Statement: p.Statement,
	}
	st, err := pack.ReadStatement(p)
	if err != nil {
		return nil, err
	}
	if st != nil && st.Temporary != nil {
		ip.TemporaryCount, ip.TemporaryMaxDays, ip.TemporaryBegin = st.Temporary.Count, int64(st.Temporary.MaxDays), st.Temporary.BeginSerial
	}
	if err := s.Store.InstallPack(ctx, ip); err != nil {
		return nil, err
	}
	return ip, nil
}

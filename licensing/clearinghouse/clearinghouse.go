// Package clearinghouse is the vendor's side of seat licensing: products,
// customers, the certification of customers' license servers (sites), orders,
// and the license packs issued against them, signed by the clearinghouse key
// and encrypted to one site.
package clearinghouse

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/licet/licet/auth"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/fsutil"
	"github.com/licet/licet/internal/ids"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/pack"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/verify"
)

// Files in a vendor data directory.
const (
	fileConfig            = "vendor.json"
	fileRootKey           = "root.key"
	fileRootCert          = "root.crt"
	fileClearinghouseKey  = "clearinghouse.key"
	fileClearinghouseCert = "clearinghouse.crt"
	fileIssuingKey        = "issuing.key"
	fileIssuingCert       = "issuing.crt"
	defaultDB             = "vendor.db"
)

// EnrollmentTTL is how long an enrollment code stays valid.
const EnrollmentTTL = 7 * 24 * time.Hour

// Config is the vendor's vendor.json.
type Config struct {
	VendorName string `json:"vendor_name"`
	DB         string `json:"db"` // SQLite path relative to the data dir, or a postgres:// URL
}

// OpenStore opens a store by DSN; package store provides it (cmd wires it in,
// so that this package does not depend on database drivers).
type OpenStore func(ctx context.Context, dsn string) (StoreCloser, error)

// StoreCloser is a Store that must be closed.
type StoreCloser interface {
	Store
	io.Closer
}

// Service is a running clearinghouse.
type Service struct {
	Store Store
	// Root is the vendor root. Its Signer is nil once the root key has been
	// exported for offline storage ('licet vendor root export').
	Root *pki.Authority
	// Issuing is the online CA that certifies sites; nil for a root made
	// before it existed (path length 1), whose sites the root certifies.
	Issuing            *pki.Authority
	Clearinghouse      *keys.Signer
	ClearinghouseChain [][]byte // DER: the clearinghouse certificate
	Config             Config
	Now                func() time.Time
	// SiteValidity is the life of the site certificates the service
	// issues (enrollment, certification, renewal); zero: pki.SiteValidity.
	SiteValidity time.Duration
	// RevocationsValidity is how long a revocation list is current (its
	// next update after its issue); zero: DefaultRevocationsValidity.
	RevocationsValidity time.Duration

	revoked revokedCache // the public revocation list, signed at most once a minute
}

// Init creates a vendor data directory: root and clearinghouse keys and
// certificates, the configuration and the database. It returns the first admin
// token, which is shown once.
func Init(ctx context.Context, dir, vendorName, dsn string, open OpenStore) (string, error) {
	if vendorName == "" {
		return "", errs.E(errs.Usage, "--name: the vendor name is required")
	}
	if _, err := os.Stat(filepath.Join(dir, fileConfig)); err == nil {
		return "", errs.E(errs.Conflict, "%s is already a vendor data directory; use it, or choose another --data", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", errs.Wrap(errs.Internal, err, "create data directory")
	}
	if dsn == "" {
		dsn = defaultDB
	}
	now := time.Now()
	rootKey, err := keys.GenerateSigner()
	if err != nil {
		return "", err
	}
	root, err := pki.NewRoot(rootKey, vendorName, now)
	if err != nil {
		return "", err
	}
	chKey, err := keys.GenerateSigner()
	if err != nil {
		return "", err
	}
	chDER, err := root.IssueClearinghouse(chKey.Public(), vendorName, now)
	if err != nil {
		return "", err
	}
	if err := rootKey.Save(filepath.Join(dir, fileRootKey)); err != nil {
		return "", errs.Wrap(errs.Internal, err, "save root key")
	}
	if err := chKey.Save(filepath.Join(dir, fileClearinghouseKey)); err != nil {
		return "", errs.Wrap(errs.Internal, err, "save clearinghouse key")
	}
	if err := writeCert(filepath.Join(dir, fileRootCert), root.Cert.Raw); err != nil {
		return "", err
	}
	if err := writeCert(filepath.Join(dir, fileClearinghouseCert), chDER); err != nil {
		return "", err
	}
	st, err := open(ctx, resolveDSN(dir, dsn))
	if err != nil {
		return "", err
	}
	defer st.Close()
	token, err := auth.NewToken(ctx, st, "initial admin token", now)
	if err != nil {
		return "", err
	}
	cfg, _ := json.MarshalIndent(Config{VendorName: vendorName, DB: dsn}, "", "  ")
	// The config is written last: its presence marks a complete data directory.
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, fileConfig), append(cfg, '\n'), 0o600); err != nil {
		return "", errs.Wrap(errs.Internal, err, "write configuration")
	}
	return token, nil
}

func resolveDSN(dir, dsn string) string {
	if strings.Contains(dsn, "://") || filepath.IsAbs(dsn) {
		return dsn
	}
	return filepath.Join(dir, dsn)
}

func writeCert(path string, der []byte) error {
	if err := fsutil.WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return errs.Wrap(errs.Internal, err, "write certificate")
	}
	return nil
}

// ReadCertFile reads one PEM or DER certificate from a file.
func ReadCertFile(path string) ([]byte, error) {
	der, err := pki.ReadCertFile(path)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "read certificate")
	}
	return der, nil
}

// Open loads a vendor data directory made by Init. A non-empty dsn overrides
// the configured database.
func Open(ctx context.Context, dir, dsn string, open OpenStore) (*Service, error) {
	raw, err := os.ReadFile(filepath.Join(dir, fileConfig))
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "%s is not a vendor data directory (run 'licet vendor init --data %s' first)", dir, dir)
	}
	var cfg Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "read %s", fileConfig)
	}
	if dsn != "" {
		cfg.DB = dsn
	}
	rootKey, err := keys.LoadSigner(filepath.Join(dir, fileRootKey))
	if errors.Is(err, fs.ErrNotExist) {
		rootKey = nil // kept offline: the issuing CA certifies sites
	} else if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "load root key")
	}
	rootDER, err := ReadCertFile(filepath.Join(dir, fileRootCert))
	if err != nil {
		return nil, err
	}
	rootCert, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "parse root certificate")
	}
	root := &pki.Authority{Cert: rootCert, Signer: rootKey}
	issuing, err := openIssuing(dir, root, cfg.VendorName, time.Now())
	if err != nil {
		return nil, err
	}
	chKey, err := keys.LoadSigner(filepath.Join(dir, fileClearinghouseKey))
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "load clearinghouse key")
	}
	chDER, err := ReadCertFile(filepath.Join(dir, fileClearinghouseCert))
	if err != nil {
		return nil, err
	}
	st, err := open(ctx, resolveDSN(dir, cfg.DB))
	if err != nil {
		return nil, err
	}
	return &Service{
		Store: st, Root: root, Issuing: issuing,
		Clearinghouse: chKey, ClearinghouseChain: [][]byte{chDER}, Config: cfg, Now: time.Now,
	}, nil
}

// openIssuing loads the issuing CA of dir, making it (certified by the root)
// if the directory has none and the root key is present: at init, and at the
// first start of a directory made before the issuing CA existed. A root of
// path length 1 (made by an older licet) cannot hold one: it keeps certifying
// sites itself, and nil is returned.
func openIssuing(dir string, root *pki.Authority, vendorName string, now time.Time) (*pki.Authority, error) {
	keyPath, certPath := filepath.Join(dir, fileIssuingKey), filepath.Join(dir, fileIssuingCert)
	_, statErr := os.Stat(certPath)
	if errors.Is(statErr, fs.ErrNotExist) && !pki.CanHoldIssuing(root.Cert) {
		if root.Signer == nil {
			return nil, errs.E(errs.Internal, "%s holds neither the root key nor an issuing CA, so it cannot certify sites; put the root key back as %s", dir, filepath.Join(dir, fileRootKey))
		}
		return nil, nil
	}
	var issue func(ed25519.PublicKey) ([]byte, error)
	if root.Signer != nil {
		issue = func(pub ed25519.PublicKey) ([]byte, error) { return root.IssueIssuing(pub, vendorName, now) }
	}
	return pki.LoadOrIssue(keyPath, certPath, issue, func(der []byte) (*x509.Certificate, error) {
		return pki.VerifyIssuing([][]byte{der}, root.Cert, now)
	})
}

// certifier returns the authority that certifies sites and the
// certificates that follow a site certificate in its chain: the issuing
// CA's, then the root's.
func (s *Service) certifier() (*pki.Authority, [][]byte, error) {
	if s.Issuing != nil {
		return s.Issuing, [][]byte{s.Issuing.Cert.Raw, s.Root.Cert.Raw}, nil
	}
	if s.Root.Signer == nil {
		return nil, nil, errs.E(errs.Internal, "this vendor holds neither an issuing CA nor the root key; sites cannot be certified")
	}
	return s.Root, [][]byte{s.Root.Cert.Raw}, nil
}

// certifySite issues a site certificate and returns it with its chain.
func (s *Service) certifySite(req *pki.SiteRequest, customerID string, now time.Time) ([]byte, [][]byte, error) {
	ca, rest, err := s.certifier()
	if err != nil {
		return nil, nil, err
	}
	der, err := ca.CertifySiteFor(req, customerID, now, s.siteValidity())
	if err != nil {
		return nil, nil, errs.Wrap(errs.Internal, err, "issue site certificate")
	}
	return der, append([][]byte{der}, rest...), nil
}

// Close closes the store.
func (s *Service) Close() error {
	if c, ok := s.Store.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// AddProduct records a product.
func (s *Service) AddProduct(ctx context.Context, p *Product) error {
	if err := ids.CheckSlug("product id", p.ID); err != nil {
		return err
	}
	if p.Name == "" {
		p.Name = p.ID
	}
	if p.Version == "" {
		return errs.E(errs.Invalid, "product version is required (e.g. 1.0)")
	}
	if p.Manufacturer == "" {
		p.Manufacturer = s.Config.VendorName
	}
	for _, f := range p.Features {
		if err := ids.CheckSlug("feature", f); err != nil {
			return err
		}
	}
	p.Created = s.Now().UTC()
	return s.Store.CreateProduct(ctx, p)
}

// ReleaseVersion makes version, which must be newer than the current one, the
// product's current version: packs issued from now on are for it, and
// upgrade orders upgrade to it.
func (s *Service) ReleaseVersion(ctx context.Context, productID, version string) (*Product, error) {
	p, err := s.Store.Product(ctx, productID)
	if err != nil {
		return nil, err
	}
	if version == "" {
		return nil, errs.E(errs.Invalid, "version is required (e.g. 2.0)")
	}
	if verify.CompareVersions(version, p.Version) <= 0 {
		return nil, errs.E(errs.Conflict, "product %s is at version %s; a release must be newer than that, not %s", p.ID, p.Version, version)
	}
	if err := s.Store.SetProductVersion(ctx, p.ID, version); err != nil {
		return nil, err
	}
	p.Version = version
	return p, nil
}

// AddCustomer records a customer.
func (s *Service) AddCustomer(ctx context.Context, c *Customer) error {
	if err := ids.CheckSlug("customer id", c.ID); err != nil {
		return err
	}
	if c.Name == "" {
		c.Name = c.ID
	}
	c.Created = s.Now().UTC()
	return s.Store.CreateCustomer(ctx, c)
}

// hashCode normalises an enrollment code as a person may type it, and hashes it.
func hashCode(code string) []byte {
	norm := strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(code))
	sum := sha256.Sum256([]byte(norm))
	return sum[:]
}

// CreateEnrollment makes a one-time enrollment code for a customer's site.
func (s *Service) CreateEnrollment(ctx context.Context, customerID string) (string, *Enrollment, error) {
	if _, err := s.Store.Customer(ctx, customerID); err != nil {
		return "", nil, err
	}
	raw := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(ids.Random(10)) // 16 characters, 80 bits
	code := raw[0:4] + "-" + raw[4:8] + "-" + raw[8:12] + "-" + raw[12:16]
	now := s.Now().UTC()
	e := &Enrollment{CodeHash: hashCode(code), CustomerID: customerID, Created: now, Expires: now.Add(EnrollmentTTL)}
	if err := s.Store.CreateEnrollment(ctx, e); err != nil {
		return "", nil, err
	}
	return code, e, nil
}

// EnrollSite certifies a site online against a one-time enrollment code and
// returns its certificate chain (site certificate, the issuing CA certificate,
// then the root).
func (s *Service) EnrollSite(ctx context.Context, code string, csrDER []byte) ([][]byte, error) {
	h := hashCode(code)
	e, err := s.Store.Enrollment(ctx, h)
	if errs.Is(err, errs.NotFound) {
		return nil, errs.E(errs.Forbidden, "enrollment code is not valid; ask the vendor for a new one")
	}
	if err != nil {
		return nil, err
	}
	now := s.Now().UTC()
	if e.UsedAt != nil {
		return nil, errs.E(errs.Conflict, "enrollment code was already used on %s; ask the vendor for a new one", e.UsedAt.Format(time.DateOnly))
	}
	if !now.Before(e.Expires) {
		return nil, errs.E(errs.Forbidden, "enrollment code expired on %s; ask the vendor for a new one", e.Expires.Format(time.DateOnly))
	}
	req, err := pki.ParseSiteRequest(csrDER)
	if err != nil {
		return nil, err
	}
	if err := s.refuseRevoked(ctx, req.SiteID); err != nil {
		return nil, err
	}
	der, chain, err := s.certifySite(req, e.CustomerID, now)
	if err != nil {
		return nil, err
	}
	site := &Site{ID: req.SiteID, CustomerID: e.CustomerID, Name: req.Name, CertDER: der, Certified: now}
	if err := s.Store.EnrollSite(ctx, h, site, now); err != nil {
		return nil, err
	}
	return chain, nil
}

// CertifySite certifies a site from its request file for a customer (the
// offline path, run by the vendor admin).
func (s *Service) CertifySite(ctx context.Context, customerID string, csrDER []byte) ([][]byte, error) {
	if _, err := s.Store.Customer(ctx, customerID); err != nil {
		return nil, err
	}
	req, err := pki.ParseSiteRequest(csrDER)
	if err != nil {
		return nil, err
	}
	if err := s.refuseRevoked(ctx, req.SiteID); err != nil {
		return nil, err
	}
	now := s.Now().UTC()
	der, chain, err := s.certifySite(req, customerID, now)
	if err != nil {
		return nil, err
	}
	if err := s.Store.PutSite(ctx, &Site{ID: req.SiteID, CustomerID: customerID, Name: req.Name, CertDER: der, Certified: now}); err != nil {
		return nil, err
	}
	return chain, nil
}

// AddOrder records an order and gives it an ID.
func (s *Service) AddOrder(ctx context.Context, o *Order) error {
	if _, err := s.Store.Customer(ctx, o.CustomerID); err != nil {
		return err
	}
	p, err := s.Store.Product(ctx, o.ProductID)
	if err != nil {
		return err
	}
	if err := pack.CheckPlatform(o.Platform); err != nil {
		return err
	}
	if o.Quantity < 1 || o.Quantity > 10_000_000 {
		return errs.E(errs.Invalid, "quantity %d is out of range: order 1 to 10,000,000 seats", o.Quantity)
	}
	for _, f := range o.Features {
		if !slices.Contains(p.Features, f) {
			return errs.E(errs.Invalid, "feature %q is not a feature of product %s (it has %v)", f, p.ID, p.Features)
		}
	}
	if o.Features == nil {
		o.Features = p.Features
	}
	if o.Upgrade != nil {
		if err := o.Upgrade.Check(p.Version); err != nil {
			return errs.Wrap(errs.Invalid, err, "upgrade order for %s %s", p.ID, p.Version)
		}
	}
	now := s.Now().UTC()
	if o.Expires != nil && !o.Expires.After(now) {
		return errs.E(errs.Invalid, "expiry date %s is in the past", o.Expires.Format(time.DateOnly))
	}
	if o.Expires != nil && o.FirstActive != nil && !o.Expires.After(*o.FirstActive) {
		return errs.E(errs.Invalid, "expiry date must be after the first-active date")
	}
	if err := settleTemporary(o); err != nil {
		return err
	}
	o.ID = ids.New("ord")
	o.Created = now
	o.PackID = ""
	return s.Store.CreateOrder(ctx, o)
}

// settleTemporary checks the temporary-license allowance an order states
// and stores the defaults for what it leaves out, so that the order shows
// what its pack will allow.
func settleTemporary(o *Order) error {
	if o.Upgrade != nil {
		if o.TemporaryLicenses != nil || o.TemporaryDays != nil {
			return errs.E(errs.Invalid, "an upgrade order allows no temporary licenses (its seats exchange licenses clients already have): leave out temporary_licenses and temporary_days (--temporary-licenses, --temporary-days)")
		}
		return nil
	}
	if n := o.TemporaryLicenses; n != nil && (*n < 0 || *n > o.Quantity) {
		return errs.E(errs.Invalid, "temporary_licenses (--temporary-licenses) %d is out of range: allow 0 (none) up to the order's quantity, %d", *n, o.Quantity)
	}
	if d := o.TemporaryDays; d != nil && (*d < 0 || *d > pack.MaxTemporaryDays) {
		return errs.E(errs.Invalid, "temporary_days (--temporary-days) %d is out of range: a temporary license lasts 1 to %d days", *d, pack.MaxTemporaryDays)
	}
	count, days := o.TemporaryAllowance()
	switch {
	case count == 0 && o.TemporaryDays == nil:
		days = 0
	case count > 0 && days == 0:
		return errs.E(errs.Invalid, "temporary_days (--temporary-days) 0 with %d temporary licenses: a temporary license lasts 1 to %d days; to allow none, set temporary_licenses (--temporary-licenses) to 0", count, pack.MaxTemporaryDays)
	}
	o.TemporaryLicenses, o.TemporaryDays = &count, &days
	return nil
}

// IssuePack answers a purchase request file with the license pack file of its
// order. A pack is issued once per order: asking again for the same order from
// the same site returns the same pack.
func (s *Service) IssuePack(ctx context.Context, requestFile []byte) ([]byte, *IssuedPack, error) {
	now := s.Now().UTC()
	req, site, err := pack.ReadPurchaseRequest(requestFile, s.Root.Cert, now)
	if err != nil {
		return nil, nil, err
	}
	if _, err := s.knownSite(ctx, site.SiteID, site.CustomerID, "buy packs"); err != nil {
		return nil, nil, err
	}
	o, err := s.Store.Order(ctx, req.OrderID)
	if errs.Is(err, errs.NotFound) {
		return nil, nil, errs.E(errs.NotFound, "order %s does not exist; check the order ID with the vendor", req.OrderID)
	}
	if err != nil {
		return nil, nil, err
	}
	if o.CustomerID != site.CustomerID {
		return nil, nil, errs.E(errs.Forbidden, "order %s belongs to another customer than site %s (customer %s)", o.ID, site.SiteID, site.CustomerID)
	}
	if o.PackID != "" {
		return s.existingPack(ctx, o, site.SiteID)
	}
	if o.Expires != nil && !o.Expires.After(now) {
		return nil, nil, errs.E(errs.Invalid, "order %s expired on %s", o.ID, o.Expires.Format(time.DateOnly))
	}
	p, err := s.Store.Product(ctx, o.ProductID)
	if err != nil {
		return nil, nil, err
	}
	// The temporary licenses the pack allows get serials of their own, after
	// the seats': license IDs stay unique across every site of the vendor.
	// An order that allows none gives a statement without an allowance.
	var temp *verify.TemporaryAllowance
	if count, days := o.TemporaryAllowance(); count > 0 {
		temp = &verify.TemporaryAllowance{Count: int64(count), MaxDays: days}
	}
	n := o.Quantity
	if temp != nil {
		n += int(temp.Count)
	}
	begin, err := s.Store.AllocateSerials(ctx, n)
	if err != nil {
		return nil, nil, err
	}
	if temp != nil {
		temp.BeginSerial = begin + int64(o.Quantity)
	}
	expires := o.Expires
	if o.Upgrade != nil && expires == nil {
		// A renewal or upgrade order without an end: its licenses get a term
		// of their own, stated in the pack, rather than running to the end
		// of the site certificate (years after the seat pack expired).
		end := now.Truncate(time.Second).Add(pack.DefaultUpgradeTerm)
		expires = &end
	}
	doc := &pack.Pack{
		PackID: ids.New("pk"), OrderID: o.ID, SiteID: site.SiteID, CustomerID: o.CustomerID,
		Issued: now.Truncate(time.Second), FirstActive: o.FirstActive, Expires: expires,
		BeginSerial: begin, Quantity: o.Quantity, Platform: o.Platform,
		Product:  pack.Product{ID: p.ID, Name: p.Name, Version: p.Version},
		Features: o.Features, Descriptions: p.Descriptions, Manufacturer: p.Manufacturer, ProductData: p.Data,
		Upgrade: o.Upgrade,
	}
	if err := pack.SignStatement(doc, temp, s.Clearinghouse, s.ClearinghouseChain); err != nil {
		return nil, nil, err
	}
	file, err := pack.Seal(doc, s.Clearinghouse, s.ClearinghouseChain, site.HPKEKey)
	if err != nil {
		return nil, nil, errs.Wrap(errs.Internal, err, "seal pack")
	}
	rec := &IssuedPack{PackID: doc.PackID, OrderID: o.ID, SiteID: site.SiteID, BeginSerial: begin, Quantity: o.Quantity, Issued: now, File: file}
	if err := s.Store.RecordPack(ctx, rec); err != nil {
		if errs.Is(err, errs.Conflict) { // a concurrent request for the same order won
			return s.existingPack(ctx, o, site.SiteID)
		}
		return nil, nil, err
	}
	return file, rec, nil
}

func (s *Service) existingPack(ctx context.Context, o *Order, siteID string) ([]byte, *IssuedPack, error) {
	prev, err := s.Store.PackForOrder(ctx, o.ID)
	if err != nil {
		return nil, nil, err
	}
	if prev.SiteID != siteID {
		return nil, nil, errs.E(errs.Conflict, "order %s was already fulfilled with pack %s for site %s; a pack is issued once per order", o.ID, prev.PackID, prev.SiteID)
	}
	return prev.File, prev, nil
}

// RootPEM returns the vendor root certificate in PEM, for distribution.
func (s *Service) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Root.Cert.Raw})
}

// String describes the service without secrets.
func (s *Service) String() string {
	return fmt.Sprintf("clearinghouse %q root %s", s.Config.VendorName, pki.Fingerprint(s.Root.Cert.Raw)[:16])
}

package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/licet/licet/api"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/fsutil"
	"github.com/licet/licet/internal/ids"
	"github.com/licet/licet/licensing/challenge"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/licensing/softid"
	"github.com/licet/licet/verify"
)

// Files of the license cache in the agent directory.
const (
	RootFile = "root.crt" // the vendor root, pinned on first use
	// RootFingerprintFile holds the SHA-256 (hex) of the vendor root the
	// agent was told to expect ('licet agent init --root-fingerprint'): the
	// root fetched on first use is pinned only if it matches.
	RootFingerprintFile = "root.fingerprint"
	licensesDir         = "licenses" // one PEM file per product
)

// AcquireOptions say what to acquire and from where.
type AcquireOptions struct {
	Server     string    // the site, or a gateway in front of it
	ProductID  string    // the product to license
	SoftwareID softid.ID // the client's software ID (platform, vendor, revision)
	Image      string    // the executable whose integrity the challenge proves; default this program
	Now        time.Time // for verification; zero means now
	// Clock, if set, gives the time of verification instead of Now, read
	// when the license arrives (a license is valid from the moment of its grant).
	Clock func() time.Time
	// HTTP carries the requests; nil means a client with a 30 s timeout.
	// Set it to reach a gateway served over HTTPS with a private CA.
	HTTP *http.Client
}

// LicensePath is where the license of a product is cached.
func (id *Identity) LicensePath(product string) string {
	return filepath.Join(id.Dir, licensesDir, product+".pem")
}

// root returns the pinned vendor root, pinning the server's on first use.
func (id *Identity) root(ctx context.Context, c *api.Client) ([]byte, error) {
	path := filepath.Join(id.Dir, RootFile)
	pem, err := os.ReadFile(path)
	if err == nil {
		return pem, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, errs.Wrap(errs.Internal, err, "read pinned vendor root")
	}
	if pem, err = c.Root(ctx); err != nil {
		return nil, err
	}
	v, err := verify.New(pem)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "the server at %s offered no valid vendor root", c.BaseURL)
	}
	want, err := os.ReadFile(filepath.Join(id.Dir, RootFingerprintFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, errs.Wrap(errs.Internal, err, "read the expected vendor root fingerprint")
	}
	if err == nil {
		got := sha256.Sum256(v.Root().Raw)
		if w := strings.TrimSpace(string(want)); !strings.EqualFold(w, hex.EncodeToString(got[:])) {
			return nil, errs.E(errs.Invalid, "the server at %s offered vendor root %x, not the %s this agent was set up to trust; the root was not pinned: check the server address, or ask the vendor for its root fingerprint", c.BaseURL, got, w)
		}
	}
	if err := fsutil.WriteFileAtomic(path, pem, 0o644); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "pin vendor root")
	}
	return pem, nil
}

// PinRootFingerprint records the SHA-256 (64 hex digits, colons allowed) of
// the vendor root this agent trusts: the root is fetched from the server on
// first use but pinned only if it has this fingerprint.
func (id *Identity) PinRootFingerprint(fingerprint string) error {
	fp := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(fingerprint), ":", ""))
	if b, err := hex.DecodeString(fp); err != nil || len(b) != sha256.Size {
		return errs.E(errs.Invalid, "root fingerprint %q is not 64 hex digits (the SHA-256 'licet vendor init' printed)", fingerprint)
	}
	return fsutil.WriteFileAtomic(filepath.Join(id.Dir, RootFingerprintFile), []byte(fp+"\n"), 0o644)
}

// PinRoot installs the vendor root this agent trusts, instead of trusting the
// server's on first use.
func (id *Identity) PinRoot(rootPEM []byte) error {
	if _, err := verify.New(rootPEM); err != nil {
		return errs.Wrap(errs.Invalid, err, "not a vendor root certificate")
	}
	return fsutil.WriteFileAtomic(filepath.Join(id.Dir, RootFile), rootPEM, 0o644)
}

// Acquire runs the whole grant: challenge, answer over the image, signed
// request; then it decrypts the license, verifies it against the pinned vendor
// root, and stores it in the license cache.
func (id *Identity) Acquire(ctx context.Context, opts AcquireOptions) (*verify.License, bool, error) {
	lic, _, reissued, err := id.acquire(ctx, opts)
	return lic, reissued, err
}

// acquire is Acquire that also returns the license file (PEM) it verified
// and stored, so that a caller never pairs the license with a file read
// from the cache later (which another process may have replaced meanwhile).
func (id *Identity) acquire(ctx context.Context, opts AcquireOptions) (*verify.License, []byte, bool, error) {
	if err := opts.SoftwareID.Check(); err != nil {
		return nil, nil, false, err
	}
	if opts.SoftwareID.Platform() != id.Platform {
		return nil, nil, false, errs.E(errs.Invalid, "software ID %s is for platform %s, but this agent is %s", opts.SoftwareID, opts.SoftwareID.Platform(), id.Platform)
	}
	image := opts.Image
	if image == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, nil, false, errs.Wrap(errs.Internal, err, "find this program's executable; pass --image")
		}
		image = exe
	}
	c := &api.Client{BaseURL: opts.Server, HTTP: opts.HTTP}
	rootPEM, err := id.root(ctx, c)
	if err != nil {
		return nil, nil, false, err
	}
	ch, err := c.Challenge(ctx, licenseserver.ChallengeRequest{SoftwareID: uint32(opts.SoftwareID), ProductID: opts.ProductID, ClientKey: id.Signer.Public()})
	if err != nil {
		return nil, nil, false, err
	}
	answer, err := challenge.AnswerFile(ch.Nonce, image)
	if err != nil {
		return nil, nil, false, err
	}
	req := &licenseserver.GrantRequest{
		ChallengeID: ch.ChallengeID, Answer: answer, ClientKey: id.Signer.Public(),
		ClientHPKEKey: id.Decrypter.PublicBytes(), SystemID: id.SystemID, ProductID: opts.ProductID,
	}
	req.Signature = id.Signer.Sign(licenseserver.GrantMessage(req))
	resp, err := c.Grant(ctx, req)
	if err != nil {
		return nil, nil, false, err
	}
	if opts.Clock != nil {
		opts.Now = opts.Clock()
	}
	lic, pem, err := id.open([]byte(resp.License), rootPEM, opts)
	if err != nil {
		return nil, nil, false, err
	}
	if err := id.storeLicense(opts.ProductID, pem); err != nil {
		return nil, nil, false, err
	}
	return lic, pem, resp.Reissued, nil
}

// storeLicense replaces the cached license of product atomically.
func (id *Identity) storeLicense(product string, pem []byte) error {
	if err := os.MkdirAll(filepath.Join(id.Dir, licensesDir), 0o700); err != nil {
		return errs.Wrap(errs.Internal, err, "create license cache")
	}
	if err := fsutil.WriteFileAtomic(id.LicensePath(product), pem, 0o600); err != nil {
		return errs.Wrap(errs.Internal, err, "store license")
	}
	return nil
}

// InstallUpdate decrypts a license file sealed to this client (an armored
// LICENSE file, as a license server or a gateway's Licet-License-Update
// header carries it), verifies it against the pinned vendor root for this
// client's key and product at now (zero: the current time), and atomically
// replaces the cached license of product with it.
func (id *Identity) InstallUpdate(file []byte, product string, now time.Time) (*verify.License, []byte, error) {
	lic, pem, err := id.openUpdate(file, product, now)
	if err != nil {
		return nil, nil, err
	}
	if err := id.storeLicense(product, pem); err != nil {
		return nil, nil, err
	}
	return lic, pem, nil
}

// openUpdate is InstallUpdate without storing the license.
func (id *Identity) openUpdate(file []byte, product string, now time.Time) (*verify.License, []byte, error) {
	if err := ids.CheckSlug("product", product); err != nil {
		return nil, nil, err
	}
	rootPEM, err := os.ReadFile(filepath.Join(id.Dir, RootFile))
	if err != nil {
		return nil, nil, errs.Wrap(errs.Invalid, err, "no pinned vendor root to check the license update against")
	}
	return id.open(file, rootPEM, AcquireOptions{ProductID: product, Now: now})
}

// open decrypts a license file and verifies it for this client.
func (id *Identity) open(file, rootPEM []byte, opts AcquireOptions) (*verify.License, []byte, error) {
	pem, err := licenseserver.OpenLicense(file, id.Decrypter)
	if err != nil {
		return nil, nil, err
	}
	lic, err := id.check(pem, rootPEM, opts.ProductID, opts.Now, false)
	if err != nil {
		return nil, nil, errs.Wrap(errs.Invalid, err, "the license the server sent does not verify")
	}
	return lic, pem, nil
}

// check verifies a license file for this client; allowExpired accepts one
// that has expired (and is otherwise valid).
func (id *Identity) check(pem, rootPEM []byte, product string, now time.Time, allowExpired bool) (*verify.License, error) {
	v, err := verify.New(rootPEM)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "pinned vendor root")
	}
	// A license without a pack statement (from a license server older than
	// statements) is kept: the application's verifier or gateway decides
	// whether it admits such licenses. One with a statement must lie inside it.
	lic, err := v.Verify(pem, verify.Options{Now: now, Product: product, ClientKey: id.Signer.Public(), AllowExpired: allowExpired, AllowUnbound: true})
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "license of %s", product)
	}
	if lic.SystemID != id.SystemID {
		// A license stays on the machine it was granted to: a copied agent
		// directory (with its client key) on other hardware does not use it.
		return nil, errs.E(errs.Invalid, "license %d of %s was granted to system %q, and this machine is %q: a license stays on its machine. "+
			"Ask the license server's administrator to release it ('licet site license release --license %d'), then acquire it again",
			lic.LicenseID, product, lic.SystemID, id.SystemID, lic.LicenseID)
	}
	return lic, nil
}

// License reads the cached license of a product and verifies it offline:
// chain to the pinned root, dates, product, and binding to this client's key.
func (id *Identity) License(product string, now time.Time) (*verify.License, error) {
	lic, _, err := id.cachedLicense(product, now, false)
	return lic, err
}

// cachedLicense is License that also returns the license file (PEM);
// allowExpired accepts a license that has expired (a client presents it
// still, so that a gateway can upgrade it).
func (id *Identity) cachedLicense(product string, now time.Time, allowExpired bool) (*verify.License, []byte, error) {
	if err := ids.CheckSlug("product", product); err != nil {
		return nil, nil, err
	}
	pem, err := os.ReadFile(id.LicensePath(product))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, errs.E(errs.NotFound, "no license of %s in the cache; run 'licet agent license acquire'", product)
	}
	if err != nil {
		return nil, nil, errs.Wrap(errs.Internal, err, "read license")
	}
	rootPEM, err := os.ReadFile(filepath.Join(id.Dir, RootFile))
	if err != nil {
		return nil, nil, errs.Wrap(errs.Invalid, err, "no pinned vendor root; acquire a license first")
	}
	lic, err := id.check(pem, rootPEM, product, now, allowExpired)
	if err != nil {
		return nil, nil, err
	}
	return lic, pem, nil
}

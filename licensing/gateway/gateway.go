package gateway

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/verify"
)

// The headers a client sends.
const (
	// HeaderLicense carries the license file, base64 of its PEM.
	HeaderLicense = "Licet-License"
	// HeaderSignature carries the client's signature over the request.
	HeaderSignature = "Licet-Signature"
)

// HeaderLicenseUpdate is the response header by which the gateway tells a
// client that the license it presented was replaced (an upgrade). Its value
// is a path, LicenseUpdatePath followed by 64 lowercase hex digits (the
// SHA-256 of the new license certificate); a GET of that path at the gateway,
// without credentials, answers the armored LICENSE file of the new license,
// encrypted to the client's key as the license server sealed it (about 8 kB:
// too big for a header that proxies must buffer). The client decrypts it,
// checks it and replaces its cached license. The file stays available as
// long as the gateway remembers the exchange (10 minutes).
const HeaderLicenseUpdate = "Licet-License-Update"

// LicenseUpdatePath is where the gateway serves upgraded license files; see
// HeaderLicenseUpdate. Middleware answers GET requests under it itself.
const LicenseUpdatePath = "/.well-known/licet/license-update/"

// The headers the gateway sets for the application on a licensed request.
// Incoming headers of these names (and any other Licet-Client-* or
// Licet-License-*) are removed first.
const (
	HeaderClientID  = "Licet-Client-Id"         // the client ID
	HeaderLicenseID = "Licet-License-Id"        // the license ID, decimal
	HeaderProduct   = "Licet-License-Product"   // the product ID
	HeaderVersion   = "Licet-License-Version"   // the product version
	HeaderPlatform  = "Licet-License-Platform"  // the platform
	HeaderFeatures  = "Licet-License-Features"  // the features, comma-separated
	HeaderExpires   = "Licet-License-Expires"   // the license's NotAfter, RFC 3339, UTC
	HeaderTemporary = "Licet-License-Temporary" // "true" or "false"
	HeaderSite      = "Licet-License-Site"      // the ID of the site that issued the license
	HeaderCustomer  = "Licet-License-Customer"  // the customer the vendor certified that site for
)

// identityHeaders are the headers set on success, in the order of entry.hdr.
var identityHeaders = [...]string{
	HeaderClientID, HeaderLicenseID, HeaderProduct, HeaderVersion,
	HeaderPlatform, HeaderFeatures, HeaderExpires, HeaderTemporary,
	HeaderSite, HeaderCustomer,
}

// Defaults of Options.
const (
	DefaultMaxSkew   = 60 * time.Second // allowed clock difference of a signed request
	DefaultMaxBody   = 1 << 20          // bytes of body a signed request may carry
	DefaultMaxNonces = 1 << 20          // nonces remembered at once: about 40 MB at most, 14,000 signed requests/s at the default skew
)

// licenseCacheSize is the number of verified licenses a gateway keeps.
const licenseCacheSize = 1 << 14

// maxLicenseHeader bounds the Licet-License header (a license file is about
// 1.5 kB, its base64 about 2 kB).
const maxLicenseHeader = 16 << 10

// Options configure a gateway.
type Options struct {
	// Product is the product ID a license must be for. Required.
	Product string
	// SiteURL is where clients get licenses: the license server, or this
	// gateway's own license endpoint. It is named in the WWW-Authenticate
	// challenge of every refusal. Optional.
	SiteURL string
	// PublicNames are the authorities (host, or host:port; a port of 80 or
	// 443 is left out) that a signed request may be addressed to: its
	// signed @authority (or, in the Licet-Signature scheme, its signed host)
	// must be one of them, so that a request signed for one gateway is
	// refused by another. Empty: any authority (for Middleware embedded in
	// an application that cannot know its names; licet gateway always sets
	// them, by default to its listen address).
	PublicNames []string
	// AcceptLicetSignature also accepts requests signed in the
	// Licet-Signature scheme of licet before HTTP Message Signatures
	// (SignRequestV1), which does not cover headers: for a transition while
	// clients are updated. Off: such requests are refused with a message
	// that says to update the client.
	AcceptLicetSignature bool
	// MaxSkew is how far the ts of a signed request may be from the gateway's
	// clock, either way; default DefaultMaxSkew, at least one second.
	MaxSkew time.Duration
	// MaxBody bounds the body of a signed request (the gateway reads it to
	// check the signature); default DefaultMaxBody. It does not apply to
	// requests authenticated by a TLS client certificate.
	MaxBody int64
	// MaxNonces bounds the nonces the gateway remembers; when full, signed
	// requests get 429 until old nonces expire. A nonce is remembered about
	// MaxSkew + MaxSkew/4 when client clocks are right, so the default,
	// DefaultMaxNonces, sustains about 14,000 signed requests per second
	// with the default MaxSkew; each nonce costs about 40 bytes.
	MaxNonces int
	// MaxNoncesPerClient is the share of MaxNonces one client key (one
	// license holder) may hold, so that one client cannot fill the memory
	// for everyone: its further signed requests get 429 until its own nonces
	// expire. Default MaxNonces/64 (16,384 at the default MaxNonces: about
	// 200 signed requests per second from one client); -1 for no quota.
	MaxNoncesPerClient int
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Log receives upstream failures; default slog.Default().
	Log *slog.Logger
	// Transport carries requests to the upstream (NewProxy and
	// NewReverseProxy only); default a clone of http.DefaultTransport that
	// keeps up to 256 idle connections to the upstream.
	Transport http.RoundTripper
	// Legacy, if set, is the legacy license store: a request with a
	// Licet-Signature but no Licet-License header is checked with the
	// license its keyid deposited there (see "Legacy clients" in the
	// package documentation). Optional.
	Legacy *LegacyStore
	// MinVersion, if set, is the oldest product version let through: a
	// license for an older version is refused (error="old_version") or, with
	// Upgrade set, upgraded. Versions compare as verify.CompareVersions does.
	MinVersion string
	// Upgrade, if set, exchanges a license that has expired, or is older than
	// MinVersion, for an upgraded one once its client has proved it holds
	// the key (see upgrade.go and SiteUpgrader); the request then goes through
	// and the new license file is returned in HeaderLicenseUpdate. Nil: such
	// licenses are refused.
	Upgrade func(ctx context.Context, licensePEM []byte) (*Upgraded, error)
	// UpgradeSeats, if set with Upgrade, returns a value that changes when
	// the license server's upgrade seats change (SiteUpgradeSeats): a failed
	// exchange, otherwise remembered 30 s, is forgotten once it has changed,
	// so that seats just bought are used at once. The gateway asks at most
	// every UpgradeSeatsPoll, and only while it refuses a license for a
	// remembered failure. Nil: failures are remembered 30 s.
	UpgradeSeats func(ctx context.Context) (string, error)
	// Sites and Customers, if set, restrict whose licenses pass: a license
	// must come from one of the Sites (site IDs) or from a site certified
	// for one of the Customers (customer IDs); any other vendor customer's
	// license is refused (error="wrong_site"). Empty: every site the vendor
	// certified.
	Sites, Customers []string
	// AllowUnbound accepts licenses without a pack statement (issued by a
	// license server older than pack statements), for a transition; see
	// verify.Options.AllowUnbound. Off: they are refused (error="not_sold").
	AllowUnbound bool
	// OnCheck, if set, is told the outcome of every license check, for
	// metrics: reason "" for a request let through, else the refusal's
	// reason (the error= of its WWW-Authenticate challenge, or "other" for a
	// refusal without one, such as a body over the limit). It must be quick.
	OnCheck func(reason string)
	// OnExchange, if set, is told the outcome of every upgrade exchange with
	// the license server (Upgrade), for metrics: reason "" for an upgraded
	// license, else why not (the license server's error code, such as
	// "exhausted" when it has no upgrade seat left, or the gateway's refusal
	// reason of the license it got back).
	OnExchange func(reason string)
	// Revocations, if set, returns the vendor's current list of revoked
	// sites (verify.Verifier.ParseRevocations), called on every request so
	// that a refreshed list applies at once, to licenses already verified
	// too: a license of a listed site is refused (error="site_revoked"), and
	// while the list is out of date (verify.Revocations.Fresh) every request
	// gets 503 rather than passing licenses of sites revoked since. Nil, or
	// a nil list: no revocation check.
	Revocations func() *verify.Revocations
}

func (o Options) log() *slog.Logger {
	if o.Log != nil {
		return o.Log
	}
	return slog.Default()
}

// ctxKey is the context key of the verified license.
type ctxKey struct{}

// LicenseFrom returns the license the gateway verified for the request whose
// context is ctx, or nil outside the gateway. The license may be shared with
// other requests of the same client: do not modify it.
func LicenseFrom(ctx context.Context) *verify.License {
	lic, _ := ctx.Value(ctxKey{}).(*verify.License)
	return lic
}

// Middleware returns a handler wrapper that lets a request through only with a
// valid license for opts.Product, presented as the TLS client certificate or
// as signed headers (see the package documentation). Every handler it wraps
// shares one nonce memory and one cache of verified licenses (16384 at most). It panics if v
// is nil or opts.Product is empty.
func Middleware(v *verify.Verifier, opts Options) func(http.Handler) http.Handler {
	c := newChecker(v, opts)
	return func(next http.Handler) http.Handler {
		if next == nil {
			panic("gateway: Middleware given a nil handler")
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, LicenseUpdatePath) {
				c.serveUpdate(w, r)
				return
			}
			e, body, f := c.check(r)
			if f != nil {
				c.refuse(w, f)
				return
			}
			if c.onCheck != nil {
				c.onCheck("")
			}
			// The handler gets a copy: a handler must not modify its request.
			r2 := r.WithContext(context.WithValue(r.Context(), ctxKey{}, e.lic))
			r2.Header = identityHeader(r.Header, e)
			if e.update != "" {
				w.Header().Set(HeaderLicenseUpdate, e.update)
			}
			switch {
			case body == emptyBody:
				r2.Body, r2.ContentLength, r2.TransferEncoding = http.NoBody, 0, nil
			case body != nil:
				r2.Body, r2.ContentLength, r2.TransferEncoding = body, body.Size(), nil
			}
			next.ServeHTTP(w, r2)
		})
	}
}

// reason is the machine-readable cause of a refusal, the error parameter of
// the WWW-Authenticate challenge.
type reason int

const (
	noChallenge reason = iota // not a credential problem: no challenge
	reasonRequired
	reasonInvalidLicense
	reasonExpired
	reasonNotYetValid
	reasonWrongProduct
	reasonWrongClient
	reasonInvalidSignature
	reasonStale
	reasonReplayed
	reasonOldVersion
	reasonWrongGateway
	reasonNotSold
	reasonWrongSite
	reasonSiteRevoked
	numReasons
)

var reasonNames = [numReasons]string{
	reasonRequired:         "license_required",
	reasonInvalidLicense:   "invalid_license",
	reasonExpired:          "license_expired",
	reasonNotYetValid:      "license_not_yet_valid",
	reasonWrongProduct:     "wrong_product",
	reasonWrongClient:      "wrong_client",
	reasonInvalidSignature: "invalid_signature",
	reasonStale:            "stale_request",
	reasonReplayed:         "replayed_request",
	reasonOldVersion:       "old_version",
	reasonWrongGateway:     "wrong_gateway",
	reasonNotSold:          "not_sold",
	reasonWrongSite:        "wrong_site",
	reasonSiteRevoked:      "site_revoked",
}

// failure is a refused request.
type failure struct {
	reason reason
	err    error // an *errs.Error
}

type checker struct {
	v           *verify.Verifier
	product     string
	skew        int64 // seconds
	maxBody     int64
	now         func() time.Time
	nonces      *nonceCache
	byCert      *licenseCache // verified licenses by SHA-256 of the TLS client certificate
	byHeader    *licenseCache // verified licenses by SHA-256 of the Licet-License header
	legacy      *LegacyStore  // Options.Legacy; nil without one
	minVersion  string
	upgrade     func(ctx context.Context, licensePEM []byte) (*Upgraded, error)
	ups         upgrades
	seats       upgradeSeats
	publicNames []string                   // Options.PublicNames, normalized
	acceptV1    bool                       // Options.AcceptLicetSignature
	challenge   [numReasons]string         // WWW-Authenticate values
	where       string                     // where to get a license, for messages
	server      string                     // the same, short, after a verify error's own advice
	unbound     bool                       // Options.AllowUnbound
	sites       map[string]bool            // Options.Sites; nil: any
	customers   map[string]bool            // Options.Customers; nil: any
	onCheck     func(reason string)        // Options.OnCheck
	onExchange  func(reason string)        // Options.OnExchange
	revs        func() *verify.Revocations // Options.Revocations
}

// errWrongSite: a license of a site outside the gateway's scope (Options.Sites, Options.Customers).
var errWrongSite = errors.New("license of a site this gateway does not serve")

// revocations returns the current revocation list, or nil.
func (c *checker) revocations() *verify.Revocations {
	if c.revs == nil {
		return nil
	}
	return c.revs()
}

// revoked checks a verified (perhaps cached) license against the current
// revocation list.
func (c *checker) revoked(lic *verify.License, now time.Time) *failure {
	l := c.revocations()
	if l == nil {
		return nil
	}
	if err := l.Check(lic.SiteID, now); err != nil {
		return c.verifyFailure(err)
	}
	return nil
}

// verifyChain is c.v.VerifyChain with the gateway's options and scope.
func (c *checker) verifyChain(chain [][]byte, opts verify.Options) (*verify.License, error) {
	opts.AllowUnbound, opts.Revocations = c.unbound, c.revocations()
	lic, err := c.v.VerifyChain(chain, opts)
	if err != nil {
		return nil, err
	}
	return lic, c.inScope(lic)
}

// verifyPEM is c.v.Verify with the gateway's options and scope.
func (c *checker) verifyPEM(pem []byte, opts verify.Options) (*verify.License, error) {
	opts.AllowUnbound, opts.Revocations = c.unbound, c.revocations()
	lic, err := c.v.Verify(pem, opts)
	if err != nil {
		return nil, err
	}
	return lic, c.inScope(lic)
}

// inScope checks that lic comes from a site the gateway serves.
func (c *checker) inScope(lic *verify.License) error {
	if (c.sites == nil && c.customers == nil) || c.sites[lic.SiteID] || c.customers[lic.CustomerID] {
		return nil
	}
	return fmt.Errorf("%w: license %d comes from license server %s (customer %s), and this gateway serves only licenses of its own organisation's license servers; ask your organisation's license server for a license",
		errWrongSite, lic.LicenseID, lic.SiteID, lic.CustomerID)
}

// set returns the set of ids, or nil if there are none.
func set(ids []string) map[string]bool {
	if len(ids) == 0 {
		return nil
	}
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

func newChecker(v *verify.Verifier, opts Options) *checker {
	if v == nil {
		panic("gateway: nil verifier")
	}
	if opts.Product == "" {
		panic("gateway: Options.Product is empty; name the product a license must be for")
	}
	c := &checker{v: v, product: opts.Product, now: opts.Now, maxBody: opts.MaxBody}
	if c.now == nil {
		c.now = time.Now
	}
	if c.maxBody <= 0 {
		c.maxBody = DefaultMaxBody
	}
	skew := opts.MaxSkew
	if skew <= 0 {
		skew = DefaultMaxSkew
	}
	c.skew = max(int64(skew/time.Second), 1)
	maxNonces := opts.MaxNonces
	if maxNonces <= 0 {
		maxNonces = DefaultMaxNonces
	}
	perClient := opts.MaxNoncesPerClient
	if perClient == 0 {
		perClient = max(maxNonces/64, 1)
	}
	c.nonces = newNonceCache(c.skew, maxNonces, max(perClient, 0))
	c.byCert = newLicenseCache(licenseCacheSize / 2)
	c.byHeader = newLicenseCache(licenseCacheSize / 2)
	c.legacy = opts.Legacy
	c.publicNames, c.acceptV1 = normPublicNames(opts.PublicNames), opts.AcceptLicetSignature
	c.minVersion, c.upgrade, c.seats.ask, c.seats.log = opts.MinVersion, opts.Upgrade, opts.UpgradeSeats, opts.log()
	c.unbound, c.sites, c.customers, c.revs = opts.AllowUnbound, set(opts.Sites), set(opts.Customers), opts.Revocations
	c.onCheck, c.onExchange = opts.OnCheck, opts.OnExchange
	c.ups.m, c.ups.files = map[[32]byte]*upgradeCall{}, map[string]*upgradeCall{}

	base := "Licet realm=" + quote(opts.Product)
	if opts.SiteURL != "" {
		base += ", site=" + quote(opts.SiteURL)
	}
	for r := reasonRequired; r < numReasons; r++ {
		c.challenge[r] = base + `, error="` + reasonNames[r] + `"`
	}
	c.where = fmt.Sprintf("get a license for product %q from your license server", opts.Product)
	if opts.SiteURL != "" {
		c.where = fmt.Sprintf("get a license for product %q from the license server at %s", opts.Product, opts.SiteURL)
		c.server = " (license server: " + opts.SiteURL + ")"
	}
	return c
}

// quote makes s an HTTP quoted-string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '"' || ch == '\\':
			b.WriteByte('\\')
			b.WriteByte(ch)
		case ch < 0x20 || ch == 0x7f:
			// not representable; drop
		default:
			b.WriteByte(ch)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func (c *checker) fail(r reason, format string, args ...any) *failure {
	return &failure{reason: r, err: errs.E(errs.Unauthenticated, format, args...)}
}

// verifyFailure classifies an error of package verify.
func (c *checker) verifyFailure(err error) *failure {
	r := reasonInvalidLicense
	switch {
	case errors.Is(err, verify.ErrExpired):
		r = reasonExpired
	case errors.Is(err, verify.ErrNotYetValid):
		r = reasonNotYetValid
	case errors.Is(err, verify.ErrWrongProduct):
		r = reasonWrongProduct
	case errors.Is(err, verify.ErrWrongClient):
		r = reasonWrongClient
	case errors.Is(err, verify.ErrNotSold):
		r = reasonNotSold
	case errors.Is(err, errWrongSite):
		r = reasonWrongSite
	case errors.Is(err, verify.ErrRevokedSite):
		r = reasonSiteRevoked
	case errors.Is(err, verify.ErrStaleRevocations):
		// The gateway's problem, not the client's: no challenge, 503.
		return &failure{err: errs.E(errs.Exhausted, "the gateway cannot check licenses: %v (the gateway's administrator sets --revocations)", err)}
	}
	return c.fail(r, "license refused: %v%s", err, c.server)
}

// check authenticates r. For a signed request it reads the body and returns
// it, to be handed on instead of r.Body.
func (c *checker) check(r *http.Request) (*entry, *bodyReader, *failure) {
	now := c.now()
	for k := range r.Trailer {
		if isLicetHeader(k) {
			return nil, nil, &failure{err: errs.E(errs.Invalid, "the request declares the trailer %s; Licet headers cannot be sent as trailers", k)}
		}
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		e, f := c.checkTLS(r, now)
		return e, nil, f
	}
	lh := r.Header[HeaderLicense]
	p, signed, f := c.requestSignature(r)
	switch {
	case f != nil:
		return nil, nil, f
	case len(lh) == 0 && !signed:
		return nil, nil, c.fail(reasonRequired, "present a license: use your license file as the TLS client certificate, "+
			"or send it in the %s header and sign the request with HTTP Message Signatures (see the licet gateway documentation); %s",
			HeaderLicense, c.where)
	case len(lh) == 0 && c.legacy != nil:
		return c.checkLegacy(r, now, p) // legacy.go
	case len(lh) != 1:
		return nil, nil, c.fail(reasonRequired, "a signed request came without the %s header (or with more than one): send the license file, base64, in one %s header; %s",
			HeaderLicense, HeaderLicense, c.where)
	case !signed:
		return nil, nil, c.fail(reasonInvalidSignature, "the %s header needs a signature over the request: %s, %s and %s headers (HTTP Message Signatures, RFC 9421) by the license's key",
			HeaderLicense, HeaderSignatureInput, HeaderMessageSignature, HeaderContentDigest)
	}
	return c.checkSigned(r, now, lh[0], p)
}

func (c *checker) checkTLS(r *http.Request, now time.Time) (*entry, *failure) {
	certs := r.TLS.PeerCertificates
	if len(certs) < 2 {
		return nil, c.fail(reasonInvalidLicense, "the TLS client certificate chain holds one certificate; present the whole license file (the license, then the site certificate) as the chain")
	}
	leaf := certs[0]
	pub, ok := leaf.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, c.fail(reasonInvalidLicense, "the TLS client certificate %q is not a licet license (not an Ed25519 key); present your license file as the client certificate, %s",
			leaf.Subject.CommonName, c.where)
	}
	key := sha256.Sum256(leaf.Raw)
	e := c.byCert.get(key, now)
	if e != nil && !bytes.Equal(e.lic.Site.Raw, certs[1].Raw) {
		e = nil // the same license with another (e.g. renewed) site certificate
	}
	if e == nil {
		// The license, the site and (for a site the vendor's issuing CA
		// certified) the issuing CA certificate.
		chain, n := [3][]byte{leaf.Raw, certs[1].Raw}, 2
		if len(certs) > 2 {
			chain[2], n = certs[2].Raw, 3
		}
		// With upgrades on, an expired license is accepted here (never cached)
		// and exchanged: the handshake proved the key.
		lic, err := c.verifyChain(chain[:n], verify.Options{Now: now, Product: c.product, ClientKey: pub, AllowExpired: c.upgrade != nil})
		if err != nil {
			return nil, c.verifyFailure(err)
		}
		if !now.Before(lic.NotAfter) {
			return c.exchange(r.Context(), lic, now)
		}
		e = c.byCert.put(key, lic, c.v.Root())
	}
	if f := c.revoked(e.lic, now); f != nil {
		return nil, f
	}
	if c.stale(e.lic) {
		return c.exchange(r.Context(), e.lic, now)
	}
	return e, nil
}

// scratch holds per-request buffers.
type scratch struct {
	a, b []byte
}

var scratchPool = sync.Pool{New: func() any { return &scratch{a: make([]byte, 0, 2048), b: make([]byte, 0, 2048)} }}

func putScratch(s *scratch) {
	if cap(s.a) <= 64<<10 && cap(s.b) <= 64<<10 {
		scratchPool.Put(s)
	}
}

// signature holds the fields of a request signature: of a Licet-Signature
// header, or (rfc set) of an HTTP Message Signature, whose created is ts.
type signature struct {
	keyid, ts, nonce, sig string
	unix                  int64
	rfc                   *msgSig // nil: the Licet-Signature scheme
}

// parseSignature parses a Licet-Signature header; the error says what is wrong.
func parseSignature(h string) (p signature, problem string) {
	var seen [4]bool
	for h != "" {
		var field string
		field, h, _ = strings.Cut(h, ",")
		field = strings.Trim(field, " \t")
		name, val, ok := strings.Cut(field, "=")
		if !ok {
			return p, fmt.Sprintf("field %q is not name=value", field)
		}
		var i int
		switch name {
		case "keyid":
			i, p.keyid = 0, val
		case "ts":
			i, p.ts = 1, val
		case "nonce":
			i, p.nonce = 2, val
		case "sig":
			i, p.sig = 3, val
		default:
			return p, fmt.Sprintf("unknown field %q", name)
		}
		if seen[i] {
			return p, fmt.Sprintf("field %q given twice", name)
		}
		seen[i] = true
	}
	switch {
	case !seen[0] || p.keyid == "" || len(p.keyid) > 64:
		return p, "keyid (the client ID) missing or too long"
	case !seen[1] || !digits(p.ts) || len(p.ts) > 18:
		return p, "ts missing or not decimal Unix seconds"
	case !seen[2] || len(p.nonce) < 16 || len(p.nonce) > 64 || !base64url(p.nonce):
		return p, "nonce missing, or not 16 to 64 characters of the base64url alphabet"
	case !seen[3] || len(p.sig) != 88:
		return p, "sig missing, or not an Ed25519 signature in padded standard base64 (88 characters)"
	}
	p.unix, _ = strconv.ParseInt(p.ts, 10, 64)
	return p, ""
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func base64url(s string) bool {
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case 'A' <= ch && ch <= 'Z', 'a' <= ch && ch <= 'z', '0' <= ch && ch <= '9', ch == '-', ch == '_':
		default:
			return false
		}
	}
	return true
}

// checkSigned checks a signed request presenting the license in licHeader
// (the Licet-License header's value) with the signature p.
func (c *checker) checkSigned(r *http.Request, now time.Time, licHeader string, p signature) (*entry, *bodyReader, *failure) {
	if f := c.checkAuthority(r.Host); f != nil {
		return nil, nil, f
	}
	unix := now.Unix()
	if d := unix - p.unix; d > c.skew || d < -c.skew {
		return nil, nil, c.fail(reasonStale, "the request was signed at %s, the gateway's clock says %s, more than %d seconds apart; check the client's clock and sign each request when sending it",
			time.Unix(p.unix, 0).UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), c.skew)
	}
	if p.rfc != nil && p.rfc.expires != 0 && unix > p.rfc.expires {
		return nil, nil, c.fail(reasonStale, "the request's signature expired at %s, the gateway's clock says %s; check the client's clock and sign each request when sending it",
			time.Unix(p.rfc.expires, 0).UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if p.rfc != nil {
		if h := p.rfc.uncovered(r.Header); h != "" {
			return nil, nil, c.fail(reasonInvalidSignature, "the request carries a %s header that its signature does not cover; cover %s whenever the request has them",
				h, strings.Join(quoted(CoveredHeaders), ", "))
		}
	}
	if len(licHeader) > maxLicenseHeader {
		return nil, nil, c.fail(reasonInvalidLicense, "the %s header is %d bytes, over the limit of %d; send the license file as the license server wrote it",
			HeaderLicense, len(licHeader), maxLicenseHeader)
	}

	s := scratchPool.Get().(*scratch)
	defer putScratch(s)

	// The license, from the cache of verified ones or verified now.
	s.a = append(s.a[:0], licHeader...)
	key := sha256.Sum256(s.a)
	e := c.byHeader.get(key, now)
	if e == nil {
		n := base64.StdEncoding.DecodedLen(len(s.a))
		if cap(s.b) < n {
			s.b = make([]byte, n)
		}
		n, err := base64.StdEncoding.Decode(s.b[:n], s.a)
		if err != nil {
			return nil, nil, c.fail(reasonInvalidLicense, "the %s header is not standard base64 (%v); send the license file (PEM) base64-encoded on one line", HeaderLicense, err)
		}
		// With upgrades on, an expired license is accepted here (never
		// cached), checked as a credential below, then exchanged.
		lic, err := c.verifyPEM(s.b[:n], verify.Options{Now: now, Product: c.product, AllowExpired: c.upgrade != nil})
		if err != nil {
			return nil, nil, c.verifyFailure(err)
		}
		if now.Before(lic.NotAfter) {
			e = c.byHeader.put(key, lic, c.v.Root())
		} else {
			e = newEntry(lic, c.v.Root())
		}
	}
	lic := e.lic
	if f := c.revoked(lic, now); f != nil {
		return nil, nil, f
	}
	if p.keyid != lic.ClientID {
		return nil, nil, c.fail(reasonWrongClient, "license %d belongs to client %s, but the request is signed as %s; a license cannot be used with another key, %s",
			lic.LicenseID, lic.ClientID, p.keyid, c.where)
	}

	// The body, read (bounded) and restored for the handler.
	body, f := c.readBody(r)
	if f != nil {
		return nil, nil, f
	}
	if p.rfc != nil {
		if problem := checkDigest(r.Header, bodyHash(body.bytes())); problem != "" {
			return nil, nil, c.fail(reasonInvalidSignature, "%s", problem)
		}
		var problem string
		s.b, problem = appendSignatureBase(s.b[:0], p.rfc, r.Method, normAuthority(r.Host), requestTarget(r), r.Header)
		if problem != "" {
			return nil, nil, c.fail(reasonInvalidSignature, "%s; sign the request again as it is sent", problem)
		}
		if !ed25519.Verify(lic.ClientKey, s.b, p.rfc.sig) {
			return nil, nil, c.fail(reasonInvalidSignature, "the %s does not verify with the key of license %d (client %s): the request was altered on the way, "+
				"or the signature base was not built as documented (RFC 9421 over the covered components and %s)",
				HeaderMessageSignature, lic.LicenseID, lic.ClientID, HeaderSignatureInput)
		}
	} else {
		var sig [66]byte
		s.a = append(s.a[:0], p.sig...)
		if n, err := base64.StdEncoding.Decode(sig[:], s.a); err != nil || n != ed25519.SignatureSize {
			return nil, nil, c.fail(reasonInvalidSignature, "the sig field of %s is not a 64-byte Ed25519 signature in padded standard base64", HeaderSignature)
		}
		s.b = appendMessage(s.b[:0], r.Method, requestTarget(r), r.Host, p.ts, p.nonce, bodyHash(body.bytes()))
		if !ed25519.Verify(lic.ClientKey, s.b, sig[:ed25519.SignatureSize]) {
			return nil, nil, c.fail(reasonInvalidSignature, "the %s does not verify with the key of license %d (client %s): the request was altered on the way, "+
				"or the signed message was not built as documented (method, path and query, host, ts, nonce, SHA-256 of the body)",
				HeaderSignature, lic.LicenseID, lic.ClientID)
		}
	}
	switch c.nonces.add(p.keyid, p.nonce, p.unix, unix) {
	case nonceReplayed:
		return nil, nil, c.fail(reasonReplayed, "this request (nonce %s) was already received; sign every request with a fresh random nonce", p.nonce)
	case nonceFull:
		return nil, nil, &failure{err: errs.E(errs.RateLimited, "the gateway is tracking too many recent signed requests; retry in a few seconds")}
	case nonceQuota:
		return nil, nil, &failure{err: errs.E(errs.RateLimited, "client %s sent more signed requests in the last %d s than its share of the gateway's memory (%d); slow down and retry in a few seconds",
			lic.ClientID, 2*c.skew, c.nonces.perClient)}
	case nonceClockBack:
		return nil, nil, c.fail(reasonStale, "the request's timestamp is older than requests the gateway has already accepted by more than the allowed skew; check the clocks")
	}
	if !now.Before(lic.NotAfter) || c.stale(lic) {
		ue, f := c.exchange(r.Context(), lic, now)
		return ue, body, f
	}
	return e, body, nil
}

// emptyHash is the SHA-256 of no bytes.
var emptyHash = sha256.Sum256(nil)

func bodyHash(body []byte) [32]byte {
	if len(body) == 0 {
		return emptyHash
	}
	return sha256.Sum256(body)
}

// requestTarget is the request target as the client sent it, in origin form.
func requestTarget(r *http.Request) string {
	if t := r.RequestURI; t != "" && t[0] == '/' {
		return t
	}
	return r.URL.RequestURI()
}

// bodyReader is the body of a signed request, read by the gateway and
// handed on to the handler.
type bodyReader struct {
	bytes.Reader
	b []byte
}

func (*bodyReader) Close() error { return nil }

func (b *bodyReader) bytes() []byte { return b.b }

// emptyBody stands for the empty body of a signed request; it is never read
// (http.NoBody is handed on instead).
var emptyBody = &bodyReader{}

// readBody reads the body of r, bounded by c.maxBody.
func (c *checker) readBody(r *http.Request) (*bodyReader, *failure) {
	if r.ContentLength > c.maxBody {
		return nil, &failure{err: errs.E(errs.TooLarge, "the request body of %d bytes is over the gateway's limit of %d bytes for signed requests; send it over mutual TLS with the license as client certificate",
			r.ContentLength, c.maxBody)}
	}
	if r.Body == nil || r.Body == http.NoBody {
		return emptyBody, nil
	}
	var body []byte
	var err error
	if r.ContentLength > 0 {
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(io.LimitReader(r.Body, c.maxBody+1))
		if err == nil && int64(len(body)) > c.maxBody {
			return nil, &failure{err: errs.E(errs.TooLarge, "the request body is over the gateway's limit of %d bytes for signed requests; send it over mutual TLS with the license as client certificate",
				c.maxBody)}
		}
	}
	if err != nil {
		return nil, &failure{err: errs.Wrap(errs.Invalid, err, "could not read the request body")}
	}
	if len(body) == 0 {
		return emptyBody, nil
	}
	br := &bodyReader{b: body}
	br.Reset(body)
	return br, nil
}

// identityHeader returns a copy of h without the Licet headers a client sent
// and with the verified ones.
func identityHeader(h http.Header, e *entry) http.Header {
	out := make(http.Header, len(h)+len(identityHeaders))
	for k, v := range h {
		if !isLicetHeader(k) {
			out[k] = v
		}
	}
	if conn, ok := out["Connection"]; ok {
		if conn = cleanConnection(conn); conn == nil {
			delete(out, "Connection")
		} else {
			out["Connection"] = conn
		}
	}
	vals := make([]string, len(identityHeaders))
	copy(vals, e.hdr[:])
	for i, k := range identityHeaders {
		out[k] = vals[i : i+1 : i+1]
	}
	return out
}

// isLicetHeader reports whether a header name is one the gateway owns:
// Licet-License, Licet-Signature, Licet-Client-*, Licet-License-*, compared
// without regard to case and with "_" counted as "-" (as CGI-style servers
// do).
func isLicetHeader(k string) bool {
	if len(k) < 13 || k[0]|0x20 != 'l' {
		return false
	}
	return foldEqual(k, "licet-license") || foldEqual(k, "licet-signature") ||
		foldPrefix(k, "licet-client-") || foldPrefix(k, "licet-license-")
}

// fold maps a header name byte to lower case, "_" to "-".
func fold(ch byte) byte {
	switch {
	case 'A' <= ch && ch <= 'Z':
		return ch + 'a' - 'A'
	case ch == '_':
		return '-'
	}
	return ch
}

func foldPrefix(s, lowerPrefix string) bool {
	if len(s) < len(lowerPrefix) {
		return false
	}
	for i := 0; i < len(lowerPrefix); i++ {
		if fold(s[i]) != lowerPrefix[i] {
			return false
		}
	}
	return true
}

func foldEqual(s, lower string) bool { return len(s) == len(lower) && foldPrefix(s, lower) }

// cleanConnection drops Licet header names from Connection header values, so
// that a proxy behind the gateway does not remove the verified headers as
// hop-by-hop.
func cleanConnection(vals []string) []string {
	dirty := false
	for _, v := range vals {
		for tok := range strings.SplitSeq(v, ",") {
			if isLicetHeader(strings.TrimSpace(tok)) {
				dirty = true
			}
		}
	}
	if !dirty {
		return vals
	}
	var keep []string
	for _, v := range vals {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" && !isLicetHeader(tok) {
				keep = append(keep, tok)
			}
		}
	}
	if len(keep) == 0 {
		return nil
	}
	return []string{strings.Join(keep, ", ")}
}

// refuse answers a refused request.
func (c *checker) refuse(w http.ResponseWriter, f *failure) {
	if c.onCheck != nil {
		name := "other"
		if f.reason != noChallenge {
			name = reasonNames[f.reason]
		}
		c.onCheck(name)
	}
	if f.reason != noChallenge {
		w.Header().Set("WWW-Authenticate", c.challenge[f.reason])
	}
	if errs.KindOf(f.err) == errs.RateLimited {
		w.Header().Set("Retry-After", "2")
	}
	writeError(w, errs.HTTPStatus(errs.KindOf(f.err)), errs.KindOf(f.err).String(), errs.PublicMessage(f.err))
}

// errorBody is the JSON shape of licet's error answers (as api.WriteError
// writes them; package api is not imported, to keep the middleware light for
// applications that embed it).
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var body errorBody
	body.Error.Code, body.Error.Message = code, msg
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(body)
}

package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/gateway"
	"github.com/licet/licet/licensing/softid"
	"github.com/licet/licet/verify"
)

// DefaultMaxBody bounds the request body a Client buffers so that it can sign
// it or send it again after fetching a license.
const DefaultMaxBody = 16 << 20

// maxRenewWindow caps the default renewal window.
const maxRenewWindow = 7 * 24 * time.Hour

// maxUpdateFile bounds the license file a client downloads from the path a
// gateway names in Licet-License-Update (a sealed license file is about 8 kB).
const maxUpdateFile = 64 << 10

// ClientOptions configure a Client.
type ClientOptions struct {
	// Server is the gateway's base URL (http or https); requests made with
	// NewRequest are relative to it, and licenses are fetched through it
	// (the gateway relays /v1/challenges, /v1/licenses and /v1/root to its
	// license server). Required.
	Server string
	// LicenseServer, if set, is where licenses are fetched instead of Server.
	LicenseServer string
	// Product is the product the gateway requires a license for. Required.
	Product string
	// SoftwareID and Image answer the license server's platform challenge,
	// as in AcquireOptions; Image defaults to this program's executable.
	SoftwareID softid.ID
	Image      string
	// TLS is the base TLS configuration for https URLs (RootCAs to trust a
	// gateway with a private CA, say); it is cloned, and its
	// GetClientCertificate is replaced by one that presents the cached
	// license. Nil means the system roots.
	TLS *tls.Config
	// SignedHeaders makes the client present its license in signed headers
	// (Licet-License and an HTTP Message Signature, RFC 9421) over https too. Over http it always does.
	SignedHeaders bool
	// RenewBefore is how long before the license's expiry the client fetches
	// a fresh one. Zero means a fifth of the license's validity or 7 days,
	// whichever is smaller.
	RenewBefore time.Duration
	// MaxBody bounds a request body the client buffers; default DefaultMaxBody.
	MaxBody int64
	// Timeout bounds each HTTP exchange; default none for requests (use the
	// request's context) and 30 s for license fetches.
	Timeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Client talks to an application behind a licet gateway on behalf of an
// agent identity. It presents the cached license of its product, as the TLS
// client certificate over https or as signed headers over http, even when
// that license has expired (a gateway may upgrade it); fetches a license
// through the gateway when it has none, when the gateway refuses the one it
// has (401 license_required or license_expired), and when less than the
// renewal window of its validity is left; and installs the upgraded license
// a gateway names in the Licet-License-Update header (fetched from the
// gateway). It is safe for concurrent use.
type Client struct {
	id   *Identity
	opts ClientOptions
	base *url.URL
	tls  *tls.Config
	hc   *http.Client // for requests, through the current transport
	lhc  *http.Client // the same, with a timeout, for license fetches

	fetchMu sync.Mutex // serialises license fetches and installed updates

	mu        sync.Mutex
	lic       *verify.License
	pem       []byte
	cert      *tls.Certificate
	tr        *http.Transport // the current transport; replaced with the license
	gen       int             // incremented whenever the license changes
	nextRenew time.Time       // no renewal attempt before this
}

// NewClient returns a Client for the agent identity id. It reads the cached
// license, if any (also one that has expired, which it presents until a
// gateway refuses it), but fetches none yet.
func NewClient(id *Identity, opts ClientOptions) (*Client, error) {
	if id == nil {
		return nil, errs.E(errs.Usage, "agent client: no identity")
	}
	if opts.Server == "" {
		opts.Server = id.ServerURL
	}
	base, err := url.Parse(opts.Server)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, errs.E(errs.Usage, "gateway URL %q is not an http:// or https:// URL with a host", opts.Server)
	}
	if opts.Product == "" {
		return nil, errs.E(errs.Usage, "agent client: no product")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	c := &Client{id: id, opts: opts, base: base}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.TLS != nil {
		tlsConf = opts.TLS.Clone()
	}
	// Sessions are not resumed: a resumed session would present the
	// certificate of the first handshake, not a renewed license.
	tlsConf.ClientSessionCache = nil
	tlsConf.GetClientCertificate = c.clientCertificate
	c.tls = tlsConf
	c.tr = c.newTransport()
	c.hc = &http.Client{Transport: currentTransport{c}, Timeout: opts.Timeout}
	lt := opts.Timeout
	if lt <= 0 {
		lt = 30 * time.Second
	}
	c.lhc = &http.Client{Transport: currentTransport{c}, Timeout: lt}
	if lic, pem, err := id.cachedLicense(opts.Product, opts.Now(), true); err == nil {
		c.setLicense(lic, pem)
	}
	return c, nil
}

// License returns the license the client presents, or nil before it has one.
func (c *Client) License() *verify.License {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lic
}

// HTTPClient returns the underlying *http.Client. Requests sent with it
// directly present the license as TLS client certificate (https) but are
// neither signed nor retried; use Do for those.
func (c *Client) HTTPClient() *http.Client { return c.hc }

// CloseIdleConnections closes the client's idle connections.
func (c *Client) CloseIdleConnections() { c.transport().CloseIdleConnections() }

func (c *Client) newTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = c.tls
	return tr
}

func (c *Client) transport() *http.Transport {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tr
}

// currentTransport sends requests through the client's current transport.
// Each license has its own: a TLS connection presents the certificate of
// its handshake for as long as it lives, so connections made with an older
// license (or none), idle or still busy, must not carry new requests.
type currentTransport struct{ c *Client }

func (t currentTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.c.transport().RoundTrip(r)
}

func (t currentTransport) CloseIdleConnections() { t.c.CloseIdleConnections() }

// clientCertificate presents the cached license in the TLS handshake, or no
// certificate when there is none or the client signs its requests.
func (c *Client) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert == nil || c.opts.SignedHeaders {
		return &tls.Certificate{}, nil
	}
	return c.cert, nil
}

// setLicense makes lic (with its file pem) the license presented.
func (c *Client) setLicense(lic *verify.License, pem []byte) {
	cert := &tls.Certificate{Certificate: lic.Chain(), PrivateKey: c.id.Signer.Private()}
	if leaf, err := x509.ParseCertificate(lic.Raw); err == nil {
		cert.Leaf = leaf
	}
	c.mu.Lock()
	old := c.tr
	c.lic, c.pem, c.cert = lic, pem, cert
	c.tr = c.newTransport()
	c.gen++
	c.nextRenew = time.Time{}
	c.mu.Unlock()
	// Connections made with the old license (or none) would go on presenting
	// it: new requests get new connections. Busy ones close when idle for
	// the transport's IdleConnTimeout.
	old.CloseIdleConnections()
}

// renewWindow is how long before its expiry lic is renewed.
func (c *Client) renewWindow(lic *verify.License) time.Duration {
	if c.opts.RenewBefore > 0 {
		return c.opts.RenewBefore
	}
	return min(lic.NotAfter.Sub(lic.NotBefore)/5, maxRenewWindow)
}

// NeedsRenewal reports whether lic is within the renewal window at now.
func (c *Client) NeedsRenewal(lic *verify.License, now time.Time) bool {
	return lic.NotAfter.Sub(now) < c.renewWindow(lic)
}

// Fetch gets a license through the gateway now, as 'licet agent license
// acquire' does (challenge, grant, verification, cache), and presents it
// from then on. The license server returns the client's unexpired license
// again, or a new one (a permanent license for a temporary one when seats
// have appeared).
func (c *Client) Fetch(ctx context.Context) (*verify.License, error) {
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	return c.fetch(ctx, gen, true)
}

// fetch acquires a license unless another goroutine did since generation
// gen (and force is false).
func (c *Client) fetch(ctx context.Context, gen int, force bool) (*verify.License, error) {
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	c.mu.Lock()
	lic := c.lic
	fresh := c.gen != gen
	c.mu.Unlock()
	if fresh && lic != nil && !force {
		return lic, nil
	}
	if c.opts.SoftwareID == 0 {
		return nil, errs.E(errs.Usage, "cannot fetch a license of %s: no software ID to answer the license server's challenge with; give the program's software ID (--software-id)", c.opts.Product)
	}
	server := c.opts.LicenseServer
	if server == "" {
		server = strings.TrimRight(c.base.String(), "/")
	}
	lic, pem, _, err := c.id.acquire(ctx, AcquireOptions{
		Server: server, ProductID: c.opts.Product, SoftwareID: c.opts.SoftwareID,
		Image: c.opts.Image, HTTP: c.lhc, Clock: c.opts.Now,
	})
	if err != nil {
		return nil, err
	}
	c.setLicense(lic, pem)
	return lic, nil
}

// Ensure returns a license valid now, fetching one if the client has none
// or its own has expired, and fetching a fresh one if it is within the
// renewal window (keeping the current one if that fails; the next attempt
// is then a while later).
func (c *Client) Ensure(ctx context.Context) (*verify.License, bool, error) {
	return c.ensure(ctx, false)
}

// ensure is Ensure; with presentExpired, a license that has expired is
// returned as it is, not replaced: Do presents it, and a gateway upgrades
// it or refuses it (and then Do fetches one).
func (c *Client) ensure(ctx context.Context, presentExpired bool) (*verify.License, bool, error) {
	now := c.opts.Now()
	c.mu.Lock()
	lic, gen, next := c.lic, c.gen, c.nextRenew
	c.mu.Unlock()
	if lic != nil && presentExpired && !now.Before(lic.NotAfter) {
		return lic, false, nil
	}
	if lic == nil || !now.Before(lic.NotAfter) || now.Before(lic.NotBefore) {
		l, err := c.fetch(ctx, gen, false)
		return l, err == nil, err
	}
	if !c.NeedsRenewal(lic, now) || now.Before(next) {
		return lic, false, nil
	}
	nl, err := c.fetch(ctx, gen, false)
	if err == nil && nl.NotAfter.After(lic.NotAfter) {
		return nl, true, nil
	}
	if err == nil {
		lic = nl
	}
	// The server had nothing newer, or could not be reached: try again
	// after a tenth of the time left, between a minute and an hour.
	wait := min(max(lic.NotAfter.Sub(now)/10, time.Minute), time.Hour)
	c.mu.Lock()
	if c.gen == gen || err == nil {
		c.nextRenew = now.Add(wait)
	}
	c.mu.Unlock()
	return lic, err == nil, nil
}

// RequestURL resolves path, a path and query on the gateway at base
// (/v1/render?job=1) or a full URL, as Client.NewRequest does.
func RequestURL(base *url.URL, path string) (*url.URL, error) {
	ref, err := url.Parse(path)
	if err != nil {
		return nil, errs.Wrap(errs.Usage, err, "bad request path %q", path)
	}
	if ref.IsAbs() {
		return ref, nil
	}
	u := base.JoinPath(ref.Path)
	u.RawQuery = ref.RawQuery
	return u, nil
}

// NewRequest returns a request for path (and query) relative to the
// gateway URL, with a replayable body.
func (c *Client) NewRequest(ctx context.Context, method, path string, body []byte) (*http.Request, error) {
	u, err := RequestURL(c.base, path)
	if err != nil {
		return nil, err
	}
	var r io.Reader
	if len(body) > 0 {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), r)
	if err != nil {
		return nil, errs.Wrap(errs.Usage, err, "bad request")
	}
	return req, nil
}

// Do sends req (an absolute URL, usually the gateway's) with the license,
// first fetching one if the client has none or an unexpired one due for
// renewal. A license that has expired is sent as it is: a gateway that
// upgrades licenses exchanges it. If the gateway answers 401
// license_required or license_expired and the client fetched no license for
// this request yet, it fetches one and sends the request once more. A body
// without GetBody is buffered (at most MaxBody bytes) so that it can be
// signed and sent again. A license update the answer names
// (Licet-License-Update) is fetched from the same gateway, verified and
// installed when it is newer than the client's license (one that does not
// verify, or is not newer, is ignored). Errors are *errs.Error; an HTTP
// answer of any status is returned as the response.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	signed := c.opts.SignedHeaders || req.URL.Scheme != "https"

	// A replayable body.
	var body []byte
	getBody := req.GetBody
	hasBody := req.Body != nil && req.Body != http.NoBody
	if hasBody && (signed || getBody == nil) {
		src := req.Body
		if getBody != nil {
			var err error
			if src, err = getBody(); err != nil {
				return nil, errs.Wrap(errs.Internal, err, "read the request body")
			}
			req.Body.Close()
		}
		b, err := io.ReadAll(io.LimitReader(src, c.opts.MaxBody+1))
		src.Close()
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "read the request body")
		}
		if int64(len(b)) > c.opts.MaxBody {
			return nil, errs.E(errs.TooLarge, "the request body is over the client's limit of %d bytes", c.opts.MaxBody)
		}
		body = b
		getBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}

	_, fetched, err := c.ensure(ctx, true)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		out := req.Clone(ctx)
		if attempt > 0 || body != nil {
			out.Body, out.GetBody = nil, getBody
			if getBody != nil {
				if out.Body, err = getBody(); err != nil {
					return nil, errs.Wrap(errs.Internal, err, "replay the request body")
				}
			} else {
				out.Body = http.NoBody
			}
		}
		c.mu.Lock()
		pem := c.pem
		c.mu.Unlock()
		if signed {
			if err := gateway.SignRequest(out, body, pem, c.id.Signer, c.opts.Now()); err != nil {
				return nil, err
			}
		}
		resp, err := c.hc.Do(out)
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "cannot reach %s", req.URL.Redacted())
		}
		// An update that cannot be fetched or does not verify is ignored:
		// the answer stands, and the cached license stays.
		_ = c.installUpdate(ctx, resp)
		if resp.StatusCode != http.StatusUnauthorized || fetched || !licenseRefused(resp) {
			return resp, nil
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		c.mu.Lock()
		gen := c.gen
		c.mu.Unlock()
		if _, err := c.fetch(ctx, gen, false); err != nil {
			return nil, err
		}
		fetched = true
	}
}

// licenseRefused reports whether a 401 answer says the license is missing or
// expired, the refusals a new license cures.
func licenseRefused(resp *http.Response) bool {
	for _, ch := range resp.Header.Values("WWW-Authenticate") {
		if !strings.HasPrefix(ch, "Licet ") {
			continue
		}
		if strings.Contains(ch, `error="license_required"`) || strings.Contains(ch, `error="license_expired"`) {
			return true
		}
	}
	return false
}

// installUpdate installs the license a Licet-License-Update header names:
// a path, gateway.LicenseUpdatePath and 64 lowercase hex digits, fetched
// with GET from the scheme and host of the request that got the answer.
func (c *Client) installUpdate(ctx context.Context, resp *http.Response) error {
	h := resp.Header.Get(gateway.HeaderLicenseUpdate)
	if h == "" {
		return nil
	}
	if !validUpdatePath(h) {
		return errs.E(errs.Invalid, "the gateway's %s header %q is not %s and 64 lowercase hex digits", gateway.HeaderLicenseUpdate, h, gateway.LicenseUpdatePath)
	}
	if resp.Request == nil || resp.Request.URL == nil || resp.Request.URL.Host == "" {
		return errs.E(errs.Internal, "the answer with a %s header has no request URL", gateway.HeaderLicenseUpdate)
	}
	u := url.URL{Scheme: resp.Request.URL.Scheme, Host: resp.Request.URL.Host, Path: h}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "the license update request")
	}
	// The same transport (and TLS configuration) as the request; no
	// redirects: the file is at the gateway.
	hc := &http.Client{Transport: currentTransport{c}, Timeout: c.lhc.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r, err := hc.Do(req)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "fetch the license update from %s", u.Redacted())
	}
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(r.Body, 64<<10))
		return errs.E(errs.NotFound, "GET %s answered %s", u.Redacted(), r.Status)
	}
	file, err := io.ReadAll(io.LimitReader(r.Body, maxUpdateFile+1))
	if err != nil {
		return errs.Wrap(errs.Internal, err, "read the license update from %s", u.Redacted())
	}
	if len(file) > maxUpdateFile {
		return errs.E(errs.TooLarge, "the license update at %s is over %d bytes", u.Redacted(), maxUpdateFile)
	}
	return c.install(file)
}

// validUpdatePath reports whether a Licet-License-Update value is
// gateway.LicenseUpdatePath followed by exactly 64 lowercase hex digits.
func validUpdatePath(h string) bool {
	id, ok := strings.CutPrefix(h, gateway.LicenseUpdatePath)
	if !ok || len(id) != 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if ch := id[i]; !('0' <= ch && ch <= '9' || 'a' <= ch && ch <= 'f') {
			return false
		}
	}
	return true
}

// install verifies a license update (a sealed license file) and, if it is
// newer than the client's license, caches and presents it. It holds fetchMu,
// so it neither races a fetch nor another update.
func (c *Client) install(file []byte) error {
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	lic, pem, err := c.id.openUpdate(file, c.opts.Product, c.opts.Now())
	if err != nil {
		return errs.Wrap(errs.KindOf(err), err, "the license update the gateway sent was refused")
	}
	c.mu.Lock()
	cur := c.lic
	c.mu.Unlock()
	if cur != nil && !newerLicense(lic, cur) {
		return nil // a replayed or stale update: keep the license
	}
	if err := c.id.storeLicense(c.opts.Product, pem); err != nil {
		return err
	}
	c.setLicense(lic, pem)
	return nil
}

// newerLicense reports whether an update nl should replace cur: it is
// another license, and for a later product version, or for the same version
// and valid at least as long. An update never goes back to an older version
// or an earlier expiry of the same version.
func newerLicense(nl, cur *verify.License) bool {
	if nl.LicenseID == cur.LicenseID {
		return false
	}
	switch v := verify.CompareVersions(nl.ProductVersion, cur.ProductVersion); {
	case v > 0:
		return true
	case v < 0:
		return false
	}
	return !nl.NotAfter.Before(cur.NotAfter)
}

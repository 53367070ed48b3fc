// Package siteauth authenticates a site's requests to the vendor with the
// site's certified key: the request names its certificate and signs the
// method, path, time and body hash. The vendor checks the certificate
// against its root and takes the customer from it, so a site acts for its
// own customer only, without a bearer secret to leak.
package siteauth

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/pki"
)

// The headers of a signed request.
const (
	HeaderCert      = "Licet-Site-Certificate" // base64 DER of the site certificate
	HeaderTime      = "Licet-Site-Time"        // Unix seconds
	HeaderSignature = "Licet-Site-Signature"   // base64 Ed25519 signature
)

// MaxSkew is how far a request's time may be from the vendor's clock.
const MaxSkew = 5 * time.Minute

func message(method, uri, ts string, body []byte) []byte {
	sum := sha256.Sum256(body)
	return []byte("licet-site-request-v1\n" + method + "\n" + uri + "\n" + ts + "\n" + hex.EncodeToString(sum[:]))
}

// Sign adds the signature headers to req, whose body is body.
func Sign(req *http.Request, body []byte, s *keys.Signer, cert []byte, now time.Time) {
	ts := strconv.FormatInt(now.Unix(), 10)
	req.Header.Set(HeaderCert, base64.StdEncoding.EncodeToString(cert))
	req.Header.Set(HeaderTime, ts)
	req.Header.Set(HeaderSignature, base64.StdEncoding.EncodeToString(s.Sign(message(req.Method, req.URL.RequestURI(), ts, body))))
}

// Verify checks the signature of r, whose body is body, and returns the
// site its certificate proves.
func Verify(r *http.Request, body []byte, root *x509.Certificate, now time.Time) (*pki.Site, error) {
	c, t, sig := r.Header.Get(HeaderCert), r.Header.Get(HeaderTime), r.Header.Get(HeaderSignature)
	if c == "" || t == "" || sig == "" {
		return nil, errs.E(errs.Unauthenticated, "this call is for certified sites: sign it with the site key (headers %s, %s, %s), as 'licet site update sync' does", HeaderCert, HeaderTime, HeaderSignature)
	}
	der, err := base64.StdEncoding.DecodeString(c)
	if err != nil {
		return nil, errs.E(errs.Unauthenticated, "header %s is not base64", HeaderCert)
	}
	site, err := pki.VerifySite([][]byte{der}, root, now)
	if err != nil {
		return nil, errs.Wrap(errs.Unauthenticated, err, "site certificate refused")
	}
	sec, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return nil, errs.E(errs.Unauthenticated, "header %s %q is not Unix seconds", HeaderTime, t)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > MaxSkew || d < -MaxSkew {
		return nil, errs.E(errs.Unauthenticated, "request time is %s away from the vendor's clock (limit %s): set the site's clock", d.Round(time.Second), MaxSkew)
	}
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || !ed25519.Verify(site.PublicKey, message(r.Method, r.URL.RequestURI(), t, body), raw) {
		return nil, errs.E(errs.Unauthenticated, "site request signature does not verify")
	}
	return site, nil
}

// Package siteauth authenticates a site's requests to the vendor with the
// site's certified key: the request names its certificate and signs the
// method, path, time and body hash. Files a site sends by hand (its devices'
// update reports, from an air-gapped site) are signed the same way. The vendor checks the certificate
// against its root and takes the customer from it, so a site acts for its
// own customer only, without a bearer secret to leak.
package siteauth

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/pki"
)

// The headers of a signed request.
const (
	HeaderCert      = "Licet-Site-Certificate" // base64 DER of the site certificate, then of its issuers below the root, comma-separated
	HeaderTime      = "Licet-Site-Time"        // Unix seconds
	HeaderSignature = "Licet-Site-Signature"   // base64 Ed25519 signature
)

// MaxSkew is how far a request's time may be from the vendor's clock.
const MaxSkew = 5 * time.Minute

func message(method, uri, ts string, body []byte) []byte {
	sum := sha256.Sum256(body)
	return []byte("licet-site-request-v1\n" + method + "\n" + uri + "\n" + ts + "\n" + hex.EncodeToString(sum[:]))
}

// Sign adds the signature headers to req, whose body is body; chain is the
// site certificate and its issuers below the vendor root, DER.
func Sign(req *http.Request, body []byte, s *keys.Signer, chain [][]byte, now time.Time) {
	ts := strconv.FormatInt(now.Unix(), 10)
	enc := make([]string, len(chain))
	for i, c := range chain {
		enc[i] = base64.StdEncoding.EncodeToString(c)
	}
	req.Header.Set(HeaderCert, strings.Join(enc, ","))
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
	parts := strings.Split(c, ",")
	if len(parts) > 4 {
		return nil, errs.E(errs.Unauthenticated, "header %s holds %d certificates; send the site certificate and its issuers (at most 4)", HeaderCert, len(parts))
	}
	var chain [][]byte
	for _, p := range parts {
		der, err := base64.StdEncoding.DecodeString(p)
		if err != nil {
			return nil, errs.E(errs.Unauthenticated, "header %s is not comma-separated base64", HeaderCert)
		}
		chain = append(chain, der)
	}
	site, err := pki.VerifySite(chain, root, now)
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

// FileType is the armor type of a file a site signs for the vendor (its
// devices' update reports, carried by hand from an air-gapped site).
const FileType = "SITE UPDATE REPORTS"

// signedFile is the body of such a file: the payload as signed, never
// re-encoded, with the signature and the chain that proves the site.
type signedFile struct {
	Chain     [][]byte `json:"chain"`
	Payload   []byte   `json:"payload"`
	Signature []byte   `json:"signature"`
}

func fileMessage(payload []byte) []byte {
	return append([]byte("licet-site-file-v1\n"), payload...)
}

// SignFile makes an armored file of payload signed with the site key.
func SignFile(payload []byte, s *keys.Signer, chain [][]byte) []byte {
	body, _ := json.Marshal(signedFile{Chain: chain, Payload: payload, Signature: s.Sign(fileMessage(payload))})
	return armor.Encode(armor.Block{Type: FileType, Version: 1, Body: body})
}

// VerifyFile checks a file made by SignFile against the vendor root and
// returns the site and the payload.
func VerifyFile(data []byte, root *x509.Certificate, now time.Time) (*pki.Site, []byte, error) {
	blk, err := armor.Decode(data, FileType)
	if err != nil {
		return nil, nil, errs.Wrap(errs.Invalid, err, "not a site reports file ('licet site update export-reports' makes one)")
	}
	if blk.Version > 1 {
		return nil, nil, errs.E(errs.Invalid, "site reports file format version %d is newer than this licet reads (1); upgrade licet", blk.Version)
	}
	var f signedFile
	if err := json.Unmarshal(blk.Body, &f); err != nil || len(f.Chain) == 0 || len(f.Chain) > 4 {
		return nil, nil, errs.E(errs.Invalid, "site reports file is damaged: it lacks its certificate chain, payload or signature")
	}
	site, err := pki.VerifySite(f.Chain, root, now)
	if err != nil {
		return nil, nil, err
	}
	if !ed25519.Verify(site.PublicKey, fileMessage(f.Payload), f.Signature) {
		return nil, nil, errs.E(errs.Invalid, "site reports file signature does not verify: it was altered after the site signed it")
	}
	return site, f.Payload, nil
}

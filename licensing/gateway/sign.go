package gateway

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/verify"
)

// Signer is a client's Ed25519 key, as *keys.Signer holds it.
type Signer interface {
	Sign(msg []byte) []byte
	Public() ed25519.PublicKey
}

// messagePrefix starts every signed request message; the version changes
// when the message does.
const messagePrefix = "licet/v1 request\n"

// appendMessage appends the signed message of a request (see the package
// documentation) to dst.
func appendMessage(dst []byte, method, target, host, ts, nonce string, bodySum [32]byte) []byte {
	dst = append(dst, messagePrefix...)
	dst = append(dst, method...)
	dst = append(dst, '\n')
	dst = append(dst, target...)
	dst = append(dst, '\n')
	for i := 0; i < len(host); i++ {
		ch := host[i]
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		dst = append(dst, ch)
	}
	dst = append(dst, '\n')
	dst = append(dst, ts...)
	dst = append(dst, '\n')
	dst = append(dst, nonce...)
	dst = append(dst, '\n')
	return hex.AppendEncode(dst, bodySum[:])
}

// SignRequestV1 signs req in the Licet-Signature scheme of licet before HTTP
// Message Signatures: it sets the Licet-License header to licensePEM and the
// Licet-Signature header to signer's signature over req's method, request
// target (req.URL.RequestURI()), host (req.Host, else req.URL.Host), the
// time now, a fresh random nonce and body, and sets req's body to body.
//
// Deprecated: the scheme does not cover headers. Gateways accept it only
// when started with --accept-licet-signature (Options.AcceptLicetSignature),
// for a transition; use SignRequest.
func SignRequestV1(req *http.Request, body []byte, licensePEM []byte, signer Signer, now time.Time) error {
	if req == nil || req.URL == nil {
		return errs.E(errs.Invalid, "sign request: no request")
	}
	if len(licensePEM) == 0 {
		return errs.E(errs.Invalid, "sign request: no license file; get a license from the license server first")
	}
	if signer == nil {
		return errs.E(errs.Invalid, "sign request: no client key")
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	var nb [16]byte
	_, _ = rand.Read(nb[:]) // crypto/rand.Read does not fail
	nonce := base64.RawURLEncoding.EncodeToString(nb[:])
	ts := strconv.FormatInt(now.Unix(), 10)
	msg := appendMessage(make([]byte, 0, 256), method, req.URL.RequestURI(), host, ts, nonce, bodyHash(body))
	sig := signer.Sign(msg)

	if req.Header == nil {
		req.Header = make(http.Header)
	}
	req.Header.Set(HeaderLicense, base64.StdEncoding.EncodeToString(licensePEM))
	req.Header.Set(HeaderSignature, "keyid="+verify.ClientID(signer.Public())+",ts="+ts+",nonce="+nonce+",sig="+base64.StdEncoding.EncodeToString(sig))
	if len(body) == 0 {
		req.Body, req.ContentLength, req.GetBody = http.NoBody, 0, nil
	} else {
		req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	return nil
}

package gateway

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/verify"
)

// This file is the signed mode of the gateway in HTTP Message Signatures
// (RFC 9421) with Digest Fields (RFC 9530); docs/formats.md, section 9.6,
// specifies it with a test vector.

// The headers of a signed request.
const (
	// HeaderSignatureInput names the covered components and the signature
	// parameters (RFC 9421, section 4.1).
	HeaderSignatureInput = "Signature-Input"
	// HeaderMessageSignature carries the signature (RFC 9421, section 4.2).
	HeaderMessageSignature = "Signature"
	// HeaderContentDigest carries the SHA-256 of the body (RFC 9530).
	HeaderContentDigest = "Content-Digest"
)

// SignatureLabel is the dictionary key SignRequest gives its signature;
// SignatureTag is the value of its required tag parameter, which keeps a
// licet request signature from passing for a signature of any other
// protocol made with the same key.
const (
	SignatureLabel = "licet"
	SignatureTag   = "licet"
)

// CoveredHeaders are the request headers that a signature must cover when
// the request carries them (lowercase, as RFC 9421 names them): a proxy on a
// plain HTTP path must not be able to change what the application reads
// from them. A signature may cover other headers too.
var CoveredHeaders = []string{"content-type", "cookie", "x-http-method-override"}

// requiredComponents are the components every signature must cover.
var requiredComponents = [...]string{"@method", "@authority", "@path", "@query", "content-digest"}

// maxSignatureHeader bounds the Signature-Input and Signature headers.
const maxSignatureHeader = 8 << 10

// msgSig is a parsed RFC 9421 signature of a request.
type msgSig struct {
	components []string  // covered component identifiers, in order
	params     []sfParam // signature parameters, in order
	sig        []byte    // 64 bytes
	expires    int64     // 0: none
}

// parseMessageSignature reads the Signature-Input and Signature headers of r
// (every field line of each): the signature labelled SignatureLabel, or the
// only one. It checks the covered components and the parameters, but not
// the signature. The problem says what is wrong.
func parseMessageSignature(h http.Header) (p signature, problem string) {
	in, sg := strings.Join(h[HeaderSignatureInput], ", "), strings.Join(h[HeaderMessageSignature], ", ")
	switch {
	case in == "":
		return p, "no Signature-Input header"
	case sg == "":
		return p, "no Signature header"
	case len(in) > maxSignatureHeader || len(sg) > maxSignatureHeader:
		return p, "Signature-Input or Signature is longer than 8 KiB"
	}
	inputs, problem := parseDictionary(in)
	if problem != "" {
		return p, "Signature-Input is not a structured dictionary: " + problem
	}
	sigs, problem := parseDictionary(sg)
	if problem != "" {
		return p, "Signature is not a structured dictionary: " + problem
	}
	var input *sfMember
	for i := range inputs {
		if inputs[i].key == SignatureLabel || len(inputs) == 1 {
			input = &inputs[i]
		}
	}
	if input == nil {
		return p, fmt.Sprintf("Signature-Input has %d signatures and none labelled %q", len(inputs), SignatureLabel)
	}
	m := &msgSig{}
	for _, s := range sigs {
		if s.key != input.key {
			continue
		}
		if s.inner || s.item.kind != sfBytes || len(s.item.bytes) != 64 {
			return p, fmt.Sprintf("the Signature of %q is not a 64-byte Ed25519 signature as a byte sequence (:base64:)", input.key)
		}
		m.sig = s.item.bytes
	}
	if m.sig == nil {
		return p, fmt.Sprintf("Signature has no member %q for the Signature-Input of that label", input.key)
	}
	if !input.inner {
		return p, "the Signature-Input member is not an inner list of covered components"
	}
	seen := make(map[string]bool, len(input.list))
	for _, c := range input.list {
		if c.item.kind != sfString {
			return p, "a covered component is not a quoted string"
		}
		name := c.item.s
		if len(c.params) > 0 {
			return p, fmt.Sprintf("component %q has parameters; the gateway takes components without parameters", name)
		}
		if seen[name] {
			return p, fmt.Sprintf("component %q is covered twice", name)
		}
		seen[name] = true
		switch {
		case name == "@method" || name == "@authority" || name == "@path" || name == "@query":
		case name == "@target-uri" || name == "@request-target" || name == "@scheme":
			return p, fmt.Sprintf("component %q is not supported (the scheme is not known behind a proxy); cover \"@authority\", \"@path\" and \"@query\"", name)
		case strings.HasPrefix(name, "@"):
			return p, fmt.Sprintf("component %q is not supported", name)
		case name == "host":
			return p, `cover "@authority" rather than the host header`
		case !validFieldName(name):
			return p, fmt.Sprintf("component %q is not a lowercase header field name", name)
		}
		m.components = append(m.components, name)
	}
	for _, c := range requiredComponents {
		if !seen[c] {
			return p, fmt.Sprintf("the signature does not cover %q; it must cover %s", c, strings.Join(quoted(requiredComponents[:]), ", "))
		}
	}
	var haveCreated bool
	for _, prm := range input.params {
		v := prm.val
		switch prm.key {
		case "created", "expires":
			if v.kind != sfInteger || v.i <= 0 {
				return p, prm.key + " is not a positive integer (Unix seconds)"
			}
			if prm.key == "created" {
				haveCreated, p.unix = true, v.i
			} else {
				m.expires = v.i
			}
		case "nonce":
			if v.kind != sfString || len(v.s) < 16 || len(v.s) > 64 || !nonceChars(v.s) {
				return p, "nonce is not a string of 16 to 64 characters of the base64 or base64url alphabet"
			}
			p.nonce = v.s
		case "keyid":
			if v.kind != sfString || v.s == "" || len(v.s) > 64 {
				return p, "keyid (the client ID) is not a string of 1 to 64 characters"
			}
			p.keyid = v.s
		case "alg":
			if v.kind != sfString || v.s != "ed25519" {
				return p, `alg is not "ed25519"`
			}
		case "tag":
			if v.kind != sfString || v.s != SignatureTag {
				return p, fmt.Sprintf("tag is not %q", SignatureTag)
			}
		default:
			return p, fmt.Sprintf("unknown signature parameter %q", prm.key)
		}
	}
	switch {
	case !haveCreated:
		return p, "the created parameter is missing"
	case p.nonce == "":
		return p, "the nonce parameter is missing"
	case p.keyid == "":
		return p, "the keyid parameter (the client ID) is missing"
	case !hasParam(input.params, "tag"):
		return p, fmt.Sprintf("the tag parameter is missing; set tag=%q", SignatureTag)
	case m.expires != 0 && m.expires < p.unix:
		return p, "expires is before created"
	}
	m.params = input.params
	p.ts = strconv.FormatInt(p.unix, 10)
	p.rfc = m
	return p, ""
}

func hasParam(params []sfParam, key string) bool {
	for _, p := range params {
		if p.key == key {
			return true
		}
	}
	return false
}

func quoted(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strconv.Quote(n)
	}
	return out
}

// validFieldName reports whether s is a lowercase HTTP field name.
func validFieldName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || !isTokenChar(c) || c == ':' || c == '/' {
			return false
		}
	}
	return true
}

// nonceChars reports whether s holds only base64 and base64url characters.
func nonceChars(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', c == '+', c == '/', c == '=':
		default:
			return false
		}
	}
	return true
}

// uncovered returns the first header of CoveredHeaders that h carries but
// the signature does not cover, or "".
func (m *msgSig) uncovered(h http.Header) string {
	for _, name := range CoveredHeaders {
		if _, ok := h[http.CanonicalHeaderKey(name)]; !ok {
			continue
		}
		covered := false
		for _, c := range m.components {
			covered = covered || c == name
		}
		if !covered {
			return name
		}
	}
	return ""
}

// checkDigest checks the Content-Digest header of h against the SHA-256 of
// the body; the problem says what is wrong.
func checkDigest(h http.Header, bodySum [32]byte) string {
	vals := h[HeaderContentDigest]
	if len(vals) == 0 {
		return "the request has no Content-Digest header; send Content-Digest: sha-256=:<base64 of the SHA-256 of the body>: and cover it"
	}
	d, problem := parseDictionary(strings.Join(vals, ", "))
	if problem != "" {
		return "Content-Digest is not a structured dictionary: " + problem
	}
	for _, m := range d {
		if m.key != "sha-256" {
			continue
		}
		if m.inner || m.item.kind != sfBytes || len(m.item.bytes) != sha256.Size {
			return "the sha-256 member of Content-Digest is not a 32-byte byte sequence"
		}
		if subtle.ConstantTimeCompare(m.item.bytes, bodySum[:]) != 1 {
			return "Content-Digest does not match the body: the body was changed on the way, or the digest was not computed over the body as sent"
		}
		return ""
	}
	return "Content-Digest has no sha-256 member; the gateway checks SHA-256"
}

// splitTarget splits an origin-form request target into the @path and
// @query component values of RFC 9421: the path ("/" if empty) and "?"
// followed by the query ("?" alone without one).
func splitTarget(target string) (path, query string) {
	path, q, _ := strings.Cut(target, "?")
	if path == "" {
		path = "/"
	}
	return path, "?" + q
}

// normAuthority is the @authority component value of a Host header: ASCII
// letters lowercased, and a port of :80 or :443 left out (RFC 9421 section
// 2.2.3 omits the scheme's default port; the gateway may sit behind a proxy
// that ends TLS, so both defaults are left out).
func normAuthority(host string) string {
	b := []byte(host)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port := s[:i], s[i+1:]
		bracketed := strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]")
		if (port == "80" || port == "443") && (bracketed || !strings.Contains(host, ":")) {
			return host
		}
	}
	return s
}

// appendSignatureBase appends the signature base (RFC 9421, section 2.5) of
// a request with the given method, authority (already normalized), target
// and header to dst; the problem names a covered header the request lacks.
func appendSignatureBase(dst []byte, m *msgSig, method, authority, target string, h http.Header) ([]byte, string) {
	path, query := splitTarget(target)
	for _, c := range m.components {
		dst = append(dst, '"')
		dst = append(dst, c...)
		dst = append(dst, `": `...)
		switch c {
		case "@method":
			dst = append(dst, method...)
		case "@authority":
			dst = append(dst, authority...)
		case "@path":
			dst = append(dst, path...)
		case "@query":
			dst = append(dst, query...)
		default:
			vals, ok := h[http.CanonicalHeaderKey(c)]
			if !ok {
				return dst, fmt.Sprintf("the signature covers the %s header, which the request does not carry", c)
			}
			for i, v := range vals {
				if i > 0 {
					dst = append(dst, ", "...)
				}
				dst = append(dst, strings.Trim(v, " \t")...)
			}
		}
		dst = append(dst, '\n')
	}
	dst = append(dst, `"@signature-params": `...)
	return appendSignatureParams(dst, m), ""
}

// appendSignatureParams appends the serialization of the covered components
// and the parameters, the @signature-params value and the Signature-Input
// member value.
func appendSignatureParams(dst []byte, m *msgSig) []byte {
	dst = append(dst, '(')
	for i, c := range m.components {
		if i > 0 {
			dst = append(dst, ' ')
		}
		dst = appendSFString(dst, c)
	}
	dst = append(dst, ')')
	return appendSFParams(dst, m.params)
}

// signMessage sets the Content-Digest, Signature-Input and Signature headers
// of req for body (see SignRequest) and sets req's body to body.
func signMessage(req *http.Request, body []byte, signer Signer, now time.Time) error {
	if req == nil || req.URL == nil {
		return errs.E(errs.Invalid, "sign request: no request")
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
	if req.Header == nil {
		req.Header = make(http.Header)
	}
	req.Header.Del(HeaderSignature)
	sum := bodyHash(body)
	req.Header.Set(HeaderContentDigest, "sha-256=:"+base64.StdEncoding.EncodeToString(sum[:])+":")

	var nb [16]byte
	_, _ = rand.Read(nb[:]) // crypto/rand.Read does not fail
	created := now.Unix()
	m := &msgSig{components: append([]string(nil), requiredComponents[:]...)}
	for _, name := range CoveredHeaders {
		if _, ok := req.Header[http.CanonicalHeaderKey(name)]; ok {
			m.components = append(m.components, name)
		}
	}
	m.params = []sfParam{
		{"created", sfItem{kind: sfInteger, i: created}},
		{"nonce", sfItem{kind: sfString, s: base64.RawURLEncoding.EncodeToString(nb[:])}},
		{"keyid", sfItem{kind: sfString, s: verify.ClientID(signer.Public())}},
		{"alg", sfItem{kind: sfString, s: "ed25519"}},
		{"tag", sfItem{kind: sfString, s: SignatureTag}},
	}
	base, problem := appendSignatureBase(make([]byte, 0, 512), m, method, normAuthority(host), req.URL.RequestURI(), req.Header)
	if problem != "" {
		return errs.E(errs.Invalid, "sign request: %s", problem) // cannot happen: only present headers are covered
	}
	sig := signer.Sign(base)
	req.Header.Set(HeaderSignatureInput, SignatureLabel+"="+string(appendSignatureParams(nil, m)))
	req.Header.Set(HeaderMessageSignature, SignatureLabel+"=:"+base64.StdEncoding.EncodeToString(sig)+":")
	if len(body) == 0 {
		req.Body, req.ContentLength, req.GetBody = http.NoBody, 0, nil
	} else {
		req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	return nil
}

// SignRequest prepares req to pass a gateway without mutual TLS: it sets the
// Licet-License header to licensePEM (the license file, base64) and signs
// the request with signer in HTTP Message Signatures (RFC 9421): the
// Content-Digest header (RFC 9530, SHA-256 of body), and the Signature-Input
// and Signature headers, labelled "licet", covering the method, the
// authority (req.Host, else req.URL.Host), the path, the query, the
// Content-Digest and each of CoveredHeaders that req carries, with the
// parameters created (now), a fresh random nonce,
// keyid (the client ID), alg "ed25519" and tag "licet". It also sets req's
// body to body (nil or empty for none), so that what is sent is what was
// signed. Set every header to be covered (Content-Type, Cookie, ...) before
// signing, and do not let a cookie jar add cookies afterwards: the gateway
// refuses a request with a Cookie its signature does not cover.
//
// Sign each request anew just before sending it, including retries: a
// gateway accepts a signature once, within its allowed clock skew (a minute
// by default) of now, and only for the authority it answers to. signer is
// typically the client's *keys.Signer, the key the license was issued to.
// docs/formats.md (section 9.6) specifies the headers for other languages.
func SignRequest(req *http.Request, body []byte, licensePEM []byte, signer Signer, now time.Time) error {
	if len(licensePEM) == 0 {
		return errs.E(errs.Invalid, "sign request: no license file; get a license from the license server first")
	}
	if err := signMessage(req, body, signer, now); err != nil {
		return err
	}
	req.Header.Set(HeaderLicense, base64.StdEncoding.EncodeToString(licensePEM))
	return nil
}

// checkAuthority refuses a signed request addressed to an authority that is
// not one of the gateway's public names (Options.PublicNames): a request
// signed for one gateway is not accepted by another.
func (c *checker) checkAuthority(host string) *failure {
	if len(c.publicNames) == 0 {
		return nil
	}
	a := normAuthority(host)
	for _, n := range c.publicNames {
		if n == a {
			return nil
		}
	}
	return c.fail(reasonWrongGateway, "the request is signed for %q, but this gateway answers only to %s: a signed request is good for the gateway it was addressed to; "+
		"send it to that gateway (or, if this is the right one, start it with --public-name for that name)", a, strings.Join(c.publicNames, ", "))
}

// normPublicNames normalizes the public names of Options as @authority
// values are.
func normPublicNames(names []string) []string {
	var out []string
	for _, n := range names {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, normAuthority(n))
		}
	}
	return out
}

// requestSignature finds the signature of r: an HTTP Message Signature
// (Signature-Input and Signature), or, if the gateway accepts it, a
// Licet-Signature header. signed is false when r carries neither; f is set
// when it carries one that cannot be used.
func (c *checker) requestSignature(r *http.Request) (p signature, signed bool, f *failure) {
	sh := r.Header[HeaderSignature]
	if len(r.Header[HeaderSignatureInput]) > 0 || len(r.Header[HeaderMessageSignature]) > 0 {
		p, problem := parseMessageSignature(r.Header)
		if problem != "" {
			return p, true, c.fail(reasonInvalidSignature, "the request's HTTP Message Signature (%s and %s, RFC 9421) is not usable: %s; see the licet gateway documentation",
				HeaderSignatureInput, HeaderMessageSignature, problem)
		}
		return p, true, nil
	}
	switch {
	case len(sh) == 0:
		return p, false, nil
	case !c.acceptV1:
		return p, true, c.fail(reasonInvalidSignature, "this gateway no longer accepts the %s header, which does not cover the request's headers: "+
			"update the client to one that signs with HTTP Message Signatures (%s, %s, %s; licet's agent does), or, for a transition, start the gateway with --accept-licet-signature",
			HeaderSignature, HeaderSignatureInput, HeaderMessageSignature, HeaderContentDigest)
	case len(sh) != 1:
		return p, true, c.fail(reasonInvalidSignature, "the request carries %d %s headers; send one", len(sh), HeaderSignature)
	}
	p, problem := parseSignature(sh[0])
	if problem != "" {
		return p, true, c.fail(reasonInvalidSignature, "the %s header is malformed: %s; the format is keyid=<client ID>,ts=<unix seconds>,nonce=<random>,sig=<base64 Ed25519 signature>",
			HeaderSignature, problem)
	}
	return p, true, nil
}

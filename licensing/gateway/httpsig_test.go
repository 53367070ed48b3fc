package gateway_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/gateway"
	"github.com/licet/licet/verify"
)

// fencedAfter returns the first ``` block of doc after the line containing
// marker.
func fencedAfter(t *testing.T, doc, marker string) string {
	t.Helper()
	i := strings.Index(doc, marker)
	if i < 0 {
		t.Fatalf("docs/formats.md has no %q", marker)
	}
	rest := doc[i:]
	a := strings.Index(rest, "```\n")
	b := strings.Index(rest[a+4:], "\n```")
	if a < 0 || b < 0 {
		t.Fatalf("no code block after %q", marker)
	}
	return rest[a+4 : a+4+b]
}

// vectorKey is the key of the test vectors: seed 00 01 ... 1f.
func vectorKey() *keys.Signer {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	return keys.NewSigner(ed25519.NewKeyFromSeed(seed))
}

// TestMessageSignatureVector checks the test vector of docs/formats.md,
// section 9.6: the digest, the signature over the documented base, that the
// headers carry them, and that a gateway at the vector's time accepts the
// request once (and a gateway with other public names refuses it).
func TestMessageSignatureVector(t *testing.T) {
	raw, err := os.ReadFile("../../docs/formats.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	base := fencedAfter(t, doc, "created 1767225600, expires 1767225660, nonce `AAECAwQFBgcICQoLDA0ODw`. The signature base is")
	headers := fencedAfter(t, doc, "and the headers added to the request (with `Licet-License`)")
	const body = `{"scene":1}`
	key := vectorKey()
	if id := verify.ClientID(key.Public()); id != "client-56475aa75463474c" {
		t.Fatalf("client ID %s", id)
	}
	sum := sha256.Sum256([]byte(body))
	digest := "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
	hdr := map[string]string{}
	for _, line := range strings.Split(headers, "\n") {
		k, v, _ := strings.Cut(line, ": ")
		hdr[k] = v
	}
	if hdr["Content-Digest"] != digest || !strings.Contains(base, `"content-digest": `+digest+"\n") {
		t.Fatalf("documented digest %q, want %q", hdr["Content-Digest"], digest)
	}
	params := base[strings.LastIndex(base, `"@signature-params": `)+len(`"@signature-params": `):]
	if hdr["Signature-Input"] != "licet="+params {
		t.Fatalf("Signature-Input %q is not the @signature-params of the base %q", hdr["Signature-Input"], params)
	}
	sig := base64.StdEncoding.EncodeToString(key.Sign([]byte(base)))
	if hdr["Signature"] != "licet=:"+sig+":" {
		t.Fatalf("documented Signature %q, want licet=:%s:", hdr["Signature"], sig)
	}

	now := time.Unix(1767225600, 0)
	f := newFixture(t, now.Add(-time.Hour))
	c := &client{key: key, id: verify.ClientID(key.Public())}
	c.issue(t, f.site, appAttrs(5), now.Add(-time.Hour), now.Add(time.Hour))
	send := func(h http.Handler) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "http://app.example.com/v1/render?job=42", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Licet-License", base64.StdEncoding.EncodeToString(c.licPEM))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	var reached bool
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true })
	opts := options()
	opts.Now = func() time.Time { return now.Add(30 * time.Second) }
	opts.PublicNames = []string{"gw-b.example.com"}
	if rec := send(gateway.Middleware(f.v, opts)(app)); rec.Code != http.StatusUnauthorized || reached ||
		!strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="wrong_gateway"`) {
		t.Fatalf("vector request at another gateway: %d %s", rec.Code, rec.Body)
	}
	opts.PublicNames = []string{"gw-b.example.com", "app.example.com"}
	h := gateway.Middleware(f.v, opts)(app)
	if rec := send(h); rec.Code != http.StatusOK || !reached {
		t.Fatalf("vector request: %d %s", rec.Code, rec.Body)
	}
	if rec := send(h); rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), "replayed_request") {
		t.Fatalf("vector request replayed: %d %s", rec.Code, rec.Body)
	}
}

// handSigned builds a signed request from a Signature-Input member value
// and the signature base lines before @signature-params, as another
// language's RFC 9421 library would, signed by c.
func handSigned(t *testing.T, c *client, method, url, body string, header map[string]string, baseLines, params string) *http.Request {
	t.Helper()
	req := httptest.NewRequest(method, url, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	sum := sha256.Sum256([]byte(body))
	req.Header.Set("Content-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum[:])+":")
	req.Header.Set("Licet-License", base64.StdEncoding.EncodeToString(c.licPEM))
	base := strings.ReplaceAll(baseLines, "DIGEST", req.Header.Get("Content-Digest")) + `"@signature-params": ` + params
	req.Header.Set("Signature-Input", "sig1="+params)
	req.Header.Set("Signature", "sig1=:"+base64.StdEncoding.EncodeToString(c.key.Sign([]byte(base)))+":")
	return req
}

// TestMessageSignatureRules: what the gateway requires of a signature, each
// checked by a request that would pass without the rule.
func TestMessageSignatureRules(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	f := newFixture(t, now.Add(-time.Hour))
	c := f.newClient(t, appAttrs(9), now.Add(-time.Hour), now.Add(time.Hour))
	opts := options()
	opts.Now = func() time.Time { return now }
	opts.MaxSkew = 5 * time.Minute
	opts.PublicNames = []string{"app.example.com"}
	h := gateway.Middleware(f.v, opts)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	serve := func(req *http.Request) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	created := now.Unix()
	ts := func(n int64) string { return strconv.FormatInt(n, 10) }
	lines := "\"@method\": GET\n\"@authority\": app.example.com\n\"@path\": /x\n\"@query\": ?\n\"content-digest\": DIGEST\n"
	comps := `("@method" "@authority" "@path" "@query" "content-digest")`
	tail := `;nonce="` + "%s" + `";keyid="` + c.id + `";tag="licet"`
	params := func(nonce, extra string) string {
		return comps + ";created=" + ts(created) + extra + strings.Replace(tail, "%s", nonce, 1)
	}

	// Made by hand, as another library would (label sig1, no alg): accepted.
	if rec := serve(handSigned(t, c, "GET", "http://app.example.com/x", "", nil, lines, params("nonce-000000000001", ""))); rec.Code != http.StatusOK {
		t.Fatalf("hand-made signature: %d %s", rec.Code, rec.Body)
	}
	// An expires in the past: stale, although created is within the skew.
	rec := serve(handSigned(t, c, "GET", "http://app.example.com/x", "", nil, lines, comps+";created="+ts(created-200)+";expires="+ts(created-100)+strings.Replace(tail, "%s", "nonce-000000000002", 1)))
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "expired") {
		t.Fatalf("expired signature: %d %s", rec.Code, rec.Body)
	}
	if rec := serve(handSigned(t, c, "GET", "http://app.example.com/x", "", nil, lines, comps+";created="+ts(created-200)+";expires="+ts(created+10)+strings.Replace(tail, "%s", "nonce-000000000003", 1))); rec.Code != http.StatusOK {
		t.Fatalf("expires in the future: %d %s", rec.Code, rec.Body)
	}
	for name, p := range map[string]string{
		"no tag":            comps + ";created=" + ts(created) + `;nonce="nonce-000000000004";keyid="` + c.id + `"`,
		"other tag":         comps + ";created=" + ts(created) + `;nonce="nonce-000000000005";keyid="` + c.id + `";tag="other"`,
		"no created":        comps + `;nonce="nonce-000000000006";keyid="` + c.id + `";tag="licet"`,
		"no nonce":          comps + ";created=" + ts(created) + `;keyid="` + c.id + `";tag="licet"`,
		"unknown parameter": params("nonce-000000000007", ";foo=1"),
		"other alg":         params("nonce-000000000008", `;alg="rsa-pss-sha512"`),
	} {
		rec := serve(handSigned(t, c, "GET", "http://app.example.com/x", "", nil, lines, p))
		if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), "invalid_signature") {
			t.Errorf("%s: %d %s", name, rec.Code, rec.Body)
		}
	}
	// Required components left out (the base built to match).
	for name, cut := range map[string]string{"@authority": "\"@authority\": app.example.com\n", "@query": "\"@query\": ?\n", "content-digest": "\"content-digest\": DIGEST\n"} {
		p := strings.Replace(comps, ` "`+name+`"`, "", 1) + ";created=" + ts(created) + `;nonce="nonce-0000000000` + name[1:3] + `";keyid="` + c.id + `";tag="licet"`
		rec := serve(handSigned(t, c, "GET", "http://app.example.com/x", "", nil, strings.Replace(lines, cut, "", 1), p))
		if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "does not cover") {
			t.Errorf("without %s: %d %s", name, rec.Code, rec.Body)
		}
	}
	// @target-uri instead of @authority, @path and @query.
	p := `("@method" "@target-uri" "content-digest");created=` + ts(created) + `;nonce="nonce-000000000011";keyid="` + c.id + `";tag="licet"`
	rec = serve(handSigned(t, c, "GET", "http://app.example.com/x", "", nil, "\"@method\": GET\n\"@target-uri\": http://app.example.com/x\n\"content-digest\": DIGEST\n", p))
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "@target-uri") {
		t.Errorf("@target-uri: %d %s", rec.Code, rec.Body)
	}
}

// TestAlteredHeaders is the attack of issue 12: over plain HTTP, a proxy
// changes or adds Content-Type, Cookie or X-HTTP-Method-Override, or
// changes the body with a matching Content-Digest. Each is refused.
func TestAlteredHeaders(t *testing.T) {
	e := newEnv(t)
	hc := httpClient(e.gw, nil)
	mk := func(set map[string]string) *http.Request {
		req, _ := http.NewRequest("POST", e.gw.URL+"/pay", nil)
		for k, v := range set {
			req.Header.Set(k, v)
		}
		if err := gateway.SignRequest(req, []byte(`{"amount":10}`), e.c.licPEM, e.c.key, time.Now()); err != nil {
			t.Fatal(err)
		}
		return req
	}
	signedWith := map[string]string{"Content-Type": "application/json", "Cookie": "session=a", "X-HTTP-Method-Override": "PUT"}
	if a := do(t, hc, mk(signedWith)); a.status != http.StatusOK {
		t.Fatalf("unaltered: %d %s", a.status, a.msg)
	}
	in := mk(signedWith).Header.Get("Signature-Input")
	for _, c := range []string{`"content-type"`, `"cookie"`, `"x-http-method-override"`, `"content-digest"`, `"@authority"`} {
		if !strings.Contains(in, c) {
			t.Errorf("Signature-Input %s does not cover %s", in, c)
		}
	}
	for name, alter := range map[string]func(*http.Request){
		"content-type changed": func(r *http.Request) { r.Header.Set("Content-Type", "application/x-www-form-urlencoded") },
		"cookie changed":       func(r *http.Request) { r.Header.Set("Cookie", "session=b") },
		"method override":      func(r *http.Request) { r.Header.Set("X-HTTP-Method-Override", "DELETE") },
		"second cookie":        func(r *http.Request) { r.Header.Add("Cookie", "admin=1") },
		"cookie removed":       func(r *http.Request) { r.Header.Del("Cookie") },
		"body and digest":      alterBodyAndDigest(`{"amount":99}`),
		"digest of another body": func(r *http.Request) {
			r.Header.Set("Content-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(make([]byte, 32))+":")
		},
	} {
		t.Run(name, func(t *testing.T) {
			req := mk(signedWith)
			alter(req)
			wantRefused(t, do(t, hc, req), "invalid_signature")
		})
	}
	// Headers added to a request signed without them.
	for _, k := range []string{"Content-Type", "Cookie", "X-HTTP-Method-Override"} {
		req := mk(nil)
		req.Header.Set(k, "x")
		a := do(t, hc, req)
		wantRefused(t, a, "invalid_signature")
		if !strings.Contains(a.msg, "does not cover") {
			t.Errorf("%s added: %s", k, a.msg)
		}
	}
	if n, _, _ := e.up.seen(); n != 1 {
		t.Fatalf("upstream reached %d times, want once", n)
	}
}

// alterBodyAndDigest replaces the body and sets a matching Content-Digest.
func alterBodyAndDigest(body string) func(*http.Request) {
	return func(r *http.Request) {
		sum := sha256.Sum256([]byte(body))
		r.Header.Set("Content-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum[:])+":")
		r.Body = http.NoBody
		r.GetBody = nil
		r.ContentLength = int64(len(body))
		r.Body = readCloser{bytes.NewReader([]byte(body))}
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// TestSignedForAnotherGateway: a request signed for one gateway is refused
// by another, whether it keeps its Host (wrong_gateway) or is rewritten
// (the signature covers the authority).
func TestSignedForAnotherGateway(t *testing.T) {
	now := time.Now()
	f := newFixture(t, now.Add(-time.Hour))
	c := f.newClient(t, appAttrs(3), now.Add(-time.Hour), now.Add(time.Hour))
	gw := func(names ...string) http.Handler {
		opts := options()
		opts.PublicNames = names
		return gateway.Middleware(f.v, opts)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	}
	a, b := gw("gw-a.example.com", "gw-a.example.com:8472"), gw("gw-b.example.com:8472")
	sign := func(host string) *http.Request {
		req := httptest.NewRequest("GET", "http://"+host+"/x", nil)
		if err := gateway.SignRequest(req, nil, c.licPEM, c.key, now); err != nil {
			t.Fatal(err)
		}
		req.RequestURI = "/x"
		return req
	}
	serve := func(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for _, host := range []string{"gw-a.example.com", "GW-A.example.com:80", "gw-a.example.com:443", "gw-a.example.com:8472"} {
		if rec := serve(a, sign(host)); rec.Code != http.StatusOK {
			t.Fatalf("signed for %s at gateway A: %d %s", host, rec.Code, rec.Body)
		}
	}
	rec := serve(b, sign("gw-a.example.com:8472"))
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="wrong_gateway"`) ||
		!strings.Contains(rec.Body.String(), "--public-name") {
		t.Fatalf("signed for A, at B: %d %s", rec.Code, rec.Body)
	}
	req := sign("gw-a.example.com:8472")
	req.Host = "gw-b.example.com:8472"
	if rec := serve(b, req); rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="invalid_signature"`) {
		t.Fatalf("signed for A, Host rewritten to B: %d %s", rec.Code, rec.Body)
	}
	if rec := serve(a, sign("gw-a.example.com:9999")); rec.Code != http.StatusUnauthorized {
		t.Fatalf("signed for another port of A's host: %d", rec.Code)
	}
}

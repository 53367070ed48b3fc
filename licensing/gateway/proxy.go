package gateway

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"

	"github.com/licet/licet/verify"
)

// NewProxy returns a reverse proxy to upstream behind the license check:
// Middleware(v, opts) around NewReverseProxy(upstream, opts). The upstream
// application reads the client's identity and license from the
// Licet-Client-* and Licet-License-* headers, which it can trust as long as
// only the gateway can reach it. It panics if v is nil or opts.Product is
// empty.
func NewProxy(v *verify.Verifier, upstream *url.URL, opts Options) http.Handler {
	return Middleware(v, opts)(NewReverseProxy(upstream, opts))
}

// NewReverseProxy returns the reverse proxy that NewProxy puts behind the
// license check, without the check: requests go to upstream (its path is
// prefixed to theirs) with hop-by-hop headers removed and X-Forwarded-For,
// X-Forwarded-Host and X-Forwarded-Proto set from the client's connection
// (the client's own X-Forwarded-* headers are dropped, not trusted). The
// default transport ignores HTTP_PROXY and the like. An
// upstream that does not answer gets the client a 502 JSON error.
func NewReverseProxy(upstream *url.URL, opts Options) *httputil.ReverseProxy {
	log := opts.log()
	tr := opts.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil // the upstream is the gateway's own application, never behind HTTP_PROXY
		t.MaxIdleConns = 1024
		t.MaxIdleConnsPerHost = 256 // the default, 2, reconnects under any concurrency
		tr = t
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.SetXForwarded()
		},
		Transport: tr,
		ErrorLog:  slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client went away
			}
			log.Warn("gateway: upstream failed", "upstream", upstream.Redacted(), "method", r.Method, "path", r.URL.Path, "err", err)
			writeError(w, http.StatusBadGateway, "internal", "the application server behind the license gateway did not answer; try again later")
		},
	}
}

// TLSConfig returns a server TLS configuration for a gateway that takes
// licenses as TLS client certificates, serving certs. It requests a client
// certificate without verifying it in the handshake (tls.RequestClientCert):
// the handshake still proves that the client holds the certificate's key,
// and the gateway verifies the chain against the vendor root on each request,
// so a client with an expired license or none reaches the gateway and is
// answered with a 401 that says where to get one. Clients that present no
// certificate can use signed headers.
func TLSConfig(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: certs,
		ClientAuth:   tls.RequestClientCert,
		MinVersion:   tls.VersionTLS12,
	}
}

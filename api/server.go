// Package api is licet's HTTP layer: the vendor and site APIs, the plumbing
// every licet server shares (health, Prometheus metrics, structured logs,
// request size and rate limits, JSON errors, graceful shutdown), and the Go
// clients that the CLI uses to talk to them.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/licet/licet/auth"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/ratelimit"
	"github.com/licet/licet/licensing/licenseserver"
)

// Limits bound what one client can send.
type Limits struct {
	MaxBody   int64   // request body bytes; larger bodies get 413
	RatePerIP float64 // sustained requests per second per client IP; 0 disables
	Burst     int     // bucket size of the per-IP limiter
}

// CostlyRoutes are the routes whose requests cost a signature, a durable
// transaction or a precomputed challenge, with the share of Limits.RatePerIP
// each gets per client IP (bucket: twice that), on top of the per-IP limit,
// which verification requests use alone. Grants and challenges keep half, as
// a gateway asks for the licenses of all the clients behind it from one IP
// (each client key has its own limits at the license server); enrollment,
// which a site does once, gets 1/200. A pay-as-you-go device's registration
// and sync (a signature check and a read before they are authenticated,
// then a transaction, and for a sync a report row and a nonce) get 1/20: a
// factory registers devices from one IP, and a fleet behind one NAT syncs.
var CostlyRoutes = map[string]float64{
	"POST /v1/challenges": 0.5, "POST /v1/licenses": 0.5, "POST /v1/upgrades": 0.5,
	"POST /v1/packs": 0.05, "POST /v1/sites/enroll": 0.005, "POST /v1/usage-reports": 0.05,
	"POST /v1/sites/renew": 0.005, "GET /v1/revoked-sites": 0.05,
	"POST /v1/payg/register": 0.05, "POST /v1/payg/devices/{id}/sync": 0.05,
}

// DefaultLimits suit an admin and license API on one machine.
var DefaultLimits = Limits{MaxBody: 1 << 20, RatePerIP: 2000, Burst: 4000}

// errorBody is the JSON shape of every error answer.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// WriteError answers with err as JSON, with the status of its kind. Internal
// errors are logged in full and answered with a generic message. An error
// with a RetryAfter method (an empty challenge pool) sets Retry-After.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		w.Header().Set("Retry-After", strconv.Itoa(int(max(time.Second, ra.RetryAfter()).Round(time.Second)/time.Second)))
	}
	kind := errs.KindOf(err)
	if kind == errs.Internal {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	var body errorBody
	body.Error.Code = kind.String()
	body.Error.Message = errs.PublicMessage(err)
	writeJSON(w, errs.HTTPStatus(kind), body)
}

// writeJSON answers with v as compact JSON (machines read it; the CLI
// indents what it prints).
func writeJSON(w http.ResponseWriter, status int, v any) {
	buf := jsonBufs.Get().(*bytes.Buffer)
	defer putJSONBuf(buf)
	buf.Reset()
	if err := json.NewEncoder(buf).Encode(v); err != nil { // json.Marshal's bytes and a newline
		buf.Reset()
		buf.WriteString(`{"error":{"code":"internal","message":"the answer could not be encoded"}}` + "\n")
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// writeGrant writes the answer of a grant (GrantResponse), byte for byte as
// writeJSON would. The license is armored text, whose JSON string is the
// text with each newline written \n: building it directly costs a fraction
// of encoding/json's byte-by-byte escaping, which took about 4% of a grant's
// CPU. A license with any other byte to escape goes through writeJSON.
func writeGrant(w http.ResponseWriter, g *licenseserver.Grant) {
	resp := GrantResponse{LicenseID: g.Assignment.LicenseID, Reissued: g.Reissued, Temporary: g.Assignment.Temporary}
	buf := jsonBufs.Get().(*bytes.Buffer)
	defer putJSONBuf(buf)
	buf.Reset()
	buf.Grow(len(g.File) + len(g.File)/32 + 128)
	b, ok := appendGrantJSON(buf.AvailableBuffer(), resp, g.File)
	if !ok {
		resp.License = string(g.File)
		writeJSON(w, http.StatusOK, resp)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// appendGrantJSON appends the JSON of r with license as its License and a
// newline, as json.Encoder writes it; false if license has a byte other
// than a newline that JSON (with HTML escaping) would escape.
func appendGrantJSON(dst []byte, r GrantResponse, license []byte) ([]byte, bool) {
	dst = append(dst, `{"license_id":`...)
	dst = strconv.AppendInt(dst, r.LicenseID, 10)
	dst = append(dst, `,"reissued":`...)
	dst = strconv.AppendBool(dst, r.Reissued)
	dst = append(dst, `,"temporary":`...)
	dst = strconv.AppendBool(dst, r.Temporary)
	dst = append(dst, `,"license":"`...)
	for len(license) > 0 {
		line, rest, newline := bytes.Cut(license, []byte{'\n'})
		for _, c := range line {
			if !plainJSON[c] {
				return nil, false
			}
		}
		dst = append(dst, line...)
		if newline {
			dst = append(dst, '\\', 'n')
		}
		license = rest
	}
	return append(dst, "\"}\n"...), true
}

// plainJSON marks the bytes a JSON string holds as they are: printable
// ASCII but for the quote, the backslash and encoding/json's HTML escapes.
var plainJSON = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// jsonBufs holds the buffers writeJSON encodes answers into (a grant's is
// about 7 KB), so that each answer does not grow a new one.
var jsonBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putJSONBuf returns a buffer to jsonBufs unless an unusually large answer
// (a long listing) grew it.
func putJSONBuf(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		jsonBufs.Put(b)
	}
}

// readJSON decodes a JSON request body into v, rejecting unknown fields.
func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err, "request body is not the expected JSON")
	}
	return nil
}

// readBody reads the whole request body (already bounded by the size limit).
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, bodyError(err, "could not read request body")
	}
	return b, nil
}

func bodyError(err error, msg string) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return errs.E(errs.TooLarge, "request body is over the limit of %d bytes", tooBig.Limit)
	}
	return errs.Wrap(errs.Invalid, err, "%s", msg)
}

// Server wraps a role's routes with the shared plumbing.
type Server struct {
	Name    string // role name, used in metrics and logs
	Log     *slog.Logger
	Limits  Limits
	Tokens  auth.TokenStore // checks admin bearer tokens
	mux     *http.ServeMux
	metrics http.Handler // the Prometheus page, without authentication
	reg     *prometheus.Registry
	reqs    *prometheus.CounterVec
	latency *prometheus.HistogramVec

	perIP  *ratelimit.Keyed            // by client IP
	costly map[string]*ratelimit.Keyed // by route of CostlyRoutes, then client IP
}

// NewServer makes a server with /healthz and /metrics already routed, and
// with tokens, the token administration (/v1/tokens). /metrics needs a token
// of scope metrics (or admin): its counters tell pack and grant volumes. A
// server without tokens (the gateway) serves /metrics only on a listener of
// its own (MetricsHandler, --metrics-listen).
func NewServer(name string, log *slog.Logger, limits Limits, tokens auth.TokenStore) *Server {
	s := &Server{Name: name, Log: log, Limits: limits, Tokens: tokens, mux: http.NewServeMux(),
		reg: prometheus.NewRegistry()}
	if limits.RatePerIP > 0 {
		s.perIP = ratelimit.New(limits.RatePerIP, limits.Burst, 0)
		s.costly = map[string]*ratelimit.Keyed{}
		for route, share := range CostlyRoutes {
			rate := limits.RatePerIP * share
			s.costly[route] = ratelimit.New(rate, max(1, int(2*rate)), 0)
		}
	}
	s.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "licet_http_requests_total", Help: "HTTP requests by route and status.",
		ConstLabels: prometheus.Labels{"role": name},
	}, []string{"route", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "licet_http_request_duration_seconds", Help: "HTTP request latency by route.",
		ConstLabels: prometheus.Labels{"role": name},
		Buckets:     []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route"})
	s.reg.MustRegister(s.reqs, s.latency, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.metrics = promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})
	if tokens != nil {
		s.Scoped("GET /metrics", auth.ScopeMetrics, func(w http.ResponseWriter, r *http.Request) error {
			s.metrics.ServeHTTP(w, r)
			return nil
		})
		s.tokenRoutes()
	} else {
		s.Public("GET /metrics", func(w http.ResponseWriter, r *http.Request) error {
			return errs.E(errs.Forbidden, "this %s serves /metrics only on its metrics address: start it with --metrics-listen ADDR and scrape that", name)
		})
	}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "role": name})
	})
	return s
}

// Register adds collectors to the server's /metrics (a role's own figures).
func (s *Server) Register(cs ...prometheus.Collector) { s.reg.MustRegister(cs...) }

// MetricsHandler serves the Prometheus page without authentication, for a
// listener of its own that only the monitoring network reaches
// (--metrics-listen).
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics)
	return mux
}

// handlerFunc is a handler that returns an error instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// Public routes pattern to h without authentication.
func (s *Server) Public(pattern string, h handlerFunc) { s.route(pattern, "", h) }

// Admin routes pattern to h behind a bearer admin token.
func (s *Server) Admin(pattern string, h handlerFunc) { s.route(pattern, auth.ScopeAdmin, h) }

// Scoped routes pattern to h behind a bearer token of scope (or an admin token).
func (s *Server) Scoped(pattern, scope string, h handlerFunc) { s.route(pattern, scope, h) }

// tokenHint says where a caller without a token gets one, for this role.
func (s *Server) tokenHint() string {
	const how = "the licet CLI takes it as --token or $LICET_TOKEN; over HTTP send 'Authorization: Bearer licet_…'"
	if s.Name == "vendor" {
		return "use the admin token 'licet vendor init' printed; " + how
	}
	return "use the site's admin token or one from 'licet site token create'; " + how
}

func (s *Server) route(pattern, scope string, h handlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if scope != "" {
			bearer, ok := bearerToken(r)
			if !ok {
				WriteError(w, r, s.Log, errs.E(errs.Unauthenticated, "this call needs a token of scope %s: %s", scope, s.tokenHint()))
				return
			}
			tok, err := auth.Check(r.Context(), s.Tokens, bearer)
			if err != nil {
				WriteError(w, r, s.Log, err)
				return
			}
			if !tok.Allows(scope) {
				WriteError(w, r, s.Log, errs.E(errs.Forbidden, "token %s (%q) has scope %s and may not call %s, which needs scope %s", tok.ID, tok.Name, tok.Scope, r.Pattern, scope))
				return
			}
			r = r.WithContext(auth.WithToken(r.Context(), tok))
		}
		if err := h(w, r); err != nil {
			WriteError(w, r, s.Log, err)
		}
	})
}

func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const p = "Bearer "
	if len(h) <= len(p) || h[:len(p)] != p {
		return "", false
	}
	return h[len(p):], true
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (write deadlines
// for long downloads).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// ReadFrom lets io.Copy reach the connection's ReadFrom, so files are sent
// with sendfile rather than copied through user space.
func (r *statusRecorder) ReadFrom(src io.Reader) (int64, error) {
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{r.ResponseWriter}, src)
}

// allow applies the per-IP limit and, on a costly route, the per-route one
// (see Limits); the tables keep the most recently seen 100,000 clients.
func (s *Server) allow(r *http.Request) (ok bool, route, ip string, wait time.Duration) {
	ip, _, _ = net.SplitHostPort(r.RemoteAddr)
	now := time.Now()
	if ok, wait = s.perIP.Take(ip, now); !ok {
		return false, "", ip, wait
	}
	if _, pattern := s.mux.Handler(r); s.costly[pattern] != nil {
		if ok, wait = s.costly[pattern].Take(ip, now); !ok {
			return false, pattern, ip, wait
		}
	}
	return true, "", ip, 0
}

// ServeHTTP applies rate and size limits, records metrics and logs, and routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if s.perIP != nil {
		if ok, route, ip, wait := s.allow(r); !ok {
			secs := max(1, int((wait+time.Second-1)/time.Second))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			what := "requests"
			if route != "" {
				what = route + " requests"
			}
			WriteError(w, r, s.Log, errs.E(errs.RateLimited, "too many %s from %s; retry in %d s", what, ip, secs))
			s.reqs.WithLabelValues("rate_limited", "429").Inc()
			return
		}
	}
	if s.Limits.MaxBody > 0 {
		if r.ContentLength > s.Limits.MaxBody {
			WriteError(w, r, s.Log, errs.E(errs.TooLarge, "request body of %d bytes is over the limit of %d bytes", r.ContentLength, s.Limits.MaxBody))
			s.reqs.WithLabelValues("too_large", "413").Inc()
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.Limits.MaxBody)
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	s.mux.ServeHTTP(rec, r) // sets r.Pattern to the route it matched
	route := r.Pattern
	if route == "" {
		route = "unmatched"
	}
	elapsed := time.Since(start)
	s.reqs.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
	s.latency.WithLabelValues(route).Observe(elapsed.Seconds())
	s.Log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", rec.status, "duration", elapsed)
}

// Serve serves h on ln until ctx ends, then shuts down gracefully, letting
// requests in flight finish for up to ten seconds.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-done
	return err
}

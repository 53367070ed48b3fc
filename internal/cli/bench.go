package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/gateway"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/licensing/loadgen"
	"github.com/licet/licet/licensing/pack"
	"github.com/licet/licet/licensing/softid"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/verify"
)

func benchCommand() *command {
	return &command{name: "bench", summary: "load generator: drive a running site and measure it", sub: []*command{
		leaf("grants", "grant storm: many distinct clients, each challenged and granted once", benchGrants),
		leaf("verify", "license verifications over HTTP against a site", benchVerify),
		leaf("gateway", "the gateway's license check beside a bare reverse proxy, in process on loopback", benchGateway),
	}}
}

func benchGrants(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet bench grants", "--server URL --product P --software-id ID --image PATH [--clients N] [--concurrency C]",
		"Simulates N distinct clients (own keys) against a running site: challenge, answer over\nthe image, signed grant. Prints throughput and latency percentiles of whole grants, and\nthe site's CPU per grant (from its /metrics). With --prepare-answers the clients' hashing\nis left out of the measurement, as it happens on their own machines.")
	var servers listFlag
	fs.Var(&servers, "server", "site URL (repeatable: requests go round robin)")
	product := fs.String("product", "", "product ID")
	sid := fs.String("software-id", "", "software ID registered at the site")
	image := fs.String("image", "", "the client image registered for that software ID")
	clients := fs.Int("clients", 1000, "number of distinct clients")
	conc := fs.Int("concurrency", 64, "concurrent clients")
	root := fs.String("root", "", "vendor root: if set, every license is decrypted and verified")
	prepare := fs.Bool("prepare-answers", false, "fetch every client's challenge first (timed), compute the answers (not timed: real clients\nhash on their own machines), then send the grants (timed); the grant line's rate is over the two timed phases")
	wrong := fs.Bool("wrong-answers", false, "answer every challenge wrongly (an attacker or a modified client): --concurrency clients\nask again as soon as they are refused, until --duration or --clients requests; refusals are the expected outcome")
	duration := fs.Duration("duration", 0, "with --wrong-answers: stop after this long (e.g. 30s)")
	ignoreRA := fs.Bool("ignore-retry-after", false, "with --wrong-answers: ask again at once after a 429 instead of waiting its Retry-After")
	token := fs.String("token", "", "a site token of scope metrics ('licet site token create --scope metrics'; default $LICET_TOKEN): the\nsite's CPU per grant is read from its /metrics, which needs one")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "server", "product", "software-id", "image"); err != nil {
		return err
	}
	software, err := softid.Parse(*sid)
	if err != nil {
		return errs.Wrap(errs.Usage, err, "--software-id")
	}
	opts := loadgen.GrantOptions{Servers: servers, ProductID: *product, SoftwareID: software, Image: *image, Clients: *clients, Concurrency: *conc,
		PrepareAnswers: *prepare, WrongAnswers: *wrong, Duration: *duration, IgnoreRetryAfter: *ignoreRA,
		MetricsToken: *token}
	if opts.MetricsToken == "" {
		opts.MetricsToken = strings.TrimSpace(e.getenv("LICET_TOKEN"))
	}
	if *root != "" {
		if opts.RootPEM, err = os.ReadFile(*root); err != nil {
			return errs.Wrap(errs.Invalid, err, "read --root")
		}
	}
	res, err := loadgen.Grants(ctx, opts)
	if err != nil {
		return err
	}
	return printResult(e, *asJSON, res)
}

func printResult(e *env, asJSON bool, res *loadgen.Result) error {
	if asJSON {
		return printJSON(e.stdout, res)
	}
	fmt.Fprintln(e.stdout, res)
	for _, m := range res.FirstErrors {
		fmt.Fprintln(e.stdout, "  error:", m)
	}
	return nil
}

func benchVerify(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet bench verify", "--server URL --license FILE [--requests N] [--concurrency C]",
		"Posts a license to the site's verification endpoint N times over keep-alive\nconnections and prints throughput and latency percentiles.")
	server := fs.String("server", "", "site URL")
	lic := fs.String("license", "", "license PEM file (e.g. from an agent's cache)")
	product := fs.String("product", "", "require this product")
	n := fs.Int("requests", 20000, "number of requests")
	conc := fs.Int("concurrency", 32, "concurrent connections")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "server", "license"); err != nil {
		return err
	}
	pem, err := os.ReadFile(*lic)
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "read --license")
	}
	res, err := loadgen.Verifications(ctx, loadgen.VerifyOptions{Server: *server, License: pem, ProductID: *product, Requests: *n, Concurrency: *conc})
	if err != nil {
		return err
	}
	return printResult(e, *asJSON, res)
}

// gatewayReport is one 'bench gateway' measurement: a target and a mode,
// bare and gateway phases alternating.
type gatewayReport struct {
	Target      string          `json:"target"` // proxy or middleware
	Mode        string          `json:"mode"`   // mtls or signed
	Connections int             `json:"connections"`
	Phases      int             `json:"phases"`
	PhaseTime   time.Duration   `json:"phase_ns"`
	Bare        *loadgen.Result `json:"bare"`
	Gateway     *loadgen.Result `json:"gateway"`
	// Ratio is the gateway's requests/s over the bare ones'.
	Ratio float64 `json:"ratio"`
	// BarePhases and GatewayPhases are the requests/s of each phase, in order.
	BarePhases    []float64 `json:"bare_phases"`
	GatewayPhases []float64 `json:"gateway_phases"`
	// PairRatios are the ratios of the gateway phase to the bare phase of
	// each pair of adjacent phases; on a noisy machine their median (MedianPairRatio) is steadier
	// than Ratio.
	PairRatios      []float64 `json:"pair_ratios"`
	MedianPairRatio float64   `json:"median_pair_ratio"`
	// InlineSigned counts signed requests the load generator had to sign
	// during a gateway phase because the presigned ones ran out (signed mode).
	InlineSigned int64 `json:"inline_signed,omitempty"`
}

func (r *gatewayReport) print(w io.Writer) {
	fmt.Fprintf(w, "target %s, mode %s: %d keep-alive connections, %d phases of %s alternating bare/gateway\n",
		r.Target, r.Mode, r.Connections, r.Phases, r.PhaseTime)
	for _, x := range []struct {
		name   string
		res    *loadgen.Result
		phases []float64
	}{{"bare   ", r.Bare, r.BarePhases}, {"gateway", r.Gateway, r.GatewayPhases}} {
		fmt.Fprintf(w, "  %s %s\n          per phase:", x.name, x.res)
		for _, p := range x.phases {
			fmt.Fprintf(w, " %.0f", p)
		}
		fmt.Fprintln(w)
		for _, m := range x.res.FirstErrors {
			fmt.Fprintln(w, "          error:", m)
		}
	}
	fmt.Fprintf(w, "  ratio gateway/bare: %.3f (requests/s); p50 %.2fx, p99 %.2fx", r.Ratio,
		float64(r.Gateway.P50)/float64(max(1, r.Bare.P50)), float64(r.Gateway.P99)/float64(max(1, r.Bare.P99)))
	fmt.Fprintf(w, "; per phase pair %v, median %.3f", r.PairRatios, r.MedianPairRatio)
	if r.InlineSigned > 0 {
		fmt.Fprintf(w, "; %d requests signed inline (presigned ones ran out)", r.InlineSigned)
	}
	fmt.Fprintln(w)
}

func benchGateway(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet bench gateway", "[--duration D] [--connections N] [--phases P] [--mode mtls|signed|both] [--target proxy|middleware|both] [--cpuprofile FILE] [--json]",
		"Measures the license gateway's throughput beside the same thing without the check, in\n"+
			"this one process on loopback: a tiny upstream application (200, a short body), and\n"+
			"over TLS in front of it either a bare reverse proxy and the gateway (gateway.NewProxy,\n"+
			"the same reverse proxy behind the check) (--target proxy), or a handler that answers\n"+
			"200 alone and behind gateway.Middleware (--target middleware: the check alone).\n"+
			"A vendor root, a site and a client license are made in memory.\n\n"+
			"Mode mtls presents the license as the TLS client certificate to the gateway (the\n"+
			"bare server asks for none); mode signed sends Licet-License and an HTTP Message Signature\n"+
			"signed before each gateway phase (ahead of time, so that the client's signing is not\n"+
			"measured) to both, and only the gateway checks them. --connections workers each send\n"+
			"one request at a time on their own keep-alive connection; bare and gateway phases\n"+
			"alternate (--phases, of --duration/--phases each: bare, gateway, gateway, bare, ...)\n"+
			"so that machine noise hits both; each pair of adjacent phases gives a ratio, and\n"+
			"their median is printed beside the ratio of the totals.\n"+
			"Prints requests/s, latency percentiles and the ratio gateway/bare; fails if the\n"+
			"gateway refused any request. The load generator shares the machine with the servers.")
	duration := fs.Duration("duration", 30*time.Second, "total measured time of each target and mode, bare and gateway phases together")
	conns := fs.Int("connections", 32, "keep-alive connections (one worker each) to each server")
	phases := fs.Int("phases", 8, "number of phases, an even number: bare, gateway, gateway, bare, bare, ... (a multiple of 4 balances the order)")
	mode := fs.String("mode", "both", "how the client presents its license: mtls, signed or both")
	target := fs.String("target", "proxy", "what is measured: proxy (reverse proxy vs gateway), middleware (handler vs Middleware) or both")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (servers and load generator) to this file")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	modes, err := oneOrBoth("mode", *mode, "mtls", "signed")
	if err != nil {
		return err
	}
	targets, err := oneOrBoth("target", *target, "proxy", "middleware")
	if err != nil {
		return err
	}
	if *phases < 2 || *phases%2 != 0 {
		return errs.E(errs.Usage, "--phases %d: give an even number, at least 2", *phases)
	}
	phase := *duration / time.Duration(*phases)
	if phase < 100*time.Millisecond {
		return errs.E(errs.Usage, "--duration %s is too short for %d phases; give at least %s", *duration, *phases, 100*time.Millisecond*time.Duration(*phases))
	}
	if *conns < 1 {
		return errs.E(errs.Usage, "--connections %d: give at least 1", *conns)
	}
	b, err := newGatewayBench(phase)
	if err != nil {
		return err
	}
	defer b.close()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return errs.Wrap(errs.Invalid, err, "cannot create --cpuprofile %s", *cpuprofile)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return errs.Wrap(errs.Internal, err, "cpu profile")
		}
		defer pprof.StopCPUProfile()
	}
	var reports []*gatewayReport
	refused := 0
	for _, t := range targets {
		for _, m := range modes {
			r, err := b.run(ctx, t, m, *conns, *phases, phase)
			if err != nil {
				return err
			}
			reports = append(reports, r)
			refused += r.Gateway.Rejected + r.Gateway.Failed + r.Bare.Rejected + r.Bare.Failed
			if !*asJSON {
				r.print(e.stdout)
			}
		}
	}
	if *asJSON {
		if err := printJSON(e.stdout, reports); err != nil {
			return err
		}
	}
	if refused > 0 {
		return errs.E(errs.Internal, "bench gateway: %d requests were not answered 200; the figures above do not measure the check", refused)
	}
	return nil
}

// oneOrBoth parses a flag whose value is a or b or "both".
func oneOrBoth(name, v, a, b string) ([]string, error) {
	switch v {
	case a, b:
		return []string{v}, nil
	case "both":
		return []string{a, b}, nil
	}
	return nil, errs.E(errs.Usage, "--%s %q: give %s, %s or both", name, v, a, b)
}

// gatewayBench is the in-process setup of 'bench gateway'.
type gatewayBench struct {
	v        *verify.Verifier
	key      *keys.Signer    // the client's key
	licPEM   []byte          // its license file
	licCert  tls.Certificate // the same as a TLS client certificate
	srvCert  tls.Certificate // the servers' certificate
	roots    *x509.CertPool  // trusting srvCert
	upstream *url.URL        // the application
	opts     gateway.Options // of every gateway
	servers  []*http.Server  // to close
	quiet    *log.Logger
}

func newGatewayBench(phase time.Duration) (*gatewayBench, error) {
	now := time.Now()
	b := &gatewayBench{quiet: log.New(io.Discard, "", 0)}
	// The PKI, as a vendor and a site make it.
	rootKey, err := keys.GenerateSigner()
	if err != nil {
		return nil, err
	}
	root, err := pki.NewRoot(rootKey, "Bench Vendor", now.Add(-time.Hour))
	if err != nil {
		return nil, err
	}
	siteKey, err := keys.GenerateSigner()
	if err != nil {
		return nil, err
	}
	siteDec, err := keys.GenerateDecrypter()
	if err != nil {
		return nil, err
	}
	csr, err := pki.NewSiteRequest(siteKey, siteDec.PublicBytes(), "Bench Site")
	if err != nil {
		return nil, err
	}
	req, err := pki.ParseSiteRequest(csr)
	if err != nil {
		return nil, err
	}
	siteDER, err := root.CertifySite(req, "bench-customer", now.Add(-time.Hour))
	if err != nil {
		return nil, err
	}
	siteCert, err := x509.ParseCertificate(siteDER)
	if err != nil {
		return nil, err
	}
	site := &pki.Authority{Cert: siteCert, Signer: siteKey}
	if b.key, err = keys.GenerateSigner(); err != nil {
		return nil, err
	}
	const product = "bench-app"
	attrs := verify.Attributes{LicenseID: 1, PackID: "pack-bench", ProductID: product, ProductVersion: "1.0",
		Platform: "linux-amd64", Features: []string{"render", "export"}}
	// The license carries its pack statement, as every license a site
	// grants does, so that the gateway checks it as in production.
	chKey, err := keys.GenerateSigner()
	if err != nil {
		return nil, err
	}
	chDER, err := root.IssueClearinghouse(chKey.Public(), "Bench", now.Add(-time.Hour))
	if err != nil {
		return nil, err
	}
	st := &verify.Statement{PackID: attrs.PackID, SiteID: siteCert.Subject.SerialNumber, CustomerID: "bench-customer", Issued: now,
		ProductID: product, ProductVersion: attrs.ProductVersion, Platform: attrs.Platform, Features: attrs.Features, BeginSerial: 1, Quantity: 1}
	if attrs.PackStatement, err = pack.SignStatementDoc(st, chKey, [][]byte{chDER}); err != nil {
		return nil, err
	}
	licDER, err := license.Issue(site, b.key.Public(), attrs, now.Add(-time.Hour), now.Add(24*time.Hour))
	if err != nil {
		return nil, err
	}
	b.licPEM = license.EncodePEM([][]byte{licDER, siteDER})
	b.licCert = tls.Certificate{Certificate: [][]byte{licDER, siteDER}, PrivateKey: b.key.Private()}
	if b.v, err = verify.New(root.Cert.Raw); err != nil {
		return nil, err
	}
	// Signatures are made before each gateway phase, so they must stay
	// acceptable for a phase; the nonce memory must hold them all.
	b.opts = gateway.Options{Product: product, SiteURL: "https://licenses.example.com",
		MaxSkew: max(gateway.DefaultMaxSkew, 2*phase), Log: slog.New(slog.DiscardHandler)}
	b.opts.MaxNonces = max(gateway.DefaultMaxNonces, int(b.opts.MaxSkew/time.Second)*40000)

	// The servers' TLS certificate, for 127.0.0.1.
	pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "licet bench"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &pk.PublicKey, pk)
	if err != nil {
		return nil, err
	}
	b.srvCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: pk}
	cert, _ := x509.ParseCertificate(der)
	b.roots = x509.NewCertPool()
	b.roots.AddCert(cert)

	addr, err := b.serve(nil, http.HandlerFunc(appHandler))
	if err != nil {
		return nil, err
	}
	b.upstream = &url.URL{Scheme: "http", Host: addr}
	return b, nil
}

// appHandler is the application: 200 and a short body.
func appHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "hello from the app\n")
}

// serve serves h on a loopback port, over TLS if conf is not nil, and
// returns the address.
func (b *gatewayBench) serve(conf *tls.Config, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", errs.Wrap(errs.Internal, err, "listen on loopback")
	}
	if conf != nil {
		ln = tls.NewListener(ln, conf)
	}
	srv := &http.Server{Handler: h, ErrorLog: b.quiet, ReadHeaderTimeout: time.Minute}
	b.servers = append(b.servers, srv)
	go srv.Serve(ln)
	return ln.Addr().String(), nil
}

func (b *gatewayBench) close() {
	for _, s := range b.servers {
		s.Close()
	}
}

// run measures target in mode: bare and gateway servers of their own,
// conns connections to each, phases alternating.
func (b *gatewayBench) run(ctx context.Context, target, mode string, conns, phases int, phase time.Duration) (*gatewayReport, error) {
	var bareH, gwH http.Handler
	if target == "proxy" {
		bareH = gateway.NewReverseProxy(b.upstream, b.opts)
		gwH = gateway.NewProxy(b.v, b.upstream, b.opts)
	} else {
		bareH = http.HandlerFunc(appHandler)
		gwH = gateway.Middleware(b.v, b.opts)(http.HandlerFunc(appHandler))
	}
	bareAddr, err := b.serve(&tls.Config{Certificates: []tls.Certificate{b.srvCert}, MinVersion: tls.VersionTLS12}, bareH)
	if err != nil {
		return nil, err
	}
	gwAddr, err := b.serve(gateway.TLSConfig(b.srvCert), gwH)
	if err != nil {
		return nil, err
	}
	var clientCert []tls.Certificate
	if mode == "mtls" {
		clientCert = []tls.Certificate{b.licCert}
	}
	bareConns, err := b.dial(ctx, bareAddr, conns, nil)
	if err != nil {
		return nil, err
	}
	defer closeAll(bareConns)
	gwConns, err := b.dial(ctx, gwAddr, conns, clientCert)
	if err != nil {
		return nil, err
	}
	defer closeAll(gwConns)

	// The requests. In signed mode both get the same two headers; the bare
	// server's are one valid signature, sent again and again (it checks
	// nothing), the gateway's come from a pool signed before each phase.
	plain := func(addr string) []byte {
		return []byte("GET /bench HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: licet-bench\r\nAccept: */*\r\n")
	}
	bareHead, gwHead := plain(bareAddr), plain(gwAddr)
	var licLine, bareSig []byte
	var pool [][]byte
	var next, inline atomic.Int64
	if mode == "signed" {
		licLine = []byte("Licet-License: " + base64.StdEncoding.EncodeToString(b.licPEM) + "\r\n")
		bareSig = b.presign(bareAddr, 1)[0]
	}
	bareReq := func(dst []byte, _ int) []byte {
		dst = append(dst, bareHead...)
		if licLine != nil {
			dst = append(dst, licLine...)
			dst = append(dst, bareSig...)
		}
		return append(dst, "\r\n"...)
	}
	gwReq := func(dst []byte, _ int) []byte {
		dst = append(dst, gwHead...)
		if licLine != nil {
			dst = append(dst, licLine...)
			if i := next.Add(1) - 1; i < int64(len(pool)) {
				dst = append(dst, pool[i]...)
			} else {
				inline.Add(1)
				dst = append(dst, b.presign(gwAddr, 1)[0]...)
			}
		}
		return append(dst, "\r\n"...)
	}

	// Warm up: connections, TLS sessions, the gateway's license cache.
	if mode == "signed" {
		pool = b.presign(gwAddr, 4*conns)
	}
	for _, w := range []struct {
		c   []net.Conn
		req func([]byte, int) []byte
	}{{bareConns, bareReq}, {gwConns, gwReq}} {
		res, err := loadgen.KeepAlive(ctx, loadgen.KeepAliveOptions{Operation: "warm-up", Conns: w.c, Request: w.req, Duration: 0})
		if err != nil {
			return nil, err
		}
		if res.OK != res.Requests {
			return nil, errs.E(errs.Internal, "bench gateway: warm-up refused: %v", res.FirstErrors)
		}
	}

	rep := &gatewayReport{Target: target, Mode: mode, Connections: conns, Phases: phases, PhaseTime: phase}
	var bareRuns, gwRuns []*loadgen.Result
	rate := 0.0 // the best requests/s so far, to size the pool of signatures
	for i := range phases {
		// Pairs of phases, bare first in even pairs and gateway first in odd
		// ones (bare, gateway, gateway, bare, ...), so that a load that grows
		// or fades during the run favours neither.
		conns, req, op := bareConns, bareReq, "bare"
		if i%2 != (i/2)%2 {
			conns, req, op = gwConns, gwReq, "gateway"
			if mode == "signed" {
				pool = nil
				runtime.GC()
				pool = b.presign(gwAddr, int(rate*phase.Seconds()*1.5)+2000)
				next.Store(0)
			}
		}
		runtime.GC() // each phase starts with the same clean heap
		res, err := loadgen.KeepAlive(ctx, loadgen.KeepAliveOptions{Operation: op, Conns: conns, Request: req, Duration: phase})
		if err != nil {
			return nil, err
		}
		rate = max(rate, res.PerSecond)
		if op == "bare" {
			bareRuns = append(bareRuns, res)
			rep.BarePhases = append(rep.BarePhases, math.Round(res.PerSecond))
		} else {
			gwRuns = append(gwRuns, res)
			rep.GatewayPhases = append(rep.GatewayPhases, math.Round(res.PerSecond))
		}
	}
	pool = nil
	rep.Bare, rep.Gateway = loadgen.Merge("bare", bareRuns...), loadgen.Merge("gateway", gwRuns...)
	if rep.Bare.PerSecond > 0 {
		rep.Ratio = math.Round(rep.Gateway.PerSecond/rep.Bare.PerSecond*1000) / 1000
	}
	for i, g := range rep.GatewayPhases {
		if rep.BarePhases[i] > 0 {
			rep.PairRatios = append(rep.PairRatios, math.Round(g/rep.BarePhases[i]*1000)/1000)
		}
	}
	if n := len(rep.PairRatios); n > 0 {
		s := slices.Sorted(slices.Values(rep.PairRatios))
		rep.MedianPairRatio = (s[(n-1)/2] + s[n/2]) / 2
	}
	rep.InlineSigned = inline.Load()
	return rep, nil
}

// dial opens n TLS connections to addr, HTTP/1.1, with cert as the client
// certificate if given.
func (b *gatewayBench) dial(ctx context.Context, addr string, n int, cert []tls.Certificate) ([]net.Conn, error) {
	conf := &tls.Config{RootCAs: b.roots, Certificates: cert, NextProtos: []string{"http/1.1"}}
	d := &tls.Dialer{Config: conf}
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			closeAll(conns)
			return nil, errs.Wrap(errs.Internal, err, "bench gateway: connect to %s", addr)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// presign makes n sets of signature header lines (Signature-Input,
// Signature, Content-Digest) for GET /bench at addr, now, on all CPUs.
func (b *gatewayBench) presign(addr string, n int) [][]byte {
	out := make([][]byte, n)
	now := time.Now()
	workers := max(1, min(runtime.GOMAXPROCS(0), n))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				req := &http.Request{Method: "GET", URL: &url.URL{Scheme: "https", Host: addr, Path: "/bench"}, Host: addr, Header: http.Header{}}
				if err := gateway.SignRequest(req, nil, b.licPEM, b.key, now); err != nil {
					panic(err) // cannot fail with a license and a key
				}
				var line []byte
				for _, k := range []string{gateway.HeaderSignatureInput, gateway.HeaderMessageSignature, gateway.HeaderContentDigest} {
					line = append(line, k+": "+req.Header.Get(k)+"\r\n"...)
				}
				out[i] = line
			}
		}()
	}
	wg.Wait()
	return out
}

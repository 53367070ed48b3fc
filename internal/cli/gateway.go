package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/licet/licet/api"
	"github.com/licet/licet/auth"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/gateway"
	"github.com/licet/licet/verify"
)

// DefaultGatewayListen is the license gateway's default address.
const DefaultGatewayListen = "127.0.0.1:8472"

func gatewayCommand() *command {
	return leaf("gateway", "run the license gateway in front of an application server", gatewayServe)
}

// gatewayServer is the gateway's HTTP server: /healthz and /metrics, the
// license requests relayed to the site at siteURL, the legacy store's
// endpoints (with opts.Legacy), and everything else through the license
// check to the application at upURL.
func gatewayServer(log *slog.Logger, limits api.Limits, v *verify.Verifier, upURL, siteURL *url.URL, opts gateway.Options) *api.Server {
	s := api.NewServer("gateway", log, limits, nil)
	checks := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "licet_gateway_checks_total",
		Help:        "License checks of requests to the application, by outcome (passed or refused) and the refusal's reason (the error= of WWW-Authenticate).",
		ConstLabels: prometheus.Labels{"product": opts.Product}}, []string{"outcome", "reason"})
	exchanges := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "licet_gateway_upgrades_total",
		Help:        "Upgrade exchanges with the license server, by outcome (upgraded or refused) and why not (the license server's error code, e.g. exhausted: no upgrade seat fits).",
		ConstLabels: prometheus.Labels{"product": opts.Product}}, []string{"outcome", "reason"})
	s.Register(checks, exchanges)
	count := func(c *prometheus.CounterVec, ok string) func(string) {
		return func(reason string) {
			if reason == "" {
				c.WithLabelValues(ok, "").Inc()
			} else {
				c.WithLabelValues("refused", reason).Inc()
			}
		}
	}
	opts.OnCheck, opts.OnExchange = count(checks, "passed"), count(exchanges, "upgraded")
	relay := gateway.NewReverseProxy(siteURL, opts)
	handle := func(h http.Handler) func(w http.ResponseWriter, r *http.Request) error {
		return func(w http.ResponseWriter, r *http.Request) error {
			h.ServeHTTP(w, r)
			return nil
		}
	}
	for _, p := range []string{"POST /v1/challenges", "POST /v1/licenses", "GET /v1/root"} {
		s.Public(p, handle(relay))
	}
	if opts.Legacy != nil {
		s.Public(gateway.LegacyPath, handle(opts.Legacy.Handler(v, opts)))
	}
	s.Public("/", handle(gateway.NewProxy(v, upURL, opts)))
	return s
}

// parseServerURL parses an http(s) URL given to flag name.
func parseServerURL(flagName, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errs.E(errs.Usage, "--%s %q is not an http:// or https:// URL with a host", flagName, raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errs.E(errs.Usage, "--%s %q must not have a query or fragment", flagName, raw)
	}
	return u, nil
}

func gatewayServe(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet gateway", "--upstream URL --site URL --product P --root FILE [--listen ADDR] [--tls-cert FILE --tls-key FILE] [--legacy-dir DIR]",
		"Runs the license gateway: a reverse proxy to the application at --upstream that lets\n"+
			"through only requests carrying a valid, unexpired license for --product, checked\n"+
			"offline against the vendor root. A client presents its license as its TLS client\n"+
			"certificate (with --tls-cert and --tls-key) or in the Licet-License and\n"+
			"Licet-Signature headers; the application reads the verified identity from the\n"+
			"Licet-Client-Id and Licet-License-* headers. Refusals are 401 with a\n"+
			"WWW-Authenticate challenge naming the license server.\n\n"+
			"POST /v1/challenges, POST /v1/licenses and GET /v1/root are relayed unchanged to\n"+
			"the license server at --site, so clients need only the gateway's address to get a\n"+
			"license. /healthz and /metrics are the gateway's own. Stops cleanly on SIGINT or SIGTERM.\n\n"+
			"Upgrades: with a site token of scope upgrade (--site-token-file, or $LICET_SITE_TOKEN;\n"+
			"'licet site token create'), a license that has expired, or is for a version older\n"+
			"than --min-version, is exchanged with the license server for an upgraded one (POST\n"+
			"/v1/upgrades; it takes a seat of an upgrade pack) once the client has proved its key;\n"+
			"the request goes through and the Licet-License-Update response header names the new\n"+
			"license file, encrypted to the client, which the gateway serves under\n"+
			"/.well-known/licet/license-update/. Without a token such licenses are refused.\n"+
			"A failed exchange (no upgrade seat left, say) is remembered 30 s per license, so a\n"+
			"client that keeps presenting it costs the license server one request, not one each;\n"+
			"but the gateway forgets it as soon as the site's upgrade seats change (it asks the site,\n"+
			"GET /v1/upgrades/seats, at most every 2 s while it refuses such a license): seats just\n"+
			"bought are used within 2 s.\n\n"+
			"With --legacy-dir, clients that cannot keep a license file deposit it at the gateway\n"+
			"(signed PUT /v1/legacy/license, the license PEM as body; GET shows it, DELETE removes\n"+
			"it), one file per client ID in DIR, and then send signed requests without Licet-License.\n\n"+
			"Signed requests (HTTP Message Signatures, RFC 9421) are accepted only when signed for one\n"+
			"of the gateway's public names (--public-name, repeatable; default the listen address,\n"+
			"and localhost names when listening on all interfaces): a request signed for one gateway\n"+
			"is refused by another. --accept-licet-signature also accepts the older Licet-Signature\n"+
			"scheme, which does not cover headers, while clients are updated.\n\n"+
			"A license passes only inside the pack the vendor sold (its signed pack statement: site,\n"+
			"product, version, platform, features, serial range, expiry); --allow-unbound also takes\n"+
			"licenses without one during a transition. --site-id and --customer (repeatable) restrict\n"+
			"whose licenses pass; the application gets the issuing site and its customer in the\n"+
			"Licet-License-Site and Licet-License-Customer headers.\n\n"+
			"--revocations takes the vendor's signed list of revoked sites, from a file ('licet vendor\n"+
			"site revocations --out FILE') or the vendor's URL (http://VENDOR/v1/revoked-sites), read\n"+
			"again every --revocations-refresh: licenses of a revoked site are refused\n"+
			"(error=\"site_revoked\"). The gateway does not start with a list that is out of date (more\n"+
			"than a day past its next update), and while its list is out of date it answers 503 rather\n"+
			"than let through licenses of sites revoked since.")
	upstream := fs.String("upstream", "", "URL of the application server behind the gateway")
	site := fs.String("site", "", "URL of the license server (site) that grants licenses")
	product := fs.String("product", "", "product ID a license must be for")
	rootFile := fs.String("root", "", "vendor root certificate file (PEM or DER)")
	tlsCert := fs.String("tls-cert", "", "serve HTTPS with this certificate file (PEM); needs --tls-key")
	tlsKey := fs.String("tls-key", "", "private key file (PEM) of --tls-cert")
	skew := fs.Duration("max-skew", gateway.DefaultMaxSkew, "allowed clock difference of a signed request, either way")
	minVersion := fs.String("min-version", "", "oldest product version let through; older licenses are upgraded or refused")
	tokenFile := fs.String("site-token-file", "", "file holding the license server token (scope upgrade) that lets the gateway upgrade licenses; default $LICET_SITE_TOKEN; neither: no upgrades")
	legacyDir := fs.String("legacy-dir", "", "keep the licenses of legacy clients (which cannot keep a license file) in this directory, and serve "+gateway.LegacyPath)
	var publicNames stringList
	fs.Var(&publicNames, "public-name", "a host or host:port clients address this gateway by; signed requests for other names are refused (repeatable; default the listen address)")
	var siteIDs, customerIDs stringList
	fs.Var(&siteIDs, "site-id", "only licenses issued by this site ID pass (repeatable; with --customer, either matches; default: every site the vendor certified)")
	fs.Var(&customerIDs, "customer", "only licenses of sites certified for this customer ID pass (repeatable)")
	allowUnbound := fs.Bool("allow-unbound", false, "also accept licenses without a pack statement (from license servers older than pack statements), for a transition")
	revSource := fs.String("revocations", "", "the vendor's signed list of revoked sites: a file, or the vendor's http(s)://…/v1/revoked-sites URL")
	revRefresh := fs.Duration("revocations-refresh", 10*time.Minute, "read --revocations again this often")
	acceptV1 := fs.Bool("accept-licet-signature", false, "also accept requests signed with the Licet-Signature header of older clients (no header coverage), for a transition")
	sf := addServerFlags(fs, DefaultGatewayListen)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "upstream", "site", "product", "root"); err != nil {
		return err
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return errs.E(errs.Usage, "--tls-cert and --tls-key go together: give both to serve HTTPS, or neither")
	}
	if *skew < time.Second {
		return errs.E(errs.Usage, "--max-skew %s is too small; give at least 1s", *skew)
	}
	upURL, err := parseServerURL("upstream", *upstream)
	if err != nil {
		return err
	}
	siteURL, err := parseServerURL("site", *site)
	if err != nil {
		return err
	}
	rootPEM, err := os.ReadFile(*rootFile)
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "cannot read the vendor root certificate %s", *rootFile)
	}
	v, err := verify.New(rootPEM)
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "--root %s is not a licet vendor root certificate", *rootFile)
	}
	var tlsConf *tls.Config
	if *tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return errs.Wrap(errs.Invalid, err, "cannot load the TLS certificate %s and key %s", *tlsCert, *tlsKey)
		}
		tlsConf = gateway.TLSConfig(cert)
	}
	now, err := e.clock()
	if err != nil {
		return err
	}
	log := sf.logger(e)
	opts := gateway.Options{Product: *product, SiteURL: publicURL(siteURL), MaxSkew: *skew, Now: now, Log: log, MinVersion: *minVersion,
		AcceptLicetSignature: *acceptV1, Sites: siteIDs, Customers: customerIDs, AllowUnbound: *allowUnbound}
	siteToken := strings.TrimSpace(e.getenv("LICET_SITE_TOKEN"))
	if *tokenFile != "" {
		raw, err := os.ReadFile(*tokenFile)
		if err != nil {
			return errs.Wrap(errs.Invalid, err, "cannot read --site-token-file %s", *tokenFile)
		}
		siteToken = strings.TrimSpace(string(raw))
	}
	if *revSource != "" {
		if *revRefresh < time.Second {
			return errs.E(errs.Usage, "--revocations-refresh %s is too short; give at least 1s", *revRefresh)
		}
		feed, err := gateway.NewRevocationFeed(ctx, v, *revSource, now)
		if err != nil {
			return err
		}
		opts.Revocations = feed.Current
		go feed.Run(ctx, *revRefresh, log)
	}
	if siteToken != "" {
		if !strings.HasPrefix(siteToken, auth.TokenPrefix) {
			return errs.E(errs.Usage, "the site token does not start with %s; make one with 'licet site token create --scope upgrade'", auth.TokenPrefix)
		}
		opts.Upgrade = gateway.SiteUpgrader(siteURL, siteToken, nil)
		opts.UpgradeSeats = gateway.SiteUpgradeSeats(siteURL, siteToken, nil)
	}
	if *legacyDir != "" {
		if opts.Legacy, err = gateway.NewLegacyStore(*legacyDir); err != nil {
			return err
		}
	}

	ln, err := net.Listen("tcp", *sf.listen)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "gateway cannot listen on %s; choose another --listen address", *sf.listen)
	}
	opts.PublicNames = publicNames
	if len(opts.PublicNames) == 0 {
		opts.PublicNames = defaultPublicNames(ln.Addr().String())
	}
	s := gatewayServer(log, sf.limits(), v, upURL, siteURL, opts)
	scheme := "http"
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
		scheme = "https"
	}
	fmt.Fprintf(e.stdout, "gateway listening on %s://%s\n", scheme, ln.Addr().String())
	log.Info("gateway serving", "addr", ln.Addr().String(), "tls", tlsConf != nil, "product", *product,
		"upstream", upURL.Redacted(), "site", siteURL.Redacted(), "upgrades", opts.Upgrade != nil, "min_version", *minVersion,
		"public_names", strings.Join(opts.PublicNames, ","), "accept_licet_signature", *acceptV1,
		"sites", strings.Join(siteIDs, ","), "customers", strings.Join(customerIDs, ","), "allow_unbound", *allowUnbound,
		"revocations", *revSource)
	return serveWithMetrics(ctx, e, ln, s, *sf.metricsListen, log)
}

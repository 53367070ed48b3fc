package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/licet/licet/agent"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/softid"
	"github.com/licet/licet/verify"
)

func agentCommand() *command {
	return &command{name: "agent", summary: "the client: identity, license acquisition and cache", sub: []*command{
		leaf("init", "create the client's keys and record its hardware identity", agentInit),
		{name: "license", summary: "client licenses", sub: []*command{
			leaf("acquire", "obtain a license from the site (challenge, grant) and cache it", agentAcquire),
			leaf("renew", "fetch a fresh license through a gateway when the cached one is due", agentRenew),
			leaf("show", "verify and print a cached license", agentShow),
		}},
		leaf("request", "send an HTTP request through a license gateway with the cached license (curl-like)", agentRequest),
		{name: "legacy", summary: "a client whose license the gateway keeps (legacy license store)", sub: []*command{
			leaf("deposit", "deposit the client's license at a gateway's legacy license store", agentLegacyDeposit),
			leaf("request", "send an HTTP request through the gateway signed by the client key alone (curl-like)", agentLegacyRequest),
		}},
		agentPaygCommand(),
		agentComplianceCommand(),
		agentPolicyCommand(),
		leaf("run", "run a program as metered pay-as-you-go use, stopped when the credit runs out", agentRun),
		agentTokenCommand(),
		agentUpdateCommand(),
	}}
}

func agentInit(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent init", "--data DIR [--platform P] [--server URL] [--root FILE | --root-fingerprint HEX]",
		"Creates the client's signing and encryption keys (mode 0600), its client ID (from its\npublic key) and its system ID (from the hardware: machine-id, DMI UUID, MAC addresses,\ndisk serials; one changed component does not make a new machine).")
	data := fs.String("data", "", "agent data directory to create")
	platform := fs.String("platform", "", "client platform: windows, non-windows, legacy or direct-connect (default: this OS)")
	server := fs.String("server", "", "site or gateway URL to get licenses from")
	root := fs.String("root", "", "vendor root certificate to trust (default: the server's, pinned on first use)")
	rootFP := fs.String("root-fingerprint", "", "SHA-256 of the vendor root to trust (as 'licet vendor init' printed): the server's root is pinned only if it matches")
	hwRoot := fs.String("hw-root", "", "read hardware from this directory instead of / (containers, tests)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data"); err != nil {
		return err
	}
	if *root != "" && *rootFP != "" {
		return errs.E(errs.Usage, "--root and --root-fingerprint: give one of them")
	}
	var rootPEM []byte
	if *root != "" {
		var err error
		if rootPEM, err = readInput(*root); err != nil {
			return err
		}
		if _, err := verify.New(rootPEM); err != nil {
			return errs.Wrap(errs.Invalid, err, "--root")
		}
	}
	id, err := agent.Init(*data, agent.InitOptions{Platform: *platform, ServerURL: *server, HWRoot: *hwRoot})
	if err != nil {
		return err
	}
	if rootPEM != nil {
		if err := id.PinRoot(rootPEM); err != nil {
			return err
		}
	}
	if *rootFP != "" {
		if err := id.PinRootFingerprint(*rootFP); err != nil {
			return errs.Wrap(errs.Usage, err, "--root-fingerprint")
		}
	}
	if rootPEM == nil && *rootFP == "" {
		fmt.Fprintln(e.stderr, "warning: no --root or --root-fingerprint: the agent will trust the vendor root the first server it asks offers; give the root's fingerprint to make sure it is your vendor's")
	}
	out := map[string]string{"client_id": id.ClientID, "system_id": id.SystemID, "platform": id.Platform}
	if *asJSON {
		return printJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "Agent initialised in %s.\n  client ID  %s\n  system ID  %s\n  platform   %s\n", *data, id.ClientID, id.SystemID, id.Platform)
	return nil
}

// loadAgent loads an agent directory, reading the hardware from hwRoot.
func loadAgent(data, hwRoot string) (*agent.Identity, error) {
	if data == "" {
		return nil, errs.E(errs.Usage, "--data is required: the agent data directory")
	}
	return agent.LoadWith(data, agent.LoadOptions{HWRoot: hwRoot})
}

// printLicense prints a verified license; now is the time it was checked at
// (a temporary license says how long it has left).
func printLicense(e *env, asJSON bool, lic *verify.License, now time.Time, extra map[string]any) error {
	if asJSON {
		out := map[string]any{
			"data_version": lic.DataVersion, "license_id": lic.LicenseID, "client_id": lic.ClientID, "system_id": lic.SystemID, "pack_id": lic.PackID,
			"product_id": lic.ProductID, "product_version": lic.ProductVersion, "platform": lic.Platform,
			"features": lic.Features, "flags": lic.Flags, "temporary": lic.Temporary(), "site_id": lic.SiteID,
			"not_before": lic.NotBefore, "not_after": lic.NotAfter, "customer_id": lic.CustomerID, "bound": lic.Statement != nil,
		}
		for k, v := range extra {
			out[k] = v
		}
		return printJSON(e.stdout, out)
	}
	kind := "License"
	if lic.Temporary() {
		kind = "Temporary license"
	}
	fmt.Fprintf(e.stdout, "%s %d for %s %s (%s), client %s\n", kind, lic.LicenseID, lic.ProductID, lic.ProductVersion, lic.Platform, lic.ClientID)
	if lic.Temporary() {
		fmt.Fprintf(e.stdout, "  temporary until %s (%s) and not renewed: the license server had no free seat. Once it has one,\n"+
			"            this client's next license request ('licet agent license acquire') gets a permanent license.\n",
			lic.NotAfter.UTC().Format(time.DateOnly), timeLeft(lic.NotAfter.Sub(now)))
	}
	fmt.Fprintf(e.stdout, "  features  %s\n  valid     %s to %s\n  issued by site %s\n",
		strings.Join(lic.Features, ", "), lic.NotBefore.Format(time.DateOnly), lic.NotAfter.Format(time.DateOnly), lic.SiteID)
	return nil
}

// timeLeft says how long d is from now, in days, hours or minutes, rounded.
func timeLeft(d time.Duration) string {
	n, unit := (d+30*time.Second)/time.Minute, "minute"
	switch {
	case d <= 0:
		return "ended"
	case d >= 47*time.Hour:
		n, unit = (d+12*time.Hour)/(24*time.Hour), "day"
	case d >= 2*time.Hour:
		n, unit = (d+30*time.Minute)/time.Hour, "hour"
	case n < 1:
		n = 1
	}
	if n != 1 {
		unit += "s"
	}
	return fmt.Sprintf("%d %s left", n, unit)
}

func agentAcquire(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent license acquire", "--data DIR --product P --software-id ID [--server URL] [--image PATH]",
		"Obtains a license: asks the server for a platform challenge, answers it over the\nprogram image, and stores the license (encrypted to this client in transit) in the\ncache after verifying it. A client that lost its cache gets its license back.")
	data := fs.String("data", "", "agent data directory")
	server := fs.String("server", "", "site or gateway URL (default: the one given at init)")
	product := fs.String("product", "", "product ID")
	sid := fs.String("software-id", "", "software ID, PLATFORM/VENDOR/REVISION (e.g. windows/7/312) or hex")
	image := fs.String("image", "", "the executable the challenge is computed over (default: this program)")
	hwRoot := fs.String("hw-root", "", "read hardware from this directory instead of /")
	cacert := fs.String("cacert", "", "trust the server's TLS certificate from this PEM file (default: the system roots)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data", "product", "software-id"); err != nil {
		return err
	}
	var httpClient *http.Client
	if *cacert != "" {
		tlsConf, err := tlsTrusting(*cacert)
		if err != nil {
			return err
		}
		httpClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}
	}
	id, err := loadAgent(*data, *hwRoot)
	if err != nil {
		return err
	}
	software, err := softid.Parse(*sid)
	if err != nil {
		return errs.Wrap(errs.Usage, err, "--software-id")
	}
	url := *server
	if url == "" {
		url = id.ServerURL
	}
	if url == "" {
		return errs.E(errs.Usage, "--server is required: this agent has no server URL configured")
	}
	now, err := e.clock()
	if err != nil {
		return err
	}
	lic, reissued, err := id.Acquire(ctx, agent.AcquireOptions{Server: url, ProductID: *product, SoftwareID: software, Image: *image, HTTP: httpClient, Clock: now})
	if err != nil {
		return err
	}
	if !*asJSON && reissued {
		fmt.Fprintln(e.stdout, "The server reissued this client's existing license.")
	}
	return printLicense(e, *asJSON, lic, now(), map[string]any{"reissued": reissued})
}

func agentShow(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent license show", "--data DIR --product P", "Verifies the cached license of a product offline and prints it.")
	data := fs.String("data", "", "agent data directory")
	product := fs.String("product", "", "product ID")
	hwRoot := fs.String("hw-root", "", "read hardware from this directory instead of /")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data", "product"); err != nil {
		return err
	}
	id, err := loadAgent(*data, *hwRoot)
	if err != nil {
		return err
	}
	now, err := e.clock()
	if err != nil {
		return err
	}
	at := now()
	lic, err := id.License(*product, at)
	if err != nil {
		return err
	}
	return printLicense(e, *asJSON, lic, at, nil)
}

func licenseCommand() *command {
	return &command{name: "license", summary: "check licenses offline", sub: []*command{
		leaf("verify", "verify a license file against the vendor root", licenseVerify),
	}}
}

func licenseVerify(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet license verify", "--root ROOT [--product P] [--revocations FILE] LICENSE",
		"Checks a license (PEM: license certificate, then site certificate) offline with the\nvendor root alone: chain, signatures, dates, product, and that it lies inside the pack the\nvendor sold (its clearinghouse-signed pack statement). Exit 0 valid, 3 invalid.")
	root := fs.String("root", "", "vendor root certificate (PEM or DER)")
	allowUnbound := fs.Bool("allow-unbound", false, "also accept a license without a pack statement (from a license server older than pack statements)")
	product := fs.String("product", "", "require this product")
	revocations := fs.String("revocations", "", "the vendor's signed list of revoked sites ('licet vendor site revocations'): refuse licenses of revoked sites")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if err := required(fs, "root"); err != nil {
		return err
	}
	rootPEM, err := os.ReadFile(*root)
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "read --root")
	}
	v, err := verify.New(rootPEM)
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "--root")
	}
	file, err := readInput(fs.Arg(0))
	if err != nil {
		return err
	}
	now, err := e.clock()
	if err != nil {
		return err
	}
	opts := verify.Options{Now: now(), Product: *product, AllowUnbound: *allowUnbound}
	if *revocations != "" {
		raw, err := os.ReadFile(*revocations)
		if err != nil {
			return errs.Wrap(errs.Invalid, err, "read --revocations")
		}
		if opts.Revocations, err = v.ParseRevocations(raw, opts.Now); err != nil {
			return errs.Wrap(errs.Invalid, err, "--revocations %s is not usable", *revocations)
		}
	}
	lic, err := v.Verify(file, opts)
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "license is not valid")
	}
	return printLicense(e, *asJSON, lic, opts.Now, nil)
}

// gatewayClientFlags are the flags of the commands that talk to a gateway
// through agent.Client.
type gatewayClientFlags struct {
	fs                                                *flag.FlagSet
	data, hwRoot, server, product, sid, image, cacert *string
	signed                                            *bool
	renewBefore, timeout                              *time.Duration
}

func addGatewayClientFlags(fs *flag.FlagSet) *gatewayClientFlags {
	return &gatewayClientFlags{
		fs:          fs,
		data:        fs.String("data", "", "agent data directory"),
		hwRoot:      fs.String("hw-root", "", "read hardware from this directory instead of /"),
		server:      fs.String("server", "", "gateway URL, http:// or https:// (default: the one given at init)"),
		product:     fs.String("product", "", "product ID the gateway requires a license for"),
		sid:         fs.String("software-id", "", "software ID to answer the license server's challenge with, PLATFORM/VENDOR/REVISION; needed to fetch a license"),
		image:       fs.String("image", "", "the executable the challenge is computed over (default: this program)"),
		cacert:      fs.String("cacert", "", "trust the gateway's TLS certificate from this PEM file (default: the system roots)"),
		signed:      fs.Bool("signed", false, "present the license in signed headers over https too, instead of as the TLS client certificate"),
		renewBefore: fs.Duration("renew-before", 0, "renew the license when less than this is left (default: a fifth of its validity or 7 days, whichever is smaller)"),
		timeout:     fs.Duration("timeout", 60*time.Second, "give up on the request after this long"),
	}
}

// client loads the agent and makes its gateway client.
func (f *gatewayClientFlags) client(e *env) (*agent.Client, *agent.Identity, error) {
	if err := required(f.fs, "data", "product"); err != nil {
		return nil, nil, err
	}
	id, err := loadAgent(*f.data, *f.hwRoot)
	if err != nil {
		return nil, nil, err
	}
	opts := agent.ClientOptions{Server: *f.server, Product: *f.product, Image: *f.image,
		SignedHeaders: *f.signed, RenewBefore: *f.renewBefore, Timeout: *f.timeout}
	if opts.Server == "" {
		opts.Server = id.ServerURL
	}
	if opts.Server == "" {
		return nil, nil, errs.E(errs.Usage, "--server is required: this agent has no server URL configured")
	}
	if *f.sid != "" {
		if opts.SoftwareID, err = softid.Parse(*f.sid); err != nil {
			return nil, nil, errs.Wrap(errs.Usage, err, "--software-id")
		}
	}
	if *f.cacert != "" {
		if opts.TLS, err = tlsTrusting(*f.cacert); err != nil {
			return nil, nil, err
		}
	}
	if opts.Now, err = e.clock(); err != nil {
		return nil, nil, err
	}
	c, err := agent.NewClient(id, opts)
	return c, id, err
}

// tlsTrusting is a TLS configuration that trusts the certificates in the
// PEM file given as --cacert.
func tlsTrusting(caFile string) (*tls.Config, error) {
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "cannot read --cacert")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, errs.E(errs.Invalid, "--cacert %s holds no PEM certificate", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func agentRequest(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent request", "--data DIR --product P [--server GATEWAY_URL] [--software-id ID] [-X METHOD] [--body @FILE|-|TEXT] [-H 'Name: value'] [--json] URL_PATH",
		"Sends one HTTP request to the application behind a licet gateway, like curl, and\n"+
			"prints the application's answer to standard output. The agent presents its cached\n"+
			"license of --product: as the TLS client certificate when the gateway URL is https,\n"+
			"in signed headers (Licet-License and an HTTP Message Signature) when it is http or with --signed.\n"+
			"With no license, or one the gateway refuses as missing or expired, it fetches one\n"+
			"through the gateway (challenge over --image, grant; needs --software-id), caches it\n"+
			"and sends the request once more; it renews a license close to its expiry, and\n"+
			"installs an upgraded license the gateway hands back.\n\n"+
			"URL_PATH is the path and query on the gateway (/v1/render?job=1), or a full URL.\n"+
			"Exit 0 for a 2xx answer; otherwise the body is still printed and the exit code\n"+
			"follows the answer: 4 for 401/403, 3 for other 4xx, 1 for 5xx or no answer.")
	f := addGatewayClientFlags(fs)
	rf := addRequestFlags(fs)
	asJSON := fs.Bool("json", false, "print the status, the verified license and the body as JSON")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	c, _, err := f.client(e)
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	m, data, err := rf.read()
	if err != nil {
		return err
	}
	req, err := c.NewRequest(ctx, m, fs.Arg(0), data)
	if err != nil {
		return err
	}
	if err := rf.setHeaders(req); err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	return printAnswer(e, resp, *asJSON, func(j map[string]any) {
		if lic := c.License(); lic != nil {
			j["client_id"], j["license_id"], j["license_expires"] = lic.ClientID, lic.LicenseID, lic.NotAfter
		}
	})
}

// requestFlags are the curl-like flags of a request command.
type requestFlags struct {
	method, body *string
	headers      listFlag
}

func addRequestFlags(fs *flag.FlagSet) *requestFlags {
	rf := &requestFlags{
		method: fs.String("X", "", "HTTP method (default GET, or POST with --body)"),
		body:   fs.String("body", "", "request body: @FILE, - for standard input, or the text itself"),
	}
	fs.Var(&rf.headers, "H", "extra request header, 'Name: value' (repeatable)")
	return rf
}

// read returns the request's method and body.
func (rf *requestFlags) read() (method string, data []byte, err error) {
	switch b := *rf.body; {
	case b == "":
	case b == "-":
		if data, err = readInput("-"); err != nil {
			return "", nil, err
		}
	case strings.HasPrefix(b, "@"):
		if data, err = readInput(b[1:]); err != nil {
			return "", nil, err
		}
	default:
		data = []byte(b)
	}
	method = strings.ToUpper(*rf.method)
	if method == "" {
		method = http.MethodGet
		if *rf.body != "" {
			method = http.MethodPost
		}
	}
	return method, data, nil
}

// setHeaders adds the -H headers to req.
func (rf *requestFlags) setHeaders(req *http.Request) error {
	for _, h := range rf.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return errs.E(errs.Usage, "-H %q is not 'Name: value'", h)
		}
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return nil
}

// printAnswer prints resp's body (with --json: the status and the body,
// and what addJSON adds) and returns the error its status means.
func printAnswer(e *env, resp *http.Response, asJSON bool, addJSON func(map[string]any)) error {
	defer resp.Body.Close()
	var out bytes.Buffer
	if _, err := io.Copy(&out, io.LimitReader(resp.Body, 256<<20)); err != nil {
		return errs.Wrap(errs.Internal, err, "read the answer")
	}
	if asJSON {
		j := map[string]any{"status": resp.StatusCode, "body": out.String()}
		if addJSON != nil {
			addJSON(j)
		}
		if err := printJSON(e.stdout, j); err != nil {
			return err
		}
		if err := statusError(resp, out.Bytes()); err != nil {
			return &reportedError{err} // the JSON above has the status: no second document
		}
		return nil
	} else if _, err := e.stdout.Write(out.Bytes()); err != nil {
		return errs.Wrap(errs.Internal, err, "write the answer")
	}
	return statusError(resp, out.Bytes())
}

// statusError maps a non-2xx answer to an error of the matching kind.
func statusError(resp *http.Response, body []byte) error {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	msg := fmt.Sprintf("%s %s answered %s", resp.Request.Method, resp.Request.URL.Redacted(), resp.Status)
	var eb struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(body, &eb) == nil && eb.Error.Message != "" {
		msg += ": " + eb.Error.Message
	}
	if ch := resp.Header.Get("WWW-Authenticate"); ch != "" && resp.StatusCode == http.StatusUnauthorized {
		msg += " (" + ch + ")"
	}
	var k errs.Kind
	switch s := resp.StatusCode; {
	case s == http.StatusUnauthorized:
		k = errs.Unauthenticated
	case s == http.StatusForbidden:
		k = errs.Forbidden
	case s == http.StatusNotFound:
		k = errs.NotFound
	case s == http.StatusConflict:
		k = errs.Conflict
	case s == http.StatusRequestEntityTooLarge:
		k = errs.TooLarge
	case s == http.StatusTooManyRequests:
		k = errs.RateLimited
	case s >= 400 && s < 500:
		k = errs.Invalid
	default:
		k = errs.Internal
	}
	return errs.E(k, "%s", msg)
}

func agentRenew(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent license renew", "--data DIR --product P --software-id ID [--server GATEWAY_URL] [--force] [--json]",
		"Fetches a fresh license through the gateway (or the site) when the cached one is\n"+
			"missing, expired or within the renewal window (--renew-before; by default a fifth\n"+
			"of its validity or 7 days, whichever is smaller), or always with --force, and\n"+
			"caches it after verifying it. The license server hands back the client's unexpired\n"+
			"license, or a new one: a permanent one for a temporary one when seats have appeared.\n"+
			"'licet agent request' does the same on its own before each request.")
	f := addGatewayClientFlags(fs)
	force := fs.Bool("force", false, "fetch even when the cached license is not due")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	c, _, err := f.client(e)
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	before := c.License()
	lic := before
	if *force {
		lic, err = c.Fetch(ctx)
	} else {
		lic, _, err = c.Ensure(ctx)
	}
	if err != nil {
		return err
	}
	renewed := before == nil || lic.LicenseID != before.LicenseID || !lic.NotAfter.Equal(before.NotAfter)
	if !*asJSON {
		switch {
		case renewed:
			fmt.Fprintln(e.stdout, "Fetched a new license.")
		case lic != before:
			fmt.Fprintln(e.stdout, "The license server had nothing newer; the cached license stands.")
		default:
			fmt.Fprintln(e.stdout, "The cached license is not due for renewal (use --force to fetch anyway).")
		}
	}
	now, err := e.clock()
	if err != nil {
		return err
	}
	return printLicense(e, *asJSON, lic, now(), map[string]any{"renewed": renewed})
}

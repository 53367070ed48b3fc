package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/licet/licet/api"
	"github.com/licet/licet/auth"
	"github.com/licet/licet/distribution/catalog"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/fsutil"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/licensing/clientimage"
	"github.com/licet/licet/licensing/pack"
	"github.com/licet/licet/licensing/softid"
	"github.com/licet/licet/payg/keypadvendor"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/store"
)

// DefaultVendorListen and DefaultSiteListen are the servers' default addresses.
const (
	DefaultVendorListen = "127.0.0.1:8470"
	DefaultSiteListen   = "127.0.0.1:8471"
)

func vendorCommand() *command {
	return &command{name: "vendor", summary: "the vendor: clearinghouse for license packs, keypad tokens", sub: []*command{
		leaf("init", "create the vendor's keys, root certificate and database", vendorInit),
		leaf("serve", "run the vendor API server", vendorServe),
		{name: "product", summary: "manage products", sub: []*command{
			leaf("add", "add a product", vendorProductAdd),
			leaf("list", "list products", vendorList("product", "/v1/products")),
			leaf("release", "make a newer version the product's current one", vendorProductRelease),
		}},
		{name: "customer", summary: "manage customers", sub: []*command{
			leaf("add", "add a customer", vendorCustomerAdd),
			leaf("list", "list customers", vendorList("customer", "/v1/customers")),
		}},
		{name: "enroll", summary: "one-time codes that let a customer's site enroll online", sub: []*command{
			leaf("create", "make an enrollment code for a customer", vendorEnrollCreate),
		}},
		{name: "site", summary: "certify, renew, revoke and list customers' license servers", sub: []*command{
			leaf("certify", "certify a site from its request file (offline enrollment)", vendorSiteCertify),
			leaf("list", "list certified sites with their certificate's end and revocation", vendorList("site", "/v1/sites")),
			leaf("renew", "renew a site's certificate from its renewal file (offline renewal)", vendorSiteRenew),
			leaf("revoke", "revoke a site: no renewal, packs or reports, and verifiers refuse its licenses", vendorSiteRevoke),
			leaf("revocations", "write the signed list of revoked sites for verifiers (gateway --revocations)", vendorSiteRevocations),
		}},
		{name: "order", summary: "record and list orders", sub: []*command{
			leaf("add", "record an order", vendorOrderAdd),
			leaf("list", "list orders", vendorList("order", "/v1/orders")),
			leaf("show", "show an order, with the temporary licenses its pack allows", vendorOrderShow),
		}},
		{name: "pack", summary: "license packs", sub: []*command{
			leaf("issue", "answer a site's purchase request file with its pack file", vendorPackIssue),
		}},
		vendorReportCommand(),
		{name: "image", summary: "client program images", sub: []*command{
			leaf("sign", "sign a client executable so sites can check platform challenges", vendorImageSign),
		}},
		vendorAppCommand(), vendorReleaseCommand(), vendorBundleCommand(),
		vendorTokenCommand(),
		vendorAPITokenCommand(),
		vendorRootCommand(),
		vendorAccountCommand(),
		vendorPlanCommand(),
		vendorSellLeaf(),
		vendorLedgerLeaf(),
		vendorDeviceCommand(),
		vendorPolicyCommand(),
		vendorWebhookCommand(),
	}}
}

func vendorInit(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor init", "--data DIR --name NAME [--db DSN]",
		"Creates the vendor root key and certificate, the issuing CA, the clearinghouse, provisioning\nand distribution keys, the database and an admin token, which is printed once. Keys are\nwritten with mode 0600.")
	data := fs.String("data", "", "data directory to create")
	name := fs.String("name", "", "the vendor's name, shown in certificates")
	db := fs.String("db", "", "database: a SQLite file in the data directory (default vendor.db) or a postgres:// URL")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data", "name"); err != nil {
		return err
	}
	token, err := clearinghouse.Init(ctx, *data, *name, *db, store.OpenVendor)
	if err != nil {
		return err
	}
	if err := keypadvendor.CreateSealKey(*data); err != nil {
		return err
	}
	svc, err := clearinghouse.Open(ctx, *data, "", store.OpenVendor)
	if err != nil {
		return err
	}
	defer svc.Close()
	if _, err := paygService(svc, *data); err != nil {
		return err
	}
	if _, err := catalog.Authority(*data, svc.Root, svc.Config.VendorName, svc.Now()); err != nil {
		return err
	}
	fp := pki.Fingerprint(svc.Root.Cert.Raw)
	if *asJSON {
		return printJSON(e.stdout, map[string]string{"data": *data, "admin_token": token, "root_fingerprint": fp})
	}
	days := int(auth.DefaultExpiry / (24 * time.Hour))
	fmt.Fprintf(e.stdout, "Vendor %q initialised in %s.\nRoot certificate fingerprint (give it to customers): %s\n\nAdmin token (shown once; keep it safe; it expires in %d days, make others with 'licet vendor apitoken create'):\n  %s\n\nNext: licet vendor serve --data %s\n", *name, *data, fp, days, token, *data)
	return nil
}

// serverFlags are the flags every server command shares.
type serverFlags struct {
	listen  *string
	logJSON *bool
	rate    *float64
	maxBody *int64
	// metricsListen, if set, serves /metrics without a token on its own address.
	metricsListen *string
}

func addServerFlags(fs *flag.FlagSet, defaultListen string) serverFlags {
	return serverFlags{
		listen:        fs.String("listen", defaultListen, "address to listen on"),
		logJSON:       fs.Bool("log-json", false, "log JSON lines instead of text"),
		rate:          fs.Float64("rate-limit", api.DefaultLimits.RatePerIP, "requests per second per client IP (0: no limit)"),
		maxBody:       fs.Int64("max-body", api.DefaultLimits.MaxBody, "largest request body in bytes"),
		metricsListen: fs.String("metrics-listen", "", "serve /metrics without a token on this address too (e.g. 127.0.0.1:9470); on the main address /metrics needs a token of scope metrics or admin"),
	}
}

func (f serverFlags) logger(e *env) *slog.Logger {
	if *f.logJSON {
		return slog.New(slog.NewJSONHandler(e.stderr, nil))
	}
	return slog.New(slog.NewTextHandler(e.stderr, nil))
}

func (f serverFlags) limits() api.Limits {
	return api.Limits{MaxBody: *f.maxBody, RatePerIP: *f.rate, Burst: max(1, int(2**f.rate))}
}

// listen opens the listener and announces its URL on stdout, so that a
// script (or a test using port 0) learns where the server is.
func listen(e *env, role, addr string) (net.Listener, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", errs.Wrap(errs.Internal, err, "%s cannot listen on %s; choose another --listen address", role, addr)
	}
	url := "http://" + ln.Addr().String()
	fmt.Fprintf(e.stdout, "%s listening on %s\n", role, url)
	return ln, url, nil
}

func vendorServe(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor serve", "--data DIR [--listen ADDR] [--db DSN]",
		"Runs the vendor API: products, customers, site enrollment, orders and license packs,\nplus /healthz and /metrics. Stops cleanly on SIGINT or SIGTERM.")
	data := fs.String("data", "", "vendor data directory made by 'licet vendor init'")
	db := fs.String("db", "", "override the configured database (SQLite path or postgres:// URL)")
	siteValidity := fs.Duration("site-validity", pki.SiteValidity, "life of the site certificates issued (enrollment, certification, renewal), "+pki.MinSiteValidity.String()+" to "+pki.MaxSiteValidity.String())
	revValid := fs.Duration("revocations-valid-for", clearinghouse.DefaultRevocationsValidity, "how long the list of revoked sites served at GET /v1/revoked-sites is current (its next update), "+clearinghouse.MinRevocationsValidity.String()+" to "+clearinghouse.MaxRevocationsValidity.String())
	sf := addServerFlags(fs, DefaultVendorListen)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data"); err != nil {
		return err
	}
	if err := pki.CheckSiteValidity(*siteValidity); err != nil {
		return err
	}
	if *revValid < clearinghouse.MinRevocationsValidity || *revValid > clearinghouse.MaxRevocationsValidity {
		return errs.E(errs.Usage, "--revocations-valid-for %s is out of range: give %s to %s (an old copy of the list hides later revocations for that long)",
			*revValid, clearinghouse.MinRevocationsValidity, clearinghouse.MaxRevocationsValidity)
	}
	now, err := e.clock()
	if err != nil {
		return err
	}
	svc, err := clearinghouse.Open(ctx, *data, *db, store.OpenVendor)
	if err != nil {
		return err
	}
	defer svc.Close()
	svc.Now, svc.SiteValidity, svc.RevocationsValidity = now, *siteValidity, *revValid
	log := sf.logger(e)
	ln, _, err := listen(e, "vendor", *sf.listen)
	if err != nil {
		return err
	}
	h, err := vendorHandler(ctx, svc, *data, log, sf.limits())
	if err == nil {
		err = addPaygRoutes(h, svc, *data)
	}
	if err != nil {
		ln.Close()
		return err
	}
	warnRootOnline(log, svc, *data)
	log.Info("vendor serving", "addr", ln.Addr().String(), "root", pki.Fingerprint(svc.Root.Cert.Raw)[:16], "site_validity", svc.SiteValidity.String())
	return serveWithMetrics(ctx, e, ln, h, *sf.metricsListen, log)
}

// adminFlags are the flags of commands that call an API as an administrator.
type adminFlags struct {
	server, token *string
	json          *bool
}

func addAdminFlags(e *env, fs *flag.FlagSet, urlEnv, defaultURL string) adminFlags {
	def := e.getenv(urlEnv)
	if def == "" {
		def = defaultURL
	}
	return adminFlags{
		server: fs.String("server", def, "API URL (default from $"+urlEnv+")"),
		token:  fs.String("token", "", "admin token (default from $LICET_TOKEN)"),
		json:   fs.Bool("json", false, "print the result as JSON"),
	}
}

func (a adminFlags) client(e *env) *api.Client {
	tok := *a.token
	if tok == "" {
		tok = e.getenv("LICET_TOKEN")
	}
	return &api.Client{BaseURL: *a.server, Token: tok}
}

func vendorAdmin(e *env, fs *flag.FlagSet) adminFlags {
	return addAdminFlags(e, fs, "LICET_VENDOR_URL", "http://"+DefaultVendorListen)
}

func vendorProductAdd(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor product add", "--id ID --version V [--name N] [--feature F]... [--description LANG=TEXT]... [--data K=V]...",
		"Adds a product that orders and packs can name.")
	a := vendorAdmin(e, fs)
	p := clearinghouse.Product{Descriptions: map[string]string{}, Data: map[string]string{}}
	fs.StringVar(&p.ID, "id", "", "product ID (lower-case letters, digits, '.', '_', '-')")
	fs.StringVar(&p.Name, "name", "", "display name (default: the ID)")
	fs.StringVar(&p.Version, "version", "", "product version, e.g. 2.1")
	fs.StringVar(&p.Manufacturer, "manufacturer", "", "manufacturer (default: the vendor name)")
	var feats listFlag
	fs.Var(&feats, "feature", "a licensable feature (repeatable)")
	fs.Var(mapFlag(p.Descriptions), "description", "LANG=TEXT human description in a language (repeatable)")
	fs.Var(mapFlag(p.Data), "data", "KEY=VALUE product-specific data carried into packs (repeatable)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "id", "version"); err != nil {
		return err
	}
	p.Features = feats
	out, err := a.client(e).AddProduct(ctx, &p)
	if err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "Added product %s (%s %s).\n", out.ID, out.Name, out.Version)
	return nil
}

func vendorProductRelease(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor product release", "--id ID --version V",
		"Makes version V, newer than the current one, the product's current version: packs\n"+
			"issued from now on are for V, and upgrade orders ('licet vendor order add\n"+
			"--upgrade-from MIN..MAX') upgrade licenses of older versions to V.")
	a := vendorAdmin(e, fs)
	id := fs.String("id", "", "product ID")
	version := fs.String("version", "", "the new version, e.g. 2.0")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "id", "version"); err != nil {
		return err
	}
	out, err := a.client(e).ReleaseVersion(ctx, *id, *version)
	if err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "Product %s is now at version %s.\n", out.ID, out.Version)
	return nil
}

func vendorCustomerAdd(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor customer add", "--id ID [--name NAME]", "Adds a customer.")
	a := vendorAdmin(e, fs)
	var c clearinghouse.Customer
	fs.StringVar(&c.ID, "id", "", "customer ID (lower-case letters, digits, '.', '_', '-')")
	fs.StringVar(&c.Name, "name", "", "display name (default: the ID)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "id"); err != nil {
		return err
	}
	out, err := a.client(e).AddCustomer(ctx, &c)
	if err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "Added customer %s (%s).\n", out.ID, out.Name)
	return nil
}

func vendorEnrollCreate(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor enroll create", "--customer ID",
		"Makes a one-time code with which one license server of the customer enrolls online\n('licet site init --vendor URL --enroll CODE'). It expires after 7 days.")
	a := vendorAdmin(e, fs)
	customer := fs.String("customer", "", "customer ID")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "customer"); err != nil {
		return err
	}
	out, err := a.client(e).CreateEnrollment(ctx, *customer)
	if err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "Enrollment code for %s (one use, expires %s):\n  %s\n", out.CustomerID, out.Expires.Format(time.DateOnly), out.Code)
	return nil
}

// writeOutput writes data to path atomically, or to stdout for "" or "-".
func writeOutput(e *env, path string, data []byte) error {
	if path == "" || path == "-" {
		_, err := e.stdout.Write(data)
		return err
	}
	if err := fsutil.WriteFileAtomic(path, data, 0o644); err != nil {
		return errs.Wrap(errs.Internal, err, "write %s", path)
	}
	return nil
}

func vendorSiteCertify(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor site certify", "--customer ID [-o FILE] REQUEST",
		"Certifies a customer's license server from the request file that 'licet site init'\nwrote, and writes the site certificate file to carry back ('licet site cert install').")
	a := vendorAdmin(e, fs)
	customer := fs.String("customer", "", "customer ID the site belongs to")
	out := fs.String("o", "", "write the certificate file here (default: standard output)")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if err := required(fs, "customer"); err != nil {
		return err
	}
	req, err := readInput(fs.Arg(0))
	if err != nil {
		return err
	}
	cert, err := a.client(e).Certify(ctx, *customer, req)
	if err != nil {
		return err
	}
	if err := writeOutput(e, *out, cert); err != nil {
		return err
	}
	if *out != "" {
		fmt.Fprintf(e.stderr, "Wrote the site certificate to %s.\n", *out)
	}
	return nil
}

func parseDate(field, v string) (*time.Time, error) {
	if v == "" {
		return nil, nil
	}
	for _, layout := range []string{time.DateOnly, time.RFC3339} {
		if t, err := time.Parse(layout, v); err == nil {
			t = t.UTC()
			return &t, nil
		}
	}
	return nil, errs.E(errs.Usage, "--%s %q is not a date: use YYYY-MM-DD or RFC 3339", field, v)
}

func vendorOrderAdd(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor order add", "--customer ID --product ID --platform P --quantity N [--feature F]... [--first-active DATE] [--expires DATE] [--temporary-licenses N] [--temporary-days D] [--upgrade-from MIN..MAX]",
		"Records an order and prints its ID. The customer's site then buys the pack with\n'licet site pack buy --order ID' (online) or 'licet site pack request --order ID' (offline).\n\n"+
			"The pack states how many temporary licenses its site may issue when no seat is free\n"+
			"(--temporary-licenses, 0 to the quantity; default max(1, quantity/10)) and for how long\n"+
			fmt.Sprintf("at most (--temporary-days, 1 to %d; default %d); the site issues them only while the\n", pack.MaxTemporaryDays, pack.DefaultTemporaryDays)+
			"pack is active.\n\n"+
			"With --upgrade-from the order is for upgrade seats: each exchanges a client's license\n"+
			"of a product version in MIN..MAX (both included), or an expired one, for a license of\n"+
			"the product's current version, without a new seat or platform challenge. An upgrade\n"+
			"pack allows no temporary licenses.")
	a := vendorAdmin(e, fs)
	var o clearinghouse.Order
	fs.StringVar(&o.CustomerID, "customer", "", "customer ID")
	fs.StringVar(&o.ProductID, "product", "", "product ID")
	fs.StringVar(&o.Platform, "platform", "", "client platform: windows, non-windows, legacy or direct-connect")
	qty := fs.String("quantity", "", "number of seats, a whole number `N`")
	var feats listFlag
	fs.Var(&feats, "feature", "licensed feature (repeatable; default: all of the product's)")
	first := fs.String("first-active", "", "date the seats become usable (YYYY-MM-DD)")
	exp := fs.String("expires", "", "date the pack expires (YYYY-MM-DD; default: never)")
	upFrom := fs.String("upgrade-from", "", "make the seats upgrades from product versions MIN..MAX (e.g. 1.0..1.9)")
	tempN := fs.String("temporary-licenses", "", "`N` temporary licenses the site may issue when no seat is free (0: none; default max(1, quantity/10))")
	tempDays := fs.String("temporary-days", "", fmt.Sprintf("longest validity of a temporary license, in `DAYS` (1 to %d; default %d)", pack.MaxTemporaryDays, pack.DefaultTemporaryDays))
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "customer", "product", "platform", "quantity"); err != nil {
		return err
	}
	if *upFrom != "" {
		lo, hi, ok := strings.Cut(*upFrom, "..")
		if !ok || lo == "" || hi == "" {
			return errs.E(errs.Usage, "--upgrade-from %q: give the versions upgraded from as MIN..MAX, e.g. 1.0..1.9", *upFrom)
		}
		o.Upgrade = &pack.Upgrade{FromMin: lo, FromMax: hi}
	}
	n, err := strconv.Atoi(*qty)
	if err != nil {
		return errs.E(errs.Usage, "--quantity %q is not a whole number", *qty)
	}
	o.Quantity = n
	if o.TemporaryLicenses, err = optionalInt("temporary-licenses", *tempN); err != nil {
		return err
	}
	if o.TemporaryDays, err = optionalInt("temporary-days", *tempDays); err != nil {
		return err
	}
	if len(feats) > 0 {
		o.Features = feats
	}
	if o.FirstActive, err = parseDate("first-active", *first); err != nil {
		return err
	}
	if o.Expires, err = parseDate("expires", *exp); err != nil {
		return err
	}
	out, err := a.client(e).AddOrder(ctx, &o)
	if err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "Recorded order %s: %d %s %s of %s for %s; %s.\n", out.ID, out.Quantity, out.Platform, orderKind(out), out.ProductID, out.CustomerID, temporaryText(out))
	return nil
}

// optionalInt parses the whole number of flag name; nil if v is empty.
func optionalInt(name, v string) (*int, error) {
	if v == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return nil, errs.E(errs.Usage, "--%s %q is not a whole number", name, v)
	}
	return &n, nil
}

// orderKind says what an order's seats are: new seats or upgrades.
func orderKind(o *clearinghouse.Order) string {
	if o.Upgrade != nil {
		return fmt.Sprintf("upgrade seats (from %s..%s)", o.Upgrade.FromMin, o.Upgrade.FromMax)
	}
	return "seats"
}

// temporaryText describes the temporary licenses an order's pack allows.
func temporaryText(o *clearinghouse.Order) string {
	switch count, days := o.TemporaryAllowance(); count {
	case 0:
		return "no temporary licenses"
	case 1:
		return fmt.Sprintf("1 temporary license of at most %d days", days)
	default:
		return fmt.Sprintf("%d temporary licenses of at most %d days", count, days)
	}
}

func vendorOrderShow(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor order show", "ID",
		"Shows an order: what it sells, the temporary licenses its pack allows, and its pack once issued.")
	a := vendorAdmin(e, fs)
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	var o clearinghouse.Order
	if err := a.client(e).Get(ctx, "/v1/orders/"+url.PathEscape(fs.Arg(0)), &o); err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, o)
	}
	date := func(t *time.Time, none string) string {
		if t == nil {
			return none
		}
		return t.Format(time.DateOnly)
	}
	fmt.Fprintf(e.stdout, "Order %s of customer %s, created %s\n", o.ID, o.CustomerID, o.Created.Format(time.RFC3339))
	fmt.Fprintf(e.stdout, "Sells: %d %s %s of %s, features %s\n", o.Quantity, o.Platform, orderKind(&o), o.ProductID, strings.Join(o.Features, ", "))
	fmt.Fprintf(e.stdout, "First active: %s\nExpires: %s\n", date(o.FirstActive, "when issued"), date(o.Expires, "never"))
	fmt.Fprintf(e.stdout, "Temporary: %s\n", temporaryText(&o))
	fmt.Fprintf(e.stdout, "Pack: %s\n", orDash(o.PackID))
	return nil
}

func vendorPackIssue(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor pack issue", "[-o FILE] REQUEST",
		"Answers a site's purchase request file (from 'licet site pack request') with the\nlicense pack file, signed by the clearinghouse and encrypted to that site. A pack is\nissued once per order; asking again returns the same pack.")
	a := vendorAdmin(e, fs)
	out := fs.String("o", "", "write the pack file here (default: standard output)")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	req, err := readInput(fs.Arg(0))
	if err != nil {
		return err
	}
	resp, err := a.client(e).Purchase(ctx, req)
	if err != nil {
		return err
	}
	if *a.json && *out != "" {
		if err := writeOutput(e, *out, []byte(resp.Pack)); err != nil {
			return err
		}
		return printJSON(e.stdout, resp.IssuedPack)
	}
	if err := writeOutput(e, *out, []byte(resp.Pack)); err != nil {
		return err
	}
	if *out != "" {
		fmt.Fprintf(e.stderr, "Wrote pack %s (%d seats, order %s, site %s) to %s.\n", resp.PackID, resp.Quantity, resp.OrderID, resp.SiteID, *out)
	}
	return nil
}

// vendorList makes a "list" command that prints an admin GET as JSON or a table.
func vendorList(what, path string) func(ctx context.Context, e *env, args []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		fs := flagSet(e, "licet vendor "+what+" list", "[--customer ID]", "Lists "+what+"s.")
		a := vendorAdmin(e, fs)
		customer := fs.String("customer", "", "only this customer's (orders and sites)")
		if err := parse(fs, args, 0); err != nil {
			return err
		}
		p := path
		if *customer != "" {
			p += "?customer=" + *customer
		}
		var rows []map[string]any
		if err := a.client(e).Get(ctx, p, &rows); err != nil {
			return err
		}
		if *a.json {
			return printJSON(e.stdout, rows)
		}
		cols := map[string][]string{
			"product":  {"id", "name", "version", "features"},
			"customer": {"id", "name", "created"},
			"site":     {"id", "customer_id", "name", "certified", "expires", "revoked"},
			"order":    {"id", "customer_id", "product_id", "platform", "quantity", "temporary_licenses", "temporary_days", "pack_id"},
		}[what]
		var out [][]string
		for _, r := range rows {
			var line []string
			for _, c := range cols {
				line = append(line, fmt.Sprint(orDash(r[c])))
			}
			out = append(out, line)
		}
		table(e.stdout, cols, out)
		return nil
	}
}

func orDash(v any) any {
	if v == nil || v == "" {
		return "-"
	}
	return v
}

func vendorImageSign(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor image sign", "--software-id ID [--name NAME] [-o FILE] IMAGE",
		"Signs a client executable image with the clearinghouse key: its SHA-256, size and\nsoftware ID. Only the hash leaves this machine. Sites register the image with\n'licet site image add --signature FILE IMAGE' to check platform challenges against it.")
	a := vendorAdmin(e, fs)
	sid := fs.String("software-id", "", "software ID, PLATFORM/VENDOR/REVISION (e.g. windows/7/312) or hex")
	name := fs.String("name", "", "a name for the image (default: its file name)")
	out := fs.String("o", "", "write the signature file here (default: standard output)")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if err := required(fs, "software-id"); err != nil {
		return err
	}
	software, err := softid.Parse(*sid)
	if err != nil {
		return errs.Wrap(errs.Usage, err, "--software-id")
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "open image")
	}
	defer f.Close()
	sum, size, err := clientimage.Hash(f)
	if err != nil {
		return err
	}
	if *name == "" {
		*name = filepath.Base(fs.Arg(0))
	}
	sig, err := a.client(e).SignImage(ctx, &clientimage.Manifest{SoftwareID: uint32(software), Name: *name, SHA256: sum, Size: size})
	if err != nil {
		return err
	}
	return writeOutput(e, *out, sig)
}

func vendorSiteRenew(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor site renew", "[-o FILE] RENEWAL-FILE",
		"Renews a site's certificate from the renewal file it wrote ('licet site renew --out FILE'),\n"+
			"for a site that cannot reach the vendor: the file holds its latest signed usage report and\n"+
			"a renewal request signed by its key. The vendor refuses a revoked site, a report that is not\n"+
			"the site's latest, more than 30 days old or flagged (duplicate serials, seats above the sold\n"+
			"quantity, a broken chain). Writes the site certificate file to carry back\n"+
			"('licet site renew --install FILE').")
	a := vendorAdmin(e, fs)
	out := fs.String("o", "", "write the certificate file here (default: standard output)")
	fs.StringVar(out, "out", "", "the same as -o")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	req, err := readInput(fs.Arg(0))
	if err != nil {
		return err
	}
	resp, err := a.client(e).RenewSite(ctx, req)
	if err != nil {
		return err
	}
	if err := writeOutput(e, *out, []byte(resp.Certificate)); err != nil {
		return err
	}
	if *a.json && *out != "" {
		return printJSON(e.stdout, resp.Site)
	}
	if *out != "" {
		fmt.Fprintf(e.stderr, "Renewed site %s until %s (usage report %d); wrote the certificate to %s.\n", resp.Site.ID, fmtTime(resp.Site.Expires), resp.UsageReport.Sequence, *out)
	}
	return nil
}

// fmtTime formats an optional time as RFC 3339, or "-".
func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func vendorSiteRevoke(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor site revoke", "--reason TEXT SITE",
		"Revokes a site, for good: it can no longer renew its certificate, buy packs, send usage\n"+
			"reports or be certified again, and the signed list of revoked sites names it from now on\n"+
			"(GET /v1/revoked-sites, 'licet vendor site revocations'), so that gateways and\n"+
			"'licet license verify' given the list refuse its licenses. Licenses it issued stay valid\n"+
			"for verifiers that do not take the list, until they end (at the latest with its certificate).")
	a := vendorAdmin(e, fs)
	reason := fs.String("reason", "", "why the site is revoked (one line, shown in the list)")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if err := required(fs, "reason"); err != nil {
		return err
	}
	site, err := a.client(e).RevokeSite(ctx, fs.Arg(0), *reason)
	if err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, site)
	}
	fmt.Fprintf(e.stdout, "Revoked site %s of customer %s on %s: %s\n", site.ID, site.CustomerID, fmtTime(site.Revoked), site.RevokeReason)
	return nil
}

func vendorSiteRevocations(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor site revocations", "[--out FILE] [--valid-for DURATION]",
		"Writes the vendor's list of revoked sites, signed by the clearinghouse key, for verifiers\n"+
			"that cannot fetch GET /v1/revoked-sites themselves ('licet gateway --revocations FILE',\n"+
			"'licet license verify --revocations FILE'). Verifiers refuse the list once it is more than\n"+
			"a day past its next update: give them a new one before then.")
	a := vendorAdmin(e, fs)
	out := fs.String("out", "", "write the list here (default: standard output)")
	fs.StringVar(out, "o", "", "the same as --out")
	validFor := fs.Duration("valid-for", 0, "make the list current for this long (1h to 2160h; default: the server's --revocations-valid-for)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	list, err := a.client(e).RevokedSites(ctx, *validFor)
	if err != nil {
		return err
	}
	if err := writeOutput(e, *out, append(list, '\n')); err != nil {
		return err
	}
	if *out != "" {
		fmt.Fprintf(e.stderr, "Wrote the signed list of revoked sites to %s.\n", *out)
	}
	return nil
}

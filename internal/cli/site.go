package cli

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/licet/licet/api"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/licensing/pack"
	"github.com/licet/licet/licensing/softid"
	"github.com/licet/licet/store"
)

func siteCommand() *command {
	return &command{name: "site", summary: "the customer's license server", sub: []*command{
		leaf("init", "create the site's keys and certification request, and enroll it", siteInit),
		leaf("info", "show the site's identity and certification", siteInfo),
		leaf("serve", "run the site API server", siteServe),
		{name: "cert", summary: "the site's certificate", sub: []*command{
			leaf("install", "install the certificate file the vendor issued (offline enrollment)", siteCertInstall),
		}},
		leaf("renew", "renew the site certificate against the latest usage report (online or by file)", siteRenew),
		{name: "pack", summary: "license packs", sub: []*command{
			leaf("request", "write a purchase request file for an order (offline)", sitePackRequest),
			leaf("install", "verify, decrypt and install a pack file", sitePackInstall),
			leaf("buy", "buy the pack of an order from the vendor and install it (online)", sitePackBuy),
			leaf("list", "list installed packs with free seats", sitePackList),
		}},
		{name: "image", summary: "reference client images for platform challenges", sub: []*command{
			leaf("add", "register a client image signed by the vendor", siteImageAdd),
			leaf("list", "list registered client images", siteImageList),
		}},
		leaf("report", "seats per pack and product, licenses, and licenses expiring soon", siteReport),
		{name: "license", summary: "granted client licenses", sub: []*command{
			leaf("list", "list licenses by client or pack", siteLicenseList),
			leaf("release", "free a license from its machine, for a client that moved to other hardware", siteLicenseRelease),
		}},
		{name: "token", summary: "API tokens", sub: []*command{
			leaf("create", "make a token for the site API (e.g. a gateway's, scope upgrade)", siteTokenCreate),
			leaf("list", "list the site API tokens with their expiry and state", siteTokenList),
			leaf("revoke", "revoke a site API token at once", siteTokenRevoke),
		}},
		siteGroupCommand(), siteDeviceCommand(), siteUpdateCommand(),
	}}
}

// siteFlags are the flags of commands that work on a site data directory.
type siteFlags struct {
	data, db *string
	json     *bool
}

func addSiteFlags(fs interface {
	String(string, string, string) *string
	Bool(string, bool, string) *bool
}) siteFlags {
	return siteFlags{
		data: fs.String("data", "", "site data directory"),
		db:   fs.String("db", "", "override the configured database (SQLite path or postgres:// URL)"),
		json: fs.Bool("json", false, "print the result as JSON"),
	}
}

// open loads the identity and opens the store.
func (f siteFlags) open(ctx context.Context, e *env) (*licenseserver.Server, func(), error) {
	if *f.data == "" {
		return nil, nil, errs.E(errs.Usage, "--data is required: the site data directory")
	}
	now, err := e.clock()
	if err != nil {
		return nil, nil, err
	}
	id, err := licenseserver.LoadIdentity(*f.data)
	if err != nil {
		return nil, nil, err
	}
	st, err := id.OpenStore(ctx, *f.db, store.OpenSite)
	if err != nil {
		return nil, nil, err
	}
	return &licenseserver.Server{ID: id, Store: st, Now: now}, func() { st.Close() }, nil
}

func siteInit(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site init", "--data DIR [--name NAME] [--vendor URL --enroll CODE] [--root-fingerprint FP]",
		"Creates the site's signing and encryption keys (mode 0600), its database, an admin\ntoken for the site API (printed once) and a certification request.\n\nOnline: with --vendor and --enroll the site enrolls at once with the code the vendor\ngave you. Offline: carry DIR/site-request.txt to the vendor, who answers with a\ncertificate file for 'licet site cert install'.")
	sf := addSiteFlags(fs)
	name := fs.String("name", "", "a name for this license server (default: its site ID)")
	vendor := fs.String("vendor", "", "vendor API URL, for online enrollment and purchases")
	code := fs.String("enroll", "", "one-time enrollment code from the vendor")
	fp := fs.String("root-fingerprint", "", "expected SHA-256 fingerprint of the vendor root (recommended)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data"); err != nil {
		return err
	}
	if *code != "" && *vendor == "" {
		return errs.E(errs.Usage, "--enroll needs --vendor: the vendor API URL")
	}
	var enroll licenseserver.Enroller
	if *code != "" {
		enroll = func(ctx context.Context, req []byte) ([]byte, error) {
			cert, err := (&api.Client{BaseURL: *vendor}).Enroll(ctx, *code, req)
			if err != nil {
				return nil, errs.Wrap(errs.KindOf(err), err, "enrollment at %s failed; nothing was written", *vendor)
			}
			return cert, nil
		}
	}
	id, token, err := licenseserver.Init(ctx, *sf.data, licenseserver.InitOptions{
		Name: *name, DB: *sf.db, VendorURL: *vendor, RootFingerprint: *fp, Enroll: enroll,
	}, store.OpenSite)
	if err != nil {
		return err
	}
	result := map[string]any{"site_id": id.SiteID, "admin_token": token, "request_file": *sf.data + "/site-request.txt"}
	info := api.Info(id)
	result["certified"] = info.Certified
	result["customer_id"] = info.CustomerID
	result["root_fingerprint"] = info.RootFingerprint
	if *sf.json {
		return printJSON(e.stdout, result)
	}
	fmt.Fprintf(e.stdout, "Site %s initialised in %s.\nSite admin token (shown once; keep it safe):\n  %s\n", id.SiteID, *sf.data, token)
	if info.Certified {
		fmt.Fprintf(e.stdout, "Enrolled for customer %s; vendor root fingerprint %s.\n", info.CustomerID, info.RootFingerprint)
	} else {
		fmt.Fprintf(e.stdout, "Not certified yet. Send %s/site-request.txt to the vendor, then run\n  licet site cert install --data %s CERTIFICATE-FILE\n", *sf.data, *sf.data)
	}
	return nil
}

func siteInfo(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site info", "--data DIR", "Shows the site ID, whether it is certified, its customer, when its certificate expires and the vendor root.")
	sf := addSiteFlags(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data"); err != nil {
		return err
	}
	id, err := licenseserver.LoadIdentity(*sf.data)
	if err != nil {
		return err
	}
	info := api.Info(id)
	if *sf.json {
		return printJSON(e.stdout, info)
	}
	table(e.stdout, []string{"SITE", "NAME", "CERTIFIED", "CUSTOMER", "CERTIFICATE EXPIRES", "ROOT FINGERPRINT"},
		[][]string{{info.SiteID, info.Name, fmt.Sprint(info.Certified), fmt.Sprint(orDash(info.CustomerID)), fmtTime(info.CertificateExpires), fmt.Sprint(orDash(info.RootFingerprint))}})
	return nil
}

func siteCertInstall(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site cert install", "--data DIR [--root-fingerprint FP] FILE",
		"Installs the site certificate file the vendor issued ('licet vendor site certify').\nOn first install the vendor root in it is pinned; compare its fingerprint with the\none the vendor gave you, or pass it as --root-fingerprint.")
	sf := addSiteFlags(fs)
	fp := fs.String("root-fingerprint", "", "expected SHA-256 fingerprint of the vendor root")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if err := required(fs, "data"); err != nil {
		return err
	}
	id, err := licenseserver.LoadIdentity(*sf.data)
	if err != nil {
		return err
	}
	file, err := readInput(fs.Arg(0))
	if err != nil {
		return err
	}
	now, err := e.clock()
	if err != nil {
		return err
	}
	site, err := id.InstallCertificate(file, *fp, now())
	if err != nil {
		return err
	}
	info := api.Info(id)
	if *sf.json {
		return printJSON(e.stdout, info)
	}
	fmt.Fprintf(e.stdout, "Installed the certificate of site %s for customer %s.\nVendor root fingerprint: %s\n", site.SiteID, site.CustomerID, info.RootFingerprint)
	return nil
}

// siteGOGC is the garbage collector's target of 'site serve' unless $GOGC
// sets one: a heap of tens of MB may grow to five times its live size
// rather than twice between collections, for less collection per grant.
const siteGOGC = 400

func siteServe(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site serve", "--data DIR [--listen ADDR] [--db DSN]",
		"Runs the site API (packs, and /healthz and /metrics). Stops cleanly on SIGINT or SIGTERM.\n"+
			"A renewed site certificate ('licet site renew' or 'site cert install' run meanwhile) is taken\n"+
			"without a restart: within --cert-check, or at once on SIGHUP.\n"+
			"Unless $GOGC is set, the Go garbage collector runs at GOGC=400 (the site's heap is\n"+
			"small, and collecting less often saves CPU on every grant; see BENCHMARKS.md).")
	sf := addSiteFlags(fs)
	srvf := addServerFlags(fs, DefaultSiteListen)
	tempDays := fs.Int("temporary-days", int(licenseserver.DefaultTemporaryFor/(24*time.Hour)), "validity of the one temporary license a machine gets when no seat is free (0: none)")
	var perProduct listFlag
	fs.Var(&perProduct, "product-temporary-days", "PRODUCT=DAYS: --temporary-days for one product (repeatable)")
	poolSize := fs.Int("challenge-pool", licenseserver.DefaultPoolSize, "precomputed platform challenges kept per client image (a burst of this many new clients is served without hashing the image)")
	poolWorkers := fs.Int("challenge-workers", licenseserver.DefaultPoolWorkers, "low-priority goroutines that hash client images to refill the challenge pools")
	certCheck := fs.Duration("cert-check", DefaultCertCheck, "how often to read the site certificate file again and take a renewed certificate without a restart (SIGHUP reads it at once; 0: only on SIGHUP)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(siteGOGC)
	}
	if *poolSize < 1 || *poolWorkers < 1 {
		return errs.E(errs.Usage, "--challenge-pool and --challenge-workers must be at least 1")
	}
	if *tempDays < 0 {
		return errs.E(errs.Usage, "--temporary-days must be 0 or more")
	}
	if *certCheck < 0 {
		return errs.E(errs.Usage, "--cert-check must be 0 (only on SIGHUP) or a positive duration such as 1m")
	}
	tempFor := map[string]time.Duration{}
	for _, v := range perProduct {
		product, days, ok := strings.Cut(v, "=")
		n, err := strconv.Atoi(days)
		if !ok || product == "" || err != nil || n < 0 {
			return errs.E(errs.Usage, "--product-temporary-days %q: give PRODUCT=DAYS, e.g. acme-cad=14 (0: no temporary licenses of it)", v)
		}
		tempFor[product] = time.Duration(n) * 24 * time.Hour
	}
	srv, closeFn, err := sf.open(ctx, e)
	if err != nil {
		return err
	}
	defer closeFn()
	srv.TemporaryFor = time.Duration(*tempDays) * 24 * time.Hour
	srv.TemporaryForProduct = tempFor
	log := srvf.logger(e)
	poolOpts := licenseserver.PoolOptions{Size: *poolSize, Workers: *poolWorkers, StatusDir: licenseserver.PoolStatusDir(*sf.data), Log: log}
	if srv.ID.Certified() {
		if err := srv.StartChallengePools(ctx, poolOpts); err != nil {
			return err
		}
	}
	// A renewed certificate ('licet site renew' in another process) is
	// taken without a restart.
	watchSiteCertificate(ctx, srv, log, *certCheck, poolOpts)
	ln, _, err := listen(e, "site", *srvf.listen)
	if err != nil {
		return err
	}
	log.Info("site serving", "addr", ln.Addr().String(), "site", srv.ID.SiteID, "certified", srv.ID.Certified())
	if c := srv.ID.CertificateStatus(srv.Now()); c != nil && c.State != licenseserver.CertValid {
		log.Warn("site certificate "+c.Message, "site", c.SiteID, "not_after", c.NotAfter)
	}
	startDistSync(ctx, e, srv, log)
	err = serveWithMetrics(ctx, e, ln, api.NewSiteHandler(srv, log, srvf.limits()), *srvf.metricsListen, log)
	// Seats leased to this process and not granted go back for the others.
	if rerr := srv.ReturnSeats(context.WithoutCancel(ctx)); rerr != nil {
		log.Warn("could not give back leased seats; they return when their lease ends", "err", rerr)
	}
	return err
}

// packKind names a pack's kind in tables: seats, or the versions it upgrades from.
func packKind(u *pack.Upgrade) string {
	if u == nil {
		return "seats"
	}
	return "upgrade " + u.FromMin + ".." + u.FromMax
}

func sitePackRequest(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site pack request", "--data DIR --order ID [-o FILE]",
		"Writes a purchase request for an order, signed by the site's certified key, to carry\nto the vendor ('licet vendor pack issue'). Install the answer with 'licet site pack install'.")
	sf := addSiteFlags(fs)
	order := fs.String("order", "", "order ID from the vendor")
	out := fs.String("o", "", "write the request here (default: standard output)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data", "order"); err != nil {
		return err
	}
	id, err := licenseserver.LoadIdentity(*sf.data)
	if err != nil {
		return err
	}
	now, err := e.clock()
	if err != nil {
		return err
	}
	srv := &licenseserver.Server{ID: id, Now: now}
	req, err := srv.PurchaseRequest(*order)
	if err != nil {
		return err
	}
	return writeOutput(e, *out, req)
}

func printInstalled(e *env, asJSON bool, p *licenseserver.InstalledPack) error {
	if asJSON {
		return printJSON(e.stdout, p)
	}
	if p.Upgrade != nil {
		fmt.Fprintf(e.stdout, "Installed pack %s: %d %s upgrade seats of %s, from versions %s..%s to %s (order %s). They only upgrade existing licenses, through a gateway given a site token of scope upgrade, and are never granted as new licenses.\n",
			p.PackID, p.Quantity, p.Platform, p.ProductID, p.Upgrade.FromMin, p.Upgrade.FromMax, p.ProductVersion, p.OrderID)
		return nil
	}
	fmt.Fprintf(e.stdout, "Installed pack %s: %d %s seats of %s %s (order %s).\n", p.PackID, p.Quantity, p.Platform, p.ProductID, p.ProductVersion, p.OrderID)
	return nil
}

func sitePackInstall(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site pack install", "--data DIR PACK-FILE",
		"Verifies a pack file against the vendor root, decrypts it with the site key and\ninstalls it in one transaction. A pack already installed, expired, for another site,\nor changed in any byte is refused and nothing is written.")
	sf := addSiteFlags(fs)
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	file, err := readInput(fs.Arg(0))
	if err != nil {
		return err
	}
	srv, closeFn, err := sf.open(ctx, e)
	if err != nil {
		return err
	}
	defer closeFn()
	p, err := srv.InstallPack(ctx, file)
	if err != nil {
		return err
	}
	return printInstalled(e, *sf.json, p)
}

func sitePackBuy(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site pack buy", "--data DIR --order ID [--vendor URL]",
		"Sends a purchase request for the order to the vendor, authenticated by the site's\ncertified key, and installs the pack that comes back.")
	sf := addSiteFlags(fs)
	order := fs.String("order", "", "order ID from the vendor")
	vendor := fs.String("vendor", "", "vendor API URL (default: the one given at init)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data", "order"); err != nil {
		return err
	}
	srv, closeFn, err := sf.open(ctx, e)
	if err != nil {
		return err
	}
	defer closeFn()
	url := *vendor
	if url == "" {
		url = srv.ID.Config.VendorURL
	}
	if url == "" {
		return errs.E(errs.Usage, "--vendor is required: this site has no vendor URL configured")
	}
	req, err := srv.PurchaseRequest(*order)
	if err != nil {
		return err
	}
	resp, err := (&api.Client{BaseURL: url}).Purchase(ctx, req)
	if err != nil {
		return err
	}
	p, err := srv.InstallPack(ctx, []byte(resp.Pack))
	if err != nil {
		return err
	}
	return printInstalled(e, *sf.json, p)
}

func sitePackList(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site pack list", "--data DIR [--all]", "Lists installed packs that have free seats (all with --all).")
	sf := addSiteFlags(fs)
	all := fs.Bool("all", false, "include packs with no free seats and expired packs")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	srv, closeFn, err := sf.open(ctx, e)
	if err != nil {
		return err
	}
	defer closeFn()
	packs, err := srv.Store.Packs(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	shown := []*licenseserver.InstalledPack{}
	for _, p := range packs {
		if *all || (p.Free() > 0 && (p.Expires == nil || now.Before(*p.Expires))) {
			shown = append(shown, p)
		}
	}
	if *sf.json {
		return printJSON(e.stdout, shown)
	}
	var rows [][]string
	for _, p := range shown {
		exp := "never"
		if p.Expires != nil {
			exp = p.Expires.Format(time.DateOnly)
		}
		rows = append(rows, []string{p.PackID, p.ProductID, p.ProductVersion, packKind(p.Upgrade), p.Platform, fmt.Sprint(p.Quantity), fmt.Sprint(p.Free()), exp})
	}
	table(e.stdout, []string{"PACK", "PRODUCT", "VERSION", "KIND", "PLATFORM", "SEATS", "FREE", "EXPIRES"}, rows)
	return nil
}

func siteImageAdd(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site image add", "--data DIR --signature FILE IMAGE",
		"Registers the reference copy of a client program for its software ID. The image must\nmatch the vendor's signature file ('licet vendor image sign').")
	sf := addSiteFlags(fs)
	sig := fs.String("signature", "", "the vendor's image signature file")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if err := required(fs, "data", "signature"); err != nil {
		return err
	}
	sigFile, err := readInput(*sig)
	if err != nil {
		return err
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "open image")
	}
	defer f.Close()
	srv, closeFn, err := sf.open(ctx, e)
	if err != nil {
		return err
	}
	defer closeFn()
	img, err := srv.AddImage(ctx, sigFile, f)
	if err != nil {
		return err
	}
	if *sf.json {
		return printJSON(e.stdout, img)
	}
	fmt.Fprintf(e.stdout, "Registered image %s (%d bytes) for software ID %s.\n", img.Name, img.Size, softid.ID(img.SoftwareID))
	return nil
}

func siteImageList(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site image list", "--data DIR", "Lists the registered client images.")
	sf := addSiteFlags(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	srv, closeFn, err := sf.open(ctx, e)
	if err != nil {
		return err
	}
	defer closeFn()
	imgs, err := srv.Store.Images(ctx)
	if err != nil {
		return err
	}
	return printList(e, *sf.json, imgs, []string{"SOFTWARE ID", "NAME", "BYTES", "SHA-256"}, func(i *licenseserver.Image) []string {
		return []string{softid.ID(i.SoftwareID).String(), i.Name, fmt.Sprint(i.Size), hex.EncodeToString(i.SHA256)[:16]}
	})
}

func siteLicenseList(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site license list", "--data DIR [--client ID] [--pack ID] [--kind permanent|temporary|upgraded]",
		"Lists granted licenses: the seats' (the client assignment table) and the temporary ones,\n"+
			"by license ID, with their KIND: permanent (a seat's), upgraded (a seat's license exchanged\n"+
			"for a newer version) or temporary (the one a machine gets when no seat is free; it is not\n"+
			"renewed), and when each ENDS. A temporary license whose client, or another client on its\n"+
			"machine, holds a permanent license of the product now is marked 'superseded by' it.")
	sf := addSiteFlags(fs)
	client := fs.String("client", "", "only this client's licenses")
	packID := fs.String("pack", "", "only licenses from this pack (a seat pack, the upgrade pack of an upgraded license, or the pack a temporary license was charged to)")
	kind := fs.String("kind", "", "only licenses of this kind: permanent (every seat's, upgraded ones included), temporary or upgraded")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *kind != "" && !slices.Contains(licenseserver.LicenseKinds, *kind) {
		return errs.E(errs.Usage, "--kind %q: give permanent, temporary or upgraded", *kind)
	}
	srv, closeFn, err := sf.open(ctx, e)
	if err != nil {
		return err
	}
	defer closeFn()
	ls, err := srv.Licenses(ctx, licenseserver.LicenseFilter{AssignmentFilter: licenseserver.AssignmentFilter{ClientID: *client, PackID: *packID}, Kind: *kind})
	if err != nil {
		return err
	}
	if *sf.json {
		return printJSON(e.stdout, ls)
	}
	now := srv.Now()
	var rows [][]string
	for _, l := range ls {
		ends, note := "-", "-"
		if l.NotAfter != nil {
			ends = l.NotAfter.Format(time.DateOnly)
		}
		switch {
		case l.Upgraded():
			note = fmt.Sprintf("upgraded from %d (%s)", l.UpgradedFrom, l.UpgradePackID)
		case l.SupersededBy != 0:
			note = fmt.Sprintf("superseded by %d", l.SupersededBy)
		case l.NotAfter != nil && !l.NotAfter.After(now):
			note = "ended"
		case l.Temporary:
			note = "not renewed"
		}
		rows = append(rows, []string{fmt.Sprint(l.LicenseID), l.Kind, l.ClientID, l.PackID, l.ProductID, l.Platform, l.Issued.Format(time.DateOnly), ends, note})
	}
	table(e.stdout, []string{"LICENSE", "KIND", "CLIENT", "PACK", "PRODUCT", "PLATFORM", "ISSUED", "ENDS", "NOTE"}, rows)
	return nil
}

// siteLicenseRelease frees a license from the machine (system ID) it was
// granted to: the client's next request, from any machine, takes it over.
func siteLicenseRelease(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site license release", "--data DIR --license ID",
		"Frees a license from the machine it was granted to. A license stays on its machine: the\nlicense server refuses to reissue it to another system ID. After a release, the client's next\nrequest, from whatever machine, gets the same seat in a license naming its new system.\nThe old license certificate stays valid until it ends.")
	sf := addSiteFlags(fs)
	id := fs.Int64("license", 0, "the license ID to release (see 'licet site license list')")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *id <= 0 {
		return errs.E(errs.Usage, "--license: give the ID of the license to release ('licet site license list' shows them)")
	}
	srv, closeFn, err := sf.open(ctx, e)
	if err != nil {
		return err
	}
	defer closeFn()
	a, err := srv.ReleaseLicense(ctx, *id)
	if err != nil {
		return err
	}
	if *sf.json {
		return printJSON(e.stdout, a)
	}
	fmt.Fprintf(e.stdout, "released license %d of client %s (%s): the client's next request takes it over on its machine\n", a.LicenseID, a.ClientID, a.ProductID)
	return nil
}

// siteUsageReport makes, records and writes or uploads the site's next
// signed usage report.
func siteUsageReport(ctx context.Context, e *env, sf siteFlags, out string, upload bool, vendor string) error {
	srv, closeFn, err := sf.open(ctx, e)
	if err != nil {
		return err
	}
	defer closeFn()
	url := vendor
	if upload && url == "" {
		if url = srv.ID.Config.VendorURL; url == "" {
			return errs.E(errs.Usage, "--vendor is required: this site has no vendor URL configured")
		}
	}
	file, rep, err := srv.SignedUsageReport(ctx)
	if err != nil {
		return err
	}
	if out != "" || !upload {
		if err := writeOutput(e, out, file); err != nil {
			return err
		}
	}
	if !upload {
		if out != "" {
			fmt.Fprintf(e.stderr, "usage report %d of site %s: %d licenses of %d packs, written to %s\n", rep.Sequence, rep.SiteID, len(rep.Licenses), len(rep.Packs), out)
		}
		return nil
	}
	rec, err := (&api.Client{BaseURL: url}).UploadUsageReport(ctx, file)
	if err != nil {
		return errs.Wrap(errs.KindOf(err), err, "upload usage report %d (it is recorded at the site; send the file with -o if the vendor cannot be reached)", rep.Sequence)
	}
	acknowledge(ctx, e, srv, rep.Sequence)
	return printUsageRecord(e, *sf.json, rec)
}

func siteReport(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site report", "--data DIR [--expiring-within DAYS] | --signed [-o FILE] [--upload [--vendor URL]]",
		"Reports seats per pack and per product, granted licenses, and the clients whose\nlicenses end within the given number of days. A temporary license whose client (or\nanother client on its machine) holds a permanent license of the product now is superseded:\ncounted as such under TEMPORARY and left out of the licenses ending soon.\n\n"+
			"With --signed it makes the site's next usage report for the vendor instead: every pack with\n"+
			"its seats and temporary licenses, every granted license with its client and system, signed\n"+
			"by the site key and chained to the previous report by its hash. -o writes it to a file\n"+
			"(for 'licet vendor report import'); --upload sends it to the vendor, which answers with what\n"+
			"it found wrong (flags).")
	sf := addSiteFlags(fs)
	days := fs.Int("expiring-within", 30, "list licenses that end within this many days")
	signed := fs.Bool("signed", false, "make the signed usage report for the vendor")
	out := fs.String("o", "", "with --signed: write the report here (default: standard output, unless --upload)")
	upload := fs.Bool("upload", false, "with --signed: send the report to the vendor")
	vendor := fs.String("vendor", "", "with --upload: vendor API URL (default: the one given at init)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *signed {
		return siteUsageReport(ctx, e, sf, *out, *upload, *vendor)
	}
	if *out != "" || *upload {
		return errs.E(errs.Usage, "-o and --upload go with --signed (the signed usage report for the vendor)")
	}
	if *days < 0 {
		return errs.E(errs.Usage, "--expiring-within must be 0 or more days")
	}
	srv, closeFn, err := sf.open(ctx, e)
	if err != nil {
		return err
	}
	defer closeFn()
	rep, err := srv.Report(ctx, time.Duration(*days)*24*time.Hour)
	if err != nil {
		return err
	}
	if *sf.json {
		return printJSON(e.stdout, rep)
	}
	if c := rep.Certificate; c != nil {
		fmt.Fprintf(e.stdout, "Site certificate of %s: %s\n\n", c.SiteID, c.Message)
	}
	var rows [][]string
	for _, p := range rep.Packs {
		exp := "never"
		if p.Expires != nil {
			exp = p.Expires.Format(time.DateOnly)
		}
		rows = append(rows, []string{p.PackID, p.ProductID, packKind(p.Upgrade), p.Platform, fmt.Sprint(p.Quantity), fmt.Sprint(p.Assigned), fmt.Sprint(p.Free), exp})
	}
	table(e.stdout, []string{"PACK", "PRODUCT", "KIND", "PLATFORM", "SEATS", "ASSIGNED", "FREE", "EXPIRES"}, rows)
	fmt.Fprintln(e.stdout)
	rows = nil
	superseded := 0
	for _, p := range rep.Products {
		superseded += p.TemporarySuperseded
		temps := fmt.Sprint(p.Temporary)
		if p.TemporarySuperseded > 0 {
			temps += fmt.Sprintf(" (%d superseded)", p.TemporarySuperseded)
		}
		rows = append(rows, []string{p.ProductID, fmt.Sprint(p.Seats), fmt.Sprint(p.Assigned), fmt.Sprint(p.Free),
			fmt.Sprintf("%d/%d", p.UpgradesUsed, p.UpgradeSeats), fmt.Sprint(p.Permanent), temps, fmt.Sprint(p.Upgraded)})
	}
	table(e.stdout, []string{"PRODUCT", "SEATS", "ASSIGNED", "FREE", "UPGRADES USED", "PERMANENT", "TEMPORARY", "UPGRADED"}, rows)
	fmt.Fprintf(e.stdout, "\nLicenses ending within %d days: %d", *days, len(rep.Expiring))
	if superseded > 0 {
		fmt.Fprintf(e.stdout, " (not counting %d superseded temporary licenses: their clients hold permanent ones now)", superseded)
	}
	fmt.Fprintln(e.stdout)
	for _, x := range rep.Expiring {
		kind := "permanent"
		if x.Temporary {
			kind = "temporary, not renewed"
		}
		fmt.Fprintf(e.stdout, "  %d  %s  %s  %s  (%s)\n", x.LicenseID, x.ClientID, x.ProductID, x.Expires.Format(time.DateOnly), kind)
	}
	fmt.Fprintln(e.stdout)
	if len(rep.ChallengePools) == 0 {
		fmt.Fprintln(e.stdout, "Challenge pools: no 'licet site serve' process of this data directory is running")
		return nil
	}
	rows = nil
	for _, pp := range rep.ChallengePools {
		for _, p := range pp.Pools {
			state := "ok"
			if p.Error != "" {
				state = p.Error
			}
			rows = append(rows, []string{fmt.Sprint(pp.PID), p.SoftwareID, fmt.Sprintf("%d/%d", p.Pairs, p.Capacity), fmt.Sprint(p.Handed),
				fmt.Sprint(p.Empty), p.PerPair.Round(time.Microsecond).String(), state})
		}
	}
	fmt.Fprintln(e.stdout, "Challenge pools (precomputed challenges of the serving processes):")
	table(e.stdout, []string{"PID", "SOFTWARE ID", "READY", "HANDED OUT", "REFUSED EMPTY", "HASH PER PAIR", "STATE"}, rows)
	return nil
}

func siteRenew(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site renew", "--data DIR [--vendor URL] | --data DIR --out FILE | --data DIR --install FILE",
		"Renews the site certificate, which the vendor issues for a limited time (one year by default):\n"+
			"licenses end with the certificate, and a site whose certificate has expired issues none.\n"+
			"The site makes its next signed usage report and a renewal request signed by its key; the\n"+
			"vendor checks that the site is not revoked and that the report continues the site's chain,\n"+
			"is recent and is not flagged, then certifies the same site key anew. A certificate that\n"+
			"expired less than a year ago can still be renewed.\n\n"+
			"Online (default): sends both to the vendor and installs the new certificate.\n"+
			"By file: --out FILE writes them for the vendor ('licet vendor site renew FILE -o CERT');\n"+
			"--install CERT installs the certificate file that comes back.\n"+
			"A running 'licet site serve' on this data directory takes the new certificate without a\n"+
			"restart: within a minute (its --cert-check), or at once on SIGHUP.")
	sf := addSiteFlags(fs)
	vendor := fs.String("vendor", "", "vendor API URL (default: the one given at init)")
	out := fs.String("out", "", "write the renewal file here instead of sending it")
	install := fs.String("install", "", "install this certificate file from the vendor")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data"); err != nil {
		return err
	}
	if *out != "" && *install != "" {
		return errs.E(errs.Usage, "--out and --install are two steps of the renewal by file: give one of them")
	}
	now, err := e.clock()
	if err != nil {
		return err
	}
	if *install != "" {
		id, err := licenseserver.LoadIdentity(*sf.data)
		if err != nil {
			return err
		}
		file, err := readInput(*install)
		if err != nil {
			return err
		}
		if _, err := id.InstallCertificate(file, "", now()); err != nil {
			return err
		}
		return printRenewed(e, *sf.json, id)
	}
	srv, closeFn, err := sf.open(ctx, e)
	if err != nil {
		return err
	}
	defer closeFn()
	url := *vendor
	if *out == "" && url == "" {
		if url = srv.ID.Config.VendorURL; url == "" {
			return errs.E(errs.Usage, "--vendor is required: this site has no vendor URL configured (or renew by file with --out FILE)")
		}
	}
	file, rep, err := srv.RenewalFile(ctx)
	if err != nil {
		return err
	}
	if *out != "" {
		if err := writeOutput(e, *out, file); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "Wrote the renewal file of site %s (usage report %d) to %s: give it to the vendor ('licet vendor site renew'), then install the answer with 'licet site renew --install FILE'.\n",
			srv.ID.SiteID, rep.Sequence, *out)
		return nil
	}
	resp, err := (&api.Client{BaseURL: url}).RenewSite(ctx, file)
	if err != nil {
		return errs.Wrap(errs.KindOf(err), err, "renewal at %s failed (usage report %d is recorded at the site; renew by file with --out FILE if the vendor cannot be reached)", url, rep.Sequence)
	}
	if _, err := srv.ID.InstallCertificate([]byte(resp.Certificate), "", now()); err != nil {
		return err
	}
	acknowledge(ctx, e, srv, rep.Sequence)
	return printRenewed(e, *sf.json, srv.ID)
}

// acknowledge records that the vendor received the site's usage reports up
// to seq, so that renewals stop carrying them; a failure only costs a
// larger renewal file, so it is reported and not returned.
func acknowledge(ctx context.Context, e *env, srv *licenseserver.Server, seq int64) {
	if err := srv.AcknowledgeUsageReports(ctx, seq); err != nil {
		fmt.Fprintf(e.stderr, "licet: warning: could not record that the vendor received usage report %d: %v\n", seq, err)
	}
}

// printRenewed tells the new end of the site certificate.
func printRenewed(e *env, asJSON bool, id *licenseserver.Identity) error {
	info := api.Info(id)
	if asJSON {
		return printJSON(e.stdout, info)
	}
	fmt.Fprintf(e.stdout, "Renewed the certificate of site %s: valid until %s. A running 'licet site serve' takes it within a minute, or at once on SIGHUP.\n", id.SiteID, fmtTime(info.CertificateExpires))
	return nil
}

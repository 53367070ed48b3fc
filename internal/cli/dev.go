package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/licet/licet/api"
	"github.com/licet/licet/auth"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/fsutil"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/licensing/clientimage"
	"github.com/licet/licet/licensing/gateway"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/licensing/softid"
	"github.com/licet/licet/store"
	"github.com/licet/licet/verify"
)

// devTokens is what licet dev remembers between runs, in DIR/dev-tokens.json
// (mode 0600). Only the development mode keeps tokens: servers show them once.
type devTokens struct {
	Vendor  string `json:"vendor_admin_token"`
	Site    string `json:"site_admin_token"`
	Gateway string `json:"gateway_site_token"` // scope upgrade, for the demo gateway
}

const (
	devCustomer   = "demo-customer"
	devProduct    = "demo-app"
	devSoftwareID = "non-windows/7/1"
	devImageFile  = "demo-client.bin" // in the data directory: the demo client program
)

func devCommand() *command {
	return leaf("dev", "run vendor, site and gateway in one process with demo data, for trying licet", runDev)
}

func runDev(ctx context.Context, e *env, args []string) error {
	f := flagSet(e, "licet dev", "[--data DIR] [--vendor-listen ADDR] [--site-listen ADDR] [--gateway-listen ADDR]",
		"Runs a vendor, a site and a license gateway in one process on SQLite under DIR, each\n"+
			"on its own loopback port; the gateway guards a small demo application (it answers\n"+
			"with the verified license identity) and upgrades licenses with the site. The first\n"+
			"run creates a demo vendor, product and customer, enrolls the site online and\n"+
			"installs a pack of 10 seats; it also sells and registers a pay-as-you-go demo\n"+
			"device with an hour of credit and sets up a keypad device for offline tokens.\n"+
			"Later runs reuse the data. Ctrl-C stops it.")
	data := f.String("data", "licet-dev", "data directory")
	vListen := f.String("vendor-listen", DefaultVendorListen, "vendor API address")
	sListen := f.String("site-listen", DefaultSiteListen, "site API address")
	gListen := f.String("gateway-listen", DefaultGatewayListen, "gateway address")
	logJSON := f.Bool("log-json", false, "log JSON lines instead of text")
	if err := parse(f, args, 0); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sflags := serverFlags{logJSON: logJSON}
	log := sflags.logger(e)
	vdir, sdir := filepath.Join(*data, "vendor"), filepath.Join(*data, "site")
	tokPath := filepath.Join(*data, "dev-tokens.json")
	var toks devTokens
	if raw, err := os.ReadFile(tokPath); err == nil {
		if err := json.Unmarshal(raw, &toks); err != nil {
			return errs.Wrap(errs.Invalid, err, "%s is damaged; remove %s to start afresh", tokPath, *data)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return errs.Wrap(errs.Internal, err, "read %s", tokPath)
	}
	if toks.Vendor == "" {
		if err := os.MkdirAll(*data, 0o700); err != nil {
			return errs.Wrap(errs.Internal, err, "create %s", *data)
		}
		tok, err := clearinghouse.Init(ctx, vdir, "Demo Vendor", "", store.OpenVendor)
		if err != nil {
			return errs.Wrap(errs.KindOf(err), err, "set up the demo vendor (remove %s to start afresh)", *data)
		}
		toks.Vendor = tok
		if err := saveDevTokens(tokPath, toks); err != nil {
			return err
		}
	}
	svc, err := clearinghouse.Open(ctx, vdir, "", store.OpenVendor)
	if err != nil {
		return err
	}
	defer svc.Close()
	vh, err := vendorHandler(ctx, svc, vdir, log, api.DefaultLimits)
	if err == nil {
		err = addPaygRoutes(vh, svc, vdir)
	}
	if err != nil {
		return err
	}
	vln, vurl, err := listen(e, "vendor", *vListen)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return api.Serve(gctx, vln, vh, log) })

	if toks.Site == "" {
		tok, err := devSeed(gctx, vurl, toks.Vendor, sdir)
		if err != nil {
			vln.Close()
			g.Wait()
			return err
		}
		toks.Site = tok
		if err := saveDevTokens(tokPath, toks); err != nil {
			return err
		}
	}
	payg, err := devPayg(gctx, vurl, toks.Vendor, *data)
	if err != nil {
		vln.Close()
		g.Wait()
		return err
	}
	id, err := licenseserver.LoadIdentity(sdir)
	if err != nil {
		return err
	}
	sst, err := id.OpenStore(ctx, "", store.OpenSite)
	if err != nil {
		return err
	}
	defer sst.Close()
	sln, surl, err := listen(e, "site", *sListen)
	if err != nil {
		vln.Close()
		g.Wait()
		return err
	}
	srv := &licenseserver.Server{ID: id, Store: sst, Now: time.Now, TemporaryFor: licenseserver.DefaultTemporaryFor}
	g.Go(func() error { return api.Serve(gctx, sln, api.NewSiteHandler(srv, log, api.DefaultLimits), log) })

	// The gateway, in front of a demo application, upgrading with a token of
	// scope upgrade. A failure from here on stops the servers already running.
	stop := func(err error) error {
		cancel()
		g.Wait()
		return err
	}
	if toks.Gateway == "" {
		if toks.Gateway, err = auth.NewScopedToken(ctx, sst, "licet dev gateway", auth.ScopeUpgrade, time.Now()); err != nil {
			return stop(err)
		}
		if err := saveDevTokens(tokPath, toks); err != nil {
			return stop(err)
		}
	}
	v, err := verify.New(id.Root().Raw)
	if err != nil {
		return stop(err)
	}
	app, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return stop(errs.Wrap(errs.Internal, err, "demo application cannot listen on loopback"))
	}
	g.Go(func() error { return api.Serve(gctx, app, http.HandlerFunc(devApp), log) })
	siteURL, _ := url.Parse(surl)
	appURL, _ := url.Parse("http://" + app.Addr().String())
	gopts := gateway.Options{Product: devProduct, SiteURL: surl, Log: log, Upgrade: gateway.SiteUpgrader(siteURL, toks.Gateway, nil)}
	gln, gurl, err := listen(e, "gateway", *gListen)
	if err != nil {
		return stop(err)
	}
	g.Go(func() error {
		return api.Serve(gctx, gln, gatewayServer(log, api.DefaultLimits, v, appURL, siteURL, gopts), log)
	})

	fmt.Fprintf(e.stdout, `
licet dev is running (data in %[1]s; Ctrl-C stops it, running it again reuses the data).

  vendor API  %[2]s   admin token %[3]s
  site API    %[4]s   admin token %[5]s
  gateway     %[7]s   in front of a demo app, product %[8]s

Try next:
  go run ./cmd/licet site pack list --data %[6]s
  curl -s -H 'Authorization: Bearer %[5]s' %[4]s/v1/packs
  curl -si %[7]s/hello     # 401: the gateway wants a license of %[8]s
  go run ./cmd/licet vendor order list --server %[2]s --token %[3]s

Pay-as-you-go: demo device %[11]s (account %[13]s) was sold an hour of use; its agent is in %[12]s.
  go run ./cmd/licet agent payg status --data %[12]s
  go run ./cmd/licet agent run --data %[12]s --product %[8]s --tick 1s -- sleep 3   # metered use
  go run ./cmd/licet vendor sell --server %[2]s --token %[3]s --account %[13]s --plan %[14]s --device %[11]s
  go run ./cmd/licet agent payg sync --data %[12]s --hw-root %[15]s --server %[2]s
  go run ./cmd/licet vendor device show --server %[2]s --token %[3]s --device %[11]s

Offline keypad credit: demo keypad device %[16]s; its agent is in %[17]s. Issue a token, then type it in:
  go run ./cmd/licet vendor token issue --server %[2]s --token %[3]s --device %[16]s --days 7
  go run ./cmd/licet agent token enter --data %[17]s TOKEN   # TOKEN: the digits printed by the line above
  go run ./cmd/licet agent token status --data %[17]s

A client: get a license through the gateway (platform challenge over the demo program) and use it:
  go run ./cmd/licet agent init --data %[1]s/agent --server %[4]s
  go run ./cmd/licet agent request --data %[1]s/agent --server %[7]s --product %[8]s --software-id %[9]s --image %[1]s/%[10]s /hello
`, *data, vurl, toks.Vendor, surl, toks.Site, sdir, gurl, devProduct, devSoftwareID, devImageFile,
		payg.DeviceID, payg.Dir, devPaygAccount, devPaygTopUp, payg.HWRoot, devKeypadSerial, payg.Keypad)
	return g.Wait()
}

// devApp is the demo application behind the dev gateway: it answers with
// the identity the gateway verified.
func devApp(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{
		"hello":      "from the demo application behind the licet gateway",
		"client_id":  r.Header.Get(gateway.HeaderClientID),
		"license_id": r.Header.Get(gateway.HeaderLicenseID),
		"product":    r.Header.Get(gateway.HeaderProduct),
		"version":    r.Header.Get(gateway.HeaderVersion),
		"features":   r.Header.Get(gateway.HeaderFeatures),
		"expires":    r.Header.Get(gateway.HeaderExpires),
	})
}

func saveDevTokens(path string, t devTokens) error {
	raw, _ := json.MarshalIndent(t, "", "  ")
	if err := fsutil.WriteFileAtomic(path, raw, 0o600); err != nil {
		return errs.Wrap(errs.Internal, err, "save dev tokens")
	}
	return nil
}

// devSeed creates the demo product and customer through the vendor API,
// enrolls the site online and installs a pack, as a real user would.
func devSeed(ctx context.Context, vendorURL, vendorToken, siteDir string) (string, error) {
	vc := &api.Client{BaseURL: vendorURL, Token: vendorToken}
	if _, err := vc.AddProduct(ctx, &clearinghouse.Product{
		ID: devProduct, Name: "Demo App", Version: "1.0", Features: []string{"core", "reports"},
		Descriptions: map[string]string{"en": "Demo App, one seat", "de": "Demo-App, ein Arbeitsplatz"},
		Data:         map[string]string{"edition": "demo"},
	}); err != nil && !errs.Is(err, errs.Conflict) {
		return "", err
	}
	if _, err := vc.AddCustomer(ctx, &clearinghouse.Customer{ID: devCustomer, Name: "Demo Customer"}); err != nil && !errs.Is(err, errs.Conflict) {
		return "", err
	}
	enr, err := vc.CreateEnrollment(ctx, devCustomer)
	if err != nil {
		return "", err
	}
	os.RemoveAll(siteDir) // a half-made site from an interrupted first run
	id, token, err := licenseserver.Init(ctx, siteDir, licenseserver.InitOptions{
		Name: "demo-site", VendorURL: vendorURL,
		Enroll: func(ctx context.Context, req []byte) ([]byte, error) { return vc.Enroll(ctx, enr.Code, req) },
	}, store.OpenSite)
	if err != nil {
		return "", err
	}
	order, err := vc.AddOrder(ctx, &clearinghouse.Order{CustomerID: devCustomer, ProductID: devProduct, Platform: "non-windows", Quantity: 10})
	if err != nil {
		return "", err
	}
	st, err := id.OpenStore(ctx, "", store.OpenSite)
	if err != nil {
		return "", err
	}
	defer st.Close()
	srv := &licenseserver.Server{ID: id, Store: st, Now: time.Now}
	preq, err := srv.PurchaseRequest(order.ID)
	if err != nil {
		return "", err
	}
	resp, err := vc.Purchase(ctx, preq)
	if err != nil {
		return "", err
	}
	if _, err := srv.InstallPack(ctx, []byte(resp.Pack)); err != nil {
		return "", err
	}
	if err := devImage(ctx, vc, srv, filepath.Join(filepath.Dir(siteDir), devImageFile)); err != nil {
		return "", err
	}
	return token, nil
}

// devImage writes a demo client program (64 KiB of random bytes) to path,
// has the vendor sign it and registers it with the site, so that an agent
// can answer the site's platform challenge with it, as a real client
// answers over its own executable.
func devImage(ctx context.Context, vc *api.Client, srv *licenseserver.Server, path string) error {
	img := make([]byte, 64<<10)
	rand.Read(img)
	if err := fsutil.WriteFileAtomic(path, img, 0o644); err != nil {
		return errs.Wrap(errs.Internal, err, "write the demo client program")
	}
	sid, err := softid.Parse(devSoftwareID)
	if err != nil {
		return err
	}
	sum, size, err := clientimage.Hash(bytes.NewReader(img))
	if err != nil {
		return err
	}
	sig, err := vc.SignImage(ctx, &clientimage.Manifest{SoftwareID: uint32(sid), Name: devImageFile, SHA256: sum, Size: size})
	if err != nil {
		return err
	}
	_, err = srv.AddImage(ctx, sig, bytes.NewReader(img))
	return err
}

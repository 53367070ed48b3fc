package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/licet/licet/api"
	"github.com/licet/licet/clearinghouse"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/fsutil"
	"github.com/licet/licet/licenseserver"
	"github.com/licet/licet/store"
)

// devTokens is what licet dev remembers between runs, in DIR/dev-tokens.json
// (mode 0600). Only the development mode keeps tokens: servers show them once.
type devTokens struct {
	Vendor string `json:"vendor_admin_token"`
	Site   string `json:"site_admin_token"`
}

const (
	devCustomer = "demo-customer"
	devProduct  = "demo-app"
)

func devCommand() *command {
	return leaf("dev", "run vendor and site in one process with demo data, for trying licet", runDev)
}

func runDev(ctx context.Context, e *env, args []string) error {
	f := flagSet(e, "licet dev", "[--data DIR] [--vendor-listen ADDR] [--site-listen ADDR]",
		"Runs a vendor and a site in one process on SQLite under DIR, each on its own loopback\nport. The first run creates a demo vendor, product and customer, enrolls the site\nonline and installs a pack of 10 seats; later runs reuse the data. Ctrl-C stops it.")
	data := f.String("data", "licet-dev", "data directory")
	vListen := f.String("vendor-listen", DefaultVendorListen, "vendor API address")
	sListen := f.String("site-listen", DefaultSiteListen, "site API address")
	logJSON := f.Bool("log-json", false, "log JSON lines instead of text")
	if err := parse(f, args, 0); err != nil {
		return err
	}
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
	vln, vurl, err := listen(e, "vendor", *vListen)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return api.Serve(gctx, vln, api.NewVendorHandler(svc, log, api.DefaultLimits), log) })

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
	sh, err := api.NewSiteHandler(srv, log, api.DefaultLimits)
	if err != nil {
		return err
	}
	g.Go(func() error { return api.Serve(gctx, sln, sh, log) })

	fmt.Fprintf(e.stdout, `
licet dev is running (data in %[1]s; Ctrl-C stops it, running it again reuses the data).

  vendor API  %[2]s   admin token %[3]s
  site API    %[4]s   admin token %[5]s

Try next:
  go run ./cmd/licet site pack list --data %[6]s
  curl -s -H 'Authorization: Bearer %[5]s' %[4]s/v1/packs
  go run ./cmd/licet vendor order list --server %[2]s --token %[3]s
`, *data, vurl, toks.Vendor, surl, toks.Site, sdir)
	return g.Wait()
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
	return token, nil
}

package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/licet/licet/api"
	"github.com/licet/licet/distribution/mirror"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/licenseserver"
)

// Software distribution, the site's commands (docs/distribution.md).

func siteGroupCommand() *command {
	return &command{name: "group", summary: "device groups: each gets its own bundle", sub: []*command{
		leaf("add", "add a device group", siteGroupAdd),
		leaf("list", "list device groups", siteGroupList),
	}}
}

func siteDeviceCommand() *command {
	return &command{name: "device", summary: "device credentials for updates, each in one group", sub: []*command{
		leaf("add", "make a device's update token in a group (printed once)", siteDeviceAdd),
		leaf("list", "list devices", siteDeviceList),
		leaf("remove", "revoke a device's update token", siteDeviceRemove),
	}}
}

func siteUpdateCommand() *command {
	return &command{name: "update", summary: "software updates from the vendor", sub: []*command{
		leaf("sync", "pull signed metadata and artifacts from the vendor now, and send device statuses", siteUpdateSync),
		leaf("import", "apply an export file from the vendor (air-gapped sites)", siteUpdateImport),
		leaf("status", "per group: bundle, devices and their statuses", siteUpdateStatus),
		leaf("export-reports", "write the devices' queued statuses to a signed file for the vendor (air-gapped sites)", siteUpdateExportReports),
	}}
}

// openMirror opens the site data directory's distribution mirror.
func openMirror(ctx context.Context, e *env, sf siteFlags) (*mirror.Service, func(), error) {
	srv, closeFn, err := sf.open(ctx, e)
	if err != nil {
		return nil, nil, err
	}
	m, err := api.DistMirror(srv)
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	return m, closeFn, nil
}

func siteGroupAdd(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site group add", "--data DIR --name G", "Adds a device group. The vendor assigns each group its bundle ('licet vendor bundle add --group G').")
	sf := addSiteFlags(fs)
	name := fs.String("name", "", "group name (lower-case letters, digits, '.', '_', '-')")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data", "name"); err != nil {
		return err
	}
	m, closeFn, err := openMirror(ctx, e, sf)
	if err != nil {
		return err
	}
	defer closeFn()
	g, err := m.AddGroup(ctx, *name)
	if err != nil {
		return err
	}
	if *sf.json {
		return printJSON(e.stdout, g)
	}
	fmt.Fprintf(e.stdout, "Added device group %s.\n", g.Name)
	return nil
}

func siteGroupList(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site group list", "--data DIR [--json]", "Lists the device groups.")
	sf := addSiteFlags(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	m, closeFn, err := openMirror(ctx, e, sf)
	if err != nil {
		return err
	}
	defer closeFn()
	gs, err := m.Store.DistGroups(ctx)
	if err != nil {
		return err
	}
	return printList(e, *sf.json, gs, []string{"group", "created"}, func(g *mirror.Group) []string {
		return []string{g.Name, g.Created.Format(time.RFC3339)}
	})
}

func siteDeviceAdd(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site device add", "--data DIR --name D --group G [--json]",
		"Makes a device's update credential in group G and prints its token once (only its hash is kept).\n"+
			"The device may fetch group G's bundle only: 'licet agent update init --token TOKEN …'.")
	sf := addSiteFlags(fs)
	name := fs.String("name", "", "device name")
	group := fs.String("group", "", "the device's group")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data", "name", "group"); err != nil {
		return err
	}
	m, closeFn, err := openMirror(ctx, e, sf)
	if err != nil {
		return err
	}
	defer closeFn()
	d, token, err := m.AddDevice(ctx, *name, *group)
	if err != nil {
		return err
	}
	if *sf.json {
		return printJSON(e.stdout, map[string]string{"id": d.ID, "name": d.Name, "group": d.Group, "token": token})
	}
	fmt.Fprintf(e.stdout, "Device %s in group %s. Its update token (shown once):\n  %s\n", d.Name, d.Group, token)
	return nil
}

func siteDeviceList(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site device list", "--data DIR [--json]", "Lists the devices and their groups.")
	sf := addSiteFlags(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	m, closeFn, err := openMirror(ctx, e, sf)
	if err != nil {
		return err
	}
	defer closeFn()
	ds, err := m.Store.DistDevices(ctx)
	if err != nil {
		return err
	}
	return printList(e, *sf.json, ds, []string{"device", "group", "id", "created"}, func(d *mirror.Device) []string {
		return []string{d.Name, d.Group, d.ID, d.Created.Format(time.RFC3339)}
	})
}

func printSync(e *env, json bool, res *mirror.SyncResult, err error) error {
	if res != nil {
		if json {
			if perr := printJSON(e.stdout, res); perr != nil {
				return perr
			}
		} else {
			fmt.Fprint(e.stdout, res.String())
		}
	}
	return err
}

func siteUpdateSync(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site update sync", "--data DIR [--json]",
		"Pulls every group's signed metadata from the vendor, checks it as the devices will (a rollback,\n"+
			"expired or another customer's metadata is refused), fetches missing artifacts with Range resume,\n"+
			"and forwards the devices' statuses. 'licet site serve' does the same every\n"+
			"$LICET_SITE_SYNC_INTERVAL (default 5m; 0 turns it off).")
	sf := addSiteFlags(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	m, closeFn, err := openMirror(ctx, e, sf)
	if err != nil {
		return err
	}
	defer closeFn()
	res, err := m.Sync(ctx)
	return printSync(e, *sf.json, res, err)
}

func siteUpdateImport(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site update import", "--data DIR [--json] FILE",
		"Applies an export file made by 'licet vendor release export': the metadata is checked as in an\n"+
			"online sync, then the artifacts are streamed into the store through their signed hashes.")
	sf := addSiteFlags(fs)
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return errs.Wrap(errs.Usage, err, "open the export file")
	}
	defer f.Close()
	m, closeFn, err := openMirror(ctx, e, sf)
	if err != nil {
		return err
	}
	defer closeFn()
	res, err := m.Import(ctx, f)
	return printSync(e, *sf.json, res, err)
}

func siteUpdateStatus(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site update status", "--data DIR [--json]", "Per device group: its bundle, its devices and their latest statuses.")
	sf := addSiteFlags(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	m, closeFn, err := openMirror(ctx, e, sf)
	if err != nil {
		return err
	}
	defer closeFn()
	st, err := m.GroupStatus(ctx)
	if err != nil {
		return err
	}
	if *sf.json {
		return printJSON(e.stdout, st)
	}
	var rows [][]string
	for _, g := range st {
		var sts []string
		for k, n := range g.Statuses {
			sts = append(sts, fmt.Sprintf("%s=%d", k, n))
		}
		sort.Strings(sts)
		exp := "-"
		if g.Expires != nil {
			exp = g.Expires.Format(time.RFC3339)
		}
		rows = append(rows, []string{g.Group, fmt.Sprint(g.Devices), distDash(strings.Join(g.Targets, " ")), distDash(strings.Join(sts, " ")), exp})
	}
	table(e.stdout, []string{"group", "devices", "bundle", "statuses", "metadata_expires"}, rows)
	return nil
}

// startDistSync runs the site's scheduled pull from the vendor until ctx
// ends. Sites behind NAT need no inbound connection: the site asks.
func startDistSync(ctx context.Context, e *env, srv *licenseserver.Server, log *slog.Logger) {
	every := 5 * time.Minute
	if v := e.getenv("LICET_SITE_SYNC_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			log.Warn("LICET_SITE_SYNC_INTERVAL is not a duration; scheduled sync off", "value", v)
			return
		}
		every = d
	}
	if every <= 0 || !srv.ID.Certified() || srv.ID.Config.VendorURL == "" {
		return
	}
	m, err := api.DistMirror(srv)
	if err != nil {
		log.Warn("scheduled update sync off", "err", err)
		return
	}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			res, err := m.Sync(ctx)
			if err != nil && ctx.Err() == nil {
				log.Warn("update sync failed; retrying on schedule", "err", err)
			} else if res != nil {
				log.Info("update sync", "groups", len(res.Groups), "blobs", res.Blobs, "reports", res.Reports)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

func siteUpdateExportReports(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site update export-reports", "--data DIR -o FILE",
		"Writes the devices' queued statuses (up to 2000; run again for more) to FILE, signed with the\n"+
			"site key, and marks them sent. The vendor records them with 'licet vendor release import-reports\n"+
			"FILE', which changes its installed-version record as an online sync would.")
	sf := addSiteFlags(fs)
	out := fs.String("o", "", "the file to write")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data", "o"); err != nil {
		return err
	}
	m, closeFn, err := openMirror(ctx, e, sf)
	if err != nil {
		return err
	}
	defer closeFn()
	n, err := m.ExportReports(ctx, func(file []byte) error { return writeOutput(e, *out, file) })
	if err != nil {
		return err
	}
	if n == 0 {
		fmt.Fprintln(e.stdout, "No device statuses are waiting to be sent.")
		return nil
	}
	fmt.Fprintf(e.stdout, "Wrote %d device statuses to %s.\n", n, *out)
	return nil
}

func siteDeviceRemove(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site device remove", "--data DIR --name D",
		"Revokes a device's update credential: within a second, the running site refuses its token.")
	sf := addSiteFlags(fs)
	name := fs.String("name", "", "device name")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data", "name"); err != nil {
		return err
	}
	m, closeFn, err := openMirror(ctx, e, sf)
	if err != nil {
		return err
	}
	defer closeFn()
	if err := m.Store.RemoveDistDevice(ctx, *name); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Removed device %s; its token no longer works.\n", *name)
	return nil
}

package cli

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"runtime"

	"github.com/licet/licet/distribution/blobstore"
	"github.com/licet/licet/distribution/updater"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/pki"
)

// Software distribution, the agent's commands (docs/distribution.md).

func agentUpdateCommand() *command {
	return &command{name: "update", summary: "software updates from the site: check, download, verify, install", sub: []*command{
		leaf("init", "set up the updater with the site, a device token and the vendor root", agentUpdateInit),
		leaf("check", "refresh the signed metadata and say whether an update is available", agentUpdateCheck),
		leaf("apply", "download, verify and install the group's bundle, reporting each status", agentUpdateApply),
	}}
}

func readRootCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, errs.Wrap(errs.Usage, err, "--vendor-root")
	}
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		der = blk.Bytes
	}
	return pki.ParseRoot(der)
}

func agentUpdateInit(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent update init", "--data DIR --server SITE --token TOKEN --vendor-root ROOT --app A [--platform P]",
		"Sets up the updater: the site tells which device and group the token belongs to, and the\n"+
			"first root metadata is trusted only if the vendor's distribution key, certified by the\n"+
			"vendor root certificate, signed it (or, at a site synced before that key, the root). From then on\n"+
			"the device accepts only metadata that chains to it, for its own group.")
	data := fs.String("data", "", "agent data directory")
	var cfg updater.Config
	fs.StringVar(&cfg.Server, "server", "", "site URL")
	fs.StringVar(&cfg.Token, "token", "", "device token from 'licet site device add' (default $LICET_DEVICE_TOKEN)")
	fs.StringVar(&cfg.App, "app", "", "the application this device runs")
	fs.StringVar(&cfg.Platform, "platform", runtime.GOOS+"-"+runtime.GOARCH, "the artifact platform to install")
	rootPath := fs.String("vendor-root", "", "the vendor root certificate (PEM or DER)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if cfg.Token == "" {
		cfg.Token = e.getenv("LICET_DEVICE_TOKEN")
	}
	if err := required(fs, "data", "server", "vendor-root", "app"); err != nil {
		return err
	}
	root, err := readRootCert(*rootPath)
	if err != nil {
		return err
	}
	u, err := updater.Init(ctx, *data, cfg, root)
	if err != nil {
		return err
	}
	if *asJSON {
		c := u.Config
		c.Token = ""
		return printJSON(e.stdout, c)
	}
	fmt.Fprintf(e.stdout, "Updater set up: device %s in group %s of %s, application %s for %s.\n", u.Config.Device, u.Config.Group, u.Config.Customer, u.Config.App, u.Config.Platform)
	return nil
}

func agentUpdateCheck(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent update check", "--data DIR [--json]",
		"Refreshes the signed metadata from the site (refusing rollback, expired, mixed or another\ngroup's metadata) and says whether the bundle carries another version. Exit 0 either way.")
	data := fs.String("data", "", "agent data directory")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data"); err != nil {
		return err
	}
	u, err := updater.Open(*data)
	if err != nil {
		return err
	}
	p, err := u.Check(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, p)
	}
	fmt.Fprintln(e.stdout, p.String())
	return nil
}

func agentUpdateApply(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent update apply", "--data DIR [--hook CMD] [--health CMD] [--json]",
		"Checks, then downloads the artifact (resuming an interrupted download with Range), verifies its\n"+
			"length and SHA-256 against the signed metadata, installs it into DIR/apps/APP/VERSION, runs\n"+
			"--hook there ($LICET_INSTALL_DIR, $LICET_ARTIFACT, $LICET_VERSION), switches DIR/apps/APP/current\n"+
			"atomically, runs --health, and rolls back to the previous version if the hook or health check\n"+
			"fails. Each status (downloading, installing, installed, failed with the end of its log) goes\n"+
			"to the site, and from there to the vendor.")
	data := fs.String("data", "", "agent data directory")
	var opt updater.Options
	fs.StringVar(&opt.Hook, "hook", "", "shell command that prepares the new version before the switch")
	fs.StringVar(&opt.Health, "health", "", "shell command that checks the new version after the switch")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data"); err != nil {
		return err
	}
	u, err := updater.Open(*data)
	if err != nil {
		return err
	}
	if f, ok := e.stderr.(*os.File); ok && !*asJSON && isTerminal(f) {
		u.Progress = func(name string) blobstore.Progress { return blobstore.Bar(e.stderr, name) }
	}
	res, err := u.Apply(ctx, opt)
	if res != nil {
		if *asJSON {
			if perr := printJSON(e.stdout, res); perr != nil {
				return perr
			}
		} else {
			switch res.Status {
			case "installed":
				fmt.Fprintf(e.stdout, "Installed %s %s in %s.\n", res.Plan.App, res.Plan.Installed, res.Dir)
			case "up-to-date", "waiting":
				fmt.Fprintln(e.stdout, res.Plan.String())
			default:
				fmt.Fprintf(e.stdout, "Install failed; %s stays at %s.\n%s", res.Plan.App, distDash(res.Plan.Installed), res.Log)
			}
		}
	}
	return err
}

// isTerminal reports whether f is a character device (a terminal), where a
// progress bar may redraw its line.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

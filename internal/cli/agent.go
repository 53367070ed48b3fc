package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/licet/licet/agent"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/softid"
	"github.com/licet/licet/verify"
)

func agentCommand() *command {
	return &command{name: "agent", summary: "the client: identity, license acquisition and cache", sub: []*command{
		leaf("init", "create the client's keys and record its hardware identity", agentInit),
		{name: "license", summary: "client licenses", sub: []*command{
			leaf("acquire", "obtain a license from the site (challenge, grant) and cache it", agentAcquire),
			leaf("show", "verify and print a cached license", agentShow),
		}},
	}}
}

func agentInit(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent init", "--data DIR [--platform P] [--server URL] [--root FILE]",
		"Creates the client's signing and encryption keys (mode 0600), its client ID (from its\npublic key) and its system ID (from the hardware: machine-id, DMI UUID, MAC addresses,\ndisk serials; one changed component does not make a new machine).")
	data := fs.String("data", "", "agent data directory to create")
	platform := fs.String("platform", "", "client platform: windows, non-windows, legacy or direct-connect (default: this OS)")
	server := fs.String("server", "", "site or gateway URL to get licenses from")
	root := fs.String("root", "", "vendor root certificate to trust (default: the server's, pinned on first use)")
	hwRoot := fs.String("hw-root", "", "read hardware from this directory instead of / (containers, tests)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data"); err != nil {
		return err
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

func printLicense(e *env, asJSON bool, lic *verify.License, extra map[string]any) error {
	if asJSON {
		out := map[string]any{
			"license_id": lic.LicenseID, "client_id": lic.ClientID, "system_id": lic.SystemID, "pack_id": lic.PackID,
			"product_id": lic.ProductID, "product_version": lic.ProductVersion, "platform": lic.Platform,
			"features": lic.Features, "flags": lic.Flags, "temporary": lic.Temporary(), "site_id": lic.SiteID,
			"not_before": lic.NotBefore, "not_after": lic.NotAfter,
		}
		for k, v := range extra {
			out[k] = v
		}
		return printJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "License %d for %s %s (%s), client %s\n  features  %s\n  valid     %s to %s\n  issued by site %s\n",
		lic.LicenseID, lic.ProductID, lic.ProductVersion, lic.Platform, lic.ClientID,
		strings.Join(lic.Features, ", "), lic.NotBefore.Format(time.DateOnly), lic.NotAfter.Format(time.DateOnly), lic.SiteID)
	return nil
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
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data", "product", "software-id"); err != nil {
		return err
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
	lic, reissued, err := id.Acquire(ctx, agent.AcquireOptions{Server: url, ProductID: *product, SoftwareID: software, Image: *image})
	if err != nil {
		return err
	}
	if !*asJSON && reissued {
		fmt.Fprintln(e.stdout, "The server reissued this client's existing license.")
	}
	return printLicense(e, *asJSON, lic, map[string]any{"reissued": reissued})
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
	lic, err := id.License(*product, now())
	if err != nil {
		return err
	}
	return printLicense(e, *asJSON, lic, nil)
}

func licenseCommand() *command {
	return &command{name: "license", summary: "check licenses offline", sub: []*command{
		leaf("verify", "verify a license file against the vendor root", licenseVerify),
	}}
}

func licenseVerify(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet license verify", "--root ROOT [--product P] LICENSE",
		"Checks a license (PEM: license certificate, then site certificate) offline with the\nvendor root alone: chain, signatures, dates, product. Exit 0 valid, 3 invalid.")
	root := fs.String("root", "", "vendor root certificate (PEM or DER)")
	product := fs.String("product", "", "require this product")
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
	lic, err := v.Verify(file, verify.Options{Now: now(), Product: *product})
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "license is not valid")
	}
	return printLicense(e, *asJSON, lic, nil)
}

package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/loadgen"
	"github.com/licet/licet/softid"
)

func benchCommand() *command {
	return &command{name: "bench", summary: "load generator: drive a running site and measure it", sub: []*command{
		leaf("grants", "grant storm: many distinct clients, each challenged and granted once", benchGrants),
		leaf("verify", "license verifications over HTTP against a site", benchVerify),
	}}
}

func benchGrants(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet bench grants", "--server URL --product P --software-id ID --image PATH [--clients N] [--concurrency C]",
		"Simulates N distinct clients (own keys) against a running site: challenge, answer over\nthe image, signed grant. Prints throughput and latency percentiles of whole grants.")
	var servers listFlag
	fs.Var(&servers, "server", "site URL (repeatable: requests go round robin)")
	product := fs.String("product", "", "product ID")
	sid := fs.String("software-id", "", "software ID registered at the site")
	image := fs.String("image", "", "the client image registered for that software ID")
	clients := fs.Int("clients", 1000, "number of distinct clients")
	conc := fs.Int("concurrency", 64, "concurrent clients")
	root := fs.String("root", "", "vendor root: if set, every license is decrypted and verified")
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
	opts := loadgen.GrantOptions{Servers: servers, ProductID: *product, SoftwareID: software, Image: *image, Clients: *clients, Concurrency: *conc}
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

package cli

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/licet/licet/api"
	"github.com/licet/licet/compliance/fleet"
	"github.com/licet/licet/compliance/policy"
	"github.com/licet/licet/errs"
)

// complianceService is the vendor's compliance over its store, signing with
// the provisioning authority of p.
func addComplianceRoutes(h *api.Server, p *api.Payg) error {
	st, ok := p.Provisioning.Store.(fleet.Store)
	if !ok {
		return errs.E(errs.Internal, "this store does not keep compliance")
	}
	f := &fleet.Service{Store: st, Authority: p.Provisioning.Authority, Now: p.Provisioning.Now,
		DeviceExists: func(ctx context.Context, id string) error {
			_, err := p.Provisioning.Store.PaygDevice(ctx, id)
			return err
		}}
	p.Provisioning.Compliance = f
	api.AddComplianceRoutes(h, f)
	return nil
}

func vendorPolicyCommand() *command {
	return &command{name: "policy", summary: "compliance policy bundles for the devices' supervisors", sub: []*command{
		leaf("publish", "validate, sign and publish a policy bundle (YAML or JSON); devices get it at their next sync", vendorPolicyPublish),
		leaf("show", "print the newest published bundle (armored) for 'licet agent policy import'", vendorPolicyShow),
	}}
}

func vendorPolicyPublish(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor policy publish", "FILE [-o BUNDLE] [--json]",
		"Reads a policy bundle from FILE (YAML or JSON; see examples/compliance/policy.yaml),\n"+
			"validates it (errors name the field), and has the vendor server sign it with the\n"+
			"provisioning key and keep it. Its version must be above the last published one.\n"+
			"Devices receive it with their next sync; -o also writes the signed bundle to a file\n"+
			"for 'licet agent policy import'.")
	a := vendorAdmin(e, fs)
	out := fs.String("o", "", "also write the signed bundle here")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	text, err := readInput(fs.Arg(0))
	if err != nil {
		return err
	}
	doc, err := policy.Parse(text)
	if err != nil {
		return errs.Wrap(errs.KindOf(err), err, "%s", fs.Arg(0))
	}
	var b fleet.Bundle
	if err := a.client(e).Post(ctx, "/v1/compliance/policies", doc, &b); err != nil {
		return err
	}
	if *out != "" {
		if err := writeOutput(e, *out, []byte(b.File)); err != nil {
			return err
		}
	}
	if *a.json {
		return printJSON(e.stdout, b)
	}
	fmt.Fprintf(e.stdout, "Published policy bundle version %d (%d policies); devices get it at their next sync.\n", b.Version, len(doc.Policies))
	if *out != "" {
		fmt.Fprintf(e.stdout, "Wrote the signed bundle to %s.\n", *out)
	}
	return nil
}

func vendorPolicyShow(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor policy show", "[-o FILE] [--json]", "Prints the newest published policy bundle, armored.")
	a := vendorAdmin(e, fs)
	out := fs.String("o", "", "write it here (default: standard output)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	var b fleet.Bundle
	if err := a.client(e).Get(ctx, "/v1/compliance/policies/latest", &b); err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, b)
	}
	return writeOutput(e, *out, []byte(b.File))
}

func vendorDeviceReset(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor device reset", "--device D [--reason TEXT] [-o FILE] [--json]",
		"Makes a signed reset packet for device D: it lifts the device's non-operational\n"+
			"compliance mode, once, on that device only. The device receives it at its next sync;\n"+
			"-o also writes it to a file for 'licet agent policy import'.")
	a := vendorAdmin(e, fs)
	id := fs.String("device", "", "device ID")
	reason := fs.String("reason", "", "why (kept with the reset, e.g. a support ticket)")
	out := fs.String("o", "", "also write the reset packet here")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "device"); err != nil {
		return err
	}
	var rs fleet.StoredReset
	if err := a.client(e).Post(ctx, "/v1/compliance/devices/"+url.PathEscape(*id)+"/reset", api.ResetRequest{Reason: *reason}, &rs); err != nil {
		return err
	}
	if *out != "" {
		if err := writeOutput(e, *out, []byte(rs.File)); err != nil {
			return err
		}
	}
	if *a.json {
		return printJSON(e.stdout, rs)
	}
	fmt.Fprintf(e.stdout, "Reset %d for device %s made; it is delivered at the device's next sync.\n", rs.Sequence, rs.DeviceID)
	return nil
}

// vendorComplianceList lists devices by their last reported score
// ('licet vendor device list --compliance below:N').
func vendorComplianceList(ctx context.Context, e *env, a adminFlags, filter string) error {
	n, ok := strings.CutPrefix(filter, "below:")
	below, err := strconv.Atoi(n)
	if !ok || err != nil || below < 0 || below > 101 {
		return errs.E(errs.Usage, "licet vendor device list: --compliance %q: write below:N with N a score from 0 to 101, e.g. below:70", filter)
	}
	var out []*fleet.DeviceCompliance
	if err := a.client(e).Get(ctx, "/v1/compliance/devices?below="+strconv.Itoa(below), &out); err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, out)
	}
	var rows [][]string
	for _, d := range out {
		failing := strings.Join(d.Failing, ",")
		if failing == "" {
			failing = "-"
		}
		rows = append(rows, []string{d.DeviceID, strconv.Itoa(d.Score), d.Mode, strconv.FormatUint(d.BundleVersion, 10), failing, d.At.Format(time.RFC3339)})
	}
	table(e.stdout, []string{"device", "score", "mode", "bundle", "failing", "reported"}, rows)
	return nil
}

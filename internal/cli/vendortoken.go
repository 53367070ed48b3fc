package cli

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strconv"

	"github.com/licet/licet/api"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/payg/keypadvendor"
)

// vendorTokenCommand is `licet vendor token`: keypad devices that take
// offline OpenPAYGO tokens, and the tokens sold to them. The issue command's
// flags are fixed by issue 8; change them only compatibly.
func vendorTokenCommand() *command {
	return &command{name: "token", summary: "keypad devices and their offline OpenPAYGO credit tokens", sub: []*command{
		{name: "device", summary: "register, list and export keypad devices", sub: []*command{
			leaf("add", "register a keypad device", vendorTokenDeviceAdd),
			leaf("list", "list keypad devices (without keys)", vendorTokenDeviceList),
			leaf("export", "print a device's key and starting code, for flashing it", vendorTokenDeviceExport),
		}},
		leaf("issue", "issue a credit token to a keypad device", vendorTokenIssue),
	}}
}

// vendorHandler is the vendor API over svc, with the software distribution
// routes (signed with the distribution key of the data directory dir, see
// api.DistCatalog) and the keypad device routes when the store keeps keypad
// devices; their keys are sealed under the keypad sealing key of dir (made on
// first use). Distribution that cannot start is logged, and the rest serves.
func vendorHandler(ctx context.Context, svc *clearinghouse.Service, dir string, log *slog.Logger, limits api.Limits) (*api.Server, error) {
	h := api.NewVendorHandler(svc, log, limits)
	if cat, err := api.DistCatalog(svc, dir); err != nil {
		log.Error("software distribution is off", "err", err)
	} else {
		if err := cat.CheckKeys(ctx); err != nil {
			log.Error("software distribution cannot sign", "err", err)
		}
		api.AddDistributionVendorRoutes(h, svc, cat)
	}
	st, ok := svc.Store.(keypadvendor.Store)
	if !ok {
		return h, nil
	}
	sealer, err := keypadvendor.LoadSealer(dir)
	if err != nil {
		return nil, err
	}
	api.AddKeypadRoutes(h, keypadvendor.New(st, sealer))
	return h, nil
}

func vendorTokenDeviceAdd(ctx context.Context, e *env, args []string) error {
	const cmd = "licet vendor token device add"
	fs := flagSet(e, cmd, "--serial S [--key HEX] [--starting-code N] [--divider N] [--extended] [--restricted] [--json]",
		"Registers a keypad device that takes OpenPAYGO tokens. Without --key the vendor makes\n"+
			"a random key; without --starting-code it derives the code from the key, as the\n"+
			"reference implementation does. Nothing secret is printed: to flash the device, run\n"+
			"'licet vendor token device export --device S'. The key is stored encrypted under the\n"+
			"vendor data directory's keypad.key.")
	a := vendorAdmin(e, fs)
	var reg keypadvendor.Registration
	fs.StringVar(&reg.Serial, "serial", "", "the device's serial number")
	fs.StringVar(&reg.Key, "key", "", "the device's secret key, 32 hexadecimal digits (default: a random key)")
	code := fs.Int64("starting-code", -1, "the device's starting code, up to 9 digits (default: derived from the key)")
	fs.IntVar(&reg.Divider, "divider", 1, "time divider: value units per day (e.g. 24 for hours)")
	fs.BoolVar(&reg.Extended, "extended", false, "the device takes 12-digit tokens carrying values up to 999,999")
	fs.BoolVar(&reg.Restricted, "restricted", false, "the device's keypad has the keys 1-4 only")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "serial"); err != nil {
		return err
	}
	if *code != -1 {
		if *code < 0 || *code > math.MaxUint32 {
			return errs.E(errs.Usage, "%s: --starting-code %d is not a starting code: give up to 9 digits", cmd, *code)
		}
		c := uint32(*code)
		reg.StartingCode = &c
	}
	d, err := a.client(e).RegisterKeypadDevice(ctx, reg)
	if err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, d)
	}
	fmt.Fprintf(e.stdout, "Registered keypad device %s (%d units per day, %s tokens%s).\nFlash it with the key and starting code from: licet vendor token device export --device %s\n",
		d.Serial, d.Divider, keypadvendor.FormName(d.Extended), restrictedNote(d.Restricted), d.Serial)
	return nil
}

func restrictedNote(restricted bool) string {
	if restricted {
		return ", digits 1-4"
	}
	return ""
}

func vendorTokenDeviceList(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor token device list", "[--json]", "Lists the keypad devices with their last issued count. Keys are never listed.")
	a := vendorAdmin(e, fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	ds, err := a.client(e).KeypadDevices(ctx)
	if err != nil {
		return err
	}
	return printList(e, *a.json, ds, []string{"serial", "divider", "form", "restricted", "last_count"}, func(d *keypadvendor.Device) []string {
		return []string{d.Serial, strconv.Itoa(d.Divider), keypadvendor.FormName(d.Extended), strconv.FormatBool(d.Restricted), strconv.FormatUint(uint64(d.LastCount), 10)}
	})
}

func vendorTokenDeviceExport(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor token device export", "--device S [--json]",
		"Prints a keypad device's secret key and starting code, to flash into the device.\nThe vendor logs each export (never the key).")
	a := vendorAdmin(e, fs)
	serial := fs.String("device", "", "the device's serial number")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "device"); err != nil {
		return err
	}
	sec, err := a.client(e).ExportKeypadDevice(ctx, *serial)
	if err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, sec)
	}
	fmt.Fprintf(e.stdout, "serial         %s\nkey            %s\nstarting code  %d\ndivider        %d\nform           %s%s\nlast count     %d\n",
		sec.Serial, sec.Key, sec.StartingCode, sec.Divider, keypadvendor.FormName(sec.Extended), restrictedNote(sec.Restricted), sec.LastCount)
	return nil
}

// issueJSON is what 'licet vendor token issue --json' prints.
type issueJSON struct {
	Device string `json:"device"`
	Token  string `json:"token"`
	Count  uint32 `json:"count"`
	Type   string `json:"type"`
	Value  *int   `json:"value"`
}

func vendorTokenIssue(ctx context.Context, e *env, args []string) error {
	const cmd = "licet vendor token issue"
	fs := flagSet(e, cmd, "--device D (--days N | --set-days N | --disable | --sync) [--idempotency-key K] [--json]",
		"Issues the next OpenPAYGO token of a keypad device and prints it: --days adds N days\n"+
			"of credit, --set-days sets the credit to N days from when it is typed in, --disable\n"+
			"unlocks the device for good, --sync moves the device's count forward. With --json:\n"+
			"{\"device\": ..., \"token\": \"...\", \"count\": N, \"type\": \"ADD_TIME\", \"value\": V}\n"+
			"(value is days times the device's divider; null for --disable and --sync).")
	a := vendorAdmin(e, fs)
	serial := fs.String("device", "", "the device's serial number")
	addDays := fs.String("days", "", "ADD_TIME: add N days of credit")
	setDays := fs.String("set-days", "", "SET_TIME: set the credit to N days")
	disable := fs.Bool("disable", false, "DISABLE_PAYG: unlock the device for good")
	sync := fs.Bool("sync", false, "COUNTER_SYNC: move the device's count forward")
	idem := fs.String("idempotency-key", "", "a key for this sale: retrying with it returns the same token")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "device"); err != nil {
		return err
	}
	var req keypadvendor.IssueRequest
	n := 0
	for _, f := range []struct {
		name string
		val  string
		dst  **int
	}{{"days", *addDays, &req.Days}, {"set-days", *setDays, &req.SetDays}} {
		if f.val == "" {
			continue
		}
		n++
		v, err := strconv.Atoi(f.val)
		if err != nil {
			return errs.E(errs.Usage, "%s: --%s %q is not a whole number of days", cmd, f.name, f.val)
		}
		*f.dst = &v
	}
	req.Disable, req.Sync = *disable, *sync
	if *disable {
		n++
	}
	if *sync {
		n++
	}
	if n != 1 {
		return errs.E(errs.Usage, "%s: give exactly one of --days N, --set-days N, --disable or --sync; run '%s --help'", cmd, cmd)
	}
	out, err := a.client(e).IssueKeypadToken(ctx, *serial, req, *idem)
	if err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, issueJSON{Device: out.Device, Token: out.Token, Count: out.Count, Type: out.Type, Value: out.Value})
	}
	fmt.Fprintf(e.stdout, "%s\n", out.Token)
	fmt.Fprintf(e.stderr, "%s token for device %s, count %d.\n", out.Type, out.Device, out.Count)
	return nil
}

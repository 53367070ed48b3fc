package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/licet/licet/api"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/payg/billing"
	"github.com/licet/licet/payg/keypadvendor"
	"github.com/licet/licet/payg/provisioning"
)

// paygService opens the vendor's pay-as-you-go over its store: the
// provisioning key and certificate of the data directory dir (made, and
// certified by the root, if missing: at init, or the first start of an
// older directory) and the data key that seals secrets at rest (the keypad
// sealing key, made if missing).
func paygService(svc *clearinghouse.Service, dir string) (*api.Payg, error) {
	st, ok := svc.Store.(provisioning.Store)
	if !ok {
		return nil, errs.E(errs.Internal, "this vendor store does not keep pay-as-you-go data")
	}
	authority, err := provisioning.Authority(dir, svc.Root, svc.Config.VendorName, svc.Now())
	if err != nil {
		return nil, err
	}
	sealer, err := provisioning.LoadSealer(dir)
	if err != nil {
		return nil, err
	}
	var secrets billing.Sealer = sealer
	prov := provisioning.New(st, authority, svc.Root.Cert, secrets)
	if kst, ok := svc.Store.(keypadvendor.Store); ok {
		ks, err := keypadvendor.LoadSealer(dir)
		if err != nil {
			return nil, err
		}
		prov.Keypad = keypadvendor.New(kst, ks) // a sale to a keypad device issues its token
	}
	return &api.Payg{
		Billing:      billing.New(st, secrets),
		Provisioning: prov,
	}, nil
}

// addPaygRoutes adds the pay-as-you-go API to the vendor server h.
func addPaygRoutes(h *api.Server, svc *clearinghouse.Service, dir string) error {
	p, err := paygService(svc, dir)
	if err != nil {
		return err
	}
	api.AddPaygRoutes(h, p)
	return addComplianceRoutes(h, p)
}

func vendorAccountCommand() *command {
	return &command{name: "account", summary: "pay-as-you-go billing accounts", sub: []*command{
		leaf("add", "open an account for a customer in a currency", vendorAccountAdd),
		leaf("list", "list accounts with their balances", vendorAccountList),
		leaf("show", "show an account, its balance, devices and postings", vendorAccountShow),
	}}
}

func vendorPlanCommand() *command {
	return &command{name: "plan", summary: "pay-as-you-go plans: an amount of use at a price", sub: []*command{
		leaf("add", "add a plan (N days, N hours, N seconds, or until a date)", vendorPlanAdd),
		leaf("list", "list plans", vendorPlanList),
	}}
}

func vendorDeviceCommand() *command {
	return &command{name: "device", summary: "pay-as-you-go devices", sub: []*command{
		leaf("list", "list registered devices", vendorDeviceList),
		leaf("show", "show a device, its last report and packets", vendorDeviceShow),
		leaf("clones", "list registrations refused as clones of another account's device", vendorDeviceClones),
		leaf("reregister", "issue a code that registers a device again from a fresh agent directory", vendorDeviceReregister),
		leaf("reset", "make a signed reset packet that lifts a device's non-operational compliance mode", vendorDeviceReset),
		{name: "packet", summary: "provisioning packets", sub: []*command{
			leaf("export", "write a device's packets to a file for 'licet agent payg import'", vendorDevicePacketExport),
		}},
	}}
}

func vendorWebhookCommand() *command {
	return &command{name: "webhook", summary: "payment processor webhooks", sub: []*command{
		leaf("add", "make a webhook endpoint and print its secret once", vendorWebhookAdd),
	}}
}

func vendorSellLeaf() *command {
	return leaf("sell", "sell a plan: a new device (a registration code) or credit for a device (a packet)", vendorSell)
}

func vendorLedgerLeaf() *command {
	return leaf("ledger", "list ledger postings; record payments, refunds and reversals", vendorLedger)
}

func vendorAccountAdd(ctx context.Context, e *env, args []string) error {
	const cmd = "licet vendor account add"
	fs := flagSet(e, cmd, "--customer C --currency CUR [--id ID] [--name N] [--idempotency-key K] [--json]",
		"Opens a pay-as-you-go account for a customer (from 'licet vendor customer add'),\n"+
			"in one currency (ISO 4217, e.g. EUR). Amounts are integers in minor units (cents).")
	a := vendorAdmin(e, fs)
	var req billing.AccountRequest
	fs.StringVar(&req.Customer, "customer", "", "customer ID")
	fs.StringVar(&req.Currency, "currency", "", "currency, ISO 4217 (e.g. EUR)")
	fs.StringVar(&req.ID, "id", "", "account ID (default: a new acct-… ID)")
	fs.StringVar(&req.Name, "name", "", "display name")
	idem := fs.String("idempotency-key", "", "a key for this write: retrying with it returns the first answer")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "customer", "currency"); err != nil {
		return err
	}
	out, err := a.client(e).AddPaygAccount(ctx, req, *idem)
	if err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "Opened account %s for customer %s in %s.\n", out.ID, out.CustomerID, out.Currency)
	return nil
}

func vendorAccountList(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor account list", "[--customer C] [--json]", "Lists accounts with their balances (positive: owed to the vendor).")
	a := vendorAdmin(e, fs)
	customer := fs.String("customer", "", "only this customer's accounts")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	var out []*billing.Account
	if err := a.client(e).Get(ctx, "/v1/payg/accounts?customer="+url.QueryEscape(*customer), &out); err != nil {
		return err
	}
	return printList(e, *a.json, out, []string{"id", "customer", "currency", "balance", "created"}, func(x *billing.Account) []string {
		return []string{x.ID, x.CustomerID, x.Currency, strconv.FormatInt(x.Balance, 10), x.Created.Format(time.DateOnly)}
	})
}

// accountDetail is what 'licet vendor account show --json' prints.
type accountDetail struct {
	*billing.Account
	Devices  []*provisioning.Device `json:"devices"`
	Postings []*billing.Posting     `json:"postings"`
}

func vendorAccountShow(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor account show", "--account A [--json]", "Shows an account, its balance, its devices and its postings.")
	a := vendorAdmin(e, fs)
	id := fs.String("account", "", "account ID")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "account"); err != nil {
		return err
	}
	c := a.client(e)
	var d accountDetail
	if err := c.Get(ctx, "/v1/payg/accounts/"+url.PathEscape(*id), &d.Account); err != nil {
		return err
	}
	if err := c.Get(ctx, "/v1/payg/devices?account="+url.QueryEscape(*id), &d.Devices); err != nil {
		return err
	}
	if err := c.Get(ctx, "/v1/payg/ledger?account="+url.QueryEscape(*id), &d.Postings); err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, d)
	}
	fmt.Fprintf(e.stdout, "Account %s (%s), customer %s, %s\nBalance: %d (minor units; positive: owed to the vendor)\nDevices: %d\n\n",
		d.ID, d.Name, d.CustomerID, d.Currency, d.Balance, len(d.Devices))
	printPostings(e, d.Postings)
	return nil
}

func printPostings(e *env, ps []*billing.Posting) {
	var rows [][]string
	for _, p := range ps {
		var amount int64
		for _, l := range p.Lines {
			if l.AccountID != "" {
				amount += l.Amount
			}
		}
		rows = append(rows, []string{p.Created.Format(time.RFC3339), p.ID, p.Kind, p.AccountID, strconv.FormatInt(amount, 10), orDashS(p.Reference), orDashS(p.Reverses)})
	}
	table(e.stdout, []string{"created", "posting", "kind", "account", "amount", "reference", "reverses"}, rows)
}

func orDashS(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func vendorPlanAdd(ctx context.Context, e *env, args []string) error {
	const cmd = "licet vendor plan add"
	fs := flagSet(e, cmd, "--id ID (--days N | --hours N | --seconds N | --until DATE) --price MINOR --currency CUR [--name N] [--idempotency-key K] [--json]",
		"Adds a plan: N days, N hours or N seconds of use (metered while the device is in\n"+
			"use; seconds serve sales by the minute, demos and tests), or use until a date;\n"+
			"its price is an integer in minor units (1250 is 12.50).\n"+
			"Plans are never changed: add a new one.")
	a := vendorAdmin(e, fs)
	var req billing.PlanRequest
	fs.StringVar(&req.ID, "id", "", "plan ID")
	fs.StringVar(&req.Name, "name", "", "display name")
	days := fs.Int64("days", 0, "days of use")
	hours := fs.Int64("hours", 0, "hours of use")
	seconds := fs.Int64("seconds", 0, "seconds of use (e.g. 600 for ten minutes)")
	until := fs.String("until", "", "use until this date (YYYY-MM-DD or RFC 3339)")
	price := fs.String("price", "", "price in minor units (cents)")
	fs.StringVar(&req.Currency, "currency", "", "currency, ISO 4217 (e.g. EUR)")
	idem := fs.String("idempotency-key", "", "a key for this write: retrying with it returns the first answer")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "id", "price", "currency"); err != nil {
		return err
	}
	req.Days, req.Hours, req.Seconds, req.Price = *days, *hours, *seconds, json.Number(*price)
	var err error
	if req.Until, err = parseDate("until", *until); err != nil {
		return err
	}
	out, err := a.client(e).AddPaygPlan(ctx, req, *idem)
	if err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "Added plan %s: %s, %d %s.\n", out.ID, planUse(out), out.Price, out.Currency)
	return nil
}

func planUse(p *billing.Plan) string {
	if p.Kind == billing.PlanUntil && p.Until != nil {
		return "until " + p.Until.Format(time.DateOnly)
	}
	return fmt.Sprintf("%d %s", p.Quantity, p.Kind)
}

func vendorPlanList(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor plan list", "[--json]", "Lists plans.")
	a := vendorAdmin(e, fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	var out []*billing.Plan
	if err := a.client(e).Get(ctx, "/v1/payg/plans", &out); err != nil {
		return err
	}
	return printList(e, *a.json, out, []string{"id", "name", "use", "price", "currency"}, func(p *billing.Plan) []string {
		return []string{p.ID, p.Name, planUse(p), strconv.FormatInt(p.Price, 10), p.Currency}
	})
}

func vendorSell(ctx context.Context, e *env, args []string) error {
	const cmd = "licet vendor sell"
	fs := flagSet(e, cmd, "--account A --plan P (--new-device | --device D | --keypad-device S) [--idempotency-key K] [-o FILE] [--json]\n       "+cmd+" --batch FILE [--idempotency-key K] [--json]",
		"Sells a plan to an account, posting the sale to the ledger. With --new-device it\n"+
			"prints a one-time registration code for the device ('licet agent payg register\n"+
			"--code CODE'), whose credit the device receives when it registers. With --device it\n"+
			"makes the device's next packet: the device fetches it at its next sync, or -o writes\n"+
			"it to a file for 'licet agent payg import'. With --keypad-device it issues the keypad\n"+
			"device's OpenPAYGO token in the sale's transaction: ADD_TIME of the plan's days times\n"+
			"the device's divider (a plan of hours or seconds converted to the device's units and\n"+
			"rounded down; a plan until a date is refused). Retrying with the same\n"+
			"--idempotency-key returns the first answer (the same token) and sells nothing more.\n\n"+
			"With --batch FILE it sells credit to many registered devices in one transaction: all\n"+
			"of the file's sales, or none if any line is wrong (the error names the line). FILE\n"+
			"(- for standard input) is CSV, a line 'account,plan,device' per sale (an optional\n"+
			"header line of those names, '#' comments), or JSON lines, {\"account\": A, \"plan\": P,\n"+
			"\"device\": D} per line; each device at most once. --idempotency-key covers the whole\n"+
			"batch. The request is bounded by the server's body limit (1 MiB by default, about\n"+
			"15,000 sales): split larger files.")
	a := vendorAdmin(e, fs)
	var req provisioning.SellRequest
	fs.StringVar(&req.Account, "account", "", "account ID")
	fs.StringVar(&req.Plan, "plan", "", "plan ID")
	fs.BoolVar(&req.NewDevice, "new-device", false, "sell a new device: print its registration code")
	fs.StringVar(&req.Device, "device", "", "sell credit to this registered device")
	fs.StringVar(&req.KeypadDevice, "keypad-device", "", "sell credit to this keypad device (serial number): print its token")
	idem := fs.String("idempotency-key", "", "a key for this sale: retrying with it returns the first answer")
	out := fs.String("o", "", "write the packet (--device) to this file")
	batch := fs.String("batch", "", "sell the sales of this CSV or JSON-lines file (- for standard input) in one transaction")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *batch != "" {
		if req.Account != "" || req.Plan != "" || *out != "" || countSet(req.NewDevice, req.Device != "", req.KeypadDevice != "") != 0 {
			return errs.E(errs.Usage, "%s: --batch takes the account, plan and device of each sale from its file; give none of --account, --plan, --new-device, --device, --keypad-device or -o with it", cmd)
		}
		return vendorSellBatch(ctx, e, a.client(e), *batch, *idem, *a.json)
	}
	if err := required(fs, "account", "plan"); err != nil {
		return err
	}
	if n := countSet(req.NewDevice, req.Device != "", req.KeypadDevice != ""); n != 1 {
		return errs.E(errs.Usage, "%s: give exactly one of --new-device, --device D or --keypad-device S (got %d); run '%s --help'", cmd, n, cmd)
	}
	ans, err := a.client(e).Sell(ctx, req, *idem)
	if err != nil {
		return err
	}
	if *out != "" && ans.Packet != "" {
		if err := writeOutput(e, *out, []byte(ans.Packet)); err != nil {
			return err
		}
	}
	if *a.json {
		return printJSON(e.stdout, ans)
	}
	fmt.Fprintf(e.stdout, "Sold plan %s to account %s for %d %s (sale %s).\n", ans.Sale.PlanID, ans.Sale.AccountID, ans.Sale.Price, ans.Sale.Currency, ans.Sale.ID)
	if t := ans.Token; t != nil {
		fmt.Fprintf(e.stdout, "Token for keypad device %s (%s %d, count %d):\n  %s\n", t.Device, t.Type, *t.Value, t.Count, t.Token)
	} else if ans.Code != "" {
		fmt.Fprintf(e.stdout, "Registration code (one use, expires %s):\n  %s\n", ans.CodeExpires.Format(time.DateOnly), ans.Code)
	} else {
		fmt.Fprintf(e.stdout, "Packet %d for device %s made; the device receives it at its next sync.\n", ans.Sequence, ans.Sale.DeviceID)
		if *out != "" {
			fmt.Fprintf(e.stdout, "Wrote it to %s.\n", *out)
		}
	}
	return nil
}

func vendorLedger(ctx context.Context, e *env, args []string) error {
	const cmd = "licet vendor ledger"
	fs := flagSet(e, cmd, "[--account A] [--pay MINOR | --refund MINOR | --reverse POSTING] [--currency CUR] [--reference R] [--idempotency-key K] [--json]",
		"Lists the ledger's postings (of one account with --account), each balanced to zero.\n"+
			"With --pay or --refund, first records a payment received or a refund paid out on\n"+
			"--account (in its --currency); with --reverse, the compensating posting of an earlier\n"+
			"posting. Nothing is ever changed or deleted in the ledger.")
	a := vendorAdmin(e, fs)
	account := fs.String("account", "", "account ID")
	pay := fs.String("pay", "", "record a payment of this many minor units")
	refund := fs.String("refund", "", "record a refund of this many minor units")
	reverse := fs.String("reverse", "", "reverse this posting")
	currency := fs.String("currency", "", "currency of --pay or --refund")
	reference := fs.String("reference", "", "the processor's reference of --pay or --refund")
	idem := fs.String("idempotency-key", "", "a key for this write: retrying with it returns the first answer")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	c := a.client(e)
	var posted *billing.Posting
	var err error
	switch {
	case *pay != "" && *refund != "", (*pay != "" || *refund != "") && *reverse != "":
		return errs.E(errs.Usage, "%s: give at most one of --pay, --refund and --reverse", cmd)
	case *pay != "" || *refund != "":
		kind, amount := billing.KindPayment, *pay
		if *refund != "" {
			kind, amount = billing.KindRefund, *refund
		}
		if err := required(fs, "account", "currency"); err != nil {
			return err
		}
		posted, err = c.PaygMoney(ctx, kind, billing.MoneyRequest{Account: *account, Amount: json.Number(amount), Currency: *currency, Reference: *reference}, *idem)
	case *reverse != "":
		posted, err = c.Reverse(ctx, billing.ReversalRequest{Posting: *reverse}, *idem)
	}
	if err != nil {
		return err
	}
	if posted != nil {
		if *a.json {
			return printJSON(e.stdout, posted)
		}
		fmt.Fprintf(e.stdout, "Posted %s %s on account %s.\n\n", posted.Kind, posted.ID, posted.AccountID)
	}
	var ps []*billing.Posting
	if err := c.Get(ctx, "/v1/payg/ledger?account="+url.QueryEscape(*account), &ps); err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, ps)
	}
	printPostings(e, ps)
	return nil
}

func vendorDeviceList(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor device list", "[--account A] [--compliance below:N] [--json]",
		"Lists registered pay-as-you-go devices with their last packet, last report and flag\n(a report that went backwards: a restored older copy of the device's state).")
	a := vendorAdmin(e, fs)
	account := fs.String("account", "", "only this account's devices")
	compliance := fs.String("compliance", "", "below:N lists the devices whose last compliance score is below N")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *compliance != "" {
		return vendorComplianceList(ctx, e, a, *compliance)
	}
	var out []*provisioning.Device
	if err := a.client(e).Get(ctx, "/v1/payg/devices?account="+url.QueryEscape(*account), &out); err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, out)
	}
	var rows [][]string
	for _, d := range out {
		rep := "-"
		if d.Report != nil {
			rep = fmt.Sprintf("seq %d, %ds used, %s", d.Report.HighestSequence, d.Report.UsedSeconds, d.Report.At.Format(time.RFC3339))
		}
		flag := "-"
		if d.Flag != "" {
			flag = "FLAGGED"
		}
		rows = append(rows, []string{d.ID, d.AccountID, d.SystemID, strconv.FormatUint(d.LastSequence, 10), rep, flag})
	}
	table(e.stdout, []string{"id", "account", "system", "last_packet", "last_report", "flag"}, rows)
	return nil
}

func vendorDeviceShow(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor device show", "--device D [--json]", "Shows a device, its last report, its flag and its packets.")
	a := vendorAdmin(e, fs)
	id := fs.String("device", "", "device ID")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "device"); err != nil {
		return err
	}
	var d api.DeviceDetail
	if err := a.client(e).Get(ctx, "/v1/payg/devices/"+url.PathEscape(*id), &d); err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, d)
	}
	fmt.Fprintf(e.stdout, "Device %s, account %s, system %s, registered %s\nLast packet: %d\n", d.ID, d.AccountID, d.SystemID, d.Registered.Format(time.RFC3339), d.LastSequence)
	if d.Report != nil {
		fmt.Fprintf(e.stdout, "Last report: sequence %d, %d s used, at %s\n", d.Report.HighestSequence, d.Report.UsedSeconds, d.Report.At.Format(time.RFC3339))
	}
	if d.Flag != "" {
		fmt.Fprintf(e.stdout, "FLAGGED: %s\n", d.Flag)
	}
	if d.Reregistered != nil {
		fmt.Fprintf(e.stdout, "Re-registered %s: this installation started after packet %d", d.Reregistered.Format(time.RFC3339), d.BaseSequence)
		if r := d.PreviousReport; r != nil {
			fmt.Fprintf(e.stdout, "; the old installation last reported packet %d and %d s used, at %s", r.HighestSequence, r.UsedSeconds, r.At.Format(time.RFC3339))
		}
		fmt.Fprintln(e.stdout)
	}
	var rows [][]string
	for _, p := range d.Packets {
		rows = append(rows, []string{strconv.FormatUint(p.Sequence, 10), p.SaleID, p.Created.Format(time.RFC3339)})
	}
	fmt.Fprintln(e.stdout)
	table(e.stdout, []string{"sequence", "sale", "created"}, rows)
	return nil
}

func vendorDeviceReregister(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor device reregister", "--device D [--idempotency-key K] [--json]",
		"Issues a one-time code that registers device D again, for a device whose agent lost its\n"+
			"state directory or was reinstalled ('licet agent payg register --code CODE' in a fresh\n"+
			"directory). Only D's hardware registers with it (the same hardware under another\n"+
			"account is still refused as a clone); D keeps its ID, gets new keys, a new certificate\n"+
			"and a new initialization key, and the old installation's requests are refused from\n"+
			"then on. The new installation starts after D's last packet: the credit of the earlier\n"+
			"packets is not given again, as the vendor cannot know how much of it the old\n"+
			"installation used after its last report ('licet vendor device show' shows that report;\n"+
			"sell credit to make up for it). No sale is posted.")
	a := vendorAdmin(e, fs)
	id := fs.String("device", "", "the registered device to register again")
	idem := fs.String("idempotency-key", "", "a key for this request: retrying with it returns the same code")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "device"); err != nil {
		return err
	}
	ans, err := a.client(e).Reregister(ctx, *id, *idem)
	if err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, ans)
	}
	fmt.Fprintf(e.stdout, "Re-registration code for device %s of account %s (one use, expires %s):\n  %s\n", ans.Device, ans.Account, ans.CodeExpires.Format(time.DateOnly), ans.Code)
	return nil
}

func vendorDeviceClones(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor device clones", "[--json]",
		"Lists registrations refused because their hardware matched a device of another account.")
	a := vendorAdmin(e, fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	var out []*provisioning.Clone
	if err := a.client(e).Get(ctx, "/v1/payg/clones", &out); err != nil {
		return err
	}
	return printList(e, *a.json, out, []string{"at", "id", "device", "account", "attempt_account", "system"}, func(c *provisioning.Clone) []string {
		return []string{c.At.Format(time.RFC3339), c.ID, c.DeviceID, c.AccountID, c.AttemptAccount, c.SystemID}
	})
}

func vendorDevicePacketExport(ctx context.Context, e *env, args []string) error {
	const cmd = "licet vendor device packet export"
	fs := flagSet(e, cmd, "--device D [--since N] [-o FILE] [--json]",
		"Writes a device's packets with sequence above N (default 0: all), armored and\n"+
			"concatenated, for an air-gapped device: 'licet agent payg import FILE' applies them.")
	a := vendorAdmin(e, fs)
	id := fs.String("device", "", "device ID")
	since := fs.Uint64("since", 0, "only packets above this sequence number")
	out := fs.String("o", "", "write the packets here (default: standard output)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "device"); err != nil {
		return err
	}
	ex, err := a.client(e).ExportPackets(ctx, *id, *since)
	if err != nil {
		return err
	}
	if *a.json {
		if *out != "" {
			if err := writeOutput(e, *out, []byte(ex.File)); err != nil {
				return err
			}
		}
		return printJSON(e.stdout, ex)
	}
	if err := writeOutput(e, *out, []byte(ex.File)); err != nil {
		return err
	}
	if *out != "" {
		fmt.Fprintf(e.stderr, "Wrote %d packet(s) of device %s to %s.\n", ex.Count, ex.Device, *out)
	}
	return nil
}

func vendorWebhookAdd(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor webhook add", "--name N [--json]",
		"Makes a webhook endpoint for a payment processor at /v1/payg/webhooks/N and prints\n"+
			"its secret once. The processor signs each event with the header\n"+
			"Licet-Webhook-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, t + \".\" + body)>.")
	a := vendorAdmin(e, fs)
	name := fs.String("name", "", "endpoint name")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "name"); err != nil {
		return err
	}
	out, err := a.client(e).AddWebhook(ctx, *name)
	if err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "Webhook endpoint %s: POST %s\nSecret (shown once; give it to the payment processor):\n  %s\n", out.Name, out.URL, out.Secret)
	return nil
}

// countSet counts the flags that are set.
func countSet(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

package cli

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/licet/licet/agent"
	"github.com/licet/licet/api"
	"github.com/licet/licet/compliance/supervisor"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/payg/meter"
	"github.com/licet/licet/pki"
)

// paygDir is the pay-as-you-go state inside an agent directory.
const paygDir = "payg"

func agentPaygCommand() *command {
	return &command{name: "payg", summary: "pay-as-you-go: registration, credit, metering, login check", sub: []*command{
		leaf("register", "register this device with the vendor using a one-time code", agentPaygRegister),
		leaf("sync", "report use to the vendor and apply the new packets it sends", agentPaygSync),
		leaf("import", "apply packet files (armored, possibly several concatenated)", agentPaygImport),
		leaf("status", "show the balance, the plan's end, the last sync and the state", agentPaygStatus),
		leaf("daemon", "meter user sessions and serve the local API on a unix socket", agentPaygDaemon),
		leaf("login-check", "for PAM (pam_exec): exit 0 if a login may proceed", agentPaygLoginCheck),
	}}
}

// paygMeter opens the meter of an agent directory. With id it can apply
// packets (the device key and the pinned vendor root).
func paygMeter(data string, id *agent.Identity) (*meter.Meter, error) {
	opts := meter.Options{}
	if id != nil {
		root, err := pinnedRoot(data)
		if err != nil {
			return nil, err
		}
		opts.Root, opts.Decrypter = root, id.Decrypter
	}
	return meter.New(filepath.Join(data, paygDir), opts), nil
}

func pinnedRoot(data string) (*x509.Certificate, error) {
	b, err := os.ReadFile(filepath.Join(data, agent.RootFile))
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, errs.E(errs.NotFound, "no vendor root pinned in %s; register first, or give --root", data)
	}
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "read the pinned vendor root")
	}
	return parseRootPEM(b)
}

func parseRootPEM(b []byte) (*x509.Certificate, error) {
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		der = blk.Bytes
	}
	return pki.ParseRoot(der)
}

func addDataFlags(fs interface {
	String(name, value, usage string) *string
}) (data, hwRoot *string) {
	return fs.String("data", "", "agent data directory"), fs.String("hw-root", "", "read hardware from this directory instead of /")
}

func agentPaygRegister(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent payg register", "--data DIR --server URL --code CODE [--root FILE]",
		"Registers this device for pay-as-you-go with a one-time code from the vendor: sends\nthe hardware fingerprint (component hashes) and the device's public keys, signed;\nchecks the device certificate against the vendor root; stores the device ID, the\ncertificate chain and the initialization key (mode 0600) under DIR/payg; applies the\ncredit of the sale. Exit 3 for a used or unknown code, or a clone.")
	data, hwRoot := addDataFlags(fs)
	server := fs.String("server", "", "the vendor's URL")
	code := fs.String("code", "", "the one-time registration code")
	rootFile := fs.String("root", "", "vendor root certificate to trust (default: the pinned one, or the server's on first use)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data", "server", "code"); err != nil {
		return err
	}
	id, err := loadAgent(*data, *hwRoot)
	if err != nil {
		return err
	}
	if *rootFile != "" {
		b, err := readInput(*rootFile)
		if err != nil {
			return err
		}
		if err := id.PinRoot(b); err != nil {
			return err
		}
	} else if _, err := os.Stat(filepath.Join(*data, agent.RootFile)); errors.Is(err, iofs.ErrNotExist) {
		b, err := (&api.Client{BaseURL: *server}).Root(ctx)
		if err != nil {
			return err
		}
		if err := id.PinRoot(b); err != nil {
			return errs.Wrap(errs.Invalid, err, "the vendor at %s offered no valid root", *server)
		}
	}
	m, err := paygMeter(*data, id)
	if err != nil {
		return err
	}
	root, _ := pinnedRoot(*data)
	reg, applied, err := (&meter.Remote{Server: *server}).Register(ctx, m, *code,
		meter.DeviceKeys{Signer: id.Signer, Decrypter: id.Decrypter, Fingerprint: id.Hardware}, root)
	if reg == nil {
		return err
	}
	extra := map[string]any{"device_id": reg.DeviceID, "account": reg.Account}
	if reg.BaseSequence > 0 {
		extra["base_sequence"] = reg.BaseSequence
	}
	if perr := printApplied(e, *asJSON, applied, m.Status(), extra); perr != nil {
		return perr
	}
	return err
}

func printApplied(e *env, asJSON bool, applied []meter.Applied, st meter.Status, extra map[string]any) error {
	if asJSON {
		out := map[string]any{"applied": applied, "status": st}
		for k, v := range extra {
			out[k] = v
		}
		if out["applied"] == nil || len(applied) == 0 {
			out["applied"] = []meter.Applied{}
		}
		return printJSON(e.stdout, out)
	}
	if id, ok := extra["device_id"]; ok {
		fmt.Fprintf(e.stdout, "Registered as device %s (account %s).\n", id, extra["account"])
	}
	if base, ok := extra["base_sequence"]; ok {
		fmt.Fprintf(e.stdout, "The vendor knew this device: this installation starts after its packet %d, whose credit stayed with the earlier installation.\n", base)
	}
	for _, a := range applied {
		what := fmt.Sprintf("%s of use", time.Duration(a.Seconds)*time.Second)
		if a.Until != nil {
			what = "use until " + a.Until.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(e.stdout, "Applied packet %d (sale %s): %s.\n", a.Sequence, a.Sale, what)
	}
	if len(applied) == 0 {
		fmt.Fprintln(e.stdout, "No new packets.")
	}
	printStatus(e, st)
	return nil
}

func agentPaygSync(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent payg sync", "--data DIR [--server URL]",
		"Sends the device's highest applied sequence and total use to the vendor in a request\nsigned by the device key and authenticated by the initialization key, and applies the\npackets the vendor answers with, in order. Exit 3 if a packet is refused: the ones\nbefore it are applied, and the sync is still recorded and the compliance bundle and\nresets of the answer still delivered.")
	data, hwRoot := addDataFlags(fs)
	server := fs.String("server", "", "the vendor's URL (default: the one registered with)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data"); err != nil {
		return err
	}
	id, err := loadAgent(*data, *hwRoot)
	if err != nil {
		return err
	}
	m, err := paygMeter(*data, id)
	if err != nil {
		return err
	}
	url := *server
	if url == "" {
		reg, err := m.Registration()
		if err != nil {
			return err
		}
		url = reg.Server
	}
	if url == "" {
		return errs.E(errs.Usage, "--server is required: the registration names no vendor URL")
	}
	applied, err := (&meter.Remote{Server: url, Compliance: complianceSyncFor(e, *data, m)}).Sync(ctx, m, id.Signer)
	// A packet of the answer that does not verify is noted for the
	// compliance supervisor, as import does; only the refusal, not a bad
	// bundle or reset the extension refused.
	var refused *meter.PacketRefusedError
	if errors.As(err, &refused) {
		noteForgedPacket(*data, refused)
	}
	if err != nil && len(applied) == 0 {
		return err
	}
	if perr := printApplied(e, *asJSON, applied, m.Status(), nil); perr != nil {
		return perr
	}
	return err
}

var packetBlock = regexp.MustCompile(`(?s)-----BEGIN LICET PAYG PACKET-----.*?-----END LICET PAYG PACKET-----`)

func agentPaygImport(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent payg import", "--data DIR FILE",
		"Applies the packets in FILE (\"-\" for standard input): armored LICET PAYG PACKET\nblocks, one or several concatenated, in any order. Exit 3 if a packet is refused\n(replayed, out of order, another device's, changed, or not signed by the vendor).")
	data, hwRoot := addDataFlags(fs)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if err := required(fs, "data"); err != nil {
		return err
	}
	text, err := readInput(fs.Arg(0))
	if err != nil {
		return err
	}
	blocks := packetBlock.FindAll(text, -1)
	if len(blocks) == 0 {
		return errs.E(errs.Invalid, "%s holds no LICET PAYG PACKET block", fs.Arg(0))
	}
	id, err := loadAgent(*data, *hwRoot)
	if err != nil {
		return err
	}
	m, err := paygMeter(*data, id)
	if err != nil {
		return err
	}
	applied, err := m.Apply(blocks)
	noteForgedPacket(*data, err)
	if perr := printApplied(e, *asJSON, applied, m.Status(), nil); perr != nil {
		return perr
	}
	return err
}

func printStatus(e *env, st meter.Status) {
	fmt.Fprintf(e.stdout, "State: %s", st.State)
	if st.Reason != "" {
		fmt.Fprintf(e.stdout, " (%s)", st.Reason)
	}
	fmt.Fprintln(e.stdout)
	if st.State == meter.StateTampered || st.State == meter.StateUnregistered {
		return
	}
	fmt.Fprintf(e.stdout, "  device     %s (account %s)\n", st.DeviceID, st.Account)
	fmt.Fprintf(e.stdout, "  balance    %s\n", time.Duration(st.BalanceSeconds)*time.Second)
	if st.Until != nil {
		note := "ended"
		if st.UntilActive {
			note = "active"
		}
		fmt.Fprintf(e.stdout, "  until      %s (%s)\n", st.Until.UTC().Format(time.RFC3339), note)
	}
	last := "never"
	if st.LastSync != nil {
		last = st.LastSync.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(e.stdout, "  last sync  %s\n  packets    %d applied; used %s\n", last, st.HighestSequence, time.Duration(st.UsedSeconds)*time.Second)
	if st.ClockNote != "" {
		fmt.Fprintf(e.stdout, "  clock      %s\n", st.ClockNote)
	}
}

func agentPaygStatus(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent payg status", "--data DIR [--json]",
		"Shows the pay-as-you-go state: balance, the end of an \"until\" plan, the last sync, and\nthe state: active, low (under --low), spent, tampered (with the reason) or unregistered.\nExit 0 when the state could be read, 3 when it is tampered.")
	data := fs.String("data", "", "agent data directory")
	low := fs.Duration("low", meter.DefaultLowMark, "the balance under which the state is \"low\"")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data"); err != nil {
		return err
	}
	st := meter.New(filepath.Join(*data, paygDir), meter.Options{LowMark: *low}).Status()
	if *asJSON {
		if err := printJSON(e.stdout, st); err != nil {
			return err
		}
	} else {
		printStatus(e, st)
	}
	if st.State == meter.StateTampered {
		return errs.E(errs.Invalid, "the pay-as-you-go state is tampered: %s", st.Reason)
	}
	return nil
}

func agentPaygLoginCheck(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent payg login-check", "--data DIR [--top-up-user NAME] [--user NAME]",
		"For PAM through pam_exec (see deploy/pam/licet-payg): exit 0 if the device has credit\nor the user ($PAM_USER, or --user) is the top-up account; exit 4 otherwise, so the\nlogin is refused while the credit is spent or the state is tampered.")
	data := fs.String("data", "", "agent data directory")
	var topUp listFlag
	fs.Var(&topUp, "top-up-user", "an account that may always log in, to buy more credit (repeatable)")
	userFlag := fs.String("user", "", "the user logging in (default: $PAM_USER)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data"); err != nil {
		return err
	}
	user := *userFlag
	if user == "" {
		user = e.getenv("PAM_USER")
	}
	for _, u := range topUp {
		if user != "" && u == user {
			fmt.Fprintf(e.stdout, "licet: %s is the top-up account: login allowed\n", user)
			return nil
		}
	}
	if err := complianceLogin(e, *data, user); err != nil {
		return err
	}
	st := meter.New(filepath.Join(*data, paygDir), meter.Options{}).Status()
	if st.Allowed() {
		return nil
	}
	msg := "this device has no pay-as-you-go credit left"
	switch st.State {
	case meter.StateTampered:
		msg = "this device's pay-as-you-go state is tampered (" + st.Reason + ")"
	case meter.StateUnregistered:
		msg = "this device is not registered for pay-as-you-go"
	}
	if len(topUp) > 0 {
		msg += "; log in as " + strings.Join(topUp, " or ") + " to top up"
	}
	fmt.Fprintln(e.stdout, "licet: "+msg)
	return errs.E(errs.Forbidden, "login refused for %q: %s", user, msg)
}

func agentPaygDaemon(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent payg daemon", "--data DIR [--socket PATH] [--socket-group G] [--tick D] [--sync-every D] [--end-sessions-after D --top-up-user NAME]",
		"Meters use while a user session is active (systemd-logind, else utmp) and serves the\nlocal API on a unix socket (mode 0660): GET /v1/status, GET /v1/events (newline-\ndelimited JSON, one status per change). With --sync-every it also syncs with the vendor.\n"+
			"With --end-sessions-after, the logind sessions still open when the credit has been\nspent that long are ended (loginctl terminate-session), but the --top-up-user ones.")
	data, hwRoot := addDataFlags(fs)
	socket := fs.String("socket", "", "unix socket of the local API (default DIR/payg/payg.sock; \"none\" for no API)")
	group := fs.String("socket-group", "", "group owning the socket, whose members' programs may read the state")
	tick := fs.Duration("tick", meter.DefaultTick, "metering interval (a reboot loses at most one)")
	syncEvery := fs.Duration("sync-every", 0, "sync with the vendor this often (0: never)")
	sessionsDir := fs.String("sessions-dir", "", "systemd-logind session directory (default /run/systemd/sessions)")
	logJSON := fs.Bool("log-json", false, "log JSON lines")
	endAfter := fs.Duration("end-sessions-after", 0, "end the sessions still open this long after the credit ran out (0: leave them)")
	var topUp listFlag
	fs.Var(&topUp, "top-up-user", "an account whose sessions are never ended, to buy more credit (repeatable)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data"); err != nil {
		return err
	}
	if *endAfter < 0 {
		return errs.E(errs.Usage, "licet agent payg daemon: --end-sessions-after %s is negative; give a grace such as 5m, or 0 to leave sessions open", *endAfter)
	}
	sock := *socket
	switch sock {
	case "":
		sock = filepath.Join(*data, paygDir, "payg.sock")
	case "none":
		sock = ""
	}
	var logger *slog.Logger
	if *logJSON {
		logger = slog.New(slog.NewJSONHandler(e.stderr, nil))
	} else {
		logger = slog.New(slog.NewTextHandler(e.stderr, nil))
	}
	d := &meter.Daemon{Tick: *tick, Socket: sock, Group: *group, Log: logger,
		Sessions: meter.SystemSessions{LogindDir: *sessionsDir}, EndSessionsAfter: *endAfter, TopUpUsers: topUp, Heartbeat: filepath.Join(*data, paygDir, supervisor.HeartbeatFile)}
	if *syncEvery > 0 {
		id, err := loadAgent(*data, *hwRoot)
		if err != nil {
			return err
		}
		m, err := paygMeter(*data, id)
		if err != nil {
			return err
		}
		reg, err := m.Registration()
		if err != nil {
			return err
		}
		d.Meter, d.Remote, d.Signer, d.SyncEvery = m, &meter.Remote{Server: reg.Server, Compliance: complianceSyncFor(e, *data, m)}, id.Signer, *syncEvery
	} else {
		d.Meter = meter.New(filepath.Join(*data, paygDir), meter.Options{})
	}
	st := d.Meter.Status()
	logger.Info("pay-as-you-go daemon started", "state", st.State, "balance_seconds", st.BalanceSeconds, "socket", sock, "tick", tick.String())
	return d.Run(ctx)
}

func agentRun(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent run", "--data DIR --product P [--tick D] [--threshold D] [--warn D,D] [--grace D] -- PROGRAM [ARGS]",
		"Runs PROGRAM as metered pay-as-you-go use: only with more than --threshold of credit;\ncharging its run time every --tick; warning on standard error at each --warn mark; and\nwhen the credit runs out, SIGTERM, then SIGKILL after --grace. Exit 0 when PROGRAM\nexits 0, 3 when it was refused or stopped for lack of credit, 1 when it failed.")
	data := fs.String("data", "", "agent data directory")
	product := fs.String("product", "", "product the program belongs to (recorded with its use)")
	tick := fs.Duration("tick", meter.DefaultTick, "metering interval")
	threshold := fs.Duration("threshold", 0, "credit needed to start, beyond zero")
	warn := fs.String("warn", "1h,10m,1m", "low-balance marks to warn at, comma-separated durations")
	grace := fs.Duration("grace", meter.DefaultGrace, "time between SIGTERM and SIGKILL")
	if err := parse(fs, args, -1); err != nil {
		return err
	}
	if err := required(fs, "data", "product"); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errs.E(errs.Usage, "licet agent run: the program to run is missing: licet agent run --data DIR --product P -- PROGRAM [ARGS]")
	}
	var marks []time.Duration
	for _, s := range strings.Split(*warn, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return errs.E(errs.Usage, "licet agent run: --warn %q is not a duration such as 10m", s)
		}
		marks = append(marks, d)
	}
	m := meter.New(filepath.Join(*data, paygDir), meter.Options{})
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, e.stdout, e.stderr
	ctx, done, err := complianceRun(ctx, e, *data, cmd, *tick)
	if err != nil {
		return err
	}
	return done(m.Supervise(ctx, cmd, meter.RunOptions{Product: *product, Tick: *tick, Threshold: *threshold, Warn: marks, Grace: *grace, Log: e.stderr}))
}

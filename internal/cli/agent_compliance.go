package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/licet/licet/compliance/policy"
	"github.com/licet/licet/compliance/supervisor"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/payg/meter"
)

// complianceSupervisor opens the supervisor of an agent directory; the
// pinned vendor root, when there is one, checks bundles and resets. It
// seals with the TPM of $LICET_TPM or /dev/tpmrm0 (supervisor.TPMPath).
func complianceSupervisor(data string) *supervisor.Supervisor {
	return complianceSupervisorTPM(data, "")
}

// complianceSupervisorTPM is complianceSupervisor with a --tpm flag's value.
func complianceSupervisorTPM(data, tpm string) *supervisor.Supervisor {
	env := supervisor.Env{Meter: meter.New(filepath.Join(data, paygDir), meter.Options{}), TPM: supervisor.TPMPath(tpm)}
	if root, err := pinnedRoot(data); err == nil {
		env.Root = root
	}
	return supervisor.New(data, env)
}

func agentComplianceCommand() *command {
	return &command{name: "compliance", summary: "the compliance supervisor: score, mode, what to fix", sub: []*command{
		leaf("status", "explain the score: each policy, pass or fail, its weight, what to do", agentComplianceStatus),
		leaf("evaluate", "evaluate the policies now and store the score and mode", agentComplianceEvaluate),
		leaf("supervise", "evaluate at start, on every state change and on a timer; serve the mode on a unix socket", agentComplianceSupervise),
	}}
}

func agentPolicyCommand() *command {
	return &command{name: "policy", summary: "compliance policy bundles and reset packets from the vendor", sub: []*command{
		leaf("import", "install a policy bundle or apply a reset packet from a file, then evaluate", agentPolicyImport),
	}}
}

// complianceSync is the supervisor's part of 'licet agent payg sync'.
type complianceSync struct {
	sup      *supervisor.Supervisor
	deviceID string
	log      func(string)
}

// Report implements meter.SyncExtension.
func (c *complianceSync) Report() json.RawMessage {
	b, _ := json.Marshal(c.sup.Report())
	return b
}

// Deliver implements meter.SyncExtension: it installs the bundle and
// applies the resets, then evaluates.
func (c *complianceSync) Deliver(bundle string, resets []string) error {
	var errList []error
	if bundle != "" {
		if d, changed, err := c.sup.Install([]byte(bundle)); err != nil {
			errList = append(errList, err)
		} else if changed {
			c.log(fmt.Sprintf("Installed compliance policy bundle version %d.", d.Version))
		}
	}
	for _, r := range resets {
		if rs, err := c.sup.ApplyReset([]byte(r), c.deviceID); err != nil {
			if !errs.Is(err, errs.Conflict) {
				errList = append(errList, err)
			}
		} else {
			c.log(fmt.Sprintf("Applied compliance reset %d.", rs.Sequence))
		}
	}
	if c.sup.SetUp() {
		if _, err := c.sup.Evaluate(context.Background()); err != nil && !errs.Is(err, errs.NotFound) {
			errList = append(errList, err)
		}
	}
	return errors.Join(errList...)
}

// complianceSyncFor returns the sync extension of an agent directory.
func complianceSyncFor(e *env, data string, m *meter.Meter) meter.SyncExtension {
	c := &complianceSync{sup: complianceSupervisor(data), log: func(s string) { fmt.Fprintln(e.stderr, s) }}
	if reg, err := m.Registration(); err == nil {
		c.deviceID = reg.DeviceID
	}
	return c
}

// noteForgedPacket records a refused packet that did not verify, so the
// packets check scores it.
func noteForgedPacket(data string, err error) {
	if err != nil && errs.Is(err, errs.Invalid) {
		complianceSupervisor(data).Note("packet", "a packet that does not verify was offered and refused: "+err.Error())
	}
}

// complianceLogin is the login check's compliance gate: nil when logins
// may proceed (compliance not set up, compliant, or in sanction mode, with
// the reasons printed); errs.Forbidden when non-operational or when the
// supervisor's state is missing or stale (fail closed).
func complianceLogin(e *env, data, user string) error {
	v, err := complianceSupervisor(data).Verdict()
	if err != nil {
		fmt.Fprintln(e.stdout, "licet: "+err.Error())
		return errs.Wrap(errs.Forbidden, err, "login refused for %q", user)
	}
	switch v.Mode {
	case supervisor.ModeNonOperational:
		msg := "this device is non-operational (compliance score " + fmt.Sprint(v.Score) + "): " + strings.Join(v.Reasons, "; ") + "; contact support for a reset"
		fmt.Fprintln(e.stdout, "licet: "+msg)
		return errs.E(errs.Forbidden, "login refused for %q: %s", user, msg)
	case supervisor.ModeSanction:
		fmt.Fprintf(e.stdout, "licet: this device is in sanction mode (compliance score %d): %s\n", v.Score, strings.Join(v.Reasons, "; "))
	}
	return nil
}

// complianceRun is 'licet agent run”s compliance gate. It refuses to start
// when non-operational or when the state is missing or stale; in sanction
// mode it tells the program (LICET_COMPLIANCE_MODE, LICET_COMPLIANCE_REASONS)
// and bounds the session. While the program runs it watches the mode and
// stops the program if the device becomes non-operational. done maps the
// run's error to the compliance reason that stopped it.
func complianceRun(ctx context.Context, e *env, data string, cmd *exec.Cmd, tick time.Duration) (context.Context, func(error) error, error) {
	sup := complianceSupervisor(data)
	v, err := sup.Verdict()
	if err != nil {
		return nil, nil, errs.Wrap(errs.Forbidden, err, "not starting %s", cmd.Path)
	}
	if v.Mode == supervisor.ModeNone {
		return ctx, func(err error) error { return err }, nil
	}
	if v.Mode == supervisor.ModeNonOperational {
		return nil, nil, errs.E(errs.Forbidden, "not starting %s: this device is non-operational (compliance score %d): %s; contact support for a reset", cmd.Path, v.Score, strings.Join(v.Reasons, "; "))
	}
	cmd.Env = append(cmd.Environ(), "LICET_COMPLIANCE_MODE="+v.Mode, "LICET_COMPLIANCE_REASONS="+strings.Join(v.Reasons, "; "))
	ctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	var cause error
	stop := func(err error) {
		mu.Lock()
		if cause == nil {
			cause = err
			fmt.Fprintf(e.stderr, "licet: %v\n", err)
		}
		mu.Unlock()
		cancel()
	}
	if v.Mode == supervisor.ModeSanction {
		fmt.Fprintf(e.stderr, "licet: sanction mode (compliance score %d): %s\n", v.Score, strings.Join(v.Reasons, "; "))
		if v.SessionLimit > 0 {
			fmt.Fprintf(e.stderr, "licet: this session is limited to %s\n", v.SessionLimit)
			t := time.AfterFunc(v.SessionLimit, func() {
				stop(errs.E(errs.Forbidden, "the sanction mode's session limit of %s is reached", v.SessionLimit))
			})
			context.AfterFunc(ctx, func() { t.Stop() })
		}
	}
	go func() {
		tk := time.NewTicker(tick)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			nv, err := sup.Verdict()
			switch {
			case err != nil:
				stop(errs.Wrap(errs.Forbidden, err, "compliance"))
			case nv.Mode == supervisor.ModeNonOperational:
				stop(errs.E(errs.Forbidden, "this device became non-operational (compliance score %d): %s", nv.Score, strings.Join(nv.Reasons, "; ")))
			}
		}
	}()
	done := func(err error) error {
		cancel()
		mu.Lock()
		defer mu.Unlock()
		if cause != nil {
			return cause
		}
		return err
	}
	return ctx, done, nil
}

func agentPolicyImport(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent policy import", "--data DIR FILE",
		"Installs the compliance policy bundle (LICET COMPLIANCE POLICY) and applies the reset\n"+
			"packets (LICET COMPLIANCE RESET) in FILE (\"-\" for standard input), checked against the\n"+
			"pinned vendor root, then evaluates. A bundle older than the installed one, one that\n"+
			"does not verify, or a reset of another device is refused (exit 3 or 4); a refused\n"+
			"bundle or reset counts against the score.")
	data := fs.String("data", "", "agent data directory")
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
	bundles, resets := policy.Blocks(text)
	if len(bundles)+len(resets) == 0 {
		return errs.E(errs.Invalid, "%s holds no LICET COMPLIANCE POLICY or LICET COMPLIANCE RESET block", fs.Arg(0))
	}
	if _, err := pinnedRoot(*data); err != nil {
		return err
	}
	sup := complianceSupervisor(*data)
	var firstErr error
	for _, b := range bundles {
		d, changed, err := sup.Install(b)
		switch {
		case err != nil:
			firstErr = cmp(firstErr, err)
		case changed:
			fmt.Fprintf(e.stdout, "Installed policy bundle version %d (%d policies).\n", d.Version, len(d.Policies))
		default:
			fmt.Fprintf(e.stdout, "Policy bundle version %d is already installed.\n", d.Version)
		}
	}
	if len(resets) > 0 {
		reg, err := meter.New(filepath.Join(*data, paygDir), meter.Options{}).Registration()
		if err != nil {
			return err
		}
		for _, r := range resets {
			rs, err := sup.ApplyReset(r, reg.DeviceID)
			if err != nil {
				firstErr = cmp(firstErr, err)
				continue
			}
			fmt.Fprintf(e.stdout, "Applied reset %d.\n", rs.Sequence)
		}
	}
	if sup.SetUp() {
		if st, err := sup.Evaluate(ctx); err == nil {
			printCompliance(e, supervisor.StatusOf(st))
		} else {
			firstErr = cmp(firstErr, err)
		}
	}
	return firstErr
}

func cmp(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func printCompliance(e *env, s supervisor.Status) {
	if s.Mode == supervisor.ModeNone && s.Error == "" {
		fmt.Fprintln(e.stdout, "Compliance: not set up (no policy bundle installed): the device behaves as without a supervisor.")
		return
	}
	if s.Error != "" {
		fmt.Fprintf(e.stdout, "Compliance: %s\n", s.Error)
		return
	}
	fmt.Fprintf(e.stdout, "Compliance: %s, score %d/100 (evaluated %s)\n", s.Mode, s.Score, s.Evaluated.UTC().Format(time.RFC3339))
	fmt.Fprintf(e.stdout, "  seal: %s\n", s.Seal)
	var rows [][]string
	for _, r := range s.Results {
		state := "pass"
		if !r.Pass {
			state = "FAIL"
			if !r.Counted {
				state = "fail (grace " + r.GraceLeft + " left)"
			}
		}
		todo := "-"
		if !r.Pass {
			todo = r.Fix
		}
		rows = append(rows, []string{r.ID, r.Check, fmt.Sprint(r.Weight), state, r.Detail, todo})
	}
	table(e.stdout, []string{"policy", "check", "weight", "result", "detail", "what to do"}, rows)
}

func agentComplianceStatus(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent compliance status", "--data DIR [--json] [--tpm PATH]",
		"Explains the compliance score: the mode (compliant, sanction, nonoperational), each\n"+
			"policy with pass or fail, its weight and what to do; and how the state is sealed.\n"+
			"Exit 4 when the state is missing, damaged or stale (the agent fails closed).")
	data := fs.String("data", "", "agent data directory")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	tpm := tpmFlag(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data"); err != nil {
		return err
	}
	sup := complianceSupervisorTPM(*data, *tpm)
	var s supervisor.Status
	var verr error
	if sup.SetUp() {
		st, err := sup.State()
		if err != nil {
			s = supervisor.Status{Error: err.Error(), Seal: sup.SealNote()}
		} else {
			s = supervisor.StatusOf(st)
		}
		_, verr = sup.Verdict()
	}
	if *asJSON {
		if err := printJSON(e.stdout, s); err != nil {
			return err
		}
	} else {
		printCompliance(e, s)
	}
	return verr
}

func agentComplianceEvaluate(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent compliance evaluate", "--data DIR [--json] [--tpm PATH]",
		"Evaluates every policy now, stores the score and the mode, and explains them.")
	data := fs.String("data", "", "agent data directory")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	tpm := tpmFlag(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data"); err != nil {
		return err
	}
	st, err := complianceSupervisorTPM(*data, *tpm).Evaluate(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, supervisor.StatusOf(st))
	}
	printCompliance(e, supervisor.StatusOf(st))
	return nil
}

func agentComplianceSupervise(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent compliance supervise", "--data DIR [--socket PATH] [--poll D] [--tpm PATH]",
		"The compliance supervisor (deploy/systemd/licet-supervisor.service, started before\n"+
			"the display manager and getty): evaluates at start, whenever the pay-as-you-go state\n"+
			"or the bundle changes, and on the bundle's timer, and serves GET /v1/compliance (mode,\n"+
			"score, reasons, each policy) on a unix socket. Without a bundle it waits for one.")
	data := fs.String("data", "", "agent data directory")
	socket := fs.String("socket", "", "unix socket of the local API (default DIR/compliance/compliance.sock; \"none\")")
	poll := fs.Duration("poll", time.Second, "how often the state files are looked at for a change")
	tpm := tpmFlag(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data"); err != nil {
		return err
	}
	sock := *socket
	switch sock {
	case "":
		sock = filepath.Join(*data, supervisor.Dir, "compliance.sock")
	case "none":
		sock = ""
	}
	logger := slog.New(slog.NewTextHandler(e.stderr, nil))
	sup := complianceSupervisorTPM(*data, *tpm)
	logger.Info("compliance supervisor started", "set_up", sup.SetUp(), "socket", sock, "seal", sup.SealNote())
	return (&supervisor.Daemon{Sup: sup, Socket: sock, Poll: *poll, Log: logger}).Run(ctx)
}

// tpmFlag is the --tpm flag of the compliance commands.
func tpmFlag(fs *flag.FlagSet) *string {
	return fs.String("tpm", "", "TPM 2.0 that seals the state: a device, unix:PATH or tcp:HOST:PORT (a simulator), or \"none\" (default $"+supervisor.TPMEnv+", else /dev/tpmrm0 when present)")
}

package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/payg/keypad"
	"github.com/licet/licet/payg/openpaygo"
)

// agentTokenCommand is `licet agent token`: the keypad of an offline
// pay-as-you-go device (package keypad).
func agentTokenCommand() *command {
	return &command{name: "token", summary: "the keypad of an offline pay-as-you-go device: OpenPAYGO tokens", sub: []*command{
		leaf("setup", "set the device's token key, starting code and time divider (once, at manufacture)", agentTokenSetup),
		leaf("enter", "apply a token typed on the device's keypad", agentTokenEnter),
		leaf("status", "show the device's credit, count, failed entries and recovery", agentTokenStatus),
	}}
}

func agentTokenSetup(ctx context.Context, e *env, args []string) error {
	const cmd = "licet agent token setup"
	fs := flagSet(e, cmd, "--data DIR --key HEX --starting-code N [--divider N] [--restricted] [--json]",
		"Writes the keypad configuration into the agent data directory (keypad.json, mode 0600):\n"+
			"the device's secret key, its starting code, its time divider (token value units per\n"+
			"day) and whether its keypad has the keys 1-4 only. Done once, at manufacture; it\n"+
			"refuses to replace an existing configuration (exit 3). The key is never printed.")
	data := fs.String("data", "", "agent data directory")
	key, startingCode := addTokenKeyFlags(fs)
	divider := fs.Int("divider", 1, "time divider: token value units per day (1: values are days, 24: hours)")
	restricted := fs.Bool("restricted", false, "the keypad has the keys 1-4 only (restricted digit set)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data"); err != nil {
		return err
	}
	dev, err := tokenDevice(e, cmd, *key, *startingCode)
	if err != nil {
		return err
	}
	if *divider < 1 || *divider > keypad.MaxTimeDivider {
		return errs.E(errs.Usage, "%s: --divider must be 1 to %d, got %d", cmd, keypad.MaxTimeDivider, *divider)
	}
	cfg := keypad.Config{Key: dev.Key, StartingCode: dev.StartingCode, TimeDivider: *divider, Restricted: *restricted}
	if err := keypad.Setup(*data, cfg); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, map[string]any{"data": *data, "starting_code": cfg.StartingCode,
			"time_divider": cfg.TimeDivider, "restricted": cfg.Restricted})
	}
	fmt.Fprintf(e.stdout, "Keypad set up in %s: starting code %d, time divider %d, restricted digit set %s.\n",
		*data, cfg.StartingCode, cfg.TimeDivider, yesNo(cfg.Restricted))
	return nil
}

// keypadFlags adds --data and --json to fs, parses args with nargs
// positional arguments, and opens the keypad in --data.
func keypadFlags(fs *flag.FlagSet, args []string, nargs int) (k *keypad.Keypad, data string, asJSON bool, err error) {
	d := fs.String("data", "", "agent data directory")
	j := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, nargs); err != nil {
		return nil, "", false, err
	}
	if err := required(fs, "data"); err != nil {
		return nil, "", false, err
	}
	k, err = keypad.Open(*d)
	return k, *d, *j, err
}

func agentTokenEnter(ctx context.Context, e *env, args []string) error {
	const cmd = "licet agent token enter"
	fs := flagSet(e, cmd, "--data DIR [--json] DIGITS",
		"Applies a token typed on the device's keypad: ADD_TIME adds days of credit, SET_TIME\n"+
			"sets the credit from now, DISABLE_PAYG unlocks the device for good, COUNTER_SYNC\n"+
			"resynchronises its count. Spaces and dashes in DIGITS are ignored.\n\n"+
			"After a wrong token (invalid, already used, refused) the keypad takes the next one\n"+
			"only after a wait: 1 minute, doubling up to 512 minutes; an entry during the wait is\n"+
			"not checked. When the keypad state was lost (deleted, corrupt, an old copy put back)\n"+
			"the device has no credit and takes only a COUNTER_SYNC or SET_TIME token from the\n"+
			"vendor. Exit 0 applied; 3 already used, invalid, during a wait or refused in\n"+
			"recovery; 2 for letters or a wrong length.")
	k, _, asJSON, err := keypadFlags(fs, args, 1)
	if err != nil {
		return err
	}
	digits := strings.NewReplacer(" ", "", "-", "").Replace(fs.Arg(0))
	// A mistyped command line is not an entry on the keypad: it does not
	// count as a wrong token.
	if _, _, err := openpaygo.Parse(digits, k.Config().Restricted); err != nil {
		return errs.E(errs.Usage, "%s: the token argument DIGITS %q: %v", cmd, fs.Arg(0), err)
	}
	now, err := e.clock()
	if err != nil {
		return err
	}
	entry, err := k.Enter(now(), digits)
	if entry.Outcome == 0 {
		return err // no entry was made: the files could not be read or written
	}
	if asJSON {
		out := map[string]any{"result": entry.Outcome.String(), "status": statusJSON(entry.Status)}
		if err != nil {
			out["message"] = err.Error()
		}
		if entry.Type != 0 {
			out["type"], out["count"] = entry.Type.String(), entry.Count
			if entry.Type == openpaygo.AddTime || entry.Type == openpaygo.SetTime {
				out["value"], out["credit_seconds"] = entry.Value, int64(entry.Credit/time.Second)
			}
		}
		if perr := printJSON(e.stdout, out); perr != nil {
			return perr
		}
		if err != nil {
			return &reportedError{err} // the JSON above says what happened
		}
		return nil
	}
	if err != nil {
		return err
	}
	s := entry.Status
	switch entry.Type {
	case openpaygo.AddTime, openpaygo.SetTime:
		fmt.Fprintf(e.stdout, "Token applied: %s %s (count %d). Active until %s, %s left.\n",
			entry.Type, formatDuration(entry.Credit), entry.Count, s.ActiveUntil.Format(time.RFC3339), formatDuration(s.Remaining))
	case openpaygo.DisablePAYG:
		fmt.Fprintf(e.stdout, "Token applied: DISABLE_PAYG (count %d). The device is unlocked for good.\n", entry.Count)
	default:
		fmt.Fprintf(e.stdout, "Token applied: %s, the count is now %d.\n", entry.Type, s.LastCount)
	}
	return nil
}

func agentTokenStatus(ctx context.Context, e *env, args []string) error {
	const cmd = "licet agent token status"
	fs := flagSet(e, cmd, "--data DIR [--json]",
		"Shows the keypad: whether the device may run and until when, the time left, the last\n"+
			"count, wrong entries in a row and when the next token is taken, PAYG disabled, and\n"+
			"recovery (state lost: only a vendor COUNTER_SYNC or SET_TIME token is taken).\n"+
			"It records the time it saw, so setting the clock back later gains no credit.")
	k, data, asJSON, err := keypadFlags(fs, args, 0)
	if err != nil {
		return err
	}
	now, err := e.clock()
	if err != nil {
		return err
	}
	s, err := k.Observe(now())
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(e.stdout, statusJSON(s))
	}
	state := "inactive: no credit"
	switch {
	case s.Recovery != "":
		state = "RECOVERY, no credit: " + s.Recovery + "; only a COUNTER_SYNC or SET_TIME token from the vendor is taken"
	case s.Disabled:
		state = "active: PAYG disabled for good"
	case s.Active:
		state = "active"
	}
	until, nextTry := "never had credit", "now"
	if !s.ActiveUntil.IsZero() {
		until = s.ActiveUntil.Format(time.RFC3339) + " (" + formatDuration(s.Remaining) + " left)"
	}
	if !s.NextTry.IsZero() {
		nextTry = s.NextTry.Format(time.RFC3339) + " (in " + s.NextTry.Sub(s.Now).Round(time.Second).String() + ")"
	}
	fmt.Fprintf(e.stdout, "Keypad in %s\n  state           %s\n  active until    %s\n  last count      %d\n  failed entries  %d\n  next try        %s\n",
		data, state, until, s.LastCount, s.FailedEntries, nextTry)
	if s.ClockBehind {
		fmt.Fprintf(e.stdout, "  clock           behind the latest time seen; going by %s\n", s.Now.Format(time.RFC3339))
	}
	return nil
}

// statusJSON is the JSON form of a keypad status.
func statusJSON(s keypad.Status) map[string]any {
	timeOrNil := func(t time.Time) any {
		if t.IsZero() {
			return nil
		}
		return t
	}
	return map[string]any{
		"now": s.Now, "active": s.Active, "active_until": timeOrNil(s.ActiveUntil),
		"remaining_seconds": int64(s.Remaining / time.Second), "disabled": s.Disabled,
		"last_count": s.LastCount, "failed_entries": s.FailedEntries, "next_try": timeOrNil(s.NextTry),
		"recovery": s.Recovery != "", "recovery_reason": s.Recovery, "clock_behind": s.ClockBehind,
	}
}

// formatDuration writes d in days and hours, or minutes below an hour.
func formatDuration(d time.Duration) string {
	if d < time.Hour {
		return d.Round(time.Second).String()
	}
	days, hours := d/(24*time.Hour), (d%(24*time.Hour)).Round(time.Hour)/time.Hour
	switch {
	case days == 0:
		return fmt.Sprintf("%dh", hours)
	case hours == 0:
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dd %dh", days, hours)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

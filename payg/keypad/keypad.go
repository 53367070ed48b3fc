// Package keypad is the device side of offline OpenPAYGO tokens: the keypad
// state of a pay-as-you-go device with no network, kept in the agent's data
// directory, and the rules for a token typed on it.
//
// The configuration (keypad.json, mode 0600) is set once, at manufacture: the
// device's secret key, its starting code, its time divider and whether it
// uses the restricted digit set. The state (keypad-state.json) holds the
// credit (active-until time, or PAYG disabled for good), the last count and
// used counts of the codec (package openpaygo), the failed-entry counter with
// the time before which no entry is taken, and the latest time seen. Every
// write is crash-safe (temporary file, fsync, rename), and the state carries
// an HMAC under a key derived from the device key, so a corrupted or edited
// file is recognised.
//
// The rules:
//   - A valid ADD_TIME token extends the credit by value/divider days from the
//     later of now and the current end of credit; SET_TIME sets the credit to
//     value/divider days from now; DISABLE_PAYG unlocks the device for good;
//     COUNTER_SYNC only moves the count.
//   - A wrong entry (invalid, already used, malformed, refused) makes the user
//     wait before the next one: 1 minute, then 2, 4, ... up to 512 minutes.
//     The wait is stored, so a restart does not end it; an entry during the
//     wait is refused without being decoded and does not count.
//   - Time never goes back: the keypad goes by the later of the clock and the
//     latest time it has seen, so setting the clock back neither extends the
//     credit nor shortens a wait.
//   - It fails closed. The configuration keeps a guard: a sequence number of
//     the state writes and a copy of the count, the wait, the latest time seen
//     and the disabled flag. A state file that is deleted, corrupt, or older
//     than the guard records gives no credit, and the keypad enters recovery,
//     in which only a COUNTER_SYNC or SET_TIME token from the vendor, newer
//     than the count in the guard, is taken (an old ADD_TIME token would
//     otherwise be replayable).
//
// What this defends against, and what not (see docs/keypad.md): it stops a
// person at the keypad from guessing tokens, replaying them, turning the
// clock back or deleting the state file for credit. Someone who can read the
// configuration holds the device key and can make tokens; on hardware the key
// belongs in the microcontroller, on a machine the customer controls it is
// protected by file permissions only.
package keypad

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/fsutil"
	"github.com/licet/licet/payg/openpaygo"
)

// Config is what is set at manufacture.
type Config struct {
	Key          openpaygo.Key // the device's secret key
	StartingCode uint32        // 9 digits at most
	// TimeDivider is the number of token value units in a day: a token's
	// value gives value/TimeDivider days. At least 1.
	TimeDivider int
	// Restricted is true for a keypad with the keys 1-4 only.
	Restricted bool
}

// MaxTimeDivider is the largest time divider (one unit per second).
const MaxTimeDivider = 86_400

func (c Config) check() error {
	if c.StartingCode > openpaygo.MaxStartingCode {
		return errs.E(errs.Invalid, "starting code %d has more than 9 digits", c.StartingCode)
	}
	if c.TimeDivider < 1 || c.TimeDivider > MaxTimeDivider {
		return errs.E(errs.Invalid, "time divider %d is not between 1 and %d", c.TimeDivider, MaxTimeDivider)
	}
	return nil
}

// Setup writes the keypad configuration into dir (created with mode 0700 if
// missing). It refuses, with an errs.Conflict error, to replace an existing
// configuration: the key is set once.
func Setup(dir string, cfg Config) error {
	if err := cfg.check(); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return errs.Wrap(errs.Internal, err, "create %s", dir)
	}
	p := filepath.Join(dir, ConfigFile)
	if _, err := os.Lstat(p); err == nil {
		return errs.E(errs.Conflict, "a keypad is already set up in %s (%s); its key and starting code are set once, at manufacture", dir, ConfigFile)
	}
	data, err := marshalConfig(&configFile{Version: FormatVersion, Key: cfg.Key.String(), StartingCode: cfg.StartingCode,
		TimeDivider: cfg.TimeDivider, Restricted: cfg.Restricted})
	if err != nil {
		return err
	}
	if err := fsutil.CreateExclusive(p, data, 0o600); err != nil {
		return errs.Wrap(errs.Conflict, err, "write %s", p)
	}
	return nil
}

// Keypad is the keypad of the device whose data directory it was opened on.
// Every method reads the files afresh under a lock, so several processes
// may use one directory.
type Keypad struct {
	dir string
	cfg Config
}

// Open opens the keypad in dir. A directory without a configuration is an
// errs.NotFound error.
func Open(dir string) (*Keypad, error) {
	_, cfg, err := readConfig(dir)
	if err != nil {
		return nil, err
	}
	return &Keypad{dir: dir, cfg: cfg}, nil
}

// Config returns the configuration, key included.
func (k *Keypad) Config() Config { return k.cfg }

// Status is the keypad's state as a person reads it.
type Status struct {
	// Now is the time the keypad goes by: the later of the clock and the
	// latest time it has seen.
	Now         time.Time
	Active      bool          // the device may run: credit left, or PAYG disabled
	ActiveUntil time.Time     // the end of the credit; zero if there never was any
	Remaining   time.Duration // credit left at Now
	Disabled    bool          // PAYG disabled for good
	LastCount   uint32
	UsedCounts  []uint32
	// FailedEntries is the number of wrong entries since the last valid one.
	FailedEntries int
	// NextTry is the time before which no entry is taken; zero if none.
	NextTry time.Time
	// Recovery says why the state was lost; empty when it was not. In
	// recovery only a COUNTER_SYNC or SET_TIME token from the vendor is taken.
	Recovery string
	// ClockBehind is true when the clock is earlier than the latest time seen.
	ClockBehind bool
}

func statusOf(st *state, clock time.Time) Status {
	now := effectiveNow(clock, st)
	s := Status{Now: now, ActiveUntil: st.ActiveUntil, Disabled: st.Disabled, LastCount: st.LastCount,
		UsedCounts: st.UsedCounts, FailedEntries: st.FailedEntries, Recovery: st.Recovery,
		ClockBehind: now.After(clock.UTC().Truncate(time.Second))}
	if now.Before(st.NotBefore) {
		s.NextTry = st.NotBefore
	}
	if now.Before(st.ActiveUntil) {
		s.Remaining = st.ActiveUntil.Sub(now)
	}
	s.Active = s.Disabled || s.Remaining > 0
	return s
}

// farFuture bounds the times the keypad stores, which must stay within the
// years JSON can write: a clock set to year 10000, or credit piled up by
// many large extended tokens, would otherwise make every write fail.
var farFuture = time.Date(9000, 1, 1, 0, 0, 0, 0, time.UTC)

// effectiveNow is the later of the clock, to the second, and the latest
// time seen.
func effectiveNow(clock time.Time, st *state) time.Time {
	clock = clock.UTC().Truncate(time.Second)
	if clock.Before(st.LatestSeen) {
		return st.LatestSeen
	}
	return earlier(clock, farFuture)
}

// locked runs fn on the configuration and state read under the lock.
func (k *Keypad) locked(fn func(cf *configFile, cfg Config, st *state) error) error {
	unlock, err := lock(k.dir)
	if err != nil {
		return err
	}
	defer unlock()
	cf, cfg, st, err := load(k.dir)
	if err != nil {
		return err
	}
	return fn(cf, cfg, &st)
}

// Status returns the keypad's status at now without writing anything.
func (k *Keypad) Status(now time.Time) (s Status, err error) {
	err = k.locked(func(_ *configFile, _ Config, st *state) error {
		s = statusOf(st, now)
		return nil
	})
	return s, err
}

// Observe records now as the latest time seen, if it is later, and returns
// the status. Whatever enforces the credit calls it regularly, so that
// setting the clock back later gains nothing.
func (k *Keypad) Observe(now time.Time) (s Status, err error) {
	err = k.locked(func(cf *configFile, cfg Config, st *state) error {
		if t := effectiveNow(now, st); t.After(st.LatestSeen) {
			st.LatestSeen = t
			if err := save(k.dir, cf, cfg.Key, st); err != nil {
				return err
			}
		}
		s = statusOf(st, now)
		return nil
	})
	return s, err
}

// Outcome is what became of an entry.
type Outcome int

// The outcomes of Enter.
const (
	Applied         Outcome = iota + 1 // a valid token, applied
	AlreadyUsed                        // a token of this device entered before, or older than the ones since
	Invalid                            // not a token of this device: a typo, or another device's token
	Malformed                          // not a token at all: letters, wrong length
	Waiting                            // refused without decoding: the wait after wrong entries is not over
	RecoveryRefused                    // a token the keypad does not take in recovery
)

var outcomeNames = map[Outcome]string{Applied: "applied", AlreadyUsed: "already_used", Invalid: "invalid",
	Malformed: "malformed", Waiting: "waiting", RecoveryRefused: "recovery_refused"}

// String is the outcome as the CLI prints it: applied, already_used,
// invalid, malformed, waiting or recovery_refused.
func (o Outcome) String() string {
	if s, ok := outcomeNames[o]; ok {
		return s
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Entry is the result of Enter.
type Entry struct {
	Outcome Outcome
	// Type, Value, Count and Extended describe the token when it was
	// decoded as valid (Applied, or RecoveryRefused).
	Type     openpaygo.Type
	Value    int
	Count    uint32
	Extended bool
	// Credit is the time an ADD_TIME or SET_TIME token is worth.
	Credit time.Duration
	// Status is the keypad after the entry.
	Status Status
}

// The wait after wrong entries: FirstWait after the first, doubling after
// each further one, MaxWait at most.
const (
	FirstWait = time.Minute
	MaxWait   = 512 * time.Minute
)

// WaitAfter is the wait after failed wrong entries in a row.
func WaitAfter(failed int) time.Duration {
	if failed <= 0 {
		return 0
	}
	w := FirstWait
	for i := 1; i < failed && w < MaxWait; i++ {
		w *= 2
	}
	return min(w, MaxWait)
}

// maxCreditDays bounds the credit of one token so the arithmetic cannot
// overflow; 100,000 days is as good as for ever.
const maxCreditDays = 100_000

// creditFor is the time a token value is worth with the divider.
func creditFor(value, divider int) time.Duration {
	days, rest := value/divider, value%divider
	if days >= maxCreditDays {
		return maxCreditDays * 24 * time.Hour
	}
	return time.Duration(days)*24*time.Hour + time.Duration(rest)*24*time.Hour/time.Duration(divider)
}

// Enter applies the token digits typed at now. The returned error is nil
// when the token was applied; a refused entry is an errs.Invalid error whose
// message says what happened and, for a wait, until when, with the Entry
// describing it. Other errors are errs.Internal (the files could not be
// read or written) or errs.NotFound (no keypad set up).
func (k *Keypad) Enter(now time.Time, digits string) (e Entry, err error) {
	err = k.locked(func(cf *configFile, cfg Config, st *state) error {
		e, err = k.enter(cf, cfg, st, now, digits)
		return err
	})
	return e, err
}

// enter is Enter under the lock.
func (k *Keypad) enter(cf *configFile, cfg Config, st *state, now time.Time, digits string) (Entry, error) {
	t := effectiveNow(now, st)
	if t.Before(st.NotBefore) {
		e := Entry{Outcome: Waiting, Status: statusOf(st, now)}
		return e, errs.E(errs.Invalid, "token not checked: after %s the keypad takes the next token at %s (in %s)",
			wrongEntries(st.FailedEntries), st.NotBefore.Format(time.RFC3339), st.NotBefore.Sub(t))
	}
	st.LatestSeen = t

	dev := openpaygo.Device{Key: cfg.Key, StartingCode: cfg.StartingCode}
	res, perr := openpaygo.Decode(dev, digits, st.LastCount, st.UsedCounts, cfg.Restricted)
	e := Entry{Type: res.Type, Value: res.Value, Count: res.Count, Extended: res.Extended}
	var why string
	switch {
	case perr != nil:
		e.Outcome, why = Malformed, perr.Error()
	case res.Status == openpaygo.Invalid:
		e.Outcome, why = Invalid, "invalid token: not a token of this device (a typo, or another device's token)"
	case res.Status == openpaygo.AlreadyUsed:
		e.Outcome, why = AlreadyUsed, "token already used: it was entered before, or is older than the tokens entered since"
	case st.Recovery != "" && res.Type != openpaygo.CounterSync && res.Type != openpaygo.SetTime:
		e.Outcome, why = RecoveryRefused, fmt.Sprintf("%s token refused: the keypad is in recovery (%s) and takes only a COUNTER_SYNC or SET_TIME token from the vendor", res.Type, st.Recovery)
	case st.Recovery != "" && res.Count <= st.LastCount:
		e.Outcome, why = AlreadyUsed, fmt.Sprintf("token already used: the keypad is in recovery (%s) and this %s token is not newer than the count on record, %d", st.Recovery, res.Type, st.LastCount)
	}
	if e.Outcome != 0 {
		st.FailedEntries++
		st.NotBefore = t.Add(WaitAfter(st.FailedEntries))
		if err := save(k.dir, cf, cfg.Key, st); err != nil {
			return Entry{}, err
		}
		e.Status = statusOf(st, now)
		return e, errs.E(errs.Invalid, "%s; after %s in a row the next token is taken at %s (in %s)",
			why, wrongEntries(st.FailedEntries), st.NotBefore.Format(time.RFC3339), WaitAfter(st.FailedEntries))
	}

	e.Outcome = Applied
	switch res.Type {
	case openpaygo.AddTime:
		e.Credit = creditFor(res.Value, cfg.TimeDivider)
		st.ActiveUntil = earlier(later(t, st.ActiveUntil).Add(e.Credit), farFuture)
	case openpaygo.SetTime:
		e.Credit = creditFor(res.Value, cfg.TimeDivider)
		st.ActiveUntil = earlier(t.Add(e.Credit), farFuture)
	case openpaygo.DisablePAYG:
		st.Disabled = true
	}
	st.LastCount = max(st.LastCount, res.Count)
	st.UsedCounts = openpaygo.UpdateUsed(st.UsedCounts, res.Type, res.Value, res.Count)
	st.Recovery = ""
	st.FailedEntries, st.NotBefore = 0, time.Time{}
	if err := save(k.dir, cf, cfg.Key, st); err != nil {
		return Entry{}, err
	}
	e.Status = statusOf(st, now)
	return e, nil
}

func wrongEntries(n int) string {
	if n == 1 {
		return "1 wrong entry"
	}
	return fmt.Sprintf("%d wrong entries", n)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

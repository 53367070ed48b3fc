package keypad

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/payg/openpaygo"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

var defaultWriteFile = writeFile

// vendor issues tokens for one device the way the vendor side does: from its
// own record of the last count.
type vendor struct {
	t    *testing.T
	dev  openpaygo.Device
	opt  openpaygo.Options
	last uint32
}

func (v *vendor) issue(typ openpaygo.Type, value int) string {
	v.t.Helper()
	tok, n, err := openpaygo.Encode(v.dev, v.last, typ, value, v.opt)
	if err != nil {
		v.t.Fatal(err)
	}
	v.last = n
	return tok
}

func testConfig(seed byte) Config {
	var k openpaygo.Key
	for i := range k {
		k[i] = seed + byte(i)*7
	}
	return Config{Key: k, StartingCode: 123456789 - uint32(seed), TimeDivider: 1}
}

// newKeypad sets up a keypad in a temporary directory and returns it with
// its vendor.
func newKeypad(t *testing.T, cfg Config) (*Keypad, *vendor, string) {
	t.Helper()
	dir := t.TempDir()
	if err := Setup(dir, cfg); err != nil {
		t.Fatal(err)
	}
	k, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	v := &vendor{t: t, dev: openpaygo.Device{Key: cfg.Key, StartingCode: cfg.StartingCode}, opt: openpaygo.Options{Restricted: cfg.Restricted}}
	return k, v, dir
}

func mustApply(t *testing.T, k *Keypad, now time.Time, tok string) Entry {
	t.Helper()
	e, err := k.Enter(now, tok)
	if err != nil || e.Outcome != Applied {
		t.Fatalf("Enter(%s) = %v, %v; want applied", tok, e.Outcome, err)
	}
	return e
}

func mustRefuse(t *testing.T, k *Keypad, now time.Time, tok string, want Outcome) Entry {
	t.Helper()
	e, err := k.Enter(now, tok)
	if e.Outcome != want || !errs.Is(err, errs.Invalid) {
		t.Fatalf("Enter(%s) = %v, %v; want %v and an invalid-kind error", tok, e.Outcome, err, want)
	}
	return e
}

func status(t *testing.T, k *Keypad, now time.Time) Status {
	t.Helper()
	s, err := k.Status(now)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSetupOnce(t *testing.T) {
	k, _, dir := newKeypad(t, testConfig(1))
	if err := Setup(dir, testConfig(2)); !errs.Is(err, errs.Conflict) {
		t.Fatalf("second Setup: %v, want a conflict", err)
	}
	if k.Config().Key != testConfig(1).Key {
		t.Fatal("the configuration changed")
	}
	if _, err := Open(t.TempDir()); !errs.Is(err, errs.NotFound) {
		t.Fatalf("Open without setup: %v, want not found", err)
	}
	if err := Setup(t.TempDir(), Config{TimeDivider: 0}); !errs.Is(err, errs.Invalid) {
		t.Fatalf("divider 0: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, ConfigFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file mode: %v %v", fi, err)
	}
}

func TestAddTimeAndTokenEnteredTwice(t *testing.T) {
	k, v, _ := newKeypad(t, testConfig(1))
	if s := status(t, k, t0); s.Active || s.Recovery != "" {
		t.Fatalf("new device: %+v, want inactive and not in recovery", s)
	}
	tok := v.issue(openpaygo.AddTime, 3)
	e := mustApply(t, k, t0, tok)
	if e.Type != openpaygo.AddTime || e.Value != 3 || e.Credit != 3*day || !e.Status.ActiveUntil.Equal(t0.Add(3*day)) {
		t.Fatalf("entry %+v", e)
	}
	// A second ADD_TIME extends from the end of the credit, not from now.
	mustApply(t, k, t0.Add(day), v.issue(openpaygo.AddTime, 2))
	s := status(t, k, t0.Add(day))
	if !s.Active || !s.ActiveUntil.Equal(t0.Add(5*day)) || s.Remaining != 4*day || s.LastCount != 4 {
		t.Fatalf("status %+v", s)
	}
	e = mustRefuse(t, k, t0.Add(day), tok, AlreadyUsed)
	if !e.Status.ActiveUntil.Equal(t0.Add(5*day)) || e.Status.FailedEntries != 1 {
		t.Fatalf("after the repeated token: %+v", e.Status)
	}
	if s := status(t, k, t0.Add(6*day)); s.Active {
		t.Fatalf("credit did not run out: %+v", s)
	}
}

func TestTimeDivider(t *testing.T) {
	cfg := testConfig(1)
	cfg.TimeDivider = 24 // values are hours
	k, v, _ := newKeypad(t, cfg)
	if e := mustApply(t, k, t0, v.issue(openpaygo.AddTime, 36)); e.Credit != 36*time.Hour {
		t.Fatalf("credit %v, want 36h", e.Credit)
	}
	if d := creditFor(openpaygo.MaxExtendedValue, 1); d != maxCreditDays*day {
		t.Fatalf("credit of the largest extended value: %v", d)
	}
}

// TestFarFuture: a clock set to year 10000 and credit piled up by large
// extended tokens do not make the state unwritable.
func TestFarFuture(t *testing.T) {
	k, v, _ := newKeypad(t, testConfig(1))
	v.opt.Extended = true
	for i := 0; i < 40; i++ {
		mustApply(t, k, t0, v.issue(openpaygo.AddTime, openpaygo.MaxExtendedValue))
	}
	if _, err := k.Observe(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, k, t0, "000000000", Invalid)
	if s := status(t, k, t0); !s.ActiveUntil.Equal(farFuture) || s.FailedEntries != 1 {
		t.Fatalf("%+v", s)
	}
}

func TestRestrictedDigitSet(t *testing.T) {
	cfg := testConfig(3)
	cfg.Restricted = true
	k, v, _ := newKeypad(t, cfg)
	tok := v.issue(openpaygo.AddTime, 7)
	if strings.Trim(tok, "1234") != "" {
		t.Fatalf("token %s is not in the restricted digit set", tok)
	}
	mustApply(t, k, t0, tok)
	mustRefuse(t, k, t0, "123456789", Malformed)
}

// TestOldAddTime: an ADD_TIME token sold earlier but typed in after newer
// ones still counts while it is within the window of 16 counts below the
// last, once; further back it is too old.
func TestOldAddTime(t *testing.T) {
	k, v, _ := newKeypad(t, testConfig(1))
	tooOld := v.issue(openpaygo.AddTime, 1) // count 2
	late := v.issue(openpaygo.AddTime, 1)   // count 4
	for v.last < 18 {
		mustApply(t, k, t0, v.issue(openpaygo.AddTime, 1))
	}
	mustApply(t, k, t0, late)
	e := mustRefuse(t, k, t0, late, AlreadyUsed)
	mustRefuse(t, k, e.Status.NextTry, tooOld, AlreadyUsed)
}

func TestOtherDevicesToken(t *testing.T) {
	k, _, _ := newKeypad(t, testConfig(1))
	other := &vendor{t: t, dev: openpaygo.Device{Key: testConfig(9).Key, StartingCode: testConfig(9).StartingCode}}
	e := mustRefuse(t, k, t0, other.issue(openpaygo.AddTime, 30), Invalid)
	if e.Status.Active || e.Status.LastCount != 0 {
		t.Fatalf("another device's token changed the state: %+v", e.Status)
	}
}

func TestSetTime(t *testing.T) {
	k, v, _ := newKeypad(t, testConfig(1))
	mustApply(t, k, t0, v.issue(openpaygo.AddTime, 10))
	mustApply(t, k, t0, v.issue(openpaygo.SetTime, 1))
	if s := status(t, k, t0); !s.ActiveUntil.Equal(t0.Add(day)) {
		t.Fatalf("SET_TIME did not set the credit: %+v", s)
	}
	mustApply(t, k, t0, v.issue(openpaygo.SetTime, 0))
	if s := status(t, k, t0); s.Active {
		t.Fatalf("SET_TIME 0 left credit: %+v", s)
	}
}

// TestSetTimeAfterLaterAddTime: a SET_TIME token issued before an ADD_TIME
// token that was entered first cannot reset the credit afterwards.
func TestSetTimeAfterLaterAddTime(t *testing.T) {
	k, v, _ := newKeypad(t, testConfig(1))
	setTime := v.issue(openpaygo.SetTime, 1)
	addTime := v.issue(openpaygo.AddTime, 30)
	mustApply(t, k, t0, addTime)
	e := mustRefuse(t, k, t0, setTime, AlreadyUsed)
	if !e.Status.ActiveUntil.Equal(t0.Add(30 * day)) {
		t.Fatalf("the older SET_TIME changed the credit: %+v", e.Status)
	}
}

func TestDisablePAYG(t *testing.T) {
	k, v, _ := newKeypad(t, testConfig(1))
	mustApply(t, k, t0, v.issue(openpaygo.DisablePAYG, 0))
	if s := status(t, k, t0.Add(1000*day)); !s.Active || !s.Disabled {
		t.Fatalf("disabled device: %+v", s)
	}
}

func TestCounterSyncFarAhead(t *testing.T) {
	k, v, _ := newKeypad(t, testConfig(1))
	mustApply(t, k, t0, v.issue(openpaygo.AddTime, 1))
	var skipped []string // sold but never typed in
	for v.last < 80 {
		skipped = append(skipped, v.issue(openpaygo.AddTime, 1))
	}
	e := mustApply(t, k, t0, v.issue(openpaygo.CounterSync, 0))
	if e.Status.LastCount != v.last || !e.Status.ActiveUntil.Equal(t0.Add(day)) {
		t.Fatalf("counter sync: %+v (vendor count %d); want only the count moved", e.Status, v.last)
	}
	// The tokens the sync jumped over are dead now, the near ones included.
	for _, tok := range []string{skipped[0], skipped[len(skipped)-1]} {
		next := e.Status.NextTry.Add(time.Second)
		e = mustRefuse(t, k, later(next, t0), tok, AlreadyUsed)
	}
	// One beyond the counter-sync window is not recognised at all.
	v.last += openpaygo.MaxJumpCounterSync + 10
	before := e.Status.LastCount
	e = mustRefuse(t, k, e.Status.NextTry, v.issue(openpaygo.CounterSync, 0), Invalid)
	if e.Status.LastCount != before {
		t.Fatalf("count moved to %d", e.Status.LastCount)
	}
}

func TestBruteForceWait(t *testing.T) {
	k, v, dir := newKeypad(t, testConfig(1))
	now := t0
	wantWaits := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 512, 512}
	for i, w := range wantWaits {
		// Each round reopens the keypad: the wait lives on disk.
		var err error
		if k, err = Open(dir); err != nil {
			t.Fatal(err)
		}
		guess := []string{"000000001", "111111111", "222222222"}[i%3]
		e := mustRefuse(t, k, now, guess, Invalid)
		if got := e.Status.NextTry.Sub(now); got != w*time.Minute || e.Status.FailedEntries != i+1 {
			t.Fatalf("wrong entry %d: wait %v, %d failed entries; want %v", i+1, got, e.Status.FailedEntries, w*time.Minute)
		}
		// During the wait even the right token is refused, and the
		// refusal does not count.
		k, _ = Open(dir)
		_, err = k.Enter(now.Add(w*time.Minute-time.Second), "999999999")
		if !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), e.Status.NextTry.Format(time.RFC3339)) {
			t.Fatalf("entry during the wait: %v; want a refusal naming %s", err, e.Status.NextTry.Format(time.RFC3339))
		}
		if s := status(t, k, now); s.FailedEntries != i+1 {
			t.Fatalf("the refusal during the wait counted: %d", s.FailedEntries)
		}
		now = e.Status.NextTry
	}
	good := v.issue(openpaygo.AddTime, 2)
	if e, _ := k.Enter(now.Add(-time.Second), good); e.Outcome != Waiting {
		t.Fatalf("a valid token during the wait: %v, want waiting", e.Outcome)
	}
	e := mustApply(t, k, now, good)
	if e.Status.FailedEntries != 0 || !e.Status.NextTry.IsZero() {
		t.Fatalf("a valid token did not reset the counter: %+v", e.Status)
	}
	mustRefuse(t, k, now, "123", Invalid)
	if s := status(t, k, now); s.NextTry.Sub(now) != time.Minute {
		t.Fatalf("after a reset the wait starts at one minute again: %v", s.NextTry.Sub(now))
	}
}

// TestConcurrentEntries: entries racing each other are taken one at a time,
// so a script cannot get around the wait by typing in parallel.
func TestConcurrentEntries(t *testing.T) {
	k, _, dir := newKeypad(t, testConfig(1))
	writeFile = func(path string, data []byte, perm os.FileMode) error {
		time.Sleep(5 * time.Millisecond) // a slow disk widens the race
		return defaultWriteFile(path, data, perm)
	}
	defer func() { writeFile = defaultWriteFile }()
	var wg sync.WaitGroup
	outcomes := make(chan Outcome, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := Open(dir)
			if err != nil {
				t.Error(err)
				return
			}
			e, _ := k.Enter(t0, "000000000")
			outcomes <- e.Outcome
		}()
	}
	wg.Wait()
	close(outcomes)
	decoded := 0
	for o := range outcomes {
		if o != Waiting {
			decoded++
		}
	}
	if s := status(t, k, t0); s.FailedEntries != 1 || decoded != 1 {
		t.Fatalf("%d entries decoded, %d wrong entries counted; want 1 and 1 (the others hit the wait)", decoded, s.FailedEntries)
	}
}

func TestWaitAfter(t *testing.T) {
	for n, want := range map[int]time.Duration{0: 0, 1: time.Minute, 2: 2 * time.Minute, 10: 512 * time.Minute, 11: 512 * time.Minute, 1000: 512 * time.Minute} {
		if got := WaitAfter(n); got != want {
			t.Errorf("WaitAfter(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestClockSetBack(t *testing.T) {
	k, v, _ := newKeypad(t, testConfig(1))
	mustApply(t, k, t0, v.issue(openpaygo.AddTime, 1))
	if s, err := k.Observe(t0.Add(2 * day)); err != nil || s.Active {
		t.Fatalf("after the credit: %+v %v", s, err)
	}
	s := status(t, k, t0) // the clock is set back by two days
	if s.Active || !s.Now.Equal(t0.Add(2*day)) || !s.ClockBehind {
		t.Fatalf("clock set back revived the credit: %+v", s)
	}
	// Credit bought with the clock set back starts from the latest time seen.
	e := mustApply(t, k, t0, v.issue(openpaygo.AddTime, 1))
	if !e.Status.ActiveUntil.Equal(t0.Add(3 * day)) {
		t.Fatalf("active until %v, want %v", e.Status.ActiveUntil, t0.Add(3*day))
	}
	// A wait cannot be cut short by setting the clock back either.
	mustRefuse(t, k, t0.Add(2*day), "000000000", Invalid)
	if e, _ := k.Enter(t0, "000000000"); e.Outcome != Waiting {
		t.Fatalf("entry with the clock set back during a wait: %v", e.Outcome)
	}
}

func TestStateDeletedFailsClosed(t *testing.T) {
	k, v, dir := newKeypad(t, testConfig(1))
	oldSync := v.issue(openpaygo.CounterSync, 0)
	mustApply(t, k, t0, oldSync)
	old := v.issue(openpaygo.AddTime, 30)
	mustApply(t, k, t0, old)
	unused := v.issue(openpaygo.AddTime, 30) // sold, not yet typed in
	if err := os.Remove(filepath.Join(dir, StateFile)); err != nil {
		t.Fatal(err)
	}
	s := status(t, k, t0)
	if s.Active || s.Recovery == "" || !strings.Contains(s.Recovery, "deleted") || s.LastCount != 2 {
		t.Fatalf("after deleting the state: %+v; want no credit, recovery, count 2 from the guard", s)
	}
	// ADD_TIME tokens, old or new, are refused in recovery, and so is a
	// counter sync that is not newer than the count on record.
	e := mustRefuse(t, k, t0, old, RecoveryRefused)
	e = mustRefuse(t, k, e.Status.NextTry, unused, RecoveryRefused)
	e = mustRefuse(t, k, e.Status.NextTry, oldSync, AlreadyUsed)
	if e.Status.Active || !strings.Contains(e.Status.Recovery, "deleted") {
		t.Fatalf("recovery ended by an ADD_TIME token: %+v", e.Status)
	}
	now := e.Status.NextTry
	e = mustApply(t, k, now, v.issue(openpaygo.CounterSync, 0))
	if e.Status.Recovery != "" || e.Status.Active {
		t.Fatalf("after the counter sync: %+v", e.Status)
	}
	mustRefuse(t, k, now, unused, AlreadyUsed) // jumped over by the sync
	mustApply(t, k, now.Add(time.Minute), v.issue(openpaygo.AddTime, 5))
}

func TestStateDeletedSetTime(t *testing.T) {
	k, v, dir := newKeypad(t, testConfig(1))
	oldSet := v.issue(openpaygo.SetTime, 30)
	mustApply(t, k, t0, oldSet)
	os.Remove(filepath.Join(dir, StateFile))
	// The old SET_TIME token cannot be replayed: its count is on record.
	e := mustRefuse(t, k, t0, oldSet, AlreadyUsed)
	e = mustApply(t, k, e.Status.NextTry, v.issue(openpaygo.SetTime, 4))
	if e.Status.Recovery != "" || !e.Status.ActiveUntil.Equal(t0.Add(time.Minute+4*day)) {
		t.Fatalf("after the vendor's SET_TIME: %+v", e.Status)
	}
}

func TestNeverInitialisedDiffersFromDeleted(t *testing.T) {
	k, v, dir := newKeypad(t, testConfig(1))
	if s := status(t, k, t0); s.Recovery != "" {
		t.Fatalf("a new device is in recovery: %q", s.Recovery)
	}
	mustRefuse(t, k, t0, "000000000", Invalid) // the first write creates the state
	os.Remove(filepath.Join(dir, StateFile))
	if s := status(t, k, t0); s.Recovery == "" {
		t.Fatal("deleted state not noticed")
	} else if s.NextTry.IsZero() {
		t.Fatal("deleting the state ended the wait")
	}
	mustRefuse(t, k, t0.Add(time.Minute), v.issue(openpaygo.AddTime, 1), RecoveryRefused)
}

func TestStateCorruptOrStale(t *testing.T) {
	for name, spoil := range map[string]func(t *testing.T, p string, saved []byte){
		"garbage":   func(t *testing.T, p string, _ []byte) { os.WriteFile(p, []byte("{\"version\":1,"), 0o600) },
		"truncated": func(t *testing.T, p string, _ []byte) { os.Truncate(p, 0) },
		"edited": func(t *testing.T, p string, _ []byte) {
			data, _ := os.ReadFile(p)
			edited := strings.Replace(string(data), `"active_until": "2025-03`, `"active_until": "2099-03`, 1)
			if edited == string(data) {
				t.Fatalf("edit did not apply to %s", data)
			}
			os.WriteFile(p, []byte(edited), 0o600)
		},
		"older copy put back": func(t *testing.T, p string, saved []byte) { os.WriteFile(p, saved, 0o600) },
	} {
		t.Run(name, func(t *testing.T) {
			k, v, dir := newKeypad(t, testConfig(1))
			p := filepath.Join(dir, StateFile)
			mustApply(t, k, t0, v.issue(openpaygo.AddTime, 1))
			saved, _ := os.ReadFile(p)
			mustApply(t, k, t0, v.issue(openpaygo.AddTime, 10))
			spoil(t, p, saved)
			s := status(t, k, t0)
			if s.Active || s.Recovery == "" {
				t.Fatalf("%+v; want no credit and recovery", s)
			}
			mustRefuse(t, k, t0, v.issue(openpaygo.AddTime, 1), RecoveryRefused)
		})
	}
}

// TestOlderCopyPutBack: restoring a copy of the state from before a wrong
// entry does not end the wait, though the copy's count is current.
func TestOlderCopyPutBack(t *testing.T) {
	k, v, dir := newKeypad(t, testConfig(1))
	p := filepath.Join(dir, StateFile)
	mustApply(t, k, t0, v.issue(openpaygo.AddTime, 10))
	saved, _ := os.ReadFile(p)
	mustRefuse(t, k, t0, "000000000", Invalid)
	os.WriteFile(p, saved, 0o600)
	s := status(t, k, t0)
	if s.Active || !strings.Contains(s.Recovery, "older") || s.NextTry.IsZero() {
		t.Fatalf("%+v; want no credit, recovery, and the wait still on", s)
	}
}

// failAfterTemp simulates a process killed while writing: it leaves a
// truncated temporary file beside path and never renames it.
func failAfterTemp(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	f.Write(data[:len(data)/2])
	f.Close()
	return errors.New("killed")
}

func TestCrashDuringWrite(t *testing.T) {
	k, v, dir := newKeypad(t, testConfig(1))
	mustApply(t, k, t0, v.issue(openpaygo.AddTime, 3))
	before := status(t, k, t0)

	writeFile = failAfterTemp
	_, err := k.Enter(t0, v.issue(openpaygo.AddTime, 5))
	writeFile = defaultWriteFile
	if err == nil {
		t.Fatal("Enter succeeded although the write was killed")
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".keypad-state.json.tmp-*"))
	if len(leftovers) != 1 {
		t.Fatalf("want the killed write's temporary file, found %v", leftovers)
	}
	k, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	after := status(t, k, t0)
	if after.Recovery != "" || !after.ActiveUntil.Equal(before.ActiveUntil) || after.LastCount != before.LastCount {
		t.Fatalf("after a killed write: %+v; want the previous state %+v", after, before)
	}
	// The token whose write was killed was not applied: it still works.
	v.last -= 2
	mustApply(t, k, t0, v.issue(openpaygo.AddTime, 5))
}

// TestCrashBetweenStateAndGuard: the state is written, the process dies
// before the guard in the configuration follows; the new state stands.
func TestCrashBetweenStateAndGuard(t *testing.T) {
	k, v, _ := newKeypad(t, testConfig(1))
	mustApply(t, k, t0, v.issue(openpaygo.AddTime, 3))
	writeFile = func(path string, data []byte, perm os.FileMode) error {
		if filepath.Base(path) == ConfigFile {
			return failAfterTemp(path, data, perm)
		}
		return defaultWriteFile(path, data, perm)
	}
	k.Enter(t0, v.issue(openpaygo.AddTime, 5))
	writeFile = defaultWriteFile
	s := status(t, k, t0)
	if s.Recovery != "" || !s.ActiveUntil.Equal(t0.Add(8*day)) || s.LastCount != 4 {
		t.Fatalf("after a crash between the writes: %+v", s)
	}
	mustApply(t, k, t0, v.issue(openpaygo.AddTime, 1)) // and the next write catches the guard up
	if s := status(t, k, t0); s.Recovery != "" || s.LastCount != 6 {
		t.Fatalf("%+v", s)
	}
}

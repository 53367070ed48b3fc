// Package supervisor is the compliance supervisor on a device: it scores the
// device against the vendor's signed policy bundle (package
// compliance/policy) and puts it in one of three modes.
//
// Score. Each policy is a check (checks.go) with a weight; the score is the
// weight of the policies that pass (or fail within their grace period) over
// the total weight, 0 to 100. It is computed at start, on every state change
// and on a timer (Evaluate; the daemon in Run).
//
// Modes, with hysteresis so the mode does not flap (NextMode): below the
// sanction threshold the device is in sanction mode (metered programs are
// told to run limited and their sessions are bounded, the user is told what
// is wrong and how to fix it) until the score reaches the threshold plus the
// margin; below the non-operational threshold nothing runs and no one logs
// in but the recovery account, paid credit notwithstanding, until a reset
// packet for this device arrives from the vendor (or, when the bundle says
// reset_required: false, the score reaches that threshold plus the margin).
//
// Tampering the supervisor sees (a bundle or reset packet that does not
// verify, the policy file changed on disk, a deleted state, the clock set
// back, a forged packet) is recorded in the state, refused, and scored by
// the policy_intact, clock and packets checks until a reset.
//
// State. The state is sealed with AES-256-GCM (state.go), so it cannot be
// edited. With a TPM 2.0 (Env.TPM) the key is sealed in the TPM and every
// write that changes the outcome advances a TPM NV counter recorded with
// the state (internal/tpmseal), so an older copy put back is detected on
// the device. Without one the key is a device-local file and an older copy
// of the whole directory can be restored, which the vendor sees in the
// reports at sync. Readers (Verdict: 'licet agent run', the PAM check) fail closed when
// compliance is set up and the state is missing, damaged or stale; a device
// that never received a bundle keeps the behaviour it had without one.
package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/licet/licet/compliance/policy"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/fsutil"
	"github.com/licet/licet/payg/meter"
)

// Dir is the supervisor's directory inside an agent directory.
const Dir = "compliance"

// HeartbeatFile is the file the payg daemon touches every tick, in the
// payg directory.
const HeartbeatFile = "daemon.beat"

// clockSlack is how far the wall clock may go back before it is a rollback.
const clockSlack = 5 * time.Minute

// Supervisor is the compliance state of one agent directory.
type Supervisor struct {
	env    Env
	st     store
	hashes *hashCache

	mu      sync.Mutex
	doc     *policy.Document // the installed bundle, verified
	docText string
}

// New returns the supervisor of agent directory data.
func New(data string, env Env) *Supervisor {
	if env.ProcStatus == "" {
		env.ProcStatus = "/proc/self/status"
	}
	if env.Executable == "" {
		env.Executable, _ = os.Executable()
	}
	if env.Heartbeat == "" {
		env.Heartbeat = filepath.Join(data, "payg", HeartbeatFile)
	}
	if env.Meter == nil {
		env.Meter = meter.New(filepath.Join(data, "payg"), meter.Options{})
	}
	return &Supervisor{env: env, st: newStore(filepath.Join(data, Dir), env.TPM), hashes: &hashCache{}}
}

// SealNote says how the state is sealed when it cannot be read: with the
// TPM (and which) or with the file-based seal. A state read says more
// (State.Seal: the counter).
func (s *Supervisor) SealNote() string { return s.st.note() }

// SetUp reports whether compliance is set up on the device: a bundle was
// installed once (its key or state exist).
func (s *Supervisor) SetUp() bool { return s.st.setUp() }

// State returns the sealed state as last written.
func (s *Supervisor) State() (*State, error) {
	unlock, err := s.st.lock(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.st.read()
}

// event appends a tampering event (the caller holds the lock).
func (st *State) event(now time.Time, kind, format string, a ...any) {
	st.Tamper = append(st.Tamper, Event{At: now.UTC(), Kind: kind, What: fmt.Sprintf(format, a...)})
	if len(st.Tamper) > 50 {
		st.Tamper = st.Tamper[len(st.Tamper)-50:]
	}
}

// loadForWrite reads the state under the exclusive lock. A state that is
// missing (on a set-up device) or does not unseal starts again empty with
// the tampering recorded, so that it is scored once a bundle is installed.
func (s *Supervisor) loadForWrite(now time.Time) (*State, func(), error) {
	unlock, err := s.st.lock(true)
	if err != nil {
		return nil, nil, err
	}
	st, err := s.st.read()
	switch {
	case err == nil:
	case err == errMissing:
		st = &State{}
	case errs.Is(err, errs.Invalid):
		st = &State{}
		st.event(now, "state", "the compliance state was lost or changed (%v); reinstalled from the vendor's bundle", err)
	default:
		unlock()
		return nil, nil, err
	}
	return st, unlock, nil
}

// Install verifies an armored bundle against the vendor root and installs
// it. A bundle that does not verify is refused, the installed one is kept,
// and the attempt is recorded as tampering. A version lower than the
// installed one is refused (errs.Conflict); the same version is accepted
// only with the same content. It returns the installed document and
// whether it was new; the caller then evaluates.
func (s *Supervisor) Install(text []byte) (*policy.Document, bool, error) {
	now := s.env.now()
	if s.env.Root == nil {
		return nil, false, errs.E(errs.Internal, "compliance: installing a bundle needs the pinned vendor root")
	}
	doc, verr := policy.Open(text, s.env.Root, now)
	if verr != nil && !s.SetUp() {
		return nil, false, errs.Wrap(errs.KindOf(verr), verr, "policy bundle refused")
	}
	st, unlock, err := s.loadForWrite(now)
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	if verr != nil {
		st.event(now, "bundle", "a policy bundle that does not verify was offered and refused: %v", verr)
		if err := s.st.write(st); err != nil {
			return nil, false, err
		}
		return nil, false, errs.Wrap(errs.Invalid, verr, "policy bundle refused (the installed version %d is kept, and the attempt counts against the compliance score)", st.BundleVersion)
	}
	switch {
	case doc.Version < st.BundleVersion:
		return nil, false, errs.E(errs.Conflict, "policy bundle version %d is older than the installed version %d: a rolled-back bundle is refused", doc.Version, st.BundleVersion)
	case doc.Version == st.BundleVersion && st.Bundle != "":
		if strings.TrimSpace(st.Bundle) != strings.TrimSpace(string(text)) {
			old, _ := policy.Open([]byte(st.Bundle), s.env.Root, now)
			if old == nil || !sameDoc(old, doc) {
				return nil, false, errs.E(errs.Conflict, "policy bundle version %d differs from the installed bundle of the same version: the vendor must publish a new version", doc.Version)
			}
		}
		return doc, false, nil
	}
	st.Bundle, st.BundleVersion = string(text), doc.Version
	if err := s.st.write(st); err != nil {
		return nil, false, err
	}
	fsutil.WriteFileAtomic(s.st.path(BundleFile), text, 0o644)
	return doc, true, nil
}

func sameDoc(a, b *policy.Document) bool {
	return fmt.Sprintf("%+v", *a) == fmt.Sprintf("%+v", *b)
}

// ApplyReset verifies a reset packet: for this device (deviceID), signed
// under the vendor root, with a sequence above the last one applied. It
// clears the non-operational latch, the tampering record and the grace
// timers; the caller then evaluates. A reset of another device is refused
// (errs.Forbidden) and recorded.
func (s *Supervisor) ApplyReset(text []byte, deviceID string) (*policy.Reset, error) {
	now := s.env.now()
	if s.env.Root == nil {
		return nil, errs.E(errs.Internal, "compliance: a reset needs the pinned vendor root")
	}
	r, rerr := policy.OpenReset(text, s.env.Root, deviceID, now)
	st, unlock, err := s.loadForWrite(now)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if rerr != nil {
		st.event(now, "reset", "a reset packet was refused: %v", rerr)
		if err := s.st.write(st); err != nil {
			return nil, err
		}
		return nil, errs.Wrap(errs.KindOf(rerr), rerr, "reset packet refused")
	}
	if r.Sequence <= st.ResetSequence {
		return nil, errs.E(errs.Conflict, "reset packet %d was already applied (last %d): a replayed reset is refused", r.Sequence, st.ResetSequence)
	}
	st.ResetSequence = r.Sequence
	st.Tamper, st.FailingSince = nil, nil
	st.WallHigh = now
	if st.Mode == ModeNonOperational {
		st.Mode = ModeCompliant // the latch is lifted: the next evaluation scores afresh
	}
	return r, s.st.write(st)
}

// Note records a tampering seen elsewhere in the agent (kind "packet": a
// forged packet offered) when compliance is set up; it is scored at the
// next evaluation.
func (s *Supervisor) Note(kind, what string) error {
	if !s.SetUp() {
		return nil
	}
	now := s.env.now()
	st, unlock, err := s.loadForWrite(now)
	if err != nil {
		return err
	}
	defer unlock()
	st.event(now, kind, "%s", what)
	return s.st.write(st)
}

// Score computes the score of results: the weight not counted against it
// over the total weight, 0..100.
func Score(results []Result) int {
	total, good := 0, 0
	for _, r := range results {
		total += r.Weight
		if !r.Counted {
			good += r.Weight
		}
	}
	if total == 0 {
		return 100
	}
	return good * 100 / total
}

// NextMode is the mode after an evaluation with score, from mode cur,
// with hysteresis: entering a mode takes a score below its threshold;
// leaving it takes the threshold plus the margin.
func NextMode(cur string, score int, t policy.Thresholds) string {
	switch cur {
	case ModeNonOperational:
		if t.NeedsReset() || score < t.NonOperational+t.Margin {
			return ModeNonOperational
		}
		if score >= t.Sanction+t.Margin {
			return ModeCompliant
		}
		return ModeSanction
	case ModeSanction:
		switch {
		case score < t.NonOperational:
			return ModeNonOperational
		case score >= t.Sanction+t.Margin:
			return ModeCompliant
		}
		return ModeSanction
	}
	switch {
	case score < t.NonOperational:
		return ModeNonOperational
	case score < t.Sanction:
		return ModeSanction
	}
	return ModeCompliant
}

// Evaluate runs every policy of the installed bundle, scores them, moves
// the mode and stores the state. It fails when no bundle is installed
// (errs.NotFound) or the state cannot be written.
func (s *Supervisor) Evaluate(ctx context.Context) (*State, error) {
	now := s.env.now()
	st, unlock, err := s.loadForWrite(now)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if st.Bundle == "" {
		if len(st.Tamper) > 0 && s.SetUp() {
			s.st.write(st) // keep the record for when a bundle arrives
			return nil, errs.E(errs.Invalid, "the compliance state was lost: sync with the vendor or import the policy bundle again")
		}
		return nil, errMissing
	}
	doc, err := s.document(st.Bundle, now)
	if err != nil {
		return nil, err
	}
	before := st.material()
	s.evaluate(ctx, st, doc, now)
	return st, s.st.writeAs(st, st.material() != before)
}

// document opens the installed bundle, once per process and bundle.
func (s *Supervisor) document(text string, now time.Time) (*policy.Document, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.docText == text && s.doc != nil {
		return s.doc, nil
	}
	doc, err := policy.Open([]byte(text), s.env.Root, now)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "the installed policy bundle no longer verifies")
	}
	s.doc, s.docText = doc, text
	return doc, nil
}

// evaluate is Evaluate on a loaded state.
func (s *Supervisor) evaluate(ctx context.Context, st *State, doc *policy.Document, now time.Time) {
	// The readable copy of the bundle must be the sealed one.
	if b, err := os.ReadFile(s.st.path(BundleFile)); err != nil || !bytes.Equal(bytes.TrimSpace(b), bytes.TrimSpace([]byte(st.Bundle))) {
		if err == nil {
			st.event(now, "bundle", "%s was changed on disk; the last valid bundle (version %d) is kept", BundleFile, st.BundleVersion)
		}
		fsutil.WriteFileAtomic(s.st.path(BundleFile), []byte(st.Bundle), 0o644)
	}
	// The wall clock's high-water mark: going back is a rollback.
	if !st.WallHigh.IsZero() && now.Before(st.WallHigh.Add(-clockSlack)) {
		st.event(now, "clock", "the clock was set back by %s (from %s)", st.WallHigh.Sub(now).Round(time.Second), st.WallHigh.UTC().Format(time.RFC3339))
	}
	if now.After(st.WallHigh) {
		st.WallHigh = now
	}
	f := &facts{env: &s.env, st: st, now: now, hashes: s.hashes}
	f.meter = s.env.Meter.Status()
	f.reg, f.regErr = s.env.Meter.Registration()
	if st.FailingSince == nil {
		st.FailingSince = map[string]time.Time{}
	}
	results := make([]Result, 0, len(doc.Policies))
	var reasons []string
	for i := range doc.Policies {
		p := &doc.Policies[i]
		o := checks[p.Check](ctx, f, p)
		r := Result{ID: p.ID, Check: p.Check, Weight: p.Weight, Pass: o.pass, Detail: o.detail}
		if o.pass {
			delete(st.FailingSince, p.ID)
		} else {
			since, ok := st.FailingSince[p.ID]
			if !ok || since.After(now) {
				since = now
				st.FailingSince[p.ID] = since
			}
			r.FailingSince, r.Fix = &since, p.Fix
			if left := p.Grace.D() - now.Sub(since); left > 0 {
				r.GraceLeft = left.Round(time.Second).String()
			} else {
				r.Counted = true
				reasons = append(reasons, fmt.Sprintf("%s: %s. To fix: %s", p.ID, o.detail, p.Fix))
			}
		}
		results = append(results, r)
	}
	st.Results, st.Reasons = results, reasons
	st.Score = Score(results)
	cur := st.Mode
	st.Mode = NextMode(cur, st.Score, doc.Thresholds)
	st.Evaluated = now
	st.Evaluations++
	st.StaleAfter = 3 * doc.EvaluateEvery.D()
	st.SessionLimit = doc.SanctionSessionLimit.D()
}

// Verdict is what the run wrapper and the login check act on.
type Verdict struct {
	Mode         string        `json:"mode"` // ModeNone when compliance is not set up
	Score        int           `json:"score"`
	Reasons      []string      `json:"reasons,omitempty"`
	SessionLimit time.Duration `json:"session_limit,omitempty"`
}

// Verdict reads the state for a decision. Compliance not set up: ModeNone
// and no error (today's behaviour). Set up but the state missing, damaged
// or older than its stale limit (or from the future): an errs.Forbidden
// error, so the caller fails closed.
func (s *Supervisor) Verdict() (Verdict, error) {
	if !s.SetUp() {
		return Verdict{Mode: ModeNone}, nil
	}
	st, err := s.State()
	if err != nil {
		return Verdict{}, errs.Wrap(errs.Forbidden, err, "the compliance supervisor's state cannot be read; start licet-supervisor or sync with the vendor")
	}
	now := s.env.now()
	if st.Evaluated.IsZero() || st.StaleAfter <= 0 {
		return Verdict{}, errs.E(errs.Forbidden, "the compliance supervisor has not evaluated this device yet; start licet-supervisor ('licet agent compliance supervise')")
	}
	if age := now.Sub(st.Evaluated); age > st.StaleAfter || age < -clockSlack {
		return Verdict{}, errs.E(errs.Forbidden, "the compliance supervisor's state is stale (evaluated %s, %s ago; at most %s): start licet-supervisor ('licet agent compliance supervise')",
			st.Evaluated.UTC().Format(time.RFC3339), age.Round(time.Second), st.StaleAfter)
	}
	return Verdict{Mode: st.Mode, Score: st.Score, Reasons: st.Reasons, SessionLimit: st.SessionLimit}, nil
}

// Report is what the device tells the vendor at a sync (nil state: not set
// up yet, which asks for the bundle).
func (s *Supervisor) Report() policy.Report {
	st, err := s.State()
	if err != nil {
		return policy.Report{Mode: "unknown"}
	}
	rep := policy.Report{BundleVersion: st.BundleVersion, ResetSequence: st.ResetSequence, Score: st.Score, Mode: st.Mode, Evaluated: st.Evaluated}
	for _, r := range st.Results {
		if r.Counted {
			rep.Failing = append(rep.Failing, r.ID)
		}
	}
	if st.Mode == "" && st.Evaluated.IsZero() {
		rep.Mode = "unknown"
	}
	return rep
}

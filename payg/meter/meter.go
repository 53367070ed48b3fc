package meter

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/faultpoint"
	"github.com/licet/licet/internal/fsutil"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/payg/packet"
)

// Files of a registration, beside the log.
const (
	DeviceFile  = "device.json" // device ID, account, certificate chain, server
	InitKeyFile = "init.key"    // the initialization key, mode 0600
)

// DefaultMaxForwardJump bounds how far a new boot's wall clock may move the
// meter's time beyond its last trusted time.
const DefaultMaxForwardJump = 48 * time.Hour

// DefaultLowMark is the balance below which the state is "low".
const DefaultLowMark = time.Hour

// skewNote is how far the wall clock may stray from the meter's time before
// the status mentions it.
const skewNote = 5 * time.Minute

// Registration is what registering the device with the vendor gave it.
type Registration struct {
	Version      int       `json:"version"`
	DeviceID     string    `json:"device_id"`
	Account      string    `json:"account"`
	Server       string    `json:"server,omitempty"`
	Certificates [][]byte  `json:"certificates"` // device certificate, provisioning certificate (DER)
	RegisteredAt time.Time `json:"registered_at"`
	// BaseSequence is the device's last packet before this registration,
	// when the vendor knew the device (a re-registration from a fresh
	// directory): those packets were for an earlier installation, and
	// this one applies the packets after it. Recorded in the log's first
	// record.
	BaseSequence uint64 `json:"base_sequence,omitempty"`
}

// Options configure a Meter.
type Options struct {
	// Clock is the time source; nil means SystemClock.
	Clock Clock
	// Root is the vendor root packets must chain to; needed to apply packets.
	Root *x509.Certificate
	// Decrypter is the device's HPKE key; needed to apply packets.
	Decrypter *keys.Decrypter
	// MaxForwardJump bounds the wall clock's forward jump at a new boot;
	// zero means DefaultMaxForwardJump.
	MaxForwardJump time.Duration
	// LowMark is the balance under which the state is "low"; zero means
	// DefaultLowMark.
	LowMark time.Duration
}

// Meter is the pay-as-you-go state in one directory. Its methods are safe
// for concurrent use, also by several processes (they take a file lock).
type Meter struct {
	dir  string
	opts Options
}

// New returns the meter of directory dir (the agent's payg directory). It
// reads nothing yet: a missing or damaged state shows in Status.
func New(dir string, opts Options) *Meter {
	if opts.Clock == nil {
		opts.Clock = SystemClock{}
	}
	if opts.MaxForwardJump <= 0 {
		opts.MaxForwardJump = DefaultMaxForwardJump
	}
	if opts.LowMark <= 0 {
		opts.LowMark = DefaultLowMark
	}
	return &Meter{dir: dir, opts: opts}
}

// Dir returns the meter's directory.
func (m *Meter) Dir() string { return m.dir }

// Registered reports whether any file of a registration is present.
func (m *Meter) Registered() bool {
	for _, n := range []string{DeviceFile, LogFile, HeadFile, KeyFile} {
		if _, err := os.Lstat(filepath.Join(m.dir, n)); err == nil {
			return true
		}
	}
	return false
}

// Init records a new registration: the meter key, the initialization key,
// the log's first record, and device.json last. It refuses to replace an
// existing registration.
func (m *Meter) Init(reg Registration, initKey []byte) error {
	if reg.DeviceID == "" || len(initKey) != 32 {
		return errs.E(errs.Invalid, "a registration needs a device ID and a 32-byte initialization key")
	}
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return errs.Wrap(errs.Internal, err, "create %s", m.dir)
	}
	if m.Registered() {
		return errs.E(errs.Conflict, "this device is already registered for pay-as-you-go (state in %s); its credit lives there, so licet will not overwrite it", m.dir)
	}
	key, err := newKey(m.dir)
	if err != nil {
		return err
	}
	s := &store{dir: m.dir, key: key}
	unlock, err := s.lock(true)
	if err != nil {
		return err
	}
	defer unlock()
	if err := fsutil.WriteFileAtomic(filepath.Join(m.dir, InitKeyFile), []byte(base64.StdEncoding.EncodeToString(initKey)+"\n"), 0o600); err != nil {
		return errs.Wrap(errs.Internal, err, "store the initialization key")
	}
	boot, bns := m.opts.Clock.Boot()
	wall := m.opts.Clock.Wall()
	f := &folded{}
	if err := s.appendRecord(f, 0, &record{Type: recInit, DeviceID: reg.DeviceID, Sequence: reg.BaseSequence, Trusted: wall, Wall: wall, Boot: boot, BootNS: int64(bns)}); err != nil {
		return err
	}
	reg.Version = 1
	b, _ := json.MarshalIndent(reg, "", "  ")
	if err := fsutil.WriteFileAtomic(filepath.Join(m.dir, DeviceFile), append(b, '\n'), 0o644); err != nil {
		return errs.Wrap(errs.Internal, err, "write %s", DeviceFile)
	}
	return nil
}

// Registration returns the stored registration.
func (m *Meter) Registration() (*Registration, error) {
	b, err := os.ReadFile(filepath.Join(m.dir, DeviceFile))
	if errors.Is(err, fs.ErrNotExist) {
		if m.Registered() {
			return nil, tampered("%s was deleted from %s", DeviceFile, m.dir)
		}
		return nil, errs.E(errs.NotFound, "this device is not registered for pay-as-you-go; run 'licet agent payg register --server URL --code CODE'")
	}
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "read %s", DeviceFile)
	}
	var r Registration
	if err := json.Unmarshal(b, &r); err != nil || r.DeviceID == "" {
		return nil, tampered("%s in %s is damaged", DeviceFile, m.dir)
	}
	return &r, nil
}

// InitKey returns the stored initialization key.
func (m *Meter) InitKey() ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(m.dir, InitKeyFile))
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "read the initialization key")
	}
	k, err := base64.StdEncoding.DecodeString(string(trimSpace(b)))
	if err != nil || len(k) != 32 {
		return nil, errs.E(errs.Invalid, "%s in %s is damaged", InitKeyFile, m.dir)
	}
	return k, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// open loads the key and checks the registration; the caller then locks.
func (m *Meter) open() (*store, *Registration, error) {
	reg, err := m.Registration()
	if err != nil {
		return nil, nil, err
	}
	key, err := loadKey(m.dir)
	if err != nil {
		return nil, nil, err
	}
	return &store{dir: m.dir, key: key}, reg, nil
}

// load reads and verifies the state under a lock; exclusive for writers.
// The caller must call the returned unlock.
func (m *Meter) load(exclusive bool) (*store, *folded, int64, func(), error) {
	s, reg, err := m.open()
	if err != nil {
		return nil, nil, 0, nil, err
	}
	unlock, err := s.lock(exclusive)
	if err != nil {
		return nil, nil, 0, nil, err
	}
	f, good, err := s.read()
	if err != nil {
		unlock()
		return nil, nil, 0, nil, err
	}
	if f.DeviceID != reg.DeviceID {
		unlock()
		return nil, nil, 0, nil, tampered("the state log is for device %s, but %s names %s", f.DeviceID, DeviceFile, reg.DeviceID)
	}
	return s, f, good, unlock, nil
}

// now returns the meter's trusted time for state f, and a note on the wall
// clock when it strays. newBoot says that f's anchor is from another boot,
// so the time was bounded from the wall clock.
func (m *Meter) now(f *folded) (t time.Time, note string, newBoot bool) {
	boot, bns := m.opts.Clock.Boot()
	wall := m.opts.Clock.Wall()
	if boot == f.Boot && int64(bns) >= f.BootNS {
		t = f.Trusted.Add(time.Duration(int64(bns) - f.BootNS))
		if d := wall.Sub(t); d > skewNote {
			note = fmt.Sprintf("the wall clock is %s ahead of the meter's time; the meter keeps its own time until a packet re-anchors it", roundD(d))
		} else if d < -skewNote {
			note = fmt.Sprintf("the wall clock is %s behind the meter's time (set back?); the meter ignores it", roundD(-d))
		}
		return t, note, false
	}
	lo, hi := f.Trusted, f.Trusted.Add(m.opts.MaxForwardJump)
	switch {
	case wall.Before(lo):
		return lo, fmt.Sprintf("at boot the wall clock was %s behind the meter's last time (set back?); the meter kept its own time", roundD(lo.Sub(wall))), true
	case wall.After(hi):
		return hi, fmt.Sprintf("at boot the wall clock was %s ahead of the meter's last time; the meter moved forward by at most %s", roundD(wall.Sub(lo)), m.opts.MaxForwardJump), true
	}
	return wall, "", true
}

func roundD(d time.Duration) time.Duration {
	if d > time.Hour {
		return d.Round(time.Minute)
	}
	return d.Round(time.Second)
}

// anchor appends a clock record if f's anchor is from another boot, and
// returns the trusted time. The caller holds the exclusive lock.
func (m *Meter) anchor(s *store, f *folded, good *int64) (time.Time, error) {
	t, note, newBoot := m.now(f)
	if !newBoot {
		return t, nil
	}
	boot, bns := m.opts.Clock.Boot()
	if err := s.appendRecord(f, *good, &record{Type: recClock, Trusted: t, Wall: m.opts.Clock.Wall(), Boot: boot, BootNS: int64(bns), Note: note}); err != nil {
		return t, err
	}
	*good = -1 // re-derived below
	return t, m.refreshGood(s, good)
}

// refreshGood sets *good to the log's current length after a write.
func (m *Meter) refreshGood(s *store, good *int64) error {
	fi, err := os.Stat(s.path(LogFile))
	if err != nil {
		return errs.Wrap(errs.Internal, err, "stat the state log")
	}
	*good = fi.Size()
	return nil
}

// States of the meter.
const (
	StateActive       = "active"       // credit above the low mark
	StateLow          = "low"          // credit, but below the low mark
	StateSpent        = "spent"        // no credit: metered use stops, logins are refused
	StateTampered     = "tampered"     // the state failed its checks: no credit
	StateUnregistered = "unregistered" // not registered: no credit
)

// Status is the meter's state as the CLI and the local API show it.
type Status struct {
	State    string `json:"state"`
	Reason   string `json:"reason,omitempty"`
	DeviceID string `json:"device_id,omitempty"`
	Account  string `json:"account,omitempty"`
	Server   string `json:"server,omitempty"`

	// BalanceSeconds is the seconds of credit left (never negative).
	BalanceSeconds int64 `json:"balance_seconds"`
	// Until is the end of the latest "until" plan, if any.
	Until *time.Time `json:"until,omitempty"`
	// UntilActive says the meter's time is before Until: use is covered.
	UntilActive bool `json:"until_active"`

	CreditSeconds   int64      `json:"credit_seconds"`
	UsedSeconds     int64      `json:"used_seconds"`
	ChargedSeconds  int64      `json:"charged_seconds"`
	HighestSequence uint64     `json:"highest_sequence"`
	LastSync        *time.Time `json:"last_sync,omitempty"`
	LastPacket      *time.Time `json:"last_packet,omitempty"`

	// MeterTime is the meter's trusted time; WallTime the system clock's.
	MeterTime time.Time `json:"meter_time"`
	WallTime  time.Time `json:"wall_time"`
	ClockNote string    `json:"clock_note,omitempty"`

	balance time.Duration
}

// Allowed reports whether the device may be used: credit or a current
// "until" plan, and a trustworthy state.
func (s Status) Allowed() bool { return s.State == StateActive || s.State == StateLow }

// Remaining is the use left before the credit runs out: the seconds of
// credit plus, under an "until" plan, the time to its end.
func (s Status) Remaining() time.Duration {
	r := s.balance
	if r == 0 { // a Status decoded from JSON
		r = time.Duration(s.BalanceSeconds) * time.Second
	}
	if s.UntilActive && s.Until != nil {
		r += s.Until.Sub(s.MeterTime)
	}
	return r
}

// Status reads the state and says what it allows. A damaged state gives
// a Status with State "tampered" and the reason, and no error.
func (m *Meter) Status() Status {
	st, err := m.status()
	if err != nil {
		return errorStatus(err)
	}
	return st
}

func errorStatus(err error) Status {
	st := Status{State: StateTampered, Reason: err.Error()}
	if r, ok := IsTampered(err); ok {
		st.Reason = r
	} else if errs.Is(err, errs.NotFound) {
		st.State = StateUnregistered
	}
	return st
}

func (m *Meter) status() (Status, error) {
	_, f, _, unlock, err := m.load(false)
	if err != nil {
		return Status{}, err
	}
	unlock()
	reg, err := m.Registration()
	if err != nil {
		return Status{}, err
	}
	return m.statusOf(f, reg), nil
}

func (m *Meter) statusOf(f *folded, reg *Registration) Status {
	t, note, _ := m.now(f)
	if note == "" {
		note = f.ClockNote
	}
	bal := max(f.CreditNS-f.ChargedNS, 0)
	st := Status{
		DeviceID: f.DeviceID, Account: reg.Account, Server: reg.Server,
		BalanceSeconds: bal / int64(time.Second), Until: f.Until,
		CreditSeconds: f.CreditNS / int64(time.Second), UsedSeconds: f.UsedNS / int64(time.Second),
		ChargedSeconds: f.ChargedNS / int64(time.Second), HighestSequence: f.Highest,
		LastSync: f.LastSync, LastPacket: f.LastPacket,
		MeterTime: t, WallTime: m.opts.Clock.Wall(), ClockNote: note,
		balance: time.Duration(bal),
	}
	st.UntilActive = f.Until != nil && t.Before(*f.Until)
	switch r := st.Remaining(); {
	case r <= 0:
		st.State = StateSpent
		st.Reason = "no credit left; top up with 'licet agent payg sync' or 'licet agent payg import FILE'"
	case r < m.opts.LowMark:
		st.State = StateLow
	default:
		st.State = StateActive
	}
	return st
}

// Applied is one packet applied.
type Applied struct {
	Sequence uint64     `json:"sequence"`
	Seconds  int64      `json:"seconds,omitempty"`
	Until    *time.Time `json:"until,omitempty"`
	Sale     string     `json:"sale"`
}

// Apply opens, verifies and applies armored packets (in any order; they are
// applied by sequence). It applies every packet it can and returns those,
// with the first refusal: a packet already applied (replay) or out of order
// is an errs.Conflict; one that does not open, verify or name this device
// is errs.Invalid.
func (m *Meter) Apply(texts [][]byte) ([]Applied, error) {
	applied, _, err := m.apply(texts, false)
	return applied, err
}

// applyInOrder applies armored packets in the order given and stops at the
// first one refused (later sequences cannot apply before it). refused is
// that packet's index in texts, or -1 when none was refused; err is the
// refusal, or a failure to read or write the state (refused -1).
func (m *Meter) applyInOrder(texts [][]byte) (applied []Applied, refused int, err error) {
	return m.apply(texts, true)
}

// apply is Apply, or with inOrder applyInOrder: the packets in the order
// given, stopping at the first refusal, whose index in texts it returns
// (-1 for none, or for an error that is not a packet's refusal).
func (m *Meter) apply(texts [][]byte, inOrder bool) ([]Applied, int, error) {
	if m.opts.Root == nil || m.opts.Decrypter == nil {
		return nil, -1, errs.E(errs.Internal, "meter: applying packets needs the vendor root and the device key")
	}
	s, f, good, unlock, err := m.load(true)
	if err != nil {
		return nil, -1, err
	}
	defer unlock()
	now, err := m.anchor(s, f, &good)
	if err != nil {
		return nil, -1, err
	}
	var firstErr error
	refused := -1
	type opened struct {
		p     *packet.Packet
		hash  string
		index int // in texts
	}
	var ps []opened
	// Format version 2 packets are sealed under a key derived from the
	// initialization key; without it only version 1 packets open.
	initKey, _ := m.InitKey()
	pk := packet.Keys{Decrypter: m.opts.Decrypter, InitKey: initKey}
	for i, text := range texts {
		p, err := packet.OpenWith(text, pk, m.opts.Root, f.DeviceID, now)
		if err != nil {
			if inOrder {
				firstErr, refused = err, i
				break
			}
			if firstErr == nil {
				firstErr = errs.Wrap(errs.KindOf(err), err, "packet %d of %d refused", i+1, len(texts))
			}
			continue
		}
		sum := sha256.Sum256(text)
		ps = append(ps, opened{p, hex.EncodeToString(sum[:]), i})
	}
	if !inOrder {
		sort.SliceStable(ps, func(i, j int) bool { return ps[i].p.Sequence < ps[j].p.Sequence })
	}
	var applied []Applied
	for _, o := range ps {
		p := o.p
		var refusal error
		if p.Sequence <= f.Highest {
			refusal = errs.E(errs.Conflict, "packet %d (sale %s) was already applied: a replayed packet is refused", p.Sequence, p.Sale)
		} else if p.Sequence != f.Highest+1 {
			refusal = errs.E(errs.Conflict, "packet %d cannot be applied before packet %d: sync, or import the missing packets first", p.Sequence, f.Highest+1)
		}
		if refusal != nil {
			if inOrder {
				// Refused before any packet that did not open.
				firstErr, refused = refusal, o.index
				break
			}
			if firstErr == nil {
				firstErr = refusal
			}
			continue
		}
		t, _, _ := m.now(f)
		if p.ServerTime.After(t) {
			t = p.ServerTime // the signed server time re-anchors forward
		}
		boot, bns := m.opts.Clock.Boot()
		st := p.ServerTime
		r := &record{Type: recPacket, Trusted: t, Wall: m.opts.Clock.Wall(), Boot: boot, BootNS: int64(bns),
			Sequence: p.Sequence, Seconds: p.Seconds, Until: p.Until, ServerTime: &st, Sale: p.Sale, PacketHash: o.hash}
		faultpoint.Hit("meter.apply.before-append")
		if err := s.appendRecord(f, good, r); err != nil {
			return applied, -1, err
		}
		if err := m.refreshGood(s, &good); err != nil {
			return applied, -1, err
		}
		applied = append(applied, Applied{Sequence: p.Sequence, Seconds: p.Seconds, Until: p.Until, Sale: p.Sale})
	}
	return applied, refused, firstErr
}

// RecordSync notes a successful sync with the vendor.
func (m *Meter) RecordSync() error {
	s, f, good, unlock, err := m.load(true)
	if err != nil {
		return err
	}
	defer unlock()
	t, err := m.anchor(s, f, &good)
	if err != nil {
		return err
	}
	boot, bns := m.opts.Clock.Boot()
	return s.appendRecord(f, good, &record{Type: recSync, Trusted: t, Wall: m.opts.Clock.Wall(), Boot: boot, BootNS: int64(bns)})
}

// Report is what the device tells the vendor at a sync.
type Report struct {
	HighestSequence uint64 `json:"highest_sequence"`
	UsedSeconds     int64  `json:"used_seconds"`
}

// Report returns the highest sequence applied and the seconds of use.
func (m *Meter) Report() (Report, error) {
	_, f, _, unlock, err := m.load(false)
	if err != nil {
		return Report{}, err
	}
	unlock()
	return Report{HighestSequence: f.Highest, UsedSeconds: f.UsedNS / int64(time.Second)}, nil
}

// Usage meters one consumer of the device's time: a user session or a
// metered program. Tick charges the time since the previous tick.
type Usage struct {
	m        *Meter
	consumer string
	boot     string
	last     int64
}

// StartUsage begins metering a consumer from now.
func (m *Meter) StartUsage(consumer string) *Usage {
	boot, bns := m.opts.Clock.Boot()
	return &Usage{m: m, consumer: consumer, boot: boot, last: int64(bns)}
}

// Tick charges the use since the previous tick (or StartUsage), except
// what another consumer already charged on this boot, and returns the
// status after it. Use covered by an "until" plan is recorded but draws no
// seconds; the seconds drawn never exceed the balance.
func (u *Usage) Tick() (Status, error) {
	m := u.m
	s, f, good, unlock, err := m.load(true)
	if err != nil {
		return errorStatus(err), err
	}
	defer unlock()
	if _, err := m.anchor(s, f, &good); err != nil {
		return errorStatus(err), err
	}
	reg, err := m.Registration()
	if err != nil {
		return errorStatus(err), err
	}
	boot, bns := m.opts.Clock.Boot()
	now := int64(bns)
	if boot != u.boot || now < u.last {
		u.boot, u.last = boot, now // rebooted under us: start again
		return m.statusOf(f, reg), nil
	}
	from := u.last
	if f.UseBoot == boot && f.UseTo > from {
		from = f.UseTo // already charged by another consumer
	}
	u.last = now
	if now <= from {
		return m.statusOf(f, reg), nil
	}
	used := now - from
	t, _, _ := m.now(f)
	charged := used
	if f.Until != nil {
		start := t.Add(-time.Duration(used))
		covered := min(max(f.Until.Sub(start), 0), time.Duration(used))
		charged -= int64(covered)
	}
	charged = min(charged, max(f.CreditNS-f.ChargedNS, 0))
	r := &record{Type: recUse, Trusted: t, Wall: m.opts.Clock.Wall(), Boot: boot, BootNS: now,
		FromNS: from, UsedNS: used, ChargedNS: charged, Consumer: u.consumer}
	if err := s.appendRecord(f, good, r); err != nil {
		return errorStatus(err), err
	}
	return m.statusOf(f, reg), nil
}

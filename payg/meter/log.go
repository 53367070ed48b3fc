package meter

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/faultpoint"
	"github.com/licet/licet/internal/fsutil"
)

// Files of the meter inside its directory (the agent's payg directory).
const (
	LogFile  = "meter.log"  // the append-only, HMAC-chained state log
	HeadFile = "meter.head" // the last record's number and MAC, under the key
	KeyFile  = "meter.key"  // the device-local HMAC key, mode 0600
	lockFile = "meter.lock" // serialises the processes that read and write the log
)

// Record types.
const (
	recInit   = "init"   // first record: the device ID, and the sequence it starts after (a re-registration)
	recPacket = "packet" // a packet applied
	recUse    = "use"    // an interval of metered use
	recClock  = "clock"  // the first anchor of a boot
	recSync   = "sync"   // a successful sync with the vendor
	// recCheckpoint is the first record of a compacted log: the state the
	// records it replaces added up to, chained to the last of them.
	recCheckpoint = "checkpoint"
)

// record is one line of the log, after its MAC: "MAC JSON\n".
type record struct {
	N    uint64 `json:"n"`
	Type string `json:"type"`
	// Every record anchors the clock: the trusted time when it was written,
	// and the boot and boot clock it was written at.
	Trusted time.Time `json:"trusted"`
	Boot    string    `json:"boot"`
	BootNS  int64     `json:"boot_ns"`
	Wall    time.Time `json:"wall"` // the system's wall clock then, for the record

	DeviceID   string     `json:"device_id,omitempty"`
	Sequence   uint64     `json:"sequence,omitempty"`
	Seconds    int64      `json:"seconds,omitempty"`
	Until      *time.Time `json:"until,omitempty"`
	ServerTime *time.Time `json:"server_time,omitempty"`
	Sale       string     `json:"sale,omitempty"`
	PacketHash string     `json:"packet_sha256,omitempty"`

	FromNS    int64  `json:"from_ns,omitempty"`    // use: boot clock at the interval's start
	UsedNS    int64  `json:"used_ns,omitempty"`    // use: the interval's length
	ChargedNS int64  `json:"charged_ns,omitempty"` // use: the part drawn from seconds of credit
	Consumer  string `json:"consumer,omitempty"`   // use: "session" or "run:PRODUCT"

	Note string `json:"note,omitempty"`

	// checkpoint: the MAC of the record before it (the last record of the
	// log it replaced) and the state up to there.
	PrevMAC string           `json:"prev_mac,omitempty"`
	State   *checkpointState `json:"state,omitempty"`
}

// head is the content of HeadFile.
type head struct {
	N   uint64 `json:"n"`
	MAC string `json:"mac"` // the last record's MAC
	Sum string `json:"head_mac"`
}

// folded is the state the log adds up to.
type folded struct {
	N   uint64
	MAC []byte

	DeviceID   string
	Highest    uint64
	CreditNS   int64
	Until      *time.Time
	UsedNS     int64
	ChargedNS  int64
	LastSync   *time.Time
	LastPacket *time.Time

	// The clock anchor: the last record's.
	Trusted time.Time
	Boot    string
	BootNS  int64
	// The boot clock up to which use is charged, on boot UseBoot.
	UseBoot string
	UseTo   int64
	// ClockNote is the last boot's note on the wall clock.
	ClockNote string
}

// TamperError says why the state cannot be trusted. The meter gives no
// credit while it stands.
type TamperError struct{ Reason string }

func (e *TamperError) Error() string { return "pay-as-you-go state is not trustworthy: " + e.Reason }

func tampered(format string, args ...any) error {
	return errs.Wrap(errs.Invalid, &TamperError{Reason: fmt.Sprintf(format, args...)}, "tampered state")
}

// IsTampered reports whether err is (or wraps) a TamperError, and its reason.
func IsTampered(err error) (string, bool) {
	var t *TamperError
	if errors.As(err, &t) {
		return t.Reason, true
	}
	return "", false
}

func macOf(key, prev, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(prev)
	h.Write(body)
	return h.Sum(nil)
}

func headMAC(key []byte, n uint64, mac []byte) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return macOf(key, []byte("licet meter head\x00"), append(b[:], mac...))
}

// store is the log's files.
type store struct {
	dir string
	key []byte
}

func (s *store) path(name string) string { return filepath.Join(s.dir, name) }

// newKey creates the device-local key; it refuses to replace one.
func newKey(dir string) ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "generate the meter key")
	}
	enc := []byte(base64.StdEncoding.EncodeToString(key) + "\n")
	if err := fsutil.CreateExclusive(filepath.Join(dir, KeyFile), enc, 0o600); err != nil {
		return nil, errs.Wrap(errs.Conflict, err, "create the meter key")
	}
	return key, nil
}

func loadKey(dir string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, tampered("%s is missing from %s: the device is registered but its meter key was deleted", KeyFile, dir)
	}
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "read the meter key")
	}
	key, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil || len(key) != 32 {
		return nil, tampered("%s in %s is damaged", KeyFile, dir)
	}
	return key, nil
}

// lock takes a lock on the meter directory: exclusive for writers, shared
// for readers. It returns the unlock.
func (s *store) lock(exclusive bool) (func(), error) {
	p := s.path(lockFile)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "open %s", p)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, errs.Wrap(errs.Internal, err, "lock %s", p)
	}
	return func() { f.Close() }, nil
}

// read verifies the log against the key and the head and folds it. It
// returns the folded state and the length of the log's valid part (a torn
// last line, left by a crash in the middle of a write, lies beyond it).
func (s *store) read() (*folded, int64, error) {
	hb, herr := os.ReadFile(s.path(HeadFile))
	data, lerr := os.ReadFile(s.path(LogFile))
	switch {
	case errors.Is(lerr, fs.ErrNotExist):
		return nil, 0, tampered("the state log %s was deleted", s.path(LogFile))
	case lerr != nil:
		return nil, 0, errs.Wrap(errs.Internal, lerr, "read the state log")
	case errors.Is(herr, fs.ErrNotExist):
		return nil, 0, tampered("the head file %s was deleted", s.path(HeadFile))
	case herr != nil:
		return nil, 0, errs.Wrap(errs.Internal, herr, "read the head file")
	}
	var h head
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, 0, tampered("the head file %s is damaged", s.path(HeadFile))
	}
	hmacBytes, err1 := base64.StdEncoding.DecodeString(h.MAC)
	hsum, err2 := base64.StdEncoding.DecodeString(h.Sum)
	if err1 != nil || err2 != nil || !hmac.Equal(hsum, headMAC(s.key, h.N, hmacBytes)) {
		return nil, 0, tampered("the head file %s was edited (its MAC does not verify)", s.path(HeadFile))
	}

	f := &folded{}
	var good int64
	var first uint64   // the number of the log's first record (1, or its checkpoint's)
	var headRec []byte // the MAC of the record the head names, if in the log
	var cpPrev []byte  // the MAC a checkpoint chains to
	rest := data
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			// A last line without its newline: a write cut short by a
			// crash. The head does not cover it (checked below).
			break
		}
		line := rest[:i]
		rest = rest[i+1:]
		sp := bytes.IndexByte(line, ' ')
		if sp < 0 {
			return nil, 0, tampered("record %d of the state log is malformed", f.N+1)
		}
		mac, err := base64.StdEncoding.DecodeString(string(line[:sp]))
		body := line[sp+1:]
		var r record
		jerr := json.Unmarshal(body, &r)
		if first == 0 && jerr == nil && r.Type == recCheckpoint {
			// A compacted log begins with its checkpoint, chained to the
			// MAC of the record before it.
			prev, perr := base64.StdEncoding.DecodeString(r.PrevMAC)
			if err != nil || perr != nil || len(prev) != sha256.Size || !hmac.Equal(mac, macOf(s.key, prev, body)) {
				return nil, 0, tampered("the checkpoint that begins the state log was edited (its MAC does not verify)")
			}
			if err := f.restore(&r); err != nil {
				return nil, 0, err
			}
			first, cpPrev = r.N, prev
		} else {
			if err != nil || !hmac.Equal(mac, macOf(s.key, f.MAC, body)) {
				return nil, 0, tampered("record %d of the state log was edited, removed or reordered (its MAC does not verify)", f.N+1)
			}
			if jerr != nil || r.N != f.N+1 {
				return nil, 0, tampered("record %d of the state log is malformed", f.N+1)
			}
			if first == 0 {
				first = 1
			}
			if err := f.apply(&r); err != nil {
				return nil, 0, err
			}
		}
		f.MAC = mac
		if r.N == h.N {
			headRec = mac
		}
		good += int64(i + 1)
	}
	switch {
	case f.N < h.N:
		return nil, 0, tampered("the state log was truncated: it ends at record %d, the head names record %d", f.N, h.N)
	case f.N == 0:
		return nil, 0, tampered("the state log is empty")
	case f.N > h.N+1:
		return nil, 0, tampered("the state log holds %d records beyond its head", f.N-h.N)
	case h.N+1 == first:
		// Rotated, and the head not moved yet: it names the record the
		// checkpoint replaced.
		if !hmac.Equal(cpPrev, hmacBytes) {
			return nil, 0, tampered("the state log's checkpoint does not follow the record the head names")
		}
	case h.N < first:
		return nil, 0, tampered("the state log begins at record %d, after the head's record %d", first, h.N)
	case !hmac.Equal(headRec, hmacBytes):
		return nil, 0, tampered("the state log's record %d is not the one the head names", h.N)
	}
	return f, good, nil
}

// apply folds one record into the state.
func (f *folded) apply(r *record) error {
	f.N = r.N
	if r.N == 1 {
		if r.Type != recInit || r.DeviceID == "" {
			return tampered("the state log does not begin with its init record")
		}
		f.DeviceID = r.DeviceID
	}
	switch r.Type {
	case recInit:
		if r.N != 1 {
			return tampered("record %d is a second init record", r.N)
		}
		f.Highest = r.Sequence // a re-registration starts after the device's earlier packets
	case recPacket:
		if r.Sequence != f.Highest+1 {
			return tampered("record %d applies packet %d after packet %d", r.N, r.Sequence, f.Highest)
		}
		f.Highest = r.Sequence
		if r.Seconds > 0 {
			f.CreditNS = addSat(f.CreditNS, mulSat(r.Seconds, int64(time.Second)))
		}
		if r.Until != nil && (f.Until == nil || r.Until.After(*f.Until)) {
			u := *r.Until
			f.Until = &u
		}
		t := r.Trusted
		f.LastPacket = &t
	case recUse:
		if r.UsedNS < 0 || r.ChargedNS < 0 || r.ChargedNS > r.UsedNS {
			return tampered("record %d is a malformed use record", r.N)
		}
		f.UsedNS = addSat(f.UsedNS, r.UsedNS)
		f.ChargedNS = addSat(f.ChargedNS, r.ChargedNS)
		f.UseBoot, f.UseTo = r.Boot, r.BootNS
	case recClock:
		f.ClockNote = r.Note
	case recSync:
		t := r.Trusted
		f.LastSync = &t
	case recCheckpoint:
		return tampered("record %d is a checkpoint inside the state log", r.N)
	default:
		return tampered("record %d has unknown type %q", r.N, r.Type)
	}
	if r.Trusted.Before(f.Trusted) {
		return tampered("record %d moves the meter's time backwards", r.N)
	}
	f.Trusted, f.Boot, f.BootNS = r.Trusted, r.Boot, r.BootNS
	return nil
}

func addSat(a, b int64) int64 {
	if s := a + b; (b > 0 && s < a) || (b < 0 && s > a) {
		if b > 0 {
			return 1<<63 - 1
		}
		return -1 << 63
	}
	return a + b
}

func mulSat(a, b int64) int64 {
	if a != 0 && (a*b)/a != b {
		return 1<<63 - 1
	}
	return a * b
}

// appendRecord writes r as record f.N+1 chained to f, syncs it, then moves
// the head, and rotates the log if it grew beyond CompactBytes; f is
// updated (the caller re-reads the log's length). good is the valid length of the log (a torn tail
// beyond it is cut off first). The caller holds the exclusive lock.
func (s *store) appendRecord(f *folded, good int64, r *record) error {
	r.N = f.N + 1
	body, err := json.Marshal(r)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "encode a state record")
	}
	mac := macOf(s.key, f.MAC, body)
	line := make([]byte, 0, len(body)+50)
	line = base64.StdEncoding.AppendEncode(line, mac)
	line = append(line, ' ')
	line = append(line, body...)
	line = append(line, '\n')

	next := *f
	if err := next.apply(r); err != nil {
		return err
	}
	next.MAC = mac

	lf, err := os.OpenFile(s.path(LogFile), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "open the state log")
	}
	if err := lf.Truncate(good); err == nil {
		_, err = lf.Seek(good, io.SeekStart)
	}
	if err == nil {
		faultpoint.Hit("meter.append." + r.Type + ".before-write")
		_, err = lf.Write(line) // one write: the record is in the file whole or not at all
	}
	if err == nil {
		err = lf.Sync()
	}
	if cerr := lf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errs.Wrap(errs.Internal, err, "write the state log")
	}
	faultpoint.Hit("meter.append." + r.Type + ".after-write")
	if err := s.writeHead(next.N, mac); err != nil {
		return err
	}
	*f = next
	s.maybeCompact(f, good+int64(len(line)))
	return nil
}

func (s *store) writeHead(n uint64, mac []byte) error {
	h := head{N: n, MAC: base64.StdEncoding.EncodeToString(mac), Sum: base64.StdEncoding.EncodeToString(headMAC(s.key, n, mac))}
	b, _ := json.Marshal(h)
	if err := fsutil.WriteFileAtomic(s.path(HeadFile), append(b, '\n'), 0o600); err != nil {
		return errs.Wrap(errs.Internal, err, "write the head file")
	}
	return nil
}

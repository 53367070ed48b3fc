package supervisor

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/fsutil"
)

// Files of the supervisor in its directory (DATA/compliance).
const (
	KeyFile    = "seal.key"      // the device-local sealing key, mode 0600
	StateFile  = "state.sealed"  // the sealed State
	BundleFile = "policy.bundle" // a readable copy of the installed bundle
	lockFile   = "state.lock"
	// SealNote is what status says about the seal.
	SealNote = "no TPM: file-based seal (AES-256-GCM under a device-local key)"
)

// sealAD binds the sealed state to its purpose.
const sealAD = "licet compliance state v1"

// Modes of the device.
const (
	ModeNone           = ""               // compliance not set up: today's behaviour
	ModeCompliant      = "compliant"      // score at or above the sanction threshold
	ModeSanction       = "sanction"       // limited use until the user fixes what is wrong
	ModeNonOperational = "nonoperational" // nothing but recovery, paid credit notwithstanding
)

// Result is one policy's outcome at an evaluation.
type Result struct {
	ID     string `json:"id"`
	Check  string `json:"check"`
	Weight int    `json:"weight"`
	Pass   bool   `json:"pass"`
	// Counted says a failure counts against the score: it has failed for
	// longer than its grace period.
	Counted      bool       `json:"counted"`
	Detail       string     `json:"detail,omitempty"`
	Fix          string     `json:"fix,omitempty"`
	FailingSince *time.Time `json:"failing_since,omitempty"`
	GraceLeft    string     `json:"grace_left,omitempty"`
}

// Event is a tampering the supervisor saw; it stays until a reset.
type Event struct {
	At   time.Time `json:"at"`
	Kind string    `json:"kind"` // "bundle", "reset", "state", "clock", "packet"
	What string    `json:"what"`
}

// State is the supervisor's sealed state.
type State struct {
	Version       int                  `json:"version"`
	Bundle        string               `json:"bundle,omitempty"` // the installed bundle, armored
	BundleVersion uint64               `json:"bundle_version"`
	Mode          string               `json:"mode"`
	Score         int                  `json:"score"`
	Evaluated     time.Time            `json:"evaluated"`
	Evaluations   uint64               `json:"evaluations"`
	Results       []Result             `json:"results,omitempty"`
	Reasons       []string             `json:"reasons,omitempty"`
	FailingSince  map[string]time.Time `json:"failing_since,omitempty"`
	Tamper        []Event              `json:"tamper,omitempty"`
	WallHigh      time.Time            `json:"wall_high"`
	ResetSequence uint64               `json:"reset_sequence"`
	// StaleAfter is how old Evaluated may be before readers fail closed.
	StaleAfter time.Duration `json:"stale_after"`
	// SessionLimit bounds a metered program's run in sanction mode.
	SessionLimit time.Duration `json:"session_limit,omitempty"`
	// Reported is the score last reported to the vendor.
	Reported *int   `json:"reported,omitempty"`
	Seal     string `json:"seal"`
}

// store is the sealed state on disk.
type store struct{ dir string }

func (s store) path(n string) string { return filepath.Join(s.dir, n) }

// setUp reports whether compliance was set up here: its key or state exist.
func (s store) setUp() bool {
	for _, n := range []string{KeyFile, StateFile} {
		if _, err := os.Lstat(s.path(n)); err == nil {
			return true
		}
	}
	return false
}

func (s store) lock(exclusive bool) (func(), error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "create %s", s.dir)
	}
	f, err := os.OpenFile(s.path(lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "open the compliance lock")
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, errs.Wrap(errs.Internal, err, "lock the compliance state")
	}
	return func() { f.Close() }, nil
}

// key returns the sealing key, making it when create is set and none exists.
func (s store) key(create bool) ([]byte, error) {
	b, err := os.ReadFile(s.path(KeyFile))
	if errors.Is(err, fs.ErrNotExist) && create {
		k := make([]byte, 32)
		rand.Read(k)
		if err := fsutil.CreateExclusive(s.path(KeyFile), k, 0o600); err != nil {
			return nil, errs.Wrap(errs.Internal, err, "create the compliance sealing key")
		}
		return k, nil
	}
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "the compliance sealing key %s is missing or unreadable", s.path(KeyFile))
	}
	if len(b) != 32 {
		return nil, errs.E(errs.Invalid, "the compliance sealing key %s is damaged", s.path(KeyFile))
	}
	return b, nil
}

func gcm(key []byte) cipher.AEAD {
	b, _ := aes.NewCipher(key)
	g, _ := cipher.NewGCM(b)
	return g
}

// errMissing says no state was ever written.
var errMissing = errs.E(errs.NotFound, "compliance is not set up on this device (no policy bundle installed)")

// read unseals the state. A missing state of a set-up device, a key that
// does not open it, or a damaged file is an errs.Invalid error: fail closed.
func (s store) read() (*State, error) {
	data, err := os.ReadFile(s.path(StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		if s.setUp() {
			return nil, errs.E(errs.Invalid, "the compliance state %s was deleted; sync with the vendor or import the policy bundle again", s.path(StateFile))
		}
		return nil, errMissing
	}
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "read the compliance state")
	}
	key, err := s.key(false)
	if err != nil {
		return nil, err
	}
	g := gcm(key)
	if len(data) < g.NonceSize() {
		return nil, errs.E(errs.Invalid, "the compliance state %s is damaged (cut short)", s.path(StateFile))
	}
	plain, err := g.Open(nil, data[:g.NonceSize()], data[g.NonceSize():], []byte(sealAD))
	if err != nil {
		return nil, errs.E(errs.Invalid, "the compliance state %s does not open under its sealing key: it was changed or replaced", s.path(StateFile))
	}
	var st State
	if err := json.Unmarshal(plain, &st); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "the compliance state is damaged")
	}
	return &st, nil
}

// write seals and stores the state atomically and durably.
func (s store) write(st *State) error { return s.writeAs(st, true) }

// writeAs seals and stores the state atomically; durable also syncs it to
// the disk. An evaluation that changed nothing but its time need not be
// durable: losing it to a crash only means evaluating again at start.
func (s store) writeAs(st *State, durable bool) error {
	key, err := s.key(true)
	if err != nil {
		return err
	}
	st.Version, st.Seal = 1, SealNote
	plain, err := json.Marshal(st)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "encode the compliance state")
	}
	g := gcm(key)
	nonce := make([]byte, g.NonceSize())
	rand.Read(nonce)
	out := g.Seal(nonce, nonce, plain, []byte(sealAD))
	if durable {
		if err := fsutil.WriteFileAtomic(s.path(StateFile), out, 0o600); err != nil {
			return errs.Wrap(errs.Internal, err, "write the compliance state")
		}
		return nil
	}
	tmp := s.path(StateFile + ".tmp")
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return errs.Wrap(errs.Internal, err, "write the compliance state")
	}
	if err := os.Rename(tmp, s.path(StateFile)); err != nil {
		return errs.Wrap(errs.Internal, err, "write the compliance state")
	}
	return nil
}

// material is what must reach the disk durably when it changes.
func (st *State) material() string {
	ids := make([]string, 0, len(st.FailingSince))
	for id := range st.FailingSince {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return fmt.Sprint(st.Mode, st.Score, st.BundleVersion, st.ResetSequence, len(st.Tamper), ids, st.WallHigh.Truncate(time.Hour))
}

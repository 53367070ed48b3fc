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
	"github.com/licet/licet/internal/tpmseal"
)

// Files of the supervisor in its directory (DATA/compliance).
const (
	KeyFile    = "seal.key"      // the device-local sealing key, mode 0600
	StateFile  = "state.sealed"  // the sealed State
	BundleFile = "policy.bundle" // a readable copy of the installed bundle
	lockFile   = "state.lock"
	// TPMKeyFile holds the TPM-sealed key object when the state is sealed
	// with a TPM (its private part loads only in that TPM).
	TPMKeyFile = "seal.tpm"
	// SealNote is what status says about the file-based seal.
	SealNote = "no TPM: file-based seal (AES-256-GCM under a device-local key)"
	// TPMEnv names the TPM to seal with: a device, "unix:PATH" or
	// "tcp:HOST:PORT" (a simulator); "none" for the file-based seal.
	TPMEnv = "LICET_TPM"
)

// TPMPath returns the TPM the supervisor seals with: flag when set, else
// $LICET_TPM, else /dev/tpmrm0 when present; "" (or "none") means the
// file-based seal.
func TPMPath(flag string) string {
	p := flag
	if p == "" {
		p = os.Getenv(TPMEnv)
	}
	if p == "" && tpmseal.Available(tpmseal.DefaultDevice) {
		p = tpmseal.DefaultDevice
	}
	if p == "none" {
		return ""
	}
	return p
}

// tpmNote is what status says about the TPM seal.
func tpmNote(counter uint64) string {
	return fmt.Sprintf("TPM 2.0: sealed, counter %d", counter)
}

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
	// TPMCounter is the TPM NV counter value this state was sealed with
	// (0: file-based seal). It is recorded in the sealed file's
	// authenticated header and set here when the state is read.
	TPMCounter uint64 `json:"-"`
}

// store is the sealed state on disk: under the TPM-held key of box, or
// (box nil) under the device-local key file.
type store struct {
	dir string
	box *tpmseal.Box
}

// newStore returns the store of dir, sealing with the TPM at tpm ("" for
// the file-based seal).
func newStore(dir, tpm string) store {
	st := store{dir: dir}
	if tpm != "" {
		st.box, _ = tpmseal.New(tpmseal.Options{Path: tpm, KeyFile: filepath.Join(dir, TPMKeyFile), Index: tpmseal.IndexCompliance, Purpose: sealAD})
	}
	return st
}

// note is what status says about the seal of a device with no readable
// state yet.
func (s store) note() string {
	if s.box != nil {
		return "TPM 2.0 (" + s.box.Path() + "): sealed"
	}
	return SealNote
}

func (s store) path(n string) string { return filepath.Join(s.dir, n) }

// setUp reports whether compliance was set up here: its key or state exist.
func (s store) setUp() bool {
	for _, n := range []string{KeyFile, TPMKeyFile, StateFile} {
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
// does not open it, a restored older copy the TPM's counter shows, or a
// damaged file is an errs.Invalid error: fail closed. A TPM that cannot be
// reached is errs.Internal (nothing is rewritten).
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
	var plain []byte
	var counter uint64
	switch {
	case tpmseal.Recorded(data) > 0 && s.box == nil:
		return nil, errs.E(errs.Invalid, "the compliance state %s is sealed in a TPM, but no TPM is in use: the TPM was removed or disabled (or set %s to it)", s.path(StateFile), TPMEnv)
	case tpmseal.Recorded(data) > 0:
		plain, counter, err = s.box.Open(data)
		if err != nil {
			return nil, errs.Wrap(errs.KindOf(err), err, "the compliance state %s", s.path(StateFile))
		}
	default:
		if err := s.fileSealAllowed(); err != nil {
			return nil, err
		}
		if plain, err = s.openFile(data); err != nil {
			return nil, err
		}
	}
	var st State
	if err := json.Unmarshal(plain, &st); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "the compliance state is damaged")
	}
	st.TPMCounter, st.Seal = counter, SealNote
	if counter > 0 {
		st.Seal = tpmNote(counter)
	}
	return &st, nil
}

// fileSealAllowed refuses a file-sealed state on a device whose state the
// TPM already seals: that is a copy from before, put back.
func (s store) fileSealAllowed() error {
	if s.box == nil {
		return nil
	}
	if _, err := os.Lstat(s.path(TPMKeyFile)); err == nil {
		return errs.E(errs.Invalid, "the compliance state %s is file-sealed but this device seals it in its TPM (%s exists): an older copy was put back", s.path(StateFile), TPMKeyFile)
	}
	n, err := s.box.Counter()
	switch {
	case err == nil:
		return errs.E(errs.Invalid, "the compliance state %s is file-sealed but the TPM's counter for it exists (at %d): a copy from before the TPM sealed it was put back", s.path(StateFile), n)
	case errs.Is(err, errs.Invalid): // no counter yet: a device moving to the TPM seal
		return nil
	default:
		return err
	}
}

// openFile opens a state sealed under the device-local key file.
func (s store) openFile(data []byte) ([]byte, error) {
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
	return plain, nil
}

// write seals and stores the state atomically and durably.
func (s store) write(st *State) error { return s.writeAs(st, true) }

// writeAs seals and stores the state atomically; durable also syncs it to
// the disk. An evaluation that changed nothing but its time need not be
// durable: losing it to a crash only means evaluating again at start.
func (s store) writeAs(st *State, durable bool) error {
	st.Version, st.Seal = 1, SealNote
	plain, err := json.Marshal(st)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "encode the compliance state")
	}
	var out []byte
	var counter uint64
	commit := func() error { return nil }
	if s.box != nil {
		// Only a durable write advances the TPM's counter (its NV memory
		// wears): a copy replaced by a write that changed nothing but
		// the evaluation time is not told apart.
		out, counter, commit, err = s.box.Seal(plain, st.TPMCounter, durable)
		if err != nil {
			return errs.Wrap(errs.KindOf(err), err, "seal the compliance state in the TPM")
		}
	} else {
		key, err := s.key(true)
		if err != nil {
			return err
		}
		g := gcm(key)
		nonce := make([]byte, g.NonceSize())
		rand.Read(nonce)
		out = g.Seal(nonce, nonce, plain, []byte(sealAD))
	}
	if durable {
		if err := fsutil.WriteFileAtomic(s.path(StateFile), out, 0o600); err != nil {
			return errs.Wrap(errs.Internal, err, "write the compliance state")
		}
	} else {
		tmp := s.path(StateFile + ".tmp")
		if err := os.WriteFile(tmp, out, 0o600); err != nil {
			return errs.Wrap(errs.Internal, err, "write the compliance state")
		}
		if err := os.Rename(tmp, s.path(StateFile)); err != nil {
			return errs.Wrap(errs.Internal, err, "write the compliance state")
		}
	}
	if s.box == nil {
		return nil
	}
	// Stored: now every earlier copy becomes a restored snapshot.
	if err := commit(); err != nil {
		return errs.Wrap(errs.KindOf(err), err, "advance the TPM counter after writing the compliance state")
	}
	st.TPMCounter, st.Seal = counter, tpmNote(counter)
	os.Remove(s.path(KeyFile)) // a device that moved to the TPM seal
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

package keypad

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/fsutil"
	"github.com/licet/licet/payg/openpaygo"
)

// The files of a keypad, inside the agent's data directory.
const (
	// ConfigFile holds the configuration set at manufacture (with the
	// device's secret key, hence mode 0600) and the guard: the record that
	// state exists and a copy of what must survive its loss.
	ConfigFile = "keypad.json"
	// StateFile holds the keypad state: credit, counts, failed entries.
	StateFile = "keypad-state.json"
	// lockFile serialises the commands that read and write the keypad.
	lockFile = "keypad.lock"
)

// FormatVersion is the format version of both keypad files.
const FormatVersion = 1

// configFile is the content of ConfigFile.
type configFile struct {
	Version      int    `json:"version"`
	Key          string `json:"key"`
	StartingCode uint32 `json:"starting_code"`
	TimeDivider  int    `json:"time_divider"`
	Restricted   bool   `json:"restricted_digit_set"`
	Guard        guard  `json:"guard"`
}

// guard is what the configuration keeps of the state, written after every
// state write; the state holds the same fields. Seq 0 means no state was
// ever written; Seq above 0 with no state file means it was deleted.
type guard struct {
	Seq           uint64    `json:"seq"`
	LastCount     uint32    `json:"last_count"`
	FailedEntries int       `json:"failed_entries"`
	NotBefore     time.Time `json:"not_before"`
	LatestSeen    time.Time `json:"latest_seen"`
	Disabled      bool      `json:"payg_disabled"`
}

// state is the content of StateFile, under its MAC.
type state struct {
	guard
	ActiveUntil time.Time `json:"active_until"`
	UsedCounts  []uint32  `json:"used_counts"`
	// Recovery, when not empty, says why the device lost its state and
	// takes only a counter-sync or set-time token from the vendor.
	Recovery string `json:"recovery,omitempty"`
}

// stateEnvelope is the file: the state's JSON and its HMAC-SHA256 under a
// key derived from the device key, so a truncated, corrupted or hand-edited
// file is recognised.
type stateEnvelope struct {
	Version int             `json:"version"`
	State   json.RawMessage `json:"state"`
	MAC     string          `json:"mac"`
}

// writeFile writes a file crash-safely; tests replace it to simulate a crash.
var writeFile = fsutil.WriteFileAtomic

func readConfig(dir string) (*configFile, Config, error) {
	p := filepath.Join(dir, ConfigFile)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, Config{}, errs.E(errs.NotFound, "no keypad is set up in %s: run 'licet agent token setup --data %s --key HEX --starting-code N' (done once, at manufacture)", dir, dir)
	}
	if err != nil {
		return nil, Config{}, errs.Wrap(errs.Internal, err, "read %s", p)
	}
	var cf configFile
	if err := json.Unmarshal(data, &cf); err != nil {
		return nil, Config{}, errs.Wrap(errs.Invalid, err, "%s is corrupt; the keypad cannot work without its configuration", p)
	}
	if cf.Version != FormatVersion {
		return nil, Config{}, errs.E(errs.Invalid, "%s has format version %d; this licet reads version %d", p, cf.Version, FormatVersion)
	}
	key, err := openpaygo.ParseKey(cf.Key)
	if err != nil {
		return nil, Config{}, errs.Wrap(errs.Invalid, err, "%s: key", p)
	}
	cfg := Config{Key: key, StartingCode: cf.StartingCode, TimeDivider: cf.TimeDivider, Restricted: cf.Restricted}
	if err := cfg.check(); err != nil {
		return nil, Config{}, errs.Wrap(errs.Invalid, err, "%s", p)
	}
	return &cf, cfg, nil
}

func marshalConfig(cf *configFile) ([]byte, error) {
	data, err := json.MarshalIndent(cf, "", "  ")
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "encode %s", ConfigFile)
	}
	return append(data, '\n'), nil
}

func writeConfig(dir string, cf *configFile) error {
	data, err := marshalConfig(cf)
	if err != nil {
		return err
	}
	p := filepath.Join(dir, ConfigFile)
	if err := writeFile(p, data, 0o600); err != nil {
		return errs.Wrap(errs.Internal, err, "write %s", p)
	}
	return nil
}

// macKey is the key the state file's MAC is computed with.
func macKey(k openpaygo.Key) []byte {
	h := sha256.New()
	h.Write([]byte("licet keypad state v1\x00"))
	h.Write(k[:])
	return h.Sum(nil)
}

func stateMAC(k openpaygo.Key, body []byte) []byte {
	m := hmac.New(sha256.New, macKey(k))
	m.Write(body)
	return m.Sum(nil)
}

// readState reads the state file. ok is false when there is none; a file
// that is corrupt or fails its MAC is an error saying why.
func readState(dir string, key openpaygo.Key) (st state, ok bool, err error) {
	p := filepath.Join(dir, StateFile)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return state{}, false, nil
	}
	if err != nil {
		return state{}, false, errs.Wrap(errs.Internal, err, "read %s", p)
	}
	var env stateEnvelope
	if err := json.Unmarshal(data, &env); err != nil || env.Version != FormatVersion {
		return state{}, true, fmt.Errorf("%s is corrupt", StateFile)
	}
	var body bytes.Buffer // the MAC is over the compact form the writer marshalled
	mac, err := hex.DecodeString(env.MAC)
	if err != nil || json.Compact(&body, env.State) != nil || !hmac.Equal(mac, stateMAC(key, body.Bytes())) {
		return state{}, true, fmt.Errorf("%s fails its integrity check (corrupted or edited)", StateFile)
	}
	if err := json.Unmarshal(env.State, &st); err != nil {
		return state{}, true, fmt.Errorf("%s is corrupt", StateFile)
	}
	return st, true, nil
}

func writeState(dir string, key openpaygo.Key, st *state) error {
	body, err := json.Marshal(st)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "encode %s", StateFile)
	}
	env := stateEnvelope{Version: FormatVersion, State: body, MAC: hex.EncodeToString(stateMAC(key, body))}
	data, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return errs.Wrap(errs.Internal, err, "encode %s", StateFile)
	}
	p := filepath.Join(dir, StateFile)
	if err := writeFile(p, append(data, '\n'), 0o600); err != nil {
		return errs.Wrap(errs.Internal, err, "write %s", p)
	}
	return nil
}

// load reads configuration and state and decides which state holds: the
// file's, a fresh one for a device that never had any, or a recovery state
// built from the guard when the file is gone, corrupt or older than the
// guard records.
func load(dir string) (*configFile, Config, state, error) {
	cf, cfg, err := readConfig(dir)
	if err != nil {
		return nil, Config{}, state{}, err
	}
	g := cf.Guard
	st, ok, rerr := readState(dir, cfg.Key)
	if rerr != nil && !ok {
		return nil, Config{}, state{}, rerr // the file could not be read
	}
	var reason string
	switch {
	case rerr != nil:
		reason = rerr.Error()
	case !ok && g.Seq == 0:
		return cf, cfg, state{}, nil // never initialised: no credit, count 0
	case !ok:
		reason = StateFile + " was deleted"
	case st.Seq < g.Seq:
		reason = fmt.Sprintf("%s is older than the record in %s (an earlier copy was put back)", StateFile, ConfigFile)
	case st.Seq > g.Seq+1:
		reason = fmt.Sprintf("%s is newer than the record in %s allows", StateFile, ConfigFile)
	case st.LastCount < g.LastCount:
		reason = fmt.Sprintf("%s has an older count than the record in %s", StateFile, ConfigFile)
	default:
		// st.Seq is g.Seq, or g.Seq+1 after a crash between the two writes.
		return cf, cfg, st, nil
	}
	// The state is lost: no credit, and the count, the wait and the
	// latest time seen come from the guard.
	g.Seq = max(st.Seq, g.Seq)
	return cf, cfg, state{guard: g, Recovery: reason}, nil
}

// save writes st (with the next sequence number) and then the guard in the
// configuration. A crash between the two leaves a state one ahead of the
// guard, which load accepts.
func save(dir string, cf *configFile, key openpaygo.Key, st *state) error {
	st.Seq = max(st.Seq, cf.Guard.Seq) + 1
	if err := writeState(dir, key, st); err != nil {
		return err
	}
	next := *cf
	next.Guard = st.guard
	if err := writeConfig(dir, &next); err != nil {
		return err
	}
	*cf = next
	return nil
}

package meter

import (
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/faultpoint"
	"github.com/licet/licet/internal/fsutil"
)

// Compaction. The log gains a record every tick of use (a day of use at
// the daemon's 60 s tick is 1,440 records, about 350 KiB), so once it is
// longer than CompactBytes the meter rotates it: it writes a new log whose
// only record is a checkpoint, the state the old log added up to, numbered
// after the old log's last record and MAC-chained to it (the checkpoint
// carries that MAC), and renames it over the old log; then it moves the
// head to the checkpoint. Every guarantee of the chain holds across the
// rotation:
//
//   - the checkpoint is under the key like any record: edited, it fails;
//   - the head names the checkpoint (or, after a crash between the rename
//     and the head's move, the record the checkpoint follows, whose MAC the
//     checkpoint carries): the old log restored over the new one ends before
//     the head's record, the new log cut back to its checkpoint after more
//     records were written ends before it too, and a deleted log is seen as
//     before;
//   - a crash before the rename leaves the old log and its head; after it,
//     the checkpoint and a head one record behind, which reads back as the
//     same state. Nothing is lost or counted twice.

// CompactBytes is the length beyond which a write rotates the log.
var CompactBytes int64 = 1 << 20

// checkpointState is the state a checkpoint record carries: everything
// folded from the records it replaces, but the clock anchor, which is the
// record's own (Trusted, Boot, BootNS).
type checkpointState struct {
	DeviceID   string     `json:"device_id"`
	Highest    uint64     `json:"highest_sequence"`
	CreditNS   int64      `json:"credit_ns"`
	Until      *time.Time `json:"until,omitempty"`
	UsedNS     int64      `json:"used_ns"`
	ChargedNS  int64      `json:"charged_ns"`
	LastSync   *time.Time `json:"last_sync,omitempty"`
	LastPacket *time.Time `json:"last_packet,omitempty"`
	UseBoot    string     `json:"use_boot,omitempty"`
	UseTo      int64      `json:"use_to,omitempty"`
	ClockNote  string     `json:"clock_note,omitempty"`
}

// checkpoint returns the checkpoint record of state f: number f.N+1,
// chained to f's last MAC.
func (f *folded) checkpoint() *record {
	return &record{N: f.N + 1, Type: recCheckpoint, Trusted: f.Trusted, Boot: f.Boot, BootNS: f.BootNS,
		Wall: time.Now().UTC(), PrevMAC: base64.StdEncoding.EncodeToString(f.MAC),
		State: &checkpointState{DeviceID: f.DeviceID, Highest: f.Highest, CreditNS: f.CreditNS, Until: f.Until,
			UsedNS: f.UsedNS, ChargedNS: f.ChargedNS, LastSync: f.LastSync, LastPacket: f.LastPacket,
			UseBoot: f.UseBoot, UseTo: f.UseTo, ClockNote: f.ClockNote}}
}

// restore sets f (empty) to the state of checkpoint r, whose MAC the
// caller verified.
func (f *folded) restore(r *record) error {
	c := r.State
	if c == nil || r.N < 2 || c.DeviceID == "" || c.CreditNS < 0 || c.UsedNS < 0 || c.ChargedNS < 0 || c.ChargedNS > c.UsedNS {
		return tampered("the checkpoint that begins the state log is malformed")
	}
	*f = folded{N: r.N, DeviceID: c.DeviceID, Highest: c.Highest, CreditNS: c.CreditNS, Until: c.Until,
		UsedNS: c.UsedNS, ChargedNS: c.ChargedNS, LastSync: c.LastSync, LastPacket: c.LastPacket,
		Trusted: r.Trusted, Boot: r.Boot, BootNS: r.BootNS, UseBoot: c.UseBoot, UseTo: c.UseTo, ClockNote: c.ClockNote}
	return nil
}

// compact rotates the log to a checkpoint of f, which is the state the log
// adds up to; f is updated. The caller holds the exclusive lock.
func (s *store) compact(f *folded) error {
	r := f.checkpoint()
	body, err := json.Marshal(r)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "encode the checkpoint")
	}
	mac := macOf(s.key, f.MAC, body)
	line := base64.StdEncoding.AppendEncode(nil, mac)
	line = append(append(append(line, ' '), body...), '\n')
	next := folded{}
	if err := next.restore(r); err != nil {
		return err
	}
	next.MAC = mac
	faultpoint.Hit("meter.compact.before-rename")
	if err := fsutil.WriteFileAtomic(s.path(LogFile), line, 0o600); err != nil {
		return errs.Wrap(errs.Internal, err, "rotate the state log")
	}
	faultpoint.Hit("meter.compact.after-rename")
	if err := s.writeHead(next.N, mac); err != nil {
		return err
	}
	*f = next
	return nil
}

// Compact rotates the state log now, whatever its length: a new log of one
// checkpoint record holding the state the old one added up to. Writes do
// it by themselves once the log is longer than CompactBytes.
func (m *Meter) Compact() error {
	s, f, _, unlock, err := m.load(true)
	if err != nil {
		return err
	}
	defer unlock()
	return s.compact(f)
}

// maybeCompact rotates the log after a write that left it size bytes
// long, if that is beyond CompactBytes. A failed rotation leaves a state
// that reads back the same (the write it follows is durable): f is read
// again from the files, and the next write tries again.
func (s *store) maybeCompact(f *folded, size int64) {
	if size <= CompactBytes {
		return
	}
	if err := s.compact(f); err != nil {
		if nf, _, rerr := s.read(); rerr == nil {
			*f = *nf
		}
	}
}

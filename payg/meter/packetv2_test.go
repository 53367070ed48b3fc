package meter_test

import (
	"strings"
	"testing"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/payg/meter"
	"github.com/licet/licet/payg/packet"
)

// packetV2 makes a format version 2 packet for d, sealed under initKey (the
// fixture's devices are initialised with 32 zero bytes).
func packetV2(t *testing.T, v *vendor, d *device, seq uint64, secs int64, initKey []byte) []byte {
	t.Helper()
	text, err := packet.MakeV2(packet.Packet{DeviceID: d.id, Sequence: seq, Seconds: secs, ServerTime: t0, Sale: "sale-v2"}, v.prov.Signer, v.chain, initKey)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// The agent opens version 2 packets with its initialization key and
// refuses a replayed one by its sequence, one sealed under another
// device's key, and a tampered one; version 1 and 2 packets mix.
func TestPacketV2(t *testing.T) {
	v := newVendor(t)
	d := newDevice(t, v, "dev-1")
	ik := make([]byte, 32)
	p1 := packetV2(t, v, d, 1, 3600, ik)
	if a, err := d.m.Apply([][]byte{p1}); err != nil || len(a) != 1 {
		t.Fatalf("apply a version 2 packet: %v %v", a, err)
	}
	wantState(t, d, meter.StateActive, 3600)

	// Replay.
	if _, err := d.m.Apply([][]byte{p1}); !errs.Is(err, errs.Conflict) || !strings.Contains(err.Error(), "replayed") {
		t.Fatalf("replayed version 2 packet: %v", err)
	}
	// Another device's initialization key.
	other := make([]byte, 32)
	other[0] = 1
	if _, err := d.m.Apply([][]byte{packetV2(t, v, d, 2, 3600, other)}); !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "initialization key") {
		t.Fatalf("packet under another device's key: %v", err)
	}
	// Tampered: one character of the armored body changed.
	p2 := packetV2(t, v, d, 2, 60, ik)
	lines := strings.Split(string(p2), "\n")
	mid := lines[len(lines)/2]
	c := byte('A')
	if mid[3] == 'A' {
		c = 'B'
	}
	lines[len(lines)/2] = mid[:3] + string(c) + mid[4:]
	if _, err := d.m.Apply([][]byte{[]byte(strings.Join(lines, "\n"))}); !errs.Is(err, errs.Invalid) {
		t.Fatalf("tampered version 2 packet: %v", err)
	}
	wantState(t, d, meter.StateActive, 3600)
	// The untampered packet, then a version 1 packet, apply.
	p3 := v.packetSeq(t, d, 3, 60, nil)
	if a, err := d.m.Apply([][]byte{p3, p2}); err != nil || len(a) != 2 {
		t.Fatalf("version 2 then 1: %v %v", a, err)
	}
	wantState(t, d, meter.StateActive, 3720)
}

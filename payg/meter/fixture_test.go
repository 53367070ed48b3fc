package meter_test

import (
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/envelope"
	"path/filepath"
	"testing"
	"time"

	"github.com/licet/licet/keys"
	"github.com/licet/licet/payg/meter"
	"github.com/licet/licet/payg/packet"
	"github.com/licet/licet/pki"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// vendor is the vendor side the tests need: a root, a provisioning key
// certified by it, and the packet sequence of each device.
type vendor struct {
	root  *pki.Authority
	prov  *pki.Authority
	chain [][]byte
	seq   map[string]uint64
}

func newVendor(t testing.TB) *vendor {
	t.Helper()
	rk, _ := keys.GenerateSigner()
	root, err := pki.NewRoot(rk, "ACME", t0.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := keys.GenerateSigner()
	der, err := root.IssueProvisioning(pk.Public(), "ACME", t0.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return &vendor{root: root, prov: authority(t, der, pk), chain: [][]byte{der}, seq: map[string]uint64{}}
}

// packet makes the device's next packet of secs seconds (or until, if set).
func (v *vendor) packet(t testing.TB, d *device, secs int64, until *time.Time) []byte {
	t.Helper()
	v.seq[d.id]++
	return v.packetSeq(t, d, v.seq[d.id], secs, until)
}

func (v *vendor) packetSeq(t testing.TB, d *device, seq uint64, secs int64, until *time.Time) []byte {
	t.Helper()
	text, err := packet.Make(packet.Packet{DeviceID: d.id, Sequence: seq, Seconds: secs, Until: until, ServerTime: t0, Sale: "sale-" + d.id}, v.prov.Signer, v.chain, d.dec.PublicBytes())
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// device is a registered device with its meter.
type device struct {
	id    string
	dir   string
	dec   *keys.Decrypter
	sig   *keys.Signer
	clock *meter.FakeClock
	m     *meter.Meter
}

func newDevice(t testing.TB, v *vendor, id string) *device {
	t.Helper()
	dec, _ := keys.GenerateDecrypter()
	sig, _ := keys.GenerateSigner()
	d := &device{id: id, dir: filepath.Join(t.TempDir(), "payg"), dec: dec, sig: sig, clock: meter.NewFakeClock(t0)}
	d.m = meter.New(d.dir, meter.Options{Clock: d.clock, Root: v.root.Cert, Decrypter: dec})
	if err := d.m.Init(meter.Registration{DeviceID: id, Account: "acct-1"}, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	return d
}

func authority(t testing.TB, der []byte, s *keys.Signer) *pki.Authority {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.Authority{Cert: c, Signer: s}
}

// forgeCredit changes the credit of a packet as someone holding the device's
// keys can: open it, change the signed payload, seal it again.
func forgeCredit(t testing.TB, text []byte, dec *keys.Decrypter, secs int64) []byte {
	t.Helper()
	b, err := armor.Decode(text, armor.TypePAYGPacket)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := envelope.ParseSealed(b.Body, packet.SealedType, packet.Version)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := sealed.Open(dec)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := envelope.ParseSigned(plain, packet.SignedType, packet.Version)
	if err != nil {
		t.Fatal(err)
	}
	signed.Payload = []byte(strings.Replace(string(signed.Payload), `"seconds":60`, fmt.Sprintf(`"seconds":%d`, secs), 1))
	resealed, err := envelope.Seal(packet.SealedType, packet.Version, dec.PublicBytes(), signed.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	return armor.Encode(armor.Block{Type: armor.TypePAYGPacket, Version: packet.Version, Body: resealed.Marshal()})
}

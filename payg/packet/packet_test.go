package packet_test

import (
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/envelope"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/payg/packet"
	"github.com/licet/licet/pki"
)

var now = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

type vendor struct {
	root  *pki.Authority
	prov  *keys.Signer
	chain [][]byte
}

func newVendor(t *testing.T) *vendor {
	t.Helper()
	rk, _ := keys.GenerateSigner()
	root, err := pki.NewRoot(rk, "ACME", now)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := keys.GenerateSigner()
	der, err := root.IssueProvisioning(pk.Public(), "ACME", now)
	if err != nil {
		t.Fatal(err)
	}
	return &vendor{root: root, prov: pk, chain: [][]byte{der}}
}

func newDecrypter(t *testing.T) *keys.Decrypter {
	t.Helper()
	d, err := keys.GenerateDecrypter()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func sample() packet.Packet {
	return packet.Packet{DeviceID: "dev-1", Sequence: 1, Seconds: 3600, ServerTime: now, Sale: "sale-1"}
}

func wantInvalid(t *testing.T, what string, err error, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted", what)
	}
	if !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), substr) {
		t.Fatalf("%s: %v (kind %v), want invalid containing %q", what, err, errs.KindOf(err), substr)
	}
}

func TestRoundTrip(t *testing.T) {
	v := newVendor(t)
	dev := newDecrypter(t)
	until := now.Add(30 * 24 * time.Hour)
	for _, p := range []packet.Packet{sample(), {DeviceID: "dev-1", Sequence: 2, Until: &until, ServerTime: now, Sale: "sale-2"}} {
		text, err := packet.Make(p, v.prov, v.chain, dev.PublicBytes())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(text), "-----BEGIN LICET PAYG PACKET-----") {
			t.Fatalf("not armored:\n%s", text)
		}
		got, err := packet.Open(text, dev, v.root.Cert, "dev-1", now)
		if err != nil {
			t.Fatal(err)
		}
		if got.Sequence != p.Sequence || got.Seconds != p.Seconds || !got.ServerTime.Equal(now) || (p.Until != nil && !got.Until.Equal(until)) {
			t.Fatalf("opened %+v, want %+v", got, p)
		}
	}
}

func TestAttacks(t *testing.T) {
	v := newVendor(t)
	dev := newDecrypter(t)
	text, err := packet.Make(sample(), v.prov, v.chain, dev.PublicBytes())
	if err != nil {
		t.Fatal(err)
	}

	// Another device: a different key cannot open it, and the same key with
	// another device ID (a device whose keys were copied) refuses it.
	_, err = packet.Open(text, newDecrypter(t), v.root.Cert, "dev-1", now)
	wantInvalid(t, "packet of another device's key", err, "encrypted to key")
	_, err = packet.Open(text, dev, v.root.Cert, "dev-2", now)
	wantInvalid(t, "packet for another device ID", err, "not this device")

	// Credit changed: any byte of the ciphertext changed fails to decrypt.
	b, _ := armor.Decode(text, armor.TypePAYGPacket)
	sealed, _ := envelope.ParseSealed(b.Body, packet.SealedType, packet.Version)
	sealed.Ciphertext[len(sealed.Ciphertext)-20] ^= 1
	tampered := armor.Encode(armor.Block{Type: armor.TypePAYGPacket, Version: 1, Body: sealed.Marshal()})
	_, err = packet.Open(tampered, dev, v.root.Cert, "dev-1", now)
	wantInvalid(t, "changed ciphertext", err, "cannot be decrypted")

	// Credit changed by someone who can seal to the device (its HPKE key is
	// public): the re-encoded payload no longer matches the signature.
	p := sample()
	signed, _ := envelope.Sign(packet.SignedType, packet.Version, p, v.prov, v.chain)
	p.Seconds = 1_000_000
	forgedSigned, _ := envelope.Sign(packet.SignedType, packet.Version, p, v.prov, v.chain)
	signed.Payload = forgedSigned.Payload
	resealed, _ := envelope.Seal(packet.SealedType, packet.Version, dev.PublicBytes(), signed.Marshal())
	_, err = packet.Open(armor.Encode(armor.Block{Type: armor.TypePAYGPacket, Version: 1, Body: resealed.Marshal()}), dev, v.root.Cert, "dev-1", now)
	wantInvalid(t, "credit changed after signing", err, "does not verify")

	// Signed by a key the root did not certify: a self-made provisioning
	// certificate under another root, and this vendor's clearinghouse key.
	other := newVendor(t)
	text, _ = packet.Make(sample(), other.prov, other.chain, dev.PublicBytes())
	_, err = packet.Open(text, dev, v.root.Cert, "dev-1", now)
	wantInvalid(t, "packet of another root", err, "not signed by this vendor's provisioning key")
	ck, _ := keys.GenerateSigner()
	ch, _ := v.root.IssueClearinghouse(ck.Public(), "ACME", now)
	text, _ = packet.Make(sample(), ck, [][]byte{ch}, dev.PublicBytes())
	_, err = packet.Open(text, dev, v.root.Cert, "dev-1", now)
	wantInvalid(t, "packet signed by the clearinghouse", err, "not signed by this vendor's provisioning key")

	// The provisioning certificate's own key, with the chain swapped for
	// another valid provisioning certificate: the signature does not match.
	text, _ = packet.Make(sample(), other.prov, v.chain, dev.PublicBytes())
	_, err = packet.Open(text, dev, v.root.Cert, "dev-1", now)
	wantInvalid(t, "chain of another provisioning key", err, "not signed by key")
}

func TestValidate(t *testing.T) {
	until := now
	for name, p := range map[string]packet.Packet{
		"no device":        {Sequence: 1, Seconds: 1, ServerTime: now, Sale: "s"},
		"sequence 0":       {DeviceID: "d", Seconds: 1, ServerTime: now, Sale: "s"},
		"no credit":        {DeviceID: "d", Sequence: 1, ServerTime: now, Sale: "s"},
		"both credits":     {DeviceID: "d", Sequence: 1, Seconds: 1, Until: &until, ServerTime: now, Sale: "s"},
		"negative seconds": {DeviceID: "d", Sequence: 1, Seconds: -5, Until: &until, ServerTime: now, Sale: "s"},
		"no sale":          {DeviceID: "d", Sequence: 1, Seconds: 1, ServerTime: now},
	} {
		if _, err := packet.Make(p, nil, nil, nil); !errs.Is(err, errs.Invalid) {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
}

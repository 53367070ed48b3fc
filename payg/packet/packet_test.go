package packet_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/canonjson"
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

func initKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, packet.InitKeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// keysOf are a device's keys for OpenWith.
func keysOf(dev *keys.Decrypter, ik []byte) packet.Keys {
	return packet.Keys{Decrypter: dev, InitKey: ik}
}

func TestRoundTripV2(t *testing.T) {
	v := newVendor(t)
	dev, ik := newDecrypter(t), initKey(t)
	until := now.Add(30 * 24 * time.Hour)
	for _, p := range []packet.Packet{sample(), {DeviceID: "dev-1", Sequence: 2, Until: &until, ServerTime: now, Sale: "sale-2"}} {
		text, err := packet.MakeV2(p, v.prov, v.chain, ik)
		if err != nil {
			t.Fatal(err)
		}
		b, err := armor.Decode(text, armor.TypePAYGPacket)
		if err != nil || b.Version != packet.VersionShared {
			t.Fatalf("armor: version %d, %v", b.Version, err)
		}
		got, err := packet.OpenWith(text, keysOf(dev, ik), v.root.Cert, "dev-1", now)
		if err != nil {
			t.Fatal(err)
		}
		if got.Sequence != p.Sequence || got.Seconds != p.Seconds || !got.ServerTime.Equal(now) || (p.Until != nil && !got.Until.Equal(until)) {
			t.Fatalf("opened %+v, want %+v", got, p)
		}
		// The same packet made twice differs (random nonce) and both open.
		again, _ := packet.MakeV2(p, v.prov, v.chain, ik)
		if string(again) == string(text) {
			t.Fatal("two makes of one packet are identical: the nonce is not random")
		}
	}
	// Agents open version 1 packets too, with the same keys.
	v1, _ := packet.Make(sample(), v.prov, v.chain, dev.PublicBytes())
	if _, err := packet.OpenWith(v1, keysOf(dev, ik), v.root.Cert, "dev-1", now); err != nil {
		t.Fatalf("version 1 packet: %v", err)
	}
	// Open without the initialization key names what is missing.
	v2, _ := packet.MakeV2(sample(), v.prov, v.chain, ik)
	if _, err := packet.Open(v2, dev, v.root.Cert, "dev-1", now); err == nil || !strings.Contains(err.Error(), "initialization key") {
		t.Fatalf("version 2 without the init key: %v", err)
	}
	if _, err := packet.MakeV2(sample(), v.prov, v.chain, ik[:16]); !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "initialization key is 16 bytes") {
		t.Fatalf("short init key: %v", err)
	}
}

// sharedOf decodes a version 2 packet's body.
func sharedOf(t *testing.T, text []byte) packet.Shared {
	t.Helper()
	b, err := armor.Decode(text, armor.TypePAYGPacket)
	if err != nil {
		t.Fatal(err)
	}
	var sh packet.Shared
	if err := json.Unmarshal(b.Body, &sh); err != nil {
		t.Fatal(err)
	}
	return sh
}

// encodeShared armors a (changed) version 2 body under armor version ver.
func encodeShared(sh packet.Shared, ver int) []byte {
	body, _ := json.Marshal(sh)
	return armor.Encode(armor.Block{Type: armor.TypePAYGPacket, Version: ver, Body: body})
}

// sealShared seals signed bytes as version 2 under ik, as someone holding
// the device's initialization key can.
func sealShared(t *testing.T, plain []byte, ik []byte, device string, seq uint64) []byte {
	t.Helper()
	key, err := packet.SharedKey(ik, device)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	sh := packet.Shared{Type: packet.SealedType, Version: packet.VersionShared, DeviceID: device, Sequence: seq, AEAD: packet.AEADShared, Nonce: make([]byte, 12)}
	sh.Ciphertext = gcm.Seal(nil, sh.Nonce, plain, packet.AdditionalData(sh.Type, sh.Version, device, seq))
	return encodeShared(sh, packet.VersionShared)
}

func TestAttacksV2(t *testing.T) {
	v := newVendor(t)
	dev, ik := newDecrypter(t), initKey(t)
	text, err := packet.MakeV2(sample(), v.prov, v.chain, ik)
	if err != nil {
		t.Fatal(err)
	}
	open := func(text []byte, ik []byte, device string) error {
		_, err := packet.OpenWith(text, keysOf(dev, ik), v.root.Cert, device, now)
		return err
	}
	if err := open(text, ik, "dev-1"); err != nil {
		t.Fatal(err)
	}

	// Another device: its initialization key does not decrypt the packet;
	// another device ID refuses it by name; the name relabelled does not
	// decrypt.
	wantInvalid(t, "another device's init key", open(text, initKey(t), "dev-1"), "cannot be decrypted with this device's initialization key")
	wantInvalid(t, "another device ID", open(text, ik, "dev-2"), "not this device")
	sh := sharedOf(t, text)
	sh.DeviceID = "dev-2"
	wantInvalid(t, "device relabelled", open(encodeShared(sh, 2), ik, "dev-2"), "cannot be decrypted")

	// Tampered ciphertext, nonce or tag.
	for name, change := range map[string]func(sh *packet.Shared){
		"ciphertext": func(sh *packet.Shared) { sh.Ciphertext[len(sh.Ciphertext)/2] ^= 1 },
		"tag":        func(sh *packet.Shared) { sh.Ciphertext[len(sh.Ciphertext)-1] ^= 0x80 },
		"nonce":      func(sh *packet.Shared) { sh.Nonce[0] ^= 1 },
		"sequence":   func(sh *packet.Shared) { sh.Sequence = 7 },
	} {
		sh := sharedOf(t, text)
		change(&sh)
		wantInvalid(t, "changed "+name, open(encodeShared(sh, 2), ik, "dev-1"), "cannot be decrypted")
	}

	// Version 2 relabelled: the armor says 1 (the body is no HPKE
	// envelope of version 1), the body says 1 or 3, another cipher.
	wantInvalid(t, "armor relabelled as version 1", open(encodeShared(sharedOf(t, text), 1), ik, "dev-1"), "")
	sh = sharedOf(t, text)
	sh.Version = 1
	wantInvalid(t, "body relabelled as version 1", open(encodeShared(sh, 2), ik, "dev-1"), "relabelled")
	wantInvalid(t, "armor version 3", open(encodeShared(sharedOf(t, text), 3), ik, "dev-1"), "upgrade licet")
	sh = sharedOf(t, text)
	sh.AEAD = "CHACHA20-POLY1305"
	wantInvalid(t, "another cipher", open(encodeShared(sh, 2), ik, "dev-1"), "cipher")

	// Layers of different versions, sealed by someone holding the keys: a
	// version 1 signed packet under version 2, a version 2 signed packet
	// under version 1 (HPKE).
	p := sample()
	s1, _ := envelope.Sign(packet.SignedType, packet.VersionHPKE, p, v.prov, v.chain)
	wantInvalid(t, "v1 signature in a v2 packet", open(sealShared(t, s1.Marshal(), ik, "dev-1", 1), ik, "dev-1"), "relabelled")
	s2, _ := envelope.Sign(packet.SignedType, packet.VersionShared, p, v.prov, v.chain)
	hp, _ := envelope.Seal(packet.SealedType, packet.VersionHPKE, dev.PublicBytes(), s2.Marshal())
	wantInvalid(t, "v2 signature in a v1 packet", open(armor.Encode(armor.Block{Type: armor.TypePAYGPacket, Version: 1, Body: hp.Marshal()}), ik, "dev-1"), "relabelled")

	// Credit or sequence changed by someone holding the init key: the
	// re-encoded payload no longer matches the signature, and a label that
	// differs from the signed sequence is refused.
	p.Seconds = 1_000_000
	forged, _ := envelope.Sign(packet.SignedType, packet.VersionShared, p, v.prov, v.chain)
	s2.Payload = forged.Payload
	wantInvalid(t, "credit changed after signing", open(sealShared(t, s2.Marshal(), ik, "dev-1", 1), ik, "dev-1"), "does not verify")
	s2, _ = envelope.Sign(packet.SignedType, packet.VersionShared, sample(), v.prov, v.chain)
	wantInvalid(t, "sequence label changed", open(sealShared(t, s2.Marshal(), ik, "dev-1", 9), ik, "dev-1"), "relabelled")

	// Signed by a key the root did not certify.
	other := newVendor(t)
	text, _ = packet.MakeV2(sample(), other.prov, other.chain, ik)
	wantInvalid(t, "packet of another root", open(text, ik, "dev-1"), "not signed by this vendor's provisioning key")

	// Replay: the packet itself opens again (it carries its sequence); the
	// agent refuses it by sequence (payg/meter TestPacketV2Replay).
	text, _ = packet.MakeV2(sample(), v.prov, v.chain, ik)
	for range 2 {
		if err := open(text, ik, "dev-1"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCanonicalJSON: the packet's one-pass encoding (Packet.CanonicalJSON,
// what the vendor signs) is the canonical JSON canonjson makes of the same
// packet by its general path (encode, decode, sort, encode), for packets of
// seconds and of a date, with characters JSON escapes or must not.
func TestCanonicalJSON(t *testing.T) {
	until := time.Date(2027, 1, 31, 23, 59, 59, 0, time.FixedZone("x", 3600))
	for _, p := range []packet.Packet{
		sample(),
		{DeviceID: "dev-1", Sequence: 1<<64 - 1, Seconds: 1<<63 - 1, ServerTime: time.Unix(0, 1).UTC(), Sale: "sale-1"},
		{DeviceID: "dev-<&>", Sequence: 7, Until: &until, ServerTime: time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC), Sale: "s\u2028\"\\é\x01"},
		{},
	} {
		fast, err := p.CanonicalJSON()
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := json.Marshal(p)
		var generic map[string]any
		dec := json.NewDecoder(bytes.NewReader(plain))
		dec.UseNumber()
		if err := dec.Decode(&generic); err != nil {
			t.Fatal(err)
		}
		slow, err := canonjson.Marshal(generic)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fast, slow) {
			t.Errorf("packet %+v:\n one pass %s\n canonjson %s", p, fast, slow)
		}
	}
}

package envelope_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hpke"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/licet/licet/canonjson"
	"github.com/licet/licet/envelope"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
)

type doc struct {
	Site  string `json:"site"`
	Seats int    `json:"seats"`
}

func signer(t testing.TB) *keys.Signer {
	t.Helper()
	s, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func decrypter(t testing.TB) *keys.Decrypter {
	t.Helper()
	d, err := keys.GenerateDecrypter()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func sign(t testing.TB, typ string, s *keys.Signer) *envelope.Signed {
	t.Helper()
	sd, err := envelope.Sign(typ, 1, doc{Site: "site-1", Seats: 10}, s, [][]byte{{1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	return sd
}

func wantInvalid(t *testing.T, what string, err error, substr ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted", what)
	}
	if !errs.Is(err, errs.Invalid) {
		t.Errorf("%s: error kind %v, want invalid: %v", what, errs.KindOf(err), err)
	}
	for _, s := range substr {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%s: error %q does not contain %q", what, err, s)
		}
	}
}

func TestSignedRoundTrip(t *testing.T) {
	s := signer(t)
	sd := sign(t, "licet.test", s)
	wire := sd.Marshal()
	parsed, err := envelope.ParseSigned(wire, "licet.test", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.Verify(s.Public()); err != nil {
		t.Fatal(err)
	}
	var d doc
	if err := parsed.Decode(&d); err != nil || d != (doc{Site: "site-1", Seats: 10}) {
		t.Fatalf("Decode: %+v, %v", d, err)
	}
	if len(parsed.Certificates) != 1 || !bytes.Equal(parsed.Certificates[0], []byte{1, 2, 3}) {
		t.Fatalf("certificates lost: %v", parsed.Certificates)
	}
	// The wire form: the documented field names, byte strings in base64.
	var m map[string]json.RawMessage
	if err := json.Unmarshal(wire, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"type", "version", "payload", "signatures", "certificates"} {
		if _, ok := m[k]; !ok {
			t.Errorf("wire form lacks %q: %s", k, wire)
		}
	}
	if !strings.Contains(string(wire), `"kid":"`+s.ID()+`","alg":"ed25519","sig":"`) {
		t.Errorf("signature entry not in the documented form: %s", wire)
	}
}

// TestSignedMessage checks the exact bytes that are signed (docs/formats.md):
// "licet/v1 signed " + type + 0x00 + payload, where payload is canonical JSON.
func TestSignedMessage(t *testing.T) {
	s := signer(t)
	sd := sign(t, "licet.test", s)
	want, _ := canonjson.Marshal(doc{Site: "site-1", Seats: 10})
	if !bytes.Equal(sd.Payload, want) || string(sd.Payload) != `{"seats":10,"site":"site-1"}` {
		t.Fatalf("payload %s is not the canonical JSON of the document", sd.Payload)
	}
	msg := append([]byte("licet/v1 signed licet.test\x00"), sd.Payload...)
	if sd.Signatures[0].Alg != "ed25519" || sd.Signatures[0].KeyID != s.ID() {
		t.Fatalf("signature entry %+v", sd.Signatures[0])
	}
	if !ed25519.Verify(s.Public(), msg, sd.Signatures[0].Sig) {
		t.Fatal("signature is not over the documented message")
	}
}

func TestSignedTamper(t *testing.T) {
	s := signer(t)
	wire := sign(t, "licet.test", s).Marshal()
	good, _ := envelope.ParseSigned(wire, "licet.test", 1)

	// Change the payload: the seat count, or any single byte of it.
	p := *good
	p.Payload = bytes.Replace(good.Payload, []byte(`"seats":10`), []byte(`"seats":99`), 1)
	wantInvalid(t, "more seats", p.Verify(s.Public()), "does not verify", "changed after it was signed")
	for i := range good.Payload {
		p := *good
		p.Payload = bytes.Clone(good.Payload)
		p.Payload[i] ^= 0x01
		if p.Verify(s.Public()) == nil {
			t.Fatalf("payload byte %d flipped: still verifies", i)
		}
	}
	// Append whitespace: the payload bytes are signed as they are, not re-encoded.
	p = *good
	p.Payload = append(bytes.Clone(good.Payload), ' ')
	wantInvalid(t, "payload with a trailing blank", p.Verify(s.Public()), "does not verify")
	// Change or cut the signature.
	for i := range 64 {
		p := *good
		p.Signatures = []envelope.Signature{good.Signatures[0]}
		p.Signatures[0].Sig = bytes.Clone(good.Signatures[0].Sig)
		p.Signatures[0].Sig[i] ^= 0x80
		if p.Verify(s.Public()) == nil {
			t.Fatalf("signature byte %d flipped: still verifies", i)
		}
	}
	p = *good
	p.Signatures = []envelope.Signature{{KeyID: s.ID(), Alg: "ed25519", Sig: good.Signatures[0].Sig[:63]}}
	wantInvalid(t, "short signature", p.Verify(s.Public()), "does not verify")
	p.Signatures = []envelope.Signature{{KeyID: s.ID(), Alg: "ed25519"}}
	wantInvalid(t, "empty signature", p.Verify(s.Public()), "does not verify")
	p.Signatures = []envelope.Signature{{KeyID: s.ID(), Alg: "ecdsa", Sig: good.Signatures[0].Sig}}
	wantInvalid(t, "other algorithm", p.Verify(s.Public()), "unsupported algorithm")
}

func TestSignedTypeConfusion(t *testing.T) {
	s := signer(t)
	sd := sign(t, "licet.purchase-request", s)
	// Relabelled in place: the signature covers the type, so it fails.
	relabelled := *sd
	relabelled.Type = "licet.pack"
	wantInvalid(t, "purchase request relabelled as pack", relabelled.Verify(s.Public()), "does not verify")
	if _, err := envelope.ParseSigned(relabelled.Marshal(), "licet.pack", 1); err != nil {
		t.Fatalf("relabelled document should parse (the signature check catches it): %v", err)
	}
	// Presented as is where another type is expected: refused at parse time.
	_, err := envelope.ParseSigned(sd.Marshal(), "licet.pack", 1)
	wantInvalid(t, "purchase request where a pack is expected", err, `type "licet.purchase-request"`, `expected "licet.pack"`)
	// Type strings that share a prefix do not share signatures either.
	sd = sign(t, "licet.pack", s)
	longer := *sd
	longer.Type = "licet.pack2"
	wantInvalid(t, "type with a suffix", longer.Verify(s.Public()), "does not verify")
}

func TestSignedUnknownKey(t *testing.T) {
	s, other := signer(t), signer(t)
	sd := sign(t, "licet.test", s)
	wantInvalid(t, "verify with another key", sd.Verify(other.Public()), "is not signed by key "+other.ID())
	// A signature that claims the other key's ID but was made by s.
	forged := *sd
	forged.Signatures = []envelope.Signature{{KeyID: other.ID(), Alg: "ed25519", Sig: sd.Signatures[0].Sig}}
	wantInvalid(t, "signature claiming another key", forged.Verify(other.Public()), "does not verify")
	// With several signatures, the one of the asked key counts.
	both := *sd
	both.Signatures = append([]envelope.Signature{{KeyID: other.ID(), Alg: "ed25519", Sig: other.Sign(append([]byte("licet/v1 signed licet.test\x00"), sd.Payload...))}}, sd.Signatures...)
	if err := both.Verify(s.Public()); err != nil {
		t.Fatal(err)
	}
	if err := both.Verify(other.Public()); err != nil {
		t.Fatal(err)
	}
}

func TestParseSignedRejects(t *testing.T) {
	s := signer(t)
	good := sign(t, "licet.test", s)
	mod := func(f func(*envelope.Signed)) []byte {
		c := *good
		f(&c)
		return c.Marshal()
	}
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"not JSON", []byte("hello"), "not a signed licet document"},
		{"trailing data", append(good.Marshal(), '}'), "not a signed licet document"},
		{"version 0", mod(func(s *envelope.Signed) { s.Version = 0 }), `the licet.test file is damaged: its signed envelope has no "version"`},
		{"version 2", mod(func(s *envelope.Signed) { s.Version = 2 }), "format version 2 is not supported (this licet reads up to 1)"},
		{"no payload", mod(func(s *envelope.Signed) { s.Payload = nil }), `signed envelope has no "payload"`},
		{"no signature", mod(func(s *envelope.Signed) { s.Signatures = nil }), `signed envelope has no "signatures"`},
		{"renamed field", bytes.Replace(good.Marshal(), []byte(`"payload":`), []byte(`"body":`), 1),
			`the licet.test file is damaged: its signed envelope has no "payload" (or an empty one) but has "body", which licet does not know (a renamed field?)`},
		{"payload not base64", bytes.Replace(good.Marshal(), []byte(`"payload":"`), []byte(`"payload":"*`), 1), "not a signed licet document"},
	}
	for _, c := range cases {
		_, err := envelope.ParseSigned(c.data, "licet.test", 1)
		wantInvalid(t, c.name, err, c.want)
	}
	// Unknown fields are ignored (forward compatibility).
	withExtra := bytes.Replace(good.Marshal(), []byte(`{"type"`), []byte(`{"from_the_future":[1,{"x":2}],"type"`), 1)
	parsed, err := envelope.ParseSigned(withExtra, "licet.test", 1)
	if err != nil {
		t.Fatalf("unknown field refused: %v", err)
	}
	if err := parsed.Verify(s.Public()); err != nil {
		t.Fatal(err)
	}
	// Decode refuses a payload that is not one JSON value.
	bad := *good
	bad.Payload = []byte(`{"site":"x"} {}`)
	var d doc
	wantInvalid(t, "payload with two values", bad.Decode(&d), "payload is not valid JSON")
}

func seal(t testing.TB, typ string, d *keys.Decrypter, plaintext []byte) *envelope.Sealed {
	t.Helper()
	sl, err := envelope.Seal(typ, 1, d.PublicBytes(), plaintext)
	if err != nil {
		t.Fatal(err)
	}
	return sl
}

func TestSealedRoundTrip(t *testing.T) {
	d := decrypter(t)
	msg := []byte("the pack")
	sl := seal(t, "licet.test", d, msg)
	if sl.Recipient != d.ID() || sl.KEM != 0x647a || sl.KDF != 1 || sl.AEAD != 2 {
		t.Fatalf("sealed header %+v", sl)
	}
	wire := sl.Marshal()
	if !strings.Contains(string(wire), `"kem":25722,"kdf":1,"aead":2`) {
		t.Errorf("suite IDs not in the documented form: %s", wire)
	}
	parsed, err := envelope.ParseSealed(wire, "licet.test", 1)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := parsed.Open(d)
	if err != nil || !bytes.Equal(pt, msg) {
		t.Fatalf("Open: %q, %v", pt, err)
	}
	// The documented construction, with crypto/hpke directly.
	raw, _ := keys.Seal(d.PublicBytes(), []byte("licet/v1 sealed licet.test\x00"+d.ID()), msg)
	manual := *sl
	manual.Ciphertext = raw
	if pt, err := manual.Open(d); err != nil || !bytes.Equal(pt, msg) {
		t.Fatalf("ciphertext sealed with the documented info does not open: %v", err)
	}
	if hpke.MLKEM768X25519().ID() != sl.KEM {
		t.Fatal("KEM ID mismatch")
	}
}

func TestSealedWrongRecipient(t *testing.T) {
	d, other := decrypter(t), decrypter(t)
	sl := seal(t, "licet.pack", d, []byte("x"))
	_, err := sl.Open(other)
	wantInvalid(t, "open with another key", err, d.ID(), other.ID(), "another server")
	// Relabelled with the other key's ID: the HPKE decryption still fails.
	relabelled := *sl
	relabelled.Recipient = other.ID()
	_, err = relabelled.Open(other)
	wantInvalid(t, "relabelled recipient", err, "cannot be decrypted")
}

func TestSealedTamper(t *testing.T) {
	d := decrypter(t)
	sl := seal(t, "licet.pack", d, []byte("a license pack of some length"))
	// Every byte: the encapsulated key, the ciphertext and the tag.
	for i := range sl.Ciphertext {
		c := *sl
		c.Ciphertext = bytes.Clone(sl.Ciphertext)
		c.Ciphertext[i] ^= 0x01
		if _, err := c.Open(d); err == nil {
			t.Fatalf("ciphertext byte %d flipped: still opens", i)
		} else if !strings.Contains(err.Error(), "changed in transit") {
			t.Fatalf("byte %d: %v", i, err)
		}
	}
	for _, n := range []int{0, 1, 1119, 1120, len(sl.Ciphertext) - 1} {
		c := *sl
		c.Ciphertext = sl.Ciphertext[:n]
		_, err := c.Open(d)
		wantInvalid(t, "truncated ciphertext", err, "cannot be decrypted")
	}
	// The type is bound into the HPKE info.
	c := *sl
	c.Type = "licet.license"
	_, err := c.Open(d)
	wantInvalid(t, "relabelled type", err, "cannot be decrypted")
	// Another suite is refused before decrypting.
	for _, f := range []func(*envelope.Sealed){
		func(s *envelope.Sealed) { s.KEM = 0x0020 },
		func(s *envelope.Sealed) { s.KDF = 0x0002 },
		func(s *envelope.Sealed) { s.AEAD = 0x0003 },
	} {
		c := *sl
		f(&c)
		_, err := c.Open(d)
		wantInvalid(t, "other suite", err, "unsupported HPKE suite")
	}
}

func TestParseSealedRejects(t *testing.T) {
	d := decrypter(t)
	sl := seal(t, "licet.pack", d, []byte("x"))
	_, err := envelope.ParseSealed(sl.Marshal(), "licet.license", 1)
	wantInvalid(t, "wrong type", err, `type "licet.pack"`)
	c := *sl
	c.Version = 2
	_, err = envelope.ParseSealed(c.Marshal(), "licet.pack", 1)
	wantInvalid(t, "version 2", err, "version 2 is not supported")
	_, err = envelope.ParseSealed([]byte(`{"type":"licet.pack","version":1,"kem":70000}`), "licet.pack", 1)
	wantInvalid(t, "kem out of range", err, "not an encrypted licet document")
	_, err = envelope.ParseSealed(nil, "licet.pack", 1)
	wantInvalid(t, "empty", err, "not an encrypted licet document")
	// A renamed field is a damaged file, not a file for another recipient
	// (whose ID would be blank) or of another suite.
	for field, want := range map[string]string{"recipient": "recipient", "ciphertext": "ciphertext", "kem": "kem", "version": "version", "type": "type"} {
		renamed := bytes.Replace(sl.Marshal(), []byte(`"`+field+`":`), []byte(`"x_`+field+`":`), 1)
		_, err := envelope.ParseSealed(renamed, "licet.pack", 1)
		wantInvalid(t, "renamed "+field, err, `the licet.pack file is damaged: its encrypted envelope has no "`+want+`" (or an empty one) but has "x_`+field+`", which licet does not know`)
	}
	withExtra := bytes.Replace(sl.Marshal(), []byte(`{"type"`), []byte(`{"zzz":true,"type"`), 1)
	parsed, err := envelope.ParseSealed(withExtra, "licet.pack", 1)
	if err != nil {
		t.Fatalf("unknown field refused: %v", err)
	}
	if _, err := parsed.Open(d); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseSigned(f *testing.F) {
	s := signer(f)
	good := sign(f, "licet.test", s)
	f.Add(good.Marshal())
	two := *good
	two.Signatures = append(two.Signatures, envelope.Signature{KeyID: "ed25519:0000000000000000", Alg: "x", Sig: []byte{1}})
	f.Add(two.Marshal())
	f.Add([]byte(`{"type":"licet.test","version":1,"payload":"e30=","signatures":[{"kid":"","alg":"","sig":null}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sd, err := envelope.ParseSigned(data, "licet.test", 1)
		if err != nil {
			return
		}
		if sd.Type != "licet.test" || sd.Version != 1 || len(sd.Payload) == 0 || len(sd.Signatures) == 0 {
			t.Fatalf("ParseSigned accepted %+v", sd)
		}
		if sd.Verify(s.Public()) == nil {
			msg := append([]byte("licet/v1 signed licet.test\x00"), sd.Payload...)
			ok := false
			for _, sig := range sd.Signatures {
				ok = ok || (sig.KeyID == s.ID() && ed25519.Verify(s.Public(), msg, sig.Sig))
			}
			if !ok {
				t.Fatal("Verify accepted a document without a valid signature")
			}
		}
		var v any
		_ = sd.Decode(&v)
	})
}

func FuzzParseSealed(f *testing.F) {
	d := decrypter(f)
	f.Add(seal(f, "licet.test", d, []byte("hello")).Marshal())
	f.Add(seal(f, "licet.test", d, nil).Marshal())
	f.Add([]byte(`{"type":"licet.test","version":1,"recipient":"` + d.ID() + `","kem":25722,"kdf":1,"aead":2,"ciphertext":"AAAA"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sl, err := envelope.ParseSealed(data, "licet.test", 1)
		if err != nil {
			return
		}
		if sl.Type != "licet.test" || sl.Version != 1 {
			t.Fatalf("ParseSealed accepted %+v", sl)
		}
		_, _ = sl.Open(d)
	})
}

// TestSignedVersionBound checks that the format version is inside the
// signature: a document signed as one version does not verify as another,
// and the messages are the documented ones (docs/formats.md, section 5).
func TestSignedVersionBound(t *testing.T) {
	s := signer(t)
	for _, v := range []int{1, 2, 3} {
		sd, err := envelope.Sign("licet.test", v, doc{Site: "site-1", Seats: 10}, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := sd.Verify(s.Public()); err != nil {
			t.Fatalf("version %d: %v", v, err)
		}
		for _, other := range []int{0, 1, 2, 3, 10} {
			if other == v {
				continue
			}
			r := *sd
			r.Version = other
			wantInvalid(t, fmt.Sprintf("version %d relabelled %d", v, other), r.Verify(s.Public()), "does not verify")
		}
		want := append([]byte("licet/v1 signed licet.test\x00"), sd.Payload...)
		if v > 1 {
			want = append([]byte(fmt.Sprintf("licet/v2 signed licet.test\x00%d\x00", v)), sd.Payload...)
		}
		if !ed25519.Verify(s.Public(), want, sd.Signatures[0].Sig) {
			t.Fatalf("version %d: signature is not over the documented message %q", v, want)
		}
	}
	// A signature over the version 1 message counts for version 1 only.
	sd := sign(t, "licet.test", s)
	sd.Version = 2
	sd.Signatures[0].Sig = s.Sign(append([]byte("licet/v1 signed licet.test\x00"), sd.Payload...))
	wantInvalid(t, "version 1 message on a version 2 document", sd.Verify(s.Public()), "does not verify")
	if _, err := envelope.Sign("licet.test", 0, doc{}, s, nil); err == nil {
		t.Fatal("Sign accepted version 0")
	}
}

// TestSealedVersionBound checks that a Sealed envelope relabelled with
// another format version does not decrypt.
func TestSealedVersionBound(t *testing.T) {
	d := decrypter(t)
	for _, v := range []int{1, 2} {
		sl, err := envelope.Seal("licet.test", v, d.PublicBytes(), []byte("secret"))
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := sl.Open(d); err != nil || string(pt) != "secret" {
			t.Fatalf("version %d: %q, %v", v, pt, err)
		}
		r := *sl
		r.Version = 3 - v
		_, err = r.Open(d)
		wantInvalid(t, fmt.Sprintf("sealed version %d relabelled %d", v, 3-v), err, "cannot be decrypted")
	}
}

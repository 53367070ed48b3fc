package keys_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/licet/licet/keys"
)

func TestSuiteIDs(t *testing.T) {
	// The numeric IDs written into every sealed document (docs/formats.md).
	if got := keys.SuiteKEM.ID(); got != 0x647a {
		t.Errorf("KEM ID = %#04x, want 0x647a (MLKEM768-X25519)", got)
	}
	if got := keys.SuiteKDF.ID(); got != 0x0001 {
		t.Errorf("KDF ID = %#04x, want 0x0001 (HKDF-SHA256)", got)
	}
	if got := keys.SuiteAEAD.ID(); got != 0x0002 {
		t.Errorf("AEAD ID = %#04x, want 0x0002 (AES-256-GCM)", got)
	}
}

var idRE = regexp.MustCompile(`^(ed25519|hpke):[0-9a-f]{16}$`)

func TestSignerID(t *testing.T) {
	s, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(s.Public())
	if want := "ed25519:" + hex.EncodeToString(sum[:8]); s.ID() != want || keys.SignerID(s.Public()) != want {
		t.Fatalf("ID = %q, want %q", s.ID(), want)
	}
	if !idRE.MatchString(s.ID()) {
		t.Fatalf("ID %q has the wrong form", s.ID())
	}
	msg := []byte("message")
	if !ed25519.Verify(s.Public(), msg, s.Sign(msg)) {
		t.Fatal("signature does not verify")
	}
	if !bytes.Equal(s.Private().Public().(ed25519.PublicKey), s.Public()) {
		t.Fatal("Private and Public disagree")
	}
	other, _ := keys.GenerateSigner()
	if other.ID() == s.ID() {
		t.Fatal("two keys share an ID")
	}
	if keys.NewSigner(s.Private()).ID() != s.ID() {
		t.Fatal("NewSigner gives another ID")
	}
}

func TestSignerSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "site.key")
	s, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(path); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path)
	raw, _ := os.ReadFile(path)
	if blk, _ := pem.Decode(raw); blk == nil || blk.Type != "PRIVATE KEY" {
		t.Fatalf("key file is not a PKCS#8 PEM block:\n%s", raw)
	}
	loaded, err := keys.LoadSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.ID() != s.ID() || !bytes.Equal(loaded.Private(), s.Private()) {
		t.Fatal("loaded key differs from the saved one")
	}
	// Save refuses to overwrite, and leaves the file as it was.
	other, _ := keys.GenerateSigner()
	if err := other.Save(path); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("Save over an existing key: %v", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, raw) {
		t.Fatal("refused Save changed the key file")
	}
	if err := s.Save(filepath.Join(dir, "no-such-dir", "k")); err == nil {
		t.Fatal("Save into a missing directory succeeded")
	}
}

func TestLoadSignerErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	d, _ := keys.GenerateDecrypter()
	hpkePath := filepath.Join(dir, "hpke.key")
	if err := d.Save(hpkePath); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct{ path, want string }{
		"missing":      {filepath.Join(dir, "nope"), "read key"},
		"not PEM":      {write("text", []byte("hello")), "no PEM block"},
		"HPKE key":     {hpkePath, "no PEM block"},
		"bad PKCS#8":   {write("bad", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})), "not a PKCS#8"},
		"ECDSA PKCS#8": {write("ec", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})), "not an Ed25519 key"},
	}
	for name, c := range cases {
		if _, err := keys.LoadSigner(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", name, err, c.want)
		}
	}
}

func TestDecrypter(t *testing.T) {
	d, err := keys.GenerateDecrypter()
	if err != nil {
		t.Fatal(err)
	}
	pub := d.PublicBytes()
	if len(pub) != 1216 { // ML-KEM-768 encapsulation key (1184) then X25519 point (32)
		t.Fatalf("public key is %d bytes, want 1216", len(pub))
	}
	sum := sha256.Sum256(pub)
	if want := "hpke:" + hex.EncodeToString(sum[:8]); d.ID() != want || keys.RecipientID(pub) != want {
		t.Fatalf("ID = %q, want %q", d.ID(), want)
	}
	pub[0] ^= 0xff
	if bytes.Equal(pub, d.PublicBytes()) {
		t.Fatal("PublicBytes returns the key's own slice")
	}
	info, msg := []byte("info"), []byte("secret message")
	ct, err := keys.Seal(d.PublicBytes(), info, msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(ct) != 1120+len(msg)+16 { // encapsulated key, ciphertext, GCM tag
		t.Fatalf("ciphertext is %d bytes", len(ct))
	}
	pt, err := d.Open(info, ct)
	if err != nil || !bytes.Equal(pt, msg) {
		t.Fatalf("Open: %q, %v", pt, err)
	}
	if _, err := d.Open([]byte("other info"), ct); err == nil {
		t.Fatal("Open with other info succeeded")
	}
	other, _ := keys.GenerateDecrypter()
	if _, err := other.Open(info, ct); err == nil {
		t.Fatal("another key opened the ciphertext")
	}
	// A key parsed once (Recipient) seals as Seal does, and has the same ID.
	r, err := keys.ParseRecipient(d.PublicBytes())
	if err != nil || r.ID() != d.ID() {
		t.Fatalf("ParseRecipient: ID %v, %v", r, err)
	}
	ct2, err := r.Seal(info, msg)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := d.Open(info, ct2); err != nil || !bytes.Equal(pt, msg) {
		t.Fatalf("Open of Recipient.Seal: %q, %v", pt, err)
	}
	if _, err := keys.ParseRecipient(d.PublicBytes()[:1215]); err == nil {
		t.Fatal("ParseRecipient accepted a short key")
	}
	if _, err := keys.Seal([]byte("short"), info, msg); err == nil || !strings.Contains(err.Error(), "MLKEM768-X25519") {
		t.Fatalf("Seal to a bad key: %v", err)
	}
}

func TestDecrypterSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "site-hpke.key")
	d, err := keys.GenerateDecrypter()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Save(path); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path)
	raw, _ := os.ReadFile(path)
	blk, _ := pem.Decode(raw)
	if blk == nil || blk.Type != "LICET HPKE PRIVATE KEY" || blk.Headers["KEM"] != "25722" || len(blk.Bytes) != 32 {
		t.Fatalf("HPKE key file is not the documented format:\n%s", raw)
	}
	loaded, err := keys.LoadDecrypter(path)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.ID() != d.ID() || !bytes.Equal(loaded.PublicBytes(), d.PublicBytes()) {
		t.Fatal("loaded key differs")
	}
	ct, _ := keys.Seal(d.PublicBytes(), nil, []byte("x"))
	if pt, err := loaded.Open(nil, ct); err != nil || string(pt) != "x" {
		t.Fatalf("loaded key cannot open: %v", err)
	}
	other, _ := keys.GenerateDecrypter()
	if err := other.Save(path); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("Save over an existing key: %v", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, raw) {
		t.Fatal("refused Save changed the key file")
	}

	write := func(name string, b *pem.Block) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := map[string]struct{ path, want string }{
		"other KEM":      {write("kem", &pem.Block{Type: blk.Type, Headers: map[string]string{"KEM": "32"}, Bytes: blk.Bytes}), "unsupported KEM"},
		"no KEM header":  {write("nokem", &pem.Block{Type: blk.Type, Bytes: blk.Bytes}), "unsupported KEM"},
		"short key":      {write("short", &pem.Block{Type: blk.Type, Headers: blk.Headers, Bytes: blk.Bytes[:31]}), "bad HPKE private key"},
		"Ed25519 key":    {write("ed", &pem.Block{Type: "PRIVATE KEY", Bytes: blk.Bytes}), "no PEM block"},
		"missing file":   {filepath.Join(dir, "nope"), "read key"},
		"empty file":     {write("empty", &pem.Block{Type: "X"}), "no PEM block"},
		"wrong PEM type": {write("type", &pem.Block{Type: "HPKE PRIVATE KEY", Headers: blk.Headers, Bytes: blk.Bytes}), "no PEM block"},
	}
	for name, c := range cases {
		if _, err := keys.LoadDecrypter(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", name, err, c.want)
		}
	}
}

func checkMode(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
}

// TestStringsLeakNothing prints keys every way a log line might and checks
// that no form of the private key appears.
func TestStringsLeakNothing(t *testing.T) {
	s, _ := keys.GenerateSigner()
	d, _ := keys.GenerateDecrypter()
	dir := t.TempDir()
	if err := d.Save(filepath.Join(dir, "k")); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "k"))
	blk, _ := pem.Decode(raw)
	seed := blk.Bytes
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(s.Private())

	secrets := map[string][]byte{
		"ed25519 seed": s.Private().Seed(), "ed25519 private": s.Private(), "pkcs8": pkcs8, "hpke seed": seed,
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("keys", "signer", s, "decrypter", d)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("keys", "signer", s, "decrypter", d)
	outputs := map[string]string{
		"Signer.String":    s.String(),
		"Decrypter.String": d.String(),
		"%v":               fmt.Sprintf("%v %v", s, d),
		"%+v":              fmt.Sprintf("%+v %+v", s, d),
		"%s":               fmt.Sprintf("%s %s", s, d),
		"%q":               fmt.Sprintf("%q %q", s, d),
		"in a struct":      fmt.Sprintf("%+v", struct{ S *keys.Signer }{s}),
		"slog":             logs.String(),
	}
	if !strings.Contains(s.String(), s.ID()) || !strings.Contains(d.String(), d.ID()) {
		t.Errorf("String does not show the key ID: %q, %q", s, d)
	}
	for where, out := range outputs {
		for what, secret := range secrets {
			for _, form := range []string{
				hex.EncodeToString(secret), strings.ToUpper(hex.EncodeToString(secret)),
				base64.StdEncoding.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret),
				fmt.Sprint(secret), fmt.Sprintf("%#v", secret), string(secret),
			} {
				if strings.Contains(out, form[:min(len(form), 16)]) {
					t.Errorf("%s shows the %s: %s", where, what, out)
				}
			}
		}
	}
}

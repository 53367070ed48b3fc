package keys_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/pem"
	"path/filepath"
	"strings"
	"testing"

	"github.com/licet/licet/internal/fsutil"
	"github.com/licet/licet/keys"
	"os"
)

// writeKeyFile writes data to a new file in dir and returns its path.
func writeKeyFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := fsutil.CreateExclusive(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// savedKey returns the file Save writes for a key.
func savedKey(t testing.TB, save func(string) error) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key")
	if err := save(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzLoadSigner feeds arbitrary key files to LoadSigner: it must not panic;
// a file it refuses gives an error naming the file; a key it loads signs
// verifiably, and saved again it loads back as the same key.
func FuzzLoadSigner(f *testing.F) {
	s, err := keys.GenerateSigner()
	if err != nil {
		f.Fatal(err)
	}
	valid := savedKey(f, s.Save)
	f.Add(valid)
	f.Add(append(append([]byte("junk before\n"), valid...), "junk after"...))
	blk, _ := pem.Decode(valid)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "LICET HPKE PRIVATE KEY", Bytes: blk.Bytes}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: blk.Bytes[:len(blk.Bytes)-1]}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x00}}))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := writeKeyFile(t, dir, "in.key", data)
		k, err := keys.LoadSigner(path)
		if err != nil {
			if k != nil {
				t.Fatalf("LoadSigner returned a key with the error %v", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("the error %q does not name the file", err)
			}
			return
		}
		msg := []byte("licet fuzz")
		if !ed25519.Verify(k.Public(), msg, k.Sign(msg)) {
			t.Fatalf("loaded key %s makes signatures that do not verify", k.ID())
		}
		if k.ID() != keys.SignerID(k.Public()) {
			t.Fatalf("loaded key has ID %s, its public key %s", k.ID(), keys.SignerID(k.Public()))
		}
		out := filepath.Join(dir, "out.key")
		if err := k.Save(out); err != nil {
			t.Fatalf("a loaded key does not save: %v", err)
		}
		k2, err := keys.LoadSigner(out)
		if err != nil {
			t.Fatalf("a loaded key, saved, does not load: %v", err)
		}
		if !k2.Private().Equal(k.Private()) {
			t.Fatal("a loaded key, saved and loaded again, is another key")
		}
	})
}

// FuzzLoadDecrypter feeds arbitrary key files to LoadDecrypter: it must not
// panic; a file it refuses gives an error naming the file; a key it loads
// opens what is sealed to it, and saved again it loads back as the same key.
func FuzzLoadDecrypter(f *testing.F) {
	d, err := keys.GenerateDecrypter()
	if err != nil {
		f.Fatal(err)
	}
	valid := savedKey(f, d.Save)
	f.Add(valid)
	blk, _ := pem.Decode(valid)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: blk.Type, Headers: map[string]string{"KEM": "1"}, Bytes: blk.Bytes}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: blk.Type, Headers: blk.Headers, Bytes: blk.Bytes[:len(blk.Bytes)-1]}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: blk.Type, Headers: blk.Headers, Bytes: bytes.Repeat([]byte{0xff}, 64)}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: blk.Type, Bytes: blk.Bytes}))
	f.Add([]byte("-----BEGIN LICET HPKE PRIVATE KEY-----\nKEM: x\n\n-----END LICET HPKE PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := writeKeyFile(t, dir, "in.key", data)
		k, err := keys.LoadDecrypter(path)
		if err != nil {
			if k != nil {
				t.Fatalf("LoadDecrypter returned a key with the error %v", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("the error %q does not name the file", err)
			}
			return
		}
		if k.ID() != keys.RecipientID(k.PublicBytes()) {
			t.Fatalf("loaded key has ID %s, its public key %s", k.ID(), keys.RecipientID(k.PublicBytes()))
		}
		ct, err := keys.Seal(k.PublicBytes(), []byte("info"), []byte("secret"))
		if err != nil {
			t.Fatalf("cannot seal to a loaded key: %v", err)
		}
		if pt, err := k.Open([]byte("info"), ct); err != nil || string(pt) != "secret" {
			t.Fatalf("a loaded key does not open what is sealed to it: %q, %v", pt, err)
		}
		out := filepath.Join(dir, "out.key")
		if err := k.Save(out); err != nil {
			t.Fatalf("a loaded key does not save: %v", err)
		}
		k2, err := keys.LoadDecrypter(out)
		if err != nil {
			t.Fatalf("a loaded key, saved, does not load: %v", err)
		}
		if !bytes.Equal(k2.PublicBytes(), k.PublicBytes()) {
			t.Fatal("a loaded key, saved and loaded again, is another key")
		}
	})
}

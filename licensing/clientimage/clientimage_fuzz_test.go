package clientimage_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/testpki"
	"github.com/licet/licet/licensing/clientimage"
)

// FuzzRead feeds arbitrary image signature files to Read: it must not
// panic; a file it refuses is an error of kind Invalid; a file it accepts
// carries one of the manifests the test's clearinghouse signed (a fuzzer
// cannot forge one), which signed again reads back the same.
func FuzzRead(f *testing.F) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	root := testpki.Root(f, "Acme", now.Add(-time.Hour))
	ch := testpki.Clearinghouse(f, root, now.Add(-time.Hour))
	chain := [][]byte{ch.Cert.Raw}
	signed := []*clientimage.Manifest{
		{SoftwareID: 0x01000137, Name: "app", SHA256: strings.Repeat("ab", 32), Size: 4096, Signed: now.Add(-time.Minute)},
		{SoftwareID: 7, Name: "tool \u00e9", SHA256: strings.Repeat("0f", 32), Size: 1, Signed: now.Add(-2 * time.Minute)},
	}
	encode := func(m *clientimage.Manifest) string {
		b, err := json.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		return string(b)
	}
	want := map[string]bool{}
	for _, m := range signed {
		file, err := clientimage.Sign(m, ch.Signer, chain)
		if err != nil {
			f.Fatal(err)
		}
		if _, err := clientimage.Read(file, root.Cert, now); err != nil {
			f.Fatalf("the valid seed is refused: %v", err)
		}
		want[encode(m)] = true
		f.Add(file)
		blk, err := armor.Decode(file, armor.TypeImageSignature)
		if err != nil {
			f.Fatal(err)
		}
		// The envelope under other armor, and damaged.
		f.Add(armor.Encode(armor.Block{Type: armor.TypeLicense, Version: 1, Body: blk.Body}))
		f.Add(armor.Encode(armor.Block{Type: armor.TypeImageSignature, Version: 2, Body: blk.Body}))
		f.Add(armor.Encode(armor.Block{Type: armor.TypeImageSignature, Version: 1, Body: bytes.Replace(blk.Body, []byte(`"app"`), []byte(`"ap2"`), 1)}))
		f.Add(armor.Encode(armor.Block{Type: armor.TypeImageSignature, Version: 1, Body: blk.Body[:len(blk.Body)/2]}))
		f.Add(file[:len(file)-10])
	}
	// Signed by a clearinghouse of another root.
	other := testpki.Clearinghouse(f, testpki.Root(f, "Other", now.Add(-time.Hour)), now.Add(-time.Hour))
	foreign, err := clientimage.Sign(signed[0], other.Signer, [][]byte{other.Cert.Raw})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(foreign)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := clientimage.Read(data, root.Cert, now)
		if err != nil {
			if m != nil {
				t.Fatalf("Read returned a manifest with the error %v", err)
			}
			if k := errs.KindOf(err); k != errs.Invalid {
				t.Fatalf("Read refused the file with an error of kind %s, not invalid: %v", k, err)
			}
			return
		}
		got := encode(m)
		if !want[got] {
			t.Fatalf("Read accepted a manifest the clearinghouse never signed: %s", got)
		}
		again, err := clientimage.Sign(m, ch.Signer, chain)
		if err != nil {
			t.Fatalf("the accepted manifest %s does not sign: %v", got, err)
		}
		m2, err := clientimage.Read(again, root.Cert, now)
		if err != nil || encode(m2) != got {
			t.Fatalf("the accepted manifest %s, signed again, reads back as %+v (%v)", got, m2, err)
		}
	})
}

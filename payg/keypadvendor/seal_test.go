package keypadvendor

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/licet/licet/payg/openpaygo"
)

// TestKeypadSealer checks that a sealed key opens only for its serial
// number, under its sealing key, unaltered, and that the sealing key file is
// made once with mode 0600.
func TestKeypadSealer(t *testing.T) {
	dir := t.TempDir()
	s, err := LoadSealer(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, SealKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, %v; want mode 0600", SealKeyFile, fi, err)
	}
	if err := CreateSealKey(dir); err != nil {
		t.Fatalf("CreateSealKey on an existing key: %v", err)
	}
	again, err := LoadSealer(dir)
	if err != nil {
		t.Fatal(err)
	}
	k := openpaygo.Key{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	sealed, err := s.Seal("SHS-1", k)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.Open("SHS-1", sealed); err != nil || got != k {
		t.Fatalf("reopened sealing key: %v, %v", got, err)
	}
	if _, err := s.Open("SHS-2", sealed); err == nil {
		t.Error("a key sealed for SHS-1 opens for SHS-2")
	}
	for i := range sealed {
		bad := append([]byte(nil), sealed...)
		bad[i] ^= 1
		if _, err := s.Open("SHS-1", bad); err == nil {
			t.Errorf("a sealed key with byte %d altered opens", i)
		}
	}
	other, err := LoadSealer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Open("SHS-1", sealed); err == nil {
		t.Error("a key opens under another data directory's sealing key")
	}
	if _, err := s.Open("SHS-1", sealed[:10]); err == nil {
		t.Error("a truncated sealed key opens")
	}
}

package tpmseal_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/tpmseal"
	"github.com/licet/licet/internal/tpmseal/swtpmtest"
)

func newBox(t *testing.T, path, keyFile string) *tpmseal.Box {
	t.Helper()
	b, err := tpmseal.New(tpmseal.Options{Path: path, KeyFile: keyFile, Index: tpmseal.IndexCompliance, Purpose: "test state"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seal seals and commits, as a writer does after storing the blob.
func seal(t *testing.T, b *tpmseal.Box, plain string, after uint64) []byte {
	t.Helper()
	blob, n, commit, err := b.Seal([]byte(plain), after, true)
	if err != nil {
		t.Fatalf("seal: %v", err)
	}
	if tpmseal.Recorded(blob) != n {
		t.Fatalf("blob records %d, Seal said %d", tpmseal.Recorded(blob), n)
	}
	if err := commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	return blob
}

func mustOpen(t *testing.T, b *tpmseal.Box, blob []byte, want string) {
	t.Helper()
	plain, _, err := b.Open(blob)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if string(plain) != want {
		t.Fatalf("opened %q, want %q", plain, want)
	}
}

func wantRolledBack(t *testing.T, b *tpmseal.Box, blob []byte) {
	t.Helper()
	_, _, err := b.Open(blob)
	if !errors.Is(err, tpmseal.ErrRolledBack) || !errs.Is(err, errs.Invalid) {
		t.Fatalf("an older blob opened with %v, want a restored snapshot (errs.Invalid, ErrRolledBack)", err)
	}
	if !strings.Contains(err.Error(), "restored snapshot") {
		t.Fatalf("the error does not say what happened: %v", err)
	}
}

func TestRoundTripAndCounter(t *testing.T) {
	tpm := swtpmtest.Start(t)
	key := filepath.Join(t.TempDir(), "seal.tpm")
	b := newBox(t, tpm.Path, key)
	a := seal(t, b, "first", 0)
	mustOpen(t, b, a, "first")
	n1, err := b.Counter()
	if err != nil || n1 != tpmseal.Recorded(a) {
		t.Fatalf("counter %d (%v) after the first write recording %d", n1, err, tpmseal.Recorded(a))
	}
	c := seal(t, b, "second", tpmseal.Recorded(a))
	if n2, _ := b.Counter(); n2 != n1+1 {
		t.Fatalf("counter %d after the second write, want %d", n2, n1+1)
	}
	mustOpen(t, b, c, "second")
	// A fresh process (no cached key) unseals the key from the TPM.
	mustOpen(t, newBox(t, tpm.Path, key), c, "second")

	// A changed blob, or a blob sealed for another purpose, does not open.
	bad := bytes.Clone(c)
	bad[len(bad)-1] ^= 1
	if _, _, err := b.Open(bad); !errs.Is(err, errs.Invalid) {
		t.Fatalf("a changed blob opened with %v", err)
	}
	other, _ := tpmseal.New(tpmseal.Options{Path: tpm.Path, KeyFile: key, Index: tpmseal.IndexCompliance, Purpose: "other"})
	if _, _, err := other.Open(c); !errs.Is(err, errs.Invalid) {
		t.Fatalf("a blob opened for another purpose: %v", err)
	}
}

func TestRestoredSnapshotDetected(t *testing.T) {
	tpm := swtpmtest.Start(t)
	b := newBox(t, tpm.Path, filepath.Join(t.TempDir(), "seal.tpm"))
	a := seal(t, b, "a", 0)
	c := seal(t, b, "b", tpmseal.Recorded(a))
	wantRolledBack(t, b, a)
	mustOpen(t, b, c, "b")
}

func TestRebootKeepsCounter(t *testing.T) {
	tpm := swtpmtest.Start(t)
	key := filepath.Join(t.TempDir(), "seal.tpm")
	b := newBox(t, tpm.Path, key)
	a := seal(t, b, "a", 0)
	c := seal(t, b, "b", tpmseal.Recorded(a))
	tpm.Stop()
	again := swtpmtest.StartIn(t, tpm.StateDir)
	b2 := newBox(t, again.Path, key)
	mustOpen(t, b2, c, "b")
	wantRolledBack(t, b2, a)
}

// A crash after storing a blob but before the counter moved: the blob
// still opens, and the next write makes every earlier blob detectable.
func TestInterruptedCommit(t *testing.T) {
	tpm := swtpmtest.Start(t)
	b := newBox(t, tpm.Path, filepath.Join(t.TempDir(), "seal.tpm"))
	a := seal(t, b, "a", 0)
	c, _, _, err := b.Seal([]byte("b"), tpmseal.Recorded(a), true) // stored, never committed
	if err != nil {
		t.Fatal(err)
	}
	mustOpen(t, b, c, "b")
	mustOpen(t, b, a, "a") // the documented window: the write before an interrupted one
	d := seal(t, b, "c", tpmseal.Recorded(c))
	if tpmseal.Recorded(d) != tpmseal.Recorded(c)+1 {
		t.Fatalf("the write after an interrupted one records %d, want %d", tpmseal.Recorded(d), tpmseal.Recorded(c)+1)
	}
	mustOpen(t, b, d, "c")
	wantRolledBack(t, b, c)
	wantRolledBack(t, b, a)
}

// The owner may delete the counter and define it again: a new counter
// starts above every value the TPM ever had, so a snapshot stays visible.
func TestCounterRedefinedStillDetects(t *testing.T) {
	tpm := swtpmtest.Start(t)
	b := newBox(t, tpm.Path, filepath.Join(t.TempDir(), "seal.tpm"))
	a := seal(t, b, "a", 0)
	c := seal(t, b, "b", tpmseal.Recorded(a))
	tp := openRaw(t, tpm.Path)
	idx := tpm2.TPMHandle(tpmseal.IndexCompliance)
	rp, err := tpm2.NVReadPublic{NVIndex: idx}.Execute(tp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.NVUndefineSpace{AuthHandle: tpm2.TPMRHOwner, NVIndex: tpm2.NamedHandle{Handle: idx, Name: rp.NVName}}).Execute(tp); err != nil {
		t.Fatalf("undefine: %v", err)
	}
	tp.Close()
	if _, _, err := b.Open(c); !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("with the counter deleted: %v", err)
	}
	// The next write defines it again; the snapshot is still below it.
	d := seal(t, b, "c", 0)
	mustOpen(t, b, d, "c")
	wantRolledBack(t, b, a)
	wantRolledBack(t, b, c)
}

func TestAnotherTPMCannotOpen(t *testing.T) {
	one, two := swtpmtest.Start(t), swtpmtest.Start(t)
	key := filepath.Join(t.TempDir(), "seal.tpm")
	a := seal(t, newBox(t, one.Path, key), "secret", 0)
	_, _, err := newBox(t, two.Path, key).Open(a)
	if !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "does not load") {
		t.Fatalf("another TPM opened the sealed key, or said so unclearly: %v", err)
	}
	// Nor can it seal with the other TPM's key file.
	if _, _, _, err := newBox(t, two.Path, key).Seal([]byte("x"), 0, true); err == nil {
		t.Fatal("another TPM sealed with a key it cannot load")
	}
}

func TestUnreachableTPM(t *testing.T) {
	b := newBox(t, "unix:"+filepath.Join(t.TempDir(), "none.sock"), filepath.Join(t.TempDir(), "seal.tpm"))
	_, _, _, err := b.Seal([]byte("x"), 0, true)
	if err == nil || !errs.Is(err, errs.Internal) || !strings.Contains(err.Error(), "TPM") {
		t.Fatalf("an unreachable TPM gave %v, want an internal error naming the TPM", err)
	}
	if _, err := tpmseal.New(tpmseal.Options{Path: "x", KeyFile: "k", Purpose: "p", Index: 0x01000001}); err == nil {
		t.Fatal("an index outside the owner range was accepted")
	}
}

func openRaw(t *testing.T, path string) transport.TPMCloser {
	t.Helper()
	tp, err := tpmseal.OpenTPM(path)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// A write that does not advance records the counter as it is: it opens,
// and the blob it replaced is not told apart until the next advancing write.
func TestNonAdvancingWrite(t *testing.T) {
	tpm := swtpmtest.Start(t)
	b := newBox(t, tpm.Path, filepath.Join(t.TempDir(), "seal.tpm"))
	a := seal(t, b, "a", 0)
	n, _ := b.Counter()
	c, rec, commit, err := b.Seal([]byte("a, later"), tpmseal.Recorded(a), false)
	if err != nil || commit() != nil {
		t.Fatal(err)
	}
	if m, _ := b.Counter(); rec != n || m != n {
		t.Fatalf("a non-advancing write recorded %d and left the counter at %d, want both %d", rec, m, n)
	}
	mustOpen(t, b, c, "a, later")
	mustOpen(t, b, a, "a")
	d := seal(t, b, "b", rec)
	mustOpen(t, b, d, "b")
	wantRolledBack(t, b, a)
	wantRolledBack(t, b, c)
}

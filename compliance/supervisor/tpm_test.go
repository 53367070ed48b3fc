package supervisor_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/licet/licet/compliance/supervisor"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/tpmseal/swtpmtest"
)

// withTPM makes the fixture's supervisor seal with the TPM at path.
func (f *fixture) withTPM(path string) {
	f.env.TPM = path
	f.sup = supervisor.New(f.data, f.env)
}

func (f *fixture) dir() string { return filepath.Join(f.data, supervisor.Dir) }

// snapshot copies the compliance directory's files, as a backup would.
func (f *fixture) snapshot() map[string][]byte {
	f.t.Helper()
	files := map[string][]byte{}
	ents, err := os.ReadDir(f.dir())
	if err != nil {
		f.t.Fatal(err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			b, _ := os.ReadFile(filepath.Join(f.dir(), e.Name()))
			files[e.Name()] = b
		}
	}
	return files
}

// restore puts a snapshot back: the files it holds as they were, the
// others removed.
func (f *fixture) restore(files map[string][]byte) {
	f.t.Helper()
	ents, _ := os.ReadDir(f.dir())
	for _, e := range ents {
		if _, ok := files[e.Name()]; !ok && e.Type().IsRegular() {
			os.Remove(filepath.Join(f.dir(), e.Name()))
		}
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(f.dir(), n), b, 0o600); err != nil {
			f.t.Fatal(err)
		}
	}
}

// faultAndFix writes twice with a changed outcome (both durable): a
// fault takes the score down, then the fault is fixed.
func (f *fixture) faultAndFix() {
	f.t.Helper()
	fault := filepath.Join(f.data, "fault")
	f.write(fault, "")
	if st := f.eval(); st.Score != 90 {
		f.t.Fatalf("score %d with the fault", st.Score)
	}
	os.Remove(fault)
	if st := f.eval(); st.Score != 100 {
		f.t.Fatalf("score %d with the fault fixed", st.Score)
	}
}

func TestTPMSealRoundTrip(t *testing.T) {
	tpm := swtpmtest.Start(t)
	f := newFixture(t)
	f.withTPM(tpm.Path)
	if got := f.sup.SealNote(); !strings.HasPrefix(got, "TPM 2.0") {
		t.Fatalf("seal note %q before the first write", got)
	}
	f.install(f.doc(1))
	st := f.eval()
	if !strings.HasPrefix(st.Seal, "TPM 2.0: sealed, counter ") || st.TPMCounter == 0 {
		t.Fatalf("status says %q (counter %d), want the TPM seal and its counter", st.Seal, st.TPMCounter)
	}
	if _, err := os.Stat(filepath.Join(f.dir(), supervisor.TPMKeyFile)); err != nil {
		t.Fatalf("no TPM-sealed key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.dir(), supervisor.KeyFile)); err == nil {
		t.Fatal("a device-local key file exists beside the TPM-sealed key")
	}
	// Another process (no cached key) reads it through the TPM.
	other := supervisor.New(f.data, f.env)
	v, err := other.Verdict()
	if err != nil || v.Mode != supervisor.ModeCompliant {
		t.Fatalf("verdict through the TPM: %+v %v", v, err)
	}
	got, err := other.State()
	if err != nil || got.Seal != st.Seal || supervisor.StatusOf(got).Seal != st.Seal {
		t.Fatalf("read back seal %q (%v), want %q", got.Seal, err, st.Seal)
	}
	// An evaluation that changes nothing but its time does not move the
	// counter (the TPM's NV memory wears); one that changes the score does.
	n := st.TPMCounter
	if st := f.eval(); st.TPMCounter != n {
		t.Fatalf("an unchanged evaluation moved the counter from %d to %d", n, st.TPMCounter)
	}
	f.write(filepath.Join(f.data, "fault"), "")
	if st := f.eval(); st.TPMCounter != n+1 {
		t.Fatalf("a changed score left the counter at %d, want %d", st.TPMCounter, n+1)
	}
}

// The test: a restored snapshot of the state directory (copy, write
// again, put the copy back) is detected with the TPM...
func TestRestoredSnapshotDetectedWithTPM(t *testing.T) {
	tpm := swtpmtest.Start(t)
	f := newFixture(t)
	f.withTPM(tpm.Path)
	f.install(f.doc(1))
	f.eval()
	old := f.snapshot()
	f.faultAndFix()
	f.restore(old)

	_, err := f.sup.Verdict()
	if !errs.Is(err, errs.Forbidden) || !strings.Contains(err.Error(), "restored snapshot") {
		t.Fatalf("a restored snapshot was not refused: %v", err)
	}
	// Fresh process: the same.
	if _, err := supervisor.New(f.data, f.env).State(); !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "restored snapshot") {
		t.Fatalf("state of a restored snapshot: %v", err)
	}
	// The supervisor records it and fails closed until the bundle comes
	// back; then the tampering is scored.
	if _, err := f.sup.Evaluate(context.Background()); err == nil {
		t.Fatal("evaluation went on on a restored snapshot")
	}
	if _, err := f.sup.Verdict(); !errs.Is(err, errs.Forbidden) {
		t.Fatalf("after the snapshot was found: %v", err)
	}
	f.install(f.doc(1))
	st := f.eval()
	if r := result(st, "intact"); r.Pass {
		t.Fatalf("the restored snapshot is not scored: %+v", r)
	}
	found := false
	for _, e := range st.Tamper {
		found = found || (e.Kind == "state" && strings.Contains(e.What, "restored snapshot"))
	}
	if !found {
		t.Fatalf("no tampering event names the restored snapshot: %+v", st.Tamper)
	}
}

// ...and not without it: the documented limit of the file-based seal
// (docs/compliance.md). If this starts failing, the file-based seal learnt
// something and the docs must say so.
func TestRestoredSnapshotUndetectedWithoutTPM(t *testing.T) {
	f := newFixture(t)
	f.install(f.doc(1))
	st := f.eval()
	if st.Seal != supervisor.SealNote {
		t.Fatalf("status says %q without a TPM, want %q", st.Seal, supervisor.SealNote)
	}
	old := f.snapshot()
	f.faultAndFix()
	f.restore(old)
	v, err := f.sup.Verdict()
	if err != nil || v.Mode != supervisor.ModeCompliant {
		t.Fatalf("the file-based seal refused a restored snapshot (%+v, %v): update docs/compliance.md", v, err)
	}
	got, err := f.sup.State()
	if err != nil || got.Evaluations != st.Evaluations {
		t.Fatalf("the restored copy is not the one read back: %v", err)
	}
}

func TestTPMSealedStateOnAnotherTPM(t *testing.T) {
	one, two := swtpmtest.Start(t), swtpmtest.Start(t)
	f := newFixture(t)
	f.withTPM(one.Path)
	f.install(f.doc(1))
	f.eval()
	f.withTPM(two.Path)
	_, err := f.sup.Verdict()
	if !errs.Is(err, errs.Forbidden) || !strings.Contains(err.Error(), "does not load") {
		t.Fatalf("another TPM opened the state, or said so unclearly: %v", err)
	}
}

func TestTPMSealedStateWithoutTPM(t *testing.T) {
	tpm := swtpmtest.Start(t)
	f := newFixture(t)
	f.withTPM(tpm.Path)
	f.install(f.doc(1))
	f.eval()
	f.withTPM("")
	if _, err := f.sup.Verdict(); !errs.Is(err, errs.Forbidden) || !strings.Contains(err.Error(), "no TPM is in use") {
		t.Fatalf("a TPM-sealed state read without the TPM: %v", err)
	}
}

// A TPM that does not answer fails closed and rewrites nothing: when it is
// back, the state opens as it was.
func TestTPMUnreachable(t *testing.T) {
	tpm := swtpmtest.Start(t)
	f := newFixture(t)
	f.withTPM(tpm.Path)
	f.install(f.doc(1))
	f.eval()
	tpm.Stop()
	other := supervisor.New(f.data, f.env) // no cached key
	if _, err := other.Verdict(); !errs.Is(err, errs.Forbidden) || !strings.Contains(err.Error(), "TPM") {
		t.Fatalf("with the TPM gone: %v", err)
	}
	if _, err := f.sup.Evaluate(context.Background()); !errs.Is(err, errs.Internal) {
		t.Fatalf("evaluating with the TPM gone: %v", err)
	}
	back := swtpmtest.StartIn(t, tpm.StateDir)
	f.withTPM(back.Path)
	st := f.eval()
	if len(st.Tamper) != 0 {
		t.Fatalf("an unreachable TPM was recorded as tampering: %+v", st.Tamper)
	}
}

// A device set up with the file-based seal moves to the TPM at its next
// write; a file-sealed copy from before is then refused.
func TestMoveToTPM(t *testing.T) {
	f := newFixture(t)
	f.install(f.doc(1))
	f.eval()
	before := f.snapshot()
	tpm := swtpmtest.Start(t)
	f.withTPM(tpm.Path)
	if v, err := f.sup.Verdict(); err != nil || v.Mode != supervisor.ModeCompliant {
		t.Fatalf("a file-sealed state with a TPM now present: %+v %v", v, err)
	}
	f.faultAndFix()
	if st, _ := f.sup.State(); st == nil || !strings.HasPrefix(st.Seal, "TPM 2.0") {
		t.Fatalf("the state did not move to the TPM: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(f.dir(), supervisor.KeyFile)); err == nil {
		t.Fatal("the device-local key is still there after the move")
	}
	f.restore(before)
	if _, err := f.sup.Verdict(); !errs.Is(err, errs.Forbidden) || !strings.Contains(err.Error(), "put back") {
		t.Fatalf("a file-sealed copy from before the TPM: %v", err)
	}
}

func TestTPMPath(t *testing.T) {
	t.Setenv(supervisor.TPMEnv, "unix:/run/x.sock")
	if got := supervisor.TPMPath("tcp:127.0.0.1:2321"); got != "tcp:127.0.0.1:2321" {
		t.Fatalf("the flag does not win: %q", got)
	}
	if got := supervisor.TPMPath(""); got != "unix:/run/x.sock" {
		t.Fatalf("the environment is not used: %q", got)
	}
	t.Setenv(supervisor.TPMEnv, "none")
	if got := supervisor.TPMPath(""); got != "" {
		t.Fatalf("none gives %q", got)
	}
}

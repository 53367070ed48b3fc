package meter_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/payg/meter"
	"github.com/licet/licet/pki"
)

// TestHelperApply is the child process of TestCrashDuringApply: it applies
// a packet with a fault point armed, and is killed there.
func TestHelperApply(t *testing.T) {
	dir := os.Getenv("LICET_METER_CRASH_DIR")
	if dir == "" {
		t.Skip("child process of TestCrashDuringApply")
	}
	dec, err := keys.LoadDecrypter(filepath.Join(dir, "dev.key"))
	if err != nil {
		t.Fatal(err)
	}
	rootDER, _ := os.ReadFile(filepath.Join(dir, "root.der"))
	root, err := pki.ParseRoot(rootDER)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := os.ReadFile(filepath.Join(dir, "packet.txt"))
	m := meter.New(filepath.Join(dir, "payg"), meter.Options{Root: root, Decrypter: dec})
	if _, err := m.Apply([][]byte{text}); err != nil {
		t.Fatal(err)
	}
	t.Fatal("the fault point did not stop the apply")
}

// A SIGKILL at any point of an apply neither loses nor doubles the credit:
// after the crash the packet is either applied once or not at all, and
// applying it again gives exactly one packet's credit.
func TestCrashDuringApply(t *testing.T) {
	for _, point := range []string{"meter.apply.before-append", "meter.append.packet.before-write", "meter.append.packet.after-write"} {
		t.Run(point, func(t *testing.T) {
			v := newVendor(t)
			d := newDevice(t, v, "dev-1")
			if _, err := d.m.Apply([][]byte{v.packet(t, d, 100, nil)}); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Dir(d.dir)
			p := v.packet(t, d, 3600, nil)
			os.WriteFile(filepath.Join(dir, "packet.txt"), p, 0o600)
			os.WriteFile(filepath.Join(dir, "root.der"), v.root.Cert.Raw, 0o600)
			if err := d.dec.Save(filepath.Join(dir, "dev.key")); err != nil {
				t.Fatal(err)
			}
			killAtFaultPoint(t, "TestHelperApply", "LICET_METER_CRASH_DIR="+dir, point)

			before := d.m.Status()
			if before.State == meter.StateTampered || (before.BalanceSeconds != 100 && before.BalanceSeconds != 3700) {
				t.Fatalf("after SIGKILL at %s: %+v", point, before)
			}
			_, err := d.m.Apply([][]byte{p})
			switch before.BalanceSeconds {
			case 100:
				if err != nil {
					t.Fatalf("re-applying the packet the crash lost: %v", err)
				}
			case 3700:
				if !errs.Is(err, errs.Conflict) {
					t.Fatalf("re-applying the packet applied before the crash: %v", err)
				}
			}
			if st := d.m.Status(); st.BalanceSeconds != 3700 || st.HighestSequence != 2 {
				t.Fatalf("after the crash and a retry: %+v", st)
			}
			t.Logf("%s: balance %d after the crash", point, before.BalanceSeconds)
		})
	}
}

// killAtFaultPoint runs this test binary's helper test in a child process
// with env set and the fault point armed, waits until the child reports
// reaching the point, and kills it there with SIGKILL.
func killAtFaultPoint(t *testing.T, helper, env, point string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+helper+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env, "LICET_FAULTPOINT="+point)
	stderr, _ := cmd.StderrPipe()
	cmd.Stdout = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	reached := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "faultpoint "+point+" reached") {
				reached <- true
			}
		}
		close(reached)
	}()
	select {
	case ok := <-reached:
		if !ok {
			t.Fatal("the child ended without reaching the fault point")
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the child did not reach the fault point")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
}

package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPackInstallSurvivesSIGKILL kills the site with SIGKILL inside the
// install transaction (after the pack row, before its file row) and checks
// that the pack is not installed at all, then installs it whole.
func TestPackInstallSurvivesSIGKILL(t *testing.T) {
	v := newVendor(t, "")
	tmp := t.TempDir()
	site := filepath.Join(tmp, "site")
	ok(t, "site", "init", "--data", site, "--vendor", v.srv.URL, "--enroll", v.enrollCode(t, "acme"))
	order := v.order(t, "acme")
	req := filepath.Join(tmp, "purchase.txt")
	ok(t, "site", "pack", "request", "--data", site, "--order", order, "-o", req)
	packFile := filepath.Join(tmp, "pack.txt")
	ok(t, v.admin("vendor", "pack", "issue", "-o", packFile, req)...)

	cmd := exec.Command(licetBin, "site", "pack", "install", "--data", site, packFile)
	cmd.Env = append(os.Environ(), "LICET_FAULTPOINT=site.install-pack")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	reached := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "faultpoint site.install-pack reached") {
				reached <- true
				return
			}
		}
		reached <- false
	}()
	select {
	case r := <-reached:
		if !r {
			cmd.Wait()
			t.Fatal("install ended without reaching the fault point")
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("install did not reach the fault point")
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	cmd.Wait()

	if rows := listPacks(t, site); len(rows) != 0 {
		t.Fatalf("a killed install left a pack behind: %+v", rows)
	}
	ok(t, "site", "pack", "install", "--data", site, packFile)
	rows := listPacks(t, site)
	if len(rows) != 1 || rows[0].OrderID != order || rows[0].Quantity != 25 {
		t.Fatalf("after the retry: %+v", rows)
	}
}

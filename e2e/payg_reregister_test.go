package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/internal/paygtest"
	"github.com/licet/licet/payg/provisioning"
)

// TestPaygReregister: a device whose agent lost its state directory
// registers again from a fresh directory with a code the vendor's
// administrator issues for it ('licet vendor device reregister'), through
// the real binary. The new installation keeps the device ID, gets new keys
// (the old directory's syncs are refused from then on), starts after the
// device's last packet with none of the earlier credit (which stays with
// the old installation: it is never given twice), and applies the packets
// sold after. The code registers only that device's hardware, once; the
// same hardware under another account is still refused as a clone; the
// new installation's first report (nothing used) does not flag the device.
func TestPaygReregister(t *testing.T) {
	v := newVendor(t, "")
	root := filepath.Join(v.dir, "root.crt")
	ok(t, v.admin("vendor", "account", "add", "--customer", "acme", "--currency", "EUR", "--id", "acme-eur")...)
	ok(t, v.admin("vendor", "account", "add", "--customer", "other", "--currency", "EUR", "--id", "other-eur")...)
	ok(t, v.admin("vendor", "plan", "add", "--id", "h1", "--hours", "1", "--price", "100", "--currency", "EUR")...)
	hw := paygtest.FakeHardware(t, fmt.Sprintf("%032x", time.Now().UnixNano()))
	agent := func(tag string) string {
		dir := filepath.Join(t.TempDir(), tag)
		ok(t, "agent", "init", "--data", dir, "--hw-root", hw)
		return dir
	}
	register := func(dir, code string) result {
		return licet(t, nil, "agent", "payg", "register", "--data", dir, "--hw-root", hw, "--server", v.srv.URL, "--code", code, "--root", root)
	}
	status := func(dir string) paygStatus {
		var st paygStatus
		okJSON(t, &st, "agent", "payg", "status", "--data", dir)
		return st
	}

	var sale provisioning.SellAnswer
	okJSON(t, &sale, v.admin("vendor", "sell", "--account", "acme-eur", "--plan", "h1", "--new-device")...)
	old := agent("old")
	if r := register(old, sale.Code); r.code != 0 {
		t.Fatalf("first registration: %s", r)
	}
	dev := status(old).DeviceID
	ok(t, v.admin("vendor", "sell", "--account", "acme-eur", "--plan", "h1", "--device", dev)...)
	ok(t, "agent", "payg", "sync", "--data", old, "--hw-root", hw)
	if st := status(old); st.BalanceSeconds != 7200 || st.HighestSequence != 2 {
		t.Fatalf("the old installation after a sync: %+v", st)
	}

	// The state directory is lost. The same hardware under another
	// account is a clone, refused.
	fresh := agent("fresh")
	okJSON(t, &sale, v.admin("vendor", "sell", "--account", "other-eur", "--plan", "h1", "--new-device")...)
	fails(t, 3, "clone", "agent", "payg", "register", "--data", fresh, "--hw-root", hw, "--server", v.srv.URL, "--code", sale.Code, "--root", root)

	var rc provisioning.ReregisterAnswer
	okJSON(t, &rc, v.admin("vendor", "device", "reregister", "--device", dev, "--idempotency-key", "rereg-"+dev, "--json")...)
	if rc.Device != dev || rc.Account != "acme-eur" || rc.Code == "" {
		t.Fatalf("re-registration code: %+v", rc)
	}
	// Other hardware does not register with the device's code.
	otherHW := paygtest.FakeHardware(t, fmt.Sprintf("%032x", time.Now().UnixNano()+1))
	otherDir := filepath.Join(t.TempDir(), "other")
	ok(t, "agent", "init", "--data", otherDir, "--hw-root", otherHW)
	fails(t, 3, "re-registers device "+dev, "agent", "payg", "register", "--data", otherDir, "--hw-root", otherHW, "--server", v.srv.URL, "--code", rc.Code, "--root", root)

	if r := register(fresh, rc.Code); r.code != 0 || !strings.Contains(r.stdout, "starts after its packet 2") {
		t.Fatalf("re-registration: %s", r)
	}
	st := status(fresh)
	if st.DeviceID != dev || st.HighestSequence != 2 || st.BalanceSeconds != 0 {
		t.Fatalf("the fresh installation: %+v, want device %s after packet 2 with no credit (the earlier credit stays with the old installation)", st, dev)
	}
	fails(t, 3, "already used", "agent", "payg", "register", "--data", agent("again"), "--hw-root", hw, "--server", v.srv.URL, "--code", rc.Code, "--root", root)
	// The old installation's keys were replaced: its syncs are refused.
	fails(t, 4, "", "agent", "payg", "sync", "--data", old, "--hw-root", hw)

	// Credit sold from now on reaches the new installation.
	ok(t, v.admin("vendor", "sell", "--account", "acme-eur", "--plan", "h1", "--device", dev)...)
	ok(t, "agent", "payg", "sync", "--data", fresh, "--hw-root", hw)
	if st := status(fresh); st.BalanceSeconds != 3600 || st.HighestSequence != 3 {
		t.Fatalf("the fresh installation after a sale and a sync: %+v", st)
	}
	// A sync reports what the device had before it: the old installation's
	// last report said packet 1, the new one's first says packet 2.
	var shown provisioning.Device
	okJSON(t, &shown, v.admin("vendor", "device", "show", "--device", dev, "--json")...)
	if shown.Reregistered == nil || shown.BaseSequence != 2 || shown.PreviousReport == nil || shown.PreviousReport.HighestSequence != 1 ||
		shown.Report == nil || shown.Report.HighestSequence != 2 || shown.Flag != "" {
		t.Errorf("the vendor's view of the re-registered device: %+v (previous report %+v, report %+v)", shown, shown.PreviousReport, shown.Report)
	}
	out := ok(t, v.admin("vendor", "device", "show", "--device", dev)...)
	if want := "this installation started after packet 2; the old installation last reported packet 1"; !strings.Contains(out, want) {
		t.Errorf("device show does not say %q:\n%s", want, out)
	}
}

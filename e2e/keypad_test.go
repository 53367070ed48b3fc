package e2e

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/licet/licet/payg/openpaygo"
	"github.com/licet/licet/store/postgres"
)

// keypadIssue is what 'licet vendor token issue --json' prints.
type keypadIssue struct {
	Device string `json:"device"`
	Token  string `json:"token"`
	Count  uint32 `json:"count"`
	Type   string `json:"type"`
	Value  *int   `json:"value"`
}

// keypadSecret is what 'licet vendor token device export --json' prints.
type keypadSecret struct {
	Serial       string `json:"serial"`
	Key          string `json:"key"`
	StartingCode uint32 `json:"starting_code"`
	Divider      int    `json:"divider"`
}

// keypadDevice is the device the test types tokens into: the decoder's
// state, as the reference's firmware keeps it.
type keypadDevice struct {
	dev        openpaygo.Device
	restricted bool
	last       uint32
	used       []uint32
}

func newKeypadDevice(t *testing.T, sec keypadSecret, restricted bool) *keypadDevice {
	t.Helper()
	k, err := openpaygo.ParseKey(sec.Key)
	if err != nil {
		t.Fatalf("exported key: %v", err)
	}
	return &keypadDevice{dev: openpaygo.Device{Key: k, StartingCode: sec.StartingCode}, restricted: restricted, last: 1}
}

// enter types a token and fails unless the device takes it as issued.
func (d *keypadDevice) enter(t *testing.T, is keypadIssue) {
	t.Helper()
	res, err := openpaygo.Decode(d.dev, is.Token, d.last, d.used, d.restricted)
	if err != nil || res.Status != openpaygo.Valid || res.Count != is.Count || res.Type.String() != is.Type {
		t.Fatalf("token %+v: device decodes %+v, %v", is, res, err)
	}
	if is.Value != nil && *is.Value != res.Value {
		t.Fatalf("token %+v: device reads value %d", is, res.Value)
	}
	d.used = openpaygo.UpdateUsed(d.used, res.Type, res.Value, res.Count)
	d.last = max(d.last, res.Count)
	// A counter sync may be typed again (it only moves the count forward);
	// any other token is refused the second time.
	if again, _ := openpaygo.Decode(d.dev, is.Token, d.last, d.used, d.restricted); is.Type != "COUNTER_SYNC" && again.Status != openpaygo.AlreadyUsed {
		t.Fatalf("token %+v entered twice: %s, want already_used", is, again.Status)
	}
}

// TestKeypadTokens registers keypad devices at a running vendor, issues
// tokens with the CLI, and types them into a device simulated with the
// codec: every token is valid, in order, and the key never shows outside
// an explicit export.
func TestKeypadTokens(t *testing.T) {
	t.Parallel()
	v := &vendorEnv{dir: filepath.Join(t.TempDir(), "vendor")}
	var initOut struct {
		AdminToken string `json:"admin_token"`
	}
	okJSON(t, &initOut, "vendor", "init", "--data", v.dir, "--name", "Keypad Vendor")
	v.token = initOut.AdminToken
	if fi, err := os.Stat(filepath.Join(v.dir, "keypad.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keypad.key must exist with mode 0600 after init: %v %v", fi, err)
	}
	v.srv = start(t, nil, "vendor", "serve", "--data", v.dir)

	// Register: nothing secret is printed.
	added := ok(t, v.admin("vendor", "token", "device", "add", "--serial", "SHS-1", "--divider", "2", "--json")...)
	if strings.Contains(added, `"key"`) || strings.Contains(added, "starting_code") {
		t.Fatalf("device add printed a secret: %s", added)
	}
	const key2 = "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5"
	ok(t, v.admin("vendor", "token", "device", "add", "--serial", "SHS-2", "--key", key2, "--starting-code", "123456789", "--restricted", "--extended")...)
	fails(t, 3, `SHS-1.*registered already`, v.admin("vendor", "token", "device", "add", "--serial", "SHS-1")...)
	fails(t, 3, `--key`, v.admin("vendor", "token", "device", "add", "--serial", "SHS-3", "--key", "xyz")...)
	fails(t, 3, `--divider`, v.admin("vendor", "token", "device", "add", "--serial", "SHS-3", "--divider", "1000")...)
	fails(t, 2, `--serial is required`, v.admin("vendor", "token", "device", "add")...)
	fails(t, 4, `token`, "vendor", "token", "device", "list", "--server", v.srv.URL, "--token", "licet_wrong")

	var sec1, sec2 keypadSecret
	okJSON(t, &sec1, v.admin("vendor", "token", "device", "export", "--device", "SHS-1")...)
	okJSON(t, &sec2, v.admin("vendor", "token", "device", "export", "--device", "SHS-2")...)
	if sec2.Key != key2 || sec2.StartingCode != 123456789 {
		t.Fatalf("export SHS-2: %+v", sec2)
	}
	k1, _ := openpaygo.ParseKey(sec1.Key)
	if sec1.Divider != 2 || sec1.StartingCode != openpaygo.StartingCode(k1) {
		t.Fatalf("export SHS-1: %+v; want divider 2 and the starting code derived from the key", sec1)
	}
	list := ok(t, v.admin("vendor", "token", "device", "list", "--json")...)
	table := ok(t, v.admin("vendor", "token", "device", "list")...)
	for _, out := range []string{list, table} {
		if strings.Contains(out, sec1.Key) || strings.Contains(out, key2) || !strings.Contains(out, "SHS-1") {
			t.Fatalf("device list shows a key, or not the devices:\n%s", out)
		}
	}

	// Issue every type to SHS-1 and type the tokens in.
	d1 := newKeypadDevice(t, sec1, false)
	issue := func(args ...string) keypadIssue {
		t.Helper()
		var is keypadIssue
		okJSON(t, &is, v.admin(append([]string{"vendor", "token", "issue"}, args...)...)...)
		return is
	}
	for _, c := range []struct {
		args  []string
		typ   string
		value int
	}{
		{[]string{"--days", "7"}, "ADD_TIME", 14},
		{[]string{"--set-days", "30"}, "SET_TIME", 60},
		{[]string{"--days", "497"}, "ADD_TIME", 994},
		{[]string{"--sync"}, "COUNTER_SYNC", -1},
		{[]string{"--disable"}, "DISABLE_PAYG", -1},
	} {
		is := issue(append([]string{"--device", "SHS-1"}, c.args...)...)
		if is.Device != "SHS-1" || is.Type != c.typ || (c.value >= 0) != (is.Value != nil) || (is.Value != nil && *is.Value != c.value) {
			t.Fatalf("issue %v: %+v, want %s value %d", c.args, is, c.typ, c.value)
		}
		d1.enter(t, is)
	}
	// Without --json only the digits go to standard output.
	plain := ok(t, v.admin("vendor", "token", "issue", "--device", "SHS-1", "--days", "1")...)
	if tok := strings.TrimSpace(plain); len(tok) != 9 || strings.Trim(tok, "0123456789") != "" {
		t.Fatalf("issue printed %q, want the 9 digits", plain)
	}

	// The record names who issued each token: the admin token's ID and
	// name from the request's authorisation, never its secret.
	var history []struct {
		IssuedBy string `json:"issued_by"`
	}
	hreq, _ := http.NewRequest(http.MethodGet, v.srv.URL+"/v1/keypad/devices/SHS-1/tokens", nil)
	hreq.Header.Set("Authorization", "Bearer "+v.token)
	hresp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(hresp.Body).Decode(&history); err != nil || len(history) == 0 {
		t.Fatalf("token history: %v %+v", err, history)
	}
	hresp.Body.Close()
	for _, h := range history {
		if !strings.HasPrefix(h.IssuedBy, "tok-") || strings.Contains(h.IssuedBy, v.token) {
			t.Fatalf("a token is recorded as issued by %q, want the admin token's ID and name", h.IssuedBy)
		}
	}

	// Bad command lines and out-of-range values.
	fails(t, 2, `exactly one of --days N, --set-days N, --disable or --sync`, v.admin("vendor", "token", "issue", "--device", "SHS-1")...)
	fails(t, 2, `exactly one of --days N, --set-days N, --disable or --sync`, v.admin("vendor", "token", "issue", "--device", "SHS-1", "--days", "1", "--sync")...)
	fails(t, 2, `--days "x"`, v.admin("vendor", "token", "issue", "--device", "SHS-1", "--days", "x")...)
	fails(t, 2, `--device is required`, v.admin("vendor", "token", "issue", "--days", "1")...)
	fails(t, 3, `--days 498 is out of range.* 1 to 497 days`, v.admin("vendor", "token", "issue", "--device", "SHS-1", "--days", "498")...)
	fails(t, 3, `--set-days -1 is out of range`, v.admin("vendor", "token", "issue", "--device", "SHS-1", "--set-days", "-1")...)
	fails(t, 3, `not registered`, v.admin("vendor", "token", "issue", "--device", "nope", "--days", "1")...)

	// Extended, restricted tokens: 20 digits 1-4.
	d2 := newKeypadDevice(t, sec2, true)
	big := issue("--device", "SHS-2", "--days", "5000")
	if len(big.Token) != 20 || strings.Trim(big.Token, "1234") != "" {
		t.Fatalf("extended restricted token %q", big.Token)
	}
	d2.enter(t, big)

	// Concurrent sales to one device, from separate processes.
	const n = 6
	var mu sync.Mutex
	var sold []keypadIssue
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := licet(t, nil, v.admin("vendor", "token", "issue", "--device", "SHS-2", "--days", fmt.Sprint(i+1), "--json")...)
			var is keypadIssue
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &is) != nil {
				t.Errorf("concurrent issue %d: %s", i, r)
				return
			}
			mu.Lock()
			sold = append(sold, is)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	slices.SortFunc(sold, func(a, b keypadIssue) int { return int(a.Count) - int(b.Count) })
	for i, is := range sold {
		if want := big.Count + 2*uint32(i+1); is.Count != want {
			t.Fatalf("concurrent sale %d has count %d, want %d (counts: %+v)", i, is.Count, want, sold)
		}
		d2.enter(t, is)
	}

	// A retried sale with the same idempotency key gets the same token.
	first := issue("--device", "SHS-2", "--days", "3", "--idempotency-key", "order-77")
	again := issue("--device", "SHS-2", "--days", "3", "--idempotency-key", "order-77")
	if again.Token != first.Token || again.Count != first.Count {
		t.Fatalf("retry with the same key: %+v, first %+v", again, first)
	}
	fails(t, 3, `Idempotency-Key "order-77" was used for another request`, v.admin("vendor", "token", "issue", "--device", "SHS-2", "--days", "4", "--idempotency-key", "order-77")...)
	d2.enter(t, first)

	// After a restart the counts go on and the sealed keys still open.
	v.srv.stop(t)
	v.srv = start(t, nil, "vendor", "serve", "--data", v.dir)
	d1.enter(t, issue("--device", "SHS-1", "--days", "2"))

	// The key is in no log line and not in clear in the database.
	logs := v.srv.stderr.String()
	if strings.Contains(logs, sec1.Key) || strings.Contains(logs, key2) {
		t.Fatalf("the server logged a device key:\n%s", logs)
	}
	raw2, _ := hex.DecodeString(key2)
	for _, f := range []string{"vendor.db", "vendor.db-wal"} {
		b, err := os.ReadFile(filepath.Join(v.dir, f))
		if err != nil {
			continue
		}
		if bytes.Contains(b, raw2) || bytes.Contains(b, []byte(key2)) {
			t.Fatalf("%s holds SHS-2's key in clear", f)
		}
	}
}

// TestKeypadTwoVendorsPostgres runs two vendor processes on one PostgreSQL
// database and one data directory (so one keypad.key) and sells tokens to
// one device through both at once: each count once, every token valid.
func TestKeypadTwoVendorsPostgres(t *testing.T) {
	t.Parallel()
	dsn := postgres.TestDSN(t)
	dir := filepath.Join(t.TempDir(), "vendor")
	var initOut struct {
		AdminToken string `json:"admin_token"`
	}
	okJSON(t, &initOut, "vendor", "init", "--data", dir, "--name", "Keypad Vendor", "--db", dsn)
	a := start(t, nil, "vendor", "serve", "--data", dir)
	b := start(t, nil, "vendor", "serve", "--data", dir)
	admin := func(srv *server, args ...string) []string {
		return append(args, "--server", srv.URL, "--token", initOut.AdminToken)
	}
	ok(t, admin(a, "vendor", "token", "device", "add", "--serial", "pump-7")...)
	var sec keypadSecret
	okJSON(t, &sec, admin(b, "vendor", "token", "device", "export", "--device", "pump-7")...)
	const n = 10
	sold := make([]keypadIssue, n)
	var wg sync.WaitGroup
	for i := range n {
		srv := a
		if i%2 == 1 {
			srv = b
		}
		wg.Go(func() {
			r := licet(t, nil, admin(srv, "vendor", "token", "issue", "--device", "pump-7", "--days", "1", "--json")...)
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &sold[i]) != nil {
				t.Errorf("issue %d: %s", i, r)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	slices.SortFunc(sold, func(x, y keypadIssue) int { return int(x.Count) - int(y.Count) })
	d := newKeypadDevice(t, sec, false)
	for i, is := range sold {
		if want := uint32(2 + 2*i); is.Count != want {
			t.Fatalf("sale %d has count %d, want %d (counts: %+v)", i, is.Count, want, sold)
		}
		d.enter(t, is)
	}
}

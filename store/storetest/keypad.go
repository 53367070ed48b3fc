package storetest

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/payg/keypadvendor"
	"github.com/licet/licet/payg/openpaygo"
)

// TestKeypad runs the conformance suite of keypadvendor.Store, through
// keypadvendor.Service where tokens are issued, and checks the tokens with
// the device-side decoder.
func TestKeypad(t *testing.T, open func(t *testing.T) keypadvendor.Store) {
	sub := parallel(t)
	sub("Devices", func(t *testing.T) { testKeypadDevices(t, open(t)) })
	sub("Issue", func(t *testing.T) { testKeypadIssue(t, open(t)) })
	sub("IssueAborted", func(t *testing.T) { testKeypadIssueAborted(t, open(t)) })
	sub("IssueTwoConcurrent", func(t *testing.T) { testKeypadIssueTwoConcurrent(t, open(t)) })
	sub("IssueFiftyConcurrent", func(t *testing.T) { testKeypadIssueFiftyConcurrent(t, open(t)) })
	sub("Idempotency", func(t *testing.T) { testKeypadIdempotency(t, open(t)) })
	sub("IdempotencyConcurrent", func(t *testing.T) { testKeypadIdempotencyConcurrent(t, open(t)) })
}

// keypadService returns a service over st with a fixed sealing key and the
// suite's clock.
func keypadService(t *testing.T, st keypadvendor.Store) *keypadvendor.Service {
	t.Helper()
	sealer, err := keypadvendor.NewSealer(make([]byte, 32))
	ok(t, err, "sealer")
	svc := keypadvendor.New(st, sealer)
	svc.Now = func() time.Time { return t0 }
	return svc
}

// register registers a device with a generated key and returns it with
// its exported secret.
func register(t *testing.T, svc *keypadvendor.Service, r keypadvendor.Registration) (*keypadvendor.Device, openpaygo.Device) {
	t.Helper()
	d, err := svc.Register(t.Context(), r)
	ok(t, err, "register "+r.Serial)
	sec, err := svc.Export(t.Context(), r.Serial)
	ok(t, err, "export "+r.Serial)
	k, err := openpaygo.ParseKey(sec.Key)
	ok(t, err, "exported key")
	return d, openpaygo.Device{Key: k, StartingCode: sec.StartingCode}
}

func days(n int) *int { return &n }

func testKeypadDevices(t *testing.T, st keypadvendor.Store) {
	ctx := t.Context()
	svc := keypadService(t, st)
	code := uint32(123456789)
	key := "000102030405060708090a0b0c0d0e0f"
	b, err := svc.Register(ctx, keypadvendor.Registration{Serial: "SHS-b", Key: key, StartingCode: &code, Divider: 24, Extended: true, Restricted: true})
	ok(t, err, "register SHS-b")
	a, devA := register(t, svc, keypadvendor.Registration{Serial: "SHS-a"})
	if a.Divider != 1 || a.LastCount != keypadvendor.InitialCount || devA.StartingCode != openpaygo.StartingCode(devA.Key) {
		t.Errorf("defaults: divider %d, last count %d, starting code %d (derived: %d)", a.Divider, a.LastCount, devA.StartingCode, openpaygo.StartingCode(devA.Key))
	}
	if devA.Key == (openpaygo.Key{}) {
		t.Error("generated key is all zero")
	}

	got, err := st.KeypadDevice(ctx, "SHS-b")
	ok(t, err, "read SHS-b")
	same(t, "SHS-b", got, b)
	sec, err := svc.Export(ctx, "SHS-b")
	ok(t, err, "export SHS-b")
	if sec.Key != key || sec.StartingCode != code {
		t.Errorf("export SHS-b: key %s, starting code %d; want %s, %d", sec.Key, sec.StartingCode, key, code)
	}
	all, err := st.KeypadDevices(ctx)
	ok(t, err, "list")
	same(t, "list", all, []*keypadvendor.Device{a, b})
	if raw, _ := hex.DecodeString(key); bytes.Contains(got.SealedKey, raw) {
		t.Error("the key is stored in clear")
	}

	_, err = svc.Register(ctx, keypadvendor.Registration{Serial: "SHS-a"})
	wantKind(t, err, errs.Conflict, "register SHS-a again")
	_, err = st.KeypadDevice(ctx, "nope")
	wantKind(t, err, errs.NotFound, "read a missing device")
	_, err = st.KeypadTokens(ctx, "nope")
	wantKind(t, err, errs.NotFound, "tokens of a missing device")
	_, _, err = svc.Issue(ctx, "nope", keypadvendor.IssueRequest{Days: days(1)}, "", "test")
	wantKind(t, err, errs.NotFound, "issue to a missing device")

	for _, r := range []keypadvendor.Registration{
		{Serial: "bad serial"},
		{Serial: "x", Key: "abc"},
		{Serial: "x", StartingCode: ptrU32(1_000_000_000)},
		{Serial: "x", Divider: 996},
		{Serial: "x", Divider: -1},
	} {
		_, err := svc.Register(ctx, r)
		wantKind(t, err, errs.Invalid, fmt.Sprintf("register %+v", r))
	}
	// A sealed key moved to another device's row does not open.
	other, err := st.KeypadDevice(ctx, "SHS-a")
	ok(t, err, "read SHS-a")
	if _, err := svc.Sealer.Open("SHS-b", other.SealedKey); err == nil {
		t.Error("SHS-a's sealed key opens as SHS-b's")
	}
}

func ptrU32(v uint32) *uint32 { return &v }

// decodeInOrder applies tokens to a fresh device in order and fails unless
// each is valid with the wanted count.
func decodeInOrder(t *testing.T, dev openpaygo.Device, restricted bool, tokens []string, counts []uint32) {
	t.Helper()
	last, used := uint32(keypadvendor.InitialCount), []uint32(nil)
	for i, tok := range tokens {
		res, err := openpaygo.Decode(dev, tok, last, used, restricted)
		if err != nil || res.Status != openpaygo.Valid || res.Count != counts[i] {
			t.Fatalf("token %d (%s): %+v, %v; want valid at count %d", i, tok, res, err, counts[i])
		}
		used = openpaygo.UpdateUsed(used, res.Type, res.Value, res.Count)
		last = max(last, res.Count)
	}
}

func testKeypadIssue(t *testing.T, st keypadvendor.Store) {
	ctx := t.Context()
	svc := keypadService(t, st)
	_, dev := register(t, svc, keypadvendor.Registration{Serial: "d1", Divider: 3, Restricted: true})
	reqs := []struct {
		req   keypadvendor.IssueRequest
		typ   string
		value *int
		count uint32
	}{
		{keypadvendor.IssueRequest{Days: days(7)}, "ADD_TIME", days(21), 2},
		{keypadvendor.IssueRequest{SetDays: days(0)}, "SET_TIME", days(0), 3},
		{keypadvendor.IssueRequest{Sync: true}, "COUNTER_SYNC", nil, 5},
		{keypadvendor.IssueRequest{Days: days(331)}, "ADD_TIME", days(993), 6},
		{keypadvendor.IssueRequest{Disable: true}, "DISABLE_PAYG", nil, 7},
	}
	var tokens []string
	var counts []uint32
	for i, r := range reqs {
		got, replayed, err := svc.Issue(ctx, "d1", r.req, "", "tester")
		ok(t, err, fmt.Sprintf("issue %d", i))
		if replayed || got.Type != r.typ || got.Count != r.count || Diff(got.Value, r.value) != "" || got.Device != "d1" || got.IssuedBy != "tester" || !got.Issued.Equal(t0) {
			t.Errorf("issue %d: %+v (replayed %v), want %s value %v at count %d", i, got, replayed, r.typ, r.value, r.count)
		}
		tokens, counts = append(tokens, got.Token), append(counts, got.Count)
	}
	decodeInOrder(t, dev, true, tokens, counts)

	recs, err := st.KeypadTokens(ctx, "d1")
	ok(t, err, "list tokens")
	if len(recs) != len(reqs) {
		t.Fatalf("%d records, want %d", len(recs), len(reqs))
	}
	for i, rec := range recs {
		if rec.Count != reqs[i].count || rec.Type.String() != reqs[i].typ || rec.IssuedBy != "tester" {
			t.Errorf("record %d: %+v", i, rec)
		}
	}
	d, err := st.KeypadDevice(ctx, "d1")
	ok(t, err, "read d1")
	if d.LastCount != 7 {
		t.Errorf("last count %d, want 7", d.LastCount)
	}

	for _, c := range []struct {
		req  keypadvendor.IssueRequest
		flag string
	}{
		{keypadvendor.IssueRequest{Days: days(332)}, "--days"},
		{keypadvendor.IssueRequest{Days: days(0)}, "--days"},
		{keypadvendor.IssueRequest{SetDays: days(-1)}, "--set-days"},
		{keypadvendor.IssueRequest{}, "--disable"},
		{keypadvendor.IssueRequest{Days: days(1), Sync: true}, "--sync"},
	} {
		_, _, err := svc.Issue(ctx, "d1", c.req, "", "tester")
		wantKind(t, err, errs.Invalid, fmt.Sprintf("issue %+v", c.req))
		if err != nil && !strings.Contains(err.Error(), c.flag) {
			t.Errorf("issue %+v: error %q does not name %s", c.req, err, c.flag)
		}
	}
	d, err = st.KeypadDevice(ctx, "d1")
	ok(t, err, "read d1")
	if d.LastCount != 7 {
		t.Errorf("refused requests moved the last count to %d", d.LastCount)
	}
}

// testKeypadIssueAborted checks that an error of next, or a count not
// above the last, changes nothing.
func testKeypadIssueAborted(t *testing.T, st keypadvendor.Store) {
	ctx := t.Context()
	svc := keypadService(t, st)
	register(t, svc, keypadvendor.Registration{Serial: "d1"})
	boom := errors.New("boom")
	_, _, err := st.IssueKeypadToken(ctx, "d1", "k1", func(d *keypadvendor.Device) (*keypadvendor.IssuedToken, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Errorf("error of next: got %v, want it returned", err)
	}
	_, _, err = st.IssueKeypadToken(ctx, "d1", "k1", func(d *keypadvendor.Device) (*keypadvendor.IssuedToken, error) {
		return &keypadvendor.IssuedToken{Serial: "d1", Count: d.LastCount, Type: openpaygo.AddTime, Issued: t0, IssuedBy: "x", IdempotencyKey: "k1"}, nil
	})
	if err == nil {
		t.Error("a count not above the last was stored")
	}
	_, _, err = st.IssueKeypadToken(ctx, "nope", "", func(d *keypadvendor.Device) (*keypadvendor.IssuedToken, error) {
		t.Error("next called for a missing device")
		return nil, boom
	})
	wantKind(t, err, errs.NotFound, "issue to a missing device")
	recs, err := st.KeypadTokens(ctx, "d1")
	ok(t, err, "list tokens")
	d, err := st.KeypadDevice(ctx, "d1")
	ok(t, err, "read d1")
	if len(recs) != 0 || d.LastCount != keypadvendor.InitialCount {
		t.Errorf("aborted issues left %d records and last count %d", len(recs), d.LastCount)
	}
	// The key k1 was not used: it issues now.
	got, replayed, err := svc.Issue(ctx, "d1", keypadvendor.IssueRequest{Days: days(1)}, "k1", "x")
	ok(t, err, "issue with k1")
	if replayed || got.Count != 2 {
		t.Errorf("issue after aborted ones: %+v, replayed %v", got, replayed)
	}
}

// issueConcurrently issues n ADD_TIME tokens of one day to device serial at
// once, through the services in turn, and returns them ordered by count.
func issueConcurrently(t *testing.T, serial string, n int, svcs ...*keypadvendor.Service) []*keypadvendor.Issued {
	t.Helper()
	out := make([]*keypadvendor.Issued, n)
	errList := make([]error, n)
	run(n, func(i int) {
		out[i], _, errList[i] = svcs[i%len(svcs)].Issue(context.Background(), serial, keypadvendor.IssueRequest{Days: days(1)}, "", fmt.Sprintf("seller-%d", i))
	})
	for i, err := range errList {
		ok(t, err, fmt.Sprintf("concurrent issue %d", i))
	}
	slices.SortFunc(out, func(a, b *keypadvendor.Issued) int { return int(a.Count) - int(b.Count) })
	return out
}

// checkConsecutive fails unless the tokens sit on the ADD_TIME counts right
// after the initial count, one each, and the device and its records agree.
func checkConsecutive(t *testing.T, st keypadvendor.Store, serial string, got []*keypadvendor.Issued) {
	t.Helper()
	seen := map[string]bool{}
	for i, g := range got {
		if want := uint32(keypadvendor.InitialCount + 1 + 2*i); g.Count != want {
			t.Fatalf("token %d of %d has count %d, want %d: counts must be distinct and without gaps", i, len(got), g.Count, want)
		}
		if seen[g.Token] {
			t.Errorf("token %s issued twice", g.Token)
		}
		seen[g.Token] = true
	}
	d, err := st.KeypadDevice(t.Context(), serial)
	ok(t, err, "read "+serial)
	if want := got[len(got)-1].Count; d.LastCount != want {
		t.Errorf("last count %d, want %d", d.LastCount, want)
	}
	recs, err := st.KeypadTokens(t.Context(), serial)
	ok(t, err, "list tokens")
	if len(recs) != len(got) {
		t.Errorf("%d records for %d tokens", len(recs), len(got))
	}
}

func testKeypadIssueTwoConcurrent(t *testing.T, st keypadvendor.Store) {
	svc := keypadService(t, st)
	_, dev := register(t, svc, keypadvendor.Registration{Serial: "d2"})
	got := issueConcurrently(t, "d2", 2, svc)
	checkConsecutive(t, st, "d2", got)
	// The device takes them in the order issued, and in the other order.
	decodeInOrder(t, dev, false, []string{got[0].Token, got[1].Token}, []uint32{got[0].Count, got[1].Count})
	decodeInOrder(t, dev, false, []string{got[1].Token, got[0].Token}, []uint32{got[1].Count, got[0].Count})
}

func testKeypadIssueFiftyConcurrent(t *testing.T, st keypadvendor.Store) {
	svc := keypadService(t, st)
	_, dev := register(t, svc, keypadvendor.Registration{Serial: "d50", Extended: true})
	got := issueConcurrently(t, "d50", 50, svc)
	checkConsecutive(t, st, "d50", got)
	decodeIssued(t, dev, got)
}

// decodeIssued applies standard tokens to a fresh device in the order given.
func decodeIssued(t *testing.T, dev openpaygo.Device, got []*keypadvendor.Issued) {
	t.Helper()
	var tokens []string
	var counts []uint32
	for _, g := range got {
		tokens, counts = append(tokens, g.Token), append(counts, g.Count)
	}
	decodeInOrder(t, dev, false, tokens, counts)
}

func testKeypadIdempotency(t *testing.T, st keypadvendor.Store) {
	ctx := t.Context()
	svc := keypadService(t, st)
	register(t, svc, keypadvendor.Registration{Serial: "d1"})
	register(t, svc, keypadvendor.Registration{Serial: "d2"})
	first, replayed, err := svc.Issue(ctx, "d1", keypadvendor.IssueRequest{Days: days(5)}, "sale-1", "a")
	ok(t, err, "first issue")
	if replayed {
		t.Error("first issue reported as replayed")
	}
	again, replayed, err := svc.Issue(ctx, "d1", keypadvendor.IssueRequest{Days: days(5)}, "sale-1", "b")
	ok(t, err, "same request again")
	if !replayed {
		t.Error("repeat not reported as replayed")
	}
	same(t, "repeated issue", again, first)
	for _, c := range []struct {
		serial string
		req    keypadvendor.IssueRequest
	}{
		{"d1", keypadvendor.IssueRequest{Days: days(6)}},
		{"d1", keypadvendor.IssueRequest{SetDays: days(5)}},
		{"d2", keypadvendor.IssueRequest{Days: days(5)}},
	} {
		_, _, err := svc.Issue(ctx, c.serial, c.req, "sale-1", "a")
		wantKind(t, err, errs.Conflict, fmt.Sprintf("another request (%s %+v) with the same key", c.serial, c.req))
	}
	recs, err := st.KeypadTokens(ctx, "d1")
	ok(t, err, "list tokens")
	if len(recs) != 1 {
		t.Errorf("%d tokens issued to d1, want 1", len(recs))
	}
	recs, err = st.KeypadTokens(ctx, "d2")
	ok(t, err, "list tokens")
	if len(recs) != 0 {
		t.Errorf("%d tokens issued to d2, want 0", len(recs))
	}
}

// testKeypadIdempotencyConcurrent sends one request with one key 20 times at
// once: one token is issued, and every call returns it.
func testKeypadIdempotencyConcurrent(t *testing.T, st keypadvendor.Store) {
	svc := keypadService(t, st)
	register(t, svc, keypadvendor.Registration{Serial: "d1"})
	const n = 20
	out := make([]*keypadvendor.Issued, n)
	errList := make([]error, n)
	run(n, func(i int) {
		out[i], _, errList[i] = svc.Issue(context.Background(), "d1", keypadvendor.IssueRequest{Days: days(2)}, "retry-me", "a")
	})
	for i := range out {
		ok(t, errList[i], fmt.Sprintf("call %d", i))
		if out[i].Token != out[0].Token || out[i].Count != 2 {
			t.Errorf("call %d got %+v, call 0 %+v", i, out[i], out[0])
		}
	}
	recs, err := st.KeypadTokens(t.Context(), "d1")
	ok(t, err, "list tokens")
	if len(recs) != 1 {
		t.Errorf("%d tokens issued, want 1", len(recs))
	}
}

// TestSharedKeypad issues tokens to one device from two stores on one
// database at once, as two vendor processes would: 2 x 25 tokens, each
// count once, without gaps, all valid on the device in order.
func TestSharedKeypad(t *testing.T, a, b keypadvendor.Store) {
	sa, sb := keypadService(t, a), keypadService(t, b)
	_, dev := register(t, sa, keypadvendor.Registration{Serial: "shared"})
	got := issueConcurrently(t, "shared", 50, sa, sb)
	checkConsecutive(t, b, "shared", got)
	decodeIssued(t, dev, got)
}

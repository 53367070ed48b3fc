package openpaygo

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"testing"
)

type vector struct {
	Serial       string `json:"serial_number"`
	StartingCode uint32 `json:"starting_code"`
	Key          string `json:"key"`
	Count        uint32 `json:"count"`
	Type         string `json:"token_type"`
	Value        *int   `json:"value_raw"`
	Restricted   bool   `json:"restricted_digit_set"`
	Extended     bool   `json:"extended_token"`
	NewCount     uint32 `json:"new_count"`
	Token        string `json:"token"`
}

func loadVectors(t testing.TB) []vector {
	f, err := os.Open("testdata/test_tokens.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []vector
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var v vector
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	if len(vs) != 80 {
		t.Fatalf("read %d vectors, want the reference's 80", len(vs))
	}
	return vs
}

func (v vector) device(t testing.TB) Device {
	k, err := ParseKey(v.Key)
	if err != nil {
		t.Fatal(err)
	}
	return Device{Key: k, StartingCode: v.StartingCode}
}

// TestVectors runs the reference's 80 conformance vectors both ways.
func TestVectors(t *testing.T) {
	for i, v := range loadVectors(t) {
		d := v.device(t)
		typ, err := ParseType(v.Type)
		if err != nil {
			t.Fatal(err)
		}
		value := 0
		if v.Value != nil {
			value = *v.Value
		}
		opt := Options{Extended: v.Extended, Restricted: v.Restricted}
		tok, n, err := Encode(d, v.Count, typ, value, opt)
		if err != nil {
			t.Fatalf("vector %d: encode: %v", i+1, err)
		}
		if tok != v.Token || n != v.NewCount {
			t.Errorf("vector %d (%s %d ext=%v restr=%v): encode gave %s at %d, want %s at %d", i+1, v.Type, value, v.Extended, v.Restricted, tok, n, v.Token, v.NewCount)
		}
		res, err := Decode(d, v.Token, v.Count, nil, v.Restricted)
		if err != nil {
			t.Fatalf("vector %d: decode: %v", i+1, err)
		}
		wantValue := value
		if typ == DisablePAYG {
			wantValue = DisableValue
		} else if typ == CounterSync {
			wantValue = SyncValue
		}
		if res.Status != Valid || res.Type != typ || res.Value != wantValue || res.Count != v.NewCount || res.Extended != v.Extended {
			t.Errorf("vector %d: decode gave %+v, want valid %s value %d count %d", i+1, res, typ, wantValue, v.NewCount)
		}
	}
}

var testDevice = Device{Key: Key{0xbc, 0x41, 0xec, 0x95, 0x30, 0xf6, 0xda, 0xc8, 0x6b, 0x1a, 0x29, 0xab, 0x82, 0xed, 0xc5, 0xfb}, StartingCode: 516959010}

func mustEncode(t *testing.T, d Device, last uint32, typ Type, value int, opt Options) (string, uint32) {
	t.Helper()
	tok, n, err := Encode(d, last, typ, value, opt)
	if err != nil {
		t.Fatal(err)
	}
	return tok, n
}

// device is the decoder's bookkeeping as a device keeps it.
type device struct {
	last uint32
	used []uint32
}

func (s *device) enter(t *testing.T, d Device, tok string) Result {
	t.Helper()
	r, err := Decode(d, tok, s.last, s.used, false)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status == Valid {
		s.used = UpdateUsed(s.used, r.Type, r.Value, r.Count)
		s.last = max(s.last, r.Count)
	}
	return r
}

func TestTokenEnteredTwice(t *testing.T) {
	var s device
	tok, _ := mustEncode(t, testDevice, 0, AddTime, 7, Options{})
	if r := s.enter(t, testDevice, tok); r.Status != Valid || r.Value != 7 {
		t.Fatalf("first entry: %+v", r)
	}
	if r := s.enter(t, testDevice, tok); r.Status != AlreadyUsed {
		t.Fatalf("second entry: %+v, want already_used", r)
	}
}

// An older ADD_TIME token that was never entered still counts while it is in
// the window of 16 counts, and not after.
func TestAddTimeWindow(t *testing.T) {
	var s device
	var toks []string
	last := uint32(0)
	for i := 0; i < 12; i++ {
		tok, n := mustEncode(t, testDevice, last, AddTime, 1, Options{})
		toks = append(toks, tok)
		last = n
	}
	// Enter the newest (count 24) first: count 10 (index 4) is still within
	// 16 below it and unused; count 8 (index 3) is not.
	if r := s.enter(t, testDevice, toks[11]); r.Status != Valid || r.Count != 24 {
		t.Fatalf("newest: %+v", r)
	}
	if r := s.enter(t, testDevice, toks[4]); r.Status != Valid || r.Count != 10 {
		t.Fatalf("older unused in window: %+v", r)
	}
	if r := s.enter(t, testDevice, toks[4]); r.Status != AlreadyUsed {
		t.Fatalf("older, entered twice: %+v", r)
	}
	if r := s.enter(t, testDevice, toks[3]); r.Status != AlreadyUsed {
		t.Fatalf("older than the window: %+v, want already_used", r)
	}
}

// A SET_TIME token generated before a later ADD_TIME that the device has
// taken is refused: SET_TIME marks the window used, and a later count wins.
func TestSetTimeAfterLaterAddTime(t *testing.T) {
	var s device
	set, n := mustEncode(t, testDevice, 0, SetTime, 30, Options{})
	add, _ := mustEncode(t, testDevice, n, AddTime, 5, Options{})
	if r := s.enter(t, testDevice, add); r.Status != Valid {
		t.Fatalf("add: %+v", r)
	}
	if r := s.enter(t, testDevice, set); r.Status != AlreadyUsed {
		t.Fatalf("older set-time after a later add-time: %+v, want already_used", r)
	}
	// And the other way: after a SET_TIME, older unused ADD_TIME tokens die.
	var s2 device
	add1, n1 := mustEncode(t, testDevice, 0, AddTime, 5, Options{})
	set2, _ := mustEncode(t, testDevice, n1, SetTime, 30, Options{})
	if r := s2.enter(t, testDevice, set2); r.Status != Valid || r.Type != SetTime {
		t.Fatalf("set: %+v", r)
	}
	if r := s2.enter(t, testDevice, add1); r.Status != AlreadyUsed {
		t.Fatalf("add-time older than a set-time: %+v, want already_used", r)
	}
}

func TestOtherDevicesToken(t *testing.T) {
	other := Device{Key: Key{1, 2, 3}, StartingCode: 516959010}
	tok, _ := mustEncode(t, other, 0, AddTime, 7, Options{})
	var s device
	if r := s.enter(t, testDevice, tok); r.Status != Invalid {
		t.Fatalf("another device's token: %+v, want invalid", r)
	}
}

// A token far ahead of the device's count is out of the window; a counter
// sync reaches further (100), but not without bound.
func TestJumps(t *testing.T) {
	far, _ := mustEncode(t, testDevice, 70, AddTime, 1, Options{})
	var s device
	if r := s.enter(t, testDevice, far); r.Status != Invalid {
		t.Fatalf("add-time 72 counts ahead: %+v, want invalid", r)
	}
	sync, n := mustEncode(t, testDevice, 80, CounterSync, 0, Options{})
	if r := s.enter(t, testDevice, sync); r.Status != Valid || r.Type != CounterSync || r.Count != n {
		t.Fatalf("counter sync %d ahead: %+v", n, r)
	}
	if s.last != n {
		t.Fatalf("last count %d after sync, want %d", s.last, n)
	}
	// Now the add-time at 72 is below the new count and more than 16 under it.
	if r := s.enter(t, testDevice, far); r.Status != AlreadyUsed {
		t.Fatalf("add-time skipped by a sync: %+v", r)
	}
	tooFar, _ := mustEncode(t, testDevice, s.last+110, CounterSync, 0, Options{})
	if r := s.enter(t, testDevice, tooFar); r.Status != Invalid {
		t.Fatalf("counter sync 111 ahead: %+v, want invalid", r)
	}
}

func TestEncodeLimits(t *testing.T) {
	if _, _, err := Encode(testDevice, 0, AddTime, 996, Options{}); !errors.Is(err, ErrValue) {
		t.Fatalf("996: %v", err)
	}
	if _, _, err := Encode(testDevice, 0, AddTime, 1_000_000, Options{Extended: true}); !errors.Is(err, ErrValue) {
		t.Fatalf("1,000,000 extended: %v", err)
	}
	if _, _, err := Encode(testDevice, 0, DisablePAYG, 3, Options{}); !errors.Is(err, ErrValue) {
		t.Fatalf("disable with a value: %v", err)
	}
	tok, _, err := Encode(testDevice, 0, AddTime, 999_999, Options{Extended: true})
	if err != nil || len(tok) != 12 {
		t.Fatalf("999,999 extended: %q %v", tok, err)
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		tok        string
		restricted bool
	}{{"", false}, {"12a456789", false}, {"1234567890123", false}, {"12341234123412", true}, {"123412341234125", true}} {
		if _, _, err := Parse(tc.tok, tc.restricted); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q, %v) = %v, want malformed", tc.tok, tc.restricted, err)
		}
	}
	// Leading zeros may be left out.
	code, ext, err := Parse("59963436254", false)
	if err != nil || ext != true || code != 59963436254 {
		t.Fatalf("short extended token: %d %v %v", code, ext, err)
	}
}

func TestUpdateUsed(t *testing.T) {
	got := UpdateUsed([]uint32{2, 4}, AddTime, 1, 30)
	if !slices.Equal(got, []uint32{30}) {
		t.Fatalf("add-time far ahead: %v", got)
	}
	got = UpdateUsed([]uint32{20, 22}, AddTime, 1, 26)
	if !slices.Equal(got, []uint32{20, 22, 26}) {
		t.Fatalf("add-time: %v", got)
	}
	got = UpdateUsed(nil, SetTime, 1, 19)
	if len(got) != 17 || got[0] != 3 || got[16] != 19 {
		t.Fatalf("set-time marks the window: %v", got)
	}
}

func TestStartingCodeFromKey(t *testing.T) {
	c := StartingCode(testDevice.Key)
	if c > MaxStartingCode || c == StartingCode(Key{}) {
		t.Fatalf("starting code %d", c)
	}
	d := Device{Key: testDevice.Key, StartingCode: c}
	tok, _ := mustEncode(t, d, 0, AddTime, 3, Options{})
	var s device
	if r := s.enter(t, d, tok); r.Status != Valid || r.Value != 3 {
		t.Fatalf("token with a derived starting code: %+v", r)
	}
}

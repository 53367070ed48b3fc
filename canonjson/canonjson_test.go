package canonjson_test

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/licet/licet/canonjson"
)

func marshal(t *testing.T, v any) string {
	t.Helper()
	b, err := canonjson.Marshal(v)
	if err != nil {
		t.Fatalf("Marshal(%#v): %v", v, err)
	}
	return string(b)
}

func TestMarshal(t *testing.T) {
	type inner struct {
		Zeta  int    `json:"zeta"`
		Alpha string `json:"alpha"`
	}
	type doc struct {
		Z     string            `json:"z"`
		A     []inner           `json:"a"`
		M     map[string]string `json:"m"`
		Raw   []byte            `json:"raw"`
		When  time.Time         `json:"when"`
		Big   int64             `json:"big"`
		Empty *string           `json:"empty,omitempty"`
		Nil   []string          `json:"nil"`
	}
	when := time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)
	cases := []struct {
		name string
		in   any
		want string
	}{
		{"keys sorted at every depth, no blanks", doc{
			Z: "z", A: []inner{{Zeta: 1, Alpha: "a"}}, M: map[string]string{"b": "2", "a": "1", "B": "0"},
			Raw: []byte{0xff, 0x00, 0xfe}, When: when, Big: math.MaxInt64,
		}, `{"a":[{"alpha":"a","zeta":1}],"big":9223372036854775807,"m":{"B":"0","a":"1","b":"2"},"nil":null,"raw":"/wD+","when":"2026-03-01T12:30:00Z","z":"z"}`},
		{"no HTML escaping", map[string]string{"k": "<a href=\"x\">&</a>"}, `{"k":"<a href=\"x\">&</a>"}`},
		{"unicode literal, U+2028 escaped", map[string]string{"k": "Grüße ✓\u2028"}, `{"k":"Grüße ✓\u2028"}`},
		{"control characters escaped", map[string]string{"k": "a\nb\tc\x01\\"}, `{"k":"a\nb\tc\u0001\\"}`},
		{"big integers exact", []int64{9007199254740993, -9007199254740993}, `[9007199254740993,-9007199254740993]`},
		{"numbers as written", json.RawMessage(`{"b":1.50,"a":1e3}`), `{"a":1e3,"b":1.50}`},
		{"keys sorted bytewise", map[string]int{"é": 1, "z": 2, "Z": 3, "_": 4, "a": 5}, `{"Z":3,"_":4,"a":5,"z":2,"é":1}`},
		{"raw message re-sorted", json.RawMessage(" { \"b\" : [ 1 , 2 ] , \"a\" : { \"d\":true, \"c\":null } } "), `{"a":{"c":null,"d":true},"b":[1,2]}`},
		{"scalar", "x", `"x"`},
	}
	for _, c := range cases {
		if got := marshal(t, c.in); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

func TestMarshalDeterministicAndIdempotent(t *testing.T) {
	m := map[string]any{}
	for i := range 200 {
		m[string(rune('a'+i%26))+string(rune('A'+i/26))] = map[string]int{"x": i, "a": -i}
	}
	first := marshal(t, m)
	for range 20 {
		if got := marshal(t, m); got != first {
			t.Fatal("two encodings of the same map differ")
		}
	}
	if again := marshal(t, json.RawMessage(first)); again != first {
		t.Fatal("canonical JSON re-encoded is not the same bytes")
	}
}

func TestMarshalErrors(t *testing.T) {
	for _, v := range []any{math.NaN(), make(chan int), map[bool]int{true: 1}} {
		if _, err := canonjson.Marshal(v); err == nil {
			t.Errorf("Marshal(%T) succeeded", v)
		}
	}
}

func TestUnmarshalStrict(t *testing.T) {
	type doc struct {
		A int    `json:"a"`
		B string `json:"b"`
	}
	var d doc
	if err := canonjson.UnmarshalStrict([]byte(" {\"a\":1,\"b\":\"x\",\"from_the_future\":{\"z\":[1]}} \r\n\t"), &d); err != nil {
		t.Fatalf("unknown field or trailing blanks refused: %v", err)
	}
	if d != (doc{A: 1, B: "x"}) {
		t.Fatalf("decoded %+v", d)
	}
	var generic map[string]any
	if err := canonjson.UnmarshalStrict([]byte(`{"n":12345678901234567890}`), &generic); err != nil {
		t.Fatal(err)
	}
	if n, ok := generic["n"].(json.Number); !ok || n.String() != "12345678901234567890" {
		t.Fatalf("number decoded as %T %v, want json.Number kept exact", generic["n"], generic["n"])
	}
	for _, bad := range []string{
		``, ` `, `{`, `{"a":1}{"a":2}`, `{"a":1} {}`, `{"a":1}x`, `{"a":1}}`, `{"a":1}]`, `{"a":1},`, `{"a":1} 2`,
		`{"a":"1"}`, `{"a":1.5}`, `[1]`, `{"a":1,}`, "{\"b\":\"\xff\"}\x00",
	} {
		var d doc
		if err := canonjson.UnmarshalStrict([]byte(bad), &d); err == nil {
			t.Errorf("UnmarshalStrict(%q) accepted", bad)
		}
	}
}

func FuzzUnmarshalStrict(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":[1,2,{"b":null}],"c":"\u2028"}`, `1`, `"x"`, `{"a":1}}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if err := canonjson.UnmarshalStrict(data, &v); err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		once, err := canonjson.Marshal(v)
		if err != nil {
			t.Fatalf("Marshal of a decoded value: %v", err)
		}
		var w any
		if err := canonjson.UnmarshalStrict(once, &w); err != nil {
			t.Fatalf("canonical output %q does not decode: %v", once, err)
		}
		twice, err := canonjson.Marshal(w)
		if err != nil || !bytes.Equal(once, twice) {
			t.Fatalf("canonical encoding is not stable: %q then %q (%v)", once, twice, err)
		}
	})
}

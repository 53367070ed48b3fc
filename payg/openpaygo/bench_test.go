package openpaygo

import "testing"

// The baseline: one SipHash-2-4 call on the 8 bytes a chain step hashes.
func BenchmarkSipHash24(b *testing.B) {
	k := [16]byte(testDevice.Key)
	msg := []byte{1, 2, 3, 4, 1, 2, 3, 4}
	var sink uint64
	for b.Loop() {
		sink += sipHash24(&k, msg)
	}
	_ = sink
}

// benchCounts are a new device's count and one after years of weekly tokens.
var benchCounts = []struct {
	name string
	last uint32
}{{"count=10", 10}, {"count=500", 500}}

func BenchmarkEncode(b *testing.B) {
	for _, c := range benchCounts {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := Encode(testDevice, c.last, AddTime, 30, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecode decodes the token for the next count, as a device does
// when its user types the token just bought.
func BenchmarkDecode(b *testing.B) {
	for _, c := range benchCounts {
		tok, n, err := Encode(testDevice, c.last, AddTime, 30, Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				r, err := Decode(testDevice, tok, c.last, nil, false)
				if err != nil || r.Count != n {
					b.Fatal(r, err)
				}
			}
		})
	}
}

// BenchmarkDecodeWorst is the most a decode costs: a token that matches no
// count while it carries the counter-sync value, so the whole window of
// last+MaxJumpCounterSync steps is walked.
func BenchmarkDecodeWorst(b *testing.B) {
	for _, c := range benchCounts {
		// A counter-sync token of another key: the sync value, no match.
		other := Device{Key: Key{9}, StartingCode: testDevice.StartingCode}
		tok, _, err := Encode(other, c.last, CounterSync, 0, Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				r, err := Decode(testDevice, tok, c.last, nil, false)
				if err != nil || r.Status != Invalid {
					b.Fatal(r, err)
				}
			}
		})
	}
}

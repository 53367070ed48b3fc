package api

import (
	"strconv"
	"testing"
)

// FuzzByteRange: whatever the Range header, an accepted range lies inside
// the blob, starts at or before its end, and round-trips a plain
// "bytes=START-END" header.
func FuzzByteRange(f *testing.F) {
	for _, s := range []string{"bytes=0-", "bytes=5-9", "bytes=-5", "bytes=3-1", "bytes=0-0,2-3", "bytes=99999999999999999999-", "items=0-1", ""} {
		f.Add(s, int64(10))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size <= 0 {
			return
		}
		start, end, ok := byteRange(h, size)
		if !ok {
			return
		}
		if start < 0 || start > end || end >= size {
			t.Fatalf("%q of %d: range %d-%d", h, size, start, end)
		}
		s2, e2, ok2 := byteRange("bytes="+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(end, 10), size)
		if !ok2 || s2 != start || e2 != end {
			t.Fatalf("%q of %d: %d-%d does not round-trip", h, size, start, end)
		}
	})
}

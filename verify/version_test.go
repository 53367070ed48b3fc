package verify

import "testing"

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0", 0},
		{"2", "2.0.0", 0},
		{"v2.1", "2.1", 0},
		{"01.2", "1.02", 0},
		{"2.9", "2.10", -1},
		{"2.10", "2.9", 1},
		{"1.9.9", "2.0", -1},
		{"3", "2.99", 1},
		{"1.0", "1.0.1", -1},
		{"1.0", "1.rc", -1},
		{"1.beta", "1.alpha", 1},
		{"10", "9", 1},
		{"", "0", 0},
		{"123456789012345678901234567890", "123456789012345678901234567891", -1},
	} {
		if got := CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := CompareVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d (antisymmetry)", tc.b, tc.a, got, -tc.want)
		}
	}
}

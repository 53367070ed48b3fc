package verify

import "strings"

// CompareVersions compares two product versions such as "2.10.1" and
// "2.9": it returns -1 if a is older than b, 0 if they are the same, +1 if a
// is newer. Versions are compared part by part, the parts separated by
// dots; parts made only of digits compare as numbers (so 2.10 is newer than
// 2.9), other parts as text, and a number is older than text ("1.0" < "1.rc").
// A missing part counts as zero: "2" equals "2.0". Leading zeros and a
// leading "v" do not matter.
func CompareVersions(a, b string) int {
	a, b = strings.TrimPrefix(a, "v"), strings.TrimPrefix(b, "v")
	for a != "" || b != "" {
		var pa, pb string
		pa, a, _ = strings.Cut(a, ".")
		pb, b, _ = strings.Cut(b, ".")
		if c := comparePart(pa, pb); c != 0 {
			return c
		}
	}
	return 0
}

func comparePart(a, b string) int {
	if a == "" {
		a = "0"
	}
	if b == "" {
		b = "0"
	}
	na, nb := isNumber(a), isNumber(b)
	switch {
	case na && nb:
		a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if len(a) != len(b) {
			if len(a) < len(b) {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	case na:
		return -1
	case nb:
		return 1
	}
	return strings.Compare(a, b)
}

func isNumber(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

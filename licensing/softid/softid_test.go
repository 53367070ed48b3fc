package softid_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/pack"
	"github.com/licet/licet/licensing/softid"
)

func TestMake(t *testing.T) {
	tests := []struct {
		platform         string
		vendor, revision uint32
		want             softid.ID
		text, hex        string
	}{
		{"windows", 7, 312, 0x10070138, "windows/7/312", "0x10070138"},
		{"windows", 7, 314, 0x1007013a, "windows/7/314", "0x1007013a"},
		{"non-windows", 0, 0, 0x20000000, "non-windows/0/0", "0x20000000"},
		{"legacy", 4095, 65535, 0x3fffffff, "legacy/4095/65535", "0x3fffffff"},
		{"direct-connect", 1, 1, 0x40010001, "direct-connect/1/1", "0x40010001"},
		{"unknown", 12, 34, 0x000c0022, "unknown/12/34", "0x000c0022"},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			id, err := softid.Make(tt.platform, tt.vendor, tt.revision)
			if err != nil {
				t.Fatal(err)
			}
			if id != tt.want {
				t.Errorf("Make = %#08x, want %#08x", uint32(id), uint32(tt.want))
			}
			if id.Platform() != tt.platform || id.Vendor() != tt.vendor || id.Revision() != tt.revision {
				t.Errorf("fields = %s, %d, %d", id.Platform(), id.Vendor(), id.Revision())
			}
			if id.String() != tt.text || id.Hex() != tt.hex {
				t.Errorf("String, Hex = %s, %s; want %s, %s", id, id.Hex(), tt.text, tt.hex)
			}
			for _, s := range []string{tt.text, tt.hex, strings.ToUpper(tt.hex)} {
				got, err := softid.Parse(s)
				if err != nil || got != id {
					t.Errorf("Parse(%q) = %v, %v; want %v", s, got, err, id)
				}
			}
			b, err := json.Marshal(id)
			if err != nil || string(b) != `"`+tt.text+`"` {
				t.Errorf("json = %s, %v", b, err)
			}
			var back softid.ID
			if err := json.Unmarshal(b, &back); err != nil || back != id {
				t.Errorf("json round trip = %v, %v", back, err)
			}
		})
	}
}

func TestMakeErrors(t *testing.T) {
	tests := []struct {
		platform         string
		vendor, revision uint32
		want             string
	}{
		{"macos", 1, 1, `platform "macos" is not one of windows, non-windows, legacy, direct-connect or unknown`},
		{"", 1, 1, `platform ""`},
		{"Windows", 1, 1, `platform "Windows"`},
		{"windows", 4096, 0, "vendor 4096 is out of range 0-4095"},
		{"windows", 1<<32 - 1, 0, "vendor 4294967295 is out of range"},
		{"windows", 0, 65536, "revision 65536 is out of range 0-65535"},
		{"windows", 0, 1<<32 - 1, "revision 4294967295 is out of range"},
	}
	for _, tt := range tests {
		_, err := softid.Make(tt.platform, tt.vendor, tt.revision)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errs.Is(err, errs.Invalid) {
			t.Errorf("Make(%q, %d, %d) = %v; want invalid error containing %q", tt.platform, tt.vendor, tt.revision, err, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "neither PLATFORM/VENDOR/REVISION"},
		{"windows/7", "neither"},
		{"windows/7/312/1", "neither"},
		{"macos/7/312", `platform "macos"`},
		{"windows/x/312", `vendor "x" is not a decimal number 0-4095`},
		{"windows/-1/312", `vendor "-1"`},
		{"windows/+1/312", `vendor "+1"`},
		{"windows//312", `vendor ""`},
		{"windows/4096/312", "vendor 4096 is out of range 0-4095"},
		{"windows/99999999999/1", `vendor "99999999999"`},
		{"windows/7/65536", "revision 65536 is out of range 0-65535"},
		{"windows/7/0x10", `revision "0x10"`},
		{"windows/7/ 1", `revision " 1"`},
		{"0x", "1-8 hex digits"},
		{"0x123456789", "1-8 hex digits"},
		{"0xg0000000", "not hexadecimal"},
		{"0x50000000", "platform code 5 is not assigned"},
		{"0xf0000000", "platform code 15 is not assigned"},
	}
	for _, tt := range tests {
		_, err := softid.Parse(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errs.Is(err, errs.Invalid) {
			t.Errorf("Parse(%q) = %v; want invalid error containing %q", tt.in, err, tt.want)
		}
	}
}

func TestUnassignedPlatform(t *testing.T) {
	id := softid.ID(0x5007013a)
	if id.Platform() != "" || id.String() != "0x5007013a" || id.Check() == nil {
		t.Errorf("unassigned: Platform %q String %q Check %v", id.Platform(), id, id.Check())
	}
	if _, err := json.Marshal(id); err == nil {
		t.Error("unassigned platform marshalled")
	}
}

func TestShortHex(t *testing.T) {
	id, err := softid.Parse("0x1")
	if err != nil || id != 1 || id.String() != "unknown/0/1" {
		t.Errorf("Parse(0x1) = %v, %v", id, err)
	}
}

// The platform names must be exactly those of license packs.
func TestPlatformsMatchPacks(t *testing.T) {
	if !slices.Equal(softid.Platforms, pack.Platforms) {
		t.Errorf("softid.Platforms = %v, pack.Platforms = %v", softid.Platforms, pack.Platforms)
	}
}

func TestRoundTripAllPlatforms(t *testing.T) {
	for code := uint32(0); code < 16; code++ {
		for _, vr := range [][2]uint32{{0, 0}, {1, 1}, {MaxV, MaxR}, {2730, 43690}} {
			id := softid.ID(code<<28 | vr[0]<<16 | vr[1])
			if id.Check() != nil {
				continue
			}
			for _, s := range []string{id.String(), id.Hex()} {
				got, err := softid.Parse(s)
				if err != nil || got != id {
					t.Errorf("Parse(%q) = %v, %v; want %v", s, got, err, id)
				}
			}
		}
	}
}

const (
	MaxV = softid.MaxVendor
	MaxR = softid.MaxRevision
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{"windows/7/312", "0x10070138", "legacy/4095/65535", "0x", "a/b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := softid.Parse(s)
		if err != nil {
			return
		}
		for _, form := range []string{id.String(), id.Hex()} {
			back, err := softid.Parse(form)
			if err != nil || back != id {
				t.Fatalf("Parse(%q) = %v from %q; Parse(%q) = %v, %v", s, id, s, form, back, err)
			}
		}
	})
}

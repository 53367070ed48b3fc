// Package softid is the client's software ID: a 32-bit bit field naming the
// client's platform, its vendor and its revision, by which the license server
// looks up the reference image for the platform challenge (licensing seed,
// Figs. 5-7).
//
// Layout, most significant bit first:
//
//	bits 31-28  platform  4 bits: 0 unknown, 1 windows, 2 non-windows,
//	                      3 legacy, 4 direct-connect; 5-15 unassigned
//	bits 27-16  vendor   12 bits: 0-4095
//	bits 15-0   revision 16 bits: 0-65535
//
// The platform names are the ones license packs use (pack.Platforms). Code 0,
// "unknown", exists so that every assigned bit pattern has a text form; a
// server should not register an image for it.
//
// The text form is "PLATFORM/VENDOR/REVISION" in decimal, e.g.
// "windows/7/312"; the hex form is "0x" and 8 hex digits, e.g. "0x10070138"
// for the same ID. Parse accepts both.
package softid

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/licet/licet/errs"
)

// ID is a software ID.
type ID uint32

// Field limits.
const (
	MaxVendor   = 1<<12 - 1 // 4095
	MaxRevision = 1<<16 - 1 // 65535
)

// Unknown is the name of platform code 0.
const Unknown = "unknown"

// Platforms are the assigned platform names; the platform code of
// Platforms[i] is i+1.
var Platforms = []string{"windows", "non-windows", "legacy", "direct-connect"}

// PlatformCode returns the 4-bit code of a platform name ("unknown" is 0).
func PlatformCode(name string) (uint32, bool) {
	if name == Unknown {
		return 0, true
	}
	for i, p := range Platforms {
		if p == name {
			return uint32(i + 1), true
		}
	}
	return 0, false
}

// Make builds an ID, returning an errs.Invalid error naming the field and its
// allowed range if a value does not fit.
func Make(platform string, vendor, revision uint32) (ID, error) {
	code, ok := PlatformCode(platform)
	if !ok {
		return 0, errs.E(errs.Invalid, "software ID: platform %q is not one of %s or %s", platform, strings.Join(Platforms, ", "), Unknown)
	}
	if vendor > MaxVendor {
		return 0, errs.E(errs.Invalid, "software ID: vendor %d is out of range 0-%d (12 bits)", vendor, MaxVendor)
	}
	if revision > MaxRevision {
		return 0, errs.E(errs.Invalid, "software ID: revision %d is out of range 0-%d (16 bits)", revision, MaxRevision)
	}
	return ID(code<<28 | vendor<<16 | revision), nil
}

// PlatformCode returns the 4-bit platform field.
func (id ID) PlatformCode() uint32 { return uint32(id) >> 28 }

// Platform returns the platform name, or "" if the platform field holds an
// unassigned code (5-15).
func (id ID) Platform() string {
	c := id.PlatformCode()
	switch {
	case c == 0:
		return Unknown
	case int(c) <= len(Platforms):
		return Platforms[c-1]
	default:
		return ""
	}
}

// Vendor returns the 12-bit vendor number.
func (id ID) Vendor() uint32 { return uint32(id) >> 16 & MaxVendor }

// Revision returns the 16-bit client revision.
func (id ID) Revision() uint32 { return uint32(id) & MaxRevision }

// Check returns an errs.Invalid error if the platform field holds an
// unassigned code. IDs from Make and Parse always pass.
func (id ID) Check() error {
	if id.Platform() == "" {
		return errs.E(errs.Invalid, "software ID %s: platform code %d is not assigned", id.Hex(), id.PlatformCode())
	}
	return nil
}

// String returns the text form "PLATFORM/VENDOR/REVISION", e.g.
// "windows/7/312". An ID with an unassigned platform code prints in hex.
func (id ID) String() string {
	p := id.Platform()
	if p == "" {
		return id.Hex()
	}
	return p + "/" + strconv.FormatUint(uint64(id.Vendor()), 10) + "/" + strconv.FormatUint(uint64(id.Revision()), 10)
}

// Hex returns the hex form: "0x" and 8 lower-case hex digits.
func (id ID) Hex() string { return fmt.Sprintf("0x%08x", uint32(id)) }

// Parse reads either form: "windows/7/312" (decimal fields) or "0x10070138"
// (1-8 hex digits after "0x"). Errors are errs.Invalid and say which part is
// wrong.
func Parse(s string) (ID, error) {
	if rest, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		if rest == "" || len(rest) > 8 {
			return 0, errs.E(errs.Invalid, "software ID %q: hex form needs 1-8 hex digits after 0x", s)
		}
		v, err := strconv.ParseUint(rest, 16, 32)
		if err != nil {
			return 0, errs.E(errs.Invalid, "software ID %q: %q is not hexadecimal", s, rest)
		}
		id := ID(v)
		if err := id.Check(); err != nil {
			return 0, err
		}
		return id, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return 0, errs.E(errs.Invalid, "software ID %q is neither PLATFORM/VENDOR/REVISION (e.g. windows/7/312) nor hex (e.g. 0x10070138)", s)
	}
	vendor, err := parseField(s, "vendor", parts[1], MaxVendor)
	if err != nil {
		return 0, err
	}
	revision, err := parseField(s, "revision", parts[2], MaxRevision)
	if err != nil {
		return 0, err
	}
	return Make(parts[0], vendor, revision)
}

func parseField(s, name, v string, maxv uint32) (uint32, error) {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, errs.E(errs.Invalid, "software ID %q: %s %q is not a decimal number 0-%d", s, name, v, maxv)
	}
	return uint32(n), nil // Make checks the range
}

// MarshalText implements encoding.TextMarshaler with the text form, so IDs
// read naturally in JSON and configuration files.
func (id ID) MarshalText() ([]byte, error) {
	if err := id.Check(); err != nil {
		return nil, err
	}
	return []byte(id.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler; it accepts what Parse
// accepts.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

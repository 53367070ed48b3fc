// Package openpaygo is the OpenPAYGO Token codec: the short numeric credit
// tokens that pay-as-you-go devices without a network take on a keypad. It
// generates and accepts exactly the tokens of the reference implementation
// (EnAccess OpenPAYGO-python), standard (9 digits) and extended (12 digits),
// with and without the restricted digit set (keys 1-4 only).
//
// It uses the standard library only, so device firmware written in Go can
// embed it. The algorithm is described in docs/openpaygo.md; the reference's
// conformance vectors run in openpaygo_test.go.
package openpaygo

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// Type is what a token does to the device.
type Type int

// The four token types. ADD_TIME tokens sit on even counts, the others on
// odd counts.
const (
	AddTime     Type = iota + 1 // extends the active-until time
	SetTime                     // sets the active-until time from now
	DisablePAYG                 // unlocks the device for good
	CounterSync                 // moves the device's count forward, nothing else
)

var typeNames = map[Type]string{AddTime: "ADD_TIME", SetTime: "SET_TIME", DisablePAYG: "DISABLE_PAYG", CounterSync: "COUNTER_SYNC"}

// String is the reference's name of t: ADD_TIME, SET_TIME, DISABLE_PAYG or
// COUNTER_SYNC.
func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// ParseType reads a type name as String writes it.
func ParseType(s string) (Type, error) {
	for t, name := range typeNames {
		if strings.EqualFold(s, name) {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown token type %q: want ADD_TIME, SET_TIME, DISABLE_PAYG or COUNTER_SYNC", s)
}

// Limits and reserved values of the token format.
const (
	MaxValue         = 995     // the largest amount a standard token carries
	MaxExtendedValue = 999_999 // the largest amount an extended token carries
	DisableValue     = 998     // the value a DISABLE_PAYG token carries
	SyncValue        = 999     // the value a COUNTER_SYNC token carries
	MaxStartingCode  = 999_999_999

	// MaxJump is how far above the last count the decoder looks for a token.
	MaxJump = 64
	// MaxJumpCounterSync is how far it looks for a counter-sync token.
	MaxJumpCounterSync = 100
	// MaxUnusedOlder is how far below the last count an unused ADD_TIME
	// token is still accepted; the used-count window has this size.
	MaxUnusedOlder = 16
)

// KeySize is the size of a device's secret key.
const KeySize = 16

// Key is a device's 16-byte SipHash secret key.
type Key [KeySize]byte

// ParseKey reads a key written as 32 hexadecimal digits.
func ParseKey(s string) (Key, error) {
	var k Key
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != KeySize {
		return k, fmt.Errorf("key must be %d hexadecimal digits (%d bytes), got %d characters", 2*KeySize, KeySize, len(s))
	}
	copy(k[:], b)
	return k, nil
}

// String is the key in hexadecimal. Keys are secrets: print one only where
// the user asked for it.
func (k Key) String() string { return hex.EncodeToString(k[:]) }

// Options choose the token's form.
type Options struct {
	Extended   bool // 12-digit tokens carrying values up to 999,999
	Restricted bool // written with the digits 1-4 only (15 or 20 digits)
}

// Device is what the codec needs to know of one device.
type Device struct {
	Key          Key
	StartingCode uint32 // 9 digits at most
}

// StartingCode derives a starting code from the key, for devices made without
// one: the chain step's reduction applied to the SipHash of the key under
// itself.
func StartingCode(k Key) uint32 {
	return uint32(reduceStandard(sipHash24((*[16]byte)(&k), k[:])))
}

// ErrValue is returned when a value is out of range for the token type.
var ErrValue = errors.New("value out of range")

// Encode makes the token that moves a device from its last count to the next
// count of typ's parity, and returns it with that new count. value is the
// amount for ADD_TIME and SET_TIME (days times the device's divider; at most
// MaxValue, or MaxExtendedValue for extended tokens) and must be 0 for the
// other types.
func Encode(d Device, lastCount uint32, typ Type, value int, opt Options) (token string, newCount uint32, err error) {
	max := MaxValue
	if opt.Extended {
		max = MaxExtendedValue
	}
	switch typ {
	case AddTime, SetTime:
		if value < 0 || value > max {
			return "", 0, fmt.Errorf("%w: %s takes 0..%d, got %d", ErrValue, typ, max, value)
		}
	case DisablePAYG, CounterSync:
		if value != 0 {
			return "", 0, fmt.Errorf("%w: %s takes no value, got %d", ErrValue, typ, value)
		}
		value = DisableValue
		if typ == CounterSync {
			value = SyncValue
		}
	default:
		return "", 0, fmt.Errorf("unknown token type %d", typ)
	}
	if d.StartingCode > MaxStartingCode {
		return "", 0, fmt.Errorf("starting code %d has more than 9 digits", d.StartingCode)
	}
	newCount = nextCount(lastCount, typ)
	if newCount < lastCount {
		return "", 0, fmt.Errorf("count %d is at the end of the counter", lastCount)
	}
	f := formOf(opt.Extended)
	base := (uint64(d.StartingCode)%f.offset + uint64(value)) % f.offset
	code := f.withBase(uint64(d.StartingCode), base)
	key := sipKeyOf((*[16]byte)(&d.Key))
	for i := uint32(0); i < newCount; i++ {
		code = f.step(key, code)
	}
	code = f.withBase(code, base)
	return f.format(code, opt.Restricted), newCount, nil
}

// nextCount is the count a token of type typ takes after last: even for
// ADD_TIME, odd for the others.
func nextCount(last uint32, typ Type) uint32 {
	odd := last%2 == 1
	if typ == AddTime {
		if odd {
			return last + 1
		}
		return last + 2
	}
	if odd {
		return last + 2
	}
	return last + 1
}

// form is the arithmetic of standard or extended tokens.
type form struct {
	offset   uint64 // 10^digits of the value
	digits   int    // the token's decimal digits
	bits     int    // the token's bits in the restricted digit set
	extended bool
}

var (
	standard = form{offset: 1_000, digits: 9, bits: 30}
	extended = form{offset: 1_000_000, digits: 12, bits: 40, extended: true}
)

func formOf(ext bool) form {
	if ext {
		return extended
	}
	return standard
}

// withBase replaces the value digits of code with base.
func (f form) withBase(code, base uint64) uint64 { return code - code%f.offset + base }

// step is the chain step: the next code from the last one. The message is
// the code big-endian (standard: 4 bytes, twice; extended: 8 bytes), which
// sipHash8 reads little-endian, hence the byte swaps.
func (f form) step(key sipKey, code uint64) uint64 {
	if f.extended {
		t := sipHash8(key, bits.ReverseBytes64(code)) >> 24
		if t > 999_999_999_999 {
			t -= 99_511_627_777
		}
		return t
	}
	half := uint64(bits.ReverseBytes32(uint32(code)))
	return reduceStandard(sipHash8(key, half|half<<32))
}

// reduceStandard folds a 64-bit hash to a 9-digit code.
func reduceStandard(h uint64) uint64 {
	t := uint64(uint32(h>>32)^uint32(h)) >> 2
	if t > 999_999_999 {
		t -= 73_741_825
	}
	return t
}

// format writes code as the token a user types.
func (f form) format(code uint64, restricted bool) string {
	if !restricted {
		s := strconv.FormatUint(code, 10)
		if len(s) < f.digits {
			s = strings.Repeat("0", f.digits-len(s)) + s
		}
		return s
	}
	out := make([]byte, f.bits/2)
	for i := range out {
		shift := f.bits - 2*(i+1)
		out[i] = byte('1' + (code>>shift)&3)
	}
	return string(out)
}

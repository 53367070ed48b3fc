package openpaygo

import (
	"errors"
	"fmt"
	"slices"
)

// Status is the outcome of decoding a token.
type Status int

// The three outcomes of Decode.
const (
	Invalid     Status = iota // no count in the window gives this token: a typo, or another device's token
	Valid                     // apply it
	AlreadyUsed               // a real token of this device that was entered before or is too old
)

// String is the status as the CLI prints it: valid, already_used, invalid.
func (s Status) String() string {
	switch s {
	case Valid:
		return "valid"
	case AlreadyUsed:
		return "already_used"
	}
	return "invalid"
}

// Result is what a token means to the device that decoded it.
type Result struct {
	Status Status
	Type   Type   // set when Status is Valid
	Value  int    // the raw value (days times the divider) for ADD_TIME and SET_TIME
	Count  uint32 // the token's count, when Status is Valid
	// Extended reports a 12-digit token.
	Extended bool
}

// ErrMalformed is returned for text that cannot be a token: letters, digits
// outside 1-4 in the restricted set, or the wrong length.
var ErrMalformed = errors.New("malformed token")

// Parse reads the token a user typed into its code and form. Without the
// restricted digit set a token of up to 9 digits is standard and one of 10 to
// 12 digits extended; with it, 15 digits are standard and 20 extended.
func Parse(token string, restricted bool) (code uint64, ext bool, err error) {
	n := len(token)
	if n == 0 {
		return 0, false, fmt.Errorf("%w: empty", ErrMalformed)
	}
	if restricted {
		switch n {
		case standard.bits / 2:
		case extended.bits / 2:
			ext = true
		default:
			return 0, false, fmt.Errorf("%w: a restricted-digit token has %d or %d digits, got %d", ErrMalformed, standard.bits/2, extended.bits/2, n)
		}
		for i := 0; i < n; i++ {
			c := token[i]
			if c < '1' || c > '4' {
				return 0, false, fmt.Errorf("%w: character %d is %q; a restricted-digit token uses the digits 1-4 only", ErrMalformed, i+1, c)
			}
			code = code<<2 | uint64(c-'1')
		}
		return code, ext, nil
	}
	if n > extended.digits {
		return 0, false, fmt.Errorf("%w: %d digits, at most %d", ErrMalformed, n, extended.digits)
	}
	for i := 0; i < n; i++ {
		c := token[i]
		if c < '0' || c > '9' {
			return 0, false, fmt.Errorf("%w: character %d is %q; a token has digits only", ErrMalformed, i+1, c)
		}
		code = code*10 + uint64(c-'0')
	}
	return code, n > standard.digits, nil
}

// Decode finds the count at which device d generated token, given the last
// count the device accepted and the counts it has marked used. It walks the
// chain from count 0 to lastCount+MaxJump (MaxJumpCounterSync for a counter
// sync value) and accepts a match above lastCount; a counter sync above
// lastCount-MaxJump; an ADD_TIME above lastCount-MaxUnusedOlder that is not
// in used. A match that fails these rules is AlreadyUsed; no match Invalid.
// The error is for text that cannot be a token (see Parse).
func Decode(d Device, token string, lastCount uint32, used []uint32, restricted bool) (Result, error) {
	code, ext, err := Parse(token, restricted)
	if err != nil {
		return Result{}, err
	}
	f := formOf(ext)
	base := code % f.offset
	startBase := uint64(d.StartingCode) % f.offset
	value := int((base + f.offset - startBase) % f.offset)

	limit := uint64(lastCount) + MaxJump
	if value == SyncValue {
		limit = uint64(lastCount) + MaxJumpCounterSync
	}
	res := Result{Status: Invalid, Extended: ext}
	key := sipKeyOf((*[16]byte)(&d.Key))
	current := f.withBase(uint64(d.StartingCode), base)
	for count := uint64(0); count < limit; count++ {
		if f.withBase(current, base) == code {
			typ := typeAt(count, value)
			if countIsValid(count, uint64(lastCount), value, typ, used) {
				return Result{Status: Valid, Type: typ, Value: value, Count: uint32(count), Extended: ext}, nil
			}
			res.Status = AlreadyUsed
		}
		current = f.step(key, current)
	}
	return res, nil
}

// typeAt is the type of a token found at count with value.
func typeAt(count uint64, value int) Type {
	if count%2 == 0 {
		return AddTime
	}
	switch value {
	case SyncValue:
		return CounterSync
	case DisableValue:
		return DisablePAYG
	}
	return SetTime
}

func countIsValid(count, last uint64, value int, typ Type, used []uint32) bool {
	if value == SyncValue {
		return count+MaxJump > last
	}
	if count > last {
		return true
	}
	return count+MaxUnusedOlder > last && typ == AddTime && !slices.Contains(used, uint32(count))
}

// UpdateUsed returns the used counts after a valid token of type typ and
// value at count: every count of the window below the highest for SET_TIME,
// DISABLE_PAYG and COUNTER_SYNC, only the token's own count (and the older
// ones still in the window) for ADD_TIME. The window is the MaxUnusedOlder
// counts below the highest count seen. The result is sorted.
func UpdateUsed(used []uint32, typ Type, value int, count uint32) []uint32 {
	highest := count
	for _, c := range used {
		highest = max(highest, c)
	}
	bottom := uint32(0)
	if highest > MaxUnusedOlder {
		bottom = highest - MaxUnusedOlder
	}
	all := typ != AddTime || value == SyncValue || value == DisableValue
	out := make([]uint32, 0, MaxUnusedOlder+1)
	for c := bottom; c <= highest; c++ {
		if all || c == count || slices.Contains(used, c) {
			out = append(out, c)
		}
	}
	return out
}

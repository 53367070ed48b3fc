// Package keypadvendor is the vendor's side of offline OpenPAYGO tokens: it
// registers keypad devices (pay-as-you-go devices without a network that take
// credit as a short number typed on a keypad) and issues their tokens.
//
// A device is registered with its serial number, its 16-byte secret key and
// its starting code. A key not given is made with crypto/rand; a starting
// code not given is derived from the key with openpaygo.StartingCode, as the
// reference implementation does for devices made without one, so a device
// flashed with the key alone computes the same code. The key is a secret: it
// is stored sealed (AES-256-GCM under the vendor's keypad sealing key, the
// serial number as additional data), never listed, never logged, and leaves
// the vendor only through Service.Export.
//
// Each device's last issued count lives in the store, and issuing a token
// (reading that count, encoding, storing the new count and the record of the
// token) is one transaction: two concurrent sales to one device give two
// different, consecutive tokens that the device accepts in either order.
package keypadvendor

import (
	"context"
	"crypto/rand"
	"regexp"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/payg/openpaygo"
)

// InitialCount is the last count of a newly registered device: the count the
// reference implementation's devices start at. A device that starts at 0
// accepts the tokens too, since every token's count is above 1.
const InitialCount = 1

// Device is a registered keypad device as the store keeps it. Its JSON form,
// the one lists show, leaves out the key and the starting code.
type Device struct {
	Serial     string    `json:"serial"`
	Divider    int       `json:"divider"`    // value units per day
	Extended   bool      `json:"extended"`   // 12-digit tokens carrying values up to 999,999
	Restricted bool      `json:"restricted"` // tokens written with the digits 1-4 only
	LastCount  uint32    `json:"last_count"` // the count of the last token issued
	Created    time.Time `json:"created"`

	// StartingCode is the device's 9-digit starting code; with the key it
	// makes the device's tokens, so it is kept out of lists too.
	StartingCode uint32 `json:"-"`
	// SealedKey is the device's key sealed by a Sealer; only Export opens it
	// for a person.
	SealedKey []byte `json:"-"`
}

// IssuedToken is the record of one token issued to a device. The token text
// is not stored: an unused token is credit, and it is derived again from the
// count when it must be shown a second time.
type IssuedToken struct {
	Serial string         `json:"device"`
	Count  uint32         `json:"count"` // the token's count, unique per device
	Type   openpaygo.Type `json:"-"`
	// Value is the amount carried (days times the divider) for ADD_TIME and
	// SET_TIME, 0 for DISABLE_PAYG and COUNTER_SYNC.
	Value    int       `json:"value"`
	Issued   time.Time `json:"issued"`
	IssuedBy string    `json:"issued_by"` // who asked: an admin token's ID and name
	// IdempotencyKey is the key the request carried, if any: a request
	// with the same key returns this record instead of issuing again.
	IdempotencyKey string `json:"-"`
}

// Store keeps keypad devices and their issued tokens. Every method returns
// errs kinds: NotFound for a missing device, Conflict for a duplicate.
type Store interface {
	// CreateKeypadDevice records a new device; Conflict if its serial
	// number is registered already.
	CreateKeypadDevice(ctx context.Context, d *Device) error
	// KeypadDevice returns a device, sealed key included.
	KeypadDevice(ctx context.Context, serial string) (*Device, error)
	// KeypadDevices lists the devices by serial number.
	KeypadDevices(ctx context.Context) ([]*Device, error)
	// IssueKeypadToken issues one token in one transaction that holds the
	// device's row locked. If idemKey is not empty and a token was issued
	// under it (to any device), that record is returned with replayed true
	// and nothing changes. Otherwise next is called with the device as it
	// stands; its record, whose Count must be above the device's LastCount,
	// is stored and becomes the device's LastCount. An error of next
	// aborts the transaction and is returned as it is.
	IssueKeypadToken(ctx context.Context, serial, idemKey string, next func(d *Device) (*IssuedToken, error)) (rec *IssuedToken, replayed bool, err error)
	// KeypadTokens lists the tokens issued to a device, by count; NotFound if
	// the device does not exist.
	KeypadTokens(ctx context.Context, serial string) ([]*IssuedToken, error)
}

var serialRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CheckSerial checks a device serial number: 1-64 letters, digits, '.', '_'
// or '-', starting with a letter or digit.
func CheckSerial(serial string) error {
	if !serialRE.MatchString(serial) {
		return errs.E(errs.Invalid, "serial number %q is not valid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", serial)
	}
	return nil
}

// Service registers keypad devices and issues their tokens.
type Service struct {
	Store  Store
	Sealer *Sealer
	Now    func() time.Time
}

// New returns a service over st whose device keys are sealed by sealer.
func New(st Store, sealer *Sealer) *Service {
	return &Service{Store: st, Sealer: sealer, Now: time.Now}
}

// Registration is a device to register: the body of POST
// /v1/keypad/devices. Key and StartingCode are generated when absent.
type Registration struct {
	Serial       string  `json:"serial"`
	Key          string  `json:"key,omitempty"`           // 32 hexadecimal digits
	StartingCode *uint32 `json:"starting_code,omitempty"` // up to 9 digits
	Divider      int     `json:"divider,omitempty"`       // value units per day; default 1
	Extended     bool    `json:"extended,omitempty"`
	Restricted   bool    `json:"restricted,omitempty"`
}

// maxValue is the largest value a device's tokens carry.
func maxValue(extended bool) int {
	if extended {
		return openpaygo.MaxExtendedValue
	}
	return openpaygo.MaxValue
}

// Register records a new device; Conflict if the serial number is taken.
// The returned device carries no key.
func (s *Service) Register(ctx context.Context, r Registration) (*Device, error) {
	if err := CheckSerial(r.Serial); err != nil {
		return nil, err
	}
	var key openpaygo.Key
	if r.Key == "" {
		rand.Read(key[:]) // crypto/rand never fails on supported platforms
	} else {
		k, err := openpaygo.ParseKey(r.Key)
		if err != nil {
			return nil, errs.Wrap(errs.Invalid, err, "key (--key) is not valid; give the device's key as 32 hexadecimal digits, or leave it out to have one made")
		}
		key = k
	}
	code := openpaygo.StartingCode(key)
	if r.StartingCode != nil {
		if *r.StartingCode > openpaygo.MaxStartingCode {
			return nil, errs.E(errs.Invalid, "starting code (--starting-code) %d has more than 9 digits; give 0 to %d, or leave it out to derive it from the key", *r.StartingCode, openpaygo.MaxStartingCode)
		}
		code = *r.StartingCode
	}
	if r.Divider == 0 {
		r.Divider = 1
	}
	if max := maxValue(r.Extended); r.Divider < 1 || r.Divider > max {
		return nil, errs.E(errs.Invalid, "time divider (--divider) %d is out of range: give the value units per day, 1 to %d", r.Divider, max)
	}
	sealed, err := s.Sealer.Seal(r.Serial, key)
	if err != nil {
		return nil, err
	}
	d := &Device{Serial: r.Serial, Divider: r.Divider, Extended: r.Extended, Restricted: r.Restricted,
		LastCount: InitialCount, Created: s.Now().UTC(), StartingCode: code, SealedKey: sealed}
	if err := s.Store.CreateKeypadDevice(ctx, d); err != nil {
		return nil, err
	}
	return d, nil
}

// Secret is what Export returns: what is flashed into the device.
type Secret struct {
	Serial       string `json:"serial"`
	Key          string `json:"key"` // 32 hexadecimal digits
	StartingCode uint32 `json:"starting_code"`
	Divider      int    `json:"divider"`
	Extended     bool   `json:"extended"`
	Restricted   bool   `json:"restricted"`
	LastCount    uint32 `json:"last_count"`
}

// Export opens a device's key: the one call that returns it.
func (s *Service) Export(ctx context.Context, serial string) (*Secret, error) {
	d, err := s.device(ctx, serial)
	if err != nil {
		return nil, err
	}
	key, err := s.Sealer.Open(d.Serial, d.SealedKey)
	if err != nil {
		return nil, err
	}
	return &Secret{Serial: d.Serial, Key: key.String(), StartingCode: d.StartingCode, Divider: d.Divider,
		Extended: d.Extended, Restricted: d.Restricted, LastCount: d.LastCount}, nil
}

// Device returns a registered device.
func (s *Service) Device(ctx context.Context, serial string) (*Device, error) {
	return s.device(ctx, serial)
}

func (s *Service) device(ctx context.Context, serial string) (*Device, error) {
	if err := CheckSerial(serial); err != nil {
		return nil, err
	}
	d, err := s.Store.KeypadDevice(ctx, serial)
	if errs.Is(err, errs.NotFound) {
		return nil, errs.E(errs.NotFound, "keypad device %q is not registered; register it with 'licet vendor token device add --serial %s'", serial, serial)
	}
	return d, err
}

// Tokens lists the tokens issued to a device, without their text.
func (s *Service) Tokens(ctx context.Context, serial string) ([]*IssuedToken, error) {
	if _, err := s.device(ctx, serial); err != nil {
		return nil, err
	}
	return s.Store.KeypadTokens(ctx, serial)
}

package keypadvendor

import (
	"context"
	"errors"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/payg/billing"
	"github.com/licet/licet/payg/openpaygo"
)

// IssueRequest is what to issue: exactly one of its fields is set. It is
// the body of POST /v1/keypad/devices/{serial}/tokens.
type IssueRequest struct {
	Days    *int `json:"days,omitempty"`     // ADD_TIME of Days times the divider
	SetDays *int `json:"set_days,omitempty"` // SET_TIME of SetDays times the divider
	Disable bool `json:"disable,omitempty"`  // DISABLE_PAYG: unlock the device for good
	Sync    bool `json:"sync,omitempty"`     // COUNTER_SYNC: move the device's count forward
}

// Issued is an issued token as the API and the CLI show it.
type Issued struct {
	Device string `json:"device"`
	Token  string `json:"token,omitempty"` // the digits to type; absent in lists
	Count  uint32 `json:"count"`
	Type   string `json:"type"` // ADD_TIME, SET_TIME, DISABLE_PAYG or COUNTER_SYNC
	// Value is the amount carried (days times the divider); null for
	// DISABLE_PAYG and COUNTER_SYNC.
	Value    *int      `json:"value"`
	Issued   time.Time `json:"issued"`
	IssuedBy string    `json:"issued_by"`
}

// View is the record as the API shows it, with the token text if known.
func (r *IssuedToken) View(token string) *Issued {
	out := &Issued{Device: r.Serial, Token: token, Count: r.Count, Type: r.Type.String(), Issued: r.Issued, IssuedBy: r.IssuedBy}
	if r.Type == openpaygo.AddTime || r.Type == openpaygo.SetTime {
		v := r.Value
		out.Value = &v
	}
	return out
}

// typeAndValue checks a request against a device and returns the token type
// and the value to encode. Errors name the CLI flag.
func (req IssueRequest) typeAndValue(d *Device) (openpaygo.Type, int, error) {
	n := 0
	for _, set := range []bool{req.Days != nil, req.SetDays != nil, req.Disable, req.Sync} {
		if set {
			n++
		}
	}
	if n != 1 {
		return 0, 0, errs.E(errs.Invalid, "give exactly one of --days N, --set-days N, --disable or --sync (JSON: days, set_days, disable, sync); got %d", n)
	}
	switch {
	case req.Disable:
		return openpaygo.DisablePAYG, 0, nil
	case req.Sync:
		return openpaygo.CounterSync, 0, nil
	}
	typ, flag, days, least := openpaygo.AddTime, "--days", req.Days, 1
	if req.SetDays != nil {
		typ, flag, days, least = openpaygo.SetTime, "--set-days", req.SetDays, 0
	}
	most := maxValue(d.Extended) / d.Divider
	if *days < least || *days > most {
		return 0, 0, errs.E(errs.Invalid, "%s %d is out of range: device %s (%d units per day, %s tokens) takes %d to %d days per token", flag, *days, d.Serial, d.Divider, FormName(d.Extended), least, most)
	}
	return typ, *days * d.Divider, nil
}

// FormName is "extended" for 12-digit tokens, "standard" for 9-digit ones.
func FormName(extended bool) string {
	if extended {
		return "extended"
	}
	return "standard"
}

// Issue issues one token to the device serial, as by: who asked, recorded
// with the token. A non-empty idemKey makes the call idempotent: the same
// key with the same request returns the first token (replayed true) without
// issuing another; with another request it is a Conflict.
func (s *Service) Issue(ctx context.Context, serial string, req IssueRequest, idemKey, by string) (out *Issued, replayed bool, err error) {
	if err := CheckSerial(serial); err != nil {
		return nil, false, err
	}
	if err := billing.CheckIdempotencyKey(idemKey); err != nil {
		return nil, false, err
	}
	var token string
	rec, replayed, err := s.Store.IssueKeypadToken(ctx, serial, idemKey, func(d *Device) (*IssuedToken, error) {
		typ, value, err := req.typeAndValue(d)
		if err != nil {
			return nil, err
		}
		var count uint32
		token, count, err = s.encode(d, d.LastCount, typ, value)
		if err != nil {
			return nil, err
		}
		return &IssuedToken{Serial: d.Serial, Count: count, Type: typ, Value: value, Issued: s.Now().UTC(), IssuedBy: by, IdempotencyKey: idemKey}, nil
	})
	if errs.Is(err, errs.NotFound) {
		_, err = s.device(ctx, serial) // the message that says what to do
		if err == nil {
			err = errs.E(errs.NotFound, "keypad device %q is not registered", serial)
		}
	}
	if err != nil {
		return nil, false, err
	}
	if !replayed {
		return rec.View(token), false, nil
	}
	d, err := s.device(ctx, rec.Serial)
	if err != nil {
		return nil, false, err
	}
	typ, value, err := req.typeAndValue(d)
	if err != nil {
		return nil, false, err
	}
	if rec.Serial != serial || rec.Type != typ || rec.Value != value {
		return nil, false, errs.E(errs.Conflict, "Idempotency-Key %q was used for another request (%s to device %s, count %d); use a new key for a new sale", idemKey, rec.Type, rec.Serial, rec.Count)
	}
	// The token is a function of the count: encoding from the count below
	// it gives it again.
	token, _, err = s.encode(d, rec.Count-1, rec.Type, value)
	if err != nil {
		return nil, false, err
	}
	return rec.View(token), true, nil
}

// encode opens the device's key and encodes the token after last.
func (s *Service) encode(d *Device, last uint32, typ openpaygo.Type, value int) (string, uint32, error) {
	key, err := s.Sealer.Open(d.Serial, d.SealedKey)
	if err != nil {
		return "", 0, err
	}
	if typ == openpaygo.DisablePAYG || typ == openpaygo.CounterSync {
		value = 0
	}
	token, count, err := openpaygo.Encode(openpaygo.Device{Key: key, StartingCode: d.StartingCode}, last, typ, value,
		openpaygo.Options{Extended: d.Extended, Restricted: d.Restricted})
	switch {
	case errors.Is(err, openpaygo.ErrValue):
		return "", 0, errs.Wrap(errs.Invalid, err, "token value for device %s", d.Serial)
	case err != nil:
		return "", 0, errs.Wrap(errs.Exhausted, err, "device %s can take no more tokens", d.Serial)
	}
	return token, count, nil
}

// NextToken encodes the token after device d's last count and returns it
// with its record, for a caller that stores the record itself inside a
// transaction holding d's row (a pay-as-you-go sale to a keypad device,
// see payg/provisioning). typ is ADD_TIME or SET_TIME with value in the
// device's units (days times its divider).
func (s *Service) NextToken(d *Device, typ openpaygo.Type, value int, by string) (string, *IssuedToken, error) {
	if value < 0 || value > maxValue(d.Extended) {
		return "", nil, errs.E(errs.Invalid, "token value %d is out of range for device %s (%s tokens carry 0 to %d)", value, d.Serial, FormName(d.Extended), maxValue(d.Extended))
	}
	token, count, err := s.encode(d, d.LastCount, typ, value)
	if err != nil {
		return "", nil, err
	}
	return token, &IssuedToken{Serial: d.Serial, Count: count, Type: typ, Value: value, Issued: s.Now().UTC(), IssuedBy: by}, nil
}

// TokenOf derives again the token text of an issued record (the text is
// not stored: it is a function of the count).
func (s *Service) TokenOf(ctx context.Context, rec *IssuedToken) (string, error) {
	d, err := s.device(ctx, rec.Serial)
	if err != nil {
		return "", err
	}
	token, _, err := s.encode(d, rec.Count-1, rec.Type, rec.Value)
	return token, err
}

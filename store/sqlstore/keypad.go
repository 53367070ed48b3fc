package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/payg/keypadvendor"
	"github.com/licet/licet/payg/openpaygo"
)

var _ keypadvendor.Store = (*Vendor)(nil)

// CreateKeypadDevice records a new keypad device; Conflict if its serial
// number is registered already.
func (v *Vendor) CreateKeypadDevice(ctx context.Context, d *keypadvendor.Device) error {
	_, err := v.conn().exec(ctx, `INSERT INTO v_keypad_devices (serial, sealed_key, starting_code, divider, extended, restricted, last_count, created)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, d.Serial, nonNilBytes(d.SealedKey), int64(d.StartingCode), d.Divider, d.Extended, d.Restricted,
		int64(d.LastCount), toNanos(d.Created))
	if v.isUnique(err) {
		return errs.Wrap(errs.Conflict, err, "keypad device %q is registered already; nothing was changed", d.Serial)
	}
	return v.dbErr(err, "store keypad device "+d.Serial)
}

const keypadDeviceCols = `serial, sealed_key, starting_code, divider, extended, restricted, last_count, created`

func scanKeypadDevice(sc interface{ Scan(...any) error }) (*keypadvendor.Device, error) {
	var d keypadvendor.Device
	var code, last, created int64
	if err := sc.Scan(&d.Serial, &d.SealedKey, &code, &d.Divider, &d.Extended, &d.Restricted, &last, &created); err != nil {
		return nil, err
	}
	d.StartingCode, d.LastCount, d.Created = uint32(code), uint32(last), fromNanos(created)
	return &d, nil
}

// KeypadDevice returns a keypad device, sealed key included.
func (v *Vendor) KeypadDevice(ctx context.Context, serial string) (*keypadvendor.Device, error) {
	d, err := scanKeypadDevice(v.conn().row(ctx, `SELECT `+keypadDeviceCols+` FROM v_keypad_devices WHERE serial = ?`, serial))
	if err != nil {
		return nil, v.scanErr(err, "keypad device", serial)
	}
	return d, nil
}

// KeypadDevices lists the keypad devices by serial number.
func (v *Vendor) KeypadDevices(ctx context.Context) ([]*keypadvendor.Device, error) {
	return list(ctx, v.conn(), "list keypad devices", scanKeypadDevice, `SELECT `+keypadDeviceCols+` FROM v_keypad_devices ORDER BY serial`)
}

const keypadTokenCols = `serial, count, type, value, issued, issued_by, idempotency_key`

func scanKeypadToken(sc interface{ Scan(...any) error }) (*keypadvendor.IssuedToken, error) {
	var r keypadvendor.IssuedToken
	var count, issued int64
	var typ string
	var idem sql.NullString
	if err := sc.Scan(&r.Serial, &count, &typ, &r.Value, &issued, &r.IssuedBy, &idem); err != nil {
		return nil, err
	}
	t, err := openpaygo.ParseType(typ)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "stored keypad token of %s is damaged", r.Serial)
	}
	r.Count, r.Type, r.Issued, r.IdempotencyKey = uint32(count), t, fromNanos(issued), idem.String
	return &r, nil
}

// IssueKeypadToken issues a token in one transaction. The device's row is
// locked first, by an update that changes nothing and returns the row: in
// PostgreSQL a concurrent issue waits there for the lock and then reads
// the committed count; SQLite transactions take the database's write lock
// at their start (_txlock=immediate). The new count is written with a
// conditional update on the count read, and (serial, count) is the key of
// v_keypad_tokens, so no count is ever issued twice.
func (v *Vendor) IssueKeypadToken(ctx context.Context, serial, idemKey string, next func(d *keypadvendor.Device) (*keypadvendor.IssuedToken, error)) (rec *keypadvendor.IssuedToken, replayed bool, err error) {
	err = v.tx(ctx, func(c conn) error {
		var err error
		rec, replayed, err = v.issueKeypadToken(ctx, c, serial, idemKey, next)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return rec, replayed, nil
}

// IssueKeypadToken implements provisioning.Tx: a token issued inside a
// sale's transaction (the sale's idempotency key covers it).
func (t *paygTx) IssueKeypadToken(ctx context.Context, serial string, next func(d *keypadvendor.Device) (*keypadvendor.IssuedToken, error)) (*keypadvendor.IssuedToken, error) {
	rec, _, err := t.v.issueKeypadToken(ctx, t.c, serial, "", next)
	return rec, err
}

// issueKeypadToken is IssueKeypadToken inside the transaction c.
func (v *Vendor) issueKeypadToken(ctx context.Context, c conn, serial, idemKey string, next func(d *keypadvendor.Device) (*keypadvendor.IssuedToken, error)) (*keypadvendor.IssuedToken, bool, error) {
	d, err := scanKeypadDevice(c.row(ctx, `UPDATE v_keypad_devices SET last_count = last_count WHERE serial = ? RETURNING `+keypadDeviceCols, serial))
	if err != nil {
		return nil, false, v.scanErr(err, "keypad device", serial)
	}
	if idemKey != "" {
		prev, err := scanKeypadToken(c.row(ctx, `SELECT `+keypadTokenCols+` FROM v_keypad_tokens WHERE idempotency_key = ?`, idemKey))
		switch {
		case err == nil:
			return prev, true, nil
		case !errors.Is(err, sql.ErrNoRows):
			return nil, false, v.dbErr(err, "look up Idempotency-Key")
		}
	}
	r, err := next(d)
	if err != nil {
		return nil, false, err
	}
	if r.Count <= d.LastCount {
		return nil, false, errs.E(errs.Internal, "keypad token count %d of device %s is not above its last count %d", r.Count, serial, d.LastCount)
	}
	res, err := c.exec(ctx, `UPDATE v_keypad_devices SET last_count = ? WHERE serial = ? AND last_count = ?`, int64(r.Count), serial, int64(d.LastCount))
	if err != nil {
		return nil, false, v.dbErr(err, "store the count of keypad device "+serial)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return nil, false, errs.E(errs.Conflict, "keypad device %s issued another token meanwhile; try again", serial)
	}
	var idem sql.NullString
	if r.IdempotencyKey != "" {
		idem = sql.NullString{String: r.IdempotencyKey, Valid: true}
	}
	_, err = c.exec(ctx, `INSERT INTO v_keypad_tokens (`+keypadTokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		serial, int64(r.Count), r.Type.String(), r.Value, toNanos(r.Issued), r.IssuedBy, idem)
	if v.isUnique(err) {
		return nil, false, errs.Wrap(errs.Conflict, err, "a token of device %s with count %d, or one with Idempotency-Key %q, was issued concurrently; try again", serial, r.Count, r.IdempotencyKey)
	}
	if err != nil {
		return nil, false, v.dbErr(err, "record keypad token of "+serial)
	}
	return r, false, nil
}

// KeypadTokens lists the tokens issued to a device, by count; NotFound if
// the device does not exist.
func (v *Vendor) KeypadTokens(ctx context.Context, serial string) ([]*keypadvendor.IssuedToken, error) {
	var out []*keypadvendor.IssuedToken
	err := v.tx(ctx, func(c conn) error {
		var one int
		if err := c.row(ctx, `SELECT 1 FROM v_keypad_devices WHERE serial = ?`, serial).Scan(&one); err != nil {
			return v.scanErr(err, "keypad device", serial)
		}
		var err error
		out, err = list(ctx, c, "list keypad tokens of "+serial, scanKeypadToken, `SELECT `+keypadTokenCols+` FROM v_keypad_tokens WHERE serial = ? ORDER BY count`, serial)
		return err
	})
	return out, err
}

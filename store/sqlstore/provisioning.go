package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/payg/billing"
	"github.com/licet/licet/payg/provisioning"
)

var _ provisioning.Store = (*Vendor)(nil)

// ProvisionWrite implements provisioning.Store.
func (v *Vendor) ProvisionWrite(ctx context.Context, idem billing.Idempotency, fn func(tx provisioning.Tx) ([]byte, error)) ([]byte, bool, error) {
	return v.idemWrite(ctx, idem, func(tx *paygTx) ([]byte, error) { return fn(tx) })
}

// Sale implements provisioning.Tx.
func (t *paygTx) Sale(ctx context.Context, id string) (*billing.Sale, error) {
	var s billing.Sale
	var dev, keypad sql.NullString
	var created int64
	err := t.c.row(ctx, `SELECT id, account_id, plan_id, device_id, keypad_device, new_device, price, currency, posting_id, created FROM v_payg_sales WHERE id = ?`, id).
		Scan(&s.ID, &s.AccountID, &s.PlanID, &dev, &keypad, &s.NewDevice, &s.Price, &s.Currency, &s.PostingID, &created)
	if err != nil {
		return nil, t.v.scanErr(err, "sale", id)
	}
	s.DeviceID, s.KeypadDevice, s.Created = dev.String, keypad.String, fromNanos(created)
	return &s, nil
}

// InsertCode implements provisioning.Tx: a sale's code in v_payg_codes, a
// re-registration code in v_payg_reregister_codes (migration 018).
func (t *paygTx) InsertCode(ctx context.Context, c *provisioning.Code) error {
	var err error
	if c.DeviceID != "" {
		_, err = t.c.exec(ctx, `INSERT INTO v_payg_reregister_codes (code_hash, device_id, created, expires) VALUES (?, ?, ?, ?)`,
			c.Hash, c.DeviceID, toNanos(c.Created), toNanos(c.Expires))
	} else {
		_, err = t.c.exec(ctx, `INSERT INTO v_payg_codes (code_hash, account_id, sale_id, created, expires) VALUES (?, ?, ?, ?, ?)`,
			c.Hash, c.AccountID, c.SaleID, toNanos(c.Created), toNanos(c.Expires))
	}
	if t.v.isUnique(err) {
		return errs.Wrap(errs.Conflict, err, "registration code exists already; ask for another")
	}
	return t.v.dbErr(err, "store registration code")
}

// Code implements provisioning.Tx: a sale's code, else a re-registration
// code (its device's account, the device as UsedBy once used).
func (t *paygTx) Code(ctx context.Context, hash []byte) (*provisioning.Code, error) {
	var c provisioning.Code
	var created, expires int64
	var sale, device, usedBy sql.NullString
	var usedAt sql.NullInt64
	err := t.c.row(ctx, `SELECT code_hash, account_id, sale_id, NULL, created, expires, used_by, used_at FROM v_payg_codes WHERE code_hash = ?
		UNION ALL SELECT r.code_hash, d.account_id, NULL, r.device_id, r.created, r.expires, CASE WHEN r.used_at IS NULL THEN NULL ELSE r.device_id END, r.used_at
		FROM v_payg_reregister_codes r JOIN v_payg_devices d ON d.id = r.device_id WHERE r.code_hash = ?`, hash, hash).
		Scan(&c.Hash, &c.AccountID, &sale, &device, &created, &expires, &usedBy, &usedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errs.E(errs.NotFound, "registration code not found; check the code or ask the vendor for a new one")
	}
	if err != nil {
		return nil, t.v.dbErr(err, "read registration code")
	}
	c.SaleID, c.DeviceID = sale.String, device.String
	c.Created, c.Expires, c.UsedBy, c.UsedAt = fromNanos(created), fromNanos(expires), usedBy.String, fromNullNanos(usedAt)
	return &c, nil
}

// UseCode implements provisioning.Tx with a conditional update of the
// code's row, whichever table holds it.
func (t *paygTx) UseCode(ctx context.Context, hash []byte, deviceID string, now time.Time) error {
	res, err := t.c.exec(ctx, `UPDATE v_payg_codes SET used_by = ?, used_at = ? WHERE code_hash = ? AND used_at IS NULL`, deviceID, toNanos(now), hash)
	n, err := affected(res, err)
	if err == nil && n == 0 {
		res, err = t.c.exec(ctx, `UPDATE v_payg_reregister_codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL`, toNanos(now), hash)
		n, err = affected(res, err)
	}
	switch {
	case err != nil:
		return t.v.dbErr(err, "use registration code")
	case n == 1:
		return nil
	}
	if _, err := t.Code(ctx, hash); err != nil {
		return err
	}
	return errs.E(errs.Conflict, "registration code was already used; a code registers one device once: ask the vendor for a new one")
}

// affected returns the rows a statement changed.
func affected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// lastSequenceCol is a device's last packet sequence, kept apart in
// v_payg_sequences (migration 013).
const lastSequenceCol = `COALESCE((SELECT s.last_sequence FROM v_payg_sequences s WHERE s.device_id = v_payg_devices.id), 0)`

// keysVersionCol is a device's keys version, beside its last sequence
// (migration 017).
const keysVersionCol = `COALESCE((SELECT s.keys_version FROM v_payg_sequences s WHERE s.device_id = v_payg_devices.id), 0)`

const paygDeviceCols = `id, account_id, system_id, salt, fingerprint, public_key, hpke_key, init_key, cert, ` + lastSequenceCol + `, ` + keysVersionCol + `, registered,
	report_sequence, report_used, report_at, flag, flagged_at, reregistered_at, base_sequence, previous_report`

func scanPaygDevice(sc interface{ Scan(...any) error }) (*provisioning.Device, error) {
	var d provisioning.Device
	var fp string
	var last, version, registered int64
	var rseq, rused, rat, flaggedAt, rereg sql.NullInt64
	var base int64
	var prev sql.NullString
	if err := sc.Scan(&d.ID, &d.AccountID, &d.SystemID, &d.Salt, &fp, &d.PublicKey, &d.HPKEKey, &d.InitKey, &d.CertDER, &last, &version, &registered,
		&rseq, &rused, &rat, &d.Flag, &flaggedAt, &rereg, &base, &prev); err != nil {
		return nil, err
	}
	d.Reregistered, d.BaseSequence = fromNullNanos(rereg), uint64(base)
	if prev.Valid {
		if err := fromJSON(prev.String, &d.PreviousReport); err != nil {
			return nil, err
		}
	}
	d.Fingerprint, d.LastSequence, d.KeysVersion, d.Registered, d.FlaggedAt = []byte(fp), uint64(last), uint64(version), fromNanos(registered), fromNullNanos(flaggedAt)
	if rat.Valid {
		d.Report = &provisioning.Report{HighestSequence: uint64(rseq.Int64), UsedSeconds: rused.Int64, At: fromNanos(rat.Int64)}
	}
	return &d, nil
}

func (v *Vendor) paygDevice(ctx context.Context, c conn, id string) (*provisioning.Device, error) {
	d, err := scanPaygDevice(c.row(ctx, `SELECT `+paygDeviceCols+` FROM v_payg_devices WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errs.E(errs.NotFound, "device %q not found; see 'licet vendor device list'", id)
	}
	return d, v.dbErr(err, "read device "+id)
}

// Device implements provisioning.Tx.
func (t *paygTx) Device(ctx context.Context, id string) (*provisioning.Device, error) {
	return t.v.paygDevice(ctx, t.c, id)
}

// HardwareCandidates implements provisioning.Tx.
func (t *paygTx) HardwareCandidates(ctx context.Context, systemID, salt string) ([]*provisioning.Device, error) {
	return list(ctx, t.c, "find devices by hardware", scanPaygDevice, `SELECT `+paygDeviceCols+` FROM v_payg_devices WHERE system_id = ? OR salt = ? ORDER BY registered, id`, systemID, salt)
}

// InsertDevice implements provisioning.Tx.
func (t *paygTx) InsertDevice(ctx context.Context, d *provisioning.Device) error {
	_, err := t.c.exec(ctx, `INSERT INTO v_payg_devices (id, account_id, system_id, salt, fingerprint, public_key, hpke_key, init_key, cert, last_sequence, registered, flag)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, '')`, d.ID, d.AccountID, d.SystemID, d.Salt, string(d.Fingerprint),
		nonNilBytes(d.PublicKey), nonNilBytes(d.HPKEKey), nonNilBytes(d.InitKey), nonNilBytes(d.CertDER), toNanos(d.Registered))
	if t.v.isUnique(err) {
		return errs.Wrap(errs.Conflict, err, "device %s exists already", d.ID)
	}
	if err != nil {
		return t.v.dbErr(err, "store device "+d.ID)
	}
	_, err = t.c.exec(ctx, `INSERT INTO v_payg_sequences (device_id, last_sequence) VALUES (?, 0)`, d.ID)
	return t.v.dbErr(err, "store the packet sequence of device "+d.ID)
}

// ReplaceDeviceKeys implements provisioning.Tx.
func (t *paygTx) ReplaceDeviceKeys(ctx context.Context, d *provisioning.Device) error {
	prev := sql.NullString{}
	if d.PreviousReport != nil {
		prev = sql.NullString{String: toJSON(d.PreviousReport), Valid: true}
	}
	_, err := t.c.exec(ctx, `UPDATE v_payg_devices SET system_id = ?, salt = ?, fingerprint = ?, public_key = ?, hpke_key = ?, init_key = ?, cert = ?,
		reregistered_at = ?, base_sequence = ?, previous_report = ?, report_sequence = NULL, report_used = NULL, report_at = NULL WHERE id = ?`,
		d.SystemID, d.Salt, string(d.Fingerprint), nonNilBytes(d.PublicKey), nonNilBytes(d.HPKEKey), nonNilBytes(d.InitKey), nonNilBytes(d.CertDER),
		toNullNanos(d.Reregistered), int64(min(d.BaseSequence, 1<<62)), prev, d.ID)
	if err != nil {
		return t.v.dbErr(err, "re-register device "+d.ID)
	}
	_, err = t.c.exec(ctx, `UPDATE v_payg_sequences SET keys_version = keys_version + 1 WHERE device_id = ?`, d.ID)
	return t.v.dbErr(err, "re-register device "+d.ID)
}

// InsertClone implements provisioning.Tx.
func (t *paygTx) InsertClone(ctx context.Context, c *provisioning.Clone) error {
	_, err := t.c.exec(ctx, `INSERT INTO v_payg_clones (id, device_id, account_id, attempt_account, system_id, at) VALUES (?, ?, ?, ?, ?, ?)`,
		c.ID, c.DeviceID, c.AccountID, c.AttemptAccount, c.SystemID, toNanos(c.At))
	return t.v.dbErr(err, "record clone")
}

// NextSequence implements provisioning.Tx.
func (t *paygTx) NextSequence(ctx context.Context, deviceID string) (uint64, error) {
	var next int64
	err := t.c.row(ctx, `UPDATE v_payg_sequences SET last_sequence = last_sequence + 1 WHERE device_id = ? RETURNING last_sequence`, deviceID).Scan(&next)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, errs.E(errs.NotFound, "device %q not found", deviceID)
	}
	if err != nil {
		return 0, t.v.dbErr(err, "allocate a packet sequence of device "+deviceID)
	}
	return uint64(next), nil
}

// InsertPacket implements provisioning.Tx.
func (t *paygTx) InsertPacket(ctx context.Context, p *provisioning.StoredPacket) error {
	_, err := t.c.exec(ctx, `INSERT INTO v_payg_packets (device_id, sequence, sale_id, file, created) VALUES (?, ?, ?, ?, ?)`,
		p.DeviceID, int64(p.Sequence), p.SaleID, nonNilBytes(p.File), toNanos(p.Created))
	if t.v.isUnique(err) {
		return errs.Wrap(errs.Conflict, err, "device %s already has packet %d, or sale %s a packet", p.DeviceID, p.Sequence, p.SaleID)
	}
	return t.v.dbErr(err, fmt.Sprintf("store packet %d of device %s", p.Sequence, p.DeviceID))
}

// PaygDevice implements provisioning.Store.
func (v *Vendor) PaygDevice(ctx context.Context, id string) (*provisioning.Device, error) {
	return v.paygDevice(ctx, v.conn(), id)
}

// PaygDevices implements provisioning.Store.
func (v *Vendor) PaygDevices(ctx context.Context, accountID string) ([]*provisioning.Device, error) {
	return list(ctx, v.conn(), "list devices", scanPaygDevice, `SELECT `+paygDeviceCols+` FROM v_payg_devices WHERE (? = '' OR account_id = ?) ORDER BY registered, id`, accountID, accountID)
}

// Clones implements provisioning.Store.
func (v *Vendor) Clones(ctx context.Context) ([]*provisioning.Clone, error) {
	return list(ctx, v.conn(), "list clones", func(sc interface{ Scan(...any) error }) (*provisioning.Clone, error) {
		var c provisioning.Clone
		var at int64
		if err := sc.Scan(&c.ID, &c.DeviceID, &c.AccountID, &c.AttemptAccount, &c.SystemID, &at); err != nil {
			return nil, err
		}
		c.At = fromNanos(at)
		return &c, nil
	}, `SELECT id, device_id, account_id, attempt_account, system_id, at FROM v_payg_clones ORDER BY at DESC, id`)
}

// Packets implements provisioning.Store.
func (v *Vendor) Packets(ctx context.Context, deviceID string, since uint64) ([]*provisioning.StoredPacket, error) {
	return list(ctx, v.conn(), "list packets", func(sc interface{ Scan(...any) error }) (*provisioning.StoredPacket, error) {
		var p provisioning.StoredPacket
		var seq, created int64
		if err := sc.Scan(&p.DeviceID, &seq, &p.SaleID, &p.File, &created); err != nil {
			return nil, err
		}
		p.Sequence, p.Created = uint64(seq), fromNanos(created)
		return &p, nil
	}, `SELECT device_id, sequence, sale_id, file, created FROM v_payg_packets WHERE device_id = ? AND sequence > ? ORDER BY sequence`, deviceID, int64(min(since, 1<<62)))
}

// nonceSweeps counts UseNonce calls; every 256th forgets expired nonces.
var nonceSweeps atomic.Uint64

// UseNonce implements provisioning.Store.
func (v *Vendor) UseNonce(ctx context.Context, deviceID, nonce string, expires, now time.Time) error {
	if nonceSweeps.Add(1)%256 == 0 {
		if _, err := v.conn().exec(ctx, `DELETE FROM v_payg_nonces WHERE expires < ?`, toNanos(now)); err != nil {
			return v.dbErr(err, "forget expired nonces")
		}
	}
	_, err := v.conn().exec(ctx, `INSERT INTO v_payg_nonces (device_id, nonce, expires) VALUES (?, ?, ?)`, deviceID, nonce, toNanos(expires))
	if v.isUnique(err) {
		return errs.Wrap(errs.Conflict, err, "nonce %s of device %s was used before", nonce, deviceID)
	}
	return v.dbErr(err, "remember nonce")
}

// RecordReport implements provisioning.Store.
func (v *Vendor) RecordReport(ctx context.Context, deviceID string, r provisioning.Report) (*provisioning.Device, error) {
	var out *provisioning.Device
	err := v.tx(ctx, func(c conn) error {
		d, err := v.paygDevice(ctx, c, deviceID)
		if err != nil {
			return err
		}
		var why string
		switch {
		case r.HighestSequence > d.LastSequence:
			why = fmt.Sprintf("reported sequence %d above the last packet made (%d)", r.HighestSequence, d.LastSequence)
		case d.Report != nil && r.HighestSequence < d.Report.HighestSequence:
			why = fmt.Sprintf("highest sequence went back from %d to %d", d.Report.HighestSequence, r.HighestSequence)
		case d.Report != nil && r.UsedSeconds < d.Report.UsedSeconds:
			why = fmt.Sprintf("used seconds went back from %d to %d", d.Report.UsedSeconds, r.UsedSeconds)
		}
		if _, err := c.exec(ctx, `INSERT INTO v_payg_reports (device_id, at, highest_sequence, used_seconds, backwards) VALUES (?, ?, ?, ?, ?)`,
			deviceID, toNanos(r.At), int64(min(r.HighestSequence, 1<<62)), r.UsedSeconds, why != ""); err != nil {
			return v.dbErr(err, "record report of device "+deviceID)
		}
		if _, err := c.exec(ctx, `DELETE FROM v_payg_reports WHERE device_id = ? AND at < (SELECT at FROM v_payg_reports WHERE device_id = ? ORDER BY at DESC LIMIT 1 OFFSET ?)`,
			deviceID, deviceID, provisioning.ReportsKept-1); err != nil {
			return v.dbErr(err, "drop the old reports of device "+deviceID)
		}
		q := `UPDATE v_payg_devices SET report_sequence = ?, report_used = ?, report_at = ? WHERE id = ?`
		args := []any{int64(min(r.HighestSequence, 1<<62)), r.UsedSeconds, toNanos(r.At), deviceID}
		if why != "" {
			why = r.At.Format(time.RFC3339) + ": " + why + " (a restored older copy of the device's state?)"
			q = `UPDATE v_payg_devices SET report_sequence = ?, report_used = ?, report_at = ?, flag = ?, flagged_at = ? WHERE id = ?`
			args = []any{args[0], args[1], args[2], why, toNanos(r.At), deviceID}
		}
		if _, err := c.exec(ctx, q, args...); err != nil {
			return v.dbErr(err, "record report of device "+deviceID)
		}
		rep := r
		d.Report = &rep
		if why != "" {
			d.Flag, d.FlaggedAt = why, &rep.At
		}
		out = d
		return nil
	})
	return out, err
}

// PaygReports implements provisioning.Store.
func (v *Vendor) PaygReports(ctx context.Context, deviceID string) ([]*provisioning.PastReport, error) {
	return list(ctx, v.conn(), "list the reports of device "+deviceID, func(sc interface{ Scan(...any) error }) (*provisioning.PastReport, error) {
		var r provisioning.PastReport
		var at, seq int64
		if err := sc.Scan(&at, &seq, &r.UsedSeconds, &r.Backwards); err != nil {
			return nil, err
		}
		r.At, r.HighestSequence = fromNanos(at), uint64(seq)
		return &r, nil
	}, `SELECT at, highest_sequence, used_seconds, backwards FROM v_payg_reports WHERE device_id = ? ORDER BY at DESC`, deviceID)
}

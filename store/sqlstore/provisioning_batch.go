package sqlstore

import (
	"context"
	"database/sql"
	"strings"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/payg/billing"
	"github.com/licet/licet/payg/provisioning"
)

// A batch sale (provisioning.SellBatch) writes its rows with multi-row
// statements: chunkRows rows at most per statement, then the powers of two
// below it for the rest, so that a batch of any size uses at most eight
// statement texts per table, each prepared once for the life of the database
// (conn.stmt). The widest row (a sale) has 10 columns: a chunk binds at most
// 1,280 parameters, far below SQLite's limit (32,766) and PostgreSQL's
// (65,535).
const chunkRows = 128

var (
	_ provisioning.BatchStore = (*Vendor)(nil)
	_ provisioning.BatchTx    = (*paygTx)(nil)
)

// chunks calls fn with consecutive ranges [lo, hi) covering n rows: ranges
// of chunkRows, then of the largest power of two that fits what is left.
func chunks(n int, fn func(lo, hi int) error) error {
	for lo := 0; lo < n; {
		k := chunkRows
		for k > n-lo {
			k /= 2
		}
		if err := fn(lo, lo+k); err != nil {
			return err
		}
		lo += k
	}
	return nil
}

// rowsSQL returns the placeholders of rows rows of cols columns each:
// "(?, ?), (?, ?)".
func rowsSQL(rows, cols int) string {
	row := "(?" + strings.Repeat(", ?", cols-1) + ")"
	return row + strings.Repeat(", "+row, rows-1)
}

// listSQL returns n placeholders for an IN list: "?, ?, ?".
func listSQL(n int) string { return "?" + strings.Repeat(", ?", n-1) }

// PaygDeviceKeys implements provisioning.BatchStore: the devices' keys,
// with their sequence and keys version, a chunk of devices per statement.
func (v *Vendor) PaygDeviceKeys(ctx context.Context, ids []string) (map[string]*provisioning.Device, error) {
	const what = "read the devices of a batch"
	out := make(map[string]*provisioning.Device, len(ids))
	err := chunks(len(ids), func(lo, hi int) error {
		rows, err := v.conn().query(ctx, `SELECT d.id, d.account_id, s.last_sequence, s.keys_version, d.hpke_key, d.init_key
			FROM v_payg_sequences s JOIN v_payg_devices d ON d.id = s.device_id WHERE s.device_id IN (`+listSQL(hi-lo)+`)`, stringArgs(ids[lo:hi])...)
		if err != nil {
			return v.dbErr(err, what)
		}
		defer rows.Close()
		for rows.Next() {
			var d provisioning.Device
			var last, version int64
			if err := rows.Scan(&d.ID, &d.AccountID, &last, &version, &d.HPKEKey, &d.InitKey); err != nil {
				return v.dbErr(err, what)
			}
			d.LastSequence, d.KeysVersion = uint64(last), uint64(version)
			out[d.ID] = &d
		}
		return v.dbErr(rows.Err(), what)
	})
	return out, err
}

// stringArgs returns ss as statement arguments.
func stringArgs(ss []string) []any {
	args := make([]any, len(ss))
	for i, s := range ss {
		args[i] = s
	}
	return args
}

// NextSequences implements provisioning.BatchTx: one conditional update of
// the narrow v_payg_sequences per chunk of devices, in the transaction, so
// the sequences are exact and gapless as NextSequence's. The devices' wide
// rows are not read.
func (t *paygTx) NextSequences(ctx context.Context, ids []string) (map[string]provisioning.Allocated, error) {
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if seen[id] {
			return nil, errs.E(errs.Internal, "NextSequences: device %s is listed twice; a batch gives each device one packet", id)
		}
		seen[id] = true
	}
	next := make(map[string]provisioning.Allocated, len(ids))
	const what = "allocate the packet sequences of a batch"
	err := chunks(len(ids), func(lo, hi int) error {
		rows, err := t.c.query(ctx, `UPDATE v_payg_sequences SET last_sequence = last_sequence + 1 WHERE device_id IN (`+listSQL(hi-lo)+`) RETURNING device_id, last_sequence, keys_version`, stringArgs(ids[lo:hi])...)
		if err != nil {
			return t.v.dbErr(err, what)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var last, version int64
			if err := rows.Scan(&id, &last, &version); err != nil {
				return t.v.dbErr(err, what)
			}
			next[id] = provisioning.Allocated{Sequence: uint64(last), KeysVersion: uint64(version)}
		}
		return t.v.dbErr(rows.Err(), what)
	})
	if err != nil {
		return nil, err
	}
	return next, nil
}

// insertRows inserts n rows of cols columns into the table of head ("INSERT
// INTO t (a, b) VALUES "), a chunk at a time; row appends the arguments of
// row i to args.
func (t *paygTx) insertRows(ctx context.Context, what, head string, n, cols int, row func(i int, args []any) []any) error {
	args := make([]any, 0, chunkRows*cols)
	return chunks(n, func(lo, hi int) error {
		args = args[:0]
		for i := lo; i < hi; i++ {
			args = row(i, args)
		}
		_, err := t.c.exec(ctx, head+rowsSQL(hi-lo, cols), args...)
		switch {
		case t.v.isUnique(err):
			return errs.Wrap(errs.Conflict, err, "%s: one exists already (a sale, posting or packet of the batch was stored before); nothing of the batch is stored, sell it again", what)
		case t.v.isFK(err):
			return errs.Wrap(errs.NotFound, err, "%s: an account, plan, device or posting it names does not exist; nothing of the batch is stored", what)
		}
		return t.v.dbErr(err, what)
	})
}

// nullString is s, or NULL if empty.
func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// InsertSales implements provisioning.BatchTx with multi-row inserts, in
// the order of the foreign keys: postings, their lines, sales.
func (t *paygTx) InsertSales(ctx context.Context, postings []*billing.Posting, sales []*billing.Sale) error {
	type line struct {
		posting string
		n       int
		l       *billing.Line
	}
	var lines []line
	for _, p := range postings {
		if err := p.Balanced(); err != nil {
			return err
		}
		for i := range p.Lines {
			lines = append(lines, line{p.ID, i, &p.Lines[i]})
		}
	}
	err := t.insertRows(ctx, "store the postings of a batch", `INSERT INTO v_payg_postings (id, kind, account_id, reference, reverses, memo, created) VALUES `,
		len(postings), 7, func(i int, a []any) []any {
			p := postings[i]
			return append(a, p.ID, p.Kind, p.AccountID, p.Reference, nullString(p.Reverses), p.Memo, toNanos(p.Created))
		})
	if err != nil {
		return err
	}
	err = t.insertRows(ctx, "store the ledger lines of a batch", `INSERT INTO v_payg_lines (posting_id, n, ledger, account_id, amount, currency) VALUES `,
		len(lines), 6, func(i int, a []any) []any {
			l := lines[i]
			return append(a, l.posting, l.n, l.l.Ledger, nullString(l.l.AccountID), l.l.Amount, l.l.Currency)
		})
	if err != nil {
		return err
	}
	err = t.insertRows(ctx, "store the sales of a batch", `INSERT INTO v_payg_sales (id, account_id, plan_id, device_id, keypad_device, new_device, price, currency, posting_id, created) VALUES `,
		len(sales), 10, func(i int, a []any) []any {
			s := sales[i]
			return append(a, s.ID, s.AccountID, s.PlanID, nullString(s.DeviceID), nullString(s.KeypadDevice), s.NewDevice, s.Price, s.Currency, s.PostingID, toNanos(s.Created))
		})
	return err
}

// InsertPackets implements provisioning.BatchTx with multi-row inserts.
func (t *paygTx) InsertPackets(ctx context.Context, packets []*provisioning.StoredPacket) error {
	return t.insertRows(ctx, "store the packets of a batch", `INSERT INTO v_payg_packets (device_id, sequence, sale_id, file, created) VALUES `,
		len(packets), 5, func(i int, a []any) []any {
			p := packets[i]
			return append(a, p.DeviceID, int64(p.Sequence), p.SaleID, nonNilBytes(p.File), toNanos(p.Created))
		})
}

package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/payg/billing"
)

var _ billing.Store = (*Vendor)(nil)

// paygTx is a pay-as-you-go write's transaction: it implements billing.Tx
// and provisioning.Tx.
type paygTx struct {
	v *Vendor
	c conn
}

// idemWrite runs fn in a transaction under the idempotency record idem.
// The record is inserted first (ON CONFLICT DO NOTHING): a concurrent
// write with the same key, in this process or another, waits on the row
// (PostgreSQL) or runs after this one (SQLite, and batches serialised by
// the dialect's LockBatch), then finds it and returns its answer.
func (v *Vendor) idemWrite(ctx context.Context, idem billing.Idempotency, fn func(tx *paygTx) ([]byte, error)) ([]byte, bool, error) {
	var answer []byte
	var replayed bool
	err := v.tx(ctx, func(c conn) error {
		answer, replayed = nil, false // the transaction may run again
		if idem.Key != "" {
			res, err := c.exec(ctx, `INSERT INTO v_payg_idempotency (idem_key, op, request_hash, created) VALUES (?, ?, ?, ?) ON CONFLICT (idem_key) DO NOTHING`,
				idem.Key, idem.Op, nonNilBytes(idem.RequestHash), toNanos(time.Now()))
			if err != nil {
				return v.dbErr(err, "record idempotency key")
			}
			if n, err := res.RowsAffected(); err != nil {
				return v.dbErr(err, "record idempotency key")
			} else if n == 0 {
				var op string
				var hash, prev []byte
				if err := c.row(ctx, `SELECT op, request_hash, answer FROM v_payg_idempotency WHERE idem_key = ?`, idem.Key).Scan(&op, &hash, &prev); err != nil {
					return v.dbErr(err, "read idempotency key")
				}
				shown := idem.Key[strings.IndexByte(idem.Key, ':')+1:]
				if op != idem.Op || !bytes.Equal(hash, idem.RequestHash) || prev == nil {
					return errs.E(errs.Conflict, "Idempotency-Key %q was used for another request (%s); a retry must repeat the request exactly, a new request needs a new key", shown, op)
				}
				answer, replayed = prev, true
				return nil
			}
		}
		a, err := fn(&paygTx{v: v, c: c})
		if err != nil {
			return err
		}
		if idem.Key != "" {
			if _, err := c.exec(ctx, `UPDATE v_payg_idempotency SET answer = ? WHERE idem_key = ?`, nonNilBytes(a), idem.Key); err != nil {
				return v.dbErr(err, "record the answer of idempotency key")
			}
		}
		answer = a
		return nil
	})
	return answer, replayed, err
}

// BillingWrite implements billing.Store.
func (v *Vendor) BillingWrite(ctx context.Context, idem billing.Idempotency, fn func(tx billing.Tx) ([]byte, error)) ([]byte, bool, error) {
	return v.idemWrite(ctx, idem, func(tx *paygTx) ([]byte, error) { return fn(tx) })
}

const paygAccountCols = `id, customer_id, name, currency, created`

func scanPaygAccount(sc interface{ Scan(...any) error }) (*billing.Account, error) {
	var a billing.Account
	var created int64
	if err := sc.Scan(&a.ID, &a.CustomerID, &a.Name, &a.Currency, &created); err != nil {
		return nil, err
	}
	a.Created = fromNanos(created)
	return &a, nil
}

func scanPaygAccountBalance(sc interface{ Scan(...any) error }) (*billing.Account, error) {
	var a billing.Account
	var created int64
	if err := sc.Scan(&a.ID, &a.CustomerID, &a.Name, &a.Currency, &created, &a.Balance); err != nil {
		return nil, err
	}
	a.Created = fromNanos(created)
	return &a, nil
}

// balanceCol sums an account's receivable lines.
const balanceCol = `CAST(COALESCE((SELECT SUM(l.amount) FROM v_payg_lines l WHERE l.account_id = v_payg_accounts.id), 0) AS BIGINT)`

// Account implements billing.Tx.
func (t *paygTx) Account(ctx context.Context, id string) (*billing.Account, error) {
	a, err := scanPaygAccount(t.c.row(ctx, `SELECT `+paygAccountCols+` FROM v_payg_accounts WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errs.E(errs.NotFound, "account %q not found; add it with 'licet vendor account add'", id)
	}
	return a, t.v.dbErr(err, "read account "+id)
}

// InsertAccount implements billing.Tx.
func (t *paygTx) InsertAccount(ctx context.Context, a *billing.Account) error {
	_, err := t.c.exec(ctx, `INSERT INTO v_payg_accounts (`+paygAccountCols+`) VALUES (?, ?, ?, ?, ?)`, a.ID, a.CustomerID, a.Name, a.Currency, toNanos(a.Created))
	switch {
	case t.v.isUnique(err):
		return errs.Wrap(errs.Conflict, err, "account %q already exists; choose another ID", a.ID)
	case t.v.isFK(err):
		return errs.Wrap(errs.NotFound, err, "customer %q not found; add it with 'licet vendor customer add' first", a.CustomerID)
	}
	return t.v.dbErr(err, "store account "+a.ID)
}

const paygPlanCols = `id, name, kind, quantity, until_at, price, currency, created, seconds`

// A plan of seconds (billing.PlanSeconds) is stored with kind 'hours',
// quantity 0 and its seconds in the seconds column: migration 005's CHECK on
// kind cannot be widened by SQL that both SQLite and PostgreSQL run (SQLite
// rebuilds the table for it), see migration 008.

func scanPaygPlan(sc interface{ Scan(...any) error }) (*billing.Plan, error) {
	var p billing.Plan
	var until sql.NullInt64
	var created, seconds int64
	if err := sc.Scan(&p.ID, &p.Name, &p.Kind, &p.Quantity, &until, &p.Price, &p.Currency, &created, &seconds); err != nil {
		return nil, err
	}
	if seconds > 0 {
		p.Kind, p.Quantity = billing.PlanSeconds, seconds
	}
	p.Until, p.Created = fromNullNanos(until), fromNanos(created)
	return &p, nil
}

// Plan implements billing.Tx.
func (t *paygTx) Plan(ctx context.Context, id string) (*billing.Plan, error) {
	p, err := scanPaygPlan(t.c.row(ctx, `SELECT `+paygPlanCols+` FROM v_payg_plans WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errs.E(errs.NotFound, "plan %q not found; add it with 'licet vendor plan add'", id)
	}
	return p, t.v.dbErr(err, "read plan "+id)
}

// InsertPlan implements billing.Tx.
func (t *paygTx) InsertPlan(ctx context.Context, p *billing.Plan) error {
	kind, quantity, seconds := p.Kind, p.Quantity, int64(0)
	if kind == billing.PlanSeconds {
		kind, quantity, seconds = billing.PlanHours, 0, p.Quantity
	}
	_, err := t.c.exec(ctx, `INSERT INTO v_payg_plans (`+paygPlanCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.Name, kind, quantity, toNullNanos(p.Until), p.Price, p.Currency, toNanos(p.Created), seconds)
	if t.v.isUnique(err) {
		return errs.Wrap(errs.Conflict, err, "plan %q already exists; plans are not changed: add one under another ID", p.ID)
	}
	return t.v.dbErr(err, "store plan "+p.ID)
}

// InsertSale implements billing.Tx.
func (t *paygTx) InsertSale(ctx context.Context, s *billing.Sale) error {
	var dev sql.NullString
	if s.DeviceID != "" {
		dev = sql.NullString{String: s.DeviceID, Valid: true}
	}
	var keypad sql.NullString
	if s.KeypadDevice != "" {
		keypad = sql.NullString{String: s.KeypadDevice, Valid: true}
	}
	_, err := t.c.exec(ctx, `INSERT INTO v_payg_sales (id, account_id, plan_id, device_id, keypad_device, new_device, price, currency, posting_id, created)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, s.ID, s.AccountID, s.PlanID, dev, keypad, s.NewDevice, s.Price, s.Currency, s.PostingID, toNanos(s.Created))
	if t.v.isFK(err) && s.KeypadDevice != "" {
		return errs.Wrap(errs.NotFound, err, "keypad_device: %q is not registered; register it with 'licet vendor token device add --serial %s'", s.KeypadDevice, s.KeypadDevice)
	}
	return t.v.dbErr(err, "store sale "+s.ID)
}

// Post implements billing.Tx: the posting's balance is checked again here,
// so no caller can store one that does not balance.
func (t *paygTx) Post(ctx context.Context, p *billing.Posting) error {
	if err := p.Balanced(); err != nil {
		return err
	}
	var rev sql.NullString
	if p.Reverses != "" {
		rev = sql.NullString{String: p.Reverses, Valid: true}
	}
	_, err := t.c.exec(ctx, `INSERT INTO v_payg_postings (id, kind, account_id, reference, reverses, memo, created) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.Kind, p.AccountID, p.Reference, rev, p.Memo, toNanos(p.Created))
	switch {
	case t.v.isUnique(err) && p.Reverses != "":
		return errs.Wrap(errs.Conflict, err, "posting %s was reversed already; a posting is reversed once", p.Reverses)
	case t.v.isFK(err):
		return errs.Wrap(errs.NotFound, err, "account %q not found", p.AccountID)
	case err != nil:
		return t.v.dbErr(err, "store posting "+p.ID)
	}
	for i, l := range p.Lines {
		var acct sql.NullString
		if l.AccountID != "" {
			acct = sql.NullString{String: l.AccountID, Valid: true}
		}
		if _, err := t.c.exec(ctx, `INSERT INTO v_payg_lines (posting_id, n, ledger, account_id, amount, currency) VALUES (?, ?, ?, ?, ?, ?)`,
			p.ID, i, l.Ledger, acct, l.Amount, l.Currency); err != nil {
			return t.v.dbErr(err, "store line of posting "+p.ID)
		}
	}
	return nil
}

const paygPostingCols = `id, kind, account_id, reference, reverses, memo, created`

func scanPaygPosting(sc interface{ Scan(...any) error }) (*billing.Posting, error) {
	var p billing.Posting
	var rev sql.NullString
	var created int64
	if err := sc.Scan(&p.ID, &p.Kind, &p.AccountID, &p.Reference, &rev, &p.Memo, &created); err != nil {
		return nil, err
	}
	p.Reverses, p.Created, p.Lines = rev.String, fromNanos(created), []billing.Line{}
	return &p, nil
}

// postings reads postings by the WHERE clause cond and fills their lines.
func (v *Vendor) postings(ctx context.Context, c conn, cond string, args ...any) ([]*billing.Posting, error) {
	ps, err := list(ctx, c, "list postings", scanPaygPosting, `SELECT `+paygPostingCols+` FROM v_payg_postings WHERE `+cond+` ORDER BY created, id`, args...)
	if err != nil || len(ps) == 0 {
		return ps, err
	}
	byID := map[string]*billing.Posting{}
	for _, p := range ps {
		byID[p.ID] = p
	}
	rows, err := c.query(ctx, `SELECT posting_id, ledger, account_id, amount, currency FROM v_payg_lines
		WHERE posting_id IN (SELECT id FROM v_payg_postings WHERE `+cond+`) ORDER BY posting_id, n`, args...)
	if err != nil {
		return nil, v.dbErr(err, "list posting lines")
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var l billing.Line
		var acct sql.NullString
		if err := rows.Scan(&id, &l.Ledger, &acct, &l.Amount, &l.Currency); err != nil {
			return nil, v.dbErr(err, "list posting lines")
		}
		l.AccountID = acct.String
		if p := byID[id]; p != nil {
			p.Lines = append(p.Lines, l)
		}
	}
	return ps, v.dbErr(rows.Err(), "list posting lines")
}

// Posting implements billing.Tx.
func (t *paygTx) Posting(ctx context.Context, id string) (*billing.Posting, error) {
	ps, err := t.v.postings(ctx, t.c, `id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		return nil, errs.E(errs.NotFound, "posting %q not found; see 'licet vendor ledger'", id)
	}
	return ps[0], nil
}

// Accounts implements billing.Store.
func (v *Vendor) Accounts(ctx context.Context, customerID string) ([]*billing.Account, error) {
	return list(ctx, v.conn(), "list accounts", scanPaygAccountBalance, `SELECT `+paygAccountCols+`, `+balanceCol+`
		FROM v_payg_accounts WHERE (? = '' OR customer_id = ?) ORDER BY created, id`, customerID, customerID)
}

// AccountBalance implements billing.Store.
func (v *Vendor) AccountBalance(ctx context.Context, id string) (*billing.Account, error) {
	a, err := scanPaygAccountBalance(v.conn().row(ctx, `SELECT `+paygAccountCols+`, `+balanceCol+` FROM v_payg_accounts WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errs.E(errs.NotFound, "account %q not found; see 'licet vendor account list'", id)
	}
	return a, v.dbErr(err, "read account "+id)
}

// Plans implements billing.Store.
func (v *Vendor) Plans(ctx context.Context) ([]*billing.Plan, error) {
	return list(ctx, v.conn(), "list plans", scanPaygPlan, `SELECT `+paygPlanCols+` FROM v_payg_plans ORDER BY created, id`)
}

// Postings implements billing.Store.
func (v *Vendor) Postings(ctx context.Context, accountID string) ([]*billing.Posting, error) {
	return v.postings(ctx, v.conn(), `(? = '' OR account_id = ?)`, accountID, accountID)
}

// CreateWebhook implements billing.Store.
func (v *Vendor) CreateWebhook(ctx context.Context, w *billing.Webhook) error {
	_, err := v.conn().exec(ctx, `INSERT INTO v_payg_webhooks (name, secret, created) VALUES (?, ?, ?)`, w.Name, nonNilBytes(w.Secret), toNanos(w.Created))
	if v.isUnique(err) {
		return errs.Wrap(errs.Conflict, err, "webhook endpoint %q exists already; choose another name", w.Name)
	}
	return v.dbErr(err, "store webhook endpoint "+w.Name)
}

// Webhook implements billing.Store.
func (v *Vendor) Webhook(ctx context.Context, name string) (*billing.Webhook, error) {
	var w billing.Webhook
	var created int64
	err := v.conn().row(ctx, `SELECT name, secret, created FROM v_payg_webhooks WHERE name = ?`, name).Scan(&w.Name, &w.Secret, &created)
	if err != nil {
		return nil, v.scanErr(err, "webhook endpoint", name)
	}
	w.Created = fromNanos(created)
	return &w, nil
}

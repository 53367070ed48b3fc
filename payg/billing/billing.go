// Package billing is the vendor's pay-as-you-go ledger: accounts (a customer
// and a currency), plans (N days of use, N hours of use, or use until a date,
// at a price in integer minor units; plans of N seconds, for short demos,
// tests and per-minute kiosks), sales, payments, refunds and reversals.
//
// Every money movement is a Posting in a double-entry ledger: its lines, one
// per ledger touched, sum to zero in each currency. An account's balance is
// the sum of the lines on its receivable ledger (positive: the customer owes
// the vendor; negative: the customer paid ahead). Nothing is updated or
// deleted: a mistake is corrected by a compensating posting (a reversal
// negates every line of the posting it reverses, once).
//
//	sale      receivable:ACCOUNT +price   revenue -price
//	payment   receivable:ACCOUNT -amount  cash    +amount
//	refund    receivable:ACCOUNT +amount  cash    -amount
//	reversal  every line of the reversed posting, negated
//
// Every write takes an idempotency key: the same key with the same request
// returns the first answer and posts nothing more; the same key with another
// request is a Conflict (HTTP 409). Payments from a processor arrive on a
// webhook signed like Stripe's (see webhook.go); the event ID is the
// idempotency key, so a redelivery is harmless.
package billing

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"regexp"
	"strconv"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/ids"
)

// MaxAmount bounds every amount in minor units (10^15: ten trillion in a
// two-decimal currency), so that no sum of a realistic number of postings
// overflows an int64.
const MaxAmount int64 = 1_000_000_000_000_000

// Posting kinds.
const (
	KindSale     = "sale"
	KindPayment  = "payment"
	KindRefund   = "refund"
	KindReversal = "reversal"
)

// Ledger names. A receivable ledger is per account: "receivable:" + ID.
const (
	LedgerRevenue    = "revenue"
	LedgerCash       = "cash"
	ledgerReceivable = "receivable:"
)

// Receivable returns the name of an account's receivable ledger.
func Receivable(accountID string) string { return ledgerReceivable + accountID }

// Plan kinds: what a sale of the plan gives the device.
const (
	PlanDays  = "days"  // Quantity days of use (metered time)
	PlanHours = "hours" // Quantity hours of use (metered time)
	// PlanSeconds is Quantity seconds of use (metered time): for short
	// demos and tests, and for sales by the minute.
	PlanSeconds = "seconds"
	PlanUntil   = "until" // use until the date Until
)

// Account is a customer's pay-as-you-go account in one currency.
type Account struct {
	ID         string    `json:"id"`
	CustomerID string    `json:"customer"`
	Name       string    `json:"name"`
	Currency   string    `json:"currency"` // ISO 4217, e.g. EUR
	Created    time.Time `json:"created"`
	// Balance is the sum of the account's postings in minor units, filled in
	// by reads that ask for it (positive: owed to the vendor).
	Balance int64 `json:"balance"`
}

// Plan is what a sale sells: an amount of use at a price.
type Plan struct {
	ID       string     `json:"id"`
	Name     string     `json:"name"`
	Kind     string     `json:"kind"`               // PlanDays, PlanHours, PlanSeconds or PlanUntil
	Quantity int64      `json:"quantity,omitempty"` // days, hours or seconds; 0 for PlanUntil
	Until    *time.Time `json:"until,omitempty"`    // for PlanUntil
	Price    int64      `json:"price"`              // minor units
	Currency string     `json:"currency"`
	Created  time.Time  `json:"created"`
}

// Seconds returns the seconds of use the plan gives, 0 for PlanUntil.
func (p *Plan) Seconds() int64 {
	switch p.Kind {
	case PlanDays:
		return p.Quantity * 86400
	case PlanHours:
		return p.Quantity * 3600
	case PlanSeconds:
		return p.Quantity
	}
	return 0
}

// Sale is one plan sold to an account: either a new device (which then
// registers with a one-time code) or credit for a registered device.
type Sale struct {
	ID        string `json:"id"`
	AccountID string `json:"account"`
	PlanID    string `json:"plan"`
	DeviceID  string `json:"device,omitempty"` // the device credited; empty for a new device until it registers
	// KeypadDevice is the serial number of the keypad device whose
	// OpenPAYGO token the sale issued, if the sale was to one.
	KeypadDevice string    `json:"keypad_device,omitempty"`
	NewDevice    bool      `json:"new_device"`
	Price        int64     `json:"price"`
	Currency     string    `json:"currency"`
	PostingID    string    `json:"posting"`
	Created      time.Time `json:"created"`
}

// Line is one leg of a posting.
type Line struct {
	Ledger    string `json:"ledger"`
	AccountID string `json:"account,omitempty"` // set on receivable lines
	Amount    int64  `json:"amount"`            // minor units; debit positive
	Currency  string `json:"currency"`
}

// Posting is one balanced ledger entry.
type Posting struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	AccountID string    `json:"account"`
	Reference string    `json:"reference"`          // the sale ID, the processor's payment ID, ...
	Reverses  string    `json:"reverses,omitempty"` // for a reversal: the posting it reverses
	Memo      string    `json:"memo,omitempty"`
	Created   time.Time `json:"created"`
	Lines     []Line    `json:"lines"`
}

// Balanced checks that p's lines sum to zero in each currency, without
// overflow, and that no line is zero.
func (p *Posting) Balanced() error {
	if len(p.Lines) < 2 {
		return errs.E(errs.Internal, "posting %s has %d line(s); a posting has at least two", p.ID, len(p.Lines))
	}
	sums := map[string]int64{}
	for _, l := range p.Lines {
		if l.Amount == 0 || l.Amount > MaxAmount || l.Amount < -MaxAmount {
			return errs.E(errs.Internal, "posting %s has a line of %d on %s", p.ID, l.Amount, l.Ledger)
		}
		sums[l.Currency] += l.Amount // bounded: each |amount| <= 10^15
	}
	for cur, s := range sums {
		if s != 0 {
			return errs.E(errs.Internal, "posting %s does not balance: %d %s", p.ID, s, cur)
		}
	}
	return nil
}

// Idempotency identifies a write so that a retry returns the first answer.
// An empty Key makes the write not idempotent.
type Idempotency struct {
	Key         string // the caller's key, namespaced by the service
	Op          string // what the write is, e.g. "sale"
	RequestHash []byte // SHA-256 of the canonical request
}

// MaxIdempotencyKey is the longest idempotency key, in bytes, any
// pay-as-you-go write takes (billing, provisioning, keypad tokens): as
// long as the longest common processors take.
const MaxIdempotencyKey = 255

// CheckIdempotencyKey is the one rule for an idempotency key (the
// Idempotency-Key header, the CLI's --idempotency-key): empty (the write
// is not idempotent), or 1 to MaxIdempotencyKey visible ASCII characters
// (no spaces or control characters, which a header would mangle).
func CheckIdempotencyKey(key string) error {
	if len(key) > MaxIdempotencyKey {
		return errs.E(errs.Invalid, "Idempotency-Key (--idempotency-key) is %d bytes long; use at most %d visible ASCII characters", len(key), MaxIdempotencyKey)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x21 || c > 0x7e {
			return errs.E(errs.Invalid, "Idempotency-Key (--idempotency-key) has byte 0x%02x at position %d; use visible ASCII characters only (no spaces), at most %d", c, i+1, MaxIdempotencyKey)
		}
	}
	return nil
}

// NewIdempotency hashes req (its JSON encoding) for the key given by the
// caller of op; an empty key gives an empty Idempotency. The key must pass
// CheckIdempotencyKey.
func NewIdempotency(key, op string, req any) (Idempotency, error) {
	if key == "" {
		return Idempotency{}, nil
	}
	if err := CheckIdempotencyKey(key); err != nil {
		return Idempotency{}, err
	}
	b, err := json.Marshal(req)
	if err != nil {
		return Idempotency{}, errs.Wrap(errs.Internal, err, "encode request")
	}
	sum := sha256.Sum256(append([]byte(op+"\x00"), b...))
	return Idempotency{Key: "api:" + key, Op: op, RequestHash: sum[:]}, nil
}

// Tx is what a billing write may do inside its transaction.
type Tx interface {
	// Account returns an account without its balance; NotFound if missing.
	Account(ctx context.Context, id string) (*Account, error)
	// Plan returns a plan; NotFound if missing.
	Plan(ctx context.Context, id string) (*Plan, error)
	// Posting returns a posting with its lines; NotFound if missing.
	Posting(ctx context.Context, id string) (*Posting, error)
	// InsertAccount records an account; Conflict if the ID is taken,
	// NotFound if the customer does not exist.
	InsertAccount(ctx context.Context, a *Account) error
	// InsertPlan records a plan; Conflict if the ID is taken.
	InsertPlan(ctx context.Context, p *Plan) error
	// InsertSale records a sale (its posting first).
	InsertSale(ctx context.Context, s *Sale) error
	// Post records a balanced posting and its lines; Conflict if it reverses
	// a posting already reversed.
	Post(ctx context.Context, p *Posting) error
}

// Store keeps the ledger. Every method returns errs kinds.
type Store interface {
	// BillingWrite runs fn in one transaction under the idempotency record
	// idem (unless idem.Key is empty) and stores what fn returns as the
	// answer. If idem.Key was used before: with the same Op and RequestHash
	// the first answer is returned with replayed true and fn is not called;
	// otherwise Conflict. Concurrent writes with one key run fn once.
	BillingWrite(ctx context.Context, idem Idempotency, fn func(tx Tx) ([]byte, error)) (answer []byte, replayed bool, err error)
	// Accounts lists accounts (with balances), of one customer if set.
	Accounts(ctx context.Context, customerID string) ([]*Account, error)
	// AccountBalance returns an account with its balance: the sum of its
	// receivable lines.
	AccountBalance(ctx context.Context, id string) (*Account, error)
	// Plans lists plans by creation.
	Plans(ctx context.Context) ([]*Plan, error)
	// Postings lists postings with their lines, of one account if set, by
	// creation.
	Postings(ctx context.Context, accountID string) ([]*Posting, error)
	// CreateWebhook records a webhook endpoint; Conflict if the name is taken.
	CreateWebhook(ctx context.Context, w *Webhook) error
	// Webhook returns an endpoint, secret included; NotFound if missing.
	Webhook(ctx context.Context, name string) (*Webhook, error)
}

var currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)

// CheckCurrency checks an ISO 4217 code; field names the JSON field.
func CheckCurrency(field, c string) error {
	if !currencyRE.MatchString(c) {
		return errs.E(errs.Invalid, "%s %q is not a currency: give the ISO 4217 code in capitals, e.g. EUR", field, c)
	}
	return nil
}

// ParseAmount reads an amount in minor units, as JSON gives it (a number, or
// a string of digits): a whole number from 1 to MaxAmount. field names the
// JSON field (and CLI flag) in the error.
func ParseAmount(field string, n json.Number) (int64, error) {
	s := string(n)
	if s == "" {
		return 0, errs.E(errs.Invalid, "%s is required: the amount in minor units (cents), a whole number above 0", field)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err != nil && errorIsRange(err):
		return 0, errs.E(errs.Invalid, "%s %s is too large: amounts are at most %d minor units", field, s, MaxAmount)
	case err != nil:
		return 0, errs.E(errs.Invalid, "%s %q is not a whole number of minor units (cents); give e.g. 1250 for 12.50", field, s)
	case v == 0:
		return 0, errs.E(errs.Invalid, "%s is 0; give an amount above 0", field)
	case v < 0:
		return 0, errs.E(errs.Invalid, "%s %d is negative; give an amount above 0 (a refund or a reversal, not a negative payment, takes money back)", field, v)
	case v > MaxAmount:
		return 0, errs.E(errs.Invalid, "%s %d is too large: amounts are at most %d minor units", field, v, MaxAmount)
	}
	return v, nil
}

func errorIsRange(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// Service runs billing over a Store.
type Service struct {
	Store Store
	// Secrets, if set, encrypts webhook secrets at rest.
	Secrets Sealer
	Now     func() time.Time
}

// Sealer encrypts small secrets at rest (AES-GCM under the vendor's data
// key); label binds a sealed value to its row.
type Sealer interface {
	Seal(label string, plain []byte) ([]byte, error)
	Open(label string, sealed []byte) ([]byte, error)
}

// New returns a billing service.
func New(st Store, secrets Sealer) *Service {
	return &Service{Store: st, Secrets: secrets, Now: time.Now}
}

// write runs fn under an idempotency key and decodes the (first) answer
// into out.
func (s *Service) write(ctx context.Context, idem Idempotency, out any, fn func(tx Tx) (any, error)) (bool, error) {
	answer, replayed, err := s.Store.BillingWrite(ctx, idem, func(tx Tx) ([]byte, error) {
		v, err := fn(tx)
		if err != nil {
			return nil, err
		}
		return json.Marshal(v)
	})
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(answer, out); err != nil {
		return false, errs.Wrap(errs.Internal, err, "stored answer is damaged")
	}
	return replayed, nil
}

// AccountRequest is the body of POST /v1/payg/accounts.
type AccountRequest struct {
	ID       string `json:"id,omitempty"` // default: a new "acct-…" ID
	Customer string `json:"customer"`
	Name     string `json:"name,omitempty"`
	Currency string `json:"currency"`
}

// AddAccount opens an account for a customer (who must exist).
func (s *Service) AddAccount(ctx context.Context, req AccountRequest, idemKey string) (*Account, bool, error) {
	if req.ID != "" {
		if err := ids.CheckSlug("id", req.ID); err != nil {
			return nil, false, err
		}
	}
	if req.Customer == "" {
		return nil, false, errs.E(errs.Invalid, "customer is required (--customer): the customer ID from 'licet vendor customer add'")
	}
	if err := CheckCurrency("currency", req.Currency); err != nil {
		return nil, false, err
	}
	idem, err := NewIdempotency(idemKey, "account", req)
	if err != nil {
		return nil, false, err
	}
	var out Account
	replayed, err := s.write(ctx, idem, &out, func(tx Tx) (any, error) {
		a := &Account{ID: req.ID, CustomerID: req.Customer, Name: req.Name, Currency: req.Currency, Created: s.Now().UTC()}
		if a.ID == "" {
			a.ID = ids.New("acct")
		}
		if a.Name == "" {
			a.Name = a.ID
		}
		return a, tx.InsertAccount(ctx, a)
	})
	return &out, replayed, err
}

// PlanRequest is the body of POST /v1/payg/plans. Exactly one of Days,
// Hours, Seconds and Until is set.
type PlanRequest struct {
	ID       string      `json:"id"`
	Name     string      `json:"name,omitempty"`
	Days     int64       `json:"days,omitempty"`
	Hours    int64       `json:"hours,omitempty"`
	Seconds  int64       `json:"seconds,omitempty"`
	Until    *time.Time  `json:"until,omitempty"`
	Price    json.Number `json:"price"`
	Currency string      `json:"currency"`
}

// maxPlanDays bounds a metered plan (100 years), so seconds never overflow.
const maxPlanDays = 36500

// AddPlan records a plan.
func (s *Service) AddPlan(ctx context.Context, req PlanRequest, idemKey string) (*Plan, bool, error) {
	if err := ids.CheckSlug("id", req.ID); err != nil {
		return nil, false, err
	}
	p := &Plan{ID: req.ID, Name: req.Name, Currency: req.Currency}
	set := 0
	if req.Days != 0 {
		set++
		p.Kind, p.Quantity = PlanDays, req.Days
		if req.Days < 0 || req.Days > maxPlanDays {
			return nil, false, errs.E(errs.Invalid, "days (--days) %d is out of range: give 1 to %d", req.Days, maxPlanDays)
		}
	}
	if req.Hours != 0 {
		set++
		p.Kind, p.Quantity = PlanHours, req.Hours
		if req.Hours < 0 || req.Hours > maxPlanDays*24 {
			return nil, false, errs.E(errs.Invalid, "hours (--hours) %d is out of range: give 1 to %d", req.Hours, maxPlanDays*24)
		}
	}
	if req.Seconds != 0 {
		set++
		p.Kind, p.Quantity = PlanSeconds, req.Seconds
		if req.Seconds < 0 || req.Seconds > maxPlanDays*86400 {
			return nil, false, errs.E(errs.Invalid, "seconds (--seconds) %d is out of range: give 1 to %d", req.Seconds, maxPlanDays*86400)
		}
	}
	if req.Until != nil {
		set++
		u := req.Until.UTC()
		p.Kind, p.Until = PlanUntil, &u
	}
	if set != 1 {
		return nil, false, errs.E(errs.Invalid, "a plan gives exactly one of days (--days N), hours (--hours N), seconds (--seconds N) or until (--until DATE); got %d", set)
	}
	price, err := ParseAmount("price", req.Price)
	if err != nil {
		return nil, false, err
	}
	p.Price = price
	if err := CheckCurrency("currency", req.Currency); err != nil {
		return nil, false, err
	}
	if p.Name == "" {
		p.Name = p.ID
	}
	idem, err := NewIdempotency(idemKey, "plan", req)
	if err != nil {
		return nil, false, err
	}
	var out Plan
	replayed, err := s.write(ctx, idem, &out, func(tx Tx) (any, error) {
		p.Created = s.Now().UTC()
		return p, tx.InsertPlan(ctx, p)
	})
	return &out, replayed, err
}

// SalePosting builds the posting of a sale of plan to account a.
func SalePosting(a *Account, plan *Plan, saleID string, now time.Time) (*Posting, error) {
	if plan.Currency != a.Currency {
		return nil, errs.E(errs.Invalid, "currency: plan %s is priced in %s but account %s is in %s; sell a plan in the account's currency", plan.ID, plan.Currency, a.ID, a.Currency)
	}
	if plan.Kind == PlanUntil && !plan.Until.After(now) {
		return nil, errs.E(errs.Invalid, "plan: plan %s gives use until %s, which has passed; add a new plan", plan.ID, plan.Until.Format(time.DateOnly))
	}
	return &Posting{ID: ids.New("post"), Kind: KindSale, AccountID: a.ID, Reference: saleID, Created: now,
		Lines: []Line{
			{Ledger: Receivable(a.ID), AccountID: a.ID, Amount: plan.Price, Currency: a.Currency},
			{Ledger: LedgerRevenue, Amount: -plan.Price, Currency: a.Currency},
		}}, nil
}

// MoneyRequest is the body of POST /v1/payg/payments and /v1/payg/refunds.
type MoneyRequest struct {
	Account   string      `json:"account"`
	Amount    json.Number `json:"amount"`
	Currency  string      `json:"currency"`
	Reference string      `json:"reference,omitempty"` // the processor's ID of the payment
	Memo      string      `json:"memo,omitempty"`
}

// Pay records a payment received (kind KindPayment) or a refund paid out
// (KindRefund) on an account.
func (s *Service) Pay(ctx context.Context, kind string, req MoneyRequest, idemKey string) (*Posting, bool, error) {
	idem, err := NewIdempotency(idemKey, kind, req)
	if err != nil {
		return nil, false, err
	}
	return s.pay(ctx, kind, req, idem)
}

func (s *Service) pay(ctx context.Context, kind string, req MoneyRequest, idem Idempotency) (*Posting, bool, error) {
	if kind != KindPayment && kind != KindRefund {
		return nil, false, errs.E(errs.Internal, "unknown money posting kind %q", kind)
	}
	if req.Account == "" {
		return nil, false, errs.E(errs.Invalid, "account is required (--account)")
	}
	amount, err := ParseAmount("amount", req.Amount)
	if err != nil {
		return nil, false, err
	}
	if err := CheckCurrency("currency", req.Currency); err != nil {
		return nil, false, err
	}
	if len(req.Reference) > 255 || len(req.Memo) > 1024 {
		return nil, false, errs.E(errs.Invalid, "reference (at most 255 bytes) or memo (at most 1024 bytes) is too long")
	}
	var out Posting
	replayed, err := s.write(ctx, idem, &out, func(tx Tx) (any, error) {
		a, err := tx.Account(ctx, req.Account)
		if err != nil {
			return nil, err
		}
		if a.Currency != req.Currency {
			return nil, errs.E(errs.Invalid, "currency %s is not the currency of account %s (%s); record the %s in %s", req.Currency, a.ID, a.Currency, kind, a.Currency)
		}
		sign := int64(-1) // a payment lowers what the customer owes
		if kind == KindRefund {
			sign = 1
		}
		p := &Posting{ID: ids.New("post"), Kind: kind, AccountID: a.ID, Reference: req.Reference, Memo: req.Memo, Created: s.Now().UTC(),
			Lines: []Line{
				{Ledger: Receivable(a.ID), AccountID: a.ID, Amount: sign * amount, Currency: a.Currency},
				{Ledger: LedgerCash, Amount: -sign * amount, Currency: a.Currency},
			}}
		return p, tx.Post(ctx, p)
	})
	return &out, replayed, err
}

// ReversalRequest is the body of POST /v1/payg/reversals.
type ReversalRequest struct {
	Posting string `json:"posting"`
	Memo    string `json:"memo,omitempty"`
}

// Reverse records the compensating posting of an earlier one: every line
// negated. A posting is reversed at most once, and a reversal is not
// reversed (post the original again instead).
func (s *Service) Reverse(ctx context.Context, req ReversalRequest, idemKey string) (*Posting, bool, error) {
	if req.Posting == "" {
		return nil, false, errs.E(errs.Invalid, "posting is required (--posting): the ID of the posting to reverse")
	}
	idem, err := NewIdempotency(idemKey, "reversal", req)
	if err != nil {
		return nil, false, err
	}
	var out Posting
	replayed, err := s.write(ctx, idem, &out, func(tx Tx) (any, error) {
		orig, err := tx.Posting(ctx, req.Posting)
		if err != nil {
			return nil, err
		}
		if orig.Kind == KindReversal {
			return nil, errs.E(errs.Conflict, "posting %s is itself a reversal; post the original again instead of reversing a reversal", orig.ID)
		}
		p := &Posting{ID: ids.New("post"), Kind: KindReversal, AccountID: orig.AccountID, Reference: orig.Reference,
			Reverses: orig.ID, Memo: req.Memo, Created: s.Now().UTC()}
		for _, l := range orig.Lines {
			l.Amount = -l.Amount
			p.Lines = append(p.Lines, l)
		}
		return p, tx.Post(ctx, p)
	})
	return &out, replayed, err
}

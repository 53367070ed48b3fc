package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/payg/billing"
	"github.com/licet/licet/payg/provisioning"
)

// PaygStore is what the pay-as-you-go suites need of a vendor store: the
// ledger and provisioning, and the customers accounts belong to.
type PaygStore interface {
	provisioning.Store
	CreateCustomer(ctx context.Context, c *clearinghouse.Customer) error
}

// TestBilling runs the conformance suite of billing.Store: the contract in
// the doc comments of billing.Store and billing.Tx.
func TestBilling(t *testing.T, open func(t *testing.T) PaygStore) {
	sub := parallel(t)
	sub("AccountsAndPlans", func(t *testing.T) { testBillingAccounts(t, open(t)) })
	sub("BalanceIsSumOfPostings", func(t *testing.T) { testBillingBalance(t, open(t)) })
	sub("Idempotency", func(t *testing.T) { testBillingIdempotency(t, open(t)) })
	sub("IdempotencyConcurrent", func(t *testing.T) { testBillingIdempotencyConcurrent(t, open(t)) })
	sub("Unbalanced", func(t *testing.T) { testBillingUnbalanced(t, open(t)) })
	sub("ReverseOnce", func(t *testing.T) { testBillingReverseOnce(t, open(t)) })
	sub("Webhooks", func(t *testing.T) { testBillingWebhooks(t, open(t)) })
}

// paygClock is a settable clock for the services under test.
type paygClock struct{ ns atomic.Int64 }

func newPaygClock() *paygClock {
	c := &paygClock{}
	c.ns.Store(time.Now().UTC().Truncate(time.Millisecond).UnixNano())
	return c
}

// Now returns the clock's time and moves it a microsecond on, so that
// objects made one after the other list in that order.
func (c *paygClock) Now() time.Time { return time.Unix(0, c.ns.Add(1000)).UTC() }

// Add moves the clock.
func (c *paygClock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// Since returns the time d before now.
func (c *paygClock) Since(d time.Duration) time.Time { return c.Now().Add(-d) }

// seedBilling adds customer "cust" and returns a billing service over st
// with account "acct" (EUR) and plans "week" (7 days, 500) and "hour"
// (1 hour, 100).
func seedBilling(t *testing.T, st PaygStore) (*billing.Service, *paygClock) {
	t.Helper()
	ctx := t.Context()
	ok(t, st.CreateCustomer(ctx, &clearinghouse.Customer{ID: "cust", Name: "Cust", Created: t0}), "create customer")
	clk := newPaygClock()
	svc := billing.New(st, nil)
	svc.Now = clk.Now
	_, _, err := svc.AddAccount(ctx, billing.AccountRequest{ID: "acct", Customer: "cust", Currency: "EUR"}, "")
	ok(t, err, "add account")
	_, _, err = svc.AddPlan(ctx, billing.PlanRequest{ID: "week", Days: 7, Price: "500", Currency: "EUR"}, "")
	ok(t, err, "add plan week")
	_, _, err = svc.AddPlan(ctx, billing.PlanRequest{ID: "hour", Hours: 1, Price: "100", Currency: "EUR"}, "")
	ok(t, err, "add plan hour")
	return svc, clk
}

func balance(t *testing.T, st billing.Store, id string) int64 {
	t.Helper()
	a, err := st.AccountBalance(t.Context(), id)
	ok(t, err, "read balance of "+id)
	return a.Balance
}

func testBillingAccounts(t *testing.T, st PaygStore) {
	ctx := t.Context()
	svc, _ := seedBilling(t, st)
	_, _, err := svc.AddAccount(ctx, billing.AccountRequest{ID: "acct", Customer: "cust", Currency: "EUR"}, "")
	wantKind(t, err, errs.Conflict, "account ID taken")
	_, _, err = svc.AddAccount(ctx, billing.AccountRequest{ID: "other", Customer: "nobody", Currency: "EUR"}, "")
	wantKind(t, err, errs.NotFound, "account of a missing customer")
	_, _, err = svc.AddPlan(ctx, billing.PlanRequest{ID: "week", Days: 7, Price: "1", Currency: "EUR"}, "")
	wantKind(t, err, errs.Conflict, "plan ID taken")
	a, _, err := svc.AddAccount(ctx, billing.AccountRequest{Customer: "cust", Currency: "USD"}, "")
	ok(t, err, "account with a generated ID")
	as, err := st.Accounts(ctx, "cust")
	ok(t, err, "list accounts")
	if len(as) != 2 || as[0].ID != "acct" || as[1].ID != a.ID || as[1].Currency != "USD" {
		t.Errorf("accounts: %+v", as)
	}
	_, _, err = svc.AddPlan(ctx, billing.PlanRequest{ID: "short", Seconds: 90, Price: "3", Currency: "EUR"}, "")
	ok(t, err, "add a plan of seconds")
	_, _, err = svc.AddPlan(ctx, billing.PlanRequest{ID: "bad", Seconds: -1, Price: "3", Currency: "EUR"}, "")
	wantKind(t, err, errs.Invalid, "a plan of -1 seconds")
	_, _, err = svc.AddPlan(ctx, billing.PlanRequest{ID: "bad", Seconds: 5, Hours: 1, Price: "3", Currency: "EUR"}, "")
	wantKind(t, err, errs.Invalid, "a plan of seconds and hours")
	ps, err := st.Plans(ctx)
	ok(t, err, "list plans")
	if len(ps) != 3 || ps[0].ID != "week" || ps[0].Seconds() != 7*86400 || ps[1].Seconds() != 3600 || ps[1].Kind != billing.PlanHours ||
		ps[2].Kind != billing.PlanSeconds || ps[2].Quantity != 90 || ps[2].Seconds() != 90 {
		t.Errorf("plans: %+v", ps)
	}
	_, _, err = st.BillingWrite(ctx, billing.Idempotency{}, func(tx billing.Tx) ([]byte, error) {
		p, err := tx.Plan(ctx, "short")
		if err == nil && (p.Kind != billing.PlanSeconds || p.Seconds() != 90) {
			t.Errorf("plan of seconds read in a transaction: %+v", p)
		}
		return []byte("{}"), err
	})
	ok(t, err, "read a plan of seconds")
	if as, _ := st.Accounts(ctx, "nobody"); len(as) != 0 {
		t.Errorf("accounts of another customer: %+v", as)
	}
}

// sell posts a sale of plan to acct directly through the ledger (as
// provisioning does, without its code or packet).
func sell(t *testing.T, st billing.Store, svc *billing.Service, acct, plan string) *billing.Posting {
	t.Helper()
	ctx := t.Context()
	var p *billing.Posting
	_, _, err := st.BillingWrite(ctx, billing.Idempotency{}, func(tx billing.Tx) ([]byte, error) {
		a, err := tx.Account(ctx, acct)
		if err != nil {
			return nil, err
		}
		pl, err := tx.Plan(ctx, plan)
		if err != nil {
			return nil, err
		}
		saleID := fmt.Sprintf("sale-%d", time.Now().UnixNano())
		if p, err = billing.SalePosting(a, pl, saleID, svc.Now()); err != nil {
			return nil, err
		}
		if err := tx.Post(ctx, p); err != nil {
			return nil, err
		}
		return []byte("{}"), tx.InsertSale(ctx, &billing.Sale{ID: saleID, AccountID: a.ID, PlanID: pl.ID, NewDevice: true, Price: pl.Price, Currency: pl.Currency, PostingID: p.ID, Created: svc.Now()})
	})
	ok(t, err, "sell "+plan)
	return p
}

func testBillingBalance(t *testing.T, st PaygStore) {
	ctx := t.Context()
	svc, _ := seedBilling(t, st)
	sell(t, st, svc, "acct", "week")
	sell(t, st, svc, "acct", "hour")
	pay, _, err := svc.Pay(ctx, billing.KindPayment, billing.MoneyRequest{Account: "acct", Amount: "550", Currency: "EUR", Reference: "pi_1"}, "")
	ok(t, err, "payment")
	_, _, err = svc.Pay(ctx, billing.KindRefund, billing.MoneyRequest{Account: "acct", Amount: "20", Currency: "EUR"}, "")
	ok(t, err, "refund")
	_, _, err = svc.Reverse(ctx, billing.ReversalRequest{Posting: pay.ID}, "")
	ok(t, err, "reversal")
	// 500 + 100 - 550 + 20 + 550
	if got := balance(t, st, "acct"); got != 620 {
		t.Errorf("balance %d, want 620", got)
	}
	ps, err := st.Postings(ctx, "acct")
	ok(t, err, "postings")
	if len(ps) != 5 {
		t.Fatalf("%d postings, want 5", len(ps))
	}
	var sum, all int64
	for _, p := range ps {
		ok(t, p.Balanced(), "posting "+p.ID+" balances")
		for _, l := range p.Lines {
			all += l.Amount
			if l.AccountID == "acct" {
				sum += l.Amount
			}
		}
	}
	if sum != 620 || all != 0 {
		t.Errorf("sum of the account's lines %d (want 620), of all lines %d (want 0)", sum, all)
	}
	if ps[4].Kind != billing.KindReversal || ps[4].Reverses != pay.ID || ps[4].Lines[0].Amount != 550 {
		t.Errorf("reversal: %+v", ps[4])
	}
	all2, err := st.Accounts(ctx, "")
	ok(t, err, "accounts")
	if all2[0].Balance != 620 {
		t.Errorf("listed balance %d, want 620", all2[0].Balance)
	}
}

func testBillingIdempotency(t *testing.T, st PaygStore) {
	ctx := t.Context()
	svc, _ := seedBilling(t, st)
	req := billing.MoneyRequest{Account: "acct", Amount: "300", Currency: "EUR", Reference: "pi_2"}
	p1, replayed, err := svc.Pay(ctx, billing.KindPayment, req, "key-1")
	ok(t, err, "first payment")
	if replayed {
		t.Error("first payment replayed")
	}
	p2, replayed, err := svc.Pay(ctx, billing.KindPayment, req, "key-1")
	ok(t, err, "retried payment")
	if !replayed || p2.ID != p1.ID {
		t.Errorf("retry: replayed %v, posting %s, want the first (%s)", replayed, p2.ID, p1.ID)
	}
	if got := balance(t, st, "acct"); got != -300 {
		t.Errorf("balance %d after a retried payment, want -300 (one posting)", got)
	}
	req.Amount = "301"
	_, _, err = svc.Pay(ctx, billing.KindPayment, req, "key-1")
	wantKind(t, err, errs.Conflict, "same key, another amount")
	_, _, err = svc.Pay(ctx, billing.KindRefund, billing.MoneyRequest{Account: "acct", Amount: "300", Currency: "EUR", Reference: "pi_2"}, "key-1")
	wantKind(t, err, errs.Conflict, "same key, another operation")
	// A write that fails leaves no record: the key may be used again.
	_, _, err = svc.Pay(ctx, billing.KindPayment, billing.MoneyRequest{Account: "nope", Amount: "1", Currency: "EUR"}, "key-2")
	wantKind(t, err, errs.NotFound, "payment to a missing account")
	_, _, err = svc.Pay(ctx, billing.KindPayment, billing.MoneyRequest{Account: "acct", Amount: "1", Currency: "EUR"}, "key-2")
	ok(t, err, "key of a failed write used again")
	ps, _ := st.Postings(ctx, "acct")
	if len(ps) != 2 {
		t.Errorf("%d postings, want 2", len(ps))
	}
}

func testBillingIdempotencyConcurrent(t *testing.T, st PaygStore) {
	ctx := t.Context()
	svc, _ := seedBilling(t, st)
	const n = 20
	ids := make([]string, n)
	errList := make([]error, n)
	run(n, func(i int) {
		p, _, err := svc.Pay(ctx, billing.KindPayment, billing.MoneyRequest{Account: "acct", Amount: "7", Currency: "EUR"}, "same-key")
		errList[i] = err
		if err == nil {
			ids[i] = p.ID
		}
	})
	for i, err := range errList {
		ok(t, err, fmt.Sprintf("concurrent payment %d", i))
		if ids[i] != ids[0] {
			t.Errorf("payment %d got posting %s, the first %s", i, ids[i], ids[0])
		}
	}
	if got := balance(t, st, "acct"); got != -7 {
		t.Errorf("balance %d after %d concurrent retries, want -7", got, n)
	}
}

func testBillingUnbalanced(t *testing.T, st PaygStore) {
	ctx := t.Context()
	seedBilling(t, st)
	_, _, err := st.BillingWrite(ctx, billing.Idempotency{}, func(tx billing.Tx) ([]byte, error) {
		return nil, tx.Post(ctx, &billing.Posting{ID: "post-bad", Kind: billing.KindPayment, AccountID: "acct", Created: t0,
			Lines: []billing.Line{{Ledger: billing.Receivable("acct"), AccountID: "acct", Amount: -5, Currency: "EUR"}, {Ledger: billing.LedgerCash, Amount: 4, Currency: "EUR"}}})
	})
	if err == nil {
		t.Fatal("an unbalanced posting was stored")
	}
	if got := balance(t, st, "acct"); got != 0 {
		t.Errorf("balance %d after a refused posting, want 0", got)
	}
}

func testBillingReverseOnce(t *testing.T, st PaygStore) {
	ctx := t.Context()
	svc, _ := seedBilling(t, st)
	p := sell(t, st, svc, "acct", "week")
	r, _, err := svc.Reverse(ctx, billing.ReversalRequest{Posting: p.ID}, "")
	ok(t, err, "reverse")
	_, _, err = svc.Reverse(ctx, billing.ReversalRequest{Posting: p.ID}, "")
	wantKind(t, err, errs.Conflict, "reverse twice")
	_, _, err = svc.Reverse(ctx, billing.ReversalRequest{Posting: r.ID}, "")
	wantKind(t, err, errs.Conflict, "reverse a reversal")
	_, _, err = svc.Reverse(ctx, billing.ReversalRequest{Posting: "post-none"}, "")
	wantKind(t, err, errs.NotFound, "reverse a missing posting")
	if got := balance(t, st, "acct"); got != 0 {
		t.Errorf("balance %d, want 0", got)
	}
}

func testBillingWebhooks(t *testing.T, st PaygStore) {
	ctx := t.Context()
	svc, clk := seedBilling(t, st)
	_, secret, err := svc.AddWebhook(ctx, "stripe")
	ok(t, err, "add webhook")
	_, _, err = svc.AddWebhook(ctx, "stripe")
	wantKind(t, err, errs.Conflict, "webhook name taken")
	body, _ := json.Marshal(map[string]any{"id": "evt_1", "type": "payment", "account": "acct", "amount": 250, "currency": "EUR"})
	ans, err := svc.Deliver(ctx, "stripe", billing.SignWebhook(secret, clk.Now(), body), body)
	ok(t, err, "deliver")
	if ans.Replayed || ans.Posting.Kind != billing.KindPayment {
		t.Errorf("first delivery: %+v", ans)
	}
	clk.Add(time.Minute) // the processor redelivers, signed anew
	again, err := svc.Deliver(ctx, "stripe", billing.SignWebhook(secret, clk.Now(), body), body)
	ok(t, err, "redeliver")
	if !again.Replayed || again.Posting.ID != ans.Posting.ID {
		t.Errorf("redelivery: %+v", again)
	}
	if got := balance(t, st, "acct"); got != -250 {
		t.Errorf("balance %d after a redelivery, want -250", got)
	}
	_, err = svc.Deliver(ctx, "stripe", billing.SignWebhook("whsec_wrong", clk.Now(), body), body)
	wantKind(t, err, errs.Unauthenticated, "wrong secret")
	_, err = svc.Deliver(ctx, "stripe", billing.SignWebhook(secret, clk.Since(6*time.Minute), body), body)
	wantKind(t, err, errs.Unauthenticated, "stale signature")
	_, err = svc.Deliver(ctx, "nope", billing.SignWebhook(secret, clk.Now(), body), body)
	wantKind(t, err, errs.NotFound, "unknown endpoint")
}

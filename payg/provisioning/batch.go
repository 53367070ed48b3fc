package provisioning

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/ids"
	"github.com/licet/licet/payg/billing"
)

// MaxBatch is the most devices one batch sale may name.
const MaxBatch = 100_000

// BatchRequest is a batch sale: one plan sold to each of a list of
// registered devices of one account (a vendor's monthly run).
type BatchRequest struct {
	Account string   `json:"account"`
	Plan    string   `json:"plan"`
	Devices []string `json:"devices"`
}

// BatchSale is one sale of a batch.
type BatchSale struct {
	Device   string `json:"device"`
	Sale     string `json:"sale"`
	Sequence uint64 `json:"sequence"`
}

// BatchAnswer lists a batch's sales. The packets are not in the answer
// (a batch of 10,000 devices would make an answer of megabytes, kept
// under its idempotency key): devices fetch them by sync, and
// 'licet vendor device packet export' writes them to files.
type BatchAnswer struct {
	Account string      `json:"account"`
	Plan    string      `json:"plan"`
	Sales   []BatchSale `json:"sales"`
}

// SellBatch sells plan to every device of req in ONE transaction: for each
// device a sale, its ledger posting and its one packet, exactly as Sell
// records them; if any device fails (unknown, of another account, listed
// twice) nothing is recorded. The packets are made before the transaction
// on every core, for the sequence each device will most likely get (a
// device that got a packet in between gets its packet remade inside).
// idemKey makes a retry return the first answer.
func (s *Service) SellBatch(ctx context.Context, req BatchRequest, idemKey string) (*BatchAnswer, bool, error) {
	switch {
	case req.Account == "":
		return nil, false, errs.E(errs.Invalid, "account is required (--account)")
	case req.Plan == "":
		return nil, false, errs.E(errs.Invalid, "plan is required (--plan)")
	case len(req.Devices) == 0:
		return nil, false, errs.E(errs.Invalid, "devices is empty: name at least one registered device")
	case len(req.Devices) > MaxBatch:
		return nil, false, errs.E(errs.Invalid, "devices lists %d devices; a batch sells to at most %d: split it", len(req.Devices), MaxBatch)
	}
	seen := make(map[string]bool, len(req.Devices))
	for i, d := range req.Devices {
		if d == "" {
			return nil, false, errs.E(errs.Invalid, "devices[%d] is empty", i)
		}
		if seen[d] {
			return nil, false, errs.E(errs.Invalid, "devices lists %s twice; a batch sells one plan once to each device (sell again for more)", d)
		}
		seen[d] = true
	}
	idem, err := billing.NewIdempotency(idemKey, "sale-batch", req)
	if err != nil {
		return nil, false, err
	}
	now := s.Now().UTC()
	saleIDs := make([]string, len(req.Devices))
	for i := range saleIDs {
		saleIDs[i] = ids.New("sale")
	}
	pre := s.prebuildBatch(ctx, req, saleIDs, now)
	var out BatchAnswer
	replayed, err := s.write(ctx, idem, &out, func(tx Tx) (any, error) {
		a, err := tx.Account(ctx, req.Account)
		if err != nil {
			return nil, err
		}
		plan, err := tx.Plan(ctx, req.Plan)
		if err != nil {
			return nil, err
		}
		ans := &BatchAnswer{Account: a.ID, Plan: plan.ID, Sales: make([]BatchSale, 0, len(req.Devices))}
		for i, id := range req.Devices {
			dev, err := tx.Device(ctx, id)
			if err != nil {
				return nil, errs.Wrap(errs.KindOf(err), err, "devices[%d]", i)
			}
			if dev.AccountID != a.ID {
				return nil, errs.E(errs.Conflict, "devices[%d]: %s belongs to account %s, not %s; sell to each device's own account", i, dev.ID, dev.AccountID, a.ID)
			}
			sale := &billing.Sale{ID: saleIDs[i], AccountID: a.ID, PlanID: plan.ID, DeviceID: dev.ID, Price: plan.Price, Currency: plan.Currency, Created: now}
			p, err := billing.SalePosting(a, plan, sale.ID, now)
			if err != nil {
				return nil, err
			}
			sale.PostingID = p.ID
			if err := tx.Post(ctx, p); err != nil {
				return nil, err
			}
			if err := tx.InsertSale(ctx, sale); err != nil {
				return nil, err
			}
			sp, err := s.appendPacket(ctx, tx, dev, plan, sale.ID, now, pre[i])
			if err != nil {
				return nil, err
			}
			ans.Sales = append(ans.Sales, BatchSale{Device: dev.ID, Sale: sale.ID, Sequence: sp.Sequence})
		}
		return ans, nil
	})
	if err != nil {
		return nil, false, err
	}
	return &out, replayed, nil
}

// prebuildBatch prebuilds the packets of a batch on every core; an entry
// is nil where prebuilding failed (the transaction then makes it or
// reports why).
func (s *Service) prebuildBatch(ctx context.Context, req BatchRequest, saleIDs []string, now time.Time) []*prebuilt {
	pre := make([]*prebuilt, len(req.Devices))
	workers := min(runtime.GOMAXPROCS(0), len(req.Devices))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(req.Devices); i += workers {
				if ctx.Err() != nil {
					return
				}
				pre[i] = s.prebuild(ctx, SellRequest{Account: req.Account, Plan: req.Plan, Device: req.Devices[i]}, saleIDs[i], now)
			}
		})
	}
	wg.Wait()
	return pre
}

package provisioning

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/ids"
	"github.com/licet/licet/payg/billing"
)

// MaxBatch is the most sales one batch may hold.
const MaxBatch = 100_000

// BatchItem is one sale of a batch: a plan sold to a registered device of
// an account.
type BatchItem struct {
	Account string `json:"account"`
	Plan    string `json:"plan"`
	Device  string `json:"device"`
}

// BatchRequest is the body of POST /v1/payg/sales/batch: sales of credit
// to registered devices (a vendor's monthly run), each device at most once.
type BatchRequest struct {
	Sales []BatchItem `json:"sales"`
}

// BatchSale is one sale of a batch as recorded.
type BatchSale struct {
	Account  string `json:"account"`
	Plan     string `json:"plan"`
	Device   string `json:"device"`
	Sale     string `json:"sale"`
	Sequence uint64 `json:"sequence"`
}

// BatchAnswer lists a batch's sales, in the order of the request. The
// packets are not in the answer (a batch of 10,000 devices would make an
// answer of megabytes, kept under its idempotency key): devices fetch them
// by sync, and 'licet vendor device packet export' writes them to files.
type BatchAnswer struct {
	Sales []BatchSale `json:"sales"`
}

// check refuses a malformed batch before any work, naming the sale.
func (req BatchRequest) check() error {
	switch {
	case len(req.Sales) == 0:
		return errs.E(errs.Invalid, "sales is empty: list at least one sale of a plan to a registered device")
	case len(req.Sales) > MaxBatch:
		return errs.E(errs.Invalid, "sales lists %d sales; a batch holds at most %d: split it", len(req.Sales), MaxBatch)
	}
	seen := make(map[string]int, len(req.Sales))
	for i, it := range req.Sales {
		switch {
		case it.Account == "":
			return errs.E(errs.Invalid, "sales[%d]: account is required", i)
		case it.Plan == "":
			return errs.E(errs.Invalid, "sales[%d]: plan is required", i)
		case it.Device == "":
			return errs.E(errs.Invalid, "sales[%d]: device is required (a registered device; sell new devices one at a time with new_device)", i)
		}
		if j, dup := seen[it.Device]; dup {
			return errs.E(errs.Invalid, "sales[%d]: device %s is listed twice (first at sales[%d]); a batch sells to each device once: sell again in another batch", i, it.Device, j)
		}
		seen[it.Device] = i
	}
	return nil
}

// SellBatch records every sale of req in ONE transaction: for each a sale,
// its ledger posting and its one packet, exactly as Sell records them; if
// any sale fails (an unknown account, plan or device, a device of another
// account, a device listed twice) nothing is recorded. The packets are made
// before the transaction on every core, for the sequence each device will
// most likely get (a device that got a packet in between gets its packet
// remade inside). A store with the batch capabilities (BatchStore,
// BatchTx) writes the batch in a few multi-row statements. idemKey makes a
// retry return the first answer.
func (s *Service) SellBatch(ctx context.Context, req BatchRequest, idemKey string) (*BatchAnswer, bool, error) {
	if err := req.check(); err != nil {
		return nil, false, err
	}
	idem, err := billing.NewIdempotency(idemKey, "sale-batch", req)
	if err != nil {
		return nil, false, err
	}
	now := s.Now().UTC()
	saleIDs := batchIDs("sale", len(req.Sales))
	pctx, stop := context.WithCancel(ctx)
	defer stop() // a batch that failed or replayed needs no more packets
	pre := s.prebuildBatch(pctx, req.Sales, saleIDs, now)
	var out BatchAnswer
	replayed, err := s.write(ctx, idem, &out, func(tx Tx) (any, error) {
		return s.sellBatch(ctx, tx, req.Sales, saleIDs, pre, now)
	})
	if err != nil {
		return nil, false, err
	}
	return &out, replayed, nil
}

// batchIDs returns n new IDs of prefix for the rows of one batch, of the
// form of ids.New's (16 hex digits): 48 random bits shared by up to 65,536
// of them, then a counter, so that a batch's rows are neighbours in the
// indexes on their IDs and the batch writes a run of index pages instead
// of a page per row. A clash with an earlier batch (two equal random
// parts) fails the batch on its unique key, storing nothing.
func batchIDs(prefix string, n int) []string {
	out := make([]string, n)
	var r []byte
	for i := range out {
		if i%(1<<16) == 0 {
			r = ids.Random(6)
		}
		out[i] = fmt.Sprintf("%s-%x%04x", prefix, r, i%(1<<16))
	}
	return out
}

// batchKey names an account and a plan: the posting of a sale depends on
// nothing else.
type batchKey struct{ account, plan string }

// sellBatch is SellBatch's transaction. With BatchTx it allocates the
// sequences and stores the postings and sales while the packets are still
// being made on the other cores, then stores the packets a part at a time
// as they are ready.
func (s *Service) sellBatch(ctx context.Context, tx Tx, items []BatchItem, saleIDs []string, pre *prebuiltBatch, now time.Time) (*BatchAnswer, error) {
	// Accounts, plans and the posting of each pair: read and checked once.
	accounts := map[string]*billing.Account{}
	plans := map[string]*billing.Plan{}
	postings := map[batchKey]*billing.Posting{}
	devIDs := make([]string, len(items))
	for i, it := range items {
		devIDs[i] = it.Device
		k := batchKey{it.Account, it.Plan}
		if postings[k] != nil {
			continue
		}
		a, err := cached(accounts, it.Account, func() (*billing.Account, error) { return tx.Account(ctx, it.Account) })
		if err != nil {
			return nil, errs.Wrap(errs.KindOf(err), err, "sales[%d]", i)
		}
		plan, err := cached(plans, it.Plan, func() (*billing.Plan, error) { return tx.Plan(ctx, it.Plan) })
		if err != nil {
			return nil, errs.Wrap(errs.KindOf(err), err, "sales[%d]", i)
		}
		if postings[k], err = billing.SalePosting(a, plan, "", now); err != nil {
			return nil, errs.Wrap(errs.KindOf(err), err, "sales[%d]", i)
		}
	}
	bt, multi := tx.(BatchTx)
	var allocs map[string]Allocated
	var known map[string]*Device
	if multi {
		var err error
		if allocs, err = bt.NextSequences(ctx, devIDs); err != nil {
			return nil, err
		}
		known = pre.devices()
	}
	ans := &BatchAnswer{Sales: make([]BatchSale, len(items))}
	postIDs := batchIDs("post", len(items))
	ps, sales := make([]*billing.Posting, len(items)), make([]*billing.Sale, len(items))
	batchDevs := make([]*Device, len(items))
	for i, it := range items {
		dev, err := batchDevice(ctx, tx, it.Device, multi, allocs, known)
		if err != nil {
			return nil, errs.Wrap(errs.KindOf(err), err, "sales[%d]", i)
		}
		switch {
		case dev == nil:
			return nil, errs.E(errs.NotFound, "sales[%d]: device %q is not registered; see 'licet vendor device list' (nothing of the batch is stored)", i, it.Device)
		case dev.AccountID != it.Account:
			return nil, errs.E(errs.Conflict, "sales[%d]: device %s belongs to account %s, not %s; sell to each device's own account (nothing of the batch is stored)", i, dev.ID, dev.AccountID, it.Account)
		}
		plan, tmpl := plans[it.Plan], postings[batchKey{it.Account, it.Plan}]
		p := &billing.Posting{ID: postIDs[i], Kind: tmpl.Kind, AccountID: tmpl.AccountID, Reference: saleIDs[i], Created: now, Lines: tmpl.Lines}
		ps[i] = p
		sales[i] = &billing.Sale{ID: saleIDs[i], AccountID: it.Account, PlanID: plan.ID, DeviceID: dev.ID, Price: plan.Price, Currency: plan.Currency, PostingID: p.ID, Created: now}
		batchDevs[i] = dev
		ans.Sales[i] = BatchSale{Account: it.Account, Plan: plan.ID, Device: dev.ID, Sale: saleIDs[i], Sequence: dev.LastSequence}
	}
	if !multi {
		for i, sale := range sales {
			sp, err := s.storeSale(ctx, tx, batchDevs[i], plans[sale.PlanID], ps[i], sale, pre.get(i))
			if err != nil {
				return nil, errs.Wrap(errs.KindOf(err), err, "sales[%d]", i)
			}
			ans.Sales[i].Sequence = sp.Sequence
		}
		return ans, nil
	}
	if err := bt.InsertSales(ctx, ps, sales); err != nil {
		return nil, err
	}
	for lo := 0; lo < len(items); lo += prebuildPart {
		hi := min(lo+prebuildPart, len(items))
		packets := make([]*StoredPacket, 0, hi-lo)
		for i := lo; i < hi; i++ {
			sp, err := s.packetOf(batchDevs[i], batchDevs[i].LastSequence, plans[items[i].Plan], saleIDs[i], now, pre.get(i))
			if err != nil {
				return nil, errs.Wrap(errs.KindOf(err), err, "sales[%d]", i)
			}
			packets = append(packets, sp)
		}
		if err := bt.InsertPackets(ctx, packets); err != nil {
			return nil, err
		}
	}
	return ans, nil
}

// batchDevice returns the device of a batch sale, nil if it is not
// registered. With BatchTx (multi), the sequence was allocated (allocs),
// and the device as read before the transaction (known) is taken if its
// keys have not changed since: then nothing more is read. Otherwise the
// device is read in tx.
func batchDevice(ctx context.Context, tx Tx, id string, multi bool, allocs map[string]Allocated, known map[string]*Device) (*Device, error) {
	a, ok := allocs[id]
	if multi && !ok {
		return nil, nil
	}
	if d := known[id]; multi && d != nil && d.KeysVersion == a.KeysVersion {
		dev := *d // the packet makers still read d
		dev.LastSequence = a.Sequence
		return &dev, nil
	}
	dev, err := tx.Device(ctx, id)
	if errs.Is(err, errs.NotFound) {
		return nil, nil
	}
	return dev, err
}

// storeSale stores one sale of a batch with its posting and packet, a
// statement at a time (a Tx without BatchTx).
func (s *Service) storeSale(ctx context.Context, tx Tx, dev *Device, plan *billing.Plan, p *billing.Posting, sale *billing.Sale, pre *prebuilt) (*StoredPacket, error) {
	if err := tx.Post(ctx, p); err != nil {
		return nil, err
	}
	if err := tx.InsertSale(ctx, sale); err != nil {
		return nil, err
	}
	return s.appendPacket(ctx, tx, dev, plan, sale.ID, sale.Created, pre)
}

// cached returns m[id], reading it with read on a miss.
func cached[T any](m map[string]*T, id string, read func() (*T, error)) (*T, error) {
	if v := m[id]; v != nil {
		return v, nil
	}
	v, err := read()
	if err == nil {
		m[id] = v
	}
	return v, err
}

// prebuildPart is how many packets of a batch the transaction waits for at
// a time: it stores each part while the next is being made.
const prebuildPart = 512

// prebuiltBatch is the packets of a batch, made in the background.
type prebuiltBatch struct {
	pre  []*prebuilt
	done []chan struct{} // done[k] is closed when part k is made
	left []atomic.Int32  // packets of each part still being made
	read chan struct{}   // closed when devs is read
	devs map[string]*Device
}

// devices waits until the devices of the batch are read (BatchStore's
// PaygDeviceKeys) and returns them: nil if the store cannot, or failed.
// The caller must not change them: the packet makers read them.
func (b *prebuiltBatch) devices() map[string]*Device {
	<-b.read
	return b.devs
}

// get waits until the packet of sale i is made (or given up), and returns
// it: nil if it could not be made ahead.
func (b *prebuiltBatch) get(i int) *prebuilt {
	<-b.done[i/prebuildPart]
	return b.pre[i]
}

// prebuildBatch starts making the packets of a batch in the background,
// in order, and returns at once; an entry is nil where prebuilding failed
// or ctx ended (the transaction then makes it or reports why). The devices
// are read first, in few statements if the store can (BatchStore), while
// the transaction starts; the workers need no database after that. They
// leave one core to the transaction, which is the serial part.
func (s *Service) prebuildBatch(ctx context.Context, items []BatchItem, saleIDs []string, now time.Time) *prebuiltBatch {
	parts := (len(items) + prebuildPart - 1) / prebuildPart
	b := &prebuiltBatch{pre: make([]*prebuilt, len(items)), done: make([]chan struct{}, parts), left: make([]atomic.Int32, parts), read: make(chan struct{})}
	for k := range parts {
		b.done[k] = make(chan struct{})
		b.left[k].Store(int32(min(prebuildPart, len(items)-k*prebuildPart)))
	}
	go func() {
		plans := map[string]*billing.Plan{}
		for _, it := range items {
			if _, ok := plans[it.Plan]; !ok {
				plans[it.Plan] = s.plan(ctx, it.Plan)
			}
		}
		if bs, ok := s.Store.(BatchStore); ok {
			devIDs := make([]string, len(items))
			for i, it := range items {
				devIDs[i] = it.Device
			}
			b.devs, _ = bs.PaygDeviceKeys(ctx, devIDs) // on an error the transaction reads them and says why
		}
		close(b.read)
		var next atomic.Int64
		for range min(max(runtime.GOMAXPROCS(0)-1, 1), len(items)) {
			go func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= len(items) {
						return
					}
					if ctx.Err() == nil {
						it := items[i]
						if b.devs != nil {
							b.pre[i] = s.prebuildFor(b.devs[it.Device], plans[it.Plan], it.Account, saleIDs[i], now)
						} else {
							b.pre[i] = s.prebuild(ctx, SellRequest{Account: it.Account, Plan: it.Plan, Device: it.Device}, saleIDs[i], now)
						}
					}
					if k := i / prebuildPart; b.left[k].Add(-1) == 0 {
						close(b.done[k])
					}
				}
			}()
		}
	}()
	return b
}

package api

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/verify"
)

// SeatMetricsMaxAge is how old the seat figures of a site's /metrics may
// be: they are read from the store at a scrape, so they are exact across
// every process serving the site, and a scrape within this time of the last
// one gets the same figures (scrapes cost at most one read of the packs a
// second).
const SeatMetricsMaxAge = time.Second

// productsMaxAge is how old the product names the counters accept as labels
// may be (a pack installed since shows as otherProduct for that long).
const productsMaxAge = 10 * time.Second

// otherProduct is the product label of a request for a product no installed
// pack holds (no product ID starts with "_"): a client names the product, so
// labels are limited to the products of installed packs (a bounded set) to
// keep /metrics bounded.
const otherProduct = "_other"

// siteMetrics are the licensing figures of a site's /metrics: seats and
// temporary licenses per pack and product (gauges, from the store), grants,
// challenges and upgrade exchanges by outcome (counters of this process),
// and the challenge pools.
type siteMetrics struct {
	srv        *licenseserver.Server
	grants     *prometheus.CounterVec
	challenges *prometheus.CounterVec
	upgrades   *prometheus.CounterVec
	scrape     *packCache // for the gauges
	labels     *packCache // for the product labels of the counters
}

// packCache holds the installed packs as read from the store, for maxAge.
type packCache struct {
	store   licenseserver.Store
	log     *slog.Logger
	maxAge  time.Duration
	refresh sync.Mutex // held while reading the store
	snap    atomic.Pointer[packSnapshot]
}

// packSnapshot is the packs as read from the store at one time.
type packSnapshot struct {
	at       time.Time
	packs    []*licenseserver.InstalledPack
	products map[string]bool
}

// get returns the packs as read from the store within maxAge, reading them
// again if older; nil if the store cannot be read. While another caller
// reads them, it returns the older packs rather than wait, if it has any.
func (c *packCache) get() *packSnapshot {
	old := c.snap.Load()
	if old != nil && time.Since(old.at) < c.maxAge {
		return old
	}
	if !c.refresh.TryLock() {
		if old != nil {
			return old
		}
		c.refresh.Lock()
	}
	defer c.refresh.Unlock()
	if s := c.snap.Load(); s != nil && time.Since(s.at) < c.maxAge {
		return s
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ps, err := c.store.Packs(ctx)
	if err != nil {
		c.log.Warn("metrics: the installed packs could not be read", "err", err)
		return nil
	}
	s := &packSnapshot{at: time.Now(), packs: ps, products: map[string]bool{}}
	for _, p := range ps {
		s.products[p.ProductID] = true
	}
	c.snap.Store(s)
	return s
}

var (
	seatsAssignedDesc = prometheus.NewDesc("licet_seats_assigned", "Seats assigned, by pack and product (kind seats, or upgrade for upgrade packs). Read from the store: exact across the site's processes.",
		[]string{"pack_id", "product", "platform", "kind"}, nil)
	seatsFreeDesc = prometheus.NewDesc("licet_seats_free", "Seats not assigned, by pack and product (kind seats, or upgrade for upgrade packs). Read from the store: exact across the site's processes.",
		[]string{"pack_id", "product", "platform", "kind"}, nil)
	temporaryIssuedDesc = prometheus.NewDesc("licet_temporary_licenses_issued", "Temporary licenses issued on a pack's allowance, by pack and product (from the store).",
		[]string{"pack_id", "product", "platform"}, nil)
	temporaryAllowedDesc = prometheus.NewDesc("licet_temporary_licenses_allowed", "Temporary licenses a pack's statement allows, by pack and product.",
		[]string{"pack_id", "product", "platform"}, nil)
	seatMetricsUpDesc = prometheus.NewDesc("licet_seat_metrics_up", "1 if the seat figures could be read from the store at this scrape, 0 if not (they are then left out).", nil, nil)
)

func newSiteMetrics(srv *licenseserver.Server, log *slog.Logger, reg *prometheus.Registry) *siteMetrics {
	m := &siteMetrics{srv: srv,
		scrape: &packCache{store: srv.Store, log: log, maxAge: SeatMetricsMaxAge},
		labels: &packCache{store: srv.Store, log: log, maxAge: productsMaxAge},
		grants: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "licet_grants_total",
			Help: "License requests (POST /v1/licenses) answered by this process, by product and outcome: granted (a new seat), " +
				"reissued (the client's license again), temporary (a new temporary license) or refused, with the reason of a refusal."},
			[]string{"product", "outcome", "reason"}),
		challenges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "licet_challenges_total",
			Help: "Challenge requests (POST /v1/challenges) answered by this process, by product and outcome: handed (a precomputed challenge) or refused, with the reason."},
			[]string{"product", "outcome", "reason"}),
		upgrades: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "licet_upgrades_total",
			Help: "Upgrade exchanges (POST /v1/upgrades) answered by this process, by product and outcome: upgraded (an upgrade seat taken), " +
				"repeated (upgraded before, no seat taken) or refused, with the reason."},
			[]string{"product", "outcome", "reason"}),
	}
	reg.MustRegister(m.grants, m.challenges, m.upgrades, m, poolCollector{srv})
	return m
}

// product is the label of a product a client named: itself if a pack
// holds it, otherProduct if not.
func (m *siteMetrics) product(id string) string {
	if s := m.labels.get(); s != nil && s.products[id] {
		return id
	}
	return otherProduct
}

// grant counts the outcome of a license request.
func (m *siteMetrics) grant(product string, g *licenseserver.Grant, err error) {
	outcome, reason := "granted", ""
	switch {
	case err != nil:
		outcome, reason = "refused", licenseserver.RefusalReason(err)
	case g.Reissued:
		outcome = "reissued"
	case g.Assignment.Temporary:
		outcome = "temporary"
	}
	m.grants.WithLabelValues(m.product(product), outcome, reason).Inc()
}

// challenge counts the outcome of a challenge request.
func (m *siteMetrics) challenge(product string, err error) {
	outcome, reason := "handed", ""
	if err != nil {
		outcome, reason = "refused", licenseserver.RefusalReason(err)
	}
	m.challenges.WithLabelValues(m.product(product), outcome, reason).Inc()
}

// upgrade counts the outcome of an upgrade exchange of licensePEM.
func (m *siteMetrics) upgrade(licensePEM []byte, u *licenseserver.Upgraded, err error) {
	if err == nil {
		outcome := "upgraded"
		if u.Repeated {
			outcome = "repeated"
		}
		m.upgrades.WithLabelValues(m.product(u.Assignment.ProductID), outcome, "").Inc()
		return
	}
	product := otherProduct
	if v, verr := m.srv.Verifier(); verr == nil {
		if lic, lerr := v.Verify(licensePEM, verify.Options{Now: m.srv.Now(), AllowExpired: true, AllowUnbound: true}); lerr == nil {
			product = m.product(lic.ProductID)
		}
	}
	m.upgrades.WithLabelValues(product, "refused", licenseserver.RefusalReason(err)).Inc()
}

// Describe implements prometheus.Collector.
func (m *siteMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{seatsAssignedDesc, seatsFreeDesc, temporaryIssuedDesc, temporaryAllowedDesc, seatMetricsUpDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the seat gauges, from the store.
func (m *siteMetrics) Collect(ch chan<- prometheus.Metric) {
	s := m.scrape.get()
	if s == nil {
		ch <- prometheus.MustNewConstMetric(seatMetricsUpDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(seatMetricsUpDesc, prometheus.GaugeValue, 1)
	for _, p := range s.packs {
		kind := "seats"
		if p.Upgrade != nil {
			kind = "upgrade"
		}
		ch <- prometheus.MustNewConstMetric(seatsAssignedDesc, prometheus.GaugeValue, float64(p.Assigned), p.PackID, p.ProductID, p.Platform, kind)
		ch <- prometheus.MustNewConstMetric(seatsFreeDesc, prometheus.GaugeValue, float64(p.Free()), p.PackID, p.ProductID, p.Platform, kind)
		if p.Upgrade == nil {
			ch <- prometheus.MustNewConstMetric(temporaryIssuedDesc, prometheus.GaugeValue, float64(p.TemporaryAssigned), p.PackID, p.ProductID, p.Platform)
			ch <- prometheus.MustNewConstMetric(temporaryAllowedDesc, prometheus.GaugeValue, float64(p.TemporaryCount), p.PackID, p.ProductID, p.Platform)
		}
	}
}

package api

import (
	"context"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/licet/licet/licensing/licenseserver"
)

// packsOnly is a site store that answers Packs only.
type packsOnly struct {
	licenseserver.Store
	packs []*licenseserver.InstalledPack
}

func (p packsOnly) Packs(context.Context) ([]*licenseserver.InstalledPack, error) {
	return p.packs, nil
}

// BenchmarkGrantMetrics is what /metrics adds to a grant: the product label
// checked against the installed packs, and the counter.
func BenchmarkGrantMetrics(b *testing.B) {
	st := packsOnly{packs: []*licenseserver.InstalledPack{{PackID: "pk-1", ProductID: "app", Quantity: 10}}}
	m := newSiteMetrics(&licenseserver.Server{Store: st}, slog.Default(), prometheus.NewRegistry())
	g := &licenseserver.Grant{Assignment: &licenseserver.Assignment{}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.grant("app", g, nil)
		}
	})
}

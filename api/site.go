package api

import (
	"encoding/pem"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/licet/licet/auth"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/verify"
)

// SiteInfo is the answer of GET /v1/site.
type SiteInfo struct {
	SiteID          string `json:"site_id"`
	Name            string `json:"name"`
	Certified       bool   `json:"certified"`
	CustomerID      string `json:"customer_id,omitempty"`
	RootFingerprint string `json:"root_fingerprint,omitempty"`
	VendorURL       string `json:"vendor_url,omitempty"`
	// CertificateExpires is the end of the site certificate; licenses the
	// site issues end by then ('licet site renew' renews it).
	CertificateExpires *time.Time `json:"certificate_expires,omitempty"`
}

// GrantResponse is the answer of POST /v1/licenses.
type GrantResponse struct {
	LicenseID int64  `json:"license_id"`
	Reissued  bool   `json:"reissued"`
	Temporary bool   `json:"temporary"` // granted from no pack, for a limited time
	License   string `json:"license"`   // armored LICENSE file, encrypted to the client
}

// UpgradeRequest is the body of POST /v1/upgrades.
type UpgradeRequest struct {
	License string `json:"license"` // the license to upgrade: PEM, license certificate then site certificate
}

// UpgradeResponse is the answer of POST /v1/upgrades.
type UpgradeResponse struct {
	LicenseID     int64  `json:"license_id"`
	UpgradedFrom  int64  `json:"upgraded_from"`
	UpgradePackID string `json:"upgrade_pack_id"`
	Repeated      bool   `json:"repeated"`     // upgraded before: the same license again, no seat taken
	License       string `json:"license"`      // armored LICENSE file, encrypted to the client
	Certificates  string `json:"certificates"` // the new license chain in PEM, for a gateway to check
}

// Info describes a site identity.
func Info(id *licenseserver.Identity) SiteInfo {
	info := SiteInfo{SiteID: id.SiteID, Name: id.Config.Name, Certified: id.Certified(), VendorURL: id.Config.VendorURL}
	if c := id.Certificate(); c != nil { // one snapshot: a renewal may swap it
		info.CustomerID = c.Site.CustomerID
		info.RootFingerprint = pki.Fingerprint(c.Root.Raw)
		end := c.Site.Cert.NotAfter.UTC()
		info.CertificateExpires = &end
	}
	return info
}

// VerifyResponse is the answer of POST /v1/licenses/verify for a valid license.
type VerifyResponse struct {
	verify.Attributes
	SiteID    string    `json:"site_id"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
}

// NewSiteHandler returns the site's HTTP API over srv.
func NewSiteHandler(srv *licenseserver.Server, log *slog.Logger, limits Limits) *Server {
	s := NewServer("site", log, limits, srv.Store)
	m := newSiteMetrics(srv, log, s.reg)
	s.Admin("GET /v1/site", func(w http.ResponseWriter, r *http.Request) error {
		writeJSON(w, http.StatusOK, Info(srv.ID))
		return nil
	})
	// The grant routes are public: a client proves itself with the platform
	// challenge and a signature by its key.
	s.Public("POST /v1/challenges", func(w http.ResponseWriter, r *http.Request) error {
		var req licenseserver.ChallengeRequest
		if err := readJSON(r, &req); err != nil {
			return err
		}
		ch, err := srv.NewChallenge(r.Context(), req)
		m.challenge(req.ProductID, err)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, ch)
		return nil
	})
	s.Public("POST /v1/licenses", func(w http.ResponseWriter, r *http.Request) error {
		var req licenseserver.GrantRequest
		if err := readJSON(r, &req); err != nil {
			return err
		}
		g, err := srv.Grant(r.Context(), &req)
		m.grant(req.ProductID, g, err)
		if err != nil {
			return err
		}
		writeGrant(w, g)
		return nil
	})
	// Upgrades need a gateway's token (scope upgrade): the gateway lets only a
	// client that proved it holds the license's key ask (docs/decisions.md).
	s.Scoped("POST /v1/upgrades", auth.ScopeUpgrade, func(w http.ResponseWriter, r *http.Request) error {
		var req UpgradeRequest
		if err := readJSON(r, &req); err != nil {
			return err
		}
		if req.License == "" {
			return errs.E(errs.Invalid, "license: the license to upgrade (PEM: license certificate, then site certificate) is required")
		}
		u, err := srv.Upgrade(r.Context(), []byte(req.License))
		m.upgrade([]byte(req.License), u, err)
		if err != nil {
			return err
		}
		a := u.Assignment
		writeJSON(w, http.StatusOK, UpgradeResponse{LicenseID: a.LicenseID, UpgradedFrom: a.UpgradedFrom, Repeated: u.Repeated,
			UpgradePackID: a.UpgradePackID, License: string(u.File), Certificates: string(u.License)})
		return nil
	})
	// What a gateway polls to forget a remembered upgrade failure when seats
	// were bought (gateway.SiteUpgradeSeats).
	s.Scoped("GET /v1/upgrades/seats", auth.ScopeUpgrade, func(w http.ResponseWriter, r *http.Request) error {
		v, err := srv.UpgradeSeatsVersion(r.Context())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]string{"version": v})
		return nil
	})
	s.Public("POST /v1/licenses/verify", func(w http.ResponseWriter, r *http.Request) error {
		verifier, err := srv.Verifier()
		if err != nil {
			return err
		}
		body, err := readBody(r)
		if err != nil {
			return err
		}
		lic, err := verifier.Verify(body, verify.Options{Now: srv.Now(), Product: r.URL.Query().Get("product")})
		if err != nil {
			return errs.Wrap(errs.Invalid, err, "license is not valid")
		}
		writeJSON(w, http.StatusOK, VerifyResponse{Attributes: lic.Attributes, SiteID: lic.SiteID, NotBefore: lic.NotBefore, NotAfter: lic.NotAfter})
		return nil
	})
	s.Public("GET /v1/root", func(w http.ResponseWriter, r *http.Request) error {
		if err := srv.ID.RequireCertified(); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, err := w.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.ID.Root().Raw}))
		return err
	})
	// The granted licenses, seats' and temporary ones, as 'licet site license
	// list --json' prints them (query: client, pack, kind).
	s.Admin("GET /v1/licenses", func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		ls, err := srv.Licenses(r.Context(), licenseserver.LicenseFilter{
			AssignmentFilter: licenseserver.AssignmentFilter{ClientID: q.Get("client"), PackID: q.Get("pack")}, Kind: q.Get("kind")})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, ls)
		return nil
	})
	s.Admin("GET /v1/report", func(w http.ResponseWriter, r *http.Request) error {
		days := 30
		if v := r.URL.Query().Get("expiring_within_days"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return errs.E(errs.Invalid, "expiring_within_days %q is not a number of days", v)
			}
			days = n
		}
		rep, err := srv.Report(r.Context(), time.Duration(days)*24*time.Hour)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, rep)
		return nil
	})
	s.Admin("GET /v1/packs", func(w http.ResponseWriter, r *http.Request) error {
		ps, err := srv.Store.Packs(r.Context())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, ps)
		return nil
	})
	s.Admin("POST /v1/packs", func(w http.ResponseWriter, r *http.Request) error {
		body, err := readBody(r)
		if err != nil {
			return err
		}
		p, err := srv.InstallPack(r.Context(), body)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, p)
		return nil
	})
	addDistributionSiteRoutes(s, srv)
	return s
}

// poolCollector exports the challenge pools of a site to /metrics.
type poolCollector struct{ srv *licenseserver.Server }

var (
	poolPairsDesc    = prometheus.NewDesc("licet_challenge_pool_pairs", "Precomputed challenges ready, by software ID.", []string{"software_id"}, nil)
	poolCapacityDesc = prometheus.NewDesc("licet_challenge_pool_capacity", "Size of the challenge pool, by software ID.", []string{"software_id"}, nil)
	poolComputedDesc = prometheus.NewDesc("licet_challenge_pool_computed_total", "Challenges precomputed (image hashed) since the start.", []string{"software_id"}, nil)
	poolHandedDesc   = prometheus.NewDesc("licet_challenge_pool_handed_total", "Challenges handed out since the start.", []string{"software_id"}, nil)
	poolEmptyDesc    = prometheus.NewDesc("licet_challenge_pool_empty_total", "Challenge requests answered 503 because the pool was empty.", []string{"software_id"}, nil)
)

// Describe implements prometheus.Collector.
func (poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolPairsDesc, poolCapacityDesc, poolComputedDesc, poolHandedDesc, poolEmptyDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.srv.PoolStats() {
		ch <- prometheus.MustNewConstMetric(poolPairsDesc, prometheus.GaugeValue, float64(p.Pairs), p.SoftwareID)
		ch <- prometheus.MustNewConstMetric(poolCapacityDesc, prometheus.GaugeValue, float64(p.Capacity), p.SoftwareID)
		ch <- prometheus.MustNewConstMetric(poolComputedDesc, prometheus.CounterValue, float64(p.Computed), p.SoftwareID)
		ch <- prometheus.MustNewConstMetric(poolHandedDesc, prometheus.CounterValue, float64(p.Handed), p.SoftwareID)
		ch <- prometheus.MustNewConstMetric(poolEmptyDesc, prometheus.CounterValue, float64(p.Empty), p.SoftwareID)
	}
}

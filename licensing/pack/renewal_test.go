package pack_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/pack"
	"github.com/licet/licet/pki"
)

// renewalFile is a renewal file of site s at time at, with its usage report.
func renewalFile(t testing.TB, s *site, at time.Time) []byte {
	t.Helper()
	r := &pack.UsageReport{SiteID: s.id, Created: at, Sequence: 1, Packs: []pack.UsagePack{}, Licenses: []pack.UsageLicense{}}
	report, hash := must2(pack.SignUsageReport(r, s.key, [][]byte{s.der}))
	return must(pack.NewRenewalFile(s.key, [][]byte{s.der}, report, hash, nil, at))
}

// TestRenewalExpiredCertificate: a renewal is read with a certificate
// valid now, or expired less than RenewalGrace ago (checked at its end);
// one that expired longer ago is refused, saying to enroll anew.
func TestRenewalExpiredCertificate(t *testing.T) {
	w := newWorld(t)
	file := renewalFile(t, w.a, now)
	for name, at := range map[string]time.Time{
		"valid":            now,
		"expired recently": now.Add(pki.SiteValidity + 24*time.Hour),
		"expired 364 days": now.Add(pki.SiteValidity + pack.RenewalGrace - 24*time.Hour),
	} {
		req, site, rf, err := pack.ReadRenewalFile(file, w.root.Cert, at)
		if err != nil || req.SiteID != w.a.id || site.SiteID != w.a.id || rf.UsageReport == "" {
			t.Errorf("%s: %+v %v", name, req, err)
		}
	}
	_, _, _, err := pack.ReadRenewalFile(file, w.root.Cert, now.Add(pki.SiteValidity+pack.RenewalGrace+24*time.Hour))
	if errs.KindOf(err) != errs.Forbidden {
		t.Fatalf("renewal more than a year after expiry: %v, want forbidden", err)
	}
}

// FuzzReadRenewalFile feeds arbitrary renewal files (the body of the public
// POST /v1/sites/renew) to ReadRenewalFile: it must not panic; a refused
// file is an error of kind Invalid or Forbidden; an accepted one is the
// request the test's site signed, naming its own site.
func FuzzReadRenewalFile(f *testing.F) {
	w := newWorld(f)
	valid := renewalFile(f, w.a, now)
	want, _, _, err := pack.ReadRenewalFile(valid, w.root.Cert, now)
	if err != nil {
		f.Fatalf("the valid seed is refused: %v", err)
	}
	f.Add(valid)
	f.Add(renewalFile(f, newSite(f, newRoot(f), "cust-x"), now)) // a site of another vendor
	var rf pack.RenewalFile
	if err := json.Unmarshal(valid, &rf); err != nil {
		f.Fatal(err)
	}
	other := renewalFile(f, w.b, now)
	var orf pack.RenewalFile
	json.Unmarshal(other, &orf)
	mixed, _ := json.Marshal(pack.RenewalFile{Renewal: rf.Renewal, UsageReport: orf.UsageReport})
	f.Add(mixed)
	f.Add(bytes.Replace(valid, []byte("Version: 1"), []byte("Version: 2"), 1))
	f.Add(valid[:len(valid)/2])
	f.Add([]byte(`{"renewal":"","usage_report":""}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		req, site, report, err := pack.ReadRenewalFile(data, w.root.Cert, now)
		if err != nil {
			if req != nil || site != nil || report != nil {
				t.Fatalf("ReadRenewalFile returned a request with the error %v", err)
			}
			if k := errs.KindOf(err); k != errs.Invalid && k != errs.Forbidden {
				t.Fatalf("ReadRenewalFile refused with an error of kind %s: %v", k, err)
			}
			return
		}
		if req.SiteID != site.SiteID || (site.SiteID != w.a.id && site.SiteID != w.b.id) {
			t.Fatalf("ReadRenewalFile accepted a request of site %s signed by %s", req.SiteID, site.SiteID)
		}
		if site.SiteID == w.a.id && (req.RequestID != want.RequestID || !bytes.Equal(req.UsageReport, want.UsageReport)) {
			t.Fatalf("ReadRenewalFile accepted a request site %s never signed: %+v", site.SiteID, req)
		}
	})
}

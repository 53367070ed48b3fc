package api

import (
	"context"
	"net/http"

	"github.com/licet/licet/licensing/clearinghouse"
)

// usageRoutes adds the usage-report routes to the vendor API: a site posts
// its signed report (the site's certified key is its credential, as for a
// purchase request), and the vendor's admins list what was received.
func usageRoutes(s *Server, svc *clearinghouse.Service) {
	s.Public("POST /v1/usage-reports", func(w http.ResponseWriter, r *http.Request) error {
		body, err := readBody(r)
		if err != nil {
			return err
		}
		rec, err := svc.ImportUsageReport(r.Context(), body)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, rec)
		return nil
	})
	s.Admin("GET /v1/usage-reports", func(w http.ResponseWriter, r *http.Request) error {
		recs, err := svc.UsageReports(r.Context(), r.URL.Query().Get("site"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, recs)
		return nil
	})
}

// UploadUsageReport sends a site's signed usage report file to the vendor
// and returns what the vendor recorded, with its flags.
func (c *Client) UploadUsageReport(ctx context.Context, file []byte) (*clearinghouse.UsageRecord, error) {
	var out clearinghouse.UsageRecord
	return &out, c.Post(ctx, "/v1/usage-reports", file, &out)
}

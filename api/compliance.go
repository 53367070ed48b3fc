package api

import (
	"net/http"
	"strconv"

	"github.com/licet/licet/compliance/fleet"
	"github.com/licet/licet/compliance/policy"
	"github.com/licet/licet/errs"
)

// ResetRequest is the body of POST /v1/compliance/devices/{id}/reset.
type ResetRequest struct {
	Reason string `json:"reason,omitempty"`
}

// AddComplianceRoutes adds the vendor's compliance routes (admin token):
//
//	POST /v1/compliance/policies            policy.Document: validate, sign, store (a higher version only)
//	GET  /v1/compliance/policies/latest     the newest signed bundle
//	POST /v1/compliance/devices/{id}/reset  ResetRequest: the device's next reset packet
//	GET  /v1/compliance/devices?below=N     devices whose last reported score is below N
//
// Devices receive bundles and resets at their sync (POST /v1/payg/devices/{id}/sync).
func AddComplianceRoutes(s *Server, f *fleet.Service) {
	s.Admin("POST /v1/compliance/policies", func(w http.ResponseWriter, r *http.Request) error {
		var d policy.Document
		if err := readJSON(r, &d); err != nil {
			return err
		}
		b, err := f.Publish(r.Context(), &d)
		if err != nil {
			return err
		}
		s.Log.Info("compliance policy published", "version", b.Version)
		writeJSON(w, http.StatusCreated, b)
		return nil
	})
	s.Admin("GET /v1/compliance/policies/latest", func(w http.ResponseWriter, r *http.Request) error {
		b, err := f.Store.LatestPolicyBundle(r.Context())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, b)
		return nil
	})
	s.Admin("POST /v1/compliance/devices/{id}/reset", func(w http.ResponseWriter, r *http.Request) error {
		var req ResetRequest
		if err := readJSON(r, &req); err != nil {
			return err
		}
		rs, err := f.Reset(r.Context(), r.PathValue("id"), req.Reason)
		if err != nil {
			return err
		}
		s.Log.Info("compliance reset made", "device", rs.DeviceID, "sequence", rs.Sequence)
		writeJSON(w, http.StatusCreated, rs)
		return nil
	})
	s.Admin("GET /v1/compliance/devices", func(w http.ResponseWriter, r *http.Request) error {
		below := 101
		if v := r.URL.Query().Get("below"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 101 {
				return errs.E(errs.Invalid, "below %q is not a score between 0 and 101", v)
			}
			below = n
		}
		ds, err := f.Store.ComplianceBelow(r.Context(), below)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, ds)
		return nil
	})
}

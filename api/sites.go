package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/licensing/licenseserver"
)

// RenewResponse is the answer to a site renewal (POST /v1/sites/renew).
type RenewResponse struct {
	Certificate string                     `json:"certificate"` // the armored site certificate file
	Site        *clearinghouse.Site        `json:"site"`
	UsageReport *clearinghouse.UsageRecord `json:"usage_report"`
}

// RevokeRequest is the body of POST /v1/sites/{id}/revoke.
type RevokeRequest struct {
	Reason string `json:"reason"`
}

// RevocationsExportRequest is the body of POST /v1/revoked-sites/export.
type RevocationsExportRequest struct {
	ValidFor string `json:"valid_for"` // a Go duration, e.g. 720h; empty: the server's default
}

// siteRoutes adds the routes of a site's life after enrollment to the vendor
// API: renewal (authenticated by the site key's signature, as a purchase
// request), revocation and the lists of sites (admin), and the signed list
// of revoked sites (public: verifiers fetch it).
func siteRoutes(s *Server, svc *clearinghouse.Service) {
	s.Public("POST /v1/sites/renew", func(w http.ResponseWriter, r *http.Request) error {
		body, err := readBody(r)
		if err != nil {
			return err
		}
		rn, err := svc.RenewSite(r.Context(), body)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, RenewResponse{Certificate: string(licenseserver.EncodeCertificate(rn.Chain)), Site: rn.Site, UsageReport: rn.UsageReport})
		return nil
	})
	s.Admin("GET /v1/sites", func(w http.ResponseWriter, r *http.Request) error {
		sites, err := svc.Sites(r.Context(), r.URL.Query().Get("customer"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, sites)
		return nil
	})
	s.Admin("POST /v1/sites/{id}/revoke", func(w http.ResponseWriter, r *http.Request) error {
		var req RevokeRequest
		if err := readJSON(r, &req); err != nil {
			return err
		}
		site, err := svc.RevokeSite(r.Context(), r.PathValue("id"), req.Reason)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, site)
		return nil
	})
	s.Public("GET /v1/revoked-sites", func(w http.ResponseWriter, r *http.Request) error {
		list, _, err := svc.Revocations(r.Context(), 0)
		if err != nil {
			return err
		}
		writeRaw(w, list)
		return nil
	})
	s.Admin("POST /v1/revoked-sites/export", func(w http.ResponseWriter, r *http.Request) error {
		var req RevocationsExportRequest
		if err := readJSON(r, &req); err != nil {
			return err
		}
		var d time.Duration
		if req.ValidFor != "" {
			var err error
			if d, err = time.ParseDuration(req.ValidFor); err != nil || d < clearinghouse.MinRevocationsValidity || d > clearinghouse.MaxRevocationsValidity {
				return errs.E(errs.Invalid, "valid_for %q: give a duration from %s to %s, e.g. 720h", req.ValidFor, clearinghouse.MinRevocationsValidity, clearinghouse.MaxRevocationsValidity)
			}
		}
		list, _, err := svc.Revocations(r.Context(), d)
		if err != nil {
			return err
		}
		writeRaw(w, list)
		return nil
	})
}

// writeRaw answers with b, which is JSON already.
func writeRaw(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// RenewSite sends a site's renewal file (pack.RenewalFile) to the vendor and
// returns the new certificate.
func (c *Client) RenewSite(ctx context.Context, file []byte) (*RenewResponse, error) {
	var out RenewResponse
	return &out, c.Post(ctx, "/v1/sites/renew", json.RawMessage(file), &out)
}

// RevokeSite revokes a site at the vendor (admin).
func (c *Client) RevokeSite(ctx context.Context, siteID, reason string) (*clearinghouse.Site, error) {
	var out clearinghouse.Site
	return &out, c.Post(ctx, "/v1/sites/"+url.PathEscape(siteID)+"/revoke", RevokeRequest{Reason: reason}, &out)
}

// RevokedSites fetches the vendor's signed list of revoked sites, as it
// travels (verify.Verifier.ParseRevocations reads it). With validFor (admin
// only) the list is current for that long instead of the server's default.
func (c *Client) RevokedSites(ctx context.Context, validFor time.Duration) ([]byte, error) {
	var raw json.RawMessage
	if validFor > 0 {
		return raw, c.Post(ctx, "/v1/revoked-sites/export", RevocationsExportRequest{ValidFor: validFor.String()}, &raw)
	}
	return raw, c.Get(ctx, "/v1/revoked-sites", &raw)
}

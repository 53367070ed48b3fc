package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/payg/billing"
	"github.com/licet/licet/payg/provisioning"
)

// PaygMaxBody bounds the bodies of the device and webhook endpoints
// (docs/payg-protocol.md), below the server's general limit.
const PaygMaxBody = 64 << 10

// Payg is the vendor's pay-as-you-go: billing and provisioning.
type Payg struct {
	Billing      *billing.Service
	Provisioning *provisioning.Service
}

// WebhookResponse is the answer to creating a webhook endpoint: the secret
// is shown this once.
type WebhookResponse struct {
	billing.Webhook
	Secret string `json:"secret"`
	URL    string `json:"url"` // the path to give the payment processor
}

// DeviceDetail is the answer of GET /v1/payg/devices/{id}: the device,
// its packets and its last provisioning.ReportsKept sync reports.
type DeviceDetail struct {
	provisioning.Device
	Packets []*provisioning.StoredPacket `json:"packets"`
	Reports []*provisioning.PastReport   `json:"reports"`
}

// PacketExport is the answer of GET /v1/payg/devices/{id}/packets.
type PacketExport struct {
	Device string `json:"device"`
	Since  uint64 `json:"since"`
	Count  int    `json:"count"`
	File   string `json:"file"` // the armored packets, concatenated
}

// AddPaygRoutes adds the pay-as-you-go routes to the vendor server s.
//
// Admin (bearer admin token; writes honour Idempotency-Key and answer 201,
// or 200 when replaying the first answer):
//
//	POST /v1/payg/accounts                 billing.AccountRequest
//	GET  /v1/payg/accounts[?customer=C]    with balances
//	GET  /v1/payg/accounts/{id}            with balance
//	POST /v1/payg/plans                    billing.PlanRequest
//	GET  /v1/payg/plans
//	POST /v1/payg/sales                    provisioning.SellRequest
//	POST /v1/payg/sales/batch              provisioning.BatchRequest: all its sales in one transaction, or none
//	POST /v1/payg/payments                 billing.MoneyRequest
//	POST /v1/payg/refunds                  billing.MoneyRequest
//	POST /v1/payg/reversals                billing.ReversalRequest
//	GET  /v1/payg/ledger[?account=A]       postings with their lines
//	POST /v1/payg/webhooks                 {"name": N}: the endpoint and its secret, once
//	GET  /v1/payg/devices[?account=A]
//	GET  /v1/payg/devices/{id}
//	GET  /v1/payg/devices/{id}/packets[?since=N]
//	POST /v1/payg/devices/{id}/reregister  a one-time code that registers the device again (fresh agent directory)
//	GET  /v1/payg/clones
//
// Public (bodies at most PaygMaxBody):
//
//	POST /v1/payg/webhooks/{endpoint}      signed by Licet-Webhook-Signature
//	POST /v1/payg/register                 the registration code is the credential
//	POST /v1/payg/devices/{id}/sync        a signed device request
func AddPaygRoutes(s *Server, p *Payg) {
	created := func(w http.ResponseWriter, replayed bool, v any) {
		status := http.StatusCreated
		if replayed {
			status = http.StatusOK
		}
		writeJSON(w, status, v)
	}
	idem := func(r *http.Request) string { return r.Header.Get(IdempotencyKeyHeader) }
	s.Admin("POST /v1/payg/accounts", func(w http.ResponseWriter, r *http.Request) error {
		var req billing.AccountRequest
		if err := readJSON(r, &req); err != nil {
			return err
		}
		a, replayed, err := p.Billing.AddAccount(r.Context(), req, idem(r))
		if err != nil {
			return err
		}
		created(w, replayed, a)
		return nil
	})
	s.Admin("GET /v1/payg/accounts", func(w http.ResponseWriter, r *http.Request) error {
		as, err := p.Billing.Store.Accounts(r.Context(), r.URL.Query().Get("customer"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, as)
		return nil
	})
	s.Admin("GET /v1/payg/accounts/{id}", func(w http.ResponseWriter, r *http.Request) error {
		a, err := p.Billing.Store.AccountBalance(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, a)
		return nil
	})
	s.Admin("POST /v1/payg/plans", func(w http.ResponseWriter, r *http.Request) error {
		var req billing.PlanRequest
		if err := readPaygJSON(r, &req); err != nil {
			return err
		}
		pl, replayed, err := p.Billing.AddPlan(r.Context(), req, idem(r))
		if err != nil {
			return err
		}
		created(w, replayed, pl)
		return nil
	})
	s.Admin("GET /v1/payg/plans", func(w http.ResponseWriter, r *http.Request) error {
		ps, err := p.Billing.Store.Plans(r.Context())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, ps)
		return nil
	})
	s.Admin("POST /v1/payg/sales", func(w http.ResponseWriter, r *http.Request) error {
		var req provisioning.SellRequest
		if err := readJSON(r, &req); err != nil {
			return err
		}
		ans, replayed, err := p.Provisioning.Sell(r.Context(), req, idem(r))
		if err != nil {
			return err
		}
		w.Header().Set("Cache-Control", "no-store")
		created(w, replayed, ans)
		return nil
	})
	s.Admin("POST /v1/payg/sales/batch", func(w http.ResponseWriter, r *http.Request) error {
		var req provisioning.BatchRequest
		if err := readJSON(r, &req); err != nil {
			return err
		}
		ans, replayed, err := p.Provisioning.SellBatch(r.Context(), req, idem(r))
		if err != nil {
			return err
		}
		created(w, replayed, ans)
		return nil
	})
	for _, kind := range []string{billing.KindPayment, billing.KindRefund} {
		s.Admin("POST /v1/payg/"+kind+"s", func(w http.ResponseWriter, r *http.Request) error {
			var req billing.MoneyRequest
			if err := readPaygJSON(r, &req); err != nil {
				return err
			}
			post, replayed, err := p.Billing.Pay(r.Context(), kind, req, idem(r))
			if err != nil {
				return err
			}
			created(w, replayed, post)
			return nil
		})
	}
	s.Admin("POST /v1/payg/reversals", func(w http.ResponseWriter, r *http.Request) error {
		var req billing.ReversalRequest
		if err := readJSON(r, &req); err != nil {
			return err
		}
		post, replayed, err := p.Billing.Reverse(r.Context(), req, idem(r))
		if err != nil {
			return err
		}
		created(w, replayed, post)
		return nil
	})
	s.Admin("GET /v1/payg/ledger", func(w http.ResponseWriter, r *http.Request) error {
		ps, err := p.Billing.Store.Postings(r.Context(), r.URL.Query().Get("account"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, ps)
		return nil
	})
	s.Admin("POST /v1/payg/webhooks", func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Name string `json:"name"`
		}
		if err := readJSON(r, &req); err != nil {
			return err
		}
		hook, secret, err := p.Billing.AddWebhook(r.Context(), req.Name)
		if err != nil {
			return err
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusCreated, WebhookResponse{Webhook: *hook, Secret: secret, URL: "/v1/payg/webhooks/" + hook.Name})
		return nil
	})
	s.Admin("GET /v1/payg/devices", func(w http.ResponseWriter, r *http.Request) error {
		ds, err := p.Provisioning.Store.PaygDevices(r.Context(), r.URL.Query().Get("account"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, ds)
		return nil
	})
	s.Admin("GET /v1/payg/devices/{id}", func(w http.ResponseWriter, r *http.Request) error {
		d, err := p.Provisioning.Store.PaygDevice(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		ps, err := p.Provisioning.Store.Packets(r.Context(), d.ID, 0)
		if err != nil {
			return err
		}
		reps, err := p.Provisioning.Store.PaygReports(r.Context(), d.ID)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, DeviceDetail{Device: *d, Packets: ps, Reports: reps})
		return nil
	})
	s.Admin("GET /v1/payg/devices/{id}/packets", func(w http.ResponseWriter, r *http.Request) error {
		var since uint64
		if v := r.URL.Query().Get("since"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return errs.E(errs.Invalid, "since %q is not a sequence number (0 or above)", v)
			}
			since = n
		}
		file, n, err := p.Provisioning.Export(r.Context(), r.PathValue("id"), since)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, PacketExport{Device: r.PathValue("id"), Since: since, Count: n, File: string(file)})
		return nil
	})
	s.Admin("POST /v1/payg/devices/{id}/reregister", func(w http.ResponseWriter, r *http.Request) error {
		ans, replayed, err := p.Provisioning.Reregister(r.Context(), r.PathValue("id"), idem(r))
		if err != nil {
			return err
		}
		w.Header().Set("Cache-Control", "no-store")
		created(w, replayed, ans)
		return nil
	})
	s.Admin("GET /v1/payg/clones", func(w http.ResponseWriter, r *http.Request) error {
		cs, err := p.Provisioning.Store.Clones(r.Context())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, cs)
		return nil
	})
	s.Public("POST /v1/payg/webhooks/{endpoint}", func(w http.ResponseWriter, r *http.Request) error {
		body, err := readBody(limitBody(w, r))
		if err != nil {
			return err
		}
		ans, err := p.Billing.Deliver(r.Context(), r.PathValue("endpoint"), r.Header.Get(billing.SignatureHeader), body)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, ans)
		return nil
	})
	s.Public("POST /v1/payg/register", func(w http.ResponseWriter, r *http.Request) error {
		var req provisioning.RegisterRequest
		if err := readJSON(limitBody(w, r), &req); err != nil {
			return err
		}
		ans, err := p.Provisioning.Register(r.Context(), req)
		if err != nil {
			return err
		}
		s.Log.Info("payg device registered", "device", ans.DeviceID, "account", ans.Account)
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, ans)
		return nil
	})
	s.Public("POST /v1/payg/devices/{id}/sync", func(w http.ResponseWriter, r *http.Request) error {
		body, err := readBody(limitBody(w, r))
		if err != nil {
			return err
		}
		dev, err := p.Provisioning.Authenticate(r.Context(), r.Method, r.URL.RequestURI(), r.Header, body)
		if err != nil {
			return err
		}
		if dev.ID != r.PathValue("id") {
			return errs.E(errs.Forbidden, "device %s may sync only its own path, not %s", dev.ID, r.PathValue("id"))
		}
		var req provisioning.SyncRequest
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return errs.Wrap(errs.Invalid, err, "sync body is not {\"highest_sequence\": N, \"used_seconds\": S}")
		}
		ans, err := p.Provisioning.Sync(r.Context(), dev, req)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, ans)
		return nil
	})
}

// limitBody bounds r's body to PaygMaxBody.
func limitBody(w http.ResponseWriter, r *http.Request) *http.Request {
	r.Body = http.MaxBytesReader(w, r.Body, PaygMaxBody)
	return r
}

// readPaygJSON is readJSON with numbers kept as written, so that an amount
// too large for an int64 is refused naming its field.
func readPaygJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return errs.E(errs.Invalid, "%s: %s is not accepted here; give a whole number", te.Field, te.Value)
		}
		return bodyError(err, "request body is not the expected JSON")
	}
	return nil
}

// postIdempotent posts as c.Post does, with idemKey as the Idempotency-Key
// header (none if empty).
func (c *Client) postIdempotent(ctx context.Context, path, idemKey string, in, out any) error {
	cc := *c
	if idemKey != "" {
		hc := *c.httpClient()
		base := hc.Transport
		if base == nil {
			base = http.DefaultTransport
		}
		hc.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			r = r.Clone(r.Context())
			r.Header.Set(IdempotencyKeyHeader, idemKey)
			return base.RoundTrip(r)
		})
		cc.HTTP = &hc
	}
	return cc.Post(ctx, path, in, out)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// AddPaygAccount opens an account.
func (c *Client) AddPaygAccount(ctx context.Context, req billing.AccountRequest, idemKey string) (*billing.Account, error) {
	var out billing.Account
	return &out, c.postIdempotent(ctx, "/v1/payg/accounts", idemKey, req, &out)
}

// AddPaygPlan records a plan.
func (c *Client) AddPaygPlan(ctx context.Context, req billing.PlanRequest, idemKey string) (*billing.Plan, error) {
	var out billing.Plan
	return &out, c.postIdempotent(ctx, "/v1/payg/plans", idemKey, req, &out)
}

// Sell sells a plan.
func (c *Client) Sell(ctx context.Context, req provisioning.SellRequest, idemKey string) (*provisioning.SellAnswer, error) {
	var out provisioning.SellAnswer
	return &out, c.postIdempotent(ctx, "/v1/payg/sales", idemKey, req, &out)
}

// SellBatch sells a batch of plans to registered devices in one
// transaction: all of them, or none.
func (c *Client) SellBatch(ctx context.Context, req provisioning.BatchRequest, idemKey string) (*provisioning.BatchAnswer, error) {
	var out provisioning.BatchAnswer
	return &out, c.postIdempotent(ctx, "/v1/payg/sales/batch", idemKey, req, &out)
}

// PaygMoney records a payment or a refund (kind billing.KindPayment or
// billing.KindRefund).
func (c *Client) PaygMoney(ctx context.Context, kind string, req billing.MoneyRequest, idemKey string) (*billing.Posting, error) {
	var out billing.Posting
	return &out, c.postIdempotent(ctx, "/v1/payg/"+kind+"s", idemKey, req, &out)
}

// Reverse reverses a posting.
func (c *Client) Reverse(ctx context.Context, req billing.ReversalRequest, idemKey string) (*billing.Posting, error) {
	var out billing.Posting
	return &out, c.postIdempotent(ctx, "/v1/payg/reversals", idemKey, req, &out)
}

// AddWebhook makes a webhook endpoint and returns its secret.
func (c *Client) AddWebhook(ctx context.Context, name string) (*WebhookResponse, error) {
	var out WebhookResponse
	return &out, c.Post(ctx, "/v1/payg/webhooks", map[string]string{"name": name}, &out)
}

// Reregister asks for a code that registers the device deviceID again
// from a fresh agent directory.
func (c *Client) Reregister(ctx context.Context, deviceID, idemKey string) (*provisioning.ReregisterAnswer, error) {
	var out provisioning.ReregisterAnswer
	return &out, c.postIdempotent(ctx, "/v1/payg/devices/"+url.PathEscape(deviceID)+"/reregister", idemKey, struct{}{}, &out)
}

// ExportPackets fetches a device's packets above since.
func (c *Client) ExportPackets(ctx context.Context, deviceID string, since uint64) (*PacketExport, error) {
	var out PacketExport
	return &out, c.Get(ctx, "/v1/payg/devices/"+url.PathEscape(deviceID)+"/packets?since="+strconv.FormatUint(since, 10), &out)
}

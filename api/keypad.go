package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/licet/licet/auth"
	"github.com/licet/licet/payg/keypadvendor"
)

// IdempotencyKeyHeader names the header that makes a token issue
// idempotent: a retried request with the same key returns the first token.
const IdempotencyKeyHeader = "Idempotency-Key"

// AddKeypadRoutes adds the keypad device routes (offline OpenPAYGO tokens) to
// the vendor's server s. All of them need an admin token:
//
//	POST /v1/keypad/devices                   register (keypadvendor.Registration)
//	GET  /v1/keypad/devices                   list, without keys
//	GET  /v1/keypad/devices/{serial}          one device, without its key
//	POST /v1/keypad/devices/{serial}/export   the key and starting code, for flashing
//	POST /v1/keypad/devices/{serial}/tokens   issue a token (keypadvendor.IssueRequest; Idempotency-Key honoured)
//	GET  /v1/keypad/devices/{serial}/tokens   the tokens issued, without their digits
func AddKeypadRoutes(s *Server, kp *keypadvendor.Service) {
	s.Admin("POST /v1/keypad/devices", func(w http.ResponseWriter, r *http.Request) error {
		var reg keypadvendor.Registration
		if err := readJSON(r, &reg); err != nil {
			return err
		}
		d, err := kp.Register(r.Context(), reg)
		if err != nil {
			return err
		}
		s.Log.Info("keypad device registered", "serial", d.Serial, "by", caller(s, r))
		writeJSON(w, http.StatusCreated, d)
		return nil
	})
	s.Admin("GET /v1/keypad/devices", func(w http.ResponseWriter, r *http.Request) error {
		ds, err := kp.Store.KeypadDevices(r.Context())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, ds)
		return nil
	})
	s.Admin("GET /v1/keypad/devices/{serial}", func(w http.ResponseWriter, r *http.Request) error {
		d, err := kp.Device(r.Context(), r.PathValue("serial"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, d)
		return nil
	})
	s.Admin("POST /v1/keypad/devices/{serial}/export", func(w http.ResponseWriter, r *http.Request) error {
		sec, err := kp.Export(r.Context(), r.PathValue("serial"))
		if err != nil {
			return err
		}
		s.Log.Info("keypad device key exported", "serial", sec.Serial, "by", caller(s, r))
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, sec)
		return nil
	})
	s.Admin("POST /v1/keypad/devices/{serial}/tokens", func(w http.ResponseWriter, r *http.Request) error {
		var req keypadvendor.IssueRequest
		if err := readJSON(r, &req); err != nil {
			return err
		}
		out, replayed, err := kp.Issue(r.Context(), r.PathValue("serial"), req, r.Header.Get(IdempotencyKeyHeader), caller(s, r))
		if err != nil {
			return err
		}
		w.Header().Set("Cache-Control", "no-store")
		status := http.StatusCreated
		if replayed {
			status = http.StatusOK
		}
		writeJSON(w, status, out)
		return nil
	})
	s.Admin("GET /v1/keypad/devices/{serial}/tokens", func(w http.ResponseWriter, r *http.Request) error {
		recs, err := kp.Tokens(r.Context(), r.PathValue("serial"))
		if err != nil {
			return err
		}
		out := make([]*keypadvendor.Issued, len(recs))
		for i, rec := range recs {
			out[i] = rec.View("")
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
}

// caller names the admin token of an authenticated request, for the record
// of who issued a token: its ID and name, never its secret.
func caller(s *Server, r *http.Request) string {
	bearer, ok := bearerToken(r)
	if !ok {
		return "unknown"
	}
	tok, err := auth.Check(r.Context(), s.Tokens, bearer)
	if err != nil {
		return "unknown"
	}
	return tok.ID + " (" + tok.Name + ")"
}

// keypadPath is the path of a device's resource.
func keypadPath(serial, rest string) string {
	return "/v1/keypad/devices/" + url.PathEscape(serial) + rest
}

// RegisterKeypadDevice registers a keypad device at the vendor.
func (c *Client) RegisterKeypadDevice(ctx context.Context, reg keypadvendor.Registration) (*keypadvendor.Device, error) {
	var out keypadvendor.Device
	return &out, c.Post(ctx, "/v1/keypad/devices", reg, &out)
}

// KeypadDevices lists the vendor's keypad devices, without keys.
func (c *Client) KeypadDevices(ctx context.Context) ([]*keypadvendor.Device, error) {
	var out []*keypadvendor.Device
	return out, c.Get(ctx, "/v1/keypad/devices", &out)
}

// ExportKeypadDevice returns a device's key and starting code.
func (c *Client) ExportKeypadDevice(ctx context.Context, serial string) (*keypadvendor.Secret, error) {
	var out keypadvendor.Secret
	return &out, c.Post(ctx, keypadPath(serial, "/export"), struct{}{}, &out)
}

// IssueKeypadToken issues a token to a device; a non-empty idemKey is sent
// as the Idempotency-Key header, so that a retry returns the same token.
func (c *Client) IssueKeypadToken(ctx context.Context, serial string, req keypadvendor.IssueRequest, idemKey string) (*keypadvendor.Issued, error) {
	cc := c
	if idemKey != "" {
		hc := *c.httpClient()
		base := hc.Transport
		if base == nil {
			base = http.DefaultTransport
		}
		hc.Transport = headerTransport{base: base, name: IdempotencyKeyHeader, value: idemKey}
		cc = &Client{BaseURL: c.BaseURL, Token: c.Token, HTTP: &hc}
	}
	var out keypadvendor.Issued
	return &out, cc.Post(ctx, keypadPath(serial, "/tokens"), req, &out)
}

// headerTransport sets one header on every request.
type headerTransport struct {
	base        http.RoundTripper
	name, value string
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.name, h.value)
	return h.base.RoundTrip(r)
}

package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/licet/licet/auth"
	"github.com/licet/licet/payg/keypadvendor"
)

// IdempotencyKeyHeader names the header that makes a write idempotent (a
// token issue, a sale, a payment): a retried request with the same key
// returns the first answer.
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
		s.Log.Info("keypad device registered", "serial", d.Serial, "by", caller(r))
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
		s.Log.Info("keypad device key exported", "serial", sec.Serial, "by", caller(r))
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, sec)
		return nil
	})
	s.Admin("POST /v1/keypad/devices/{serial}/tokens", func(w http.ResponseWriter, r *http.Request) error {
		var req keypadvendor.IssueRequest
		if err := readJSON(r, &req); err != nil {
			return err
		}
		out, replayed, err := kp.Issue(r.Context(), r.PathValue("serial"), req, r.Header.Get(IdempotencyKeyHeader), caller(r))
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

// caller names the admin token of an authenticated request (put in the
// context by the route's check), for the record of who issued a token: its
// ID and name, never its secret.
func caller(r *http.Request) string {
	tok := auth.FromContext(r.Context())
	if tok == nil {
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
	var out keypadvendor.Issued
	return &out, c.postIdempotent(ctx, keypadPath(serial, "/tokens"), idemKey, req, &out)
}

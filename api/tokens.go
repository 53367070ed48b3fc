package api

import (
	"context"
	"net/http"
	"time"

	"github.com/licet/licet/auth"
	"github.com/licet/licet/errs"
)

// Token routes, on every server that keeps tokens (vendor and site), behind
// an admin token:
//
//	GET  /v1/tokens               every token (no secrets): TokenInfo
//	POST /v1/tokens               TokenRequest → TokenCreated (the secret, once)
//	POST /v1/tokens/{id}/revoke   revoke at once, in every process sharing the store

// TokenRequest asks for a new token.
type TokenRequest struct {
	Name    string `json:"name"`
	Scope   string `json:"scope,omitempty"`   // default admin
	Product string `json:"product,omitempty"` // binds an upgrade token to one product
	// ExpiresIn is the validity in seconds; 0 means auth.DefaultExpiry.
	ExpiresIn int64 `json:"expires_in,omitempty"`
}

// TokenInfo describes a token without its secret.
type TokenInfo struct {
	ID      string     `json:"id"`
	Name    string     `json:"name"`
	Scope   string     `json:"scope"`
	Product string     `json:"product,omitempty"`
	Created time.Time  `json:"created"`
	Expires *time.Time `json:"expires"` // null: made before tokens expired; rotate it
	Revoked *time.Time `json:"revoked,omitempty"`
	Status  string     `json:"status"` // active, expired or revoked
}

// TokenCreated is a new token: its secret is shown this once.
type TokenCreated struct {
	TokenInfo
	Token string `json:"token"`
}

// NewTokenInfo describes t as it stands at now.
func NewTokenInfo(t *auth.Token, now time.Time) TokenInfo {
	return TokenInfo{ID: t.ID, Name: t.Name, Scope: t.Scope, Product: t.Product, Created: t.Created,
		Expires: t.Expires, Revoked: t.Revoked, Status: t.Status(now)}
}

// tokenRoutes routes the token administration of s.
func (s *Server) tokenRoutes() {
	s.Admin("GET /v1/tokens", func(w http.ResponseWriter, r *http.Request) error {
		list, err := s.Tokens.Tokens(r.Context())
		if err != nil {
			return err
		}
		now := time.Now()
		out := make([]TokenInfo, 0, len(list))
		for _, t := range list {
			out = append(out, NewTokenInfo(t, now))
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
	s.Admin("POST /v1/tokens", func(w http.ResponseWriter, r *http.Request) error {
		var req TokenRequest
		if err := readJSON(r, &req); err != nil {
			return err
		}
		if req.ExpiresIn < 0 {
			return errs.E(errs.Invalid, "expires_in: %d is negative; give the validity in seconds (0: %s)", req.ExpiresIn, auth.DefaultExpiry)
		}
		now := time.Now()
		secret, t, err := auth.Create(r.Context(), s.Tokens, req.Name,
			auth.Options{Scope: req.Scope, Product: req.Product, Expiry: time.Duration(req.ExpiresIn) * time.Second}, now)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, TokenCreated{TokenInfo: NewTokenInfo(t, now), Token: secret})
		return nil
	})
	s.Admin("POST /v1/tokens/{id}/revoke", func(w http.ResponseWriter, r *http.Request) error {
		now := time.Now()
		t, err := s.Tokens.RevokeToken(r.Context(), r.PathValue("id"), now)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, NewTokenInfo(t, now))
		return nil
	})
}

// CreateToken makes a token through the API.
func (c *Client) CreateToken(ctx context.Context, req TokenRequest) (*TokenCreated, error) {
	var out TokenCreated
	return &out, c.Post(ctx, "/v1/tokens", req, &out)
}

// ListTokens lists the tokens through the API.
func (c *Client) ListTokens(ctx context.Context) ([]TokenInfo, error) {
	var out []TokenInfo
	return out, c.Get(ctx, "/v1/tokens", &out)
}

// RevokeToken revokes a token through the API.
func (c *Client) RevokeToken(ctx context.Context, id string) (*TokenInfo, error) {
	var out TokenInfo
	return &out, c.Post(ctx, "/v1/tokens/"+id+"/revoke", nil, &out)
}

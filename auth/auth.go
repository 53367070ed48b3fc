// Package auth issues and checks the bearer tokens that administrators use
// against licet's HTTP APIs. Only a token's SHA-256 is stored; a token is
// shown once, when it is made. Every token has a scope, may be bound to one
// product, expires (DefaultExpiry unless told otherwise) and can be revoked;
// tokens are checked against the store on every request, so a revocation
// takes effect at once in every server process sharing the store.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"slices"
	"strings"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/ids"
)

// TokenPrefix starts every admin token, so that secret scanners can find leaked ones.
const TokenPrefix = "licet_"

// Token scopes: what a token may do.
const (
	// ScopeAdmin may call every authenticated route.
	ScopeAdmin = "admin"
	// ScopeUpgrade may only ask a site to upgrade licenses: the token of a
	// gateway, which checks that a client holds its license's key first.
	ScopeUpgrade = "upgrade"
	// ScopeMetrics may only read /metrics: the token of a Prometheus scraper.
	ScopeMetrics = "metrics"
)

// Scopes lists the token scopes.
var Scopes = []string{ScopeAdmin, ScopeUpgrade, ScopeMetrics}

// DefaultExpiry is how long a token is valid unless its maker says otherwise.
const DefaultExpiry = 90 * 24 * time.Hour

// Token is a stored token.
type Token struct {
	ID      string    // public handle, e.g. for revocation
	Name    string    // what it is for
	Hash    []byte    // SHA-256 of the secret token text
	Created time.Time // when it was made
	Scope   string    // one of Scopes; empty reads as ScopeAdmin
	// Product, if set, binds the token to one product: it acts on that
	// product's objects only (an upgrade token upgrades its licenses only).
	Product string
	// Expires is when the token stops working; nil only for tokens made
	// before licet gave every token an expiry (list them and rotate them).
	Expires *time.Time
	// Revoked is when the token was revoked, nil while it is not.
	Revoked *time.Time
}

// AllowsProduct reports whether the token may act on product: a token
// bound to no product may act on every one.
func (t *Token) AllowsProduct(product string) bool {
	return t.Product == "" || t.Product == product
}

// Status describes whether the token works at now: "active", "expired" or
// "revoked".
func (t *Token) Status(now time.Time) string {
	switch {
	case t.Revoked != nil:
		return "revoked"
	case t.Expires != nil && !now.Before(*t.Expires):
		return "expired"
	}
	return "active"
}

// Allows reports whether the token may call a route that needs scope: an
// admin token may call any.
func (t *Token) Allows(scope string) bool {
	return t.Scope == "" || t.Scope == ScopeAdmin || t.Scope == scope
}

// TokenStore keeps admin tokens. Both the vendor and the site stores implement it.
type TokenStore interface {
	// AddToken stores a new token.
	AddToken(ctx context.Context, t *Token) error
	// TokenByHash returns the token with the given hash, or a NotFound error.
	TokenByHash(ctx context.Context, hash []byte) (*Token, error)
	// Tokens lists every token, revoked and expired ones included, oldest first.
	Tokens(ctx context.Context) ([]*Token, error)
	// RevokeToken marks the token of ID id revoked at time at and returns it;
	// a NotFound error if there is none. Revoking twice keeps the first time.
	RevokeToken(ctx context.Context, id string, at time.Time) (*Token, error)
}

// Options are the optional properties of a new token.
type Options struct {
	Scope   string        // one of Scopes; empty means ScopeAdmin
	Product string        // binds the token to one product (scope upgrade only)
	Expiry  time.Duration // how long it is valid; 0 means DefaultExpiry
}

// HashToken returns the SHA-256 under which a token is stored.
func HashToken(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// NewToken makes an admin token valid for DefaultExpiry, stores its hash and
// returns the secret text.
func NewToken(ctx context.Context, st TokenStore, name string, now time.Time) (string, error) {
	return NewScopedToken(ctx, st, name, ScopeAdmin, now)
}

// NewScopedToken makes a token of a scope valid for DefaultExpiry, stores its
// hash and returns the secret text.
func NewScopedToken(ctx context.Context, st TokenStore, name, scope string, now time.Time) (string, error) {
	secret, _, err := Create(ctx, st, name, Options{Scope: scope}, now)
	return secret, err
}

// Create makes a token, stores its hash and returns the secret text (shown
// once) and the stored token.
func Create(ctx context.Context, st TokenStore, name string, o Options, now time.Time) (string, *Token, error) {
	if o.Scope == "" {
		o.Scope = ScopeAdmin
	}
	if !slices.Contains(Scopes, o.Scope) {
		return "", nil, errs.E(errs.Invalid, "scope: %q is not one of %v", o.Scope, Scopes)
	}
	if name == "" {
		return "", nil, errs.E(errs.Invalid, "name: a token needs a name saying what it is for (--name)")
	}
	if o.Product != "" && o.Scope != ScopeUpgrade {
		return "", nil, errs.E(errs.Invalid, "product: only tokens of scope %s act on one product; a token of scope %s cannot be bound to %q (leave out --product)", ScopeUpgrade, o.Scope, o.Product)
	}
	if o.Expiry < 0 {
		return "", nil, errs.E(errs.Invalid, "expires: %s is in the past; give a positive duration such as 30d or 720h", o.Expiry)
	}
	if o.Expiry == 0 {
		o.Expiry = DefaultExpiry
	}
	exp := now.Add(o.Expiry).UTC()
	secret := TokenPrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(ids.Random(32)))
	t := &Token{ID: ids.New("tok"), Name: name, Hash: HashToken(secret), Created: now.UTC(), Scope: o.Scope, Product: o.Product, Expires: &exp}
	if err := st.AddToken(ctx, t); err != nil {
		return "", nil, err
	}
	return secret, t, nil
}

// errUnknownToken is the refusal of a token this server never issued (or
// whose record is gone); any scope, not only admin tokens.
var errUnknownToken = errs.E(errs.Unauthenticated, "token is not valid: this server does not know it (it was made by another server, or its data directory or database was replaced); use a token this server issued")

// Check looks the secret up and returns its token if it works now, or an
// Unauthenticated error.
func Check(ctx context.Context, st TokenStore, secret string) (*Token, error) {
	return CheckAt(ctx, st, secret, time.Now())
}

// CheckAt is Check at time now: a revoked token, and one whose expiry is
// not after now, are refused.
func CheckAt(ctx context.Context, st TokenStore, secret string, now time.Time) (*Token, error) {
	if !strings.HasPrefix(secret, TokenPrefix) {
		return nil, errs.E(errs.Unauthenticated, "missing or malformed token: send 'Authorization: Bearer licet_…'")
	}
	h := HashToken(secret)
	t, err := st.TokenByHash(ctx, h)
	if errs.Is(err, errs.NotFound) {
		return nil, errUnknownToken
	}
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(t.Hash, h) != 1 {
		return nil, errUnknownToken
	}
	switch t.Status(now) {
	case "revoked":
		return nil, errs.E(errs.Unauthenticated, "token %s (%q) was revoked on %s; use another token", t.ID, t.Name, t.Revoked.UTC().Format(time.RFC3339))
	case "expired":
		return nil, errs.E(errs.Unauthenticated, "token %s (%q) expired on %s; make a new one ('licet vendor apitoken create' or 'licet site token create')", t.ID, t.Name, t.Expires.UTC().Format(time.RFC3339))
	}
	return t, nil
}

// tokenKey is the context key of the token a request was authorised with.
type tokenKey struct{}

// WithToken returns ctx carrying the token a request was authorised with.
func WithToken(ctx context.Context, t *Token) context.Context {
	return context.WithValue(ctx, tokenKey{}, t)
}

// FromContext returns the token a request was authorised with, or nil.
func FromContext(ctx context.Context) *Token {
	t, _ := ctx.Value(tokenKey{}).(*Token)
	return t
}

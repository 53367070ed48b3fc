// Package auth issues and checks the bearer tokens that administrators use
// against licet's HTTP APIs. Only a token's SHA-256 is stored; a token is
// shown once, when it is made.
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
)

// Scopes lists the token scopes.
var Scopes = []string{ScopeAdmin, ScopeUpgrade}

// Token is a stored token.
type Token struct {
	ID      string    // public handle, e.g. for revocation
	Name    string    // what it is for
	Hash    []byte    // SHA-256 of the secret token text
	Created time.Time // when it was made
	Scope   string    // ScopeAdmin or ScopeUpgrade; empty reads as ScopeAdmin
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
}

// HashToken returns the SHA-256 under which a token is stored.
func HashToken(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// NewToken makes an admin token, stores its hash and returns the secret text.
func NewToken(ctx context.Context, st TokenStore, name string, now time.Time) (string, error) {
	return NewScopedToken(ctx, st, name, ScopeAdmin, now)
}

// NewScopedToken makes a token of a scope, stores its hash and returns the
// secret text.
func NewScopedToken(ctx context.Context, st TokenStore, name, scope string, now time.Time) (string, error) {
	if !slices.Contains(Scopes, scope) {
		return "", errs.E(errs.Invalid, "token scope %q is not one of %v", scope, Scopes)
	}
	if name == "" {
		return "", errs.E(errs.Invalid, "a token needs a name saying what it is for")
	}
	secret := TokenPrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(ids.Random(32)))
	t := &Token{ID: ids.New("tok"), Name: name, Hash: HashToken(secret), Created: now.UTC(), Scope: scope}
	if err := st.AddToken(ctx, t); err != nil {
		return "", err
	}
	return secret, nil
}

// Check looks the secret up and returns its token, or an Unauthenticated error.
func Check(ctx context.Context, st TokenStore, secret string) (*Token, error) {
	if !strings.HasPrefix(secret, TokenPrefix) {
		return nil, errs.E(errs.Unauthenticated, "missing or malformed admin token: send 'Authorization: Bearer licet_…'")
	}
	h := HashToken(secret)
	t, err := st.TokenByHash(ctx, h)
	if errs.Is(err, errs.NotFound) {
		return nil, errs.E(errs.Unauthenticated, "admin token is not valid")
	}
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(t.Hash, h) != 1 {
		return nil, errs.E(errs.Unauthenticated, "admin token is not valid")
	}
	return t, nil
}

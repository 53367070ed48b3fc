package auth

import (
	"context"
	"testing"
	"time"

	"github.com/licet/licet/errs"
)

type memStore map[string]*Token

func (m memStore) AddToken(_ context.Context, t *Token) error { m[string(t.Hash)] = t; return nil }
func (m memStore) TokenByHash(_ context.Context, h []byte) (*Token, error) {
	if t, ok := m[string(h)]; ok {
		return t, nil
	}
	return nil, errs.E(errs.NotFound, "no token")
}
func (m memStore) Tokens(context.Context) ([]*Token, error) {
	var out []*Token
	for _, t := range m {
		out = append(out, t)
	}
	return out, nil
}
func (m memStore) RevokeToken(_ context.Context, id string, at time.Time) (*Token, error) {
	for _, t := range m {
		if t.ID == id {
			if t.Revoked == nil {
				t.Revoked = &at
			}
			return t, nil
		}
	}
	return nil, errs.E(errs.NotFound, "no token")
}

// TestScopes: an upgrade token may only upgrade; an admin token may do all;
// unknown scopes and wrong secrets are refused.
func TestScopes(t *testing.T) {
	ctx := context.Background()
	st := memStore{}
	admin, err := NewToken(ctx, st, "admin", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	gw, err := NewScopedToken(ctx, st, "gateway", ScopeUpgrade, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		secret, scope string
		want          bool
	}{
		{admin, ScopeAdmin, true}, {admin, ScopeUpgrade, true},
		{gw, ScopeUpgrade, true}, {gw, ScopeAdmin, false},
	} {
		tok, err := Check(ctx, st, tc.secret)
		if err != nil {
			t.Fatal(err)
		}
		if got := tok.Allows(tc.scope); got != tc.want {
			t.Errorf("token %q allows %s: %v, want %v", tok.Name, tc.scope, got, tc.want)
		}
	}
	if _, err := NewScopedToken(ctx, st, "x", "root", time.Now()); !errs.Is(err, errs.Invalid) {
		t.Errorf("scope root: %v, want Invalid", err)
	}
	if _, err := Check(ctx, st, gw+"x"); !errs.Is(err, errs.Unauthenticated) {
		t.Errorf("wrong secret: %v, want Unauthenticated", err)
	}
}

// TestLifecycle: a token stops working when it expires and when it is
// revoked; a product binding admits its product only; a product on an admin
// token and a negative expiry are refused.
func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	st := memStore{}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	secret, tok, err := Create(ctx, st, "gw", Options{Scope: ScopeUpgrade, Product: "cad", Expiry: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !tok.AllowsProduct("cad") || tok.AllowsProduct("other") {
		t.Error("product binding")
	}
	if _, err := CheckAt(ctx, st, secret, now.Add(59*time.Minute)); err != nil {
		t.Errorf("before expiry: %v", err)
	}
	if _, err := CheckAt(ctx, st, secret, now.Add(time.Hour)); !errs.Is(err, errs.Unauthenticated) {
		t.Errorf("at expiry: %v, want unauthenticated", err)
	}
	admin, atok, err := Create(ctx, st, "admin", Options{}, now)
	if err != nil {
		t.Fatal(err)
	}
	if atok.Expires == nil || !atok.Expires.Equal(now.Add(DefaultExpiry)) {
		t.Errorf("default expiry %v", atok.Expires)
	}
	if _, err := st.RevokeToken(ctx, atok.ID, now); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckAt(ctx, st, admin, now); !errs.Is(err, errs.Unauthenticated) {
		t.Errorf("revoked: %v, want unauthenticated", err)
	}
	if _, _, err := Create(ctx, st, "x", Options{Scope: ScopeAdmin, Product: "cad"}, now); !errs.Is(err, errs.Invalid) {
		t.Errorf("admin token bound to a product: %v", err)
	}
	if _, _, err := Create(ctx, st, "x", Options{Expiry: -time.Hour}, now); !errs.Is(err, errs.Invalid) {
		t.Errorf("negative expiry: %v", err)
	}
}

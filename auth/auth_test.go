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

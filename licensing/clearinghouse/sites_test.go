package clearinghouse

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/licet/licet/keys"
	"github.com/licet/licet/verify"
)

// TestRevokedCache: the public revocation list is served again for
// revokedListReuse, made anew after it, after the clock went back, and at
// once after a revocation (forget).
func TestRevokedCache(t *testing.T) {
	var c revokedCache
	t0 := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	if _, _, ok := c.get(t0); ok {
		t.Fatal("an empty cache answered")
	}
	c.put(t0, c.generation(), []byte("list-1"), &verify.Revocations{Number: 1})
	if raw, l, ok := c.get(t0.Add(revokedListReuse - time.Second)); !ok || string(raw) != "list-1" || l.Number != 1 {
		t.Fatalf("within %s: got %q, %v, %v; want list-1", revokedListReuse, raw, l, ok)
	}
	if _, _, ok := c.get(t0.Add(revokedListReuse)); ok {
		t.Errorf("the list was served %s after it was made", revokedListReuse)
	}
	if _, _, ok := c.get(t0.Add(-time.Second)); ok {
		t.Error("the list was served at a time before it was made")
	}
	c.forget()
	if _, _, ok := c.get(t0.Add(time.Second)); ok {
		t.Error("the list was served after a revocation")
	}
}

// raceStore is a Store of sites whose Sites calls during, after reading,
// so that a test can revoke a site while a revocation list is being made.
type raceStore struct {
	Store // nil: only the methods below are called
	mu    sync.Mutex
	sites map[string]*Site
	// during, if set, runs in Sites after the sites were read.
	during func()
}

func (r *raceStore) Sites(ctx context.Context, customerID string) ([]*Site, error) {
	r.mu.Lock()
	var out []*Site
	for _, s := range r.sites {
		c := *s
		out = append(out, &c)
	}
	during := r.during
	r.during = nil
	r.mu.Unlock()
	if during != nil {
		during()
	}
	return out, nil
}

func (r *raceStore) Site(ctx context.Context, id string) (*Site, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := *r.sites[id]
	return &c, nil
}

func (r *raceStore) RevokeSite(ctx context.Context, id, reason string, at time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sites[id].Revoked, r.sites[id].RevokeReason = &at, reason
	return nil
}

// TestRevokedCacheRace: a revocation made while the public revocation list
// is being made (after its sites were read) is not hidden by that list
// being kept for revokedListReuse: the next list names the site.
func TestRevokedCacheRace(t *testing.T) {
	ctx := context.Background()
	ch, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	st := &raceStore{sites: map[string]*Site{"site-a": {ID: "site-a", CustomerID: "cust-a"}}}
	now := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	s := &Service{Store: st, Clearinghouse: ch, Config: Config{VendorName: "V"}, Now: func() time.Time { return now }}
	st.during = func() {
		if _, err := s.RevokeSite(ctx, "site-a", "test"); err != nil {
			t.Error(err)
		}
	}
	if _, l, err := s.Revocations(ctx, 0); err != nil {
		t.Fatal(err)
	} else if len(l.Sites) != 0 {
		t.Fatalf("the list read before the revocation names %d sites", len(l.Sites))
	}
	_, l, err := s.Revocations(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if l.Lookup("site-a") == nil {
		t.Fatal("the list made after the revocation does not name the revoked site: a list read before it was kept")
	}
}

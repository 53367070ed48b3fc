package clearinghouse

import (
	"testing"
	"time"

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
	c.put(t0, []byte("list-1"), &verify.Revocations{Number: 1})
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

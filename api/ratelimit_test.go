package api_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/licet/licet/api"
)

// Costly routes get a per-IP limit far below the general one; other routes
// and other IPs are not affected, and a refusal says when to retry.
func TestCostlyRoutesLimitedPerIP(t *testing.T) {
	s := api.NewServer("site", slog.New(slog.NewTextHandler(io.Discard, nil)), api.Limits{MaxBody: 1 << 20, RatePerIP: 100, Burst: 200}, nil)
	okHandler := func(w http.ResponseWriter, r *http.Request) error { w.WriteHeader(http.StatusNoContent); return nil }
	s.Public("POST /v1/challenges", okHandler)
	s.Public("POST /v1/licenses/verify", okHandler)
	do := func(path, ip string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", path, nil)
		r.RemoteAddr = ip + ":1234"
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w
	}
	// Challenges: half of 100/s, burst 100.
	for i := 0; i < 100; i++ {
		if w := do("/v1/challenges", "10.0.0.1"); w.Code != http.StatusNoContent {
			t.Fatalf("challenge %d of the costly burst: %d %s", i+1, w.Code, w.Body)
		}
	}
	w := do("/v1/challenges", "10.0.0.1")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("101st challenge: %d (Retry-After %q), want 429 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	for i := 0; i < 50; i++ {
		if w := do("/v1/licenses/verify", "10.0.0.1"); w.Code != http.StatusNoContent {
			t.Fatalf("verification %d after the costly limit: %d, want it under the general limit", i+1, w.Code)
		}
	}
	if w := do("/v1/challenges", "10.0.0.2"); w.Code != http.StatusNoContent {
		t.Errorf("another IP's challenge: %d", w.Code)
	}
}

// Many IPs do not reset the limits of a busy one (the table evicts the least
// recently used IP rather than wiping every bucket).
func TestLimiterTableDoesNotWipe(t *testing.T) {
	s := api.NewServer("site", slog.New(slog.NewTextHandler(io.Discard, nil)), api.Limits{MaxBody: 1 << 20, RatePerIP: 0.001, Burst: 1}, nil)
	s.Public("POST /v1/licenses/verify", func(w http.ResponseWriter, r *http.Request) error { return nil })
	do := func(ip string) int {
		r := httptest.NewRequest("POST", "/v1/licenses/verify", nil)
		r.RemoteAddr = ip + ":1"
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w.Code
	}
	if c := do("10.9.9.9"); c != http.StatusOK {
		t.Fatalf("first request: %d", c)
	}
	for i := 0; i < 120_000; i++ {
		do(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
		if i%1000 == 0 {
			do("10.9.9.9") // stays recently used
		}
	}
	if c := do("10.9.9.9"); c != http.StatusTooManyRequests {
		t.Errorf("busy IP after 120,000 others: %d, want 429 (its empty bucket kept)", c)
	}
}

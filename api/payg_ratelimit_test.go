package api_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/licet/licet/api"
)

// The public pay-as-you-go routes that cost a signature check, a database
// read and, once past it, durable writes (a registration's transaction and
// clone record; a sync's report row and nonce) are costly routes: one IP
// gets a share of the per-IP rate, as enrollment and pack requests do
// (DESIGN.md 5b: bounded per caller before the cost is paid).
func TestPaygRoutesLimitedPerIP(t *testing.T) {
	for _, tc := range []struct{ pattern, path string }{
		{"POST /v1/payg/register", "/v1/payg/register"},
		{"POST /v1/payg/devices/{id}/sync", "/v1/payg/devices/dev-1/sync"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			s := api.NewServer("vendor", slog.New(slog.NewTextHandler(io.Discard, nil)), api.Limits{MaxBody: 1 << 20, RatePerIP: 100, Burst: 200}, nil)
			s.Public(tc.pattern, func(w http.ResponseWriter, r *http.Request) error { w.WriteHeader(http.StatusNoContent); return nil })
			limited := 0
			for range 150 { // under the general burst of 200
				r := httptest.NewRequest("POST", tc.path, nil)
				r.RemoteAddr = "10.0.0.1:1234"
				w := httptest.NewRecorder()
				s.ServeHTTP(w, r)
				if w.Code == http.StatusTooManyRequests {
					limited++
				}
			}
			if limited == 0 {
				t.Fatalf("150 requests to %s from one IP at once: none refused; want the route's own per-IP limit below the general one", tc.pattern)
			}
		})
	}
}

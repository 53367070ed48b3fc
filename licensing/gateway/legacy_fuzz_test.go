package gateway_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/licet/licet/licensing/gateway"
	"github.com/licet/licet/verify"
)

// FuzzLegacyDeposit feeds arbitrary bodies to the legacy store's deposit (a
// PUT signed by the client's key, the body being the license file): it must
// not panic or fail with a 5xx; a refused body is a 4xx with licet's JSON
// error (invalid, too_large or unauthenticated) and stores nothing; an
// accepted body is a license of the signing client that verifies, and is
// stored as it was sent.
func FuzzLegacyDeposit(f *testing.F) {
	now := time.Now()
	fx := newFixture(f, now.Add(-72*time.Hour))
	c := fx.newClient(f, appAttrs(7), now.Add(-time.Hour), now.Add(30*24*time.Hour))
	other := fx.newClient(f, appAttrs(8), now.Add(-time.Hour), now.Add(30*24*time.Hour))
	expired := fx.newClient(f, appAttrs(9), now.Add(-48*time.Hour), now.Add(-time.Hour))
	expired.key = c.key
	expired.issue(f, fx.site, appAttrs(9), now.Add(-48*time.Hour), now.Add(-time.Hour))

	// deposit PUTs body, signed by c, into a new, empty store and returns
	// the answer and the store's directory.
	deposit := func(tb testing.TB, body []byte) (*httptest.ResponseRecorder, string) {
		tb.Helper()
		dir := filepath.Join(tb.TempDir(), "legacy")
		store, err := gateway.NewLegacyStore(dir)
		if err != nil {
			tb.Fatal(err)
		}
		opts := options()
		opts.Legacy, opts.Now = store, func() time.Time { return now }
		h := store.Handler(fx.v, opts)
		req := httptest.NewRequest(http.MethodPut, "https://gw.example.com"+gateway.LegacyPath, bytes.NewReader(body))
		if err := gateway.SignLegacyRequest(req, body, c.key, now); err != nil {
			tb.Fatal(err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec, dir
	}
	// The valid seed is accepted: the target cannot pass by refusing all.
	if rec, _ := deposit(f, c.licPEM); rec.Code != http.StatusCreated {
		f.Fatalf("the valid seed is refused: %d %s", rec.Code, rec.Body)
	}
	f.Add(c.licPEM)
	f.Add(append(bytes.Clone(c.licPEM), "trailing junk\n"...))
	f.Add(append([]byte("leading junk\n"), c.licPEM...))
	f.Add(other.licPEM)
	f.Add(expired.licPEM)
	f.Add(c.licPEM[:len(c.licPEM)/2])
	f.Add(bytes.Replace(c.licPEM, []byte("CERTIFICATE"), []byte("PRIVATE KEY"), 1))
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte("A"), 1<<16))
	f.Fuzz(func(t *testing.T, body []byte) {
		rec, dir := deposit(t, body)
		stored, serr := os.ReadFile(filepath.Join(dir, c.id))

		if rec.Code != http.StatusCreated && rec.Code != http.StatusOK {
			var e struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatalf("refusal %d is not licet's JSON error: %q", rec.Code, rec.Body)
			}
			switch {
			case rec.Code >= 500 || rec.Code < 400:
				t.Fatalf("deposit answered %d %s: %s", rec.Code, e.Error.Code, e.Error.Message)
			case e.Error.Code != "invalid" && e.Error.Code != "too_large" && e.Error.Code != "unauthenticated":
				t.Fatalf("deposit refused with code %q: %s", e.Error.Code, e.Error.Message)
			}
			if serr == nil {
				t.Fatalf("a refused deposit (%d %s) stored a license", rec.Code, e.Error.Code)
			}
			return
		}
		if rec.Code != http.StatusCreated {
			t.Fatalf("the first deposit into an empty store answered %d, not 201", rec.Code)
		}
		var a struct {
			ClientID  string `json:"client_id"`
			LicenseID int64  `json:"license_id"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil || a.ClientID != c.id {
			t.Fatalf("deposit answer %q (%v) is not for client %s", rec.Body, err, c.id)
		}
		lic, err := fx.v.Verify(body, verify.Options{Now: now, Product: product, ClientKey: c.key.Public(), AllowUnbound: true})
		if err != nil {
			t.Fatalf("deposit accepted a body that does not verify as the client's license: %v", err)
		}
		if lic.LicenseID != a.LicenseID || lic.ClientID != c.id {
			t.Fatalf("deposit answered license %d of %s, the body is license %d of %s", a.LicenseID, a.ClientID, lic.LicenseID, lic.ClientID)
		}
		if serr != nil || !bytes.Equal(stored, body) {
			t.Fatalf("the accepted license was stored as %q (%v), not as sent", stored, serr)
		}
	})
}

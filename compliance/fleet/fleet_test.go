package fleet_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/licet/licet/compliance/fleet"
	"github.com/licet/licet/compliance/policy"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/store"
)

func newService(t *testing.T) (*fleet.Service, *x509.Certificate) {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenVendor(ctx, filepath.Join(t.TempDir(), "vendor.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fs, ok := st.(fleet.Store)
	if !ok {
		t.Fatalf("the vendor store %T keeps no compliance", st)
	}
	rk, _ := keys.GenerateSigner()
	root, err := pki.NewRoot(rk, "ACME", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := keys.GenerateSigner()
	der, err := root.IssueProvisioning(pk.Public(), "ACME", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &fleet.Service{Store: fs, Authority: &pki.Authority{Cert: cert, Signer: pk}}, root.Cert
}

// sync sends a device's report and returns the sequences of the resets the
// vendor answers with.
func sync(t *testing.T, s *fleet.Service, root *x509.Certificate, dev string, rep policy.Report) []uint64 {
	t.Helper()
	raw, _ := json.Marshal(rep)
	_, files, err := s.OnSync(context.Background(), dev, raw)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, f := range files {
		r, err := policy.OpenReset([]byte(f), root, dev, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, r.Sequence)
	}
	return seqs
}

// TestResetsNotReplayedToALostState: a device whose supervisor state was
// lost reports reset sequence 0; the vendor must not send it the resets it
// applied before, which would lift, unasked, the tampering that losing the
// state is. A reset made after that is delivered.
func TestResetsNotReplayedToALostState(t *testing.T) {
	s, root := newService(t)
	ctx := context.Background()
	dev := "dev-1"
	if got := sync(t, s, root, dev, policy.Report{Mode: "compliant", Score: 100}); len(got) != 0 {
		t.Fatalf("no resets made, yet sent %v", got)
	}
	for range 2 {
		if _, err := s.Reset(ctx, dev, "support call"); err != nil {
			t.Fatal(err)
		}
	}
	if got := sync(t, s, root, dev, policy.Report{Mode: "nonoperational", Score: 10}); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("resets sent to a device that applied none: %v, want [1 2]", got)
	}
	if got := sync(t, s, root, dev, policy.Report{Mode: "compliant", Score: 100, ResetSequence: 2}); len(got) != 0 {
		t.Fatalf("resets sent after the device applied them: %v", got)
	}
	// The state is lost: the supervisor reports what it can, sequence 0.
	if got := sync(t, s, root, dev, policy.Report{Mode: "unknown"}); len(got) != 0 {
		t.Fatalf("old resets replayed to a device that lost its state: %v", got)
	}
	if got := sync(t, s, root, dev, policy.Report{Mode: "nonoperational", Score: 0}); len(got) != 0 {
		t.Fatalf("old resets replayed to a device whose state restarted: %v", got)
	}
	if _, err := s.Reset(ctx, dev, "support checked the device"); err != nil {
		t.Fatal(err)
	}
	if got := sync(t, s, root, dev, policy.Report{Mode: "unknown"}); len(got) != 1 || got[0] != 3 {
		t.Fatalf("a new reset for a device that lost its state: %v, want [3]", got)
	}
}

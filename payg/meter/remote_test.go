package meter_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/hwid"
	"github.com/licet/licet/internal/paygtest"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/payg/meter"
)

func TestRegisterAndSync(t *testing.T) {
	v := newVendor(t)
	sv, srv := paygtest.NewVendor(t, &paygtest.PKI{Root: v.root, Prov: v.prov, Chain: v.chain})
	sv.Codes["CODE-1"] = 3600
	sig, _ := keys.GenerateSigner()
	dec, _ := keys.GenerateDecrypter()
	fp, err := hwid.Collect(paygtest.FakeHardware(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "payg")
	m := meter.New(dir, meter.Options{Root: v.root.Cert, Decrypter: dec})
	rem := &meter.Remote{Server: srv.URL}
	ctx := context.Background()
	dk := meter.DeviceKeys{Signer: sig, Decrypter: dec, Fingerprint: fp}

	if _, _, err := rem.Register(ctx, m, "WRONG", dk, v.root.Cert); !errs.Is(err, errs.NotFound) {
		t.Fatalf("unknown code: %v", err)
	}
	reg, applied, err := rem.Register(ctx, m, "CODE-1", dk, v.root.Cert)
	if err != nil || len(applied) != 1 || reg.DeviceID != "dev-1" {
		t.Fatalf("register: %+v %v %v", reg, applied, err)
	}
	if st := m.Status(); st.BalanceSeconds != 3600 || st.DeviceID != "dev-1" || st.Account != "acct-1" {
		t.Fatalf("after register: %+v", st)
	}
	if _, _, err := rem.Register(ctx, m, "CODE-1", dk, v.root.Cert); !errs.Is(err, errs.Conflict) {
		t.Fatalf("register twice: %v", err)
	}

	sv.Sell("dev-1", 600)
	sv.Sell("dev-1", 60)
	applied, err = rem.Sync(ctx, m, sig)
	if err != nil || len(applied) != 2 {
		t.Fatalf("sync: %v %v", applied, err)
	}
	st := m.Status()
	if st.BalanceSeconds != 4260 || st.LastSync == nil || st.HighestSequence != 3 {
		t.Fatalf("after sync: %+v", st)
	}
	if applied, err = rem.Sync(ctx, m, sig); err != nil || len(applied) != 0 {
		t.Fatalf("second sync: %v %v", applied, err)
	}
	if got := sv.Reports[len(sv.Reports)-1]; got.HighestSequence != 3 {
		t.Fatalf("report %+v", got)
	}
	// A stolen device key without the initialization key gets nothing.
	thief := meter.New(filepath.Join(t.TempDir(), "payg"), meter.Options{Root: v.root.Cert, Decrypter: dec})
	if err := thief.Init(*reg, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	if _, err := rem.Sync(ctx, thief, sig); !errs.Is(err, errs.Unauthenticated) {
		t.Fatalf("sync without the initialization key: %v", err)
	}
	// A certificate for other keys is refused at registration.
	sv.Codes["CODE-2"] = 0
	other, _ := keys.GenerateSigner()
	m2 := meter.New(filepath.Join(t.TempDir(), "payg"), meter.Options{Root: newVendor(t).root.Cert, Decrypter: dec})
	if _, _, err := rem.Register(ctx, m2, "CODE-2", meter.DeviceKeys{Signer: other, Decrypter: dec, Fingerprint: fp}, newVendor(t).root.Cert); !errs.Is(err, errs.Invalid) {
		t.Fatalf("certificate from another root: %v", err)
	}
}

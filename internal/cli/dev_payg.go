package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/licet/licet/agent"
	"github.com/licet/licet/api"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/payg/billing"
	"github.com/licet/licet/payg/keypad"
	"github.com/licet/licet/payg/keypadvendor"
	"github.com/licet/licet/payg/meter"
	"github.com/licet/licet/payg/openpaygo"
	"github.com/licet/licet/payg/provisioning"
)

// The pay-as-you-go demo of licet dev: an account of the demo customer, two
// plans, a connected device registered with a sale's code, and a keypad
// device for offline tokens. Each lives in a directory of the dev data
// directory, named here.
const (
	devPaygAccount   = "demo-payg"
	devPaygPlan      = "demo-hour"  // the device's first credit: one hour
	devPaygTopUp     = "demo-10min" // what the banner sells it next: 600 seconds
	devPaygDevice    = "payg-device"
	devPaygHardware  = "payg-device-hw" // the demo device's own (fake) hardware
	devKeypadSerial  = "DEMO-KEYPAD-1"
	devKeypadDevice  = "keypad-device"
	devPaygSaleIdemp = "licet-dev-demo-device"
)

// devPaygInfo is what the banner prints of the pay-as-you-go demo.
type devPaygInfo struct {
	DeviceID string // the connected demo device
	Dir      string // its agent data directory
	HWRoot   string // the hardware it reads (--hw-root)
	Keypad   string // the keypad device's agent data directory
}

// devPayg makes the pay-as-you-go demo through the vendor API at vendorURL,
// as a vendor and a device would, unless an earlier run made it: the
// account and plans, a sale of a new device and the registration of an
// agent directory with its code (the device gets the sale's hour of
// credit), and a keypad device set up with the key the vendor exports.
// An older dev directory without the demo gets it on its next run.
func devPayg(ctx context.Context, vendorURL, vendorToken, data string) (*devPaygInfo, error) {
	info := &devPaygInfo{Dir: filepath.Join(data, devPaygDevice), HWRoot: filepath.Join(data, devPaygHardware), Keypad: filepath.Join(data, devKeypadDevice)}
	vc := &api.Client{BaseURL: vendorURL, Token: vendorToken}
	m := meter.New(filepath.Join(info.Dir, paygDir), meter.Options{})
	if !m.Registered() {
		if err := devPaygRegister(ctx, vc, info); err != nil {
			return nil, errs.Wrap(errs.KindOf(err), err, "set up the pay-as-you-go demo device (remove %s and %s to try again)", info.Dir, info.HWRoot)
		}
	}
	reg, err := m.Registration()
	if err != nil {
		return nil, err
	}
	info.DeviceID = reg.DeviceID
	if _, err := os.Stat(filepath.Join(info.Keypad, keypad.ConfigFile)); errors.Is(err, fs.ErrNotExist) {
		if err := devKeypad(ctx, vc, info.Keypad); err != nil {
			return nil, errs.Wrap(errs.KindOf(err), err, "set up the keypad demo device")
		}
	}
	return info, nil
}

// devPaygRegister sells the demo device and registers it.
func devPaygRegister(ctx context.Context, vc *api.Client, info *devPaygInfo) error {
	ignoreTaken := func(err error) error {
		if errs.Is(err, errs.Conflict) {
			return nil
		}
		return err
	}
	if _, err := vc.AddPaygAccount(ctx, billing.AccountRequest{ID: devPaygAccount, Customer: devCustomer, Name: "Demo pay-as-you-go", Currency: "EUR"}, ""); ignoreTaken(err) != nil {
		return err
	}
	if _, err := vc.AddPaygPlan(ctx, billing.PlanRequest{ID: devPaygPlan, Name: "One hour", Hours: 1, Price: "200", Currency: "EUR"}, ""); ignoreTaken(err) != nil {
		return err
	}
	if _, err := vc.AddPaygPlan(ctx, billing.PlanRequest{ID: devPaygTopUp, Name: "Ten minutes", Seconds: 600, Price: "50", Currency: "EUR"}, ""); ignoreTaken(err) != nil {
		return err
	}
	// One idempotency key: a run interrupted after the sale gets the same
	// code again, not a second sale.
	sale, err := vc.Sell(ctx, provisioning.SellRequest{Account: devPaygAccount, Plan: devPaygPlan, NewDevice: true}, devPaygSaleIdemp)
	if err != nil {
		return err
	}
	// The demo device has hardware of its own, so that an agent registered
	// on this machine later is not taken for it (or for its clone).
	if err := devFakeHardware(info.HWRoot); err != nil {
		return err
	}
	id, err := agent.LoadWith(info.Dir, agent.LoadOptions{HWRoot: info.HWRoot})
	if errs.Is(err, errs.NotFound) {
		id, err = agent.Init(info.Dir, agent.InitOptions{HWRoot: info.HWRoot})
	}
	if err != nil {
		return err
	}
	rootPEM, err := vc.Root(ctx)
	if err != nil {
		return err
	}
	if err := id.PinRoot(rootPEM); err != nil {
		return err
	}
	root, err := parseRootPEM(rootPEM)
	if err != nil {
		return err
	}
	m := meter.New(filepath.Join(info.Dir, paygDir), meter.Options{Root: root, Decrypter: id.Decrypter})
	_, _, err = (&meter.Remote{Server: vc.BaseURL}).Register(ctx, m, sale.Code,
		meter.DeviceKeys{Signer: id.Signer, Decrypter: id.Decrypter, Fingerprint: id.Hardware}, root)
	return err
}

// devFakeHardware writes a machine ID and a DMI product UUID under dir
// (what hwid reads with --hw-root), unless they are there.
func devFakeHardware(dir string) error {
	mid := filepath.Join(dir, "etc", "machine-id")
	if _, err := os.Stat(mid); err == nil {
		return nil
	}
	b := make([]byte, 16)
	rand.Read(b)
	id := hex.EncodeToString(b)
	dmi := filepath.Join(dir, "sys", "class", "dmi", "id")
	for _, d := range []string{filepath.Dir(mid), dmi} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return errs.Wrap(errs.Internal, err, "create the demo device's hardware in %s", dir)
		}
	}
	uuid := id[0:8] + "-" + id[8:12] + "-" + id[12:16] + "-" + id[16:20] + "-" + id[20:32]
	if err := os.WriteFile(filepath.Join(dmi, "product_uuid"), []byte(uuid+"\n"), 0o644); err != nil {
		return errs.Wrap(errs.Internal, err, "write the demo device's hardware")
	}
	if err := os.WriteFile(mid, []byte(id+"\n"), 0o644); err != nil {
		return errs.Wrap(errs.Internal, err, "write the demo device's hardware")
	}
	return nil
}

// devKeypad registers the demo keypad device with the vendor (a random key,
// values in days), exports its key as the factory would, and sets up the
// keypad in dir with it.
func devKeypad(ctx context.Context, vc *api.Client, dir string) error {
	if _, err := vc.RegisterKeypadDevice(ctx, keypadvendor.Registration{Serial: devKeypadSerial, Divider: 1}); err != nil && !errs.Is(err, errs.Conflict) {
		return err
	}
	sec, err := vc.ExportKeypadDevice(ctx, devKeypadSerial)
	if err != nil {
		return err
	}
	key, err := openpaygo.ParseKey(sec.Key)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "the vendor exported a bad key for %s", devKeypadSerial)
	}
	return keypad.Setup(dir, keypad.Config{Key: key, StartingCode: sec.StartingCode, TimeDivider: max(sec.Divider, 1), Restricted: sec.Restricted})
}

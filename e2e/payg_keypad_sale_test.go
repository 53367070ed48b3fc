package e2e

import (
	"strings"
	"testing"

	"github.com/licet/licet/payg/keypadvendor"
	"github.com/licet/licet/payg/openpaygo"
	"github.com/licet/licet/payg/provisioning"
	"github.com/licet/licet/store/postgres"
)

func TestPaygKeypadSaleSQLite(t *testing.T)   { testPaygKeypadSale(t, "") }
func TestPaygKeypadSalePostgres(t *testing.T) { testPaygKeypadSale(t, postgres.TestDSN(t)) }

// testPaygKeypadSale sells plans to a keypad device through the CLI against
// a real 'licet vendor serve': the sale prints the device's token (which
// the OpenPAYGO decoder accepts as ADD_TIME of the plan's days times the
// divider), a retry with the same --idempotency-key prints the same token
// and posts nothing, and an until-date plan is refused with its reason.
func testPaygKeypadSale(t *testing.T, db string) {
	t.Parallel()
	v := newVendor(t, db)
	ok(t, v.admin("vendor", "account", "add", "--customer", "acme", "--currency", "EUR", "--id", "acme-eur")...)
	ok(t, v.admin("vendor", "plan", "add", "--id", "week", "--days", "7", "--price", "500", "--currency", "EUR")...)
	ok(t, v.admin("vendor", "plan", "add", "--id", "day", "--hours", "36", "--price", "100", "--currency", "EUR")...)
	ok(t, v.admin("vendor", "plan", "add", "--id", "season", "--until", "2099-01-01", "--price", "900", "--currency", "EUR")...)
	ok(t, v.admin("vendor", "token", "device", "add", "--serial", "SHS-7", "--divider", "2")...)
	var sec keypadSecret
	okJSON(t, &sec, v.admin("vendor", "token", "device", "export", "--device", "SHS-7")...)
	k, err := openpaygo.ParseKey(sec.Key)
	if err != nil {
		t.Fatal(err)
	}
	dev := openpaygo.Device{Key: k, StartingCode: sec.StartingCode}

	var sale provisioning.SellAnswer
	okJSON(t, &sale, v.admin("vendor", "sell", "--account", "acme-eur", "--plan", "week", "--keypad-device", "SHS-7", "--idempotency-key", "shop-42", "--json")...)
	if sale.Token == nil || sale.Sale.KeypadDevice != "SHS-7" {
		t.Fatalf("keypad sale printed no token: %+v", sale)
	}
	res, err := openpaygo.Decode(dev, sale.Token.Token, keypadvendor.InitialCount, nil, false)
	if err != nil || res.Status != openpaygo.Valid || res.Type != openpaygo.AddTime || res.Value != 14 {
		t.Fatalf("the device decodes %s as %+v (%v); want a valid ADD_TIME of 14 (7 days, divider 2)", sale.Token.Token, res, err)
	}
	// The retry prints the same token; the text form shows it too.
	text := ok(t, v.admin("vendor", "sell", "--account", "acme-eur", "--plan", "week", "--keypad-device", "SHS-7", "--idempotency-key", "shop-42")...)
	if !strings.Contains(text, sale.Token.Token) || !strings.Contains(text, sale.Sale.ID) {
		t.Fatalf("retried sale printed another answer:\n%s\nwant token %s of sale %s", text, sale.Token.Token, sale.Sale.ID)
	}
	fails(t, 3, "Idempotency-Key", v.admin("vendor", "sell", "--account", "acme-eur", "--plan", "day", "--keypad-device", "SHS-7", "--idempotency-key", "shop-42")...)
	if out := ok(t, v.admin("vendor", "account", "show", "--account", "acme-eur", "--json")...); !strings.Contains(out, `"balance": 500`) && !strings.Contains(out, `"balance":500`) {
		t.Fatalf("balance after one sale and its retry is not 500:\n%s", out)
	}

	// 36 hours on two units a day: 3 units (rounded down from 3.0).
	var day provisioning.SellAnswer
	okJSON(t, &day, v.admin("vendor", "sell", "--account", "acme-eur", "--plan", "day", "--keypad-device", "SHS-7", "--json")...)
	if res, _ := openpaygo.Decode(dev, day.Token.Token, sale.Token.Count, nil, false); res.Status != openpaygo.Valid || res.Value != 3 {
		t.Fatalf("36 hours on divider 2: %+v, want ADD_TIME 3", res)
	}
	fails(t, 3, "until a date", v.admin("vendor", "sell", "--account", "acme-eur", "--plan", "season", "--keypad-device", "SHS-7")...)
	fails(t, 3, "keypad_device.*SHS-9.*not registered", v.admin("vendor", "sell", "--account", "acme-eur", "--plan", "week", "--keypad-device", "SHS-9")...)
	fails(t, 2, "exactly one of", v.admin("vendor", "sell", "--account", "acme-eur", "--plan", "week", "--keypad-device", "SHS-7", "--new-device")...)
	var devs []keypadvendor.Device
	okJSON(t, &devs, v.admin("vendor", "token", "device", "list", "--json")...)
	if len(devs) != 1 || devs[0].LastCount != day.Token.Count {
		t.Fatalf("keypad devices %+v: want SHS-7 at count %d (the retry and the refused sales issued nothing)", devs, day.Token.Count)
	}
}

package policy_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/compliance/policy"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/paygtest"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func TestParseExampleYAMLAndJSON(t *testing.T) {
	b, err := os.ReadFile("../../examples/compliance/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d, err := policy.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != 1 || len(d.Policies) != 8 || d.Policy("vendor").Days != 14 || d.Policy("vendor").Grace.D() != 24*time.Hour || d.SanctionSessionLimit.D() != 30*time.Minute {
		t.Fatalf("%+v", d)
	}
	j, err := policy.Parse([]byte(`{"version": 2, "policies": [{"id": "c", "check": "command", "weight": 5, "fix": "x", "command": ["true"]}]}`))
	if err != nil || j.Thresholds.Sanction != policy.DefaultSanction || j.Policies[0].Timeout.D() != policy.DefaultCommandTimeout {
		t.Fatalf("%+v %v", j, err)
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	ok := "version: 1\npolicies:\n  - {id: a, check: credit, weight: 1, fix: top up}\n"
	for _, c := range []struct{ doc, field string }{
		{"policies:\n  - {id: a, check: credit, weight: 1, fix: f}\n", "version"},
		{ok + "  - {id: a, check: credit, weight: 1, fix: f}\n", "policies[1].id"},
		{ok + "  - {id: b, check: nope, weight: 1, fix: f}\n", "policies[1].check"},
		{ok + "  - {id: b, check: credit, weight: 0, fix: f}\n", "policies[1].weight"},
		{ok + "  - {id: b, check: credit, weight: 1}\n", "policies[1].fix"},
		{ok + "  - {id: b, check: vendor_reached, weight: 1, fix: f}\n", "policies[1].days"},
		{ok + "  - {id: b, check: command, weight: 1, fix: f}\n", "policies[1].command"},
		{ok + "  - {id: b, check: binary_hashes, weight: 1, fix: f, hashes: {agent: abc}}\n", "policies[1].hashes[agent]"},
		{ok + "thresholds: {sanction: 50, nonoperational: 60}\n", "thresholds.nonoperational"},
		{ok + "thresholds: {sanction: 95, nonoperational: 10, margin: 10}\n", "thresholds.margin"},
		{ok + "  - {id: b, check: credit, weight: 1, fix: f, grace: soon}\n", "soon"},
		{ok + "colour: blue\n", "colour"},
	} {
		_, err := policy.Parse([]byte(c.doc))
		if !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%q: want an error naming %s, got %v", c.doc, c.field, err)
		}
	}
}

func TestSignOpen(t *testing.T) {
	v := paygtest.NewPKI(t, t0)
	d, _ := policy.Parse([]byte("version: 3\npolicies:\n  - {id: a, check: credit, weight: 1, fix: top up}\n"))
	text, err := policy.Sign(d, v.Prov.Signer, v.Chain)
	if err != nil {
		t.Fatal(err)
	}
	got, err := policy.Open(text, v.Root.Cert, t0)
	if err != nil || got.Version != 3 {
		t.Fatalf("%+v %v", got, err)
	}
	other := paygtest.NewPKI(t, t0)
	if _, err := policy.Open(text, other.Root.Cert, t0); err == nil {
		t.Fatal("a bundle verified under another root")
	}
	// A reset packet is not a bundle, and a bundle not a reset.
	r, _ := policy.MakeReset(policy.Reset{DeviceID: "d", Sequence: 1, Issued: t0}, v.Prov.Signer, v.Chain)
	if _, err := policy.Open(r, v.Root.Cert, t0); err == nil {
		t.Fatal("a reset opened as a bundle")
	}
	if _, err := policy.OpenReset(text, v.Root.Cert, "d", t0); err == nil {
		t.Fatal("a bundle opened as a reset")
	}
	bs, rs := policy.Blocks(append(append([]byte("x\n"), text...), r...))
	if len(bs) != 1 || len(rs) != 1 {
		t.Fatalf("blocks %d %d", len(bs), len(rs))
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("version: 1\npolicies:\n  - {id: a, check: credit, weight: 1, fix: top up}\n"))
	f.Add([]byte(`{"version": 1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := policy.Parse(b)
		if err == nil {
			if err := d.Validate(); err != nil {
				t.Fatalf("Parse accepted what Validate refuses: %v", err)
			}
		}
	})
}

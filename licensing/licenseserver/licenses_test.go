package licenseserver

import (
	"testing"
	"time"
)

// TestLicenseEntriesSupersede: a temporary license is superseded by a live
// seat of the same product held by its client or by another client on its
// system; not by a seat of another product, of another machine, whose pack
// has expired, or released from its machine (matched by client only).
func TestLicenseEntriesSupersede(t *testing.T) {
	now := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	past, future := now.Add(-time.Hour), now.Add(24*time.Hour)
	temp := func(id int64, client, system, product string) *Assignment {
		return &Assignment{LicenseID: id, ClientID: client, SystemID: system, ProductID: product, Expires: &future, Temporary: true}
	}
	seats := []*Assignment{
		{LicenseID: 1, ClientID: "c1", SystemID: "s1", ProductID: "app"},                                        // c1's own seat
		{LicenseID: 2, ClientID: "c2b", SystemID: "s2", ProductID: "app", Expires: &future},                     // another key on c2's machine
		{LicenseID: 3, ClientID: "c3", SystemID: "s3", ProductID: "other"},                                      // another product
		{LicenseID: 4, ClientID: "c4", SystemID: "s4", ProductID: "app", Expires: &past},                        // pack expired
		{LicenseID: 5, ClientID: "c5b", SystemID: ReleasedSystemID, ProductID: "app"},                           // released
		{LicenseID: 6, ClientID: "c6", SystemID: "s6", ProductID: "app", UpgradePackID: "up", UpgradedFrom: 16}, // upgraded, own client
	}
	temps := []*Assignment{
		temp(101, "c1", "s1", "app"), temp(102, "c2", "s2", "app"), temp(103, "c3", "s3", "app"),
		temp(104, "c4", "s4", "app"), temp(105, "c5", ReleasedSystemID, "app"), temp(106, "c6", "s6", "app"), temp(107, "c7", "s7", "app"),
	}
	want := map[int64]int64{101: 1, 102: 2, 103: 0, 104: 0, 105: 0, 106: 6, 107: 0}
	got := licenseEntries(nil, temps, seats, now)
	if len(got) != len(temps) {
		t.Fatalf("%d entries, want %d", len(got), len(temps))
	}
	for _, e := range got {
		if e.Kind != KindTemporary || e.SupersededBy != want[e.LicenseID] {
			t.Errorf("temporary license %d: kind %s, superseded by %d; want temporary, superseded by %d", e.LicenseID, e.Kind, e.SupersededBy, want[e.LicenseID])
		}
		if e.NotAfter == nil || !e.NotAfter.Equal(future) {
			t.Errorf("temporary license %d ends %v, want %s", e.LicenseID, e.NotAfter, future)
		}
	}
	// Both lists, by license ID, with their kinds.
	all := licenseEntries(seats, temps[:1], seats, now)
	kinds := []string{KindPermanent, KindPermanent, KindPermanent, KindPermanent, KindPermanent, KindUpgraded, KindTemporary}
	for i, e := range all {
		if e.Kind != kinds[i] || (i > 0 && all[i-1].LicenseID >= e.LicenseID) {
			t.Fatalf("entry %d: license %d kind %s, want %s in license ID order", i, e.LicenseID, e.Kind, kinds[i])
		}
	}
}

package catalog_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/licet/licet/distribution/catalog"
	"github.com/licet/licet/distribution/disttest"
	"github.com/licet/licet/distribution/tufmeta"
)

// hookStore runs before once, the first time the latest version of role is
// read: another publisher that gets in between.
type hookStore struct {
	catalog.Store
	role   string
	before func()
}

func (h *hookStore) LatestDistMeta(ctx context.Context, customer, group, role string) (*catalog.Meta, error) {
	if f := h.before; f != nil && role == h.role {
		h.before = nil
		f()
	}
	return h.Store.LatestDistMeta(ctx, customer, group, role)
}

func named(t *testing.T, m *catalog.Meta, file string) int64 {
	t.Helper()
	var md struct {
		Signed struct {
			Meta map[string]struct{ Version int64 } `json:"meta"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(m.Body, &md); err != nil {
		t.Fatal(err)
	}
	return md.Signed.Meta[file].Version
}

// Two publishers of one group (two vendor replicas): A signs its snapshot,
// then B publishes completely before A reads the timestamp version. A's
// timestamp must not name an older snapshot than B's did, or every device
// that saw B's timestamp refuses the group's metadata as a rollback until
// the timestamp is re-signed.
func TestConcurrentPublishKeepsVersionsRising(t *testing.T) {
	w := disttest.New(t)
	ctx := t.Context()
	w.Bundle("g1", w.Release("1.0", []byte("#!/bin/sh\necho 1\n")))
	a := *w.Cat
	var seen int64
	a.Store = &hookStore{Store: w.Cat.Store, role: tufmeta.RoleTimestamp, before: func() {
		if _, err := w.Cat.Publish(ctx, "acme", "g1", 24*time.Hour); err != nil {
			t.Fatal(err)
		}
		ts, err := w.Cat.Store.LatestDistMeta(ctx, "acme", "g1", tufmeta.RoleTimestamp)
		if err != nil {
			t.Fatal(err)
		}
		seen = named(t, ts, "snapshot.json") // what a device checking now trusts
	}}
	if _, err := a.Publish(ctx, "acme", "g1", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	ts, err := w.Cat.Store.LatestDistMeta(ctx, "acme", "g1", tufmeta.RoleTimestamp)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := w.Cat.Store.LatestDistMeta(ctx, "acme", "g1", tufmeta.RoleSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	if got := named(t, ts, "snapshot.json"); got < seen || got != snap.Version {
		t.Fatalf("the latest timestamp names snapshot version %d; the one before named %d and the latest snapshot is %d", got, seen, snap.Version)
	}
}

// The same one step earlier: B re-signs the snapshot of the targets it read
// while A publishes new targets; B's snapshot must not name older targets
// than A's.
func TestConcurrentPublishKeepsTargetsRising(t *testing.T) {
	w := disttest.New(t)
	ctx := t.Context()
	w.Bundle("g1", w.Release("1.0", []byte("#!/bin/sh\necho 1\n")))
	b := *w.Cat
	var seen int64
	b.Store = &hookStore{Store: w.Cat.Store, role: tufmeta.RoleSnapshot, before: func() {
		if _, err := w.Cat.Publish(ctx, "acme", "g1", 24*time.Hour); err != nil {
			t.Fatal(err)
		}
		snap, err := w.Cat.Store.LatestDistMeta(ctx, "acme", "g1", tufmeta.RoleSnapshot)
		if err != nil {
			t.Fatal(err)
		}
		seen = named(t, snap, "targets.json")
	}}
	// A timestamp valid for a year is due at once: B re-signs without new targets.
	if _, _, _, err := b.Fresh(ctx, "acme", "g1", 365*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	snap, err := w.Cat.Store.LatestDistMeta(ctx, "acme", "g1", tufmeta.RoleSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := w.Cat.Store.LatestDistMeta(ctx, "acme", "g1", tufmeta.RoleTargets)
	if err != nil {
		t.Fatal(err)
	}
	if got := named(t, snap, "targets.json"); got < seen || got != tg.Version {
		t.Fatalf("the latest snapshot names targets version %d; the one before named %d and the latest targets are %d", got, seen, tg.Version)
	}
}

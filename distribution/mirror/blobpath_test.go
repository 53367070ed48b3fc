package mirror_test

import (
	"strings"
	"testing"

	"github.com/licet/licet/distribution/catalog"
	"github.com/licet/licet/distribution/disttest"
	"github.com/licet/licet/distribution/tufmeta"
	"github.com/licet/licet/errs"
)

// twoBundles gives group g1 release 1.0, then 2.0, each carried to the site
// by an export file; it returns 1.0.
func twoBundles(t *testing.T, w *disttest.World) *catalog.Release {
	t.Helper()
	old := w.Release("1.0", []byte("#!/bin/sh\necho 1\n"))
	w.Bundle("g1", old)
	w.Transfer()
	w.Bundle("g1", w.Release("2.0", []byte("#!/bin/sh\necho 2\n")))
	w.Transfer()
	return old
}

// A device that checked just before a sync still gets the artifact it saw,
// although the site never saw the targets versions the vendor signed in
// between (here the bundle's own, before the export re-signed them).
func TestBlobPathServesThePreviousBundle(t *testing.T) {
	w := disttest.New(t)
	old := twoBundles(t, w)
	if _, err := w.Mir.BlobPath(t.Context(), "g1", old.Artifacts[0].SHA256); err != nil {
		t.Fatalf("the previous bundle's artifact: %v", err)
	}
}

// BlobPath looks for an artifact in the older targets by text; a name that
// is no SHA-256 but matches that text must be refused, not made into a path.
func TestBlobPathRefusesNonHashes(t *testing.T) {
	w := disttest.New(t)
	ctx := t.Context()
	old := twoBundles(t, w)
	sha := old.Artifacts[0].SHA256
	for v := int64(1); ; v++ {
		body, err := w.Mir.Store.SiteDistMeta(ctx, "g1", tufmeta.RoleTargets, v)
		if errs.Is(err, errs.NotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		// The hash, its closing quote and what follows up to the next quote.
		_, rest, _ := strings.Cut(string(body), `"sha256":"`+sha+`"`)
		forged := sha + `"` + rest[:strings.Index(rest, `"`)]
		if p, err := w.Mir.BlobPath(ctx, "g1", forged); !errs.Is(err, errs.Invalid) {
			t.Fatalf("BlobPath(%q) = %q, %v; want an Invalid error", forged, p, err)
		}
		return
	}
}

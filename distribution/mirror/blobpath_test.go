package mirror_test

import (
	"testing"

	"github.com/licet/licet/distribution/catalog"
	"github.com/licet/licet/distribution/disttest"
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

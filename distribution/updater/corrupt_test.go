package updater_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/licet/licet/distribution/blobstore"
	"github.com/licet/licet/distribution/catalog"
	"github.com/licet/licet/distribution/updater"
)

// A download that went bad on the device's disk after it was checked (a
// crash before the data reached the disk, a failing disk) fails the install
// once; the next run downloads it again instead of failing on it forever.
func TestCorruptDownloadFetchedAgain(t *testing.T) {
	w := newWorld(t)
	rel := w.Release("1.0", script("one"))
	w.Bundle("g1", rel)
	w.Transfer()
	u := w.device("dev-g1", w.Site.URL)
	a := rel.Artifacts[0]
	dl := blobstore.Dir(filepath.Join(u.Dir, "update", "downloads"))
	if err := os.MkdirAll(filepath.Dir(dl.Path(a.SHA256)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dl.Path(a.SHA256), bytes.Repeat([]byte{0}, int(a.Size)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Apply(t.Context(), updater.Options{}); !errors.Is(err, blobstore.ErrMismatch) {
		t.Fatalf("first apply: %v, want a mismatch", err)
	}
	res, err := u.Apply(t.Context(), updater.Options{})
	if err != nil || res.Status != catalog.StatusInstalled {
		t.Fatalf("second apply: %v %+v", err, res)
	}
}

package clearinghouse

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/pki"
)

// ExportRoot moves the root key of the vendor data directory dir to the file
// out, for offline storage: it writes out (never over an existing file),
// reads it back and checks that it holds the root key whole, and only then
// removes the key from dir. The issuing CA must exist first, since it
// certifies sites once the root key is gone; a root made before the issuing
// CA existed cannot be taken offline this way.
func ExportRoot(dir, out string) error {
	if out == "" {
		return errs.E(errs.Usage, "-o: name the file to write the root key to (on removable media, kept offline)")
	}
	if _, err := os.Stat(filepath.Join(dir, fileConfig)); err != nil {
		return errs.Wrap(errs.Invalid, err, "%s is not a vendor data directory (run 'licet vendor init --data %s' first)", dir, dir)
	}
	keyPath := filepath.Join(dir, fileRootKey)
	raw, err := os.ReadFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return errs.E(errs.NotFound, "%s holds no root key: it was exported already, keep the exported file offline", dir)
	}
	if err != nil {
		return errs.Wrap(errs.Internal, err, "read %s", keyPath)
	}
	key, err := keys.LoadSigner(keyPath)
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "%s is not a readable root key; nothing was exported", keyPath)
	}
	rootDER, err := ReadCertFile(filepath.Join(dir, fileRootCert))
	if err != nil {
		return err
	}
	root, err := pki.ParseRoot(rootDER)
	if err != nil {
		return err
	}
	if !key.Public().Equal(root.PublicKey) {
		return errs.E(errs.Invalid, "%s does not belong to %s; nothing was exported", keyPath, fileRootCert)
	}
	issDER, err := ReadCertFile(filepath.Join(dir, fileIssuingCert))
	if err != nil {
		if !pki.CanHoldIssuing(root) {
			return errs.E(errs.Invalid, "root %s was made by an older licet (path length %d) and certifies sites itself, so it cannot go offline; nothing was exported", pki.Fingerprint(root.Raw)[:16], root.MaxPathLen)
		}
		return errs.E(errs.Invalid, "%s has no issuing CA yet: start 'licet vendor serve --data %s' once (it makes one), then export the root key", dir, dir)
	}
	if _, err := pki.VerifyIssuing([][]byte{issDER}, root, time.Now()); err != nil {
		return errs.Wrap(errs.Invalid, err, "the issuing CA in %s does not verify; nothing was exported", dir)
	}
	if err := writeNew(out, raw); err != nil {
		return errs.Wrap(errs.Invalid, err, "write the root key to %s; nothing was removed", out)
	}
	back, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(back, raw) {
		return errs.E(errs.Internal, "%s does not read back as written; the root key stays in %s: check the medium and export again to another file", out, dir)
	}
	if again, err := keys.LoadSigner(out); err != nil || !again.Public().Equal(root.PublicKey) {
		return errs.E(errs.Internal, "%s does not read back as the root key; the root key stays in %s: export again to another file", out, dir)
	}
	if err := os.Remove(keyPath); err != nil {
		return errs.Wrap(errs.Internal, err, "remove %s after exporting it to %s; remove it by hand", keyPath, out)
	}
	return nil
}

// writeNew writes data to a new file path (never over an existing one) and
// syncs it. It does without the hard link of fsutil.CreateExclusive, which
// the FAT file systems of USB sticks do not offer.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// RootOffline reports whether the service runs without the root key.
func (s *Service) RootOffline() bool { return s.Root.Signer == nil }

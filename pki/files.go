package pki

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/fsutil"
	"github.com/licet/licet/keys"
)

// LoadOrIssue returns the CA kept in keyPath and certPath (the vendor's
// online CAs below the root: the issuing CA, the provisioning CA), making what
// is missing: the key (created exclusively, so that processes starting
// together end up with one key, the winner's) and its certificate, which
// issue makes; issue is nil when the root key is not at hand, and a missing
// certificate is then an error that says so. check verifies the certificate,
// old or new (against the root, for its role), and returns it parsed.
func LoadOrIssue(keyPath, certPath string, issue func(pub ed25519.PublicKey) ([]byte, error), check func(der []byte) (*x509.Certificate, error)) (*Authority, error) {
	der, err := ReadCertFile(certPath)
	missing := errors.Is(err, fs.ErrNotExist)
	if err != nil && !missing {
		return nil, errs.Wrap(errs.Internal, err, "read %s", certPath)
	}
	if missing && issue == nil {
		return nil, errs.E(errs.Internal, "%s is missing and the root key is not in the data directory to certify it; bring the root key back (the file 'licet vendor root export' wrote) as root.key and start again", certPath)
	}
	signer, err := keys.LoadSigner(keyPath)
	if errors.Is(err, fs.ErrNotExist) && missing {
		fresh, gerr := keys.GenerateSigner()
		if gerr != nil {
			return nil, gerr
		}
		if serr := fresh.Save(keyPath); serr != nil {
			if signer, err = keys.LoadSigner(keyPath); err != nil { // another process saved one
				return nil, errs.Wrap(errs.Internal, serr, "create the key %s; check that the data directory is writable", keyPath)
			}
		} else {
			signer, err = fresh, nil
		}
	}
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "load the key %s", keyPath)
	}
	if missing {
		if der, err = issue(signer.Public()); err != nil {
			return nil, errs.Wrap(errs.Internal, err, "certify the key %s", keyPath)
		}
		if err := fsutil.WriteFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			return nil, errs.Wrap(errs.Internal, err, "write %s", certPath)
		}
	}
	cert, err := check(der)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "%s does not verify; remove it (and its key %s) to have a new one issued while the root key is present", certPath, keyPath)
	}
	if !signer.Public().Equal(cert.PublicKey) {
		return nil, errs.E(errs.Internal, "%s does not certify %s; remove the certificate to have it issued again while the root key is present", certPath, keyPath)
	}
	return &Authority{Cert: cert, Signer: signer}, nil
}

// ReadCertFile reads one certificate from a PEM (CERTIFICATE block) or DER file.
func ReadCertFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(data); blk != nil {
		return blk.Bytes, nil
	}
	return data, nil
}

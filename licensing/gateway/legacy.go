package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/verify"
)

// LegacyPath is where a gateway serves the legacy license store's endpoints
// (PUT, GET and DELETE); see "Legacy clients" in the package documentation.
const LegacyPath = "/v1/legacy/license"

// legacyCacheSize bounds the stored licenses a LegacyStore keeps in memory
// (about 2 kB each); others are read from the directory when needed.
const legacyCacheSize = 1 << 14

// maxLegacyFile bounds a deposited license file: the largest file whose
// base64 fits in a Licet-License header, as the deposit is checked as a
// signed request presenting it (a license file is about 2 kB).
var maxLegacyFile = int64(base64.StdEncoding.DecodedLen(maxLicenseHeader))

// legacyTempPrefix starts the names of a LegacyStore's temporary files; a
// client ID never starts with it.
const legacyTempPrefix = ".tmp-"

// LegacyStore is the legacy license store: the licenses of clients that
// cannot keep a license file, deposited by the clients themselves and kept
// at the gateway, one file per client ID in a directory of its own. See
// "Legacy clients" in the package documentation. One gateway process owns a
// directory: the store caches what it read and wrote.
type LegacyStore struct {
	dir string
	wmu sync.Mutex // serializes changes to dir

	mu sync.RWMutex
	m  map[string]*legacyEntry // by client ID
}

// legacyEntry is a stored license.
type legacyEntry struct {
	header string // the license file as deposited, base64, as a Licet-License header would carry it
}

// NewLegacyStore opens the legacy license store in dir, creating the
// directory (mode 0700) if it is missing. Licenses stored there before, by
// an earlier gateway process, are kept.
func NewLegacyStore(dir string) (*LegacyStore, error) {
	if dir == "" {
		return nil, errs.E(errs.Invalid, "legacy license store: no directory given")
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return nil, errs.E(errs.Invalid, "the legacy license store %s is not a directory", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "create the legacy license store %s", dir)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "open the legacy license store %s", dir)
	}
	if !fi.IsDir() {
		return nil, errs.E(errs.Invalid, "the legacy license store %s is not a directory", dir)
	}
	// Temporary files of a deposit interrupted by a crash.
	if ents, err := os.ReadDir(dir); err == nil {
		for _, de := range ents {
			if strings.HasPrefix(de.Name(), legacyTempPrefix) {
				os.Remove(filepath.Join(dir, de.Name()))
			}
		}
	}
	return &LegacyStore{dir: dir, m: make(map[string]*legacyEntry)}, nil
}

// validClientID reports whether s has the form of a client ID, "client-" and
// 16 lowercase hex digits (verify.ClientID), and so is safe as a file name.
func validClientID(s string) bool {
	const prefix = "client-"
	if len(s) != len(prefix)+16 || !strings.HasPrefix(s, prefix) {
		return false
	}
	for i := len(prefix); i < len(s); i++ {
		if ch := s[i]; !('0' <= ch && ch <= '9' || 'a' <= ch && ch <= 'f') {
			return false
		}
	}
	return true
}

// load returns the stored license of a client, or nil if there is none.
func (s *LegacyStore) load(clientID string) (*legacyEntry, error) {
	if !validClientID(clientID) {
		return nil, nil
	}
	s.mu.RLock()
	e := s.m[clientID]
	s.mu.RUnlock()
	if e != nil {
		return e, nil
	}
	// A miss reads the file under the write mutex, so that no put or remove
	// completes between the read and the caching: a license deleted (or
	// replaced) meanwhile must not be cached as it was read.
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.RLock()
	e = s.m[clientID]
	s.mu.RUnlock()
	if e != nil {
		return e, nil // read or stored meanwhile
	}
	pem, err := os.ReadFile(filepath.Join(s.dir, clientID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	e = &legacyEntry{header: base64.StdEncoding.EncodeToString(pem)}
	s.mu.Lock()
	s.cache(clientID, e)
	s.mu.Unlock()
	return e, nil
}

// cache records e; s.mu is held.
func (s *LegacyStore) cache(clientID string, e *legacyEntry) {
	if len(s.m) >= legacyCacheSize {
		for k := range s.m { // drop an arbitrary one; it is read again when needed
			delete(s.m, k)
			break
		}
	}
	s.m[clientID] = e
}

// put stores the license of a client atomically: a temporary file, synced,
// renamed over the old one, and the directory synced. It reports whether it
// replaced a stored license.
func (s *LegacyStore) put(clientID string, pem []byte) (replaced bool, err error) {
	if !validClientID(clientID) {
		return false, errs.E(errs.Invalid, "%q is not a client ID", clientID)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.write(clientID, pem)
}

// replaceIf replaces the stored license of a client with pem if what is
// stored is still old (a Licet-License header value, the base64 of the
// file), as one change: a license the client deposited or removed since is
// left as it is. It reports whether it replaced the license.
func (s *LegacyStore) replaceIf(clientID, old string, pem []byte) (bool, error) {
	if !validClientID(clientID) {
		return false, errs.E(errs.Invalid, "%q is not a client ID", clientID)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.RLock()
	cur := s.m[clientID]
	s.mu.RUnlock()
	if cur == nil { // not cached: read it
		b, err := os.ReadFile(filepath.Join(s.dir, clientID))
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		cur = &legacyEntry{header: base64.StdEncoding.EncodeToString(b)}
	}
	if cur.header != old {
		return false, nil
	}
	_, err := s.write(clientID, pem)
	return err == nil, err
}

// write does the work of put; s.wmu is held.
func (s *LegacyStore) write(clientID string, pem []byte) (replaced bool, err error) {
	path := filepath.Join(s.dir, clientID)
	if _, err := os.Lstat(path); err == nil {
		replaced = true
	}
	f, err := os.CreateTemp(s.dir, legacyTempPrefix+clientID+"-*")
	if err != nil {
		return false, err
	}
	tmp := f.Name()
	fail := func(err error) (bool, error) {
		f.Close()
		os.Remove(tmp)
		return false, err
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := f.Write(pem); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return false, err
	}
	syncDir(s.dir)
	e := &legacyEntry{header: base64.StdEncoding.EncodeToString(pem)}
	s.mu.Lock()
	s.cache(clientID, e)
	s.mu.Unlock()
	return replaced, nil
}

// remove deletes the stored license of a client; it reports whether there
// was one.
func (s *LegacyStore) remove(clientID string) (bool, error) {
	if !validClientID(clientID) {
		return false, nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	delete(s.m, clientID)
	s.mu.Unlock()
	err := os.Remove(filepath.Join(s.dir, clientID))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	syncDir(s.dir)
	return true, nil
}

// syncDir makes a rename or removal in dir durable (where the system allows
// syncing a directory).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// checkLegacy checks a signed request without a Licet-License header,
// whose signature is p, against the license its keyid deposited in the
// legacy store: exactly as a signed request presenting that license.
func (c *checker) checkLegacy(r *http.Request, now time.Time, p signature) (*entry, *bodyReader, *failure) {
	if !validClientID(p.keyid) {
		return nil, nil, c.fail(reasonInvalidSignature, "the keyid %q of the request's signature is not a client ID (\"client-\" and 16 lowercase hex digits)", p.keyid)
	}
	le, err := c.legacy.load(p.keyid)
	if err != nil {
		return nil, nil, &failure{err: errs.Wrap(errs.Internal, err, "read the legacy license store")}
	}
	if le == nil {
		return nil, nil, c.fail(reasonRequired, "no license of client %s is kept at this gateway and the request carries no %s header: "+
			"%s, then deposit it with a signed PUT %s (or send it in the %s header)",
			p.keyid, HeaderLicense, c.where, LegacyPath, HeaderLicense)
	}
	e, body, f := c.checkSigned(r, now, le.header, p)
	if f != nil && f.reason == reasonExpired {
		if c.upgrade == nil {
			f = c.fail(reasonExpired, "the license of client %s kept at this gateway has expired: %s, then deposit it again with a signed PUT %s",
				p.keyid, c.where, LegacyPath)
		} else {
			// The refusal may be a failed upgrade: keep its reason.
			f = c.fail(reasonExpired, "the license of client %s kept at this gateway: %s; then deposit the new license with a signed PUT %s",
				p.keyid, errs.PublicMessage(f.err), LegacyPath)
		}
	}
	if f == nil && e.update != "" && e.lic.ClientID == p.keyid {
		// The stored license was upgraded on the way: store the new one, as
		// a deposit would, so that the next request uses it and the license
		// server is not asked again. Unless the client deposited or removed
		// its license meanwhile. A failure to write leaves the old license,
		// which the next request upgrades again.
		_, _ = c.legacy.replaceIf(p.keyid, le.header, licensePEM(e.lic))
	}
	return e, body, f
}

// Handler returns the handler of the legacy store's endpoints, to be served
// at LegacyPath (it answers whatever path it is mounted on; the signature
// covers the path):
//
//   - PUT deposits the license file (PEM) in the body, signed with
//     Licet-Signature by the license's key and without Licet-License;
//   - GET returns the stored license file of the client;
//   - DELETE removes it.
//
// GET and DELETE take any credential the gateway takes: usually a signed
// request with only Licet-Signature, checked against the stored license. The
// license must be for opts.Product; opts.Legacy is ignored (the store is s).
// The handler has a nonce memory of its own. It panics if v is nil or
// opts.Product is empty.
func (s *LegacyStore) Handler(v *verify.Verifier, opts Options) http.Handler {
	// The store's endpoints never exchange a license with the license
	// server: a deposit of a license that has expired or is older than
	// opts.MinVersion is refused (license_expired, old_version), as is a GET
	// or DELETE with such a stored license. Upgrades happen on the way to the
	// application, which then stores the new license (checkLegacy).
	opts.Upgrade = nil
	c := newChecker(v, opts)
	c.legacy = s
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPut:
			s.deposit(c, w, r)
		case http.MethodGet, http.MethodHead:
			s.show(c, w, r)
		case http.MethodDelete:
			s.delete(c, w, r)
		default:
			w.Header().Set("Allow", "GET, HEAD, PUT, DELETE")
			writeError(w, http.StatusMethodNotAllowed, "invalid", "the legacy license store takes PUT (deposit), GET (show) and DELETE (remove)")
		}
	})
}

// LegacyDeposit is the JSON answer to a deposit (a signed PUT of
// LegacyPath): the license kept for the client.
type LegacyDeposit struct {
	ClientID  string    `json:"client_id"`
	LicenseID int64     `json:"license_id"`
	ProductID string    `json:"product_id"`
	Expires   time.Time `json:"expires"`
	Temporary bool      `json:"temporary"`
	Replaced  bool      `json:"replaced"` // an earlier license of the client was replaced
}

func (s *LegacyStore) deposit(c *checker, w http.ResponseWriter, r *http.Request) {
	now := c.now()
	for k := range r.Trailer {
		if isLicetHeader(k) {
			writeError(w, http.StatusBadRequest, errs.Invalid.String(), "the request declares the trailer "+k+"; Licet headers cannot be sent as trailers")
			return
		}
	}
	if len(r.Header[HeaderLicense]) != 0 {
		writeError(w, http.StatusBadRequest, errs.Invalid.String(), "a deposit carries the license file (PEM) as its body, not in the "+HeaderLicense+" header; sign the PUT with "+HeaderSignature+" alone")
		return
	}
	p, signed, f := c.requestSignature(r)
	if f == nil && !signed {
		f = c.fail(reasonInvalidSignature, "a deposit needs a signature over the request by the license's key: %s, %s and %s headers (HTTP Message Signatures, RFC 9421)",
			HeaderSignatureInput, HeaderMessageSignature, HeaderContentDigest)
	}
	if f != nil {
		c.refuse(w, f)
		return
	}
	if !validClientID(p.keyid) {
		c.refuse(w, c.fail(reasonInvalidSignature, "the keyid %q of the request's signature is not a client ID (\"client-\" and 16 lowercase hex digits)", p.keyid))
		return
	}
	tooLarge := fmt.Sprintf("a license file is a few kB; the body of a deposit is at most %d bytes: send the license file (PEM) as the license server wrote it", maxLegacyFile)
	if r.ContentLength > maxLegacyFile {
		writeError(w, http.StatusRequestEntityTooLarge, errs.TooLarge.String(), tooLarge)
		return
	}
	var pem []byte
	if r.Body != nil {
		var err error
		if pem, err = io.ReadAll(io.LimitReader(r.Body, maxLegacyFile+1)); err != nil {
			writeError(w, http.StatusBadRequest, errs.Invalid.String(), "could not read the request body")
			return
		}
	}
	if int64(len(pem)) > maxLegacyFile {
		writeError(w, http.StatusRequestEntityTooLarge, errs.TooLarge.String(), tooLarge)
		return
	}
	if len(pem) == 0 {
		writeError(w, http.StatusBadRequest, errs.Invalid.String(), "the body is empty; send the license file (PEM) as the body of the PUT")
		return
	}
	// Checked exactly as a signed request presenting this license: the
	// license (vendor root, product, time), keyid = its client ID, the
	// signature by its key over this request (body included), the nonce.
	r.Body, r.ContentLength, r.TransferEncoding = io.NopCloser(bytes.NewReader(pem)), int64(len(pem)), nil
	e, _, f := c.checkSigned(r, now, base64.StdEncoding.EncodeToString(pem), p)
	if f != nil {
		c.refuse(w, f)
		return
	}
	lic := e.lic
	replaced, err := s.put(lic.ClientID, pem)
	if err != nil {
		writeError(w, http.StatusInternalServerError, errs.Internal.String(), "the gateway could not store the license; try again later")
		return
	}
	status := http.StatusCreated
	if replaced {
		status = http.StatusOK
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(LegacyDeposit{ClientID: lic.ClientID, LicenseID: lic.LicenseID, ProductID: lic.ProductID,
		Expires: lic.NotAfter.UTC(), Temporary: lic.Temporary(), Replaced: replaced})
}

func (s *LegacyStore) show(c *checker, w http.ResponseWriter, r *http.Request) {
	e, _, f := c.check(r)
	if f != nil {
		c.refuse(w, f)
		return
	}
	le, err := s.load(e.lic.ClientID)
	if err != nil {
		writeError(w, http.StatusInternalServerError, errs.Internal.String(), "the gateway could not read the legacy license store; try again later")
		return
	}
	if le == nil {
		writeError(w, http.StatusNotFound, errs.NotFound.String(), "no license of client "+e.lic.ClientID+" is kept at this gateway; deposit one with a signed PUT "+LegacyPath)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == http.MethodHead {
		return
	}
	pem, _ := base64.StdEncoding.DecodeString(le.header)
	_, _ = w.Write(pem)
}

func (s *LegacyStore) delete(c *checker, w http.ResponseWriter, r *http.Request) {
	e, _, f := c.check(r)
	if f != nil {
		c.refuse(w, f)
		return
	}
	found, err := s.remove(e.lic.ClientID)
	if err != nil {
		writeError(w, http.StatusInternalServerError, errs.Internal.String(), "the gateway could not remove the license; try again later")
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, errs.NotFound.String(), "no license of client "+e.lic.ClientID+" is kept at this gateway")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// SignLegacyRequest prepares req for a gateway with a legacy license store:
// as SignRequest, but without the Licet-License header, so that the gateway
// checks the request with the license the client deposited (or, for a PUT to
// LegacyPath with the license file as body, deposits it). signer is the key
// the license was issued to.
func SignLegacyRequest(req *http.Request, body []byte, signer Signer, now time.Time) error {
	if err := signMessage(req, body, signer, now); err != nil {
		return err
	}
	req.Header.Del(HeaderLicense)
	return nil
}

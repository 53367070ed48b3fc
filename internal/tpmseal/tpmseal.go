// Package tpmseal seals small files with a key that lives in a TPM 2.0 and
// makes a restored older copy of them visible with a TPM NV counter.
//
// The key. A random 256-bit AES key is sealed into a TPM object (a keyed-hash
// object under the storage root key that the TPM derives from its owner
// seed; attributes fixedTPM and fixedParent). Only the object's public and
// private blobs are stored on disk (Options.KeyFile); the private blob is
// encrypted under the storage root key, so it loads in this TPM only: copied
// to another machine, or after the TPM was cleared or replaced, it does not
// load. The key is unsealed over a salted session with response encryption,
// so it does not cross the TPM's bus in clear.
//
// The counter. An NV index of type counter (Options.Index) only moves
// forward (TPM2_NV_Increment), and a counter index defined anew starts at
// the highest value any counter of the TPM ever had. Every sealed blob
// records the value the counter will have once the blob is stored (the
// blob's header, authenticated with the ciphertext); Commit then advances
// the counter to it. Opening a blob whose recorded value is below the
// counter is a restored older copy: Open fails with ErrRolledBack.
//
// The order — store the blob, then increment — means a crash between the
// two leaves a blob recorded one above the counter; Open accepts it, and
// the next Seal (given that blob's value as after) records a value above
// both, so the blob before it is still detected once the next write lands.
//
// What this does not stop: root on the device can use the same TPM to
// unseal the key (no PCR policy binds it to a measured boot), so the owner
// can still forge a state by writing a program for it; a TPM that is reset
// or replaced makes every sealed blob unreadable (fail closed, not a
// silent rollback). See docs/compliance.md.
package tpmseal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/fsutil"
)

// Owner-range NV indices (TCG handle registry: 0x01800000-0x01BFFFFF) for
// licet's counters.
const (
	IndexCompliance uint32 = 0x01804C01 // the compliance supervisor's state
	IndexMeter      uint32 = 0x01804C02 // reserved for the payg meter
)

// magic starts every sealed blob.
const magic = "LICETTPM1"

// headerLen is magic, the NV index (4) and the recorded counter (8).
const headerLen = len(magic) + 4 + 8

// ErrRolledBack says a sealed blob records a counter value below the
// TPM's: it is an older copy put back (a restored snapshot).
var ErrRolledBack = errors.New("restored snapshot")

// Options say which TPM, key file and counter a Box uses.
type Options struct {
	// Path names the TPM: a device (DefaultDevice), "unix:PATH" or a unix
	// socket, or "tcp:HOST:PORT" (a simulator such as swtpm).
	Path string
	// KeyFile holds the sealed key's public and private blobs.
	KeyFile string
	// Index is the NV counter's index, in the owner range.
	Index uint32
	// Purpose binds blobs to their use: a blob sealed for one purpose
	// does not open for another.
	Purpose string
}

// Box seals and opens blobs with a TPM-held key and counter. It caches the
// unsealed key for the life of the process; it is safe for concurrent use,
// but callers serialize Seal and Commit with their own lock.
type Box struct {
	opt Options

	mu      sync.Mutex
	keyBlob []byte // the key file the cached key was unsealed from
	key     []byte
}

// New returns a Box; it does not talk to the TPM yet.
func New(opt Options) (*Box, error) {
	if opt.Path == "" || opt.KeyFile == "" || opt.Purpose == "" {
		return nil, errs.E(errs.Internal, "tpmseal: Path, KeyFile and Purpose are required")
	}
	if opt.Index < 0x01800000 || opt.Index > 0x01BFFFFF {
		return nil, errs.E(errs.Internal, "tpmseal: NV index %#x is not in the owner range 0x01800000-0x01BFFFFF", opt.Index)
	}
	return &Box{opt: opt}, nil
}

// Path is the TPM the Box uses.
func (b *Box) Path() string { return b.opt.Path }

// keyFile is the stored form of the sealed key object.
type keyFile struct {
	Version int    `json:"version"`
	Public  []byte `json:"public"`  // TPM2B_PUBLIC
	Private []byte `json:"private"` // TPM2B_PRIVATE, encrypted under the SRK
}

// with opens the TPM for fn.
func (b *Box) with(fn func(t transport.TPM) error) error {
	t, err := open(b.opt.Path)
	if err != nil {
		return err
	}
	defer t.Close()
	return fn(t)
}

// tpmFailed reports whether err is the TPM refusing a command (as opposed
// to the TPM not being reachable).
func tpmFailed(err error) bool {
	var rc tpm2.TPMRC
	var f1 tpm2.TPMFmt1Error
	return errors.As(err, &rc) || errors.As(err, &f1)
}

// srk is the storage root key: the TCG's ECC P-256 template under the
// owner hierarchy, the same every time for one owner seed.
type srk struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	pub    tpm2.TPMTPublic
}

func createSRK(t transport.TPM) (*srk, func(), error) {
	rsp, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(t)
	if err != nil {
		return nil, nil, errs.Wrap(errs.Internal, err, "create the TPM's storage root key (is the owner hierarchy protected by a password? licet needs it empty)")
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		flush(t, rsp.ObjectHandle)
		return nil, nil, errs.Wrap(errs.Internal, err, "read the TPM's storage root key")
	}
	return &srk{handle: rsp.ObjectHandle, name: rsp.Name, pub: *pub}, func() { flush(t, rsp.ObjectHandle) }, nil
}

func flush(t transport.TPM, h tpm2.TPMHandle) { tpm2.FlushContext{FlushHandle: h}.Execute(t) }

// session is a salted HMAC session that encrypts the command's first
// parameter (EncryptIn: the key given to Create) or the response's
// (EncryptOut: the key Unseal returns), so the key does not cross the bus
// in clear.
func (s *srk) session(dir tpm2.AuthOption) tpm2.Session {
	return tpm2.HMAC(tpm2.TPMAlgSHA256, 16, dir, tpm2.Salted(s.handle, s.pub))
}

// sealedKey returns the AES key: unsealed from the key file, or made and
// sealed into it when create is set and there is none.
func (b *Box) sealedKey(t transport.TPM, create bool) ([]byte, error) {
	data, err := os.ReadFile(b.opt.KeyFile)
	if errors.Is(err, fs.ErrNotExist) && create {
		return b.newKey(t)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errs.E(errs.Invalid, "the TPM-sealed key %s is missing: it was deleted", b.opt.KeyFile)
	}
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "read the TPM-sealed key")
	}
	b.mu.Lock()
	if b.key != nil && string(b.keyBlob) == string(data) {
		k := b.key
		b.mu.Unlock()
		return k, nil
	}
	b.mu.Unlock()
	var kf keyFile
	if err := json.Unmarshal(data, &kf); err != nil || kf.Version != 1 {
		return nil, errs.E(errs.Invalid, "the TPM-sealed key %s is damaged", b.opt.KeyFile)
	}
	priv, err1 := tpm2.Unmarshal[tpm2.TPM2BPrivate](kf.Private)
	pub, err2 := tpm2.Unmarshal[tpm2.TPM2BPublic](kf.Public)
	if err1 != nil || err2 != nil {
		return nil, errs.E(errs.Invalid, "the TPM-sealed key %s is damaged", b.opt.KeyFile)
	}
	s, done, err := createSRK(t)
	if err != nil {
		return nil, err
	}
	defer done()
	lr, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: s.handle, Name: s.name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    *priv, InPublic: *pub,
	}.Execute(t)
	if err != nil {
		if tpmFailed(err) {
			return nil, errs.Wrap(errs.Invalid, err, "the sealed key %s does not load in the TPM %s: it was sealed by another TPM, or this TPM was cleared or replaced", b.opt.KeyFile, b.opt.Path)
		}
		return nil, errs.Wrap(errs.Internal, err, "load the sealed key into the TPM %s", b.opt.Path)
	}
	defer flush(t, lr.ObjectHandle)
	ur, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: lr.ObjectHandle, Name: lr.Name, Auth: s.session(tpm2.AESEncryption(128, tpm2.EncryptOut))}}.Execute(t)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "unseal the key %s in the TPM %s", b.opt.KeyFile, b.opt.Path)
	}
	if len(ur.OutData.Buffer) != 32 {
		return nil, errs.E(errs.Invalid, "the key sealed in %s is not a 256-bit key", b.opt.KeyFile)
	}
	b.mu.Lock()
	b.keyBlob, b.key = data, ur.OutData.Buffer
	b.mu.Unlock()
	return ur.OutData.Buffer, nil
}

// newKey makes a key, seals it into a new TPM object and stores the
// object's blobs in the key file (never replacing one).
func (b *Box) newKey(t transport.TPM) ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "generate the sealing key")
	}
	s, done, err := createSRK(t)
	if err != nil {
		return nil, err
	}
	defer done()
	cr, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: s.handle, Name: s.name, Auth: s.session(tpm2.AESEncryption(128, tpm2.EncryptIn))},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: key}),
		}},
		InPublic: tpm2.New2B(tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgKeyedHash,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, UserWithAuth: true, NoDA: true},
		}),
	}.Execute(t)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "seal a new key in the TPM %s", b.opt.Path)
	}
	data, _ := json.Marshal(keyFile{Version: 1, Public: tpm2.Marshal(cr.OutPublic), Private: tpm2.Marshal(cr.OutPrivate)})
	if err := fsutil.CreateExclusive(b.opt.KeyFile, data, 0o600); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "store the TPM-sealed key %s", b.opt.KeyFile)
	}
	b.mu.Lock()
	b.keyBlob, b.key = data, key
	b.mu.Unlock()
	return key, nil
}

// nvIndex returns the counter's handle and name, defining it when create
// is set and it does not exist. An index that exists but is not a counter
// readable and incrementable without a password is refused.
func (b *Box) nvIndex(t transport.TPM, create bool) (tpm2.NamedHandle, error) {
	h := tpm2.TPMHandle(b.opt.Index)
	rp, err := tpm2.NVReadPublic{NVIndex: h}.Execute(t)
	if err != nil && tpmFailed(err) && create {
		def := tpm2.NVDefineSpace{
			AuthHandle: tpm2.TPMRHOwner,
			PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
				NVIndex:    h,
				NameAlg:    tpm2.TPMAlgSHA256,
				Attributes: tpm2.TPMANV{AuthWrite: true, AuthRead: true, NT: tpm2.TPMNTCounter, NoDA: true},
				DataSize:   8,
			}),
		}
		if _, err := def.Execute(t); err != nil {
			return tpm2.NamedHandle{}, errs.Wrap(errs.Internal, err, "define the NV counter %#x in the TPM %s (the owner hierarchy must have an empty password)", b.opt.Index, b.opt.Path)
		}
		rp, err = tpm2.NVReadPublic{NVIndex: h}.Execute(t)
	}
	if err != nil {
		if tpmFailed(err) {
			return tpm2.NamedHandle{}, errs.Wrap(errs.Invalid, err, "the NV counter %#x is missing from the TPM %s: it was deleted, or the TPM was cleared or replaced", b.opt.Index, b.opt.Path)
		}
		return tpm2.NamedHandle{}, errs.Wrap(errs.Internal, err, "read the NV counter %#x of the TPM %s", b.opt.Index, b.opt.Path)
	}
	pub, err := rp.NVPublic.Contents()
	if err != nil {
		return tpm2.NamedHandle{}, errs.Wrap(errs.Internal, err, "read the NV counter %#x", b.opt.Index)
	}
	a := pub.Attributes
	if a.NT != tpm2.TPMNTCounter || !a.AuthRead || !a.AuthWrite || pub.DataSize != 8 {
		return tpm2.NamedHandle{}, errs.E(errs.Invalid, "the NV index %#x of the TPM %s is not licet's counter (type %d): something else uses it, or it was replaced", b.opt.Index, b.opt.Path, a.NT)
	}
	return tpm2.NamedHandle{Handle: h, Name: rp.NVName}, nil
}

// readCounter reads the counter. A counter never incremented has no value
// yet: its first increment sets it above every counter the TPM ever had;
// with init it is incremented once first, otherwise it reads 0.
func readCounter(t transport.TPM, nv tpm2.NamedHandle, init bool) (uint64, error) {
	rp, err := tpm2.NVReadPublic{NVIndex: nv.Handle}.Execute(t)
	if err != nil {
		return 0, errs.Wrap(errs.Internal, err, "read the NV counter %#x", uint32(nv.Handle))
	}
	if pub, err := rp.NVPublic.Contents(); err == nil && !pub.Attributes.Written {
		if !init {
			return 0, nil
		}
		if err := increment(t, nv); err != nil {
			return 0, err
		}
		return readCounter(t, nv, false)
	}
	r, err := tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: nv.Handle, Name: rp.NVName, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: nv.Handle, Name: rp.NVName},
		Size:       8,
	}.Execute(t)
	if err != nil {
		return 0, errs.Wrap(errs.Internal, err, "read the NV counter %#x", uint32(nv.Handle))
	}
	if len(r.Data.Buffer) != 8 {
		return 0, errs.E(errs.Internal, "the NV counter %#x read %d bytes", uint32(nv.Handle), len(r.Data.Buffer))
	}
	return binary.BigEndian.Uint64(r.Data.Buffer), nil
}

func increment(t transport.TPM, nv tpm2.NamedHandle) error {
	rp, err := tpm2.NVReadPublic{NVIndex: nv.Handle}.Execute(t)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "read the NV counter %#x", uint32(nv.Handle))
	}
	_, err = tpm2.NVIncrement{
		AuthHandle: tpm2.AuthHandle{Handle: nv.Handle, Name: rp.NVName, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: nv.Handle, Name: rp.NVName},
	}.Execute(t)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "increment the NV counter %#x", uint32(nv.Handle))
	}
	return nil
}

// Counter returns the TPM counter's value.
func (b *Box) Counter() (uint64, error) {
	var n uint64
	err := b.with(func(t transport.TPM) error {
		nv, err := b.nvIndex(t, false)
		if err != nil {
			return err
		}
		n, err = readCounter(t, nv, false)
		return err
	})
	return n, err
}

func (b *Box) ad(hdr []byte) []byte { return append([]byte(b.opt.Purpose+"\x00"), hdr...) }

// Seal seals plain, recording a counter value above both the TPM's counter
// and after (the value recorded in the blob being replaced, 0 if none).
// The caller stores the blob, then calls commit, which advances the TPM's
// counter to the recorded value: from then on every earlier blob is a
// restored snapshot. It makes the key and the counter the first time.
//
// With advance false the blob records the counter as it is (or after, if
// after is ahead), and commit has nothing to do: for writes that change
// nothing worth protecting, so that the TPM's NV memory, which wears and
// is rate-limited, is written only when it matters. A blob replaced that
// way can be put back undetected until the next advancing write.
func (b *Box) Seal(plain []byte, after uint64, advance bool) (blob []byte, counter uint64, commit func() error, err error) {
	err = b.with(func(t transport.TPM) error {
		key, err := b.sealedKey(t, true)
		if err != nil {
			return err
		}
		nv, err := b.nvIndex(t, true)
		if err != nil {
			return err
		}
		cur, err := readCounter(t, nv, true)
		if err != nil {
			return err
		}
		counter = max(cur, after)
		if advance {
			counter++
		}
		hdr := make([]byte, 0, headerLen)
		hdr = append(hdr, magic...)
		hdr = binary.BigEndian.AppendUint32(hdr, b.opt.Index)
		hdr = binary.BigEndian.AppendUint64(hdr, counter)
		g := aead(key)
		nonce := make([]byte, g.NonceSize())
		rand.Read(nonce)
		blob = g.Seal(append(hdr, nonce...), nonce, plain, b.ad(hdr))
		return nil
	})
	if err != nil {
		return nil, 0, nil, err
	}
	commit = func() error {
		return b.with(func(t transport.TPM) error {
			nv, err := b.nvIndex(t, false)
			if err != nil {
				return err
			}
			for range 3 { // at most two increments are due: counter <= cur+2 unless after ran ahead
				cur, err := readCounter(t, nv, false)
				if err != nil || cur >= counter {
					return err
				}
				if err := increment(t, nv); err != nil {
					return err
				}
			}
			cur, err := readCounter(t, nv, false)
			if err == nil && cur < counter {
				err = errs.E(errs.Internal, "the NV counter %#x is at %d, below the %d just sealed", b.opt.Index, cur, counter)
			}
			return err
		})
	}
	return blob, counter, commit, nil
}

// Recorded returns the counter value a blob records, without opening it
// (0 for a blob that is not one of ours).
func Recorded(blob []byte) uint64 {
	if len(blob) < headerLen || string(blob[:len(magic)]) != magic {
		return 0
	}
	return binary.BigEndian.Uint64(blob[len(magic)+4 : headerLen])
}

// Open opens a blob and checks its recorded counter against the TPM's: a
// value below it is a restored snapshot (errs.Invalid wrapping
// ErrRolledBack); one above it by more than two (writes whose increment was
// interrupted) means the counter was replaced (errs.Invalid).
// A blob that does not open under the key is errs.Invalid; a TPM that
// cannot be reached is errs.Internal.
func (b *Box) Open(blob []byte) (plain []byte, counter uint64, err error) {
	if len(blob) < headerLen || string(blob[:len(magic)]) != magic {
		return nil, 0, errs.E(errs.Invalid, "the sealed file is not sealed by a TPM (or is damaged)")
	}
	hdr := blob[:headerLen]
	if idx := binary.BigEndian.Uint32(hdr[len(magic):]); idx != b.opt.Index {
		return nil, 0, errs.E(errs.Invalid, "the sealed file records the NV counter %#x, not %#x", idx, b.opt.Index)
	}
	counter = Recorded(blob)
	err = b.with(func(t transport.TPM) error {
		key, err := b.sealedKey(t, false)
		if err != nil {
			return err
		}
		g := aead(key)
		rest := blob[headerLen:]
		if len(rest) < g.NonceSize() {
			return errs.E(errs.Invalid, "the sealed file is cut short")
		}
		plain, err = g.Open(nil, rest[:g.NonceSize()], rest[g.NonceSize():], b.ad(hdr))
		if err != nil {
			return errs.E(errs.Invalid, "the sealed file does not open under the TPM-sealed key: it was changed or replaced")
		}
		nv, err := b.nvIndex(t, false)
		if err != nil {
			return err
		}
		cur, err := readCounter(t, nv, false)
		if err != nil {
			return err
		}
		switch {
		case counter < cur:
			return errs.Wrap(errs.Invalid, ErrRolledBack, "the sealed file records TPM counter %d but the TPM's counter %#x is at %d: an older copy was put back (restored snapshot)", counter, b.opt.Index, cur)
		case counter > cur+2:
			return errs.E(errs.Invalid, "the sealed file records TPM counter %d but the TPM's counter %#x is at %d: the counter was deleted and defined again, or the file comes from another TPM", counter, b.opt.Index, cur)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return plain, counter, nil
}

func aead(key []byte) cipher.AEAD {
	c, err := aes.NewCipher(key)
	if err != nil {
		panic(fmt.Sprintf("tpmseal: %v", err))
	}
	g, err := cipher.NewGCM(c)
	if err != nil {
		panic(fmt.Sprintf("tpmseal: %v", err))
	}
	return g
}

// Package challenge is the platform challenge of the grant flow (licensing
// seed, Figs. 5-7): the license server sends a client a 128-bit random
// challenge; the client answers SHA-256(challenge ‖ its executable image ‖
// challenge); the server recomputes the answer from its reference image for
// the client's software ID and compares the two in constant time.
//
// Images can be hundreds of megabytes, so Answer streams: it never holds the
// image in memory. Challenges must be exactly Size bytes: an empty or short
// challenge would let a client answer from a precomputed hash.
package challenge

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"io"
	"os"
	"sync"

	"github.com/licet/licet/errs"
)

// Size is the length of a challenge in bytes (128 bits).
const Size = 16

// AnswerSize is the length of an answer in bytes.
const AnswerSize = sha256.Size

// Challenge is a 128-bit random challenge. Its text form (JSON, logs) is 32
// lower-case hex digits.
type Challenge [Size]byte

// New returns a fresh random challenge.
func New() Challenge {
	var c Challenge
	rand.Read(c[:]) // never fails: crypto/rand.Read panics on failure instead
	return c
}

// Bytes returns the challenge as a slice, for Answer and Check.
func (c Challenge) Bytes() []byte { return c[:] }

// String returns the hex form.
func (c Challenge) String() string { return hex.EncodeToString(c[:]) }

// MarshalText implements encoding.TextMarshaler with the hex form.
func (c Challenge) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; see Parse.
func (c *Challenge) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// Parse reads the hex form of a challenge.
func Parse(s string) (Challenge, error) {
	var c Challenge
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != Size {
		return c, errs.E(errs.Invalid, "challenge %q is not %d hex digits", s, 2*Size)
	}
	copy(c[:], b)
	return c, nil
}

func checkLen(ch []byte) error {
	if len(ch) != Size {
		return errs.E(errs.Invalid, "challenge is %d bytes; it must be %d", len(ch), Size)
	}
	return nil
}

// bufSize is the read buffer of Answer: large enough that the per-read
// overhead disappears next to hashing. Buffers are pooled, so a server
// answering many challenges does not allocate one per answer.
const bufSize = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// Answer returns SHA-256(ch ‖ image ‖ ch), reading image to its end in
// fixed-size pieces. ch must be Size bytes.
func Answer(ch []byte, image io.Reader) ([]byte, error) {
	if err := checkLen(ch); err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write(ch)
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	// io.CopyBuffer would prefer image's WriteTo (an *os.File has one) and
	// ignore buf; only the hash's Write is needed here.
	if _, err := io.CopyBuffer(h, struct{ io.Reader }{image}, *buf); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "read the image for the challenge answer")
	}
	h.Write(ch)
	return h.Sum(nil), nil
}

// AnswerFile is Answer over the file at path.
func AnswerFile(ch []byte, path string) ([]byte, error) {
	if err := checkLen(ch); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "open image %s for the challenge answer", path)
	}
	defer f.Close()
	return Answer(ch, f)
}

// Check recomputes the answer to ch from the reference image and reports
// whether answer equals it, comparing in constant time. A malformed answer
// (wrong length) is simply wrong; an error means the challenge was malformed
// or the image could not be read.
func Check(ch, answer []byte, image io.Reader) (bool, error) {
	want, err := Answer(ch, image)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(want, answer) == 1, nil
}

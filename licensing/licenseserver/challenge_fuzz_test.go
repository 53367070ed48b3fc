package licenseserver

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"testing"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
)

// FuzzOpenChallenge feeds arbitrary challenge IDs, client IDs and products
// to openChallenge, the opener of the sealed IDs NewChallenge hands out: it
// must not panic; an ID it refuses is an error of kind Invalid; an ID it
// opens is, byte for byte, the one ID the test sealed, for the client and
// product it was sealed for, and gives back its answer, software ID and
// expiry. Another spelling of a sealed ID must not open: a grant consumes
// a challenge by its ID, one guess per challenge.
func FuzzOpenChallenge(f *testing.F) {
	signer, err := keys.GenerateSigner()
	if err != nil {
		f.Fatal(err)
	}
	s := &Server{ID: &Identity{Signer: signer}}
	const (
		clientID = "client-56475aa75463474c"
		product  = "app"
		sid      = uint32(0x01000137)
	)
	expires := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	nonce := bytes.Repeat([]byte{0x5a}, 16)
	answer := bytes.Repeat([]byte{0xa5}, 32)
	// As NewChallenge seals it.
	body := append([]byte(nil), nonce...)
	body = binary.BigEndian.AppendUint32(body, sid)
	body = binary.BigEndian.AppendUint64(body, uint64(expires.Unix()))
	raw := s.challengeAEAD().Seal(body, nil, answer, challengeAD(body, clientID, product))
	valid := "ch-" + base64.RawURLEncoding.EncodeToString(raw)
	if a, _, _, err := s.openChallenge(valid, clientID, product); err != nil || !bytes.Equal(a, answer) {
		f.Fatalf("the valid seed does not open: %v", err)
	}

	f.Add(valid, clientID, product)
	f.Add(valid, "client-56475aa75463474d", product)
	f.Add(valid, clientID, "app2")
	f.Add(valid, clientID+"\x00", product[:0]) // the separator moved
	f.Add(valid[:len(valid)-1], clientID, product)
	f.Add(valid+"A", clientID, product)
	f.Add("ch-"+base64.RawStdEncoding.EncodeToString(raw), clientID, product)
	f.Add("ch-"+base64.URLEncoding.EncodeToString(raw), clientID, product)
	f.Add(valid[3:], clientID, product)
	f.Add("ch-", "", "")
	// Other spellings of the valid ID (regressions: base64 decoding ignores
	// CR and LF, and the bits of the last character beyond the 88 bytes).
	f.Add(valid[:20]+"\n"+valid[20:], clientID, product)
	f.Add(valid[:20]+"\r\n"+valid[20:]+"\n", clientID, product)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := bytes.IndexByte([]byte(alphabet), valid[len(valid)-1])
	f.Add(valid[:len(valid)-1]+alphabet[i^1:i^1+1], clientID, product) // an unused bit set
	f.Fuzz(func(t *testing.T, id, client, prod string) {
		a, gotSID, gotExp, err := s.openChallenge(id, client, prod)
		if err != nil {
			if a != nil || gotSID != 0 || !gotExp.IsZero() {
				t.Fatalf("openChallenge returned values with the error %v", err)
			}
			if k := errs.KindOf(err); k != errs.Invalid {
				t.Fatalf("openChallenge(%q) refused it with an error of kind %s, not invalid: %v", id, k, err)
			}
			return
		}
		if id != valid || client != clientID || prod != product {
			t.Fatalf("openChallenge opened %q for client %q and product %q; only %q for %q and %q was sealed", id, client, prod, valid, clientID, product)
		}
		if !bytes.Equal(a, answer) || gotSID != sid || !gotExp.Equal(expires) {
			t.Fatalf("openChallenge gave answer %x, software ID %#x, expiry %s; sealed %x, %#x, %s", a, gotSID, gotExp, answer, sid, expires)
		}
	})
}

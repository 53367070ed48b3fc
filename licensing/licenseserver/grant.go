package licenseserver

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/envelope"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/challenge"
	"github.com/licet/licet/licensing/clientimage"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/licensing/softid"
	"github.com/licet/licet/verify"
)

// The license file a client receives: an armored LICENSE block holding a
// Sealed document, encrypted to the client's HPKE key, whose plaintext is the
// license PEM (license certificate, then site certificate).
const (
	TypeLicense    = "licet.license"
	LicenseVersion = 1
)

// LicenseBackdate is how long before the grant a license's validity starts,
// so that a client whose clock is a little behind the site's accepts it.
const LicenseBackdate = 5 * time.Minute

// ChallengeTTL is how long a platform challenge may be answered.
const ChallengeTTL = 2 * time.Minute

func (s *Server) imagePath(sum []byte) string {
	return filepath.Join(s.ID.Dir, "images", hex.EncodeToString(sum))
}

// AddImage registers a reference client image after checking the vendor's
// signature file over it. The image is copied into the data directory.
func (s *Server) AddImage(ctx context.Context, sigFile []byte, image io.Reader) (*Image, error) {
	if err := s.ID.RequireCertified(); err != nil {
		return nil, err
	}
	m, err := clientimage.Read(sigFile, s.ID.Root(), s.Now())
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(s.ID.Dir, "images")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "create image directory")
	}
	tmp, err := os.CreateTemp(dir, ".incoming-*")
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "store image")
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	sum, size, err := clientimage.Hash(io.TeeReader(image, tmp))
	if err != nil {
		return nil, err
	}
	if sum != m.SHA256 || size != m.Size {
		return nil, errs.E(errs.Invalid, "image does not match its signature (SHA-256 %s…, %d bytes; signed %s…, %d bytes): it was modified, or it is another file", sum[:16], size, m.SHA256[:16], m.Size)
	}
	if err := tmp.Sync(); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "store image")
	}
	raw, _ := hex.DecodeString(sum)
	if err := os.Rename(tmp.Name(), s.imagePath(raw)); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "store image")
	}
	img := &Image{SoftwareID: m.SoftwareID, Name: m.Name, SHA256: raw, Size: size, Added: s.Now().UTC()}
	if err := s.Store.PutImage(ctx, img); err != nil {
		return nil, err
	}
	if ps := s.pool.Load(); ps != nil {
		if err := ps.reload(ctx); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// ChallengeRequest starts a grant: the client names its software ID, the
// product it wants and its public signing key.
type ChallengeRequest struct {
	SoftwareID uint32 `json:"software_id"`
	ProductID  string `json:"product_id"`
	ClientKey  []byte `json:"client_key"` // Ed25519 public key
}

// ChallengeResponse is the platform challenge the client must answer.
type ChallengeResponse struct {
	ChallengeID string    `json:"challenge_id"`
	Nonce       []byte    `json:"challenge"` // 128 random bits
	Expires     time.Time `json:"expires"`
}

// NewChallenge answers a challenge request with a precomputed pair of the
// pool of the client's image: nothing is hashed here. A software ID without
// a reference image is rejected (NotFound); an empty pool gives a
// *PoolEmptyError (Exhausted, with a retry delay). The challenge is
// stateless: its ID carries the nonce, the software ID and the expiry, and
// the expected answer sealed (AES-256-GCM) under a key derived from the site
// key, bound to the client and product; any process of the site opens it.
// It is consumed when it is first answered, right or wrong.
func (s *Server) NewChallenge(ctx context.Context, req ChallengeRequest) (*ChallengeResponse, error) {
	if err := s.ID.CheckCurrent(s.Now()); err != nil {
		return nil, err
	}
	if len(req.ClientKey) != ed25519.PublicKeySize {
		return nil, errs.E(errs.Invalid, "client_key must be a %d-byte Ed25519 public key", ed25519.PublicKeySize)
	}
	if req.ProductID == "" {
		return nil, errs.E(errs.Invalid, "product_id is required")
	}
	if err := softid.ID(req.SoftwareID).Check(); err != nil {
		return nil, err
	}
	if err := s.allowChallenge(ctx, verify.ClientID(req.ClientKey), s.Now()); err != nil {
		return nil, err
	}
	ps, err := s.challengePools(ctx)
	if err != nil {
		return nil, err
	}
	ps.busy.Add(1)
	defer ps.busy.Add(-1)
	pr, err := ps.take(ctx, req.SoftwareID)
	if err != nil {
		return nil, err
	}
	expires := s.Now().UTC().Add(ChallengeTTL).Truncate(time.Second)
	body := make([]byte, 0, challengeIDLen)
	body = append(body, pr.nonce[:]...)
	body = binary.BigEndian.AppendUint32(body, req.SoftwareID)
	body = binary.BigEndian.AppendUint64(body, uint64(expires.Unix()))
	id := s.challengeAEAD().Seal(body, nil, pr.answer[:], challengeAD(body, verify.ClientID(req.ClientKey), req.ProductID))
	return &ChallengeResponse{ChallengeID: "ch-" + base64.RawURLEncoding.EncodeToString(id), Nonce: pr.nonce[:], Expires: expires}, nil
}

// challengeBodyLen is the clear part of a decoded challenge ID: nonce,
// software ID and expiry (Unix seconds); challengeIDLen adds the sealed
// answer (a 12-byte random GCM nonce, the answer and a 16-byte tag).
const (
	challengeBodyLen = challenge.Size + 4 + 8
	challengeIDLen   = challengeBodyLen + 12 + challenge.AnswerSize + 16
)

// challengeAEAD is the AEAD that seals expected answers into challenge IDs.
func (s *Server) challengeAEAD() cipher.AEAD {
	s.sealOnce.Do(func() {
		key, err := hkdf.Key(sha256.New, s.ID.Signer.Private().Seed(), nil, "licet/v2 challenge seal", 32)
		if err != nil {
			panic(err) // HKDF-SHA256 fails only for absurd lengths
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			panic(err) // a 32-byte key is always an AES key
		}
		if s.seal, err = cipher.NewGCMWithRandomNonce(block); err != nil {
			panic(err)
		}
	})
	return s.seal
}

// challengeAD binds a challenge to the client and product it was made for.
func challengeAD(body []byte, clientID, product string) []byte {
	ad := make([]byte, 0, len(body)+2+len(clientID)+len(product))
	ad = append(ad, body...)
	ad = append(ad, 0)
	ad = append(ad, clientID...)
	ad = append(ad, 0)
	return append(ad, product...)
}

// openChallenge checks a challenge ID made by NewChallenge for this client
// and product and returns the expected answer.
func (s *Server) openChallenge(id, clientID, product string) (answer []byte, sid uint32, expires time.Time, err error) {
	// Only the spelling NewChallenge gives opens: a grant consumes a
	// challenge by its ID, and base64 decoding ignores CR and LF and the
	// unused bits of the last character, which would make other IDs of one
	// challenge (another guess at its answer each).
	raw, derr := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(id, "ch-"))
	if derr != nil || len(raw) != challengeIDLen || id != "ch-"+base64.RawURLEncoding.EncodeToString(raw) {
		return nil, 0, time.Time{}, refuse(ReasonChallengeInvalid, errs.E(errs.Invalid, "rejected: %q is not a challenge of this license server; request a new challenge", id))
	}
	body := raw[:challengeBodyLen]
	answer, oerr := s.challengeAEAD().Open(nil, nil, raw[challengeBodyLen:], challengeAD(body, clientID, product))
	if oerr != nil {
		return nil, 0, time.Time{}, refuse(ReasonChallengeInvalid, errs.E(errs.Invalid, "rejected: the grant request does not match the challenge: it was made for another client key or product, by another license server, or altered; request a new challenge"))
	}
	return answer, binary.BigEndian.Uint32(body[16:20]), time.Unix(int64(binary.BigEndian.Uint64(body[20:28])), 0).UTC(), nil
}

// GrantRequest answers a challenge and asks for the license. Signature is the
// client key's signature over GrantMessage, proving the client holds the key
// the license will be bound to.
type GrantRequest struct {
	ChallengeID   string `json:"challenge_id"`
	Answer        []byte `json:"answer"` // SHA-256(challenge | image | challenge)
	ClientKey     []byte `json:"client_key"`
	ClientHPKEKey []byte `json:"client_hpke_key"` // the license is encrypted to it
	SystemID      string `json:"system_id"`
	ProductID     string `json:"product_id"`
	Signature     []byte `json:"signature"`
}

// GrantMessage is what the client signs in a grant request.
func GrantMessage(r *GrantRequest) []byte {
	var m []byte
	m = append(m, "licet/v1 grant\x00"...)
	for _, f := range [][]byte{[]byte(r.ChallengeID), r.Answer, r.ClientHPKEKey, []byte(r.SystemID), []byte(r.ProductID)} {
		m = append(m, f...)
		m = append(m, 0)
	}
	return m
}

// MaxSystemIDLen bounds a client's system ID, which is stored and signed
// into its license.
const MaxSystemIDLen = 128

// checkSystemID accepts what agents send (hwid: "sys-" and 16 hex digits)
// and other short printable identifiers, and the empty ID of a client that
// has none (all such clients then share one temporary license per product).
func checkSystemID(id string) error {
	if len(id) > MaxSystemIDLen {
		return errs.E(errs.Invalid, "system_id is %d characters long; at most %d are allowed", len(id), MaxSystemIDLen)
	}
	for i := 0; i < len(id); i++ {
		switch ch := id[i]; {
		case 'a' <= ch && ch <= 'z', 'A' <= ch && ch <= 'Z', '0' <= ch && ch <= '9', ch == '-', ch == '_', ch == '.', ch == ':':
		default:
			return errs.E(errs.Invalid, "system_id %q has the character %q; use letters, digits and - _ . : only", id, ch)
		}
	}
	return nil
}

// Grant is a granted license.
type Grant struct {
	Assignment *Assignment
	Reissued   bool   // an existing license of this client was returned
	File       []byte // the armored license file, encrypted to the client
}

// Grant checks a challenge answer and grants the license: the client's
// existing unexpired license again, or a new seat.
func (s *Server) Grant(ctx context.Context, req *GrantRequest) (*Grant, error) {
	if err := s.ID.CheckCurrent(s.Now()); err != nil {
		return nil, err
	}
	if len(req.ClientKey) != ed25519.PublicKeySize {
		return nil, errs.E(errs.Invalid, "client_key must be a %d-byte Ed25519 public key", ed25519.PublicKeySize)
	}
	if ps := s.pool.Load(); ps != nil {
		ps.busy.Add(1) // the pool workers give way to grants
		defer ps.busy.Add(-1)
	}
	clientID := verify.ClientID(req.ClientKey)
	want, sid, expires, err := s.openChallenge(req.ChallengeID, clientID, req.ProductID)
	if err != nil {
		return nil, err
	}
	now := s.Now().UTC()
	if !now.Before(expires) {
		return nil, refuse(ReasonChallengeExpired, errs.E(errs.Invalid, "rejected: the challenge expired at %s; request a new one", expires.Format(time.RFC3339)))
	}
	if !ed25519.Verify(req.ClientKey, GrantMessage(req), req.Signature) {
		return nil, refuse(ReasonBadSignature, errs.E(errs.Invalid, "rejected: the grant request is not signed by the client key"))
	}
	if err := checkSystemID(req.SystemID); err != nil {
		return nil, err
	}
	// Parsed once, here, and sealed to below: parsing an ML-KEM key costs
	// about a fifth of the seal.
	recipient, err := keys.ParseRecipient(req.ClientHPKEKey)
	if err != nil {
		return nil, errs.E(errs.Invalid, "client_hpke_key is not an MLKEM768-X25519 public key")
	}
	if subtle.ConstantTimeCompare(want, req.Answer) != 1 {
		// A wrong answer consumes the challenge too: one guess per challenge;
		// and it counts against the client key's wrong answers.
		s.wrongAnswer(clientID, now)
		if err := s.Store.ConsumeChallenge(ctx, req.ChallengeID, expires); err != nil {
			return nil, err
		}
		return nil, refuse(ReasonWrongAnswer, errs.E(errs.Invalid, "rejected: the challenge answer does not match the reference image of software ID %s; the client program was modified or is another revision (request a new challenge to try again)", softid.ID(sid)))
	}
	a, existing, err := s.assignLeased(ctx, SeatRequest{
		ClientID: clientID, SystemID: req.SystemID, ClientKey: req.ClientKey,
		ClientHPKE: req.ClientHPKEKey, ProductID: req.ProductID, Platform: softid.ID(sid).Platform(), Now: now,
		ChallengeID: req.ChallengeID, ChallengeExpires: expires, TemporaryFor: s.temporaryFor(req.ProductID),
		Stale: func(cert []byte) bool { return s.staleLicense(cert, now) },
	})
	if err != nil {
		return nil, err
	}
	file, err := sealLicenseTo(s.ID.LicenseChain(a.Cert), recipient)
	if err != nil {
		return nil, err
	}
	return &Grant{Assignment: a, Reissued: existing, File: file}, nil
}

// staleLicense reports whether the stored license of a live assignment is
// signed again rather than handed out as it is: it has ended by now (or
// does not parse) - a license of a live assignment ends before its pack only
// with the site certificate that signed it, so the site, renewed since,
// signs it again rather than hand out the dead one - or it ends with the
// site certificate this process replaced by a later one (see
// Identity.ReloadCertificate): it was cut short by the old certificate (one
// signed right at the swap, say), and the new one lets it run longer - or
// it names an issuer other than the current certificate's subject (the
// vendor renamed the site): it would not verify with the current chain.
func (s *Server) staleLicense(cert []byte, now time.Time) bool {
	c, err := x509.ParseCertificate(cert)
	if err != nil || !now.Before(c.NotAfter) {
		return true
	}
	cur := s.ID.Certificate()
	return cur != nil && (!bytes.Equal(c.RawIssuer, cur.Site.Cert.RawSubject) ||
		!cur.replacedEnd.IsZero() && c.NotAfter.Equal(cur.replacedEnd))
}

// temporaryFor is the validity of a temporary license of product.
func (s *Server) temporaryFor(product string) time.Duration {
	if d, ok := s.TemporaryForProduct[product]; ok {
		return d
	}
	return s.TemporaryFor
}

// signLicense makes the license certificate of an assignment from pack p
// (for an upgraded assignment, the upgrade pack).
//
// It signs with the site certificate current when it is called (one
// snapshot: a renewal swapping it meanwhile does not mix two), so a license
// signed right before a swap ends with the old certificate at the latest;
// it verifies with the new chain too (same key and name), and the client's
// next request gets it signed again (staleLicense).
func (s *Server) signLicense(a *Assignment, p *InstalledPack) ([]byte, error) {
	cert := s.ID.Certificate()
	if cert == nil {
		return nil, s.ID.RequireCertified()
	}
	site := cert.Site.Cert
	notBefore := a.Issued.Add(-LicenseBackdate)
	if notBefore.Before(site.NotBefore) {
		notBefore = site.NotBefore // a license never predates its issuer
	}
	notAfter := site.NotAfter
	if a.Expires != nil && a.Expires.Before(notAfter) {
		notAfter = *a.Expires
	}
	attrs := verify.Attributes{
		DataVersion: verify.CurrentDataVersion, LicenseID: a.LicenseID, ClientID: a.ClientID, SystemID: a.SystemID,
		PackID: a.PackID, ProductID: p.ProductID, ProductVersion: p.ProductVersion, Platform: a.Platform, Features: p.Features,
		PackStatement: p.Statement, // the sale the license must lie inside (verify.Statement.Covers)
	}
	if len(p.Statement) > 0 && p.Expires != nil && notAfter.After(*p.Expires) {
		notAfter = *p.Expires // never beyond what the vendor sold
	}
	if a.Temporary {
		attrs.Flags |= verify.FlagTemporary
	}
	if a.Upgraded() {
		attrs.PackID = a.UpgradePackID
		attrs.Flags |= verify.FlagUpgraded
	}
	der, err := cert.issuerFor(s.ID.Signer).Issue(ed25519.PublicKey(a.ClientKey), attrs, notBefore, notAfter)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "sign license %d", a.LicenseID)
	}
	return der, nil
}

// SealLicense encrypts a license chain to a client's HPKE key as an armored LICENSE file.
func SealLicense(chain [][]byte, clientHPKE []byte) ([]byte, error) {
	r, err := keys.ParseRecipient(clientHPKE)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "encrypt license to the client")
	}
	return sealLicenseTo(chain, r)
}

// sealLicenseTo is SealLicense to a key already parsed.
func sealLicenseTo(chain [][]byte, r *keys.Recipient) ([]byte, error) {
	sealed, err := envelope.SealTo(TypeLicense, LicenseVersion, r, license.EncodePEM(chain))
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "encrypt license to the client")
	}
	return armor.Encode(armor.Block{Type: armor.TypeLicense, Version: LicenseVersion, Body: sealed.Marshal()}), nil
}

// OpenLicense decrypts a LICENSE file with the client's key, giving the license PEM.
func OpenLicense(file []byte, client *keys.Decrypter) ([]byte, error) {
	blk, err := armor.Decode(file, armor.TypeLicense)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "license file rejected")
	}
	sealed, err := envelope.ParseSealed(blk.Body, TypeLicense, LicenseVersion)
	if err != nil {
		return nil, err
	}
	return sealed.Open(client)
}

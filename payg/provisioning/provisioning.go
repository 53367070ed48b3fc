// Package provisioning is the vendor's side of connected pay-as-you-go
// devices (docs/payg-protocol.md): it sells plans to accounts in the same
// transaction as their ledger posting, registers devices with the one-time
// code a device sale yields, certifies them with the provisioning key (a CA
// under the vendor root), gives each an initialization key, and makes the
// packets that carry a sale's credit to one device.
//
// A sale of a new device yields a registration code; a sale of credit to a
// registered device yields exactly one packet. Both are written in the
// transaction of the sale's posting, so a sale is never recorded without its
// code or packet, nor the other way round. Packet sequence numbers are
// allocated per device inside that transaction with one conditional update
// of the device's row, so they have no gaps under any concurrency, on SQLite
// and on PostgreSQL shared by several vendor processes.
//
// Hardware: the vendor sees a device's hwid fingerprint (salted component
// hashes, never raw serials). Two registrations are the same hardware if
// they have the same system ID (derived from the raw components, so equal
// for one machine whatever the salt) or the same salt (one installation)
// and the stored fingerprint matches the new one by hwid's tolerance rule
// (at most one component kind changed). Fingerprints of different
// installations on changed hardware cannot be compared by the vendor. The
// same hardware under another account is a clone: refused (409) and listed
// for an administrator. The fingerprint is reported by the device, so this
// separates honest machines; it does not stop a determined customer.
//
// Device requests after registration are signed by the device key AND
// carry an HMAC under the initialization key, so a stolen device
// certificate alone gets nothing; a date outside 5 minutes or a nonce seen
// before is refused.
package provisioning

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/licet/licet/envelope"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/hwid"
	"github.com/licet/licet/internal/ids"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/payg/billing"
	"github.com/licet/licet/payg/devicereq"
	"github.com/licet/licet/payg/keypadvendor"
	"github.com/licet/licet/payg/openpaygo"
	"github.com/licet/licet/payg/packet"
	"github.com/licet/licet/pki"
)

// Protocol constants (docs/payg-protocol.md).
const (
	InitKeyType    = "licet.payg.initkey" // envelope type of the sealed initialization key
	InitKeyVersion = 1
	InitKeySize    = 32
	// Skew is how far a device request's date may be from the vendor's
	// clock; nonces are remembered for as long.
	Skew = 5 * time.Minute
	// CodeTTL is how long a registration code stays valid.
	CodeTTL = 90 * 24 * time.Hour
)

// Service is the vendor's provisioning.
type Service struct {
	Store Store
	// Authority is the provisioning key and certificate (role
	// provisioning, issued by the root): it certifies devices and signs
	// packets.
	Authority *pki.Authority
	// Root is the vendor root certificate.
	Root *x509.Certificate
	// Secrets, if set, seals initialization keys and answers that hold a
	// registration code at rest; nil stores them as they are.
	Secrets billing.Sealer
	Now     func() time.Time
	// Compliance, if set, receives the compliance part of a sync.
	Compliance ComplianceHook
	// Keypad, if set, issues OpenPAYGO tokens: a sale to a keypad device
	// (SellRequest.KeypadDevice) issues the device's token in the sale's
	// transaction. Nil refuses such sales.
	Keypad *keypadvendor.Service
	// PacketVersion is the packet format version the service makes:
	// packet.VersionShared (2, AES-256-GCM under a key derived from the
	// device's initialization key; the default when 0) or
	// packet.VersionHPKE (1, sealed to the device's HPKE key, for a fleet
	// of agents that predate version 2).
	PacketVersion int

	chain [][]byte
	plans sync.Map // plan ID -> *billing.Plan (plans never change)
}

// New returns a provisioning service.
func New(st Store, authority *pki.Authority, root *x509.Certificate, secrets billing.Sealer) *Service {
	return &Service{Store: st, Authority: authority, Root: root, Secrets: secrets, Now: time.Now,
		chain: [][]byte{authority.Cert.Raw}}
}

// SellRequest is the body of POST /v1/payg/sales: a plan sold to an
// account, for a new device (NewDevice), for a registered one (Device), or
// for a keypad device (KeypadDevice: its OpenPAYGO token is issued in the
// sale's transaction).
type SellRequest struct {
	Account      string `json:"account"`
	Plan         string `json:"plan"`
	NewDevice    bool   `json:"new_device,omitempty"`
	Device       string `json:"device,omitempty"`
	KeypadDevice string `json:"keypad_device,omitempty"`
}

// SellAnswer is what a sale yields.
type SellAnswer struct {
	Sale billing.Sale `json:"sale"`
	// Code is the one-time registration code of a new device.
	Code        string     `json:"code,omitempty"`
	CodeExpires *time.Time `json:"code_expires,omitempty"`
	// Packet is the armored packet of a sale to a registered device.
	Packet   string `json:"packet,omitempty"`
	Sequence uint64 `json:"sequence,omitempty"`
	// Token is the OpenPAYGO token of a sale to a keypad device. Its text
	// is not kept: a retry with the sale's idempotency key derives the
	// same token again from its count.
	Token *keypadvendor.Issued `json:"token,omitempty"`
}

// hashCode normalises a registration code as a person may type it, and
// hashes it (as the clearinghouse does enrollment codes).
func hashCode(code string) []byte {
	norm := strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(code))
	sum := sha256.Sum256([]byte("licet payg code\x00" + norm))
	return sum[:]
}

// newCode returns a registration code: 20 base32 characters in groups of
// four (100 bits).
func newCode() string {
	raw := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(ids.Random(13))[:20]
	var parts []string
	for i := 0; i < len(raw); i += 4 {
		parts = append(parts, raw[i:i+4])
	}
	return strings.Join(parts, "-")
}

// write runs fn under the idempotency record; the answer is sealed at rest
// when Secrets is set (it may hold a registration code).
func (s *Service) write(ctx context.Context, idem billing.Idempotency, out any, fn func(tx Tx) (any, error)) (bool, error) {
	label := "answer:" + idem.Key
	answer, replayed, err := s.Store.ProvisionWrite(ctx, idem, func(tx Tx) ([]byte, error) {
		v, err := fn(tx)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(v)
		if err != nil || s.Secrets == nil || idem.Key == "" {
			return b, err
		}
		return s.Secrets.Seal(label, b)
	})
	if err != nil {
		return false, err
	}
	if s.Secrets != nil && idem.Key != "" {
		if answer, err = s.Secrets.Open(label, answer); err != nil {
			return false, err
		}
	}
	if err := json.Unmarshal(answer, out); err != nil {
		return false, errs.Wrap(errs.Internal, err, "stored answer is damaged")
	}
	return replayed, nil
}

// Sell records a sale, its posting and what it yields (a registration code
// or one packet) in one transaction.
func (s *Service) Sell(ctx context.Context, req SellRequest, idemKey string) (*SellAnswer, bool, error) {
	switch {
	case req.Account == "":
		return nil, false, errs.E(errs.Invalid, "account is required (--account)")
	case req.Plan == "":
		return nil, false, errs.E(errs.Invalid, "plan is required (--plan)")
	case countTrue(req.NewDevice, req.Device != "", req.KeypadDevice != "") != 1:
		return nil, false, errs.E(errs.Invalid, "a sale is for a new device (new_device, --new-device), a registered one (device, --device D) or a keypad device (keypad_device, --keypad-device S): give exactly one")
	case req.KeypadDevice != "" && s.Keypad == nil:
		return nil, false, errs.E(errs.Invalid, "keypad_device: this vendor server issues no keypad tokens (its keypad sealing key is not loaded); sell credit with 'licet vendor token issue' or start the server with keypad tokens")
	}
	idem, err := billing.NewIdempotency(idemKey, "sale", req)
	if err != nil {
		return nil, false, err
	}
	now := s.Now().UTC()
	saleID := ids.New("sale")
	pre := s.prebuild(ctx, req, saleID, now)
	var out SellAnswer
	replayed, err := s.write(ctx, idem, &out, func(tx Tx) (any, error) {
		a, err := tx.Account(ctx, req.Account)
		if err != nil {
			return nil, err
		}
		plan, err := tx.Plan(ctx, req.Plan)
		if err != nil {
			return nil, err
		}
		var dev *Device
		if req.Device != "" {
			if dev, err = tx.Device(ctx, req.Device); err != nil {
				return nil, err
			}
			if dev.AccountID != a.ID {
				return nil, errs.E(errs.Conflict, "device: %s belongs to account %s, not %s; sell to the device's account", dev.ID, dev.AccountID, a.ID)
			}
		}
		sale := &billing.Sale{ID: saleID, AccountID: a.ID, PlanID: plan.ID, DeviceID: req.Device, KeypadDevice: req.KeypadDevice, NewDevice: req.NewDevice,
			Price: plan.Price, Currency: plan.Currency, Created: now}
		p, err := billing.SalePosting(a, plan, sale.ID, now)
		if err != nil {
			return nil, err
		}
		sale.PostingID = p.ID
		if err := tx.Post(ctx, p); err != nil {
			return nil, err
		}
		if err := tx.InsertSale(ctx, sale); err != nil {
			return nil, err
		}
		ans := &SellAnswer{Sale: *sale}
		if req.KeypadDevice != "" {
			rec, err := tx.IssueKeypadToken(ctx, req.KeypadDevice, func(d *keypadvendor.Device) (*keypadvendor.IssuedToken, error) {
				typ, value, err := KeypadCredit(plan, d)
				if err != nil {
					return nil, err
				}
				_, rec, err := s.Keypad.NextToken(d, typ, value, "sale "+sale.ID)
				return rec, err
			})
			if errs.Is(err, errs.NotFound) {
				err = errs.Wrap(errs.NotFound, err, "keypad_device: %q is not registered; register it with 'licet vendor token device add --serial %s'", req.KeypadDevice, req.KeypadDevice)
			}
			if err != nil {
				return nil, err
			}
			ans.Token = rec.View("")
			return ans, nil
		}
		if req.NewDevice {
			code := newCode()
			exp := now.Add(CodeTTL)
			if err := tx.InsertCode(ctx, &Code{Hash: hashCode(code), AccountID: a.ID, SaleID: sale.ID, Created: now, Expires: exp}); err != nil {
				return nil, err
			}
			ans.Code, ans.CodeExpires = code, &exp
			return ans, nil
		}
		sp, err := s.appendPacket(ctx, tx, dev, plan, sale.ID, now, pre)
		if err != nil {
			return nil, err
		}
		ans.Packet, ans.Sequence = string(sp.File), sp.Sequence
		return ans, nil
	})
	if err != nil {
		return nil, false, err
	}
	if out.Token != nil {
		rec := &keypadvendor.IssuedToken{Serial: out.Token.Device, Count: out.Token.Count, Value: *out.Token.Value}
		if rec.Type, err = openpaygo.ParseType(out.Token.Type); err != nil {
			return nil, false, errs.Wrap(errs.Internal, err, "stored answer of sale %s is damaged", out.Sale.ID)
		}
		if out.Token.Token, err = s.Keypad.TokenOf(ctx, rec); err != nil {
			return nil, false, err
		}
	}
	return &out, replayed, nil
}

func countTrue(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// KeypadCredit is the OpenPAYGO token that carries plan's use to the
// keypad device d: ADD_TIME of the plan's days times the device's divider
// (its units per day). A plan of hours or seconds is converted to the
// device's units and rounded DOWN, so a device never gets use it was not
// sold (a 36-hour plan on a device of divider 1 gives 1 day; on divider 24,
// 36 units); a plan smaller than one unit is refused. A plan of use until a
// date is refused: a keypad device counts time from when its token is
// typed, which the vendor does not know, so no token carries "until a
// date" faithfully. Errors name the plan or the device and say what to do.
func KeypadCredit(plan *billing.Plan, d *keypadvendor.Device) (openpaygo.Type, int, error) {
	if plan.Kind == billing.PlanUntil {
		return 0, 0, errs.E(errs.Invalid, "plan: %s gives use until a date, which a keypad device cannot be sold (it counts time from when its token is typed); sell a plan of days or hours to keypad device %s", plan.ID, d.Serial)
	}
	secs := plan.Seconds()
	units := secs / 86400 * int64(d.Divider)
	if plan.Kind != billing.PlanDays {
		units = secs * int64(d.Divider) / 86400
	}
	most := int64(openpaygo.MaxValue)
	if d.Extended {
		most = openpaygo.MaxExtendedValue
	}
	switch {
	case units < 1:
		return 0, 0, errs.E(errs.Invalid, "plan: %s gives %d seconds, less than one unit of keypad device %s (1/%d day); sell a longer plan, or register the device with a larger divider", plan.ID, secs, d.Serial, d.Divider)
	case units > most:
		return 0, 0, errs.E(errs.Invalid, "plan: %s gives %d units to keypad device %s (divider %d), more than one %s token carries (%d); sell a shorter plan", plan.ID, units, d.Serial, d.Divider, keypadvendor.FormName(d.Extended), most)
	}
	return openpaygo.AddTime, int(units), nil
}

// prebuilt is a packet made before its sale's transaction, for the
// sequence the device will most likely get: the signature and the
// encryption, most of a sale's cost, then run in parallel with other
// sales instead of inside the database's serialised writes.
type prebuilt struct {
	seq     uint64
	planID  string
	hpkeKey []byte
	initKey []byte // as stored (sealed)
	file    []byte
}

// prebuild makes the packet of a sale of credit to a registered device
// for the sequence after the device's last, or returns nil. Plans never
// change, so the one read here is the one the sale sells.
func (s *Service) prebuild(ctx context.Context, req SellRequest, saleID string, now time.Time) *prebuilt {
	if req.Device == "" {
		return nil
	}
	dev, err := s.Store.PaygDevice(ctx, req.Device)
	if err != nil {
		return nil
	}
	return s.prebuildFor(dev, s.plan(ctx, req.Plan), req.Account, saleID, now)
}

// prebuildFor makes the packet of plan for dev's next sequence, or returns
// nil if the sale would be refused or the packet cannot be made (the
// transaction then reports why).
func (s *Service) prebuildFor(dev *Device, plan *billing.Plan, account, saleID string, now time.Time) *prebuilt {
	if dev == nil || plan == nil || dev.AccountID != account {
		return nil
	}
	file, err := s.MakePacket(dev, dev.LastSequence+1, plan, saleID, now)
	if err != nil {
		return nil
	}
	return &prebuilt{seq: dev.LastSequence + 1, planID: plan.ID, hpkeKey: dev.HPKEKey, initKey: dev.InitKey, file: file}
}

// plan returns a plan from the cache, reading the plans on a miss.
func (s *Service) plan(ctx context.Context, id string) *billing.Plan {
	if p, ok := s.plans.Load(id); ok {
		return p.(*billing.Plan)
	}
	ps, err := s.Store.Plans(ctx)
	if err != nil {
		return nil
	}
	for _, p := range ps {
		s.plans.Store(p.ID, p)
	}
	if p, ok := s.plans.Load(id); ok {
		return p.(*billing.Plan)
	}
	return nil
}

// appendPacket allocates dev's next sequence, makes the packet of plan
// (or takes pre, if it was made for this sequence, plan and device key)
// and stores it, in tx.
func (s *Service) appendPacket(ctx context.Context, tx Tx, dev *Device, plan *billing.Plan, saleID string, now time.Time, pre *prebuilt) (*StoredPacket, error) {
	seq, err := tx.NextSequence(ctx, dev.ID)
	if err != nil {
		return nil, err
	}
	sp, err := s.packetOf(dev, seq, plan, saleID, now, pre)
	if err != nil {
		return nil, err
	}
	return sp, tx.InsertPacket(ctx, sp)
}

// packetOf returns the packet of sequence seq of plan for dev: pre's, if it
// was made for this sequence, plan and device key, else a new one.
func (s *Service) packetOf(dev *Device, seq uint64, plan *billing.Plan, saleID string, now time.Time, pre *prebuilt) (*StoredPacket, error) {
	sp := &StoredPacket{DeviceID: dev.ID, Sequence: seq, SaleID: saleID, Created: now}
	if pre != nil && pre.seq == seq && pre.planID == plan.ID && bytes.Equal(pre.hpkeKey, dev.HPKEKey) && bytes.Equal(pre.initKey, dev.InitKey) {
		sp.File = pre.file
		return sp, nil
	}
	var err error
	sp.File, err = s.MakePacket(dev, seq, plan, saleID, now)
	return sp, err
}

// MakePacket makes the armored packet of sequence seq carrying plan's
// credit to dev: signed by the provisioning key, sealed to the device
// (under its initialization key, or to its HPKE key; see PacketVersion).
func (s *Service) MakePacket(dev *Device, seq uint64, plan *billing.Plan, saleID string, now time.Time) ([]byte, error) {
	p := packet.Packet{DeviceID: dev.ID, Sequence: seq, Seconds: plan.Seconds(), Until: plan.Until, ServerTime: now.Truncate(time.Second), Sale: saleID}
	switch s.PacketVersion {
	case 0, packet.VersionShared:
		initKey, err := s.openSecret("initkey:"+dev.ID, dev.InitKey)
		if err != nil {
			return nil, err
		}
		return packet.MakeV2(p, s.Authority.Signer, s.chain, initKey)
	case packet.VersionHPKE:
		return packet.Make(p, s.Authority.Signer, s.chain, dev.HPKEKey)
	}
	return nil, errs.E(errs.Internal, "provisioning: PacketVersion %d is not a packet format version (1 or 2)", s.PacketVersion)
}

// RegisterRequest is the body of POST /v1/payg/register.
type RegisterRequest struct {
	Code        string          `json:"code"`
	Fingerprint json.RawMessage `json:"fingerprint"`
	PublicKey   string          `json:"public_key"` // base64 Ed25519
	HPKEKey     string          `json:"hpke_key"`   // base64
	Signature   string          `json:"signature"`  // base64, over devicereq.RegisterMessage
}

// RegisterAnswer is the answer to a registration.
type RegisterAnswer struct {
	DeviceID     string   `json:"device_id"`
	Account      string   `json:"account"`
	Certificates []string `json:"certificates"` // base64 DER: device, provisioning
	InitKey      string   `json:"init_key"`     // base64 of the sealed envelope JSON
	Packets      []string `json:"packets"`
	// BaseSequence, when the hardware registered before on this account
	// (a fresh agent directory on a known device), is the device's last
	// packet before this registration: the new installation starts after
	// it, and the earlier packets' credit stays with the old installation.
	BaseSequence uint64 `json:"base_sequence,omitempty"`
}

// registerResult is what the registration transaction decides.
type registerResult struct {
	Answer *RegisterAnswer `json:"answer,omitempty"`
	Clone  *Clone          `json:"clone,omitempty"`
}

func decodeB64(field, v string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(b) == 0 {
		return nil, errs.E(errs.Invalid, "%s is not standard base64", field)
	}
	return b, nil
}

// Register registers a device with a one-time code: checks the request,
// matches its hardware against the devices registered, consumes the code,
// certifies the device, makes its initialization key and the packet of the
// sale that made the code, in one transaction. The same hardware on another
// account is a clone: recorded for an administrator and refused (Conflict).
func (s *Service) Register(ctx context.Context, req RegisterRequest) (*RegisterAnswer, error) {
	if req.Code == "" {
		return nil, errs.E(errs.Invalid, "code is required: the registration code from the sale")
	}
	pub, err := decodeB64("public_key", req.PublicKey)
	if err != nil {
		return nil, err
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, errs.E(errs.Invalid, "public_key is %d bytes; an Ed25519 public key is %d", len(pub), ed25519.PublicKeySize)
	}
	hpkeKey, err := decodeB64("hpke_key", req.HPKEKey)
	if err != nil {
		return nil, err
	}
	if _, err := keys.SuiteKEM.NewPublicKey(hpkeKey); err != nil {
		return nil, errs.E(errs.Invalid, "hpke_key is not an MLKEM768-X25519 public key")
	}
	sig, err := decodeB64("signature", req.Signature)
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(pub, devicereq.RegisterMessage(req.Code, req.HPKEKey), sig) {
		return nil, errs.E(errs.Invalid, "signature does not verify with public_key over the code and hpke_key")
	}
	if len(req.Fingerprint) == 0 {
		return nil, errs.E(errs.Invalid, "fingerprint is required: the device's hwid fingerprint (component hashes)")
	}
	fp, err := hwid.Unmarshal(req.Fingerprint)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "fingerprint")
	}
	fpJSON, _ := fp.MarshalJSON()
	salt := fingerprintSalt(fpJSON)
	hash := hashCode(req.Code)
	var res registerResult
	_, err = s.write(ctx, billing.Idempotency{}, &res, func(tx Tx) (any, error) {
		now := s.Now().UTC()
		code, err := tx.Code(ctx, hash)
		if err != nil {
			return nil, err
		}
		if code.UsedAt != nil {
			return nil, errs.E(errs.Conflict, "registration code was already used (on %s); a code registers one device once: ask the vendor for a new one", code.UsedAt.Format(time.DateOnly))
		}
		if !now.Before(code.Expires) {
			return nil, errs.E(errs.Conflict, "registration code expired on %s; ask the vendor for a new one", code.Expires.Format(time.DateOnly))
		}
		cands, err := tx.HardwareCandidates(ctx, fp.SystemID(), salt)
		if err != nil {
			return nil, err
		}
		var same *Device
		for _, d := range cands {
			if !sameHardware(d, fp, salt) {
				continue
			}
			if d.AccountID != code.AccountID {
				c := &Clone{ID: ids.New("clone"), DeviceID: d.ID, AccountID: d.AccountID, AttemptAccount: code.AccountID, SystemID: fp.SystemID(), At: now}
				return registerResult{Clone: c}, tx.InsertClone(ctx, c)
			}
			same = d
		}
		if code.DeviceID != "" && (same == nil || same.ID != code.DeviceID) {
			return nil, errs.E(errs.Conflict, "this code re-registers device %s, and this machine's hardware is not that device's (system %s); register a new device with the code of a new-device sale", code.DeviceID, fp.SystemID())
		}
		dev := &Device{ID: ids.New("dev"), AccountID: code.AccountID, Registered: now}
		if same != nil {
			// A fresh installation on a known device: it starts after the
			// device's last packet, whose credit stays with the installation
			// it was made for, and reports from its own start.
			dev = same
			dev.Reregistered, dev.BaseSequence, dev.PreviousReport = &now, same.LastSequence, same.Report
		}
		dev.SystemID, dev.Salt, dev.Fingerprint, dev.PublicKey, dev.HPKEKey = fp.SystemID(), salt, fpJSON, pub, hpkeKey
		if err := tx.UseCode(ctx, hash, dev.ID, now); err != nil {
			return nil, err
		}
		initKey := ids.Random(InitKeySize)
		sealedInit, err := envelope.Seal(InitKeyType, InitKeyVersion, hpkeKey, initKey)
		if err != nil {
			return nil, errs.Wrap(errs.Invalid, err, "hpke_key")
		}
		if dev.InitKey, err = s.sealSecret("initkey:"+dev.ID, initKey); err != nil {
			return nil, err
		}
		dev.CertDER, err = s.Authority.IssueDevice(pki.Device{DeviceID: dev.ID, SystemID: dev.SystemID, AccountID: dev.AccountID, PublicKey: pub, HPKEKey: hpkeKey}, now)
		if err != nil {
			return nil, err
		}
		if same != nil {
			err = tx.ReplaceDeviceKeys(ctx, dev)
		} else {
			err = tx.InsertDevice(ctx, dev)
		}
		if err != nil {
			return nil, err
		}
		ans := &RegisterAnswer{DeviceID: dev.ID, Account: dev.AccountID, Packets: []string{}, BaseSequence: dev.BaseSequence,
			Certificates: []string{base64.StdEncoding.EncodeToString(dev.CertDER), base64.StdEncoding.EncodeToString(s.Authority.Cert.Raw)},
			InitKey:      base64.StdEncoding.EncodeToString(sealedInit.Marshal())}
		if code.SaleID == "" { // a re-registration code: no sale, no packet
			return registerResult{Answer: ans}, nil
		}
		sale, err := tx.Sale(ctx, code.SaleID)
		if err != nil {
			return nil, err
		}
		plan, err := tx.Plan(ctx, sale.PlanID)
		if err != nil {
			return nil, err
		}
		sp, err := s.appendPacket(ctx, tx, dev, plan, sale.ID, now, nil)
		if err != nil {
			return nil, err
		}
		ans.Packets = append(ans.Packets, string(sp.File))
		return registerResult{Answer: ans}, nil
	})
	if err != nil {
		return nil, err
	}
	if c := res.Clone; c != nil {
		return nil, errs.E(errs.Conflict, "clone: this hardware (system %s) is registered as device %s of another account; the registration is refused and recorded for the vendor (%s)", c.SystemID, c.DeviceID, c.ID)
	}
	return res.Answer, nil
}

// ReregisterAnswer is a re-registration code issued for a registered
// device (POST /v1/payg/devices/{id}/reregister).
type ReregisterAnswer struct {
	Device      string    `json:"device"`
	Account     string    `json:"account"`
	Code        string    `json:"code"`
	CodeExpires time.Time `json:"code_expires"`
}

// Reregister issues a one-time code that registers the device deviceID
// again, from a fresh agent directory (the device lost its state or was
// reinstalled), without a sale: only that device's hardware registers
// with it, its keys and initialization key are replaced, and the new
// installation starts after the device's last packet (RegisterAnswer's
// BaseSequence). The credit of the earlier packets is not given again:
// the vendor cannot know how much of it the old installation used after
// its last report, nor that it is gone. idemKey makes a retry return the
// same code.
func (s *Service) Reregister(ctx context.Context, deviceID, idemKey string) (*ReregisterAnswer, bool, error) {
	if deviceID == "" {
		return nil, false, errs.E(errs.Invalid, "device is required (--device D): the registered device to register again")
	}
	idem, err := billing.NewIdempotency(idemKey, "reregister", map[string]string{"device": deviceID})
	if err != nil {
		return nil, false, err
	}
	var out ReregisterAnswer
	replayed, err := s.write(ctx, idem, &out, func(tx Tx) (any, error) {
		dev, err := tx.Device(ctx, deviceID)
		if err != nil {
			return nil, err
		}
		now := s.Now().UTC()
		code := newCode()
		ans := &ReregisterAnswer{Device: dev.ID, Account: dev.AccountID, Code: code, CodeExpires: now.Add(CodeTTL)}
		return ans, tx.InsertCode(ctx, &Code{Hash: hashCode(code), AccountID: dev.AccountID, DeviceID: dev.ID, Created: now, Expires: ans.CodeExpires})
	})
	if err != nil {
		return nil, false, err
	}
	return &out, replayed, nil
}

// fingerprintSalt returns the salt of a fingerprint's JSON form.
func fingerprintSalt(fpJSON []byte) string {
	var w struct {
		Salt string `json:"salt"`
	}
	json.Unmarshal(fpJSON, &w)
	return w.Salt
}

// sameHardware reports whether the registered d is the hardware of fp.
func sameHardware(d *Device, fp hwid.Fingerprint, salt string) bool {
	if d.SystemID == fp.SystemID() {
		return true
	}
	if d.Salt != salt {
		return false
	}
	stored, err := hwid.Unmarshal(d.Fingerprint)
	if err != nil {
		return false
	}
	ok, _ := stored.Match(fp)
	return ok
}

func (s *Service) sealSecret(label string, b []byte) ([]byte, error) {
	if s.Secrets == nil {
		return b, nil
	}
	return s.Secrets.Seal(label, b)
}

func (s *Service) openSecret(label string, b []byte) ([]byte, error) {
	if s.Secrets == nil {
		return b, nil
	}
	return s.Secrets.Open(label, b)
}

func unauth(format string, args ...any) error { return errs.E(errs.Unauthenticated, format, args...) }

// Authenticate checks a signed device request and returns its device: the
// headers, the date (within Skew), the Ed25519 signature by the device's
// registered key, the HMAC under its initialization key (constant time),
// and last the nonce, remembered so that a replay is refused. Every
// failure is Unauthenticated.
func (s *Service) Authenticate(ctx context.Context, method, pathQuery string, h http.Header, body []byte) (*Device, error) {
	id, date, nonce := h.Get(devicereq.HeaderDevice), h.Get(devicereq.HeaderDate), h.Get(devicereq.HeaderNonce)
	if id == "" || date == "" || nonce == "" || h.Get(devicereq.HeaderSignature) == "" || h.Get(devicereq.HeaderMAC) == "" {
		return nil, unauth("a device request needs the headers %s, %s, %s, %s and %s (docs/payg-protocol.md)", devicereq.HeaderDevice, devicereq.HeaderDate, devicereq.HeaderNonce, devicereq.HeaderSignature, devicereq.HeaderMAC)
	}
	t, err := time.Parse(time.RFC3339, date)
	if err != nil {
		return nil, unauth("%s %q is not an RFC 3339 time", devicereq.HeaderDate, date)
	}
	now := s.Now()
	if d := now.Sub(t); d > Skew || d < -Skew {
		return nil, unauth("%s %s is %s away from the vendor's clock (at most %s): set the device's clock", devicereq.HeaderDate, date, d.Round(time.Second), Skew)
	}
	if n, err := base64.RawURLEncoding.DecodeString(nonce); err != nil || len(n) != 16 {
		return nil, unauth("%s must be 16 random bytes in unpadded base64url", devicereq.HeaderNonce)
	}
	sig, err1 := base64.StdEncoding.DecodeString(h.Get(devicereq.HeaderSignature))
	mac, err2 := base64.StdEncoding.DecodeString(h.Get(devicereq.HeaderMAC))
	if err1 != nil || err2 != nil {
		return nil, unauth("%s and %s must be standard base64", devicereq.HeaderSignature, devicereq.HeaderMAC)
	}
	dev, err := s.Store.PaygDevice(ctx, id)
	if errs.Is(err, errs.NotFound) {
		return nil, unauth("device %q is not registered", id)
	}
	if err != nil {
		return nil, err
	}
	msg := devicereq.Message(method, pathQuery, id, date, nonce, body)
	if len(dev.PublicKey) != ed25519.PublicKeySize || !ed25519.Verify(dev.PublicKey, msg, sig) {
		return nil, unauth("%s does not verify with device %s's registered key", devicereq.HeaderSignature, id)
	}
	initKey, err := s.openSecret("initkey:"+dev.ID, dev.InitKey)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, initKey)
	m.Write(msg)
	if !hmac.Equal(m.Sum(nil), mac) {
		return nil, unauth("%s is wrong: the request was not made with device %s's initialization key", devicereq.HeaderMAC, id)
	}
	if err := s.Store.UseNonce(ctx, id, nonce, t.Add(Skew+time.Minute), now); err != nil {
		if errs.Is(err, errs.Conflict) {
			return nil, unauth("%s was used before: a replayed request is refused", devicereq.HeaderNonce)
		}
		return nil, err
	}
	return dev, nil
}

// SyncRequest is the body of POST /v1/payg/devices/{id}/sync.
type SyncRequest struct {
	HighestSequence uint64 `json:"highest_sequence"`
	UsedSeconds     int64  `json:"used_seconds"`
	// Compliance is the device's compliance report (compliance/policy
	// Report), sent by agents that have the supervisor; optional.
	Compliance json.RawMessage `json:"compliance,omitempty"`
}

// SyncAnswer is the answer to a sync. Policy and Resets answer a request
// that carried a compliance report, and only then.
type SyncAnswer struct {
	Packets    []string  `json:"packets"`
	ServerTime time.Time `json:"server_time"`
	Policy     string    `json:"policy,omitempty"` // the newest policy bundle, if the device's is older
	Resets     []string  `json:"resets,omitempty"` // the device's reset packets it has not applied
}

// ComplianceHook is the vendor's compliance (compliance/fleet), told of a
// device's report at its sync; it answers with the bundle and the resets
// to deliver.
type ComplianceHook interface {
	OnSync(ctx context.Context, deviceID string, report json.RawMessage) (policy string, resets []string, err error)
}

// Sync records an authenticated device's report and returns its packets
// above the sequence it reported.
func (s *Service) Sync(ctx context.Context, dev *Device, req SyncRequest) (*SyncAnswer, error) {
	if req.UsedSeconds < 0 {
		return nil, errs.E(errs.Invalid, "used_seconds %d is negative", req.UsedSeconds)
	}
	now := s.Now().UTC()
	if _, err := s.Store.RecordReport(ctx, dev.ID, Report{HighestSequence: req.HighestSequence, UsedSeconds: req.UsedSeconds, At: now}); err != nil {
		return nil, err
	}
	ps, err := s.Store.Packets(ctx, dev.ID, req.HighestSequence)
	if err != nil {
		return nil, err
	}
	ans := &SyncAnswer{Packets: []string{}, ServerTime: now.Truncate(time.Second)}
	for _, p := range ps {
		ans.Packets = append(ans.Packets, string(p.File))
	}
	if s.Compliance != nil && len(req.Compliance) > 0 {
		if ans.Policy, ans.Resets, err = s.Compliance.OnSync(ctx, dev.ID, req.Compliance); err != nil {
			return nil, err
		}
	}
	return ans, nil
}

// Export returns a device's packets above since, concatenated, for a file.
func (s *Service) Export(ctx context.Context, deviceID string, since uint64) ([]byte, int, error) {
	if _, err := s.Store.PaygDevice(ctx, deviceID); err != nil {
		return nil, 0, err
	}
	ps, err := s.Store.Packets(ctx, deviceID, since)
	if err != nil {
		return nil, 0, err
	}
	var b bytes.Buffer
	for _, p := range ps {
		b.Write(p.File)
	}
	return b.Bytes(), len(ps), nil
}

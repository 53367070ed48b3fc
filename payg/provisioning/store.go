package provisioning

import (
	"context"
	"time"

	"github.com/licet/licet/payg/billing"
	"github.com/licet/licet/payg/keypadvendor"
)

// Device is a registered pay-as-you-go device as the vendor keeps it. Its
// JSON form, the one lists show, leaves out keys and secrets.
type Device struct {
	ID        string `json:"id"`
	AccountID string `json:"account"`
	SystemID  string `json:"system_id"`
	// Salt is the hwid fingerprint's salt (hex): fingerprints of one
	// installation share it, so they can be matched tolerantly.
	Salt string `json:"-"`
	// Fingerprint is the hwid fingerprint JSON: component hashes only.
	Fingerprint []byte `json:"-"`
	PublicKey   []byte `json:"-"` // Ed25519
	HPKEKey     []byte `json:"-"`
	// InitKey is the device's initialization key as stored: sealed under
	// the vendor's data key if there is one (see Service.Secrets).
	InitKey []byte `json:"-"`
	CertDER []byte `json:"-"`
	// LastSequence is the sequence number of the device's last packet.
	LastSequence uint64 `json:"last_sequence"`
	// KeysVersion counts the device's re-registrations (each replaces its
	// keys and initialization key): a packet made for one version is made
	// again under another.
	KeysVersion uint64    `json:"-"`
	Registered  time.Time `json:"registered"`
	// Report is the last sync report of the device, if any.
	Report *Report `json:"report,omitempty"`
	// Flag, if set, says why the device looks restored from an older copy
	// of its state (a report that went backwards); FlaggedAt says when.
	Flag      string     `json:"flag,omitempty"`
	FlaggedAt *time.Time `json:"flagged_at,omitempty"`
	// Reregistered is when the device last registered again from a fresh
	// agent directory (its keys replaced). BaseSequence is the sequence
	// its current installation started after: packets up to it were made
	// for an earlier installation, and their credit stays there.
	// PreviousReport is the earlier installation's last report, as the
	// vendor last heard of its use.
	Reregistered   *time.Time `json:"reregistered,omitempty"`
	BaseSequence   uint64     `json:"base_sequence,omitempty"`
	PreviousReport *Report    `json:"previous_report,omitempty"`
}

// Report is what a device says at a sync: the highest packet sequence it
// has applied and the seconds it has used in total.
type Report struct {
	HighestSequence uint64    `json:"highest_sequence"`
	UsedSeconds     int64     `json:"used_seconds"`
	At              time.Time `json:"at"`
}

// ReportsKept is how many sync reports of each device the vendor keeps
// as its history (Store.PaygReports); older ones are dropped as new ones
// arrive. The device's last report and its flag do not depend on them.
const ReportsKept = 100

// PastReport is a sync report in a device's history: Backwards if it went
// back from the report before it (it flagged the device).
type PastReport struct {
	Report
	Backwards bool `json:"backwards,omitempty"`
}

// Code is a one-time registration code, made by the sale of a new device,
// or issued by an administrator to re-register one registered device
// (DeviceID set, no sale). Only its hash is kept.
type Code struct {
	Hash      []byte `json:"-"`
	AccountID string `json:"account"`
	SaleID    string `json:"sale,omitempty"`
	// DeviceID is the device a re-registration code is for: only that
	// device's hardware registers with it.
	DeviceID string     `json:"device,omitempty"`
	Created  time.Time  `json:"created"`
	Expires  time.Time  `json:"expires"`
	UsedBy   string     `json:"used_by,omitempty"` // the device that registered with it
	UsedAt   *time.Time `json:"used_at,omitempty"`
}

// StoredPacket is a packet as the vendor keeps it.
type StoredPacket struct {
	DeviceID string    `json:"device"`
	Sequence uint64    `json:"sequence"`
	SaleID   string    `json:"sale"`
	File     []byte    `json:"-"` // the armored packet
	Created  time.Time `json:"created"`
}

// Clone is a registration refused because its hardware matched a device
// of another account.
type Clone struct {
	ID             string    `json:"id"`
	DeviceID       string    `json:"device"`          // the device already registered
	AccountID      string    `json:"account"`         // its account
	AttemptAccount string    `json:"attempt_account"` // the account the code was sold to
	SystemID       string    `json:"system_id"`       // the system ID the attempt presented
	At             time.Time `json:"at"`
}

// Tx is what a provisioning write may do inside its transaction, besides
// the ledger's writes.
type Tx interface {
	billing.Tx
	// Sale returns a sale; NotFound if missing.
	Sale(ctx context.Context, id string) (*billing.Sale, error)
	// InsertCode records a registration code: of a sale, or a
	// re-registration code of a device (DeviceID set).
	InsertCode(ctx context.Context, c *Code) error
	// Code returns the code of a hash, of either kind (a re-registration
	// code with its device's account); NotFound if missing.
	Code(ctx context.Context, hash []byte) (*Code, error)
	// UseCode marks an unused code used by deviceID with a conditional
	// update: of concurrent uses exactly one wins; the others get
	// Conflict. NotFound if the code does not exist.
	UseCode(ctx context.Context, hash []byte, deviceID string, now time.Time) error
	// Device returns a device; NotFound if missing.
	Device(ctx context.Context, id string) (*Device, error)
	// HardwareCandidates returns the devices with this system ID or this
	// fingerprint salt: the only ones a fingerprint can match.
	HardwareCandidates(ctx context.Context, systemID, salt string) ([]*Device, error)
	// InsertDevice records a new device (LastSequence 0).
	InsertDevice(ctx context.Context, d *Device) error
	// ReplaceDeviceKeys records a re-registration of a device: its new
	// fingerprint, keys, initialization key and certificate, Reregistered,
	// BaseSequence and PreviousReport; its report is cleared (the new
	// installation reports from its own start) and its keys version
	// advances.
	ReplaceDeviceKeys(ctx context.Context, d *Device) error
	// InsertClone records a refused clone.
	InsertClone(ctx context.Context, c *Clone) error
	// NextSequence allocates the device's next packet sequence number
	// with one conditional update of its row: exact under any concurrency,
	// and rolled back with the transaction, so sequences have no gaps.
	NextSequence(ctx context.Context, deviceID string) (uint64, error)
	// InsertPacket stores a packet; Conflict if its sequence or its sale
	// has one already.
	InsertPacket(ctx context.Context, p *StoredPacket) error
	// IssueKeypadToken is keypadvendor.Store's IssueKeypadToken inside
	// this transaction (no idempotency key of its own: the sale's covers
	// it): the keypad device's row locked, next called with it, its record
	// stored and its count made the device's last. NotFound if the device
	// is not registered.
	IssueKeypadToken(ctx context.Context, serial string, next func(d *keypadvendor.Device) (*keypadvendor.IssuedToken, error)) (*keypadvendor.IssuedToken, error)
}

// Store keeps devices, codes and packets, besides the ledger. Every method
// returns errs kinds.
type Store interface {
	billing.Store
	// ProvisionWrite is BillingWrite with the provisioning Tx.
	ProvisionWrite(ctx context.Context, idem billing.Idempotency, fn func(tx Tx) ([]byte, error)) (answer []byte, replayed bool, err error)
	// PaygDevice returns a device with its keys; NotFound if missing.
	PaygDevice(ctx context.Context, id string) (*Device, error)
	// PaygDevices lists devices, of one account if set, by registration.
	PaygDevices(ctx context.Context, accountID string) ([]*Device, error)
	// Clones lists refused clones, newest first.
	Clones(ctx context.Context) ([]*Clone, error)
	// Packets returns a device's packets with sequence above since, in order.
	Packets(ctx context.Context, deviceID string, since uint64) ([]*StoredPacket, error)
	// UseNonce remembers a request nonce of a device until expires;
	// Conflict if it was seen. Nonces expired at now may be forgotten.
	UseNonce(ctx context.Context, deviceID, nonce string, expires, now time.Time) error
	// RecordReport stores a device's sync report and returns the device.
	// A report whose highest sequence or used seconds is below the
	// previous report's, or whose sequence is above the last packet made,
	// flags the device (the flag stays). The device's history keeps its
	// last ReportsKept reports.
	RecordReport(ctx context.Context, deviceID string, r Report) (*Device, error)
	// PaygReports returns a device's kept reports, newest first.
	PaygReports(ctx context.Context, deviceID string) ([]*PastReport, error)
}

// BatchStore is an optional capability of a Store (detected by type
// assertion): the read of a batch sale in few statements.
type BatchStore interface {
	// PaygDeviceKeys returns the registered devices among ids, by ID, with
	// only what a packet is made with: ID, AccountID, LastSequence,
	// KeysVersion, HPKEKey and InitKey. IDs that are not registered are
	// left out.
	PaygDeviceKeys(ctx context.Context, ids []string) (map[string]*Device, error)
}

// Allocated is a packet sequence allocated to a device in a batch: the
// device's new last sequence, and its keys version at that moment.
type Allocated struct {
	Sequence    uint64
	KeysVersion uint64
}

// BatchTx is an optional capability of a Tx (detected by type assertion):
// the writes of a batch sale in few statements. A Tx without it gets the
// batch one sale at a time, with the same outcome.
type BatchTx interface {
	// NextSequences is NextSequence for each device of ids (no ID twice)
	// in few conditional updates: exact under any concurrency, and rolled
	// back with the transaction. It returns what it allocated, by device
	// ID; IDs that are not registered are left out. It reads nothing else
	// of the devices: a packet made before the transaction for the same
	// sequence and keys version is the one to store.
	NextSequences(ctx context.Context, ids []string) (map[string]Allocated, error)
	// InsertSales stores postings (each checked to balance) and their
	// sales in multi-row inserts; Conflict if any exists already, NotFound
	// if one refers to something missing.
	InsertSales(ctx context.Context, postings []*billing.Posting, sales []*billing.Sale) error
	// InsertPackets stores packets in multi-row inserts; Conflict if a
	// sequence or a sale has one already.
	InsertPackets(ctx context.Context, packets []*StoredPacket) error
}

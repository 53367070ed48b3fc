// Package fleet is the vendor side of compliance: it signs and keeps the
// policy bundles (each version higher than the last), makes each device's
// reset packets, delivers both at the device's sync, and keeps each
// device's last reported score so that devices can be listed by score.
//
// The bundle and the reset packets are signed with the provisioning key,
// the key the vendor server already holds and the root certified for what
// it sends to devices (see compliance/policy for why no new role).
package fleet

import (
	"context"
	"encoding/json"
	"time"

	"github.com/licet/licet/compliance/policy"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/pki"
)

// Bundle is a published policy bundle.
type Bundle struct {
	Version   uint64    `json:"version"`
	File      string    `json:"file"` // armored
	Published time.Time `json:"published"`
}

// StoredReset is a device's reset packet as the vendor keeps it.
type StoredReset struct {
	DeviceID string    `json:"device"`
	Sequence uint64    `json:"sequence"`
	Reason   string    `json:"reason,omitempty"`
	File     string    `json:"file"` // armored
	Created  time.Time `json:"created"`
}

// DeviceCompliance is a device's last compliance report.
type DeviceCompliance struct {
	DeviceID string `json:"device"`
	policy.Report
	At time.Time `json:"at"`
	// Changed is when the score last changed.
	Changed time.Time `json:"changed"`
}

// Store keeps bundles, resets and reports. Every method returns errs kinds.
type Store interface {
	// InsertPolicyBundle stores a bundle; Conflict unless its version is
	// above every stored one.
	InsertPolicyBundle(ctx context.Context, b *Bundle) error
	// LatestPolicyBundle returns the highest version; NotFound if none.
	LatestPolicyBundle(ctx context.Context) (*Bundle, error)
	// LastResetSequence returns a device's highest reset sequence (0: none).
	LastResetSequence(ctx context.Context, deviceID string) (uint64, error)
	// ReportedResetSequence returns the reset sequence of a device's
	// recorded report: the highest it ever reported (0: no report yet).
	ReportedResetSequence(ctx context.Context, deviceID string) (uint64, error)
	// InsertReset stores a reset; Conflict if its sequence exists.
	InsertReset(ctx context.Context, r *StoredReset) error
	// Resets returns a device's resets above since, in order.
	Resets(ctx context.Context, deviceID string, since uint64) ([]*StoredReset, error)
	// RecordCompliance stores a device's report, replacing the last.
	RecordCompliance(ctx context.Context, c *DeviceCompliance) error
	// ComplianceBelow lists devices whose last score is below n, lowest
	// first.
	ComplianceBelow(ctx context.Context, n int) ([]*DeviceCompliance, error)
}

// Service is the vendor's compliance.
type Service struct {
	Store     Store
	Authority *pki.Authority // the provisioning key and certificate
	// DeviceExists says whether a device is registered (for resets).
	DeviceExists func(ctx context.Context, id string) error
	Now          func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) chain() [][]byte { return [][]byte{s.Authority.Cert.Raw} }

// Publish validates, signs and stores a bundle. A version not above the
// latest published one is errs.Conflict.
func (s *Service) Publish(ctx context.Context, d *policy.Document) (*Bundle, error) {
	d.Defaults()
	if err := d.Validate(); err != nil {
		return nil, err
	}
	if cur, err := s.Store.LatestPolicyBundle(ctx); err == nil && d.Version <= cur.Version {
		return nil, errs.E(errs.Conflict, "policy bundle version %d is not above the published version %d: give it version %d or more", d.Version, cur.Version, cur.Version+1)
	} else if err != nil && !errs.Is(err, errs.NotFound) {
		return nil, err
	}
	d.Published = s.now().Truncate(time.Second)
	text, err := policy.Sign(d, s.Authority.Signer, s.chain())
	if err != nil {
		return nil, err
	}
	b := &Bundle{Version: d.Version, File: string(text), Published: d.Published}
	if err := s.Store.InsertPolicyBundle(ctx, b); err != nil {
		return nil, err
	}
	return b, nil
}

// Reset makes the next reset packet of a registered device; it is
// delivered at the device's next sync, or as a file.
func (s *Service) Reset(ctx context.Context, deviceID, reason string) (*StoredReset, error) {
	if s.DeviceExists != nil {
		if err := s.DeviceExists(ctx, deviceID); err != nil {
			return nil, err
		}
	}
	for range 5 { // concurrent resets of one device: the loser retries
		last, err := s.Store.LastResetSequence(ctx, deviceID)
		if err != nil {
			return nil, err
		}
		now := s.now().Truncate(time.Second)
		r := policy.Reset{DeviceID: deviceID, Sequence: last + 1, Reason: reason, Issued: now}
		text, err := policy.MakeReset(r, s.Authority.Signer, s.chain())
		if err != nil {
			return nil, err
		}
		sr := &StoredReset{DeviceID: deviceID, Sequence: r.Sequence, Reason: reason, File: string(text), Created: now}
		err = s.Store.InsertReset(ctx, sr)
		if !errs.Is(err, errs.Conflict) {
			return sr, err
		}
	}
	return nil, errs.E(errs.Conflict, "device %s: concurrent resets; try again", deviceID)
}

// OnSync records a device's compliance report and returns the newest
// bundle if the device has an older one, and its reset packets above the
// one it has applied. A device that reports fewer resets than it reported
// before (its state was lost or rolled back) gets only the resets above the
// highest it ever reported: the old ones would otherwise clear, unasked, the
// tampering that losing the state is. It implements
// provisioning.ComplianceHook.
func (s *Service) OnSync(ctx context.Context, deviceID string, raw json.RawMessage) (string, []string, error) {
	var rep policy.Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		return "", nil, errs.Wrap(errs.Invalid, err, "compliance: not {\"bundle_version\", \"reset_sequence\", \"score\", \"mode\"}")
	}
	if rep.Score < 0 || rep.Score > 100 {
		return "", nil, errs.E(errs.Invalid, "compliance.score %d is not between 0 and 100", rep.Score)
	}
	if len(rep.Failing) > 200 {
		rep.Failing = rep.Failing[:200]
	}
	since, err := s.Store.ReportedResetSequence(ctx, deviceID)
	if err != nil {
		return "", nil, err
	}
	since = max(since, rep.ResetSequence)
	// The record keeps the highest reset sequence ever reported, so a
	// device that lost its state twice still gets no old reset.
	rep.ResetSequence = since
	if rep.Mode != "unknown" {
		if err := s.Store.RecordCompliance(ctx, &DeviceCompliance{DeviceID: deviceID, Report: rep, At: s.now()}); err != nil {
			return "", nil, err
		}
	}
	var bundle string
	if b, err := s.Store.LatestPolicyBundle(ctx); err == nil && b.Version > rep.BundleVersion {
		bundle = b.File
	} else if err != nil && !errs.Is(err, errs.NotFound) {
		return "", nil, err
	}
	rs, err := s.Store.Resets(ctx, deviceID, since)
	if err != nil {
		return "", nil, err
	}
	var resets []string
	for _, r := range rs {
		resets = append(resets, r.File)
	}
	return bundle, resets, nil
}

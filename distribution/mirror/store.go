// Package mirror is the customer site's side of software distribution: it
// pulls the vendor's signed metadata and artifacts (on a schedule, on
// demand, or from an export file for air-gapped sites), verifies them as a
// device would, keeps artifacts by hash, and serves each device the bundle
// of its own group only. Device statuses are queued and forwarded to the
// vendor on the next sync.
package mirror

import (
	"context"
	"time"
)

// Group is a group of the site's devices; each group gets its own bundle.
type Group struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// Device is a device's credential: its token names its group.
type Device struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Group     string    `json:"group"`
	TokenHash []byte    `json:"-"`
	Created   time.Time `json:"created"`
}

// Report is a status a device reported, queued for the vendor.
type Report struct {
	ID      int64     `json:"id"`
	Device  string    `json:"device"`
	Group   string    `json:"group"`
	App     string    `json:"app"`
	Version string    `json:"version"`
	Status  string    `json:"status"`
	Log     string    `json:"log,omitempty"`
	At      time.Time `json:"at"`
	Sent    bool      `json:"sent"`
}

// Store keeps the site's distribution state. The SQL stores implement it.
type Store interface {
	AddDistGroup(ctx context.Context, g *Group) error
	DistGroups(ctx context.Context) ([]*Group, error)
	// AddDistDevice stores a device; Conflict if its name exists, NotFound
	// (or Invalid) if its group does not.
	AddDistDevice(ctx context.Context, d *Device) error
	DistDeviceByToken(ctx context.Context, hash []byte) (*Device, error)
	DistDevices(ctx context.Context) ([]*Device, error)
	// RemoveDistDevice deletes a device credential; NotFound if none has the name.
	RemoveDistDevice(ctx context.Context, name string) error
	// PutDistRoot stores a verified root version (again: nothing happens).
	PutDistRoot(ctx context.Context, version int64, body, anchor []byte) error
	// SiteDistRoot returns a root version and the anchor stored with it.
	SiteDistRoot(ctx context.Context, version int64) (body, anchor []byte, err error)
	// PutSiteDistMeta stores a verified metadata version (again: nothing happens).
	PutSiteDistMeta(ctx context.Context, group, role string, version int64, body []byte) error
	SiteDistMeta(ctx context.Context, group, role string, version int64) ([]byte, error)
	// LatestSiteDistMeta returns the newest version of a group's role; NotFound if none.
	LatestSiteDistMeta(ctx context.Context, group, role string) (int64, []byte, error)
	AddDistReport(ctx context.Context, r *Report) error
	PendingDistReports(ctx context.Context, limit int) ([]*Report, error)
	MarkDistReportsSent(ctx context.Context, ids []int64) error
	// DistReports returns each device's latest report per application.
	DistReports(ctx context.Context) ([]*Report, error)
}

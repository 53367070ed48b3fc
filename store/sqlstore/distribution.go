package sqlstore

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/licet/licet/distribution/catalog"
	"github.com/licet/licet/distribution/mirror"
	"github.com/licet/licet/errs"
)

var (
	_ catalog.Store = (*Vendor)(nil)
	_ mirror.Store  = (*Site)(nil)
)

type scanner = interface{ Scan(...any) error }

// AddDistApp stores an application; Conflict if its ID exists.
func (v *Vendor) AddDistApp(ctx context.Context, a *catalog.App) error {
	_, err := v.conn().exec(ctx, `INSERT INTO v_dist_apps (id, name, created) VALUES (?, ?, ?)`, a.ID, a.Name, toNanos(a.Created))
	if v.isUnique(err) {
		return errs.Wrap(errs.Conflict, err, "application %q exists already; choose another --id", a.ID)
	}
	return v.dbErr(err, "store application "+a.ID)
}

// DistApps lists the applications by ID.
func (v *Vendor) DistApps(ctx context.Context) ([]*catalog.App, error) {
	return list(ctx, v.conn(), "list applications", func(sc scanner) (*catalog.App, error) {
		var a catalog.App
		var created int64
		err := sc.Scan(&a.ID, &a.Name, &created)
		a.Created = fromNanos(created)
		return &a, err
	}, `SELECT id, name, created FROM v_dist_apps ORDER BY id`)
}

// AddDistRelease stores a release and its artifacts in one transaction.
func (v *Vendor) AddDistRelease(ctx context.Context, r *catalog.Release) error {
	return v.tx(ctx, func(c conn) error {
		_, err := c.exec(ctx, `INSERT INTO v_dist_releases (id, app_id, version, channel, notes, created) VALUES (?, ?, ?, ?, ?, ?)`,
			r.ID, r.App, r.Version, r.Channel, r.Notes, toNanos(r.Created))
		if v.isUnique(err) {
			return errs.Wrap(errs.Conflict, err, "release %q (or version %s of %s) exists already; releases are immutable: publish a new version", r.ID, r.Version, r.App)
		}
		if v.isFK(err) {
			return errs.Wrap(errs.NotFound, err, "application %q not found: add it with 'licet vendor app add --id %s'", r.App, r.App)
		}
		if err != nil {
			return v.dbErr(err, "store release "+r.ID)
		}
		for _, a := range r.Artifacts {
			if _, err := c.exec(ctx, `INSERT INTO v_dist_artifacts (release_id, platform, name, size, sha256) VALUES (?, ?, ?, ?, ?)`,
				r.ID, a.Platform, a.Name, a.Size, a.SHA256); err != nil {
				return v.dbErr(err, "store artifact "+a.Platform+" of release "+r.ID)
			}
		}
		return nil
	})
}

const releaseCols = `id, app_id, version, channel, notes, created`

func scanRelease(sc scanner) (*catalog.Release, error) {
	var r catalog.Release
	var created int64
	err := sc.Scan(&r.ID, &r.App, &r.Version, &r.Channel, &r.Notes, &created)
	r.Created = fromNanos(created)
	return &r, err
}

func (v *Vendor) artifacts(ctx context.Context, r *catalog.Release) error {
	as, err := list(ctx, v.conn(), "list artifacts", func(sc scanner) (*catalog.Artifact, error) {
		var a catalog.Artifact
		return &a, sc.Scan(&a.Platform, &a.Name, &a.Size, &a.SHA256)
	}, `SELECT platform, name, size, sha256 FROM v_dist_artifacts WHERE release_id = ? ORDER BY platform`, r.ID)
	if err != nil {
		return err
	}
	r.Artifacts = make([]catalog.Artifact, len(as))
	for i, a := range as {
		r.Artifacts[i] = *a
	}
	return nil
}

// DistRelease returns a release with its artifacts.
func (v *Vendor) DistRelease(ctx context.Context, id string) (*catalog.Release, error) {
	r, err := scanRelease(v.conn().row(ctx, `SELECT `+releaseCols+` FROM v_dist_releases WHERE id = ?`, id))
	if err != nil {
		return nil, v.scanErr(err, "release", id)
	}
	return r, v.artifacts(ctx, r)
}

// DistReleases lists the releases of an application ("" for all), oldest first.
func (v *Vendor) DistReleases(ctx context.Context, app string) ([]*catalog.Release, error) {
	rs, err := list(ctx, v.conn(), "list releases", scanRelease,
		`SELECT `+releaseCols+` FROM v_dist_releases WHERE app_id = ? OR ? = '' ORDER BY created, id`, app, app)
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		if err := v.artifacts(ctx, r); err != nil {
			return nil, err
		}
	}
	return rs, nil
}

// PutDistChunk stores (or replaces) one chunk of a blob.
func (v *Vendor) PutDistChunk(ctx context.Context, sha string, idx int64, data []byte) error {
	return v.tx(ctx, func(c conn) error {
		if _, err := c.exec(ctx, `INSERT INTO v_dist_blobs (sha256, size, complete) VALUES (?, 0, ?) ON CONFLICT (sha256) DO NOTHING`, sha, false); err != nil {
			return v.dbErr(err, "store blob "+sha)
		}
		_, err := c.exec(ctx, `INSERT INTO v_dist_chunks (sha256, idx, data) VALUES (?, ?, ?) ON CONFLICT (sha256, idx) DO UPDATE SET data = excluded.data`, sha, idx, data)
		return v.dbErr(err, "store chunk of blob "+sha)
	})
}

// DistChunks calls fn with a blob's chunks from index from on, one query
// per chunk so that no more than one chunk is in memory.
func (v *Vendor) DistChunks(ctx context.Context, sha string, from int64, fn func(idx int64, data []byte) error) error {
	for idx := from; ; idx++ {
		var data []byte
		err := v.conn().row(ctx, `SELECT data FROM v_dist_chunks WHERE sha256 = ? AND idx = ?`, sha, idx).Scan(&data)
		if err == sql.ErrNoRows {
			return nil
		}
		if err != nil {
			return v.dbErr(err, "read blob "+sha)
		}
		if err := fn(idx, data); err != nil {
			return err
		}
	}
}

// CommitDistBlob marks a blob complete.
func (v *Vendor) CommitDistBlob(ctx context.Context, sha string, size int64) error {
	res, err := v.conn().exec(ctx, `UPDATE v_dist_blobs SET size = ?, complete = ? WHERE sha256 = ?`, size, true, sha)
	if err != nil {
		return v.dbErr(err, "commit blob "+sha)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return notFound("blob", sha)
	}
	return nil
}

// DistBlob returns a blob's size and state.
func (v *Vendor) DistBlob(ctx context.Context, sha string) (*catalog.Blob, error) {
	var b catalog.Blob
	err := v.conn().row(ctx, `SELECT sha256, size, complete FROM v_dist_blobs WHERE sha256 = ?`, sha).Scan(&b.SHA256, &b.Size, &b.Complete)
	if err != nil {
		return nil, v.scanErr(err, "blob", sha)
	}
	return &b, nil
}

// SetDistBundle assigns a group's release of an application.
func (v *Vendor) SetDistBundle(ctx context.Context, b *catalog.Bundle) error {
	rollout := ""
	if b.Rollout != nil {
		rollout = toJSON(b.Rollout)
	}
	_, err := v.conn().exec(ctx, `INSERT INTO v_dist_bundles (customer_id, grp, app_id, release_id, updated, rollout, channel) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (customer_id, grp, app_id) DO UPDATE SET release_id = excluded.release_id, updated = excluded.updated, rollout = excluded.rollout, channel = excluded.channel`,
		b.Customer, b.Group, b.App, b.Release, toNanos(b.Updated), rollout, b.Channel)
	if v.isFK(err) {
		return errs.Wrap(errs.NotFound, err, "customer %q or release %q not found", b.Customer, b.Release)
	}
	return v.dbErr(err, "store bundle")
}

// DistBundles lists a customer's bundles ("" for all customers).
func (v *Vendor) DistBundles(ctx context.Context, customer string) ([]*catalog.Bundle, error) {
	return list(ctx, v.conn(), "list bundles", func(sc scanner) (*catalog.Bundle, error) {
		var b catalog.Bundle
		var updated int64
		var rollout string
		if err := sc.Scan(&b.Customer, &b.Group, &b.App, &b.Release, &updated, &rollout, &b.Channel); err != nil {
			return nil, err
		}
		b.Updated = fromNanos(updated)
		if rollout != "" {
			b.Rollout = &catalog.Rollout{}
			return &b, fromJSON(rollout, b.Rollout)
		}
		return &b, nil
	}, `SELECT customer_id, grp, app_id, release_id, updated, rollout, channel FROM v_dist_bundles WHERE customer_id = ? OR ? = '' ORDER BY customer_id, grp, app_id`, customer, customer)
}

// AddDistRoot stores a root version; Conflict if it exists.
func (v *Vendor) AddDistRoot(ctx context.Context, r *catalog.RootRecord) error {
	_, err := v.conn().exec(ctx, `INSERT INTO v_dist_roots (version, body, keyring) VALUES (?, ?, ?)`, r.Version, r.Body, toJSON(r.Keyring))
	if v.isUnique(err) {
		return errs.Wrap(errs.Conflict, err, "root metadata version %d exists already (another replica made it); retry", r.Version)
	}
	return v.dbErr(err, "store root metadata")
}

// DistRoots returns every root version, oldest first.
func (v *Vendor) DistRoots(ctx context.Context) ([]*catalog.RootRecord, error) {
	return list(ctx, v.conn(), "list root metadata", func(sc scanner) (*catalog.RootRecord, error) {
		var r catalog.RootRecord
		var k string
		if err := sc.Scan(&r.Version, &r.Body, &k); err != nil {
			return nil, err
		}
		return &r, fromJSON(k, &r.Keyring)
	}, `SELECT version, body, keyring FROM v_dist_roots ORDER BY version`)
}

// AddDistMeta stores a metadata version; Conflict if it exists.
func (v *Vendor) AddDistMeta(ctx context.Context, m *catalog.Meta) error {
	_, err := v.conn().exec(ctx, `INSERT INTO v_dist_meta (customer_id, grp, role, version, expires, body) VALUES (?, ?, ?, ?, ?, ?)`,
		m.Customer, m.Group, m.Role, m.Version, toNanos(m.Expires), m.Body)
	if v.isUnique(err) {
		return errs.Wrap(errs.Conflict, err, "%s metadata version %d of %s/%s exists already; retry", m.Role, m.Version, m.Customer, m.Group)
	}
	return v.dbErr(err, "store metadata")
}

// LatestDistMeta returns the newest version of a group's role.
func (v *Vendor) LatestDistMeta(ctx context.Context, customer, group, role string) (*catalog.Meta, error) {
	m := catalog.Meta{Customer: customer, Group: group, Role: role}
	var exp int64
	err := v.conn().row(ctx, `SELECT version, expires, body FROM v_dist_meta WHERE customer_id = ? AND grp = ? AND role = ? ORDER BY version DESC LIMIT 1`,
		customer, group, role).Scan(&m.Version, &exp, &m.Body)
	if err != nil {
		return nil, v.scanErr(err, role+" metadata of", customer+"/"+group)
	}
	m.Expires = fromNanos(exp)
	return &m, nil
}

// RecordDistStatuses stores devices' latest statuses in one transaction;
// an installed status also sets the customer's installed version.
func (v *Vendor) RecordDistStatuses(ctx context.Context, sts []*catalog.Status) error {
	return v.tx(ctx, func(c conn) error {
		for _, s := range sts {
			if _, err := c.exec(ctx, `INSERT INTO v_dist_status (customer_id, site_id, grp, device, app_id, version, status, log, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (customer_id, site_id, device, app_id) DO UPDATE SET grp = excluded.grp, version = excluded.version, status = excluded.status, log = excluded.log, at = excluded.at
			WHERE v_dist_status.at <= excluded.at`,
				s.Customer, s.Site, s.Group, s.Device, s.App, s.Version, s.Status, s.Log, toNanos(s.At)); err != nil {
				return v.dbErr(err, "store device status")
			}
			if s.Status != catalog.StatusInstalled {
				continue
			}
			if _, err := c.exec(ctx, `INSERT INTO v_dist_installed (customer_id, app_id, version, device, at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (customer_id, app_id) DO UPDATE SET version = excluded.version, device = excluded.device, at = excluded.at
			WHERE v_dist_installed.at <= excluded.at`, s.Customer, s.App, s.Version, s.Device, toNanos(s.At)); err != nil {
				return v.dbErr(err, "store installed version")
			}
		}
		return nil
	})
}

// DistStatuses lists a customer's device statuses ("" for all).
func (v *Vendor) DistStatuses(ctx context.Context, customer string) ([]*catalog.Status, error) {
	return list(ctx, v.conn(), "list device statuses", func(sc scanner) (*catalog.Status, error) {
		var s catalog.Status
		var at int64
		err := sc.Scan(&s.Customer, &s.Site, &s.Group, &s.Device, &s.App, &s.Version, &s.Status, &s.Log, &at)
		s.At = fromNanos(at)
		return &s, err
	}, `SELECT customer_id, site_id, grp, device, app_id, version, status, log, at FROM v_dist_status WHERE customer_id = ? OR ? = '' ORDER BY customer_id, site_id, device, app_id`, customer, customer)
}

// DistInstalled lists a customer's confirmed installed versions ("" for all).
func (v *Vendor) DistInstalled(ctx context.Context, customer string) ([]*catalog.Installed, error) {
	return list(ctx, v.conn(), "list installed versions", func(sc scanner) (*catalog.Installed, error) {
		var i catalog.Installed
		var at int64
		err := sc.Scan(&i.Customer, &i.App, &i.Version, &i.Device, &at)
		i.At = fromNanos(at)
		return &i, err
	}, `SELECT customer_id, app_id, version, device, at FROM v_dist_installed WHERE customer_id = ? OR ? = '' ORDER BY customer_id, app_id`, customer, customer)
}

// SetDistSiteDevices replaces a site's device counts per group.
func (v *Vendor) SetDistSiteDevices(ctx context.Context, customer, site string, counts map[string]int, at time.Time) error {
	return v.tx(ctx, func(c conn) error {
		if _, err := c.exec(ctx, `DELETE FROM v_dist_site_devices WHERE customer_id = ? AND site_id = ?`, customer, site); err != nil {
			return v.dbErr(err, "replace device counts")
		}
		for g, n := range counts {
			if _, err := c.exec(ctx, `INSERT INTO v_dist_site_devices (customer_id, site_id, grp, devices, updated) VALUES (?, ?, ?, ?, ?)`,
				customer, site, g, n, toNanos(at)); err != nil {
				return v.dbErr(err, "store device counts")
			}
		}
		return nil
	})
}

// DistSiteDevices lists a customer's device counts by site and group.
func (v *Vendor) DistSiteDevices(ctx context.Context, customer string) ([]*catalog.SiteDevices, error) {
	return list(ctx, v.conn(), "list device counts", func(sc scanner) (*catalog.SiteDevices, error) {
		var d catalog.SiteDevices
		return &d, sc.Scan(&d.Site, &d.Group, &d.Devices)
	}, `SELECT site_id, grp, devices FROM v_dist_site_devices WHERE customer_id = ? ORDER BY site_id, grp`, customer)
}

// AddDistGroup stores a device group; Conflict if it exists.
func (s *Site) AddDistGroup(ctx context.Context, g *mirror.Group) error {
	_, err := s.conn().exec(ctx, `INSERT INTO s_dist_groups (name, created) VALUES (?, ?)`, g.Name, toNanos(g.Created))
	if s.isUnique(err) {
		return errs.Wrap(errs.Conflict, err, "group %q exists already", g.Name)
	}
	return s.dbErr(err, "store group "+g.Name)
}

// DistGroups lists the device groups by name.
func (s *Site) DistGroups(ctx context.Context) ([]*mirror.Group, error) {
	return list(ctx, s.conn(), "list groups", func(sc scanner) (*mirror.Group, error) {
		var g mirror.Group
		var created int64
		err := sc.Scan(&g.Name, &created)
		g.Created = fromNanos(created)
		return &g, err
	}, `SELECT name, created FROM s_dist_groups ORDER BY name`)
}

// AddDistDevice stores a device credential.
func (s *Site) AddDistDevice(ctx context.Context, d *mirror.Device) error {
	_, err := s.conn().exec(ctx, `INSERT INTO s_dist_devices (id, name, grp, token_hash, created) VALUES (?, ?, ?, ?, ?)`,
		d.ID, d.Name, d.Group, d.TokenHash, toNanos(d.Created))
	if s.isUnique(err) {
		return errs.Wrap(errs.Conflict, err, "device %q exists already; choose another --name", d.Name)
	}
	if s.isFK(err) {
		return errs.Wrap(errs.NotFound, err, "group %q not found: add it with 'licet site group add --name %s'", d.Group, d.Group)
	}
	return s.dbErr(err, "store device "+d.Name)
}

const deviceCols = `id, name, grp, token_hash, created`

func scanDevice(sc scanner) (*mirror.Device, error) {
	var d mirror.Device
	var created int64
	err := sc.Scan(&d.ID, &d.Name, &d.Group, &d.TokenHash, &created)
	d.Created = fromNanos(created)
	return &d, err
}

// DistDeviceByToken returns the device whose token has hash.
func (s *Site) DistDeviceByToken(ctx context.Context, hash []byte) (*mirror.Device, error) {
	d, err := scanDevice(s.conn().row(ctx, `SELECT `+deviceCols+` FROM s_dist_devices WHERE token_hash = ?`, hash))
	if err != nil {
		return nil, s.scanErr(err, "device", "by token")
	}
	return d, nil
}

// DistDevices lists the devices by name.
func (s *Site) DistDevices(ctx context.Context) ([]*mirror.Device, error) {
	return list(ctx, s.conn(), "list devices", scanDevice, `SELECT `+deviceCols+` FROM s_dist_devices ORDER BY name`)
}

// RemoveDistDevice deletes a device credential by name.
func (s *Site) RemoveDistDevice(ctx context.Context, name string) error {
	res, err := s.conn().exec(ctx, `DELETE FROM s_dist_devices WHERE name = ?`, name)
	if err != nil {
		return s.dbErr(err, "remove device "+name)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return notFound("device", name)
	}
	return nil
}

// PutDistRoot stores a root version once.
func (s *Site) PutDistRoot(ctx context.Context, version int64, body, anchor []byte) error {
	_, err := s.conn().exec(ctx, `INSERT INTO s_dist_roots (version, body, anchor) VALUES (?, ?, ?) ON CONFLICT (version) DO NOTHING`, version, body, nonNilBytes(anchor))
	return s.dbErr(err, "store root metadata")
}

// SiteDistRoot returns a root version and its anchor.
func (s *Site) SiteDistRoot(ctx context.Context, version int64) ([]byte, []byte, error) {
	var body, anchor []byte
	if err := s.conn().row(ctx, `SELECT body, anchor FROM s_dist_roots WHERE version = ?`, version).Scan(&body, &anchor); err != nil {
		return nil, nil, s.scanErr(err, "root metadata version", itoa(version))
	}
	return body, anchor, nil
}

// PutSiteDistMeta stores a metadata version once.
func (s *Site) PutSiteDistMeta(ctx context.Context, group, role string, version int64, body []byte) error {
	_, err := s.conn().exec(ctx, `INSERT INTO s_dist_meta (grp, role, version, body) VALUES (?, ?, ?, ?) ON CONFLICT (grp, role, version) DO NOTHING`, group, role, version, body)
	return s.dbErr(err, "store metadata")
}

// SiteDistMeta returns one metadata version of a group's role.
func (s *Site) SiteDistMeta(ctx context.Context, group, role string, version int64) ([]byte, error) {
	var body []byte
	if err := s.conn().row(ctx, `SELECT body FROM s_dist_meta WHERE grp = ? AND role = ? AND version = ?`, group, role, version).Scan(&body); err != nil {
		return nil, s.scanErr(err, role+" metadata version "+itoa(version)+" of group", group)
	}
	return body, nil
}

// LatestSiteDistMeta returns the newest version of a group's role.
func (s *Site) LatestSiteDistMeta(ctx context.Context, group, role string) (int64, []byte, error) {
	var v int64
	var body []byte
	if err := s.conn().row(ctx, `SELECT version, body FROM s_dist_meta WHERE grp = ? AND role = ? ORDER BY version DESC LIMIT 1`, group, role).Scan(&v, &body); err != nil {
		return 0, nil, s.scanErr(err, role+" metadata of group", group)
	}
	return v, body, nil
}

// AddDistReport queues a device status. Its ID orders reports: the clock
// in nanoseconds, made strictly increasing within the process.
func (s *Site) AddDistReport(ctx context.Context, r *mirror.Report) error {
	for try := 0; ; try++ {
		r.ID = nextReportID()
		// In a transaction, so that concurrent devices' reports share a commit.
		err := s.tx(ctx, func(c conn) error {
			_, err := c.exec(ctx, `INSERT INTO s_dist_reports (id, device, grp, app_id, version, status, log, at, sent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				r.ID, r.Device, r.Group, r.App, r.Version, r.Status, r.Log, toNanos(r.At), false)
			return err
		})
		if s.isUnique(err) && try < 3 {
			continue // another process took the same nanosecond
		}
		return s.dbErr(err, "store device report")
	}
}

var lastReportID atomic.Int64

func nextReportID() int64 {
	for {
		last, now := lastReportID.Load(), time.Now().UnixNano()
		next := max(now, last+1)
		if lastReportID.CompareAndSwap(last, next) {
			return next
		}
	}
}

const reportCols = `id, device, grp, app_id, version, status, log, at, sent`

func scanReport(sc scanner) (*mirror.Report, error) {
	var r mirror.Report
	var at int64
	err := sc.Scan(&r.ID, &r.Device, &r.Group, &r.App, &r.Version, &r.Status, &r.Log, &at, &r.Sent)
	r.At = fromNanos(at)
	return &r, err
}

// PendingDistReports returns up to limit reports not yet sent, oldest first.
func (s *Site) PendingDistReports(ctx context.Context, limit int) ([]*mirror.Report, error) {
	return list(ctx, s.conn(), "list pending reports", scanReport, `SELECT `+reportCols+` FROM s_dist_reports WHERE sent = ? ORDER BY id LIMIT ?`, false, limit)
}

// MarkDistReportsSent marks reports as delivered to the vendor.
func (s *Site) MarkDistReportsSent(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	args := []any{true}
	for _, id := range ids {
		args = append(args, id)
	}
	_, err := s.conn().exec(ctx, `UPDATE s_dist_reports SET sent = ? WHERE id IN (?`+strings.Repeat(", ?", len(ids)-1)+`)`, args...)
	return s.dbErr(err, "mark reports sent")
}

// DistReports returns each device's latest report per application.
func (s *Site) DistReports(ctx context.Context) ([]*mirror.Report, error) {
	return list(ctx, s.conn(), "list reports", scanReport, `SELECT `+reportCols+` FROM s_dist_reports r
		WHERE NOT EXISTS (SELECT 1 FROM s_dist_reports n WHERE n.device = r.device AND n.app_id = r.app_id AND n.id > r.id)
		ORDER BY grp, device, app_id`)
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

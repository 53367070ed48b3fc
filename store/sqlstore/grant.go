package sqlstore

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"slices"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/verify"
)

// PutImage registers or replaces the reference image of a software ID.
func (s *Site) PutImage(ctx context.Context, img *licenseserver.Image) error {
	return s.tx(ctx, func(c conn) error {
		if _, err := c.exec(ctx, `DELETE FROM s_images WHERE software_id = ?`, int64(img.SoftwareID)); err != nil {
			return s.dbErr(err, "replace image")
		}
		_, err := c.exec(ctx, `INSERT INTO s_images (software_id, name, sha256, size, added) VALUES (?, ?, ?, ?, ?)`,
			int64(img.SoftwareID), img.Name, nonNilBytes(img.SHA256), img.Size, toNanos(img.Added))
		return s.dbErr(err, "register image")
	})
}

func scanImage(sc interface{ Scan(...any) error }) (*licenseserver.Image, error) {
	var img licenseserver.Image
	var sid, added int64
	if err := sc.Scan(&sid, &img.Name, &img.SHA256, &img.Size, &added); err != nil {
		return nil, err
	}
	img.SoftwareID, img.Added = uint32(sid), fromNanos(added)
	return &img, nil
}

// Image returns the reference image of a software ID.
func (s *Site) Image(ctx context.Context, softwareID uint32) (*licenseserver.Image, error) {
	img, err := scanImage(s.conn().row(ctx, `SELECT software_id, name, sha256, size, added FROM s_images WHERE software_id = ?`, int64(softwareID)))
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errs.E(errs.NotFound, "no client image is registered for software ID %d; register one with 'licet site image add'", softwareID)
		}
		return nil, s.dbErr(err, "read client image")
	}
	return img, nil
}

// Images lists the registered images.
func (s *Site) Images(ctx context.Context) ([]*licenseserver.Image, error) {
	return list(ctx, s.conn(), "list images", scanImage, `SELECT software_id, name, sha256, size, added FROM s_images ORDER BY software_id`)
}

// ConsumeChallenge records a wrongly answered challenge, so that it cannot
// be answered again; the row is swept once the challenge has expired.
func (s *Site) ConsumeChallenge(ctx context.Context, id string, expires time.Time) error {
	return s.tx(ctx, func(c conn) error {
		return s.recordChallenge(ctx, c, id, expires, time.Now())
	})
}

// recordChallenge records challenge id as answered, in a transaction, and
// sweeps a few expired ones; licenseserver.ErrChallengeAnswered (Invalid) if it was answered before.
func (s *Site) recordChallenge(ctx context.Context, c conn, id string, expires, now time.Time) error {
	_, err := c.exec(ctx, `INSERT INTO s_used_challenges (id, expires) VALUES (?, ?)`, id, toNanos(expires))
	return s.challengeRecorded(ctx, c, err, now)
}

// challengeRecorded follows the recording of an answered challenge, whose
// error is err: licenseserver.ErrChallengeAnswered (Invalid) if it was answered before; else it sweeps.
func (s *Site) challengeRecorded(ctx context.Context, c conn, err error, now time.Time) error {
	if err != nil {
		if s.d.IsUnique(err) {
			return licenseserver.ErrChallengeAnswered
		}
		return s.dbErr(err, "record answered challenge")
	}
	// Answered challenges are kept until they expire; every sweepEvery-th
	// answer sweeps up to sweepEvery*4 expired ones: four an answer, as
	// many as come in, for one statement in sweepEvery.
	if s.answered.Add(1)%sweepEvery != 0 {
		return nil
	}
	if _, err := c.exec(ctx, `DELETE FROM s_used_challenges WHERE id IN (SELECT id FROM s_used_challenges WHERE expires < ? LIMIT ?)`, toNanos(now), sweepEvery*4); err != nil {
		return s.dbErr(err, "sweep answered challenges")
	}
	return nil
}

// sweepEvery is how many answered challenges a sweep of expired ones waits for.
const sweepEvery = 8

const assignmentCols = `license_id, pack_id, client_id, system_id, product_id, platform, client_key, issued, expires, cert,
	client_hpke, upgrade_pack_id, upgraded_from`

func scanAssignment(sc interface{ Scan(...any) error }) (*licenseserver.Assignment, error) {
	var a licenseserver.Assignment
	var issued int64
	var exp, from sql.NullInt64
	var upPack sql.NullString
	if err := sc.Scan(&a.LicenseID, &a.PackID, &a.ClientID, &a.SystemID, &a.ProductID, &a.Platform, &a.ClientKey, &issued, &exp, &a.Cert,
		&a.ClientHPKE, &upPack, &from); err != nil {
		return nil, err
	}
	a.Issued, a.Expires, a.UpgradePackID, a.UpgradedFrom = fromNanos(issued), fromNullNanos(exp), upPack.String, from.Int64
	return &a, nil
}

// AssignSeat returns the client's live assignment or allocates a seat. The
// seat is taken with a conditional update (assigned < quantity), so two
// processes can never both take the last one; a concurrent grant to the same
// client loses on the unique (client, product) key and retries as a reissue.
func (s *Site) AssignSeat(ctx context.Context, req licenseserver.SeatRequest, sign func(*licenseserver.Assignment, *licenseserver.InstalledPack) ([]byte, error)) (*licenseserver.Assignment, bool, error) {
	for attempt := 0; ; attempt++ {
		a, existing, err := s.assignOnce(ctx, req, sign)
		if err != nil && s.d.IsUnique(errors.Unwrap(err)) && attempt < 3 {
			continue
		}
		return a, existing, err
	}
}

func (s *Site) assignOnce(ctx context.Context, req licenseserver.SeatRequest, sign func(*licenseserver.Assignment, *licenseserver.InstalledPack) ([]byte, error)) (*licenseserver.Assignment, bool, error) {
	now := toNanos(req.Now)
	var out *licenseserver.Assignment
	existing := false
	err := s.lightTx(ctx, func(c conn) error {
		out, existing = nil, false // the transaction may run again after a lock conflict
		a, err, fatal := s.answerAndLookUp(ctx, c, req)
		if fatal != nil {
			return fatal
		}
		if err == nil && a.SystemID == licenseserver.ReleasedSystemID {
			// Released by the administrator: the client takes it over on this system.
			if _, err := c.exec(ctx, `UPDATE s_assignments SET system_id = ?, cert = ? WHERE license_id = ?`, req.SystemID, []byte{}, a.LicenseID); err != nil {
				return s.dbErr(err, "move the released license")
			}
			a.SystemID, a.Cert = req.SystemID, nil
		}
		switch {
		case err == nil && (a.Expires == nil || a.Expires.UnixNano() > now) && a.SystemID != req.SystemID:
			// A license stays on the machine it was granted to: a copied
			// client key on other hardware gets nothing (issue 12).
			return errs.E(errs.Forbidden, "rejected: license %d of %s was granted to client %s on system %q, and this request comes from system %q; a license stays on its machine. If the client moved, the administrator frees the seat with 'licet site license release --license %d'",
				a.LicenseID, req.ProductID, req.ClientID, a.SystemID, req.SystemID, a.LicenseID)
		case err == nil && (a.Expires == nil || a.Expires.UnixNano() > now):
			out, existing = a, true
			if len(req.ClientHPKE) > 0 && !bytes.Equal(a.ClientHPKE, req.ClientHPKE) {
				if _, err := c.exec(ctx, `UPDATE s_assignments SET client_hpke = ? WHERE license_id = ?`, req.ClientHPKE, a.LicenseID); err != nil {
					return s.dbErr(err, "record the client's encryption key")
				}
				a.ClientHPKE = req.ClientHPKE
			}
			if len(a.Cert) > 0 && (req.Stale == nil || !req.Stale(a.Cert)) {
				return nil
			}
			return s.storeCert(ctx, c, a, sign)
		case err == nil: // the client's license died with its pack: free the key for a new seat
			if _, err := c.exec(ctx, `DELETE FROM s_assignments WHERE license_id = ?`, a.LicenseID); err != nil {
				return s.dbErr(err, "retire expired assignment")
			}
		case !errors.Is(err, sql.ErrNoRows):
			return s.dbErr(err, "look up assignment")
		}
		if req.Lease != nil {
			if err := s.consumeLease(ctx, c, req.Lease); err != nil {
				return err
			}
			out = req.Lease.Assignment
			return nil
		}
		if err := c.lockShared(ctx); err != nil {
			return err
		}
		for {
			p, err := scanPack(c.row(ctx, `SELECT `+packCols+` FROM s_packs
				WHERE product_id = ? AND platform = ? AND assigned < quantity AND upgrade_from_min IS NULL
				  AND (first_active IS NULL OR first_active <= ?) AND (expires IS NULL OR expires > ?)
				ORDER BY installed, pack_id LIMIT 1`, req.ProductID, req.Platform, now, now))
			if errors.Is(err, sql.ErrNoRows) {
				// Every seat is taken out of its pack; some may be leased to
				// processes and not granted yet: take one of them here.
				p, serial, err := s.takeAnyLease(ctx, c, req.ProductID, req.Platform, now)
				if err != nil {
					return err
				}
				if p != nil {
					out = &licenseserver.Assignment{LicenseID: serial, PackID: p.PackID, ClientID: req.ClientID, SystemID: req.SystemID,
						ProductID: req.ProductID, Platform: req.Platform, ClientKey: req.ClientKey, ClientHPKE: req.ClientHPKE, Issued: fromNanos(now), Expires: p.Expires}
					if out.Cert, err = sign(out, p); err != nil {
						return err
					}
					return s.recordAssignment(ctx, c, out)
				}
				if req.TemporaryFor > 0 {
					out, existing, err = s.temporary(ctx, c, req, sign)
					return err
				}
				return errs.E(errs.Exhausted, "no free seat of %s for platform %s: every installed pack is used up, expired or not yet active", req.ProductID, req.Platform)
			}
			if err != nil {
				return s.dbErr(err, "find a pack with a free seat")
			}
			var serial int64
			err = c.row(ctx, `UPDATE s_packs SET assigned = assigned + 1 WHERE pack_id = ? AND assigned < quantity
				RETURNING begin_serial + assigned - 1`, p.PackID).Scan(&serial)
			if errors.Is(err, sql.ErrNoRows) {
				continue // another process took the pack's last seat: try the next pack
			}
			if err != nil {
				return s.dbErr(err, "take a seat of pack "+p.PackID)
			}
			out = &licenseserver.Assignment{LicenseID: serial, PackID: p.PackID, ClientID: req.ClientID, SystemID: req.SystemID,
				ProductID: req.ProductID, Platform: req.Platform, ClientKey: req.ClientKey, ClientHPKE: req.ClientHPKE, Issued: fromNanos(now), Expires: p.Expires}
			if out.Cert, err = sign(out, p); err != nil {
				return err
			}
			return s.recordAssignment(ctx, c, out)
		}
	})
	if err != nil {
		return nil, false, err
	}
	return out, existing, nil
}

// answerAndLookUp records the grant's challenge as answered (fatal if it
// cannot be: answered before, or a database error) and reads the client's
// assignment of the product (lookErr sql.ErrNoRows if it has none): in one
// statement where the dialect allows it.
func (s *Site) answerAndLookUp(ctx context.Context, c conn, req licenseserver.SeatRequest) (a *licenseserver.Assignment, lookErr, fatal error) {
	const lookUp = `SELECT ` + assignmentCols + ` FROM s_assignments WHERE client_id = ? AND product_id = ?`
	if !s.d.WritableCTE {
		if err := s.recordChallenge(ctx, c, req.ChallengeID, req.ChallengeExpires, req.Now); err != nil {
			return nil, nil, err
		}
		a, err := scanAssignment(c.row(ctx, lookUp, req.ClientID, req.ProductID))
		return a, err, nil
	}
	a, err := scanAssignment(c.row(ctx, `WITH answered AS (INSERT INTO s_used_challenges (id, expires) VALUES (?, ?)) `+lookUp,
		req.ChallengeID, toNanos(req.ChallengeExpires), req.ClientID, req.ProductID))
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		// The statement failed: recording the challenge, or reading.
		return nil, nil, s.challengeRecorded(ctx, c, errs.Private(err), req.Now)
	}
	return a, err, s.challengeRecorded(ctx, c, nil, req.Now)
}

// storeCert signs and stores the license of an assignment that has none.
func (s *Site) storeCert(ctx context.Context, c conn, a *licenseserver.Assignment, sign func(*licenseserver.Assignment, *licenseserver.InstalledPack) ([]byte, error)) error {
	id := a.PackID
	if a.Upgraded() {
		id = a.UpgradePackID // an upgraded license is signed from its upgrade pack
	}
	p, err := scanPack(c.row(ctx, `SELECT `+packCols+` FROM s_packs WHERE pack_id = ?`, id))
	if err != nil {
		return s.scanErr(err, "pack", id)
	}
	cert, err := sign(a, p)
	if err != nil {
		return err
	}
	if _, err := c.exec(ctx, `UPDATE s_assignments SET cert = ? WHERE license_id = ?`, cert, a.LicenseID); err != nil {
		return s.dbErr(err, "store license")
	}
	a.Cert = cert
	return nil
}

// Assignments lists assignments by license ID.
func (s *Site) Assignments(ctx context.Context, f licenseserver.AssignmentFilter) ([]*licenseserver.Assignment, error) {
	return list(ctx, s.conn(), "list assignments", scanAssignment, `SELECT `+assignmentCols+` FROM s_assignments
		WHERE (? = '' OR client_id = ?) AND (? = '' OR pack_id = ? OR upgrade_pack_id = ?) ORDER BY license_id`, f.ClientID, f.ClientID, f.PackID, f.PackID, f.PackID)
}

const temporaryCols = `license_id, client_id, system_id, product_id, platform, client_key, issued, expires, cert, pack_id`

func scanTemporary(sc interface{ Scan(...any) error }) (*licenseserver.Assignment, error) {
	var a licenseserver.Assignment
	var issued, expires int64
	if err := sc.Scan(&a.LicenseID, &a.ClientID, &a.SystemID, &a.ProductID, &a.Platform, &a.ClientKey, &issued, &expires, &a.Cert, &a.PackID); err != nil {
		return nil, err
	}
	exp := fromNanos(expires)
	a.Issued, a.Expires, a.Temporary = fromNanos(issued), &exp, true
	return &a, nil
}

// temporary gives the system its one temporary license of the product, or
// the one it already has, inside the seat transaction. A new one is charged
// to the oldest active pack of the product and platform whose statement
// allows another (temp_assigned < temp_count): its license ID comes from
// that pack's temporary range, and it lasts req.TemporaryFor, at most the
// pack's temporary days and never beyond the pack's expiry.
func (s *Site) temporary(ctx context.Context, c conn, req licenseserver.SeatRequest, sign func(*licenseserver.Assignment, *licenseserver.InstalledPack) ([]byte, error)) (*licenseserver.Assignment, bool, error) {
	a, err := scanTemporary(c.row(ctx, `SELECT `+temporaryCols+` FROM s_temporary WHERE system_id = ? AND product_id = ?`, req.SystemID, req.ProductID))
	switch {
	case err == nil && a.ClientID == req.ClientID:
		return a, true, nil
	case err == nil:
		return nil, false, errs.E(errs.Exhausted, "no free seat of %s, and this machine (system %s) already received its one temporary license (%d) under another client key", req.ProductID, req.SystemID, a.LicenseID)
	case !errors.Is(err, sql.ErrNoRows):
		return nil, false, s.dbErr(err, "look up temporary license")
	}
	now := toNanos(req.Now)
	for {
		p, err := scanPack(c.row(ctx, `SELECT `+packCols+` FROM s_packs WHERE product_id = ? AND platform = ? AND upgrade_from_min IS NULL
			AND temp_assigned < temp_count AND (first_active IS NULL OR first_active <= ?) AND (expires IS NULL OR expires > ?)
			ORDER BY installed, pack_id LIMIT 1`, req.ProductID, req.Platform, now, now))
		if errors.Is(err, sql.ErrNoRows) {
			return nil, false, errs.E(errs.Exhausted, "no free seat of %s for platform %s, and no active pack of it allows another temporary license (the vendor states how many in each pack: buy more seats)", req.ProductID, req.Platform)
		}
		if err != nil {
			return nil, false, s.dbErr(err, "find a pack that allows a temporary license")
		}
		var id int64
		err = c.row(ctx, `UPDATE s_packs SET temp_assigned = temp_assigned + 1 WHERE pack_id = ? AND temp_assigned < temp_count
			RETURNING temp_begin + temp_assigned - 1`, p.PackID).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			continue // another process took the pack's last temporary license
		}
		if err != nil {
			return nil, false, s.dbErr(err, "allocate a temporary license ID of pack "+p.PackID)
		}
		d := req.TemporaryFor
		if max := time.Duration(p.TemporaryMaxDays) * 24 * time.Hour; d > max {
			d = max
		}
		exp := req.Now.Add(d).UTC()
		if p.Expires != nil && p.Expires.Before(exp) {
			exp = p.Expires.UTC()
		}
		a = &licenseserver.Assignment{LicenseID: id, PackID: p.PackID, ClientID: req.ClientID, SystemID: req.SystemID, ProductID: req.ProductID,
			Platform: req.Platform, ClientKey: req.ClientKey, Issued: req.Now.UTC(), Expires: &exp, Temporary: true}
		if a.Cert, err = sign(a, p); err != nil {
			return nil, false, err
		}
		_, err = c.exec(ctx, `INSERT INTO s_temporary (`+temporaryCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			a.LicenseID, a.ClientID, a.SystemID, a.ProductID, a.Platform, a.ClientKey, toNanos(a.Issued), toNanos(exp), a.Cert, a.PackID)
		if err != nil {
			return nil, false, errs.Wrap(errs.Internal, err, "record temporary license")
		}
		return a, false, nil
	}
}

// Temporaries lists the temporary licenses granted.
func (s *Site) Temporaries(ctx context.Context) ([]*licenseserver.Assignment, error) {
	return list(ctx, s.conn(), "list temporary licenses", scanTemporary, `SELECT `+temporaryCols+` FROM s_temporary ORDER BY license_id`)
}

// UpgradeSeat exchanges a client's current license for an upgraded one,
// taking one seat of an upgrade pack with a conditional update, in the same
// transaction as the assignment's new license.
func (s *Site) UpgradeSeat(ctx context.Context, req licenseserver.UpgradeRequest, sign func(*licenseserver.Assignment, *licenseserver.InstalledPack) ([]byte, error)) (*licenseserver.Assignment, bool, error) {
	now := toNanos(req.Now)
	var out *licenseserver.Assignment
	existing := false
	err := s.tx(ctx, func(c conn) error {
		out, existing = nil, false // the transaction may run again after a lock conflict
		a, err := scanAssignment(c.row(ctx, `SELECT `+assignmentCols+` FROM s_assignments WHERE client_id = ? AND product_id = ?`, req.ClientID, req.ProductID))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return errs.E(errs.Forbidden, "rejected: license %d of client %s is not on record at this license server (it was never issued here, or a newer license replaced it); request a license", req.LicenseID, req.ClientID)
		case err != nil:
			return s.dbErr(err, "look up assignment")
		case a.UpgradedFrom == req.LicenseID && a.UpgradedFrom != 0:
			out, existing = a, true
			return nil
		case a.LicenseID != req.LicenseID:
			return errs.E(errs.Forbidden, "rejected: license %d is no longer client %s's license of %s (license %d replaced it); present the current license", req.LicenseID, req.ClientID, req.ProductID, a.LicenseID)
		case len(a.ClientHPKE) == 0:
			return errs.E(errs.Conflict, "license %d was granted before this license server recorded clients' encryption keys, so an upgrade cannot be sealed to the client; request a license (POST /v1/licenses) once, then upgrade", req.LicenseID)
		}
		packs, err := upgradePacks(ctx, c, req.ProductID, req.Platform, now)
		if err != nil {
			return err
		}
		packs = slices.DeleteFunc(packs, func(p *licenseserver.InstalledPack) bool {
			newer := verify.CompareVersions(p.ProductVersion, req.Version)
			return !p.Upgrade.Covers(req.Version) || newer < 0 || (newer == 0 && !req.Expired)
		})
		// The newest target first; among equals, the oldest pack (stable sort).
		slices.SortStableFunc(packs, func(x, y *licenseserver.InstalledPack) int {
			return -cmp.Compare(verify.CompareVersions(x.ProductVersion, y.ProductVersion), 0)
		})
		for _, p := range packs {
			var serial int64
			err := c.row(ctx, `UPDATE s_packs SET assigned = assigned + 1 WHERE pack_id = ? AND assigned < quantity
				RETURNING begin_serial + assigned - 1`, p.PackID).Scan(&serial)
			if errors.Is(err, sql.ErrNoRows) {
				continue // another process took the pack's last seat: try the next one
			}
			if err != nil {
				return s.dbErr(err, "take an upgrade seat of pack "+p.PackID)
			}
			up := *a
			up.LicenseID, up.UpgradePackID, up.UpgradedFrom, up.Issued, up.Expires = serial, p.PackID, a.LicenseID, fromNanos(now), p.Expires
			if up.Cert, err = sign(&up, p); err != nil {
				return err
			}
			res, err := c.exec(ctx, `UPDATE s_assignments SET license_id = ?, upgrade_pack_id = ?, upgraded_from = ?, issued = ?, expires = ?, cert = ?
				WHERE license_id = ? AND client_id = ?`, up.LicenseID, up.UpgradePackID, up.UpgradedFrom, now, toNullNanos(up.Expires), up.Cert, a.LicenseID, a.ClientID)
			if err != nil {
				return s.dbErr(err, "record upgraded license")
			}
			// The row was read in this transaction; under the dialects' locking
			// (SQLite's write lock, PostgreSQL's batch lock) it cannot have
			// changed, but a lost update must never hand out an unrecorded license.
			if n, err := res.RowsAffected(); err != nil || n != 1 {
				return errs.E(errs.Conflict, "license %d of client %s changed while it was being upgraded; try again", a.LicenseID, a.ClientID)
			}
			out = &up
			return nil
		}
		return errs.E(errs.Exhausted, "no upgrade seat of %s for platform %s from version %s: install an upgrade pack that covers it (the vendor sells them: 'licet vendor order add --upgrade-from')", req.ProductID, req.Platform, req.Version)
	})
	if err != nil {
		return nil, false, err
	}
	return out, existing, nil
}

// upgradePacks lists, inside the transaction c, the active upgrade packs of
// a product and platform with a free seat, oldest first.
func upgradePacks(ctx context.Context, c conn, product, platform string, now int64) ([]*licenseserver.InstalledPack, error) {
	return list(ctx, c, "list upgrade packs", scanPack, `SELECT `+packCols+` FROM s_packs
		WHERE product_id = ? AND platform = ? AND assigned < quantity AND upgrade_from_min IS NOT NULL
		  AND (first_active IS NULL OR first_active <= ?) AND (expires IS NULL OR expires > ?)
		ORDER BY installed, pack_id`, product, platform, now, now)
}

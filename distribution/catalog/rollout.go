package catalog

import (
	"context"
	"fmt"
	"slices"

	"github.com/licet/licet/distribution/tufmeta"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/ids"
)

// Rollout actions.
const (
	ActionAdvance = "advance"
	ActionPause   = "pause"
	ActionResume  = "resume"
	ActionCancel  = "cancel"
)

// RolloutActions lists the actions on a staged rollout.
var RolloutActions = []string{ActionAdvance, ActionPause, ActionResume, ActionCancel}

func (s *Service) bundle(ctx context.Context, customer, group, app string) (*Bundle, error) {
	bs, err := s.Store.DistBundles(ctx, customer)
	if err != nil {
		return nil, err
	}
	for _, b := range bs {
		if b.Group == group && b.App == app {
			return b, nil
		}
	}
	return nil, errs.E(errs.NotFound, "customer %s's group %s has no bundle of %s", customer, group, app)
}

// RolloutAction advances (to the next phase), pauses, resumes or cancels
// (no further installs) a staged rollout, and publishes the group's new
// metadata.
func (s *Service) RolloutAction(ctx context.Context, customer, group, app, action string) (*Bundle, error) {
	if !slices.Contains(RolloutActions, action) {
		return nil, errs.E(errs.Invalid, "action %q is not one of %v", action, RolloutActions)
	}
	b, err := s.bundle(ctx, customer, group, app)
	if err != nil {
		return nil, err
	}
	r := b.Rollout
	if r == nil {
		return nil, errs.E(errs.Conflict, "the bundle of %s for %s/%s is not staged: it went to every device at once", app, customer, group)
	}
	if r.State == RolloutCancelled || r.State == RolloutDone {
		return nil, errs.E(errs.Conflict, "the rollout is %s; start a new one with 'licet vendor bundle add … --phases'", r.State)
	}
	switch action {
	case ActionAdvance:
		if r.State == RolloutPaused {
			return nil, errs.E(errs.Conflict, "the rollout is paused (%s): resume it first", r.Reason)
		}
		r.Phase++
		if r.Phase >= len(r.Phases)-1 {
			r.Phase, r.State = len(r.Phases)-1, RolloutDone
		}
	case ActionPause:
		r.State, r.Reason = RolloutPaused, "paused by the vendor"
	case ActionResume:
		r.State, r.Reason, r.Since = RolloutActive, "", s.now()
	case ActionCancel:
		r.State = RolloutCancelled
	}
	b.Updated = s.now()
	if err := s.Store.SetDistBundle(ctx, b); err != nil {
		return nil, err
	}
	_, err = s.Publish(ctx, customer, group, s.Expiries.Timestamp)
	return b, err
}

// SiteDevices records a site's device counts per group (it sends them on
// every sync) and evaluates the customer's rollouts against them.
func (s *Service) SiteDevices(ctx context.Context, customer, site string, counts map[string]int) error {
	if len(counts) > 1000 {
		return errs.E(errs.TooLarge, "devices: %d groups; at most 1000", len(counts))
	}
	for g, n := range counts {
		if err := ids.CheckSlug("devices group", g); err != nil {
			return err
		}
		if n < 0 || n > 10_000_000 {
			return errs.E(errs.Invalid, "devices of group %s: %d is out of range", g, n)
		}
	}
	if err := s.Store.SetDistSiteDevices(ctx, customer, site, counts, s.now()); err != nil {
		return err
	}
	return s.EvaluateRollouts(ctx, customer)
}

// admitted estimates how many devices a bundle's current phase admits,
// from the sites' device counts: by sites, the devices of the admitted
// sites; by devices, the phase's share of all of them.
func admitted(b *Bundle, rel *Release, counts []*SiteDevices) int {
	r := b.Rollout
	salt := rel.ID + "/" + b.Group
	total := 0
	for _, c := range counts {
		if c.Group != b.Group {
			continue
		}
		if r.By == "sites" {
			if tufmeta.Bucket(salt, "site:"+c.Site) < r.Percent() {
				total += c.Devices
			}
			continue
		}
		total += c.Devices
	}
	if r.By == "sites" {
		return total
	}
	return (total*r.Percent() + 99) / 100
}

// EvaluateRollouts pauses the active rollouts of a customer whose share of
// failed devices went over their threshold, and advances those whose phase
// has enough confirmed installs when they advance by themselves.
func (s *Service) EvaluateRollouts(ctx context.Context, customer string) error {
	bs, err := s.Store.DistBundles(ctx, customer)
	if err != nil {
		return err
	}
	var sts []*Status
	var counts []*SiteDevices
	for _, b := range bs {
		if b.Rollout == nil || b.Rollout.State != RolloutActive {
			continue
		}
		if sts == nil {
			if sts, err = s.Store.DistStatuses(ctx, customer); err != nil {
				return err
			}
		}
		rel, err := s.Store.DistRelease(ctx, b.Release)
		if err != nil {
			return err
		}
		failed, done := 0, 0
		for _, st := range sts {
			if st.Group != b.Group || st.App != b.App || st.Version != rel.Version || st.At.Before(b.Rollout.Since) {
				continue
			}
			switch st.Status {
			case StatusFailed:
				failed++
				done++
			case StatusInstalled:
				done++
			}
		}
		r := b.Rollout
		switch {
		case failed > 0 && failed*100 > r.MaxFailures*done:
			r.State = RolloutPaused
			r.Reason = fmt.Sprintf("%d of %d devices failed, over the threshold of %d%%", failed, done, r.MaxFailures)
		case r.AutoAdvance > 0:
			if counts == nil {
				if counts, err = s.Store.DistSiteDevices(ctx, customer); err != nil {
					return err
				}
			}
			n := admitted(b, rel, counts)
			if n == 0 || (done-failed)*100 < r.AutoAdvance*n {
				continue
			}
			r.Phase++
			if r.Phase >= len(r.Phases)-1 {
				r.Phase, r.State = len(r.Phases)-1, RolloutDone
			}
		default:
			continue
		}
		b.Updated = s.now()
		if err := s.Store.SetDistBundle(ctx, b); err != nil {
			return err
		}
		if _, err := s.Publish(ctx, customer, b.Group, s.Expiries.Timestamp); err != nil {
			return err
		}
	}
	return nil
}

package catalog

import (
	"context"
	"fmt"
	"slices"

	"github.com/licet/licet/errs"
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

// checkThresholds pauses the active rollouts of a customer whose share of
// failed devices went over their threshold.
func (s *Service) checkThresholds(ctx context.Context, customer string) error {
	bs, err := s.Store.DistBundles(ctx, customer)
	if err != nil {
		return err
	}
	var sts []*Status
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
		if failed > 0 && failed*100 > b.Rollout.MaxFailures*done {
			b.Rollout.State = RolloutPaused
			b.Rollout.Reason = fmt.Sprintf("%d of %d devices failed, over the threshold of %d%%", failed, done, b.Rollout.MaxFailures)
			b.Updated = s.now()
			if err := s.Store.SetDistBundle(ctx, b); err != nil {
				return err
			}
			if _, err := s.Publish(ctx, customer, b.Group, s.Expiries.Timestamp); err != nil {
				return err
			}
		}
	}
	return nil
}

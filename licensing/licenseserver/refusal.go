package licenseserver

import (
	"errors"

	"github.com/licet/licet/errs"
)

// The reasons a grant, a challenge or an upgrade is refused, as RefusalReason
// names them (the reason label of the site's /metrics).
const (
	ReasonWrongAnswer       = "wrong_answer"       // the answer is not the one over the reference image: a patched or other program
	ReasonChallengeInvalid  = "challenge_invalid"  // not a challenge of this site, or made for another client or product, or altered
	ReasonChallengeExpired  = "challenge_expired"  // answered after its expiry
	ReasonChallengeReplayed = "challenge_replayed" // answered before (right or wrong)
	ReasonBadSignature      = "bad_signature"      // the request is not signed by the client key
	ReasonNoSeat            = "no_seat"            // no free seat, and no temporary license to give
	ReasonPoolEmpty         = "pool_empty"         // no precomputed challenge ready (503 with Retry-After)
	ReasonRateLimited       = "rate_limited"       // the client key is over its limits
	ReasonInvalidRequest    = "invalid_request"    // a malformed field
)

// ErrChallengeAnswered is the refusal of a challenge answered before: a
// replay. The store returns it (AssignSeat, ConsumeChallenge).
var ErrChallengeAnswered = errs.E(errs.Invalid, "rejected: this challenge was already answered; request a new challenge")

// refusal is an error tagged with the reason RefusalReason gives for it.
type refusal struct {
	reason string
	err    error
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// refuse tags err with reason, for metrics; the error is otherwise unchanged.
func refuse(reason string, err error) error { return &refusal{reason, err} }

// RefusalReason names why a Grant, NewChallenge or Upgrade failed, from a
// small fixed set (one of the Reason constants, or an errs kind name such as
// "forbidden" or "internal"), for a metrics label.
func RefusalReason(err error) string {
	var r *refusal
	var empty *PoolEmptyError
	switch {
	case errors.As(err, &r):
		return r.reason
	case errors.Is(err, ErrChallengeAnswered):
		return ReasonChallengeReplayed
	case errors.As(err, &empty):
		return ReasonPoolEmpty
	}
	switch k := errs.KindOf(err); k {
	case errs.Exhausted:
		return ReasonNoSeat
	case errs.RateLimited:
		return ReasonRateLimited
	case errs.Invalid, errs.TooLarge:
		return ReasonInvalidRequest
	default:
		return k.String()
	}
}

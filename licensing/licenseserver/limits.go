package licenseserver

import (
	"context"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/ratelimit"
)

// ClientLimits bound what one client key may ask of a Server, before the
// request costs a challenge pair, a transaction or a signature (DESIGN 5b):
// challenges per second, and wrong answers, which are the abuse case (each
// costs a durable transaction that consumes the challenge). A client over a
// limit gets a *RateLimitedError (HTTP 429 with Retry-After). The tables
// hold at most ratelimit.DefaultKeys client keys each, least recently used
// evicted first. Zero rates disable a limit.
type ClientLimits struct {
	ChallengesPerSecond float64
	ChallengeBurst      int
	// WrongAnswersPerMinute is how many wrong answers a client key may send
	// a minute, after WrongAnswerBurst at once; then its challenges are
	// refused until the bucket refills.
	WrongAnswersPerMinute float64
	WrongAnswerBurst      int
}

// DefaultClientLimits let a real client retry freely (an agent asks once per
// license) and hold an attacker to a few wrong answers a minute per key.
var DefaultClientLimits = ClientLimits{ChallengesPerSecond: 2, ChallengeBurst: 10, WrongAnswersPerMinute: 6, WrongAnswerBurst: 3}

// clientLimiters are a Server's tables of ClientLimits.
type clientLimiters struct {
	challenges, wrong *ratelimit.Keyed
}

func (s *Server) clientLimiters() *clientLimiters {
	s.limitOnce.Do(func() {
		l := s.ClientLimits
		if l == nil {
			l = &DefaultClientLimits
		}
		s.limits = &clientLimiters{}
		if l.ChallengesPerSecond > 0 {
			s.limits.challenges = ratelimit.New(l.ChallengesPerSecond, l.ChallengeBurst, 0)
		}
		if l.WrongAnswersPerMinute > 0 {
			s.limits.wrong = ratelimit.New(l.WrongAnswersPerMinute/60, l.WrongAnswerBurst, 0)
		}
	})
	return s.limits
}

// Tarpit is how long, at most, a Server holds a refusal for a client over
// its limits before answering it: a client that asks again at once instead
// of waiting its Retry-After then sends one request a Tarpit per connection,
// however fast it could send them.
const Tarpit = time.Second

// allowChallenge checks a challenge request of a client against its limits:
// its challenge rate, and whether its wrong answers have used up their
// bucket. A refusal is held up to Tarpit (or until ctx ends).
func (s *Server) allowChallenge(ctx context.Context, clientID string, now time.Time) error {
	l := s.clientLimiters()
	var err *RateLimitedError
	if l.wrong != nil {
		// A client with wrong answers left may ask; a wrong answer takes one.
		if ok, wait := l.wrong.Has(clientID, now); !ok {
			err = &RateLimitedError{After: wait, Err: errs.E(errs.RateLimited,
				"client %s sent too many wrong challenge answers; retry in %s with the unmodified client program", clientID, wait.Round(time.Second))}
		}
	}
	if err == nil && l.challenges != nil {
		if ok, wait := l.challenges.Take(clientID, now); !ok {
			err = &RateLimitedError{After: wait, Err: errs.E(errs.RateLimited,
				"client %s asks for challenges too often; retry in %s", clientID, wait.Round(time.Millisecond))}
		}
	}
	if err == nil {
		return nil
	}
	t := time.NewTimer(min(err.After, Tarpit))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return err
}

// wrongAnswer takes a token of the client's wrong-answer bucket.
func (s *Server) wrongAnswer(clientID string, now time.Time) {
	if l := s.clientLimiters(); l.wrong != nil {
		l.wrong.Take(clientID, now)
	}
}

// RateLimitedError is the error of a request over a client's limits: HTTP
// servers answer 429 with a Retry-After of After.
type RateLimitedError struct {
	After time.Duration
	Err   error
}

// Error implements error.
func (e *RateLimitedError) Error() string { return e.Err.Error() }

// Unwrap gives the *errs.Error (kind RateLimited).
func (e *RateLimitedError) Unwrap() error { return e.Err }

// RetryAfter is when the client may ask again.
func (e *RateLimitedError) RetryAfter() time.Duration { return e.After }

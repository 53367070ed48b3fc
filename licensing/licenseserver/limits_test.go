package licenseserver_test

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/challenge"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/licensing/softid"
)

// wrongGrant asks for a challenge and answers it with random bytes.
func wrongGrant(t *testing.T, srv *licenseserver.Server, sid softid.ID, sig *keys.Signer, dec *keys.Decrypter) error {
	ctx := context.Background()
	ch, err := srv.NewChallenge(ctx, licenseserver.ChallengeRequest{SoftwareID: uint32(sid), ProductID: "app", ClientKey: sig.Public()})
	if err != nil {
		return err
	}
	answer := make([]byte, challenge.AnswerSize)
	rand.Read(answer)
	req := &licenseserver.GrantRequest{ChallengeID: ch.ChallengeID, Answer: answer, ClientKey: sig.Public(),
		ClientHPKEKey: dec.PublicBytes(), SystemID: "sys-wrong", ProductID: "app"}
	req.Signature = sig.Sign(licenseserver.GrantMessage(req))
	_, err = srv.Grant(ctx, req)
	return err
}

// A client key that sends WrongAnswerBurst wrong answers gets no further
// challenge (429 with Retry-After) until its bucket refills; another key is
// not affected and is granted.
func TestWrongAnswersLimitedPerClient(t *testing.T) {
	srv, sid, image := newSite(t, 10)
	srv.ClientLimits = &licenseserver.ClientLimits{WrongAnswersPerMinute: 1, WrongAnswerBurst: 2}
	bad, _ := keys.GenerateSigner()
	dec, _ := keys.GenerateDecrypter()
	for i := 0; i < 2; i++ {
		if err := wrongGrant(t, srv, sid, bad, dec); !errs.Is(err, errs.Invalid) {
			t.Fatalf("wrong answer %d: %v, want an Invalid refusal", i+1, err)
		}
	}
	err := wrongGrant(t, srv, sid, bad, dec)
	var rl *licenseserver.RateLimitedError
	if !errors.As(err, &rl) || !errs.Is(err, errs.RateLimited) || rl.RetryAfter() < 50e9 {
		t.Fatalf("third attempt: %v, want a RateLimitedError with a retry of about a minute", err)
	}
	good, _ := keys.GenerateSigner()
	if g := grant(t, srv, sid, image, good, dec); g.Assignment == nil {
		t.Error("another client key was not granted")
	}
}

// A client key asking for challenges faster than ChallengesPerSecond after
// its burst is refused, after the tarpit.
func TestChallengesLimitedPerClient(t *testing.T) {
	srv, sid, _ := newSite(t, 10)
	srv.ClientLimits = &licenseserver.ClientLimits{ChallengesPerSecond: 0.001, ChallengeBurst: 3}
	sig, _ := keys.GenerateSigner()
	other, _ := keys.GenerateSigner()
	ask := func(s *keys.Signer) error {
		_, err := srv.NewChallenge(context.Background(), licenseserver.ChallengeRequest{SoftwareID: uint32(sid), ProductID: "app", ClientKey: s.Public()})
		return err
	}
	for i := 0; i < 3; i++ {
		if err := ask(sig); err != nil {
			t.Fatalf("challenge %d of a burst of 3: %v", i+1, err)
		}
	}
	start := time.Now()
	if err := ask(sig); !errs.Is(err, errs.RateLimited) {
		t.Errorf("fourth challenge: %v, want RateLimited", err)
	}
	if held := time.Since(start); held < licenseserver.Tarpit*9/10 {
		t.Errorf("the refusal came after %v; it is held for the tarpit (%v)", held, licenseserver.Tarpit)
	}
	if err := ask(other); err != nil {
		t.Errorf("another client key: %v", err)
	}
}

package licenseserver_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/api"
	"github.com/licet/licet/auth"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/challenge"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/licensing/softid"
)

// grantRequest asks srv for a challenge and makes the signed grant request
// answering it with answer (nil: the right answer over image).
func grantRequest(t *testing.T, srv *licenseserver.Server, sid softid.ID, image, answer []byte, sig *keys.Signer, dec *keys.Decrypter) *licenseserver.GrantRequest {
	t.Helper()
	ch, err := srv.NewChallenge(context.Background(), licenseserver.ChallengeRequest{SoftwareID: uint32(sid), ProductID: "app", ClientKey: sig.Public()})
	must(t, err)
	if answer == nil {
		answer, err = challenge.Answer(ch.Nonce, bytes.NewReader(image))
		must(t, err)
	}
	return signedGrant(ch.ChallengeID, answer, sig, dec)
}

func signedGrant(challengeID string, answer []byte, sig *keys.Signer, dec *keys.Decrypter) *licenseserver.GrantRequest {
	req := &licenseserver.GrantRequest{ChallengeID: challengeID, Answer: answer, ClientKey: sig.Public(),
		ClientHPKEKey: dec.PublicBytes(), SystemID: "sys-test", ProductID: "app"}
	req.Signature = sig.Sign(licenseserver.GrantMessage(req))
	return req
}

// refused checks that err is Invalid and mentions want.
func refused(t *testing.T, err error, want, what string) {
	t.Helper()
	if !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), want) {
		t.Fatalf("%s: got %v, want an Invalid error saying %q", what, err, want)
	}
}

func newClient(t *testing.T) (*keys.Signer, *keys.Decrypter) {
	sig, err := keys.GenerateSigner()
	must(t, err)
	dec, err := keys.GenerateDecrypter()
	must(t, err)
	return sig, dec
}

func TestWrongAnswerConsumesChallenge(t *testing.T) {
	srv, sid, image := newSite(t, 10)
	sig, dec := newClient(t)
	ctx := context.Background()
	wrong := grantRequest(t, srv, sid, image, make([]byte, challenge.AnswerSize), sig, dec)
	_, err := srv.Grant(ctx, wrong)
	refused(t, err, "does not match the reference image", "a wrong answer")
	// The right answer to the same challenge comes too late.
	ch, err := srv.NewChallenge(ctx, licenseserver.ChallengeRequest{SoftwareID: uint32(sid), ProductID: "app", ClientKey: sig.Public()})
	must(t, err)
	_ = ch
	right := grantRequest(t, srv, sid, image, nil, sig, dec)
	late := signedGrant(wrong.ChallengeID, right.Answer, sig, dec)
	_, err = srv.Grant(ctx, late)
	refused(t, err, "already answered", "an answer to a challenge answered wrongly before")
	// The wrong answer again: still refused, as answered.
	_, err = srv.Grant(ctx, wrong)
	refused(t, err, "already answered", "a wrong answer replayed")
	// A fresh challenge answered right is granted.
	if _, err := srv.Grant(ctx, right); err != nil {
		t.Fatalf("a right answer to a fresh challenge: %v", err)
	}
}

func TestConsumedChallengeReplayRefused(t *testing.T) {
	srv, sid, image := newSite(t, 10)
	sig, dec := newClient(t)
	req := grantRequest(t, srv, sid, image, nil, sig, dec)
	if _, err := srv.Grant(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	_, err := srv.Grant(context.Background(), req)
	refused(t, err, "already answered", "a right answer replayed")
}

func TestChallengeOfAnotherSiteRefused(t *testing.T) {
	srvA, sid, image := newSite(t, 10)
	srvB, _, _ := newSite(t, 10)
	sig, dec := newClient(t)
	req := grantRequest(t, srvA, sid, image, nil, sig, dec)
	_, err := srvB.Grant(context.Background(), req)
	refused(t, err, "by another license server", "a challenge of another site")
	// The same site still grants it: the refusal consumed nothing there.
	if _, err := srvA.Grant(context.Background(), req); err != nil {
		t.Fatalf("the challenge at its own site: %v", err)
	}
}

func TestTamperedChallengeRefused(t *testing.T) {
	srv, sid, image := newSite(t, 10)
	sig, dec := newClient(t)
	req := grantRequest(t, srv, sid, image, nil, sig, dec)
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(req.ChallengeID, "ch-"))
	must(t, err)
	// Every byte: the nonce, software ID and expiry in clear, the GCM nonce,
	// the sealed answer and the tag.
	for i := range raw {
		bad := bytes.Clone(raw)
		bad[i] ^= 0x01
		r := signedGrant("ch-"+base64.RawURLEncoding.EncodeToString(bad), req.Answer, sig, dec)
		_, err := srv.Grant(context.Background(), r)
		refused(t, err, "rejected", "challenge ID altered at byte "+strconv.Itoa(i))
	}
	// Truncated, and bound to its product: another product's request is refused.
	r := signedGrant(req.ChallengeID[:len(req.ChallengeID)-4], req.Answer, sig, dec)
	_, err = srv.Grant(context.Background(), r)
	refused(t, err, "not a challenge of this license server", "a truncated challenge ID")
	other := *req
	other.ProductID = "other"
	other.Signature = sig.Sign(licenseserver.GrantMessage(&other))
	_, err = srv.Grant(context.Background(), &other)
	refused(t, err, "made for another client key or product", "a challenge of another product")
	if _, err := srv.Grant(context.Background(), req); err != nil {
		t.Fatalf("the untouched challenge after the attempts: %v", err)
	}
}

// waitPool waits until the pool of the only image holds want pairs.
func waitPool(t *testing.T, srv *licenseserver.Server, want int) licenseserver.PoolStat {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := srv.PoolStats()
		if len(st) == 1 && st[0].Pairs == want {
			return st[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pool did not reach %d pairs within 20 s: %+v", want, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEmptyPoolAnswers503AndRefills(t *testing.T) {
	srv, sid, image := newSite(t, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	must(t, srv.StartChallengePools(ctx, licenseserver.PoolOptions{Size: 3, Workers: 1}))
	waitPool(t, srv, 3)
	licenseserver.PausePools(srv, true)
	h := api.NewSiteHandler(srv, slog.New(slog.DiscardHandler), api.Limits{})
	ts := httptest.NewServer(h)
	defer ts.Close()
	sig, dec := newClient(t)
	body := `{"software_id":` + strconv.Itoa(int(sid)) + `,"product_id":"app","client_key":"` + base64.StdEncoding.EncodeToString(sig.Public()) + `"}`
	post := func() *http.Response {
		resp, err := http.Post(ts.URL+"/v1/challenges", "application/json", strings.NewReader(body))
		must(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for i := range 3 {
		if resp := post(); resp.StatusCode != http.StatusCreated {
			t.Fatalf("challenge %d of a full pool of 3: %s", i+1, resp.Status)
		}
	}
	resp := post()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("challenge from an empty pool: %s, want 503", resp.Status)
	}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || secs < 1 {
		t.Fatalf("Retry-After of the 503 is %q, want a positive number of seconds", resp.Header.Get("Retry-After"))
	}
	_, err := srv.NewChallenge(ctx, licenseserver.ChallengeRequest{SoftwareID: uint32(sid), ProductID: "app", ClientKey: sig.Public()})
	var empty *licenseserver.PoolEmptyError
	if !errors.As(err, &empty) || !errs.Is(err, errs.Exhausted) {
		t.Fatalf("NewChallenge with an empty pool: %v, want a PoolEmptyError of kind Exhausted", err)
	}
	// /metrics shows the level and the refusals.
	metricsToken, err := auth.NewScopedToken(ctx, srv.Store, "prometheus", auth.ScopeMetrics, time.Now())
	must(t, err)
	mreq, _ := http.NewRequest(http.MethodGet, ts.URL+"/metrics", nil)
	mreq.Header.Set("Authorization", "Bearer "+metricsToken)
	mresp, err := http.DefaultClient.Do(mreq)
	must(t, err)
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	label := `{software_id="` + sid.String() + `"}`
	for _, want := range []string{"licet_challenge_pool_pairs" + label + " 0", "licet_challenge_pool_capacity" + label + " 3",
		"licet_challenge_pool_handed_total" + label + " 3", "licet_challenge_pool_empty_total" + label + " 2"} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Resumed, the pool refills, and its challenges are answered over the image.
	licenseserver.PausePools(srv, false)
	st := waitPool(t, srv, 3)
	if st.Computed < 6 || st.Empty != 2 {
		t.Errorf("pool after refilling: %+v, want 6 computed and 2 refusals", st)
	}
	if resp := post(); resp.StatusCode != http.StatusCreated {
		t.Fatalf("challenge after the refill: %s", resp.Status)
	}
	grant(t, srv, sid, image, sig, dec)
}

func TestUnknownImageRejected(t *testing.T) {
	srv, _, _ := newSite(t, 10)
	sig, _ := newClient(t)
	other, _ := softid.Make("non-windows", 7, 313)
	_, err := srv.NewChallenge(context.Background(), licenseserver.ChallengeRequest{SoftwareID: uint32(other), ProductID: "app", ClientKey: sig.Public()})
	if !errs.Is(err, errs.NotFound) || !strings.Contains(err.Error(), "knows no client image") {
		t.Fatalf("challenge for a software ID without an image: %v, want NotFound", err)
	}
}

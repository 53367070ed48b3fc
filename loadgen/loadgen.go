// Package loadgen drives a running licet site over HTTP with many simulated
// clients and measures throughput and latency: 'licet bench' wraps it. Every
// simulated client is real: its own Ed25519 and HPKE keys, a real platform
// challenge answered over a real image, a signed grant request, and the
// license decrypted and verified against the vendor root.
package loadgen

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/licet/licet/api"
	"github.com/licet/licet/challenge"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licenseserver"
	"github.com/licet/licet/softid"
	"github.com/licet/licet/verify"
)

// Result summarises a run.
type Result struct {
	Operation   string        `json:"operation"`
	Requests    int           `json:"requests"`
	OK          int           `json:"ok"`
	Rejected    int           `json:"rejected"` // refused by the server: no seat, bad input
	Failed      int           `json:"failed"`   // transport or server errors
	Elapsed     time.Duration `json:"elapsed_ns"`
	PerSecond   float64       `json:"per_second"`
	P50         time.Duration `json:"p50_ns"`
	P90         time.Duration `json:"p90_ns"`
	P99         time.Duration `json:"p99_ns"`
	Max         time.Duration `json:"max_ns"`
	FirstErrors []string      `json:"first_errors,omitempty"`
	// Granted maps each client that got a license to its license ID (grants only).
	Granted map[string]int64 `json:"-"`
}

// String is a one-screen human summary.
func (r *Result) String() string {
	return fmt.Sprintf("%s: %d requests in %s: %.0f/s ok=%d rejected=%d failed=%d  p50=%s p90=%s p99=%s max=%s",
		r.Operation, r.Requests, r.Elapsed.Round(time.Millisecond), r.PerSecond, r.OK, r.Rejected, r.Failed,
		r.P50.Round(time.Microsecond), r.P90.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond))
}

// recorder collects latencies and outcomes from many goroutines.
type recorder struct {
	mu        sync.Mutex
	latencies []time.Duration
	ok, rej   int
	failed    int
	errs      []string
}

func (r *recorder) add(d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.latencies = append(r.latencies, d)
	switch {
	case err == nil:
		r.ok++
	case errs.KindOf(err) != errs.Internal:
		r.rej++
	default:
		r.failed++
	}
	if err != nil && len(r.errs) < 5 {
		r.errs = append(r.errs, err.Error())
	}
}

func (r *recorder) result(op string, elapsed time.Duration) *Result {
	slices.Sort(r.latencies)
	pct := func(p float64) time.Duration {
		if len(r.latencies) == 0 {
			return 0
		}
		return r.latencies[min(len(r.latencies)-1, int(float64(len(r.latencies))*p))]
	}
	res := &Result{Operation: op, Requests: len(r.latencies), OK: r.ok, Rejected: r.rej, Failed: r.failed,
		Elapsed: elapsed, P50: pct(.50), P90: pct(.90), P99: pct(.99), FirstErrors: r.errs}
	if n := len(r.latencies); n > 0 {
		res.Max = r.latencies[n-1]
	}
	if elapsed > 0 {
		res.PerSecond = float64(res.OK) / elapsed.Seconds()
	}
	return res
}

// httpClient is shared by all simulated clients: keep-alive connections, as
// real clients behind a gateway would have.
func httpClient(concurrency int) *http.Client {
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		MaxIdleConns: concurrency * 2, MaxIdleConnsPerHost: concurrency * 2, IdleConnTimeout: 90 * time.Second,
	}}
}

// GrantOptions configure a grant storm.
type GrantOptions struct {
	Servers     []string // requests go round robin to these sites (processes sharing one database)
	ProductID   string
	SoftwareID  softid.ID
	Image       string // the client image the challenge is answered over
	Clients     int    // distinct simulated clients, each granting once
	Concurrency int
	RootPEM     []byte // if set, every license is decrypted and verified
}

// client is one simulated client identity.
type client struct {
	sig *keys.Signer
	dec *keys.Decrypter
}

// Grants runs opts.Clients grants with opts.Concurrency workers. Keys are made
// before the clock starts; each measured operation is challenge + answer +
// grant (+ decrypt and verify when RootPEM is set).
func Grants(ctx context.Context, opts GrantOptions) (*Result, error) {
	image, err := os.ReadFile(opts.Image)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "read image")
	}
	var v *verify.Verifier
	if opts.RootPEM != nil {
		if v, err = verify.New(opts.RootPEM); err != nil {
			return nil, errs.Wrap(errs.Invalid, err, "root")
		}
	}
	clients := make([]client, opts.Clients)
	for i := range clients {
		if clients[i].sig, err = keys.GenerateSigner(); err != nil {
			return nil, err
		}
		if clients[i].dec, err = keys.GenerateDecrypter(); err != nil {
			return nil, err
		}
	}
	if len(opts.Servers) == 0 {
		return nil, errs.E(errs.Usage, "no server to drive")
	}
	hc := httpClient(opts.Concurrency)
	sites := make([]*api.Client, len(opts.Servers))
	for i, u := range opts.Servers {
		sites[i] = &api.Client{BaseURL: u, HTTP: hc}
	}
	rec := &recorder{}
	var mu sync.Mutex
	granted := map[string]int64{}
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range max(1, opts.Concurrency) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(clients) {
					return
				}
				t0 := time.Now()
				id, err := grantOnce(ctx, sites[i%len(sites)], clients[i], opts, image, v)
				rec.add(time.Since(t0), err)
				if err == nil {
					mu.Lock()
					granted[verify.ClientID(clients[i].sig.Public())] = id
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	res := rec.result("grant", time.Since(start))
	res.Granted = granted
	return res, ctx.Err()
}

func grantOnce(ctx context.Context, c *api.Client, cl client, opts GrantOptions, image []byte, v *verify.Verifier) (int64, error) {
	ch, err := c.Challenge(ctx, licenseserver.ChallengeRequest{SoftwareID: uint32(opts.SoftwareID), ProductID: opts.ProductID, ClientKey: cl.sig.Public()})
	if err != nil {
		return 0, err
	}
	answer, err := challenge.Answer(ch.Nonce, bytes.NewReader(image))
	if err != nil {
		return 0, err
	}
	req := &licenseserver.GrantRequest{ChallengeID: ch.ChallengeID, Answer: answer, ClientKey: cl.sig.Public(),
		ClientHPKEKey: cl.dec.PublicBytes(), SystemID: "sys-loadgen", ProductID: opts.ProductID}
	req.Signature = cl.sig.Sign(licenseserver.GrantMessage(req))
	resp, err := c.Grant(ctx, req)
	if err != nil {
		return 0, err
	}
	if v == nil {
		return resp.LicenseID, nil
	}
	pem, err := licenseserver.OpenLicense([]byte(resp.License), cl.dec)
	if err != nil {
		return 0, err
	}
	lic, err := v.Verify(pem, verify.Options{Product: opts.ProductID, ClientKey: ed25519.PublicKey(cl.sig.Public())})
	if err != nil {
		return 0, errs.Wrap(errs.Internal, err, "granted license does not verify")
	}
	return lic.LicenseID, nil
}

// VerifyOptions configure an HTTP verification run.
type VerifyOptions struct {
	Server      string
	License     []byte // license PEM
	ProductID   string
	Requests    int
	Concurrency int
}

// Verifications posts the license to the site's verification endpoint
// opts.Requests times over keep-alive connections.
func Verifications(ctx context.Context, opts VerifyOptions) (*Result, error) {
	hc := httpClient(opts.Concurrency)
	url := opts.Server + "/v1/licenses/verify?product=" + opts.ProductID
	rec := &recorder{}
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range max(1, opts.Concurrency) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && int(next.Add(1)) <= opts.Requests {
				t0 := time.Now()
				err := verifyOnce(ctx, hc, url, opts.License)
				rec.add(time.Since(t0), err)
			}
		}()
	}
	wg.Wait()
	return rec.result("verify", time.Since(start)), ctx.Err()
}

func verifyOnce(ctx context.Context, hc *http.Client, url string, lic []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(lic))
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// Package loadgen drives a running licet site over HTTP with many simulated
// clients and measures throughput and latency: 'licet bench' wraps it. Every
// simulated client is real: its own Ed25519 and HPKE keys, a real platform
// challenge answered over a real image, a signed grant request, and the
// license decrypted and verified against the vendor root. KeepAlive drives
// any HTTP/1.1 server on keep-alive connections the caller opened ('licet
// bench gateway').
package loadgen

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/licet/licet/api"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/challenge"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/licensing/softid"
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
	// Phases are the timed phases of a prepared-answers run (challenges,
	// then grants); Notes say what was left out of the measurement.
	Phases []*Result `json:"phases,omitempty"`
	Notes  []string  `json:"notes,omitempty"`
	// SiteCPUPerGrant is the CPU time the sites used per granted license
	// over the timed phases (from their /metrics), if they export it.
	SiteCPUPerGrant time.Duration `json:"site_cpu_per_grant_ns,omitempty"`
	// GeneratorCPUPerGrant is the CPU time this load generator used per
	// granted license over the timed phases (user and system, where the
	// system reports it): what it takes from a site on the same machine.
	GeneratorCPUPerGrant time.Duration `json:"generator_cpu_per_grant_ns,omitempty"`
	// Granted maps each client that got a license to its license ID (grants only).
	Granted map[string]int64 `json:"-"`
	// Latencies are the latencies of every request, sorted (for Merge).
	Latencies []time.Duration `json:"-"`
}

// String is a one-screen human summary: the result's line, then its
// phases and notes indented, if any.
func (r *Result) String() string {
	s := fmt.Sprintf("%s: %d requests in %s: %.0f/s ok=%d rejected=%d failed=%d  p50=%s p90=%s p99=%s max=%s",
		r.Operation, r.Requests, r.Elapsed.Round(time.Millisecond), r.PerSecond, r.OK, r.Rejected, r.Failed,
		r.P50.Round(time.Microsecond), r.P90.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond))
	if r.SiteCPUPerGrant > 0 {
		s += fmt.Sprintf("  site-cpu/grant=%s", r.SiteCPUPerGrant.Round(time.Microsecond))
	}
	if r.GeneratorCPUPerGrant > 0 {
		s += fmt.Sprintf("  loadgen-cpu/grant=%s", r.GeneratorCPUPerGrant.Round(time.Microsecond))
	}
	for _, ph := range r.Phases {
		s += "\n  " + ph.String()
	}
	for _, n := range r.Notes {
		s += "\n  note: " + n
	}
	return s
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

// absorb adds the outcomes of another run (its latencies, counts and first
// errors) to r, which no goroutine is recording into.
func (r *recorder) absorb(latencies []time.Duration, ok, rej, failed int, errList []string) {
	r.latencies = append(r.latencies, latencies...)
	r.ok, r.rej, r.failed = r.ok+ok, r.rej+rej, r.failed+failed
	for _, e := range errList {
		if len(r.errs) < 5 {
			r.errs = append(r.errs, e)
		}
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
		Elapsed: elapsed, P50: pct(.50), P90: pct(.90), P99: pct(.99), FirstErrors: r.errs, Latencies: r.latencies}
	if n := len(r.latencies); n > 0 {
		res.Max = r.latencies[n-1]
	}
	if elapsed > 0 {
		res.PerSecond = float64(res.OK) / elapsed.Seconds()
	}
	return res
}

// httpClient is shared by all simulated clients: keep-alive connections, as
// real clients behind a gateway would have, on a transport that costs the
// load generator little CPU (leanTransport). Call the returned function when
// done: it closes the idle connections.
func httpClient() (*http.Client, func()) {
	t := newLeanTransport(60 * time.Second)
	return &http.Client{Transport: t}, t.closeIdle
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
	// PrepareAnswers fetches every client's challenge first (timed), then
	// computes the answers (not timed: real clients hash their images on
	// their own machines), then sends the grants (timed).
	PrepareAnswers bool
	// WrongAnswers makes every client answer its challenges with random
	// bytes (an attacker, or a modified client program), Concurrency clients
	// each asking again as soon as it is refused, until Duration has passed
	// or Clients requests were sent. Refusals count as rejected.
	WrongAnswers bool
	Duration     time.Duration
	// IgnoreRetryAfter makes WrongAnswers clients ask again at once after a
	// 429 instead of waiting the Retry-After the site asked for.
	IgnoreRetryAfter bool
	// MetricsToken, if set, is a site token of scope metrics, sent with the
	// /metrics requests that read the sites' CPU time (and with no other).
	MetricsToken string
}

// withMetricsToken returns hc sending token, if any, with /metrics requests.
func withMetricsToken(hc *http.Client, token string) *http.Client {
	if token == "" {
		return hc
	}
	c := *hc
	c.Transport = metricsTokenTransport{base: cmp.Or[http.RoundTripper](hc.Transport, http.DefaultTransport), token: token}
	return &c
}

// metricsTokenTransport adds a bearer token to /metrics requests only: the
// license requests of simulated clients carry none, as real ones do not.
type metricsTokenTransport struct {
	base  http.RoundTripper
	token string
}

// RoundTrip implements http.RoundTripper.
func (t metricsTokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/metrics" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+t.token)
	}
	return t.base.RoundTrip(r)
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
	nClients := opts.Clients
	if opts.WrongAnswers { // the same few keys ask again and again
		nClients = min(nClients, max(1, opts.Concurrency))
	}
	clients := make([]client, nClients)
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
	lean, closeIdle := httpClient()
	defer closeIdle()
	hc := withMetricsToken(lean, opts.MetricsToken)
	sites := make([]*api.Client, len(opts.Servers))
	for i, u := range opts.Servers {
		sites[i] = &api.Client{BaseURL: u, HTTP: hc}
	}
	if opts.PrepareAnswers {
		return preparedGrants(ctx, opts, sites, hc, clients, image, v)
	}
	if opts.WrongAnswers {
		return wrongAnswers(ctx, opts, sites, clients)
	}
	cpu0, own0 := siteCPU(ctx, hc, opts.Servers), ownCPU()
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
	res.GeneratorCPUPerGrant = cpuPerGrant(own0, ownCPU(), res.OK)
	res.SiteCPUPerGrant = cpuPerGrant(cpu0, siteCPU(ctx, hc, opts.Servers), res.OK)
	return res, ctx.Err()
}

// wrongAnswers is Grants with WrongAnswers: each worker is one client that
// asks for a challenge and answers it wrongly, again and again.
func wrongAnswers(ctx context.Context, opts GrantOptions, sites []*api.Client, clients []client) (*Result, error) {
	if opts.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}
	rec := &recorder{}
	var sent atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := range clients {
		wg.Go(func() {
			for ctx.Err() == nil && int(sent.Add(1)) <= opts.Clients {
				c := sites[w%len(sites)]
				t0 := time.Now()
				ch, err := c.Challenge(ctx, licenseserver.ChallengeRequest{SoftwareID: uint32(opts.SoftwareID), ProductID: opts.ProductID, ClientKey: clients[w].sig.Public()})
				if err == nil {
					answer := make([]byte, challenge.AnswerSize)
					rand.Read(answer)
					_, err = sendGrant(ctx, c, clients[w], opts, ch, answer, nil)
					if err == nil {
						err = errs.E(errs.Internal, "the site granted a license for a wrong answer")
					}
				}
				if ctx.Err() != nil {
					return // cut off by the end of the run, not refused
				}
				rec.add(time.Since(t0), err)
				var ra interface{ RetryAfter() time.Duration }
				if !opts.IgnoreRetryAfter && errs.Is(err, errs.RateLimited) && errors.As(err, &ra) {
					select {
					case <-ctx.Done():
					case <-time.After(ra.RetryAfter()):
					}
				}
			}
		})
	}
	wg.Wait()
	return rec.result("wrong-answer", time.Since(start)), nil
}

// forEach runs f(i) for i in [0, n) on conc goroutines.
func forEach(ctx context.Context, n, conc int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(1, conc) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

// preparedGrants is Grants with PrepareAnswers: three phases, the first
// and last timed. Between them each client computes its answer and signs
// its grant request, as real clients do on their own machines. The grant
// line's rate is over the two timed phases; its latencies are each client's
// challenge plus grant round trips.
func preparedGrants(ctx context.Context, opts GrantOptions, sites []*api.Client, hc *http.Client, clients []client, image []byte, v *verify.Verifier) (*Result, error) {
	n := len(clients)
	chs := make([]*licenseserver.ChallengeResponse, n)
	chLat := make([]time.Duration, n)
	chErr := make([]error, n)
	cpu0, own0 := siteCPU(ctx, hc, opts.Servers), ownCPU()
	chRec := &recorder{}
	t0 := time.Now()
	forEach(ctx, n, opts.Concurrency, func(i int) {
		s := time.Now()
		ch, err := sites[i%len(sites)].Challenge(ctx, licenseserver.ChallengeRequest{SoftwareID: uint32(opts.SoftwareID), ProductID: opts.ProductID, ClientKey: clients[i].sig.Public()})
		chLat[i], chErr[i] = time.Since(s), err
		chRec.add(chLat[i], err)
		if err == nil {
			chs[i] = ch
		}
	})
	chRes := chRec.result("challenge", time.Since(t0))
	cpu1, own1 := siteCPU(ctx, hc, opts.Servers), ownCPU()

	bodies := make([][]byte, n)
	t1 := time.Now()
	forEach(ctx, n, runtime.GOMAXPROCS(0), func(i int) {
		if chs[i] == nil {
			return
		}
		answer, err := challenge.Answer(chs[i].Nonce, bytes.NewReader(image))
		if err == nil {
			bodies[i], err = grantBody(clients[i], opts, chs[i], answer)
		}
		if err != nil {
			chs[i], chErr[i] = nil, errs.Wrap(errs.Internal, err, "prepare the grant request")
		}
	})
	answerTime := time.Since(t1)

	cpu2, own2 := siteCPU(ctx, hc, opts.Servers), ownCPU()
	grRec, total := &recorder{}, &recorder{}
	granted := map[string]int64{}
	t2 := time.Now()
	forEach(ctx, n, opts.Concurrency, func(i int) {
		if chs[i] == nil {
			return
		}
		s := time.Now()
		id, err := postGrant(ctx, sites[i%len(sites)], clients[i], opts, bodies[i], v)
		d := time.Since(s)
		grRec.add(d, err)
		if err != nil {
			total.add(chLat[i]+d, err)
			return
		}
		total.mu.Lock()
		defer total.mu.Unlock()
		total.latencies = append(total.latencies, chLat[i]+d)
		total.ok++
		granted[verify.ClientID(clients[i].sig.Public())] = id
	})
	grRes := grRec.result("grant phase", time.Since(t2))
	cpu3, own3 := siteCPU(ctx, hc, opts.Servers), ownCPU()
	for i, err := range chErr { // clients whose challenge failed count in the total too
		if err != nil {
			total.add(chLat[i], err)
		}
	}
	res := total.result("grant", chRes.Elapsed+grRes.Elapsed)
	res.Phases = []*Result{chRes, grRes}
	res.Notes = []string{fmt.Sprintf("answers computed and grant requests signed between the phases, not timed: %d over a %d-byte image in %s on %d goroutines (real clients do this on their own machines)",
		n-chRes.Rejected-chRes.Failed, len(image), answerTime.Round(time.Millisecond), runtime.GOMAXPROCS(0))}
	res.Granted = granted
	if cpu0 >= 0 && cpu1 >= 0 && cpu2 >= 0 && cpu3 >= 0 {
		res.SiteCPUPerGrant = cpuPerGrant(0, (cpu1-cpu0)+(cpu3-cpu2), res.OK)
	}
	if own0 >= 0 {
		res.GeneratorCPUPerGrant = cpuPerGrant(0, (own1-own0)+(own3-own2), res.OK)
	}
	return res, ctx.Err()
}

// siteCPU sums process_cpu_seconds_total of the sites' /metrics; -1 if a
// site does not export it.
func siteCPU(ctx context.Context, hc *http.Client, servers []string) float64 {
	var sum float64
	for _, u := range servers {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/metrics", nil)
		if err != nil {
			return -1
		}
		resp, err := hc.Do(req)
		if err != nil {
			return -1
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		found := false
		for _, line := range bytes.Split(body, []byte("\n")) {
			if v, ok := bytes.CutPrefix(line, []byte("process_cpu_seconds_total ")); ok {
				var f float64
				if _, err := fmt.Sscan(string(v), &f); err == nil {
					sum, found = sum+f, true
				}
			}
		}
		if !found {
			return -1
		}
	}
	return sum
}

func cpuPerGrant(before, after float64, grants int) time.Duration {
	if before < 0 || after < 0 || grants == 0 {
		return 0
	}
	return time.Duration((after - before) / float64(grants) * float64(time.Second))
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
	return sendGrant(ctx, c, cl, opts, ch, answer, v)
}

// sendGrant sends the signed grant request answering ch, and decrypts and
// verifies the license if v is set.
func sendGrant(ctx context.Context, c *api.Client, cl client, opts GrantOptions, ch *licenseserver.ChallengeResponse, answer []byte, v *verify.Verifier) (int64, error) {
	body, err := grantBody(cl, opts, ch, answer)
	if err != nil {
		return 0, err
	}
	return postGrant(ctx, c, cl, opts, body, v)
}

// grantBody is the JSON of the signed grant request answering ch.
func grantBody(cl client, opts GrantOptions, ch *licenseserver.ChallengeResponse, answer []byte) ([]byte, error) {
	req := &licenseserver.GrantRequest{ChallengeID: ch.ChallengeID, Answer: answer, ClientKey: cl.sig.Public(),
		ClientHPKEKey: cl.dec.PublicBytes(), SystemID: "sys-loadgen", ProductID: opts.ProductID}
	req.Signature = cl.sig.Sign(licenseserver.GrantMessage(req))
	return json.Marshal(req)
}

// postGrant sends a grant request (grantBody) and returns the license ID.
// Without v it reads the ID alone: decoding the license from its JSON string
// would cost the load generator, which shares the site's machine, more than
// anything else it does per grant; with v it decrypts and verifies the
// license, as a client does.
func postGrant(ctx context.Context, c *api.Client, cl client, opts GrantOptions, body []byte, v *verify.Verifier) (int64, error) {
	data, err := c.PostJSON(ctx, "/v1/licenses", body)
	if err != nil {
		return 0, err
	}
	if v == nil {
		return licenseID(data)
	}
	var resp api.GrantResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return 0, errs.Wrap(errs.Internal, err, "the grant answer is not the expected JSON")
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

// licenseID reads license_id from a grant answer: from its first field,
// where the site writes it (api.GrantResponse), else by decoding the JSON.
func licenseID(data []byte) (int64, error) {
	const prefix = `{"license_id":`
	if rest, ok := bytes.CutPrefix(data, []byte(prefix)); ok {
		if end := bytes.IndexByte(rest, ','); end > 0 {
			if id, err := strconv.ParseInt(string(rest[:end]), 10, 64); err == nil {
				return id, nil
			}
		}
	}
	var resp struct {
		LicenseID int64 `json:"license_id"`
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return 0, errs.Wrap(errs.Internal, err, "the grant answer is not the expected JSON")
	}
	return resp.LicenseID, nil
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
	hc, closeIdle := httpClient()
	defer closeIdle()
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

// Merge sums runs of the same operation (phases of one benchmark, say) into
// one result: counts and elapsed times add up, percentiles are over all the
// requests, and PerSecond is the total OK over the total elapsed time.
func Merge(op string, runs ...*Result) *Result {
	rec := &recorder{}
	var elapsed time.Duration
	for _, r := range runs {
		rec.absorb(r.Latencies, r.OK, r.Rejected, r.Failed, r.FirstErrors)
		elapsed += r.Elapsed
	}
	return rec.result(op, elapsed)
}

// KeepAliveOptions configure a run of HTTP/1.1 requests on persistent
// connections that the caller opened; they stay open after the run, so that
// several runs (alternating phases) can use the same ones.
type KeepAliveOptions struct {
	Operation string
	Conns     []net.Conn // one worker per connection, one request at a time (no pipelining)
	Duration  time.Duration
	// Request appends to dst the raw HTTP/1.1 request (request line, headers,
	// blank line, body) that worker (an index into Conns) sends next.
	Request func(dst []byte, worker int) []byte
	// WantStatus is the status that counts as OK; default 200. Other statuses
	// count as rejected (below 500) or failed.
	WantStatus int
}

// KeepAlive sends requests on every connection of opts, one after another,
// for opts.Duration, and measures them. It writes requests and parses
// responses itself (bufio and http.ReadResponse) rather than through
// http.Client, so that the load generator takes less of the CPU it shares
// with the server. A connection that fails or is closed by the server stops
// its worker.
func KeepAlive(ctx context.Context, opts KeepAliveOptions) (*Result, error) {
	if len(opts.Conns) == 0 {
		return nil, errs.E(errs.Usage, "no connection to drive")
	}
	want := opts.WantStatus
	if want == 0 {
		want = http.StatusOK
	}
	recs := make([]*recorder, len(opts.Conns))
	start := time.Now()
	deadline := start.Add(opts.Duration)
	var wg sync.WaitGroup
	for w, conn := range opts.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := &recorder{latencies: make([]time.Duration, 0, 4096)}
			recs[w] = rec
			br := bufio.NewReaderSize(conn, 8192)
			var buf []byte
			for ctx.Err() == nil {
				t0 := time.Now()
				buf = opts.Request(buf[:0], w)
				err := exchange(conn, br, buf, want)
				t1 := time.Now()
				rec.add(t1.Sub(t0), err)
				if err != nil && errs.KindOf(err) == errs.Internal {
					return // the connection is unusable
				}
				if !t1.Before(deadline) {
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := &recorder{}
	for _, r := range recs {
		all.absorb(r.latencies, r.ok, r.rej, r.failed, r.errs)
	}
	return all.result(opts.Operation, elapsed), ctx.Err()
}

// exchange writes one request and reads its response.
func exchange(conn net.Conn, br *bufio.Reader, req []byte, want int) error {
	if _, err := conn.Write(req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	var msg []byte
	if resp.StatusCode != want {
		msg, _ = io.ReadAll(io.LimitReader(resp.Body, 300))
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return err
	case resp.StatusCode != want:
		kind := errs.Invalid
		if resp.StatusCode >= 500 {
			kind = errs.Internal
		}
		return errs.E(kind, "%s: %s", resp.Status, bytes.TrimSpace(msg))
	case resp.Close:
		return errs.E(errs.Internal, "the server closed the connection")
	}
	return nil
}

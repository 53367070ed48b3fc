package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/verify"
)

// Upgrades (licensing seed Fig. 8).
//
// With Options.Upgrade set, a license that verifies in every respect but has
// expired, or is for a product version older than Options.MinVersion, is not
// simply refused: once the client has proved that it holds the license's key
// (the TLS handshake, or the request signature), the gateway exchanges the
// license with the license server for an upgraded one, checks the new
// license, lets the request through with the new license's identity, and
// hands the client the new license file (encrypted to it by the license
// server) in the HeaderLicenseUpdate response header. The outcome of an
// exchange is remembered for a while, so a client that keeps presenting its
// old license costs the license server one request, not one per request.

// Upgraded is the answer of an Options.Upgrade exchange.
type Upgraded struct {
	// Chain is the new license and the certificate of the site that issued
	// it, DER. The gateway checks it like any presented license.
	Chain [][]byte
	// File is the armored LICENSE file of the new license, encrypted to the
	// client: the gateway passes it on in HeaderLicenseUpdate.
	File []byte
}

// UpgradeTimeout bounds one exchange with the license server.
const UpgradeTimeout = 10 * time.Second

// How long the outcome of an exchange is remembered, per presented license.
const (
	upgradeKeep     = 10 * time.Minute
	upgradeFailKeep = 30 * time.Second
	maxUpgrades     = 4096
	maxUpdateFile   = 64 << 10 // bytes of a sealed license file kept per exchange
)

// SiteUpgrader returns an Options.Upgrade function that asks the license
// server at siteURL (POST /v1/upgrades) with token, a site API token of
// scope upgrade ('licet site token create'). client nil means a client with
// UpgradeTimeout as its timeout.
func SiteUpgrader(siteURL *url.URL, token string, client *http.Client) func(ctx context.Context, licensePEM []byte) (*Upgraded, error) {
	if client == nil {
		client = &http.Client{Timeout: UpgradeTimeout}
	}
	endpoint := strings.TrimRight(siteURL.String(), "/") + "/v1/upgrades"
	return func(ctx context.Context, licensePEM []byte) (*Upgraded, error) {
		body, err := json.Marshal(struct {
			License string `json:"license"`
		}{string(licensePEM)})
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("the license server at %s cannot be reached: %w", siteURL.Redacted(), err)
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("read the license server's answer: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			ref := &SiteRefusal{Status: resp.StatusCode, Message: "the license server answered " + resp.Status}
			var e errorBody
			if json.Unmarshal(raw, &e) == nil && e.Error.Message != "" {
				ref.Code, ref.Message = e.Error.Code, e.Error.Message
			}
			if resp.StatusCode == http.StatusUnauthorized {
				ref.Message = "the license server refused the gateway's upgrade token (--site-token-file or $LICET_SITE_TOKEN): " + ref.Message +
					"; give the gateway a token of scope upgrade made by that license server ('licet site token create --scope upgrade')"
			}
			return nil, ref
		}
		var out struct {
			License      string `json:"license"`
			Certificates string `json:"certificates"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, fmt.Errorf("the license server's answer is not the upgrade JSON: %w", err)
		}
		u := &Upgraded{File: []byte(out.License)}
		rest := []byte(out.Certificates)
		for {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			if b.Type == "CERTIFICATE" {
				u.Chain = append(u.Chain, b.Bytes)
			}
		}
		if len(u.Chain) < 2 || len(u.File) == 0 {
			return nil, errors.New("the license server's upgrade answer lacks the license or its certificates")
		}
		return u, nil
	}
}

// SiteUpgradeSeats returns an Options.UpgradeSeats function that asks the
// license server at siteURL (GET /v1/upgrades/seats) with token, the site
// API token of scope upgrade SiteUpgrader uses. client nil means a client
// with UpgradeTimeout as its timeout.
func SiteUpgradeSeats(siteURL *url.URL, token string, client *http.Client) func(ctx context.Context) (string, error) {
	if client == nil {
		client = &http.Client{Timeout: UpgradeTimeout}
	}
	endpoint := strings.TrimRight(siteURL.String(), "/") + "/v1/upgrades/seats"
	return func(ctx context.Context) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
		if err != nil {
			return "", err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return "", fmt.Errorf("the license server at %s cannot be reached: %w", siteURL.Redacted(), err)
		}
		defer resp.Body.Close()
		var out struct {
			Version string `json:"version"`
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("the license server answered %s", resp.Status)
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&out); err != nil || out.Version == "" {
			return "", fmt.Errorf("the license server's answer is not the upgrade seats JSON")
		}
		return out.Version, nil
	}
}

// SiteRefusal is a license server's refusal of an upgrade exchange
// (SiteUpgrader): its HTTP status, and the code and message of its error
// answer.
type SiteRefusal struct {
	Status  int
	Code    string // e.g. "exhausted": no upgrade seat fits; "unauthenticated": the token
	Message string
}

// Error returns the refusal's message, which says what to do.
func (e *SiteRefusal) Error() string { return e.Message }

// upgrades remembers exchanges by the SHA-256 of the presented license
// certificate, and makes concurrent requests with the same license wait for
// one exchange.
type upgrades struct {
	mu    sync.Mutex
	m     map[[32]byte]*upgradeCall
	files map[string]*upgradeCall // by the hex SHA-256 of the new license certificate
}

type upgradeCall struct {
	done  chan struct{}
	e     *entry   // the upgraded license, with update set; nil on failure
	f     *failure // why the exchange failed
	file  []byte   // the new license file, sealed to the client
	until time.Time
	seats string // the license server's upgrade seats (Options.UpgradeSeats) before the exchange; "" unknown
}

// UpgradeSeatsPoll is how often, at most, a gateway asks the license server
// whether its upgrade seats changed (Options.UpgradeSeats).
const UpgradeSeatsPoll = 2 * time.Second

// upgradeSeats is the last answer of Options.UpgradeSeats, asked at most
// every UpgradeSeatsPoll by one request at a time.
type upgradeSeats struct {
	ask    func(ctx context.Context) (string, error)
	log    *slog.Logger // says when the license server cannot be asked
	asking sync.Mutex   // held by the request asking
	mu     sync.Mutex
	value  string // "" unknown
	at     time.Time
}

// current returns the license server's upgrade seats value, asking it if
// the last answer is older than UpgradeSeatsPoll and no other request is
// asking; "" if unknown.
func (u *upgradeSeats) current(now time.Time) string {
	if u.ask == nil {
		return ""
	}
	u.mu.Lock()
	v, fresh := u.value, now.Sub(u.at) < UpgradeSeatsPoll && !u.at.IsZero()
	u.mu.Unlock()
	if fresh || !u.asking.TryLock() {
		return v
	}
	defer u.asking.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), UpgradeTimeout)
	defer cancel()
	nv, err := u.ask(ctx)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.at = now
	if err == nil {
		u.value = nv
	} else {
		u.log.Warn("upgrade seats: the license server could not be asked whether its upgrade seats changed "+
			"(GET /v1/upgrades/seats); a failed upgrade exchange is remembered 30 s, so seats bought meanwhile are used only then", "err", err)
	}
	return u.value
}

// stale reports whether a verified license must be exchanged before use:
// it is for a product version older than the gateway's minimum.
func (c *checker) stale(lic *verify.License) bool {
	return c.minVersion != "" && verify.CompareVersions(lic.ProductVersion, c.minVersion) < 0
}

// oldVersion is the refusal of a license for too old a version.
func (c *checker) oldVersion(lic *verify.License) *failure {
	return c.fail(reasonOldVersion, "license %d is for version %s of %s; this application needs version %s or newer: %s",
		lic.LicenseID, lic.ProductVersion, lic.ProductID, c.minVersion, c.where)
}

// exchange upgrades lic, whose holder has proved its key, or says why not.
func (c *checker) exchange(ctx context.Context, lic *verify.License, now time.Time) (*entry, *failure) {
	if c.upgrade == nil {
		return nil, c.oldVersion(lic)
	}
	key := sha256.Sum256(lic.Raw)
	c.ups.mu.Lock()
	call := c.ups.m[key]
	if call != nil {
		select {
		case <-call.done:
			if now.After(call.until) {
				delete(c.ups.m, key)
				call = nil
			}
		default: // in flight
		}
	}
	if call != nil && isDone(call) && call.f != nil && call.seats != "" {
		// A remembered failure: forgotten if the upgrade seats changed since.
		c.ups.mu.Unlock()
		changed := c.seats.current(now) != call.seats
		c.ups.mu.Lock()
		if changed && c.ups.m[key] == call {
			delete(c.ups.m, key)
		}
		call = c.ups.m[key]
	}
	if call == nil {
		if len(c.ups.m) >= maxUpgrades {
			clear(c.ups.m) // rare; costs at most one exchange per license again
			clear(c.ups.files)
		}
		call = &upgradeCall{done: make(chan struct{})}
		c.ups.m[key] = call
		c.ups.mu.Unlock()
		call.seats = c.seats.current(now)
		c.runExchange(call, lic, now)
	} else {
		c.ups.mu.Unlock()
		select {
		case <-call.done:
		case <-ctx.Done():
			return nil, c.fail(c.staleReason(lic, now), "the request ended while its license was being upgraded; send it again")
		}
	}
	if call.e != nil && !call.e.validAt(now) {
		return nil, c.fail(reasonExpired, "the upgraded license of client %s is not valid now; %s", lic.ClientID, c.where)
	}
	if call.e != nil {
		// The upgraded license is kept for upgradeKeep: a site revoked since
		// it was verified loses it at once, as a cached license does.
		if f := c.revoked(call.e.lic, now); f != nil {
			return nil, f
		}
	}
	return call.e, call.f
}

// isDone reports whether call's exchange has finished.
func isDone(call *upgradeCall) bool {
	select {
	case <-call.done:
		return true
	default:
		return false
	}
}

// runExchange does the exchange of call and publishes its outcome, also
// when Options.Upgrade panics (the waiting requests then get a failure and
// the panic goes on to net/http).
func (c *checker) runExchange(call *upgradeCall, lic *verify.License, now time.Time) {
	call.f = c.fail(c.staleReason(lic, now), "license %d could not be upgraded: the upgrade failed inside the gateway; try again", lic.LicenseID)
	call.until = now.Add(upgradeFailKeep)
	defer close(call.done)
	e, file, f, why := c.doExchange(lic, now)
	call.e, call.f, call.file = e, f, file
	if c.onExchange != nil {
		c.onExchange(why)
	}
	if f == nil {
		call.until = now.Add(upgradeKeep)
		c.ups.mu.Lock()
		if len(c.ups.files) >= maxUpgrades {
			clear(c.ups.files) // rare; a client that missed its file is upgraded again (a repeat at the site)
		}
		c.ups.files[strings.TrimPrefix(e.update, LicenseUpdatePath)] = call
		c.ups.mu.Unlock()
	}
}

// staleReason is the refusal reason of a license that needs an exchange.
func (c *checker) staleReason(lic *verify.License, now time.Time) reason {
	if now.Before(lic.NotAfter) {
		return reasonOldVersion
	}
	return reasonExpired
}

// serveUpdate answers GET LicenseUpdatePath<hex>: the sealed file of an
// upgraded license, to anyone (only its client can open it).
func (c *checker) serveUpdate(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "invalid", "use GET to fetch an upgraded license file")
		return
	}
	id := strings.TrimPrefix(r.URL.Path, LicenseUpdatePath)
	c.ups.mu.Lock()
	call := c.ups.files[id]
	c.ups.mu.Unlock()
	if call == nil || c.now().After(call.until) {
		writeError(w, http.StatusNotFound, "not_found", "no upgraded license "+id+" here (the gateway keeps them 10 minutes); present your license again to be upgraded again")
		return
	}
	w.Header().Set("Content-Type", "application/x-licet-armor")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(call.file)
}

// doExchange asks the license server and checks what it returns, and says
// why it failed for OnExchange (see Options). It runs detached from the
// request that started it, which others may be waiting on.
func (c *checker) doExchange(lic *verify.License, now time.Time) (*entry, []byte, *failure, string) {
	why := "has expired"
	r := c.staleReason(lic, now)
	if r == reasonOldVersion {
		why = "is for version " + lic.ProductVersion + ", older than " + c.minVersion
	}
	ctx, cancel := context.WithTimeout(context.Background(), UpgradeTimeout)
	defer cancel()
	up, err := c.upgrade(ctx, licensePEM(lic))
	if err != nil {
		code := "failed" // unreachable, or an answer that is not an upgrade
		var ref *SiteRefusal
		if errors.As(err, &ref) {
			code = "refused"
			if ref.Code != "" && errs.KindFromCode(ref.Code).String() == ref.Code {
				code = ref.Code // one of the few error codes: a bounded metrics label
			}
		}
		return nil, nil, c.fail(r, "license %d %s and could not be upgraded: %v; %s", lic.LicenseID, why, err, c.where), code
	}
	nl, err := c.verifyChain(up.Chain, verify.Options{Now: now, Product: c.product, ClientKey: lic.ClientKey})
	if err != nil {
		return nil, nil, c.fail(reasonInvalidLicense, "license %d %s, and the license server's upgraded license does not verify: %v", lic.LicenseID, why, err), reasonNames[reasonInvalidLicense]
	}
	if c.stale(nl) {
		return nil, nil, c.oldVersion(nl), reasonNames[reasonOldVersion]
	}
	if len(up.File) == 0 || len(up.File) > maxUpdateFile {
		return nil, nil, c.fail(r, "license %d %s, and the license server's upgraded license file is empty or over %d bytes", lic.LicenseID, why, maxUpdateFile), "bad_file"
	}
	e := newEntry(nl, c.v.Root())
	sum := sha256.Sum256(nl.Raw)
	e.update = LicenseUpdatePath + hex.EncodeToString(sum[:])
	return e, up.File, nil, ""
}

// licensePEM is the license file of lic: the license certificate, then the
// site certificate (as license.EncodePEM writes it; this package imports
// only errs and verify).
func licensePEM(lic *verify.License) []byte {
	var out []byte
	for _, der := range lic.Chain() {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return out
}

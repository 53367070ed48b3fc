package gateway

import (
	"crypto/x509"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/licet/licet/verify"
)

// The nonce memory.
//
// A nonce must be refused again for as long as its request's ts is
// acceptable, that is until ts + skew; after that the ts check refuses a
// replay by itself. So nonces are kept in buckets by ts, not by arrival: a
// replay carries the same (signed) ts and so lands in the same bucket, one
// map lookup, and a whole bucket is dropped at once when its ts range has
// gone out of the window. A bucket covers skew/4 seconds of ts, so a nonce is
// kept at most until ts + skew + skew/4, at most 2.25 skew after it arrived
// and about 1.25 skew with clients whose clocks are right. (The issue asked
// for expiry 2*MaxSkew after arrival; expiring by ts is as safe and holds
// fewer nonces.)
//
// Nonces are stored as a 64-bit seeded hash of client ID and nonce: a
// collision (about one in 10^13 per request at a full memory) refuses a
// fresh request as a replay, it never lets a replay through, and without the
// random seed nobody can aim for one.

const (
	nonceShards  = 64 // independent locks
	nonceBuckets = 16 // ring of ts buckets per shard; more than the 11 a window can span
)

type nonceResult int

const (
	nonceOK        nonceResult = iota
	nonceReplayed              // seen before
	nonceFull                  // memory full; refuse rather than forget
	nonceClockBack             // ts far behind buckets already in use (the clock went back)
	nonceQuota                 // the client holds its share of the memory already
)

type nonceCache struct {
	seed      maphash.Seed
	skew      int64 // seconds
	width     int64 // seconds of ts per bucket
	perShard  int
	perClient int // nonces one client may hold; 0: no quota
	shards    [nonceShards]nonceShard

	qmu       sync.Mutex
	held      map[string]int // nonces held per client, for perClient
	lastSweep atomic.Int64   // when a client over its quota last made every shard expire (unix seconds)
}

type nonceShard struct {
	mu      sync.Mutex
	n       int // entries in all buckets
	buckets [nonceBuckets]nonceBucket
	_       [64]byte // keep shards off each other's cache lines
}

type nonceBucket struct {
	num     int64 // ts / width; -1 when unused
	m       map[uint64]struct{}
	clients map[string]int32 // nonces of m per client, when there is a quota
}

// newNonceCache holds up to size nonces, of which one client may hold
// perClient (0: no quota).
func newNonceCache(skew int64, size, perClient int) *nonceCache {
	c := &nonceCache{seed: maphash.MakeSeed(), skew: skew, width: max(skew/4, 1), perShard: max(size/nonceShards, 1),
		perClient: perClient, held: map[string]int{}}
	for i := range c.shards {
		for j := range c.shards[i].buckets {
			c.shards[i].buckets[j].num = -1
		}
	}
	return c
}

// add records the nonce of a request of client with timestamp ts (already
// checked to be within skew of now), unless it was recorded before.
func (c *nonceCache) add(client, nonce string, ts, now int64) nonceResult {
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(client)
	h.WriteByte(0)
	h.WriteString(nonce)
	key := h.Sum64()

	if c.perClient > 0 && !c.reserve(client, now) {
		return nonceQuota
	}
	res := c.add1(client, key, ts, now)
	if res != nonceOK && c.perClient > 0 {
		c.qmu.Lock()
		c.unreserve(client, 1)
		c.qmu.Unlock()
	}
	return res
}

// reserve takes one of client's quota; if it has none left, it first
// drops expired nonces everywhere (at most once a second).
func (c *nonceCache) reserve(client string, now int64) bool {
	for try := 0; try < 2; try++ {
		c.qmu.Lock()
		ok := c.held[client] < c.perClient
		if ok {
			c.held[client]++
		}
		c.qmu.Unlock()
		if ok {
			return true
		}
		if last := c.lastSweep.Load(); try > 0 || last >= now || !c.lastSweep.CompareAndSwap(last, now) {
			return false
		}
		for i := range c.shards {
			sh := &c.shards[i]
			sh.mu.Lock()
			c.expire(sh, now)
			sh.mu.Unlock()
		}
	}
	return false
}

// unreserve gives back n of client's quota (c.qmu held).
func (c *nonceCache) unreserve(client string, n int) {
	if c.held[client] -= n; c.held[client] <= 0 {
		delete(c.held, client)
	}
}

// add1 is add after the quota: it records key in its shard.
func (c *nonceCache) add1(client string, key uint64, ts, now int64) nonceResult {
	num := ts / c.width
	sh := &c.shards[key>>58] // the top 6 bits; the maps use the low ones
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := &sh.buckets[num%nonceBuckets]
	switch {
	case b.num > num:
		return nonceClockBack
	case b.num < num:
		// A bucket whose ts range has left the window: b.num is at least
		// nonceBuckets widths below num, and the window spans at most 15
		// buckets (2*skew/width + 1, with width = max(skew/4, 1)). Reuse it.
		// A fresh map sized like the old one: clear would keep a peak's
		// memory in every bucket for good.
		sh.n -= len(b.m)
		b.m = make(map[uint64]struct{}, len(b.m))
		c.release(b)
		b.num = num
	}
	if _, seen := b.m[key]; seen {
		return nonceReplayed
	}
	if sh.n >= c.perShard {
		c.expire(sh, now)
		if sh.n >= c.perShard {
			return nonceFull
		}
	}
	if c.perClient > 0 {
		if b.clients == nil {
			b.clients = map[string]int32{}
		}
		b.clients[client]++
	}
	b.m[key] = struct{}{}
	sh.n++
	return nonceOK
}

// release gives back the quota of the nonces of bucket b, which is being
// emptied (sh.mu held).
func (c *nonceCache) release(b *nonceBucket) {
	if len(b.clients) == 0 {
		return
	}
	c.qmu.Lock()
	for client, n := range b.clients {
		c.unreserve(client, int(n))
	}
	c.qmu.Unlock()
	b.clients = nil
}

// expire drops the buckets of sh whose every ts is out of the window.
func (c *nonceCache) expire(sh *nonceShard, now int64) {
	oldest := (now - c.skew) / c.width // buckets before this one hold only ts < now-skew
	for i := range sh.buckets {
		b := &sh.buckets[i]
		if b.num >= 0 && b.num < oldest {
			sh.n -= len(b.m)
			c.release(b)
			b.m = nil // give the memory back: a full memory was unusual
			b.num = -1
		}
	}
}

// len returns the number of nonces held.
func (c *nonceCache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.Lock()
		n += c.shards[i].n
		c.shards[i].mu.Unlock()
	}
	return n
}

// The cache of verified licenses.
//
// Verifying a license costs an Ed25519 verification (the verifier caches
// only the site certificates), and a client sends the same license with
// every request. So the gateway keeps the licenses it verified, keyed by the
// SHA-256 of what the client sent (the license certificate for TLS, the
// Licet-License header otherwise; a cache for each), with the interval in
// which the whole chain is valid and the header values it sets. A hit costs
// a SHA-256 of at most 2 kB and a map lookup. The product was checked when
// the entry was made (one cache per Middleware, so per product), and the
// client key is the one in the certificate hashed into the key.

const licenseShards = 16

// entry is a verified license.
type entry struct {
	lic         *verify.License
	from, until time.Time // the license, its site and the root are all valid in [from, until)
	hdr         [len(identityHeaders)]string
	// update is set on the entry of a license the gateway just obtained by
	// an upgrade: the HeaderLicenseUpdate value for the client.
	update string
}

func (e *entry) validAt(now time.Time) bool { return !now.Before(e.from) && now.Before(e.until) }

type licenseCache struct {
	perShard int
	shards   [licenseShards]struct {
		mu sync.RWMutex
		m  map[[32]byte]*entry
		_  [40]byte
	}
}

func newLicenseCache(size int) *licenseCache {
	c := &licenseCache{perShard: max(size/licenseShards, 1)}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]*entry)
	}
	return c
}

// get returns the entry of key if it is valid at now.
func (c *licenseCache) get(key [32]byte, now time.Time) *entry {
	sh := &c.shards[key[0]%licenseShards]
	sh.mu.RLock()
	e := sh.m[key]
	sh.mu.RUnlock()
	if e == nil {
		return nil
	}
	if !e.validAt(now) {
		sh.mu.Lock()
		if sh.m[key] == e {
			delete(sh.m, key)
		}
		sh.mu.Unlock()
		return nil
	}
	return e
}

// put records a license just verified and returns its entry.
func (c *licenseCache) put(key [32]byte, lic *verify.License, root *x509.Certificate) *entry {
	e := newEntry(lic, root)
	sh := &c.shards[key[0]%licenseShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(sh.m) >= c.perShard {
		for k := range sh.m { // drop an arbitrary one: map order is unspecified
			delete(sh.m, k)
			break
		}
	}
	sh.m[key] = e
	return e
}

// newEntry makes the entry of a license verified against root.
func newEntry(lic *verify.License, root *x509.Certificate) *entry {
	e := &entry{lic: lic, from: lic.NotBefore, until: lic.NotAfter}
	for _, cert := range [...]*x509.Certificate{lic.Site, root} {
		if cert.NotBefore.After(e.from) {
			e.from = cert.NotBefore
		}
		if cert.NotAfter.Before(e.until) {
			e.until = cert.NotAfter
		}
	}
	e.hdr = [...]string{
		lic.ClientID,
		strconv.FormatInt(lic.LicenseID, 10),
		lic.ProductID,
		lic.ProductVersion,
		lic.Platform,
		strings.Join(lic.Features, ","),
		lic.NotAfter.UTC().Format(time.RFC3339),
		strconv.FormatBool(lic.Temporary()),
		lic.SiteID,
		lic.CustomerID,
	}
	return e
}

// Package ratelimit holds token-bucket rate limiters by key (a client IP, a
// client key, a route and IP) in a bounded least-recently-used table: a
// caller that sends from many keys evicts the oldest idle ones, one at a
// time, instead of making the table grow or wiping everyone's state.
package ratelimit

import (
	"container/list"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultKeys bounds a Keyed table unless told otherwise.
const DefaultKeys = 100_000

// Keyed is a set of token buckets, one per key, of the same rate and burst,
// holding at most Max keys. It is safe for concurrent use.
type Keyed struct {
	rate  rate.Limit
	burst int
	max   int

	mu    sync.Mutex
	items map[string]*list.Element // of *entry
	lru   list.List                // front: most recently used
}

type entry struct {
	key string
	lim *rate.Limiter
}

// New returns a table of buckets that refill at perSecond tokens a second
// and hold burst tokens, for at most maxKeys keys (DefaultKeys if 0).
func New(perSecond float64, burst, maxKeys int) *Keyed {
	if maxKeys <= 0 {
		maxKeys = DefaultKeys
	}
	return &Keyed{rate: rate.Limit(perSecond), burst: max(burst, 1), max: maxKeys, items: map[string]*list.Element{}}
}

// limiter returns the bucket of key, making it (and evicting the least
// recently used key if the table is full) if needed.
func (k *Keyed) limiter(key string) *rate.Limiter {
	k.mu.Lock()
	defer k.mu.Unlock()
	if el, ok := k.items[key]; ok {
		k.lru.MoveToFront(el)
		return el.Value.(*entry).lim
	}
	if len(k.items) >= k.max {
		oldest := k.lru.Back()
		k.lru.Remove(oldest)
		delete(k.items, oldest.Value.(*entry).key)
	}
	e := &entry{key: key, lim: rate.NewLimiter(k.rate, k.burst)}
	k.items[key] = k.lru.PushFront(e)
	return e.lim
}

// Take takes a token of key's bucket if it has one; otherwise it returns
// false and how long until the bucket has one again (for Retry-After).
func (k *Keyed) Take(key string, now time.Time) (bool, time.Duration) {
	lim := k.limiter(key)
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Len returns the number of keys held.
func (k *Keyed) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.items)
}

// Has reports whether key's bucket holds a token at now, without taking
// it; if not, how long until it does.
func (k *Keyed) Has(key string, now time.Time) (bool, time.Duration) {
	tokens := k.limiter(key).TokensAt(now)
	if tokens >= 1 {
		return true, 0
	}
	if k.rate <= 0 {
		return false, time.Hour
	}
	return false, time.Duration((1 - tokens) / float64(k.rate) * float64(time.Second))
}

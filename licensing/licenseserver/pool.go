package licenseserver

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/fsutil"
	"github.com/licet/licet/licensing/challenge"
	"github.com/licet/licet/licensing/softid"
)

// Defaults of the challenge pools (see PoolOptions).
const (
	DefaultPoolSize    = 1024
	DefaultPoolWorkers = 1
	DefaultPoolWait    = 100 * time.Millisecond
)

// PoolOptions size the challenge pools: for each registered client image
// the site keeps up to Size precomputed (challenge, expected answer) pairs,
// refilled by Workers background goroutines, so that no image is hashed on
// the request path.
type PoolOptions struct {
	Size    int // pairs per image; 0 means DefaultPoolSize
	Workers int // hashing goroutines shared by all images; 0 means DefaultPoolWorkers
	// Wait is how long a challenge request waits for a pair when its pool
	// is empty before it is refused (503); 0 means DefaultPoolWait, a
	// negative value not at all.
	Wait time.Duration
	// StatusDir, if set, receives a JSON file of this process's pool levels
	// every few seconds ('licet site report' reads it); removed at the end.
	StatusDir string
	Log       *slog.Logger
}

// pair is a precomputed challenge and the answer the reference image gives.
type pair struct {
	nonce  [challenge.Size]byte
	answer [challenge.AnswerSize]byte
}

// imagePool holds the precomputed pairs of one registered image.
type imagePool struct {
	img   *Image
	pairs chan pair

	mu   sync.RWMutex // guards data against unmapping while a worker hashes it
	data []byte       // the image, mapped or read once
	done func() error // releases data

	computed, handed, empty atomic.Uint64
	perPair                 atomic.Int64 // nanoseconds of the last pair's hashing
	failed                  atomic.Pointer[string]
}

func (p *imagePool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		p.done()
	}
	p.data, p.done = nil, nil
}

// pools is the set of challenge pools of a server and their workers.
type pools struct {
	s    *Server
	opts PoolOptions
	wake chan struct{}
	// paused stops the workers (tests only: an empty pool on demand).
	paused atomic.Bool
	// busy counts challenge and grant requests in flight: while there are
	// any, workers hash only for pools that are nearly empty.
	busy atomic.Int64

	mu     sync.RWMutex
	bySID  map[uint32]*imagePool
	loadMu sync.Mutex // one reload at a time
}

// hashChunk is how much of an image a worker hashes before it lets waiting
// request goroutines run (runtime.Gosched): the workers are low priority.
const hashChunk = 256 << 10

// StartChallengePools loads the registered images and starts the workers
// that keep their challenge pools full, until ctx ends. Without it the
// pools start at the first challenge with the default options.
func (s *Server) StartChallengePools(ctx context.Context, opts PoolOptions) error {
	var err error
	started := false
	s.poolOnce.Do(func() {
		started = true
		err = s.startPools(ctx, opts)
	})
	if !started {
		return errs.E(errs.Internal, "the challenge pools are already running; start them once, before serving")
	}
	return err
}

func (s *Server) startPools(ctx context.Context, opts PoolOptions) error {
	if opts.Size <= 0 {
		opts.Size = DefaultPoolSize
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultPoolWorkers
	}
	if opts.Wait == 0 {
		opts.Wait = DefaultPoolWait
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	ps := &pools{s: s, opts: opts, wake: make(chan struct{}, opts.Workers), bySID: map[uint32]*imagePool{}}
	if opts.StatusDir != "" {
		if err := os.MkdirAll(opts.StatusDir, 0o755); err != nil {
			return errs.Wrap(errs.Internal, err, "create the status directory %s", opts.StatusDir)
		}
	}
	if err := ps.reload(ctx); err != nil {
		return err
	}
	s.pool.Store(ps)
	for range opts.Workers {
		go ps.work(ctx)
	}
	go ps.refresh(ctx)
	return nil
}

// challengePools returns the running pools, starting them with the default
// options if StartChallengePools was not called.
func (s *Server) challengePools(ctx context.Context) (*pools, error) {
	var err error
	s.poolOnce.Do(func() { err = s.startPools(context.WithoutCancel(ctx), PoolOptions{}) })
	if err != nil {
		return nil, err
	}
	ps := s.pool.Load()
	if ps == nil {
		return nil, errs.E(errs.Internal, "the challenge pools failed to start (the registered images could not be read); see the server's log and restart it")
	}
	return ps, nil
}

// reload reads the registered images from the store and makes a pool for
// each new one (and a new pool for an image replaced under its software ID).
func (ps *pools) reload(ctx context.Context) error {
	ps.loadMu.Lock()
	defer ps.loadMu.Unlock()
	imgs, err := ps.s.Store.Images(ctx)
	if err != nil {
		return err
	}
	var stale []*imagePool
	ps.mu.Lock()
	seen := map[uint32]bool{}
	for _, img := range imgs {
		seen[img.SoftwareID] = true
		if old := ps.bySID[img.SoftwareID]; old != nil {
			if string(old.img.SHA256) == string(img.SHA256) {
				continue
			}
			stale = append(stale, old)
		}
		data, done, err := mapImage(ps.s.imagePath(img.SHA256), img.Size)
		p := &imagePool{img: img, pairs: make(chan pair, ps.opts.Size), data: data, done: done}
		if err != nil {
			msg := fmt.Sprintf("reference image of software ID %s cannot be read (%v); add it again with 'licet site image add'", softid.ID(img.SoftwareID), err)
			p.failed.Store(&msg)
			ps.opts.Log.Error("challenge pool", "software_id", softid.ID(img.SoftwareID).String(), "err", msg)
		}
		ps.bySID[img.SoftwareID] = p
	}
	for sid, p := range ps.bySID {
		if !seen[sid] {
			stale = append(stale, p)
			delete(ps.bySID, sid)
		}
	}
	ps.mu.Unlock()
	for _, p := range stale {
		p.close()
	}
	ps.signal()
	return nil
}

// refresh picks up images registered by other processes sharing the store,
// and writes the status file.
func (ps *pools) refresh(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	var status string
	if ps.opts.StatusDir != "" {
		status = filepath.Join(ps.opts.StatusDir, fmt.Sprintf("%s%d.json", poolStatusPrefix, os.Getpid()))
		defer os.Remove(status)
	}
	for n := 0; ; n++ {
		if status != "" {
			ps.writeStatus(status)
		}
		select {
		case <-ctx.Done():
			ps.mu.Lock()
			for _, p := range ps.bySID {
				p.close()
			}
			ps.mu.Unlock()
			return
		case <-t.C:
		}
		if n%5 == 4 {
			if err := ps.reload(ctx); err != nil && ctx.Err() == nil {
				ps.opts.Log.Warn("challenge pools: reading the registered images failed", "err", err)
			}
		}
	}
}

func (ps *pools) signal() {
	for {
		select {
		case ps.wake <- struct{}{}:
		default:
			return
		}
	}
}

// neediest returns the pool with the fewest pairs relative to its capacity,
// or nil if every pool is full.
func (ps *pools) neediest() *imagePool {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	var best *imagePool
	for _, p := range ps.bySID {
		if p.failed.Load() != nil || len(p.pairs) == cap(p.pairs) {
			continue
		}
		if best == nil || len(p.pairs) < len(best.pairs) {
			best = p
		}
	}
	return best
}

// work refills pools until ctx ends.
func (ps *pools) work(ctx context.Context) {
	for ctx.Err() == nil {
		var p *imagePool
		if !ps.paused.Load() {
			p = ps.neediest()
		}
		if p == nil {
			select {
			case <-ctx.Done():
				return
			case <-ps.wake:
			}
			continue
		}
		t0 := time.Now()
		pr, ok := p.compute(ctx, ps)
		if !ok {
			continue // the pool was closed: its image was replaced
		}
		p.perPair.Store(int64(time.Since(t0)))
		select {
		case p.pairs <- pr:
			p.computed.Add(1)
		default:
		}
	}
}

// lowWater is the level below which a pool is refilled even while requests
// are being served: a pool that is nearly empty is about to refuse clients.
func (p *imagePool) lowWater() int { return max(1, cap(p.pairs)/64) }

// idleWait is how often a worker that gave way to requests looks again.
const idleWait = 250 * time.Microsecond

// compute makes one pair from p's image, yielding to other goroutines
// between chunks, and pausing while requests are in flight unless the pool
// is nearly empty; false if the pool was closed.
func (p *imagePool) compute(ctx context.Context, ps *pools) (pair, bool) {
	var pr pair
	nonce := challenge.New()
	pr.nonce = nonce
	h := sha256.New()
	h.Write(nonce[:])
	for off := int64(0); ; off += hashChunk {
		p.mu.RLock()
		if p.data == nil {
			p.mu.RUnlock()
			return pr, false
		}
		end := min(off+hashChunk, int64(len(p.data)))
		h.Write(p.data[off:end])
		p.mu.RUnlock()
		if end == int64(len(p.data)) {
			break
		}
		runtime.Gosched()
		for ps.busy.Load() > 0 && len(p.pairs) >= p.lowWater() && ctx.Err() == nil {
			time.Sleep(idleWait)
		}
	}
	h.Write(nonce[:])
	h.Sum(pr.answer[:0])
	return pr, true
}

// take hands out one precomputed pair of the image of sid. NotFound if no
// image is registered; Exhausted (with a retry delay) if the pool is empty.
func (ps *pools) take(ctx context.Context, sid uint32) (pair, error) {
	ps.mu.RLock()
	p := ps.bySID[sid]
	ps.mu.RUnlock()
	if p == nil { // perhaps registered by another process since the last reload
		if _, err := ps.s.Store.Image(ctx, sid); err != nil && !errs.Is(err, errs.NotFound) {
			return pair{}, err
		} else if err == nil {
			if err := ps.reload(ctx); err != nil {
				return pair{}, err
			}
			ps.mu.RLock()
			p = ps.bySID[sid]
			ps.mu.RUnlock()
		}
	}
	if p == nil {
		return pair{}, errs.E(errs.NotFound, "rejected: this license server knows no client image for software ID %s; the administrator must add it ('licet site image add')", softid.ID(sid))
	}
	if msg := p.failed.Load(); msg != nil {
		return pair{}, errs.E(errs.Internal, "%s", *msg)
	}
	var pr pair
	got := false
	select {
	case pr = <-p.pairs:
		got = true
	default:
		if ps.opts.Wait > 0 {
			t := time.NewTimer(ps.opts.Wait)
			select {
			case pr = <-p.pairs:
				got = true
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
	}
	if got {
		p.handed.Add(1)
		select {
		case ps.wake <- struct{}{}:
		default:
		}
		return pr, nil
	}
	p.empty.Add(1)
	after := ps.retryAfter(p)
	return pair{}, &PoolEmptyError{After: after, Err: errs.E(errs.Exhausted,
		"the license server has no precomputed challenge left for software ID %s (a burst of clients took them all); retry in %s", softid.ID(sid), after)}
}

// retryAfter estimates when the next pair of p will be ready: the hashing
// time of one pair spread over the workers, at least a second.
func (ps *pools) retryAfter(p *imagePool) time.Duration {
	d := time.Duration(p.perPair.Load()) / time.Duration(ps.opts.Workers)
	return max(time.Second, d.Round(time.Second))
}

// PoolEmptyError is the error of a challenge request that finds its pool
// empty: HTTP servers answer 503 with a Retry-After of After.
type PoolEmptyError struct {
	After time.Duration
	Err   error
}

// Error implements error.
func (e *PoolEmptyError) Error() string { return e.Err.Error() }

// Unwrap gives the *errs.Error (kind Exhausted).
func (e *PoolEmptyError) Unwrap() error { return e.Err }

// RetryAfter is when the client should ask again.
func (e *PoolEmptyError) RetryAfter() time.Duration { return e.After }

// PoolStat is the state of one image's challenge pool.
type PoolStat struct {
	SoftwareID string        `json:"software_id"`
	Image      string        `json:"image"`
	ImageSize  int64         `json:"image_size"`
	Pairs      int           `json:"pairs"`    // precomputed pairs ready
	Capacity   int           `json:"capacity"` // the pool's size
	Computed   uint64        `json:"computed"` // pairs made since the start
	Handed     uint64        `json:"handed"`   // challenges handed out
	Empty      uint64        `json:"empty"`    // challenge requests refused with an empty pool
	PerPair    time.Duration `json:"per_pair_ns"`
	Error      string        `json:"error,omitempty"`
}

// PoolStats reports the challenge pools of this process, by software ID;
// empty if they have not started.
func (s *Server) PoolStats() []PoolStat {
	ps := s.pool.Load()
	if ps == nil {
		return []PoolStat{}
	}
	ps.mu.RLock()
	out := make([]PoolStat, 0, len(ps.bySID))
	for sid, p := range ps.bySID {
		st := PoolStat{SoftwareID: softid.ID(sid).String(), Image: p.img.Name, ImageSize: p.img.Size, Pairs: len(p.pairs), Capacity: cap(p.pairs),
			Computed: p.computed.Load(), Handed: p.handed.Load(), Empty: p.empty.Load(), PerPair: time.Duration(p.perPair.Load())}
		if msg := p.failed.Load(); msg != nil {
			st.Error = *msg
		}
		out = append(out, st)
	}
	ps.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].SoftwareID < out[j].SoftwareID })
	return out
}

// poolStatusMaxAge is how old a status file may be and still describe a
// running process (they are written every two seconds).
const poolStatusMaxAge = 10 * time.Second

// poolStatusPrefix names the status files of serving processes.
const poolStatusPrefix = "challenge-pools-"

// ProcessPools is the pool status one serving process last wrote.
type ProcessPools struct {
	PID     int        `json:"pid"`
	Written time.Time  `json:"written"`
	Workers int        `json:"workers"`
	Pools   []PoolStat `json:"pools"`
}

func (ps *pools) writeStatus(path string) {
	b, _ := json.Marshal(ProcessPools{PID: os.Getpid(), Written: time.Now().UTC(), Workers: ps.opts.Workers, Pools: ps.s.PoolStats()})
	if err := fsutil.WriteFileAtomic(path, b, 0o644); err != nil {
		ps.opts.Log.Warn("challenge pools: writing the status file failed", "path", path, "err", err)
	}
}

// PoolStatusDir is where serving processes of the site in dir write their
// challenge pool levels.
func PoolStatusDir(dir string) string { return filepath.Join(dir, "run") }

// ReadPoolStatus reads the pool levels of the processes serving from dir
// that wrote them within the last maxAge.
func ReadPoolStatus(dir string, maxAge time.Duration) ([]ProcessPools, error) {
	d := PoolStatusDir(dir)
	ents, err := os.ReadDir(d)
	if os.IsNotExist(err) {
		return []ProcessPools{}, nil
	}
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "read %s", d)
	}
	out := []ProcessPools{}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), poolStatusPrefix) || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, e.Name()))
		if err != nil {
			continue // the process just removed it
		}
		var pp ProcessPools
		if json.Unmarshal(b, &pp) != nil || time.Since(pp.Written) > maxAge {
			continue
		}
		out = append(out, pp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}

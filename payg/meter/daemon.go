package meter

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"sync"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
)

// Daemon meters user sessions and serves the local API on a unix socket.
type Daemon struct {
	Meter    *Meter
	Sessions Sessions      // nil means SystemSessions{}
	Tick     time.Duration // zero means DefaultTick
	// Socket is the path of the local API's unix socket (mode 0660);
	// empty means no API.
	Socket string
	// Group, if set, owns the socket, so that its members' programs may
	// read the state.
	Group string
	// Remote and Signer, with SyncEvery above zero, sync with the vendor
	// that often.
	Remote    *Remote
	Signer    *keys.Signer
	SyncEvery time.Duration
	Log       *slog.Logger // nil discards
	// EndSessionsAfter, above zero, ends the sessions still open when the
	// credit has been spent (or the state tampered) for that long, through
	// Sessions' Terminator (logind's loginctl), except those of TopUpUsers,
	// so the device does one thing only: getting more credit. Zero leaves
	// them open: logins are refused (PAM) and metered programs stopped, but
	// a session open before stays.
	EndSessionsAfter time.Duration
	TopUpUsers       []string
	// Heartbeat, if set, is a file whose time the daemon sets at every
	// tick, so the compliance supervisor sees that the meter runs.
	Heartbeat string

	mu      sync.Mutex
	current Status
	subs    map[chan Status]struct{}
}

// Run meters and serves until ctx ends.
func (d *Daemon) Run(ctx context.Context) error {
	if d.Sessions == nil {
		d.Sessions = SystemSessions{}
	}
	if d.Tick <= 0 {
		d.Tick = DefaultTick
	}
	if d.Log == nil {
		d.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d.subs = map[chan Status]struct{}{}
	d.beat()
	d.publish(d.Meter.Status())

	if d.Socket != "" {
		ln, err := listenSocket(d.Socket, d.Group)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			srv.Shutdown(sctx)
			cancel()
			os.Remove(d.Socket)
		}()
	}

	u := d.Meter.StartUsage("session")
	ticker := time.NewTicker(d.Tick)
	defer ticker.Stop()
	var lastSync, spentSince time.Time
	for {
		select {
		case <-ctx.Done():
			d.mu.Lock()
			for ch := range d.subs {
				close(ch)
				delete(d.subs, ch)
			}
			d.mu.Unlock()
			return nil
		case <-ticker.C:
		}
		d.beat()
		active, err := d.Sessions.Active()
		if err != nil {
			d.Log.Warn("cannot read the user sessions", "err", err)
		}
		st := Status{}
		if active {
			st, err = u.Tick()
			if err != nil {
				d.Log.Error("metering failed", "err", err)
			}
		} else {
			u = d.Meter.StartUsage("session") // idle: nothing to charge
			st = d.Meter.Status()
		}
		if d.SyncEvery > 0 && d.Remote != nil && time.Since(lastSync) >= d.SyncEvery {
			lastSync = time.Now()
			if applied, err := d.Remote.Sync(ctx, d.Meter, d.Signer); err != nil {
				d.Log.Warn("sync with the vendor failed", "err", err)
			} else if len(applied) > 0 {
				d.Log.Info("packets applied", "count", len(applied))
				st = d.Meter.Status()
			}
		}
		spentSince = d.endSessions(st, active, spentSince)
		d.publish(st)
	}
}

// endSessions ends the open sessions once the credit has been spent for
// EndSessionsAfter, and returns when the spell of no credit began (zero
// while there is credit).
func (d *Daemon) endSessions(st Status, active bool, spentSince time.Time) time.Time {
	if st.State == "" {
		st = d.Meter.Status()
	}
	if st.Allowed() || d.EndSessionsAfter <= 0 {
		return time.Time{}
	}
	now := time.Now()
	if spentSince.IsZero() {
		d.Log.Warn("no pay-as-you-go credit: open sessions end after the grace", "state", st.State, "grace", d.EndSessionsAfter.String())
		return now
	}
	if !active || now.Sub(spentSince) < d.EndSessionsAfter {
		return spentSince
	}
	term, ok := d.Sessions.(Terminator)
	if !ok {
		d.Log.Warn("cannot end the open sessions: the session source cannot end them")
		return now
	}
	ended, err := term.Terminate(d.TopUpUsers)
	if len(ended) > 0 {
		d.Log.Warn("ended the sessions open without pay-as-you-go credit", "sessions", ended, "except", d.TopUpUsers)
	}
	if err != nil {
		d.Log.Error("ending the sessions open without credit failed", "err", err)
	}
	return now // the next attempt after another grace
}

// beat sets the heartbeat file's time to now, creating it if needed.
func (d *Daemon) beat() {
	if d.Heartbeat == "" {
		return
	}
	now := time.Now()
	if os.Chtimes(d.Heartbeat, now, now) != nil {
		os.WriteFile(d.Heartbeat, nil, 0o644)
	}
}

// changed reports whether b differs from a in what a watcher cares about.
func changed(a, b Status) bool {
	return a.State != b.State || a.Reason != b.Reason || a.BalanceSeconds != b.BalanceSeconds ||
		a.UntilActive != b.UntilActive || a.HighestSequence != b.HighestSequence || !eqTime(a.LastSync, b.LastSync) || !eqTime(a.Until, b.Until)
}

func eqTime(a, b *time.Time) bool {
	return (a == nil) == (b == nil) && (a == nil || a.Equal(*b))
}

func (d *Daemon) publish(st Status) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !changed(d.current, st) && d.current.State != "" {
		d.current = st
		return
	}
	d.current = st
	for ch := range d.subs {
		select {
		case ch <- st:
		default: // a slow watcher misses a change, never blocks the meter
		}
	}
}

// Handler is the local API: GET /v1/status (the state as JSON) and
// GET /v1/events (newline-delimited JSON: the state now, then each change).
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(d.Meter.Status())
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		ch := make(chan Status, 4)
		d.mu.Lock()
		d.subs[ch] = struct{}{}
		cur := d.current
		d.mu.Unlock()
		defer func() {
			d.mu.Lock()
			delete(d.subs, ch)
			d.mu.Unlock()
		}()
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		fl, _ := w.(http.Flusher)
		send := func(st Status) bool {
			if enc.Encode(st) != nil {
				return false
			}
			if fl != nil {
				fl.Flush()
			}
			return true
		}
		if !send(cur) {
			return
		}
		for {
			select {
			case <-r.Context().Done():
				return
			case st, ok := <-ch:
				if !ok || !send(st) {
					return
				}
			}
		}
	})
	return mux
}

// listenSocket listens on a unix socket with mode 0660, owned by group.
func listenSocket(path, group string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, errs.E(errs.Conflict, "%s is in use: another daemon is running", path)
		}
		os.Remove(path) // left by a daemon that died
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "listen on %s", path)
	}
	fail := func(err error, what string) (net.Listener, error) {
		ln.Close()
		return nil, errs.Wrap(errs.Internal, err, "%s", what)
	}
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return fail(err, "socket group "+group)
		}
		gid, _ := strconv.Atoi(g.Gid)
		if err := os.Chown(path, -1, gid); err != nil {
			return fail(err, "give "+path+" to group "+group)
		}
	}
	if err := os.Chmod(path, 0o660); err != nil {
		return fail(err, "chmod "+path)
	}
	return ln, nil
}

// Client reads the local API of a daemon, for programs that want to warn
// their user before the credit runs out.
type Client struct {
	Socket string // the daemon's unix socket
}

func (c *Client) http() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", c.Socket)
	}}}
}

func (c *Client) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://licet-payg"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "cannot reach the pay-as-you-go daemon on %s", c.Socket)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, errs.E(errs.Internal, "GET %s on %s: %s", path, c.Socket, resp.Status)
	}
	return resp, nil
}

// Status returns the daemon's view of the state.
func (c *Client) Status(ctx context.Context) (Status, error) {
	resp, err := c.get(ctx, "/v1/status")
	if err != nil {
		return Status{}, err
	}
	defer resp.Body.Close()
	var st Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return Status{}, errs.Wrap(errs.Internal, err, "decode the daemon's status")
	}
	return st, nil
}

// Watch calls fn with the state now and at every change until ctx ends,
// fn returns an error, or the daemon goes away.
func (c *Client) Watch(ctx context.Context, fn func(Status) error) error {
	resp, err := c.get(ctx, "/v1/events")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var st Status
		if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
			return errs.Wrap(errs.Internal, err, "decode a status event")
		}
		if err := fn(st); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return errs.Wrap(errs.Internal, err, "read status events")
	}
	return errs.E(errs.Internal, "the daemon on %s closed the event stream", c.Socket)
}

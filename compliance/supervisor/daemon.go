package supervisor

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/licet/licet/errs"
)

// Daemon evaluates at start, whenever the device's state changes (the
// meter's log, the installed bundle) and on the bundle's timer, and serves
// the mode and reasons on a unix socket.
type Daemon struct {
	Sup *Supervisor
	// Socket is the local API's unix socket (mode 0666: any program may
	// read the mode); empty means none.
	Socket string
	// Poll is how often the state files are looked at for a change
	// (default 1s).
	Poll time.Duration
	Log  *slog.Logger

	mu  sync.Mutex
	cur Status
}

// Status is the local API's answer: the state as programs need it.
type Status struct {
	Mode      string    `json:"mode"`
	Score     int       `json:"score"`
	Reasons   []string  `json:"reasons,omitempty"`
	Results   []Result  `json:"results,omitempty"`
	Evaluated time.Time `json:"evaluated"`
	Seal      string    `json:"seal"`
	Error     string    `json:"error,omitempty"`
}

// StatusOf is the Status of a state.
func StatusOf(st *State) Status {
	seal := st.Seal
	if seal == "" {
		seal = SealNote
	}
	return Status{Mode: st.Mode, Score: st.Score, Reasons: st.Reasons, Results: st.Results, Evaluated: st.Evaluated, Seal: seal}
}

// stamp is what changes when the device's state changes.
func (s *Supervisor) stamp() string {
	var b []byte
	for _, p := range []string{filepath.Join(s.env.Meter.Dir(), "meter.head"), s.st.path(StateFile), s.st.path(BundleFile)} {
		if fi, err := os.Stat(p); err == nil {
			b = fi.ModTime().AppendFormat(b, time.RFC3339Nano)
			b = append(b, byte(fi.Size()))
		}
		b = append(b, '|')
	}
	return string(b)
}

// Run evaluates and serves until ctx ends.
func (d *Daemon) Run(ctx context.Context) error {
	if d.Poll <= 0 {
		d.Poll = time.Second
	}
	if d.Log == nil {
		d.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if d.Socket != "" {
		os.MkdirAll(filepath.Dir(d.Socket), 0o700)
		os.Remove(d.Socket)
		ln, err := net.Listen("unix", d.Socket)
		if err != nil {
			return errs.Wrap(errs.Internal, err, "listen on %s", d.Socket)
		}
		os.Chmod(d.Socket, 0o666)
		srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer func() {
			srv.Close()
			os.Remove(d.Socket)
		}()
	}
	var last time.Time
	stamp := ""
	every := time.Minute
	t := time.NewTicker(d.Poll)
	defer t.Stop()
	for {
		if now := time.Now(); stamp != d.Sup.stamp() || now.Sub(last) >= every {
			st, err := d.Sup.Evaluate(ctx)
			last = now
			if err != nil {
				d.Log.Warn("compliance evaluation failed", "err", err)
				d.set(Status{Mode: ModeNone, Error: err.Error(), Seal: d.Sup.SealNote()})
			} else {
				if st.StaleAfter > 0 {
					every = st.StaleAfter / 3
				}
				prev := d.get()
				if prev.Mode != st.Mode || prev.Score != st.Score {
					d.Log.Info("compliance", "mode", st.Mode, "score", st.Score, "reasons", st.Reasons)
				}
				d.set(StatusOf(st))
			}
			stamp = d.Sup.stamp() // after our own write
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (d *Daemon) set(s Status) { d.mu.Lock(); d.cur = s; d.mu.Unlock() }
func (d *Daemon) get() Status  { d.mu.Lock(); defer d.mu.Unlock(); return d.cur }

// Handler is the local API: GET /v1/compliance, the mode, the score, the
// reasons and each policy's result.
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/compliance", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(d.get())
	})
	return mux
}

// Client reads a supervisor's local API.
type Client struct{ Socket string }

// Status returns the supervisor's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", c.Socket)
	}}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://licet-compliance/v1/compliance", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return Status{}, errs.Wrap(errs.Internal, err, "cannot reach the compliance supervisor on %s", c.Socket)
	}
	defer resp.Body.Close()
	var s Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&s); err != nil {
		return Status{}, errs.Wrap(errs.Internal, err, "decode the supervisor's status")
	}
	return s, nil
}

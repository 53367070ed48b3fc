package loadgen

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// leanTransport is the http.RoundTripper of the simulated clients: for plain
// HTTP/1.1 it writes each request on an idle keep-alive connection of its
// own and reads the answer in the calling goroutine. http.Transport runs two
// goroutines per connection and hands every request and answer between
// them, which costs the load generator, on the site's machine, a good part
// of its CPU per grant. Other schemes go to http.DefaultTransport.
type leanTransport struct {
	timeout time.Duration // of one request, from writing it to reading its answer
	mu      sync.Mutex
	idle    map[string][]*leanConn // by host:port
}

// leanConn is one keep-alive connection.
type leanConn struct {
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	used time.Time // when its last answer was read
}

// maxIdle is how long a connection may have been idle to be used again; an
// older one may have been closed by the server (site serve: 120 s), so it is
// closed and another dialled.
const maxIdle = 30 * time.Second

func newLeanTransport(timeout time.Duration) *leanTransport {
	return &leanTransport{timeout: timeout, idle: map[string][]*leanConn{}}
}

// RoundTrip implements http.RoundTripper.
func (t *leanTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		return http.DefaultTransport.RoundTrip(req)
	}
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	lc, err := t.conn(req.Context(), addr)
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	lc.c.SetDeadline(time.Now().Add(t.timeout))
	stop := context.AfterFunc(req.Context(), func() { lc.c.SetDeadline(time.Unix(1, 0)) })
	err = req.Write(lc.bw)
	if err == nil {
		err = lc.bw.Flush()
	}
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(lc.br, req)
	}
	if err != nil {
		stop()
		lc.c.Close()
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	resp.Body = &leanBody{ReadCloser: resp.Body, t: t, lc: lc, addr: addr, stop: stop, reuse: !resp.Close}
	return resp, nil
}

// conn returns an idle connection to addr, or dials one.
func (t *leanTransport) conn(ctx context.Context, addr string) (*leanConn, error) {
	t.mu.Lock()
	for q := t.idle[addr]; len(q) > 0; q = t.idle[addr] {
		lc := q[len(q)-1]
		t.idle[addr] = q[:len(q)-1]
		if time.Since(lc.used) < maxIdle {
			t.mu.Unlock()
			return lc, nil
		}
		lc.c.Close()
	}
	t.mu.Unlock()
	d := net.Dialer{Timeout: t.timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &leanConn{c: c, br: bufio.NewReaderSize(c, 16<<10), bw: bufio.NewWriterSize(c, 8<<10)}, nil
}

// leanBody is an answer's body: closing it gives its connection back for
// the next request, once the body is read to its end.
type leanBody struct {
	io.ReadCloser
	t      *leanTransport
	lc     *leanConn
	addr   string
	stop   func() bool
	reuse  bool
	closed bool
}

// Close reads what is left of the body and keeps the connection, unless
// the server said it closes it or the body could not be read to its end.
func (b *leanBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	_, err := io.Copy(io.Discard, b.ReadCloser)
	b.ReadCloser.Close()
	if !b.stop() || err != nil || !b.reuse { // cancelled meanwhile, or not reusable
		b.lc.c.Close()
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		return nil
	}
	b.lc.used = time.Now()
	b.t.mu.Lock()
	b.t.idle[b.addr] = append(b.t.idle[b.addr], b.lc)
	b.t.mu.Unlock()
	return nil
}

// closeIdle closes the idle connections.
func (t *leanTransport) closeIdle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for addr, q := range t.idle {
		for _, lc := range q {
			lc.c.Close()
		}
		delete(t.idle, addr)
	}
}

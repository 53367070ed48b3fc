package loadgen

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The lean transport keeps connections alive between requests, dials again
// after the server closes one, and gives up a request when its context ends.
func TestLeanTransport(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/close":
			w.Header().Set("Connection", "close")
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}
		w.Write(append([]byte("echo:"), body...))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	hc, closeIdle := httpClient()
	defer closeIdle()
	post := func(ctx context.Context, path, body string) (string, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+path, strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	for i := range 5 {
		if got, err := post(t.Context(), "/", "x"); err != nil || got != "echo:x" {
			t.Fatalf("request %d: %q, %v", i, got, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("5 requests one after another used %d connections, want 1", n)
	}
	if got, err := post(t.Context(), "/close", "y"); err != nil || got != "echo:y" {
		t.Fatalf("request answered with Connection: close: %q, %v", got, err)
	}
	if got, err := post(t.Context(), "/", "z"); err != nil || got != "echo:z" {
		t.Fatalf("request after the server closed the connection: %q, %v", got, err)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections after the server closed one, want 2", n)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := post(ctx, "/slow", "s"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a request whose context ended: %v, want the context's error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("a request whose context ended after 100 ms took %s", d)
	}
	if got, err := post(t.Context(), "/", "after"); err != nil || got != "echo:after" {
		t.Fatalf("request after a cancelled one: %q, %v", got, err)
	}
}

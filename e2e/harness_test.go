// Package e2e runs the real licet binary as separate processes on loopback
// ports, the way an administrator would, and checks every flow and every bad
// input end to end.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

var licetBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "licet-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	licetBin = filepath.Join(dir, "licet")
	build := exec.Command("go", "build", "-o", licetBin, "../cmd/licet")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build licet:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one licet run produced.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// licet runs the binary with args and extra environment variables (K=V).
func licet(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(licetBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run licet %v: %v", args, err)
	}
	return r
}

// ok runs licet and fails the test unless it exits 0.
func ok(t *testing.T, args ...string) string {
	t.Helper()
	r := licet(t, nil, args...)
	if r.code != 0 {
		t.Fatalf("licet %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// okJSON runs licet with --json appended and decodes its output.
func okJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := ok(t, append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("licet %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// fails runs licet and checks its exit code and that stderr matches pattern.
func fails(t *testing.T, code int, pattern string, args ...string) result {
	t.Helper()
	return failsEnv(t, nil, code, pattern, args...)
}

func failsEnv(t *testing.T, env []string, code int, pattern string, args ...string) result {
	t.Helper()
	r := licet(t, env, args...)
	if r.code != code {
		t.Fatalf("licet %s: want exit %d, got %s", strings.Join(args, " "), code, r)
	}
	if !regexp.MustCompile(pattern).MatchString(r.stderr) {
		t.Fatalf("licet %s: stderr does not match %q:\n%s", strings.Join(args, " "), pattern, r.stderr)
	}
	return r
}

// server is a licet server process.
type server struct {
	cmd     *exec.Cmd
	URL     string
	stderr  *bytes.Buffer
	metrics chan string // the --metrics-listen address, once printed
}

var (
	listenRE  = regexp.MustCompile(`listening on (https?://\S+)`)
	metricsRE = regexp.MustCompile(`^metrics listening on (http://\S+)/metrics`)
)

// metricsURL is the base URL of a server started with --metrics-listen.
func (s *server) metricsURL(t *testing.T) string {
	t.Helper()
	select {
	case u := <-s.metrics:
		s.metrics <- u
		return u
	case <-time.After(20 * time.Second):
		t.Fatalf("the server printed no metrics address: %s", s.stderr)
		return ""
	}
}

// start runs a licet server on a free port and waits until it listens. The
// test's cleanup stops it with SIGTERM and checks that it exits cleanly.
func start(t *testing.T, env []string, args ...string) *server {
	t.Helper()
	cmd := exec.Command(licetBin, append(args, "--listen", "127.0.0.1:0")...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, stderr: &bytes.Buffer{}, metrics: make(chan string, 1)}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := metricsRE.FindStringSubmatch(sc.Text()); m != nil {
				s.metrics <- m[1]
			} else if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case s.URL = <-found:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("licet %v did not start listening: %s", args, s.stderr)
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *server) stop(t *testing.T) {
	if s.cmd.ProcessState != nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("server %s did not exit cleanly on SIGTERM: %v\n%s", s.URL, err, s.stderr)
		}
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		t.Errorf("server %s did not stop within 15 s of SIGTERM", s.URL)
	}
}

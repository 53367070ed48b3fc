package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/licet/licet/agent"
)

// newTestAgent makes an agent data directory (and its hardware root).
func newTestAgent(t *testing.T) (data, hw string) {
	t.Helper()
	hw = t.TempDir()
	os.MkdirAll(filepath.Join(hw, "etc"), 0o755)
	os.WriteFile(filepath.Join(hw, "etc", "machine-id"), []byte("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"), 0o644)
	data = filepath.Join(t.TempDir(), "agent")
	if out, code := stdoutOf("agent", "init", "--data", data, "--platform", "non-windows", "--hw-root", hw); code != 0 {
		t.Fatalf("agent init: exit %d: %s", code, out)
	}
	return data, hw
}

// TestLegacyJSONRefusal: with --json, a gateway's refusal gives one JSON
// document on standard output (the status and the body), not that and an
// error object after it, nor the raw body; the exit code follows the status.
func TestLegacyJSONRefusal(t *testing.T) {
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":{"code":"forbidden","message":"refused"}}`+"\n")
	}))
	defer gw.Close()
	data, hw := newTestAgent(t)
	lic := filepath.Join(t.TempDir(), "app.pem")
	os.WriteFile(lic, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644)
	for _, args := range [][]string{
		{"agent", "legacy", "request", "--data", data, "--hw-root", hw, "--server", gw.URL, "--json", "/v1/render"},
		{"agent", "legacy", "deposit", "--data", data, "--hw-root", hw, "--server", gw.URL, "--json", "--license", lic},
	} {
		out, code := stdoutOf(args...)
		dec := json.NewDecoder(strings.NewReader(out))
		var first struct {
			Status int `json:"status"`
		}
		err := dec.Decode(&first)
		_, second := dec.Token()
		if code != 4 || err != nil || first.Status != http.StatusForbidden || second != io.EOF {
			t.Errorf("%s: exit %d, stdout %q; want exit 4 and one JSON document with status 403", args[2], code, out)
		}
	}
}

// TestLegacyDepositRefusesPrivateKey: 'agent legacy deposit --license'
// given the client key (or any private key) by mistake refuses it before
// sending anything: a deposit sends the file to the gateway as it is.
func TestLegacyDepositRefusesPrivateKey(t *testing.T) {
	var got atomic.Int32
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		http.Error(w, "no", http.StatusBadRequest)
	}))
	defer gw.Close()
	data, hw := newTestAgent(t)
	for _, key := range []string{agent.KeyFile, agent.HPKEKeyFile} {
		out, code := stdoutOf("agent", "legacy", "deposit", "--data", data, "--hw-root", hw, "--server", gw.URL,
			"--license", filepath.Join(data, key), "--json")
		if code != 2 || !strings.Contains(out, "private key") {
			t.Errorf("deposit of %s: exit %d, %s; want exit 2 saying it is a private key", key, code, out)
		}
	}
	if n := got.Load(); n != 0 {
		t.Fatalf("the gateway received %d requests: a private key left the machine", n)
	}
}

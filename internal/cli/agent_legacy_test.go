package cli

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/licet/licet/agent"
)

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
	hw := t.TempDir()
	os.MkdirAll(filepath.Join(hw, "etc"), 0o755)
	os.WriteFile(filepath.Join(hw, "etc", "machine-id"), []byte("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"), 0o644)
	data := filepath.Join(t.TempDir(), "agent")
	if out, code := stdoutOf("agent", "init", "--data", data, "--platform", "non-windows", "--hw-root", hw); code != 0 {
		t.Fatalf("agent init: exit %d: %s", code, out)
	}
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

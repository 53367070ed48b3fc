package e2e

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	devLineRE    = regexp.MustCompile(`(vendor|site) API\s+(http://\S+)\s+admin token (\S+)`)
	devGatewayRE = regexp.MustCompile(`gateway\s+(http://\S+)\s+in front of a demo app`)
)

// runDev starts 'licet dev', waits for its banner and returns the URLs and
// tokens it printed, the commands it suggests running (with "go run
// ./cmd/licet" as their program), and a stop function that sends SIGINT and
// waits.
func runDev(t *testing.T, data string) (urls, tokens map[string]string, commands [][]string, stop func()) {
	t.Helper()
	cmd := exec.Command(licetBin, "dev", "--data", data, "--vendor-listen", "127.0.0.1:0", "--site-listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urls, tokens = map[string]string{}, map[string]string{}
	ready := make(chan []string, 1)
	go func() {
		var lines []string
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if strings.Contains(sc.Text(), "agent request") { // the banner's last line
				ready <- lines
			}
		}
	}()
	select {
	case lines := <-ready:
		for _, l := range lines {
			if m := devLineRE.FindStringSubmatch(l); m != nil {
				urls[m[1]], tokens[m[1]] = m[2], m[3]
			}
			if m := devGatewayRE.FindStringSubmatch(l); m != nil {
				urls["gateway"] = m[1]
			}
			if cmd, ok := strings.CutPrefix(strings.TrimSpace(l), "go run ./cmd/licet "); ok {
				commands = append(commands, strings.Fields(strings.SplitN(cmd, "#", 2)[0]))
			}
		}
		if !strings.Contains(strings.Join(lines, "\n"), "Try next:") {
			t.Fatalf("banner lacks commands to try:\n%s", strings.Join(lines, "\n"))
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("licet dev did not print its banner within 60 s")
	}
	return urls, tokens, commands, func() {
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("licet dev did not exit cleanly on Ctrl-C: %v", err)
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Fatal("licet dev did not stop within 15 s of Ctrl-C")
		}
	}
}

func TestDev(t *testing.T) {
	data := filepath.Join(t.TempDir(), "licet-dev")
	urls, tokens, commands, stop := runDev(t, data)
	if urls["vendor"] == "" || urls["site"] == "" || tokens["vendor"] == "" || tokens["site"] == "" {
		t.Fatalf("banner lacks URLs or tokens: %v %v", urls, tokens)
	}
	packs := sitePacks(t, urls["site"], tokens["site"])
	if packs != 1 {
		t.Fatalf("demo site has %d packs, want 1", packs)
	}
	checkHealthAndMetrics(t, urls["vendor"], "vendor", tokens["vendor"])
	checkHealthAndMetrics(t, urls["gateway"], "gateway", "")
	// The demo gateway guards its application: no license, a 401 naming the site.
	resp, err := http.Get(urls["gateway"] + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ch := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(ch, `realm="demo-app"`) || !strings.Contains(ch, urls["site"]) {
		t.Fatalf("demo gateway without a license: %s %q", resp.Status, ch)
	}
	// Its license requests reach the site: the relayed root is there.
	resp, err = http.Get(urls["gateway"] + "/v1/root")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/root through the demo gateway: %s", resp.Status)
	}
	// The banner's client commands work as printed: the agent gets a license
	// through the gateway (challenge over the demo program) and passes it.
	var client [][]string
	for _, c := range commands {
		if c[0] == "agent" {
			client = append(client, c)
		}
	}
	if len(client) != 2 {
		t.Fatalf("banner suggests %d agent commands, want init and request: %v", len(client), commands)
	}
	ok(t, client[0]...)
	var seen struct {
		ClientID string `json:"client_id"`
		Product  string `json:"product"`
	}
	if err := json.Unmarshal([]byte(ok(t, client[1]...)), &seen); err != nil || seen.ClientID == "" || seen.Product != "demo-app" {
		t.Fatalf("the demo application behind the gateway answered %+v (%v)", seen, err)
	}
	stop()

	// A second run reuses the data: same tokens, the same single pack.
	urls2, tokens2, _, stop2 := runDev(t, data)
	defer stop2()
	if tokens2["vendor"] != tokens["vendor"] || tokens2["site"] != tokens["site"] {
		t.Fatal("a second run of licet dev did not reuse its data")
	}
	if n := sitePacks(t, urls2["site"], tokens2["site"]); n != 1 {
		t.Fatalf("after restart the demo site has %d packs, want 1", n)
	}
}

func sitePacks(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/v1/packs", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rows []packRow
	if err := json.NewDecoder(resp.Body).Decode(&rows); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v1/packs: %d %v", resp.StatusCode, err)
	}
	return len(rows)
}

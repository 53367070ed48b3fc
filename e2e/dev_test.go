package e2e

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
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
		if c[0] == "agent" && (c[1] == "init" || c[1] == "request") {
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
	paygDevice := devPaygCommands(t, commands)
	stop()

	// A second run reuses the data: same tokens, the same single pack, the
	// same demo device.
	urls2, tokens2, commands2, stop2 := runDev(t, data)
	defer stop2()
	if tokens2["vendor"] != tokens["vendor"] || tokens2["site"] != tokens["site"] {
		t.Fatal("a second run of licet dev did not reuse its data")
	}
	if d := devCommand(t, commands2, "agent", "payg", "status"); !strings.Contains(ok(t, d...), paygDevice) {
		t.Errorf("the second run shows another demo device than %s", paygDevice)
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

// devCommand returns the banner command that begins with prefix.
func devCommand(t *testing.T, commands [][]string, prefix ...string) []string {
	t.Helper()
	for _, c := range commands {
		if len(c) >= len(prefix) && slices.Equal(c[:len(prefix)], prefix) {
			return c
		}
	}
	t.Fatalf("the banner suggests no %q command: %v", strings.Join(prefix, " "), commands)
	return nil
}

// devPaygCommands runs the banner's pay-as-you-go commands as printed: the
// demo device's status (an hour of credit), a metered program, a sale of
// ten minutes of credit and the sync that brings it to the device, the
// vendor's view; then a keypad token issued and typed in. It returns the
// demo device's ID.
func devPaygCommands(t *testing.T, commands [][]string) string {
	t.Helper()
	status := devCommand(t, commands, "agent", "payg", "status")
	var st paygStatus
	okJSON(t, &st, status...)
	if st.State != "active" || st.BalanceSeconds != 3600 || st.HighestSequence != 1 || st.Account != "demo-payg" {
		t.Fatalf("the demo device as licet dev made it: %+v", st)
	}
	ok(t, devCommand(t, commands, "agent", "run")...)
	okJSON(t, &st, status...)
	if st.BalanceSeconds > 3600-2 || st.BalanceSeconds < 3600-10 {
		t.Errorf("the banner's metered program (sleep 3) left %d s of 3600", st.BalanceSeconds)
	}
	if out := ok(t, devCommand(t, commands, "vendor", "sell")...); !strings.Contains(out, "Packet 2 for device "+st.DeviceID) {
		t.Errorf("the banner's sale: %s", out)
	}
	if out := ok(t, devCommand(t, commands, "agent", "payg", "sync")...); !strings.Contains(out, "Applied packet 2") || !strings.Contains(out, "10m0s of use") {
		t.Errorf("the banner's sync: %s", out)
	}
	if out := ok(t, devCommand(t, commands, "vendor", "device", "show")...); !strings.Contains(out, "Last packet: 2") {
		t.Errorf("the banner's vendor device show: %s", out)
	}

	token := strings.TrimSpace(ok(t, devCommand(t, commands, "vendor", "token", "issue")...))
	if !regexp.MustCompile(`^[0-9]{9,}$`).MatchString(token) {
		t.Fatalf("vendor token issue printed %q, not a token", token)
	}
	enter := slices.Clone(devCommand(t, commands, "agent", "token", "enter"))
	if i := slices.Index(enter, "TOKEN"); i < 0 {
		t.Fatalf("the banner's token entry has no TOKEN to replace: %v", enter)
	} else {
		enter[i] = token
	}
	if out := ok(t, enter...); !strings.Contains(out, "Token applied: ADD_TIME") {
		t.Errorf("typing the banner's token: %s", out)
	}
	if out := ok(t, devCommand(t, commands, "agent", "token", "status")...); !strings.Contains(out, "last count") {
		t.Errorf("keypad status: %s", out)
	}
	return st.DeviceID
}

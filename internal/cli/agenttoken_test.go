package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/payg/keypad"
	"github.com/licet/licet/payg/openpaygo"
)

// TestAgentTokenCLI runs licet agent token setup, enter and status through
// the real command path, with their exit codes.
func TestAgentTokenCLI(t *testing.T) {
	const keyHex = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
	key, _ := openpaygo.ParseKey(keyHex)
	dev := openpaygo.Device{Key: key, StartingCode: 516959010}
	var last uint32
	issue := func(typ openpaygo.Type, value int) string {
		tok, n, err := openpaygo.Encode(dev, last, typ, value, openpaygo.Options{})
		if err != nil {
			t.Fatal(err)
		}
		last = n
		return tok
	}
	now := time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)
	at := func(d time.Duration) { t.Setenv("LICET_NOW", now.Add(d).Format(time.RFC3339)) }
	at(0)
	dir := filepath.Join(t.TempDir(), "agent")
	expect := func(wantCode int, wantText string, args ...string) string {
		t.Helper()
		out, code := tokenCLI(t, args...)
		if code != wantCode || !strings.Contains(out, wantText) {
			t.Fatalf("licet %s: exit %d, want %d with %q:\n%s", strings.Join(args, " "), code, wantCode, wantText, out)
		}
		return out
	}
	statusOf := func() map[string]any {
		t.Helper()
		var s map[string]any
		out := expect(0, "", "agent", "token", "status", "--data", dir, "--json")
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return s
	}

	expect(0, "Usage: licet agent token enter", "agent", "token", "enter", "--help")
	expect(2, "--key", "agent", "token", "setup", "--data", dir, "--key", "abc", "--starting-code", "516959010")
	expect(2, "--starting-code", "agent", "token", "setup", "--data", dir, "--key", keyHex)
	expect(3, "no keypad is set up", "agent", "token", "status", "--data", dir)
	out := expect(0, "Keypad set up", "agent", "token", "setup", "--data", dir, "--key", keyHex, "--starting-code", "516959010")
	if strings.Contains(out, keyHex) {
		t.Fatal("setup printed the key")
	}
	expect(3, "already set up", "agent", "token", "setup", "--data", dir, "--key", keyHex, "--starting-code", "1")

	// Letters and wrong lengths are usage errors naming the token argument,
	// and do not count as wrong entries.
	expect(2, "token argument", "agent", "token", "enter", "--data", dir, "12345abcd")
	expect(2, "token argument", "agent", "token", "enter", "--data", dir, "1234567890123")
	if s := statusOf(); s["failed_entries"] != 0.0 || s["active"] != false || s["recovery"] != false {
		t.Fatalf("status of a new device: %v", s)
	}

	tok := issue(openpaygo.AddTime, 3)
	var entry map[string]any
	out = expect(0, `"applied"`, "agent", "token", "enter", "--data", dir, "--json", tok[:3]+" "+tok[3:])
	if err := json.Unmarshal([]byte(out), &entry); err != nil || entry["type"] != "ADD_TIME" || entry["credit_seconds"] != 3*86400.0 {
		t.Fatalf("entry %v (%v)", entry, err)
	}
	// A refusal with --json is one JSON document saying what happened.
	out = expect(3, `"already_used"`, "agent", "token", "enter", "--data", dir, "--json", tok)
	if strings.Count(out, `"result"`) != 1 || strings.Contains(out, `"error"`) {
		t.Fatalf("refusal with --json: %s", out)
	}
	at(time.Minute)
	expect(3, "already used", "agent", "token", "enter", "--data", dir, tok)
	next := now.Add(3 * time.Minute).Format(time.RFC3339)
	expect(3, "takes the next token at "+next, "agent", "token", "enter", "--data", dir, issue(openpaygo.AddTime, 1))
	s := statusOf()
	if s["active"] != true || s["failed_entries"] != 2.0 || s["next_try"] != next || s["last_count"] != 2.0 {
		t.Fatalf("status after a repeated token: %v", s)
	}
	expect(0, "failed entries  2", "agent", "token", "status", "--data", dir)

	// The state file is deleted: no credit, and an ADD_TIME token is
	// refused until the vendor's counter sync.
	at(4 * time.Minute)
	if err := os.Remove(filepath.Join(dir, keypad.StateFile)); err != nil {
		t.Fatal(err)
	}
	if s := statusOf(); s["active"] != false || s["recovery"] != true {
		t.Fatalf("status after deleting the state: %v", s)
	}
	expect(0, "RECOVERY", "agent", "token", "status", "--data", dir)
	expect(3, "recovery", "agent", "token", "enter", "--data", dir, issue(openpaygo.AddTime, 1))
	at(20 * time.Minute)
	expect(0, "COUNTER_SYNC", "agent", "token", "enter", "--data", dir, issue(openpaygo.CounterSync, 0))
	expect(0, "Active until", "agent", "token", "enter", "--data", dir, issue(openpaygo.AddTime, 2))
	if s := statusOf(); s["active"] != true || s["recovery"] != false || s["failed_entries"] != 0.0 {
		t.Fatalf("status after recovery: %v", s)
	}
}

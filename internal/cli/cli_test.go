package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/errs"
)

// stdoutOf runs licet in-process and returns only its standard output.
func stdoutOf(args ...string) (string, int) {
	var out, errOut bytes.Buffer
	err := Run(context.Background(), args, &out, &errOut)
	return out.String(), errs.ExitCode(err)
}

// TestJSONErrorOnStdout: a failing command run with --json still writes
// JSON to standard output, so scripts can read why; without --json nothing.
func TestJSONErrorOnStdout(t *testing.T) {
	out, code := stdoutOf("token", "encode", "--json", "--key", "zz", "--starting-code", "1", "--count", "0", "--type", "ADD_TIME", "--value", "1")
	var got struct {
		Error struct{ Kind, Message string } `json:"error"`
	}
	if code != 2 || json.Unmarshal([]byte(out), &got) != nil || got.Error.Kind != "usage" || !strings.Contains(got.Error.Message, "--key") {
		t.Fatalf("exit %d, stdout %q: want a JSON error of kind usage naming --key", code, out)
	}
	// decode --json writes its own result for a refused token, and no
	// second JSON document after it.
	out, code = stdoutOf("token", "decode", "--json", "--key", "bc41ec9530f6dac86b1a29ab82edc5fb", "--starting-code", "516959010", "--count", "1", "588224012")
	if code != 3 || strings.Count(out, "{") != 1 || !strings.Contains(out, `"status": "invalid"`) {
		t.Fatalf("decode of an invalid token: exit %d, %q", code, out)
	}
}

// TestFlagErrorNoUsage: a mistyped flag gives one line naming it and the
// --help hint, not the whole usage.
func TestFlagErrorNoUsage(t *testing.T) {
	out, code := tokenCLI(t, "vendor", "order", "add", "--bogus")
	if code != 2 || strings.Contains(out, "Usage:") || !strings.Contains(out, "-bogus") || !strings.Contains(out, "--help") {
		t.Fatalf("exit %d, output %q", code, out)
	}
}

// TestVersion: `licet --version` is `licet version`, and a version set at
// build time is what it prints first.
func TestVersion(t *testing.T) {
	a, codeA := stdoutOf("version")
	b, codeB := stdoutOf("--version")
	if codeA != 0 || codeB != 0 || a != b || !strings.HasPrefix(a, "licet ") || !strings.Contains(a, "go1.") {
		t.Fatalf("version: %q (%d), --version: %q (%d)", a, codeA, b, codeB)
	}
	defer func(v string) { Version = v }(Version)
	Version = "v9.8.7"
	if out, _ := stdoutOf("version"); !strings.HasPrefix(out, "licet v9.8.7") {
		t.Fatalf("with Version set: %q", out)
	}
}

// TestVendorInitSaysTokenExpiry: the admin token vendor init prints expires,
// and the output says when and how to make another.
func TestVendorInitSaysTokenExpiry(t *testing.T) {
	out, code := stdoutOf("vendor", "init", "--data", t.TempDir()+"/v", "--name", "Test Vendor")
	if code != 0 || !strings.Contains(out, "expires in 90 days") || !strings.Contains(out, "licet vendor apitoken create") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
}

// TestTimeLeft: how a temporary license's remaining time is said, rounded.
func TestTimeLeft(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                    "ended",
		0:                               "ended",
		10 * time.Second:                "1 minute left",
		90 * time.Minute:                "90 minutes left",
		5*time.Hour + 40*time.Minute:    "6 hours left",
		20*24*time.Hour - 3*time.Second: "20 days left",
		60 * 24 * time.Hour:             "60 days left",
	} {
		if got := timeLeft(d); got != want {
			t.Errorf("timeLeft(%s) = %q, want %q", d, got, want)
		}
	}
}

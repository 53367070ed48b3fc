package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/licet/licet/errs"
)

// tokenCLI runs licet in-process and returns its standard output and exit code.
func tokenCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := Run(context.Background(), args, &out, &errOut)
	if err != nil {
		out.WriteString(err.Error())
	}
	return out.String(), errs.ExitCode(err)
}

// TestTokenCLIVectors runs the reference's 80 vectors through `licet token
// encode` and `licet token decode` with --json, as scripts call them.
func TestTokenCLIVectors(t *testing.T) {
	f, err := os.Open("../../payg/openpaygo/testdata/test_tokens.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var v struct {
			StartingCode int    `json:"starting_code"`
			Key          string `json:"key"`
			Count        int    `json:"count"`
			Type         string `json:"token_type"`
			Value        *int   `json:"value_raw"`
			Restricted   bool   `json:"restricted_digit_set"`
			Extended     bool   `json:"extended_token"`
			NewCount     int    `json:"new_count"`
			Token        string `json:"token"`
		}
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		n++
		common := []string{"--key", v.Key, "--starting-code", strconv.Itoa(v.StartingCode), "--count", strconv.Itoa(v.Count), "--json"}
		if v.Extended {
			common = append(common, "--extended")
		}
		if v.Restricted {
			common = append(common, "--restricted")
		}
		enc := append([]string{"token", "encode", "--type", v.Type}, common...)
		if v.Value != nil {
			enc = append(enc, "--value", strconv.Itoa(*v.Value))
		}
		out, code := tokenCLI(t, enc...)
		var got struct {
			Token    string `json:"token"`
			NewCount int    `json:"new_count"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.Token != v.Token || got.NewCount != v.NewCount {
			t.Fatalf("vector %d: encode exit %d: %s; want token %s new_count %d", n, code, out, v.Token, v.NewCount)
		}
		out, code = tokenCLI(t, append(append([]string{"token", "decode"}, common...), v.Token)...)
		var dec struct {
			Status string  `json:"status"`
			Type   *string `json:"type"`
			Value  *int    `json:"value"`
			Count  int     `json:"count"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &dec) != nil || dec.Status != "valid" || dec.Type == nil || *dec.Type != v.Type || dec.Count != v.NewCount {
			t.Fatalf("vector %d: decode exit %d: %s", n, code, out)
		}
		if (v.Value == nil) != (dec.Value == nil) || (v.Value != nil && *v.Value != *dec.Value) {
			t.Fatalf("vector %d: decode value %v, want %v", n, dec.Value, v.Value)
		}
	}
	if n != 80 {
		t.Fatalf("ran %d vectors, want 80", n)
	}
}

func TestTokenCLIErrors(t *testing.T) {
	const key = "bc41ec9530f6dac86b1a29ab82edc5fb"
	dev := []string{"--key", key, "--starting-code", "516959010"}
	for _, tc := range []struct {
		args []string
		code int
		flag string // the message must name it
	}{
		{[]string{"token", "encode", "--key", "xyz", "--starting-code", "1", "--count", "0", "--type", "ADD_TIME", "--value", "1"}, 2, "--key"},
		{append([]string{"token", "encode", "--count", "0", "--type", "ADD_TIME", "--value", "996"}, dev...), 2, "--value"},
		{append([]string{"token", "encode", "--count", "0", "--type", "ADD_TIME", "--value", "1000000", "--extended"}, dev...), 2, "--value"},
		{append([]string{"token", "encode", "--count", "0", "--type", "ADD_TIME"}, dev...), 2, "--value"},
		{append([]string{"token", "encode", "--count", "0", "--type", "DISABLE_PAYG", "--value", "3"}, dev...), 2, "--value"},
		{append([]string{"token", "encode", "--count", "0", "--type", "MORE_TIME", "--value", "3"}, dev...), 2, "--type"},
		{[]string{"token", "encode", "--key", key, "--starting-code", "1000000000", "--count", "0", "--type", "SET_TIME", "--value", "3"}, 2, "--starting-code"},
		{append([]string{"token", "decode", "--count", "1", "58822401a"}, dev...), 2, "TOKEN"},
		{append([]string{"token", "decode", "--count", "1", "--used-counts", "1,x", "588224011"}, dev...), 2, "--used-counts"},
		// Valid text, wrong device state: exit 3.
		{append([]string{"token", "decode", "--count", "2", "--used-counts", "2", "588224011"}, dev...), 3, "already used"},
		{append([]string{"token", "decode", "--count", "1", "588224012"}, dev...), 3, "not valid"},
	} {
		out, code := tokenCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.flag) {
			t.Errorf("licet %s: exit %d, output %q; want exit %d naming %s", strings.Join(tc.args, " "), code, out, tc.code, tc.flag)
		}
	}
	// The key may come from the environment instead of the process list.
	t.Setenv("LICET_TOKEN_KEY", key)
	out, code := tokenCLI(t, "token", "encode", "--starting-code", "516959010", "--count", "1", "--type", "ADD_TIME", "--value", "1")
	if code != 0 || strings.TrimSpace(out) != "588224011" {
		t.Fatalf("key from $LICET_TOKEN_KEY: exit %d %q", code, out)
	}
}

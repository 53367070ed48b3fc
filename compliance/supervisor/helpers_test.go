package supervisor_test

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/compliance/policy"
)

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tamperArmor changes a weight inside a signed bundle and re-armors it with
// a valid checksum, as someone with a text editor and base64 would.
func tamperArmor(t *testing.T, text []byte) []byte {
	t.Helper()
	blk, err := armor.Decode(text, policy.ArmorBundle)
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]any
	json.Unmarshal(blk.Body, &env)
	payload, _ := env["payload"].(string)
	raw, _ := b64(payload)
	changed := strings.Replace(string(raw), `"weight":10`, `"weight":1`, 1)
	if changed == string(raw) {
		t.Fatal("nothing to tamper with")
	}
	env["payload"] = changed
	blk.Body, _ = json.Marshal(env)
	return armor.Encode(blk)
}

func b64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

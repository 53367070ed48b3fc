package e2e

import (
	"strings"
	"testing"
)

// TestIdempotencyKeyRule: every pay-as-you-go write that takes an
// idempotency key (a sale, a keypad token, a re-registration code) applies
// one rule, through the real binary: up to 255 visible ASCII characters;
// longer, or with a space, is refused (exit 3, HTTP 400) naming the header
// and the flag and the limit.
func TestIdempotencyKeyRule(t *testing.T) {
	v := newVendor(t, "")
	ok(t, v.admin("vendor", "account", "add", "--customer", "acme", "--currency", "EUR", "--id", "acme-eur")...)
	ok(t, v.admin("vendor", "plan", "add", "--id", "h1", "--hours", "1", "--price", "100", "--currency", "EUR")...)
	ok(t, v.admin("vendor", "token", "device", "add", "--serial", "K-1")...)
	longest, tooLong := strings.Repeat("k", 255), strings.Repeat("k", 256)
	writes := map[string][]string{
		"sale":         {"vendor", "sell", "--account", "acme-eur", "--plan", "h1", "--new-device"},
		"keypad token": {"vendor", "token", "issue", "--device", "K-1", "--days", "1"},
	}
	for what, args := range writes {
		ok(t, v.admin(append(args, "--idempotency-key", longest)...)...)
		fails(t, 3, `Idempotency-Key \(--idempotency-key\) is 256 bytes long; use at most 255`, v.admin(append(args, "--idempotency-key", tooLong)...)...)
		fails(t, 3, `Idempotency-Key \(--idempotency-key\) has byte 0x20 at position 4; use visible ASCII`, v.admin(append(args, "--idempotency-key", "two words")...)...)
		t.Logf("%s: the rule holds", what)
	}
	fails(t, 3, `is 256 bytes long; use at most 255`, v.admin("vendor", "device", "reregister", "--device", "dev-any", "--idempotency-key", tooLong)...)
}

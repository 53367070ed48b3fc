package errs

import (
	"errors"
	"strings"
	"testing"
)

// TestPrivateCause: the text of a cause marked Private (a database driver's
// error) never reaches PublicMessage, at any depth; other causes do; the
// marked error still matches errors.Is.
func TestPrivateCause(t *testing.T) {
	driver := errors.New(`pq: duplicate key value violates unique constraint "v_customers_pkey" (id)=(acme)`)
	for name, err := range map[string]error{
		"direct": Wrap(Conflict, Private(driver), "customer %q already exists; choose another ID", "acme"),
		"nested": Wrap(Conflict, Wrap(Conflict, Private(driver), "store customer"), "customer exists"),
	} {
		msg := PublicMessage(err)
		if strings.Contains(msg, "constraint") || strings.Contains(msg, "pq:") {
			t.Errorf("%s: public message leaks the driver error: %q", name, msg)
		}
		if !errors.Is(err, driver) {
			t.Errorf("%s: errors.Is does not see the driver error", name)
		}
		if !strings.Contains(err.Error(), "constraint") {
			t.Errorf("%s: the log text lost the driver error: %q", name, err)
		}
	}
	if msg := PublicMessage(Wrap(Invalid, errors.New("json: unknown field \"x\""), "request body is not the expected JSON")); !strings.Contains(msg, "unknown field") {
		t.Errorf("an ordinary cause was dropped: %q", msg)
	}
	if Private(nil) != nil {
		t.Error("Private(nil) is not nil")
	}
}

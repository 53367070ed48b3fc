package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelpOnce: every leaf command answers --help and -h with its usage
// exactly once, on standard output, and exit status 0.
func TestHelpOnce(t *testing.T) {
	for _, path := range [][]string{
		{"site", "serve"}, {"gateway"}, {"agent", "request"}, {"vendor", "order", "add"}, {"vendor", "product", "release"},
	} {
		for _, flag := range []string{"--help", "-h"} {
			var out, errOut bytes.Buffer
			if err := Run(context.Background(), append(path, flag), &out, &errOut); err != nil {
				t.Errorf("licet %s %s: %v", strings.Join(path, " "), flag, err)
			}
			if n := strings.Count(out.String(), "Usage: licet "+strings.Join(path, " ")); n != 1 {
				t.Errorf("licet %s %s printed its usage %d times:\n%s", strings.Join(path, " "), flag, n, out.String())
			}
		}
	}
}

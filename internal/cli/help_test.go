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

// TestNumberFlagsNotStrings: flags that take a number but are parsed by hand
// (for an error that names them) show a number's placeholder in --help, not
// "string".
func TestNumberFlagsNotStrings(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"vendor", "order", "add", "--help"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-quantity N\n", "-temporary-licenses N\n", "-temporary-days DAYS\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("licet vendor order add --help lacks %q:\n%s", want, out.String())
		}
	}
}

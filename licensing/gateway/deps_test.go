package gateway_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the middleware light for the applications that
// embed it: the standard library, and of licet only errs and verify (no
// database drivers, no metrics library).
func TestDependencies(t *testing.T) {
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	out, err := exec.Command(gocmd, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	allowed := map[string]bool{
		"github.com/licet/licet/licensing/gateway": true,
		"github.com/licet/licet/errs":              true,
		"github.com/licet/licet/verify":            true,
	}
	for _, p := range strings.Fields(string(out)) {
		if !allowed[p] {
			t.Errorf("package gateway depends on %s; it may depend on the standard library, errs and verify only", p)
		}
	}
}

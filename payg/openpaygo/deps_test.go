package openpaygo_test

import (
	"go/build"
	"os/exec"
	"strings"
	"testing"
)

// TestStdlibOnly keeps the codec embeddable in device firmware: package openpaygo (without its
// tests) may import the Go standard library only.
func TestStdlibOnly(t *testing.T) {
	// Direct imports, with go/build: always available.
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if first, _, _ := strings.Cut(imp, "/"); strings.Contains(first, ".") {
			t.Errorf("package openpaygo imports %s; it may import the standard library only", imp)
		}
	}
	// The whole dependency closure, with the go command.
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Logf("no go command (%v); checked direct imports only", err)
		return
	}
	out, err := exec.Command(gocmd, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	self := pkg.ImportPath
	if self == "." || self == "" {
		self = "github.com/licet/licet/payg/openpaygo"
	}
	for _, p := range strings.Fields(string(out)) {
		if p != self && p != "github.com/licet/licet/payg/openpaygo" {
			t.Errorf("package openpaygo depends on %s; it may depend on the standard library only", p)
		}
	}
}

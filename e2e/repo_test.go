package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestPackageMap is a repository rule: every package has a package doc
// comment and a line in docs/architecture.md, so the map stays the map.
func TestPackageMap(t *testing.T) {
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	out, err := exec.Command(gocmd, "list", "-json=ImportPath,Doc,Name", "../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	mapText, err := os.ReadFile("../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for dec.More() {
		var p struct{ ImportPath, Doc, Name string }
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, "github.com/licet/licet"), "/")
		if rel == "e2e" || strings.HasPrefix(rel, "examples/") || rel == "cmd/licet" {
			continue
		}
		n++
		if p.Doc == "" {
			t.Errorf("package %s has no package doc comment", rel)
		}
		if !strings.Contains(string(mapText), "`"+rel+"`") {
			t.Errorf("package %s is missing from docs/architecture.md: add a line for it", rel)
		}
	}
	if n < 10 {
		t.Fatalf("go list found only %d packages", n)
	}
}

// TestStdlibOnly is a repository rule: the packages that others embed (the
// license verifier in applications, the OpenPAYGO codec in device firmware)
// depend on the Go standard library only, tests aside.
func TestStdlibOnly(t *testing.T) {
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	for _, pkg := range []string{"verify", "payg/openpaygo"} {
		self := "github.com/licet/licet/" + pkg
		out, err := exec.Command(gocmd, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "../"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, p := range strings.Fields(string(out)) {
			if p != self {
				t.Errorf("package %s depends on %s; it may depend on the standard library only", pkg, p)
			}
		}
	}
}

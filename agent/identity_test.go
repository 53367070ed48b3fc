package agent

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/hwid"
	"github.com/licet/licet/keys"
)

// fakeHW lays out a fake /etc and /sys tree with a machine ID, a DMI UUID,
// one physical NIC and one disk.
type fakeHW struct {
	machineID, uuid, mac, disk string
}

var machineA = fakeHW{
	machineID: "3d1219c7c4c5404aaa1f6d2a48adfda4",
	uuid:      "4c4c4544-0036-3010-8048-b4c04f563432",
	mac:       "00:1a:2b:3c:4d:5e",
	disk:      "WD-WCC4N1234567",
}

// machineB is another machine that was given a copy of A's disk image: the
// machine ID (a file) is the same, everything else differs.
var machineB = fakeHW{
	machineID: machineA.machineID,
	uuid:      "11111111-2222-3333-4444-555555555555",
	mac:       "52:54:00:12:34:56",
	disk:      "QM00001",
}

func (h fakeHW) build(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"etc/machine-id":                   h.machineID,
		"sys/class/dmi/id/product_uuid":    h.uuid,
		"sys/class/net/eth0/address":       h.mac,
		"sys/class/net/eth0/device/uevent": "",
		"sys/class/net/lo/address":         "00:00:00:00:00:00",
		"sys/block/sda/device/serial":      h.disk,
		"sys/block/sda/removable":          "0",
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestInitLoadRoundTrip(t *testing.T) {
	root := machineA.build(t)
	dir := filepath.Join(t.TempDir(), "agent")
	id, err := Init(dir, InitOptions{Platform: "legacy", ServerURL: "https://site.example.com:8443", HWRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^client-[0-9a-f]{16}$`).MatchString(id.ClientID) {
		t.Errorf("ClientID = %q", id.ClientID)
	}
	if id.ClientID != ClientIDFor(id.Signer.Public()) {
		t.Error("ClientID is not derived from the signing key")
	}
	hw, err := hwid.Collect(root)
	if err != nil {
		t.Fatal(err)
	}
	if id.SystemID != hw.SystemID() {
		t.Errorf("SystemID = %s, want %s", id.SystemID, hw.SystemID())
	}
	if id.Platform != "legacy" || id.ServerURL != "https://site.example.com:8443" {
		t.Errorf("Platform, ServerURL = %q, %q", id.Platform, id.ServerURL)
	}

	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode: %v, %v", fi.Mode(), err)
	}
	for _, name := range []string{KeyFile, HPKEKeyFile, HardwareFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
	}

	got, err := LoadWith(dir, LoadOptions{HWRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	if got.ClientID != id.ClientID || got.SystemID != id.SystemID || got.Platform != id.Platform ||
		got.ServerURL != id.ServerURL || got.Decrypter.ID() != id.Decrypter.ID() || got.Signer.ID() != id.Signer.ID() {
		t.Errorf("loaded %+v\nwant %+v", got, id)
	}
	if len(got.HardwareChanged) != 0 {
		t.Errorf("HardwareChanged = %v", got.HardwareChanged)
	}
	msg := []byte("hello")
	if !ed25519.Verify(id.Signer.Public(), msg, got.Signer.Sign(msg)) {
		t.Error("loaded signer does not match the created one")
	}
	ct, err := keys.Seal(id.Decrypter.PublicBytes(), []byte("licet test"), msg)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := got.Decrypter.Open([]byte("licet test"), ct); err != nil || !bytes.Equal(pt, msg) {
		t.Errorf("loaded decrypter: %q, %v", pt, err)
	}
}

func TestInitRefusesOverwrite(t *testing.T) {
	root := machineA.build(t)
	dir := t.TempDir()
	if _, err := Init(dir, InitOptions{HWRoot: root}); err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(filepath.Join(dir, KeyFile))
	_, err := Init(dir, InitOptions{HWRoot: root})
	if !errs.Is(err, errs.Conflict) || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second Init = %v; want a conflict", err)
	}
	if key2, _ := os.ReadFile(filepath.Join(dir, KeyFile)); !bytes.Equal(key, key2) {
		t.Error("second Init changed the key")
	}
	// A partial identity (one file left over) is refused too.
	dir2 := t.TempDir()
	os.WriteFile(filepath.Join(dir2, HardwareFile), []byte("{}"), 0o600)
	if _, err := Init(dir2, InitOptions{HWRoot: root}); !errs.Is(err, errs.Conflict) || !strings.Contains(err.Error(), HardwareFile) {
		t.Errorf("Init over a partial identity = %v", err)
	}
}

func TestCopiedToAnotherMachine(t *testing.T) {
	rootA, rootB := machineA.build(t), machineB.build(t)
	dir := filepath.Join(t.TempDir(), "a")
	if _, err := Init(dir, InitOptions{HWRoot: rootA}); err != nil {
		t.Fatal(err)
	}
	copyDir := filepath.Join(t.TempDir(), "copy")
	os.MkdirAll(copyDir, 0o700)
	for _, name := range identityFiles {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(copyDir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := LoadWith(copyDir, LoadOptions{HWRoot: rootA}); err != nil {
		t.Fatalf("copy on the same machine: %v", err)
	}
	_, err := LoadWith(copyDir, LoadOptions{HWRoot: rootB})
	if !errs.Is(err, errs.Invalid) {
		t.Fatalf("copy on another machine: %v; want invalid", err)
	}
	for _, want := range []string{"copied from another machine", "3 of 4", "dmi-uuid, mac, disk", "licet agent init"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	t.Log(err)
}

func TestToleratedHardwareChange(t *testing.T) {
	dir := t.TempDir()
	id, err := Init(dir, InitOptions{HWRoot: machineA.build(t)})
	if err != nil {
		t.Fatal(err)
	}
	newNIC := machineA
	newNIC.mac = "00:1b:21:aa:bb:cc"
	got, err := LoadWith(dir, LoadOptions{HWRoot: newNIC.build(t)})
	if err != nil {
		t.Fatalf("NIC replaced: %v", err)
	}
	if got.SystemID != id.SystemID || !slices.Equal(got.HardwareChanged, []hwid.Kind{hwid.KindMAC}) {
		t.Errorf("SystemID %s (want %s), HardwareChanged %v", got.SystemID, id.SystemID, got.HardwareChanged)
	}
}

func TestInitValidation(t *testing.T) {
	root := machineA.build(t)
	for _, opts := range []InitOptions{
		{Platform: "macos", HWRoot: root},
		{Platform: "unknown", HWRoot: root},
		{ServerURL: "ftp://x", HWRoot: root},
		{ServerURL: "site.example.com", HWRoot: root},
	} {
		dir := t.TempDir()
		if _, err := Init(dir, opts); !errs.Is(err, errs.Invalid) {
			t.Errorf("Init(%+v) = %v; want invalid", opts, err)
		}
	}
	id, err := Init(t.TempDir(), InitOptions{HWRoot: root})
	if err != nil || id.Platform != DefaultPlatform() {
		t.Errorf("default platform: %v, %v", id, err)
	}
}

func TestInitWithoutHardwareLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	_, err := Init(dir, InitOptions{HWRoot: t.TempDir()})
	if !errs.Is(err, errs.NotFound) || !strings.Contains(err.Error(), "machine-id") {
		t.Fatalf("Init on an empty hardware tree = %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files left behind: %v", entries)
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(t.TempDir()); !errs.Is(err, errs.NotFound) || !strings.Contains(err.Error(), "licet agent init") {
		t.Errorf("Load of an empty directory = %v", err)
	}
	root := machineA.build(t)
	setup := func() string {
		dir := t.TempDir()
		if _, err := Init(dir, InitOptions{HWRoot: root}); err != nil {
			t.Fatal(err)
		}
		return dir
	}

	dir := setup()
	os.Remove(filepath.Join(dir, HPKEKeyFile))
	if _, err := LoadWith(dir, LoadOptions{HWRoot: root}); !errs.Is(err, errs.NotFound) || !strings.Contains(err.Error(), HPKEKeyFile) {
		t.Errorf("missing HPKE key: %v", err)
	}

	dir = setup()
	os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"version":2,"platform":"windows"}`), 0o644)
	if _, err := LoadWith(dir, LoadOptions{HWRoot: root}); !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("agent.json version 2: %v", err)
	}

	dir = setup()
	os.WriteFile(filepath.Join(dir, HardwareFile), []byte(`{"version":1}`), 0o600)
	if _, err := LoadWith(dir, LoadOptions{HWRoot: root}); !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), HardwareFile) {
		t.Errorf("damaged hardware.json: %v", err)
	}

	dir = setup()
	os.WriteFile(filepath.Join(dir, KeyFile), []byte("junk"), 0o600)
	if _, err := LoadWith(dir, LoadOptions{HWRoot: root}); !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), KeyFile) {
		t.Errorf("damaged key: %v", err)
	}
}

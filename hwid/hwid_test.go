package hwid

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/licet/licet/errs"
)

// machine describes a fake /etc and /sys tree.
type machine struct {
	machineID string            // /etc/machine-id
	dbusID    string            // /var/lib/dbus/machine-id
	uuid      string            // product_uuid; "" for none (non-root)
	nics      map[string]string // physical interface name -> MAC
	virtNICs  map[string]string // virtual interfaces (no device link)
	disks     map[string]string // block device -> serial (wwid is derived)
}

func baseMachine() machine {
	return machine{
		machineID: "3d1219c7c4c5404aaa1f6d2a48adfda4",
		uuid:      "4C4C4544-0036-3010-8048-B4C04F563432",
		nics:      map[string]string{"eth0": "00:1a:2b:3c:4d:5e"},
		virtNICs:  map[string]string{"lo": "00:00:00:00:00:00", "br0": "02:42:ac:11:00:01"},
		disks:     map[string]string{"sda": "WD-WCC4N1234567", "loop0": "", "nvme0n1": "S4EWNX0N123456"},
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (m machine) build(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if m.machineID != "" {
		write(t, filepath.Join(root, "etc/machine-id"), m.machineID+"\n")
	}
	if m.dbusID != "" {
		write(t, filepath.Join(root, "var/lib/dbus/machine-id"), m.dbusID+"\n")
	}
	if m.uuid != "" {
		write(t, filepath.Join(root, "sys/class/dmi/id/product_uuid"), m.uuid+"\n")
	}
	for name, mac := range m.nics {
		d := filepath.Join(root, "sys/class/net", name)
		write(t, filepath.Join(d, "address"), mac+"\n")
		write(t, filepath.Join(d, "addr_assign_type"), "0\n")
		write(t, filepath.Join(d, "device/uevent"), "DRIVER=e1000e\n")
	}
	for name, mac := range m.virtNICs {
		write(t, filepath.Join(root, "sys/class/net", name, "address"), mac+"\n")
	}
	for name, serial := range m.disks {
		d := filepath.Join(root, "sys/block", name)
		write(t, filepath.Join(d, "removable"), "0\n")
		if serial == "" {
			continue
		}
		write(t, filepath.Join(d, "device/serial"), serial+"  \n")
		write(t, filepath.Join(d, "device/wwid"), "t10.ATA "+serial+"\n")
	}
	return root
}

func collect(t *testing.T, m machine) Fingerprint {
	t.Helper()
	f, err := Collect(m.build(t))
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	return f
}

// stored is what the agent keeps on disk: a fingerprint after a
// Marshal/Unmarshal round trip, without raw values.
func stored(t *testing.T, f Fingerprint) Fingerprint {
	t.Helper()
	b, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	g, err := Unmarshal(b)
	if err != nil {
		t.Fatalf("Unmarshal(%s): %v", b, err)
	}
	if g.SystemID() != f.SystemID() {
		t.Fatalf("system ID changed in round trip: %s -> %s", f.SystemID(), g.SystemID())
	}
	return g
}

func clone(m machine) machine {
	c := m
	c.nics = maps(m.nics)
	c.virtNICs = maps(m.virtNICs)
	c.disks = maps(m.disks)
	return c
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestSameMachine(t *testing.T) {
	m := baseMachine()
	a := collect(t, m)
	b := collect(t, m)
	if !strings.HasPrefix(a.SystemID(), "sys-") || len(a.SystemID()) != 20 {
		t.Fatalf("SystemID = %q, want sys- and 16 hex digits", a.SystemID())
	}
	if a.SystemID() != b.SystemID() {
		t.Errorf("same hardware gave system IDs %s and %s", a.SystemID(), b.SystemID())
	}
	if slices.Equal(a.Components(), b.Components()) {
		t.Error("two collections share a salt: component hashes are equal")
	}
	want := []Kind{KindMachineID, KindDMIUUID, KindMAC, KindDisk}
	if got := a.Kinds(); !slices.Equal(got, want) {
		t.Errorf("Kinds = %v, want %v", got, want)
	}
	s := stored(t, a)
	if ok, changed := s.Match(b); !ok || changed != 0 {
		t.Errorf("stored.Match(same machine) = %v, %d; want true, 0", ok, changed)
	}
	if ok, changed := s.Match(s); !ok || changed != 0 {
		t.Errorf("stored.Match(itself) = %v, %d; want true, 0", ok, changed)
	}
	if ok, _ := a.Match(b); !ok {
		t.Error("fresh.Match(fresh) failed")
	}
}

func TestToleranceCases(t *testing.T) {
	base := baseMachine()
	tests := []struct {
		name        string
		change      func(m *machine)
		wantOK      bool
		wantChanged []Kind
	}{
		{"unchanged", func(m *machine) {}, true, nil},
		{"NIC replaced", func(m *machine) { m.nics["eth0"] = "00:1b:21:aa:bb:cc" }, true, []Kind{KindMAC}},
		{"NIC renamed and second NIC added", func(m *machine) {
			delete(m.nics, "eth0")
			m.nics["enp3s0"] = "00:1a:2b:3c:4d:5e"
			m.nics["enp4s0"] = "00:1a:2b:3c:4d:5f"
		}, true, nil},
		{"one of two disks replaced", func(m *machine) { m.disks["sda"] = "WD-NEW0000001" }, true, nil},
		{"all disks replaced, system restored", func(m *machine) {
			m.disks["sda"] = "WD-NEW0000001"
			m.disks["nvme0n1"] = "S4EWNX0N999999"
		}, true, []Kind{KindDisk}},
		{"run as non-root: DMI unreadable", func(m *machine) { m.uuid = "" }, true, []Kind{KindDMIUUID}},
		{"mainboard replaced: DMI and onboard NIC", func(m *machine) {
			m.uuid = "11111111-2222-3333-4444-555555555555"
			m.nics["eth0"] = "00:1b:21:aa:bb:cc"
		}, false, []Kind{KindDMIUUID, KindMAC}},
		{"VM clone: machine-id and disk copied", func(m *machine) {
			m.uuid = "11111111-2222-3333-4444-555555555555"
			m.nics["eth0"] = "52:54:00:12:34:56"
		}, false, []Kind{KindDMIUUID, KindMAC}},
		{"everything but machine-id changed", func(m *machine) {
			m.uuid = "11111111-2222-3333-4444-555555555555"
			m.nics = map[string]string{"eth0": "00:1b:21:aa:bb:cc"}
			m.disks = map[string]string{"sda": "OTHERDISK1"}
		}, false, []Kind{KindDMIUUID, KindMAC, KindDisk}},
		{"everything but DMI changed", func(m *machine) {
			m.machineID = "00112233445566778899aabbccddeeff"
			m.nics = map[string]string{"eth0": "00:1b:21:aa:bb:cc"}
			m.disks = map[string]string{"sda": "OTHERDISK1"}
		}, false, []Kind{KindMachineID, KindMAC, KindDisk}},
		{"reinstalled on new disk: machine-id and disk", func(m *machine) {
			m.machineID = "00112233445566778899aabbccddeeff"
			m.disks = map[string]string{"sda": "OTHERDISK1"}
		}, false, []Kind{KindMachineID, KindDisk}},
	}
	s := stored(t, collect(t, base))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := clone(base)
			tt.change(&m)
			cur := collect(t, m)
			ok, changed := s.Match(cur)
			if ok != tt.wantOK || changed != len(tt.wantChanged) {
				t.Errorf("Match = %v, %d; want %v, %d", ok, changed, tt.wantOK, len(tt.wantChanged))
			}
			if got := s.ChangedKinds(cur); !slices.Equal(got, tt.wantChanged) {
				t.Errorf("ChangedKinds = %v, want %v", got, tt.wantChanged)
			}
		})
	}
}

func TestMissingDMIStillWorks(t *testing.T) {
	m := baseMachine()
	m.uuid = ""
	a := collect(t, m)
	if slices.Contains(a.Kinds(), KindDMIUUID) {
		t.Fatal("dmi-uuid recorded without product_uuid")
	}
	s := stored(t, a)
	if ok, changed := s.Match(collect(t, m)); !ok || changed != 0 {
		t.Errorf("Match = %v, %d; want true, 0", ok, changed)
	}
	// Three kinds left: one may still change.
	m.nics["eth0"] = "00:1b:21:aa:bb:cc"
	if ok, changed := s.Match(collect(t, m)); !ok || changed != 1 {
		t.Errorf("after NIC change: Match = %v, %d; want true, 1", ok, changed)
	}

	// An unreadable product_uuid (mode 0400 root, as on a real system) is skipped too.
	if os.Geteuid() != 0 {
		m := baseMachine()
		root := m.build(t)
		if err := os.Chmod(filepath.Join(root, "sys/class/dmi/id/product_uuid"), 0); err != nil {
			t.Fatal(err)
		}
		f, err := Collect(root)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(f.Kinds(), KindDMIUUID) {
			t.Error("unreadable product_uuid was recorded")
		}
	}
}

func TestTwoKindsTolerateNothing(t *testing.T) {
	m := machine{machineID: "3d1219c7c4c5404aaa1f6d2a48adfda4", disks: map[string]string{"vda": "1816637799942805"}}
	s := stored(t, collect(t, m))
	if ok, _ := s.Match(collect(t, m)); !ok {
		t.Fatal("unchanged two-kind machine does not match")
	}
	m.disks["vda"] = "99999"
	if ok, changed := s.Match(collect(t, m)); ok || changed != 1 {
		t.Errorf("machine-id alone: Match = %v, %d; want false, 1", ok, changed)
	}
}

func TestOnlyMachineID(t *testing.T) {
	m := machine{machineID: "3d1219c7c4c5404aaa1f6d2a48adfda4"}
	s := stored(t, collect(t, m))
	if ok, changed := s.Match(collect(t, m)); !ok || changed != 0 {
		t.Errorf("Match = %v, %d; want true, 0", ok, changed)
	}
	m.machineID = "00112233445566778899aabbccddeeff"
	if ok, _ := s.Match(collect(t, m)); ok {
		t.Error("different machine-id matched")
	}
}

func TestRequired(t *testing.T) {
	for n, want := range map[int]int{0: 0, 1: 1, 2: 2, 3: 2, 4: 3, 5: 4} {
		if got := Required(n); got != want {
			t.Errorf("Required(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestEmptyTree(t *testing.T) {
	_, err := Collect(t.TempDir())
	if err == nil {
		t.Fatal("Collect of an empty tree succeeded")
	}
	if !errs.Is(err, errs.NotFound) {
		t.Errorf("kind = %v, want not_found", errs.KindOf(err))
	}
	for _, want := range []string{"etc/machine-id", "var/lib/dbus/machine-id", "product_uuid", "sys/class/net/*/address", "sys/block/*/"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

// rawValues returns the raw values of kind collected (an internal view for tests).
func rawValues(f Fingerprint, kind Kind) []string {
	var out []string
	for _, r := range f.raw {
		if r.kind == kind {
			out = append(out, r.value)
		}
	}
	return out
}

func TestCollectFiltering(t *testing.T) {
	m := machine{
		machineID: "uninitialized",
		dbusID:    "AABBCCDDEEFF00112233445566778899",
		uuid:      "03000200-0400-0500-0006-000700080009", // firmware placeholder
		nics: map[string]string{
			"eth0":  "52:54:00:AB:CD:EF", // locally administered (QEMU): kept
			"eth1":  "00:00:00:00:00:00",
			"eth2":  "01:00:5e:00:00:01", // multicast
			"wlan0": "3a:11:22:33:44:55", // random, see below
		},
		virtNICs: map[string]string{"docker0": "02:42:ac:11:00:01"},
		disks:    map[string]string{"sda": "SER1", "loop3": "LOOPSER", "dm-0": "DMSER", "sdb": "USBSTICK", "zram0": "Z", "sdc": "0000000000"},
	}
	root := m.build(t)
	write(t, filepath.Join(root, "sys/class/net/wlan0/addr_assign_type"), "3\n")
	write(t, filepath.Join(root, "sys/block/sdb/removable"), "1\n")
	// A bond slave reports its permanent address, not the bond's.
	write(t, filepath.Join(root, "sys/class/net/eth3/address"), "00:aa:aa:aa:aa:aa\n")
	write(t, filepath.Join(root, "sys/class/net/eth3/bonding_slave/perm_hwaddr"), "00:bb:bb:bb:bb:bb\n")
	write(t, filepath.Join(root, "sys/class/net/eth3/device/uevent"), "")
	// virtio disks keep their serial beside the device, NVMe namespaces their wwid.
	write(t, filepath.Join(root, "sys/block/vda/serial"), "VIRTIO123")
	write(t, filepath.Join(root, "sys/block/nvme0n1/wwid"), "eui.0025388b91b4c3a1\n")

	f, err := Collect(root)
	if err != nil {
		t.Fatal(err)
	}
	check := func(kind Kind, want ...string) {
		t.Helper()
		got := rawValues(f, kind)
		if !slices.Equal(got, want) {
			t.Errorf("%s = %q, want %q", kind, got, want)
		}
	}
	check(KindMachineID, "aabbccddeeff00112233445566778899")
	check(KindDMIUUID)
	check(KindMAC, "00:bb:bb:bb:bb:bb", "52:54:00:ab:cd:ef")
	check(KindDisk, "SER1", "VIRTIO123", "eui.0025388b91b4c3a1", "t10.ATA 0000000000", "t10.ATA SER1")
}

func TestReinitSameHardwareSameSystemID(t *testing.T) {
	m := baseMachine()
	root := m.build(t)
	a, err := Collect(root)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Collect(root)
	if err != nil {
		t.Fatal(err)
	}
	if a.SystemID() != b.SystemID() {
		t.Errorf("system IDs %s and %s for unchanged hardware", a.SystemID(), b.SystemID())
	}
	m.nics["eth0"] = "00:1b:21:aa:bb:cc"
	if c := collect(t, m); c.SystemID() == a.SystemID() {
		t.Error("different hardware gave the same system ID")
	}
}

func TestMarshalHasNoRawValues(t *testing.T) {
	m := baseMachine()
	b, err := collect(t, m).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{m.machineID, strings.ToLower(m.uuid), "WD-WCC4N1234567", "00:1a:2b:3c:4d:5e"} {
		if strings.Contains(strings.ToLower(string(b)), strings.ToLower(secret)) {
			t.Errorf("marshalled fingerprint contains %q:\n%s", secret, b)
		}
	}
	if !strings.Contains(string(b), `"version": 1`) {
		t.Errorf("no version field:\n%s", b)
	}
}

func TestUnmarshalErrors(t *testing.T) {
	good := `{"version":1,"system_id":"sys-0123456789abcdef","salt":"00112233445566778899aabbccddeeff","components":[{"kind":"mac","hash":"` + strings.Repeat("ab", 32) + `"}]}`
	if _, err := Unmarshal([]byte(good)); err != nil {
		t.Fatalf("good fingerprint: %v", err)
	}
	tests := []struct{ name, data, want string }{
		{"not JSON", `{`, "not valid JSON"},
		{"version", strings.Replace(good, `"version":1`, `"version":2`, 1), "format version 2"},
		{"no version", strings.Replace(good, `"version":1,`, ``, 1), "format version 0"},
		{"system id", strings.Replace(good, "sys-0123456789abcdef", "sys-12", 1), "system_id"},
		{"salt", strings.Replace(good, "00112233445566778899aabbccddeeff", "0011", 1), "salt"},
		{"kind", strings.Replace(good, `"mac"`, `"cpu"`, 1), `unknown kind "cpu"`},
		{"hash", strings.Replace(good, strings.Repeat("ab", 32), "abcd", 1), "hash"},
		{"no components", `{"version":1,"system_id":"sys-0123456789abcdef","salt":"00112233445566778899aabbccddeeff","components":[]}`, "no components"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Unmarshal([]byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errs.Is(err, errs.Invalid) {
				t.Errorf("Unmarshal = %v; want an invalid error containing %q", err, tt.want)
			}
		})
	}
	if _, err := (Fingerprint{}).Marshal(); err == nil {
		t.Error("zero fingerprint marshalled")
	}
	if ok, _ := (Fingerprint{}).Match(collect(t, baseMachine())); ok {
		t.Error("zero fingerprint matched")
	}
}

func TestRealMachine(t *testing.T) {
	a, err := Collect("/")
	if errs.Is(err, errs.NotFound) {
		t.Skipf("no hardware identity on this machine (a minimal container?): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	b, err := Collect("/")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Components()) == 0 {
		t.Fatal("no components")
	}
	if a.SystemID() != b.SystemID() {
		t.Errorf("system ID not stable: %s, %s", a.SystemID(), b.SystemID())
	}
	if ok, changed := stored(t, a).Match(b); !ok || changed != 0 {
		t.Errorf("Match = %v, %d", ok, changed)
	}
	t.Logf("system ID %s, kinds %v, %d components", a.SystemID(), a.Kinds(), len(a.Components()))
}

func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte(`{"version":1,"system_id":"sys-0123456789abcdef","salt":"00112233445566778899aabbccddeeff","components":[{"kind":"mac","hash":"` + strings.Repeat("ab", 32) + `"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fp, err := Unmarshal(data)
		if err != nil {
			return
		}
		b, err := fp.Marshal()
		if err != nil {
			t.Fatalf("Marshal after Unmarshal: %v", err)
		}
		fp2, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("Unmarshal(Marshal): %v", err)
		}
		if fp2.SystemID() != fp.SystemID() || !slices.Equal(fp2.Components(), fp.Components()) {
			t.Fatal("round trip changed the fingerprint")
		}
		if ok, _ := fp.Match(fp2); !ok {
			t.Fatal("fingerprint does not match its own round trip")
		}
	})
}

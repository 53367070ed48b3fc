package hwid

import (
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/licet/licet/errs"
)

// Paths read by Collect, relative to its root.
const (
	pathMachineID     = "etc/machine-id"
	pathDBusMachineID = "var/lib/dbus/machine-id"
	pathProductUUID   = "sys/class/dmi/id/product_uuid"
	dirNet            = "sys/class/net"
	dirBlock          = "sys/block"
)

// diskAttrs are the per-disk attributes read, relative to /sys/block/NAME.
var diskAttrs = []string{"device/serial", "serial", "device/wwid", "wwid"}

// skippedDiskPrefixes name block devices that are not disks of the machine.
var skippedDiskPrefixes = []string{"loop", "ram", "zram", "dm-", "md", "nbd", "sr", "fd"}

// placeholderUUIDs are DMI system UUIDs that firmware ships on many boards.
var placeholderUUIDs = map[string]bool{
	"00000000-0000-0000-0000-000000000000": true,
	"ffffffff-ffff-ffff-ffff-ffffffffffff": true,
	"03000200-0400-0500-0006-000700080009": true,
}

var (
	machineIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)
	uuidRE      = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// Collect reads the hardware components under root ("/" in production; ""
// means "/") and returns a new fingerprint with a fresh salt. Components that
// are missing or unreadable (the DMI UUID for a non-root user) are skipped; if
// none is found at all, the error, of kind errs.NotFound, names every path
// looked at.
func Collect(root string) (Fingerprint, error) {
	if root == "" {
		root = "/"
	}
	var raw []rawComponent
	if id, ok := machineID(root); ok {
		raw = append(raw, rawComponent{KindMachineID, id})
	}
	if u, ok := productUUID(root); ok {
		raw = append(raw, rawComponent{KindDMIUUID, u})
	}
	for _, m := range macAddresses(root) {
		raw = append(raw, rawComponent{KindMAC, m})
	}
	for _, s := range diskIDs(root) {
		raw = append(raw, rawComponent{KindDisk, s})
	}
	if len(raw) == 0 {
		j := func(p string) string { return filepath.Join(root, p) }
		return Fingerprint{}, errs.E(errs.NotFound,
			"no hardware component found under %s: looked for a machine ID in %s and %s, the DMI UUID in %s (readable by root only), "+
				"MAC addresses of physical interfaces in %s, and disk serials and WWIDs in %s",
			root, j(pathMachineID), j(pathDBusMachineID), j(pathProductUUID),
			j(dirNet+"/*/address"), j(dirBlock+"/*/{"+strings.Join(diskAttrs, ",")+"}"))
	}
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return Fingerprint{}, errs.Wrap(errs.Internal, err, "hardware fingerprint: read random salt")
	}
	return newFingerprint(raw, salt), nil
}

// readAttr reads a small text file, such as a sysfs attribute, and trims
// white space and NUL padding. Any read error (missing, permission denied,
// or the EIO/EINVAL some sysfs attributes answer with) counts as absent.
func readAttr(path string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", false
	}
	s := strings.Trim(string(b), " \t\r\n\x00")
	return s, s != ""
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// isVirtual reports whether a sysfs class entry resolves under
// /sys/devices/virtual (bridges, tun, loop devices, …).
func isVirtual(path string) bool {
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false
	}
	return strings.Contains(filepath.ToSlash(target), "/devices/virtual/")
}

func machineID(root string) (string, bool) {
	for _, p := range []string{pathMachineID, pathDBusMachineID} {
		s, ok := readAttr(filepath.Join(root, p))
		s = strings.ToLower(s)
		if ok && machineIDRE.MatchString(s) && strings.Trim(s, "0") != "" {
			return s, true
		}
	}
	return "", false
}

func productUUID(root string) (string, bool) {
	s, ok := readAttr(filepath.Join(root, pathProductUUID))
	s = strings.ToLower(s)
	if !ok || !uuidRE.MatchString(s) || placeholderUUIDs[s] {
		return "", false
	}
	return s, true
}

func macAddresses(root string) []string {
	dir := filepath.Join(root, dirNet)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if !exists(filepath.Join(p, "device")) || isVirtual(p) {
			continue
		}
		addr, ok := readAttr(filepath.Join(p, "bonding_slave", "perm_hwaddr"))
		if !ok {
			// 1: random (NET_ADDR_RANDOM), 3: set from user space (NET_ADDR_SET).
			if t, _ := readAttr(filepath.Join(p, "addr_assign_type")); t == "1" || t == "3" {
				continue
			}
			if addr, ok = readAttr(filepath.Join(p, "address")); !ok {
				continue
			}
		}
		hw, err := net.ParseMAC(addr)
		if err != nil || !usableMAC(hw) {
			continue
		}
		out = append(out, hw.String())
	}
	return out
}

// usableMAC rejects the all-zero and broadcast addresses and group
// (multicast) addresses. Locally administered addresses are kept: see the
// package documentation.
func usableMAC(hw net.HardwareAddr) bool {
	allZero, allOnes := true, true
	for _, b := range hw {
		allZero = allZero && b == 0
		allOnes = allOnes && b == 0xff
	}
	return !allZero && !allOnes && hw[0]&1 == 0
}

func diskIDs(root string) []string {
	dir := filepath.Join(root, dirBlock)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if hasAnyPrefix(name, skippedDiskPrefixes) {
			continue
		}
		p := filepath.Join(dir, name)
		if isVirtual(p) {
			continue
		}
		if r, _ := readAttr(filepath.Join(p, "removable")); r == "1" {
			continue
		}
		for _, a := range diskAttrs {
			if s, ok := readAttr(filepath.Join(p, a)); ok && strings.Trim(s, "0 -_") != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

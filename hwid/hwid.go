// Package hwid derives a machine's system ID from its hardware and decides,
// tolerantly, whether the machine an agent runs on today is the one it was
// set up on.
//
// # Components
//
// Collect reads these components from a filesystem root ("/" in production):
//
//   - machine-id: /etc/machine-id, or /var/lib/dbus/machine-id if the first is
//     missing or not 32 hex digits (an empty or "uninitialized" file).
//   - dmi-uuid: /sys/class/dmi/id/product_uuid. The kernel makes it readable
//     by root only, so a non-root agent simply has no dmi-uuid. Placeholder
//     UUIDs that firmware vendors ship on many boards (all zeros, all ones,
//     03000200-0400-0500-0006-000700080009) are skipped: they would vouch for
//     thousands of machines.
//   - mac: the permanent MAC address of each physical interface, i.e. each
//     /sys/class/net/NAME that has a device link and does not resolve under
//     /sys/devices/virtual. Bridges, bonds, veth, tun and loopback are virtual
//     and skipped. The all-zero, broadcast and multicast addresses are skipped,
//     and so is an address the kernel reports as random or set from user space
//     (addr_assign_type 1 or 3: Wi-Fi MAC randomisation, NetworkManager
//     cloning), because it changes from boot to boot or network to network. A
//     bonded interface contributes its bonding_slave/perm_hwaddr.
//     Locally administered addresses are kept on purpose: hypervisors assign
//     them to virtual NICs (QEMU's 52:54:00:…, Firecracker's 02:fc:…), and
//     for a VM they are as stable as a burned-in address; dropping them would
//     leave most VMs with no mac component at all.
//   - disk: the serial number and WWID of each disk, read from
//     /sys/block/NAME/device/serial, /sys/block/NAME/serial (virtio),
//     /sys/block/NAME/device/wwid and /sys/block/NAME/wwid (NVMe). Loop, RAM,
//     zram, device-mapper, md, nbd, optical and floppy devices, removable
//     devices (USB sticks come and go) and devices under /sys/devices/virtual
//     are skipped. One disk may give several components; they are all of kind
//     disk.
//
// Each component is stored only as SHA-256(domain ‖ salt ‖ kind ‖ 0 ‖ value)
// with its kind, where salt is 16 random bytes chosen when the fingerprint is
// collected, so the fingerprint file neither leaks serial numbers nor links
// two installations on the same hardware. A freshly collected Fingerprint
// also keeps the raw values in memory (never marshalled), so that it can be
// matched against a stored fingerprint that has another salt.
//
// # System ID
//
// The system ID is "sys-" and 16 hex digits: the first 8 bytes of a SHA-256
// over all components collected at creation (kind and value, sorted, with a
// fixed domain string and no salt). It is computed once, stored in the
// fingerprint and never recomputed, so it survives the hardware changes the
// tolerance rule accepts. Because it is derived from the hardware rather than
// drawn at random, setting an agent up again on unchanged hardware gives the
// same system ID: a user cannot obtain a fresh temporary license ("one per
// system ID") by re-initialising the agent.
//
// # Tolerance rule
//
// Matching counts component kinds, not components. Let n be the number of
// kinds recorded in the stored fingerprint. A recorded kind survives if at
// least one of its recorded components is present in the current
// fingerprint; it has changed otherwise. Components present now but not
// recorded (a NIC or disk added) are ignored. The machine is the same if
//
//	survived >= n-1 (at most one kind changed), and
//	survived >= min(n, 2) (no kind vouches for the machine alone).
//
// So the number of kinds that must survive is 1 of 1, 2 of 2, 2 of 3 and 3 of
// 4. Consequences:
//
//   - NIC replaced (machine-id, dmi-uuid, disk unchanged; mac changed): same.
//   - Disk replaced and the system restored from a backup: same. A fresh
//     install on the new disk also changes machine-id: two kinds, different.
//   - A VM clone keeps the copied machine-id but normally gets a new DMI UUID
//     and new MACs: two kinds changed, different, even if the virtual disk's
//     serial was copied as well. A clone that also keeps DMI UUID and disk
//     serials and differs only in its MAC is indistinguishable from a NIC
//     replacement and matches; only the site's one-seat-per-client rule
//     catches it.
//   - The machine-id (a file) or the DMI UUID alone never suffices when
//     everything else changed: with three or more kinds at least two must
//     survive, and with two kinds both must.
//   - An agent set up as root and later run as an ordinary user loses
//     dmi-uuid: one kind changed, still the same machine if n >= 3.
//   - A machine that records only two kinds (say a container-like VM with
//     machine-id and one disk serial) tolerates no change at all: with one
//     survivor left, a copied machine-id could not be told from a real
//     replacement.
//
// Several components of one kind (two NICs, three disks) make that kind
// more robust, not the rule laxer: the kind survives while any of them does.
//
// This is protection against accidental copies and VM clones, not against
// the machine's administrator, who can present any file tree under /sys and
// /etc to the agent.
package hwid

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"slices"

	"github.com/licet/licet/errs"
)

// FormatVersion is the version of the JSON form written by Marshal.
const FormatVersion = 1

// Kind is the kind of a hardware component.
type Kind string

// The component kinds Collect reads.
const (
	KindMachineID Kind = "machine-id" // /etc/machine-id
	KindDMIUUID   Kind = "dmi-uuid"   // SMBIOS system UUID
	KindMAC       Kind = "mac"        // permanent MAC of a physical interface
	KindDisk      Kind = "disk"       // serial number or WWID of a disk
)

var knownKinds = []Kind{KindMachineID, KindDMIUUID, KindMAC, KindDisk}

const (
	saltSize        = 16
	domainSystem    = "licet hwid system-id v1\x00"
	domainComponent = "licet hwid component v1\x00"
)

// Component is one stored hardware component: its kind and the hex SHA-256
// of its salted value.
type Component struct {
	Kind Kind   `json:"kind"`
	Hash string `json:"hash"`
}

type component struct {
	kind Kind
	hash [sha256.Size]byte
}

type rawComponent struct {
	kind  Kind
	value string
}

// Fingerprint is a machine's hardware identity: its system ID, a salt and the
// salted hashes of its components. The zero Fingerprint matches nothing.
// Fingerprints are immutable values.
type Fingerprint struct {
	systemID string
	salt     []byte
	comps    []component    // sorted by kind, then hash
	raw      []rawComponent // only for a fingerprint made by Collect; never marshalled
}

// newFingerprint computes the system ID and the salted hashes of raw, which
// must not be empty.
func newFingerprint(raw []rawComponent, salt []byte) Fingerprint {
	raw = slices.Clone(raw)
	slices.SortFunc(raw, func(a, b rawComponent) int {
		if a.kind != b.kind {
			if a.kind < b.kind {
				return -1
			}
			return 1
		}
		if a.value < b.value {
			return -1
		} else if a.value > b.value {
			return 1
		}
		return 0
	})
	raw = slices.Compact(raw)

	h := sha256.New()
	h.Write([]byte(domainSystem))
	for _, r := range raw {
		h.Write([]byte(r.kind))
		h.Write([]byte{0})
		h.Write([]byte(r.value))
		h.Write([]byte{'\n'})
	}
	sum := h.Sum(nil)

	f := Fingerprint{systemID: "sys-" + hex.EncodeToString(sum[:8]), salt: salt, raw: raw}
	for _, r := range raw {
		f.comps = append(f.comps, component{kind: r.kind, hash: hashComponent(salt, r.kind, r.value)})
	}
	sortComponents(f.comps)
	return f
}

func hashComponent(salt []byte, kind Kind, value string) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(domainComponent))
	h.Write(salt)
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(value))
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

func sortComponents(c []component) {
	slices.SortFunc(c, func(a, b component) int {
		if a.kind != b.kind {
			if a.kind < b.kind {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.hash[:], b.hash[:])
	})
}

// SystemID returns "sys-" and 16 hex digits, fixed when the fingerprint was
// collected.
func (f Fingerprint) SystemID() string { return f.systemID }

// Components returns the stored components, sorted by kind and hash.
func (f Fingerprint) Components() []Component {
	out := make([]Component, len(f.comps))
	for i, c := range f.comps {
		out[i] = Component{Kind: c.kind, Hash: hex.EncodeToString(c.hash[:])}
	}
	return out
}

// Kinds returns the distinct component kinds recorded, in a fixed order.
func (f Fingerprint) Kinds() []Kind {
	var out []Kind
	for _, k := range knownKinds {
		if slices.ContainsFunc(f.comps, func(c component) bool { return c.kind == k }) {
			out = append(out, k)
		}
	}
	return out
}

// present returns the hashes of current's components under f's salt. It
// needs current's raw values unless both fingerprints share the salt.
func (f Fingerprint) present(current Fingerprint) map[[sha256.Size]byte]bool {
	set := make(map[[sha256.Size]byte]bool)
	switch {
	case len(current.raw) > 0:
		for _, r := range current.raw {
			set[hashComponent(f.salt, r.kind, r.value)] = true
		}
	case bytes.Equal(current.salt, f.salt):
		for _, c := range current.comps {
			set[c.hash] = true
		}
	}
	return set
}

// ChangedKinds returns the kinds recorded in f of which no component is
// present in current, in the order of Kinds. current should come from
// Collect: a fingerprint read back with Unmarshal carries only salted hashes
// and can be compared only with one of the same salt.
func (f Fingerprint) ChangedKinds(current Fingerprint) []Kind {
	have := f.present(current)
	var changed []Kind
	for _, k := range f.Kinds() {
		survived := slices.ContainsFunc(f.comps, func(c component) bool { return c.kind == k && have[c.hash] })
		if !survived {
			changed = append(changed, k)
		}
	}
	return changed
}

// Required returns how many of n recorded component kinds must survive for
// the machine to count as the same one: max(min(n, 2), n-1), i.e. 1 of 1,
// 2 of 2, 2 of 3, 3 of 4. See the package documentation.
func Required(n int) int {
	return max(min(n, 2), n-1)
}

// Match reports whether current, freshly collected, is the machine f was
// collected on, by the tolerance rule of the package documentation, and how
// many recorded component kinds changed. A zero f matches nothing.
func (f Fingerprint) Match(current Fingerprint) (ok bool, changed int) {
	n := len(f.Kinds())
	if n == 0 {
		return false, 0
	}
	changed = len(f.ChangedKinds(current))
	return n-changed >= Required(n), changed
}

// wire is the JSON form of a Fingerprint.
type wire struct {
	Version    int         `json:"version"`
	SystemID   string      `json:"system_id"`
	Salt       string      `json:"salt"`
	Components []Component `json:"components"`
}

// Marshal returns the JSON form of f for storing in a file, ending in a
// newline. Raw component values are never included.
func (f Fingerprint) Marshal() ([]byte, error) {
	if f.systemID == "" {
		return nil, errs.E(errs.Invalid, "hardware fingerprint is empty; make one with hwid.Collect")
	}
	b, err := json.MarshalIndent(f.toWire(), "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func (f Fingerprint) toWire() wire {
	return wire{Version: FormatVersion, SystemID: f.systemID, Salt: hex.EncodeToString(f.salt), Components: f.Components()}
}

// MarshalJSON implements json.Marshaler with the same form as Marshal.
func (f Fingerprint) MarshalJSON() ([]byte, error) {
	if f.systemID == "" {
		return nil, errs.E(errs.Invalid, "hardware fingerprint is empty; make one with hwid.Collect")
	}
	return json.Marshal(f.toWire())
}

// UnmarshalJSON implements json.Unmarshaler; see Unmarshal.
func (f *Fingerprint) UnmarshalJSON(data []byte) error {
	g, err := Unmarshal(data)
	if err != nil {
		return err
	}
	*f = g
	return nil
}

var (
	systemIDRE = regexp.MustCompile(`^sys-[0-9a-f]{16}$`)
	hexHashRE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Unmarshal reads a fingerprint written by Marshal. It refuses other format
// versions, unknown kinds and malformed fields with an errs.Invalid error.
func Unmarshal(data []byte) (Fingerprint, error) {
	var w wire
	if err := json.Unmarshal(data, &w); err != nil {
		return Fingerprint{}, errs.Wrap(errs.Invalid, err, "hardware fingerprint is not valid JSON")
	}
	if w.Version != FormatVersion {
		return Fingerprint{}, errs.E(errs.Invalid, "hardware fingerprint has format version %d; this licet reads version %d", w.Version, FormatVersion)
	}
	if !systemIDRE.MatchString(w.SystemID) {
		return Fingerprint{}, errs.E(errs.Invalid, "hardware fingerprint: system_id %q is not \"sys-\" and 16 lower-case hex digits", w.SystemID)
	}
	salt, err := hex.DecodeString(w.Salt)
	if err != nil || len(salt) != saltSize {
		return Fingerprint{}, errs.E(errs.Invalid, "hardware fingerprint: salt must be %d bytes in hex", saltSize)
	}
	if len(w.Components) == 0 {
		return Fingerprint{}, errs.E(errs.Invalid, "hardware fingerprint has no components")
	}
	f := Fingerprint{systemID: w.SystemID, salt: salt}
	for i, c := range w.Components {
		if !slices.Contains(knownKinds, c.Kind) {
			return Fingerprint{}, errs.E(errs.Invalid, "hardware fingerprint: component %d has unknown kind %q (known: %v)", i, c.Kind, knownKinds)
		}
		if !hexHashRE.MatchString(c.Hash) {
			return Fingerprint{}, errs.E(errs.Invalid, "hardware fingerprint: component %d hash must be 64 lower-case hex digits", i)
		}
		var h [sha256.Size]byte
		hex.Decode(h[:], []byte(c.Hash))
		f.comps = append(f.comps, component{kind: c.Kind, hash: h})
	}
	sortComponents(f.comps)
	f.comps = slices.Compact(f.comps)
	return f, nil
}

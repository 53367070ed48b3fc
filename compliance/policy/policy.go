// Package policy is the compliance policy bundle and the reset packet: what
// the vendor signs for the compliance supervisor on its devices.
//
// A bundle is a versioned list of policies, each a check, a weight, a grace
// period and the words the user sees to fix it, with the two thresholds of
// the score (sanction and non-operational) and the hysteresis margin. The
// vendor writes it as YAML or JSON (Parse, with errors that name the
// field); the vendor server signs its canonical JSON with the provisioning
// key, the key the root certified for everything the vendor sends to
// devices (pki.IssueProvisioning), under its own envelope type, so a policy
// signature can never pass for a packet's or the other way round. A device
// verifies the bundle against the vendor root it pinned (Open) and refuses
// a version lower than the one installed (see compliance/supervisor).
//
// A reset packet (MakeReset, OpenReset) is signed the same way and names one
// device and a per-device sequence: it lifts the non-operational mode after
// support, once, on that device only.
package policy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/envelope"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/pki"
)

// Format names and versions.
const (
	BundleType    = "licet.compliance.policy" // envelope type of a bundle
	ResetType     = "licet.compliance.reset"  // envelope type of a reset packet
	FormatVersion = 1
	ArmorBundle   = "COMPLIANCE POLICY" // -----BEGIN LICET COMPLIANCE POLICY-----
	ArmorReset    = "COMPLIANCE RESET"  // -----BEGIN LICET COMPLIANCE RESET-----
)

// Built-in check names (docs/compliance.md).
const (
	CheckMeterRunning   = "meter_running"  // the payg daemon's heartbeat is fresh and the meter readable
	CheckClock          = "clock"          // no clock rollback seen
	CheckStateLog       = "state_log"      // the meter's HMAC chain verifies
	CheckBinaryHashes   = "binary_hashes"  // the agent and metered programs match hashes
	CheckPackets        = "packets"        // the device certificate chain verifies; no forged packet seen
	CheckVendorReached  = "vendor_reached" // a sync within Days days
	CheckNoDebugger     = "no_debugger"    // TracerPid 0
	CheckCredit         = "credit"         // pay-as-you-go credit, or a valid license
	CheckPolicyIntact   = "policy_intact"  // no tampered bundle or reset seen since the last reset
	CheckCommand        = "command"        // a vendor-defined command: exit 0 passes
	CheckAgentBinaryKey = "agent"          // key of binary_hashes naming the running agent itself
)

// BuiltinChecks lists the check names a policy may use.
var BuiltinChecks = []string{CheckMeterRunning, CheckClock, CheckStateLog, CheckBinaryHashes, CheckPackets,
	CheckVendorReached, CheckNoDebugger, CheckCredit, CheckPolicyIntact, CheckCommand}

// Defaults of a bundle.
const (
	DefaultSanction       = 70
	DefaultNonOperational = 40
	DefaultMargin         = 10
	DefaultEvaluateEvery  = time.Minute
	DefaultCommandTimeout = 5 * time.Second
	DefaultHeartbeatAge   = time.Minute
)

// Duration is a time.Duration written as "90s", "12h" or "7d" in YAML and
// JSON.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String writes d the way ParseDuration reads it.
func (d Duration) String() string {
	t := time.Duration(d)
	if t != 0 && t%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", t/(24*time.Hour))
	}
	return t.String()
}

// MarshalJSON writes d as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a string duration.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"90s\", \"12h\" or \"7d\"")
	}
	v, err := ParseDuration(s)
	*d = Duration(v)
	return err
}

// UnmarshalYAML reads a string duration.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	*d = Duration(v)
	return err
}

// ParseDuration reads a Go duration, or whole days as "7d".
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int64
		if _, err := fmt.Sscanf(n, "%d", &days); err == nil && fmt.Sprint(days) == n && days >= 0 && days < 100000 {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a duration such as \"90s\", \"12h\" or \"7d\"", s)
	}
	return v, nil
}

// Thresholds are the score's two thresholds and the hysteresis margin.
type Thresholds struct {
	// Sanction: a score below it puts the device in sanction mode.
	Sanction int `json:"sanction" yaml:"sanction"`
	// NonOperational: a score below it makes the device non-operational.
	NonOperational int `json:"nonoperational" yaml:"nonoperational"`
	// Margin: to leave a mode the score must reach the threshold plus this.
	Margin int `json:"margin" yaml:"margin"`
	// ResetRequired: the non-operational mode is left only by a reset
	// packet from the vendor, whatever the score does (the default, true).
	ResetRequired *bool `json:"reset_required,omitempty" yaml:"reset_required"`
}

// NeedsReset reports whether leaving the non-operational mode needs a reset.
func (t Thresholds) NeedsReset() bool { return t.ResetRequired == nil || *t.ResetRequired }

// Policy is one scored check.
type Policy struct {
	ID     string `json:"id" yaml:"id"`
	Check  string `json:"check" yaml:"check"`
	Weight int    `json:"weight" yaml:"weight"`
	// Grace is how long the check may fail before it counts against the
	// score (zero: at once).
	Grace Duration `json:"grace,omitempty" yaml:"grace"`
	// Fix is what the user reads to put it right.
	Fix string `json:"fix" yaml:"fix"`

	// Days: vendor_reached, the longest time without a sync.
	Days int `json:"days,omitempty" yaml:"days"`
	// Hashes: binary_hashes, SHA-256 (hex) by path; the key "agent" names
	// the running agent's own executable.
	Hashes map[string]string `json:"hashes,omitempty" yaml:"hashes"`
	// MaxAge: meter_running, the oldest heartbeat accepted (default 1m).
	MaxAge Duration `json:"max_age,omitempty" yaml:"max_age"`
	// Command: command, the program and its arguments; exit 0 passes.
	Command []string `json:"command,omitempty" yaml:"command"`
	// Timeout: command, after which it is killed and fails (default 5s).
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout"`
}

// Document is a policy bundle's content.
type Document struct {
	// Version increases with every bundle the vendor publishes; a device
	// refuses a version lower than the one it has.
	Version    uint64     `json:"version" yaml:"version"`
	Thresholds Thresholds `json:"thresholds" yaml:"thresholds"`
	// EvaluateEvery is the timer of the evaluation (default 1m); a state
	// older than three times this is stale and the agent fails closed.
	EvaluateEvery Duration `json:"evaluate_every,omitempty" yaml:"evaluate_every"`
	// SanctionSessionLimit bounds a metered program's run in sanction
	// mode (zero: no limit).
	SanctionSessionLimit Duration `json:"sanction_session_limit,omitempty" yaml:"sanction_session_limit"`
	Policies             []Policy `json:"policies" yaml:"policies"`
	// Published is set by the vendor server when it signs.
	Published time.Time `json:"published,omitzero" yaml:"-"`
}

var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

func invalid(field, format string, args ...any) error {
	return errs.E(errs.Invalid, "policy bundle: %s: %s", field, fmt.Sprintf(format, args...))
}

// Parse reads a bundle document from YAML or JSON (JSON is YAML, but is
// read strictly as JSON when it starts with "{"), fills in the defaults and
// validates it. Unknown fields are refused, so a misspelt field is not
// silently ignored.
func Parse(b []byte) (*Document, error) {
	var d Document
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d); err != nil {
			return nil, errs.Wrap(errs.Invalid, err, "policy bundle: not valid JSON")
		}
	} else {
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&d); err != nil {
			return nil, errs.Wrap(errs.Invalid, err, "policy bundle: not valid YAML")
		}
	}
	d.Defaults()
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

// Defaults fills in the thresholds, timer and timeouts left out.
func (d *Document) Defaults() {
	if d.Thresholds.Sanction == 0 && d.Thresholds.NonOperational == 0 {
		d.Thresholds.Sanction, d.Thresholds.NonOperational = DefaultSanction, DefaultNonOperational
	}
	if d.Thresholds.Margin == 0 {
		d.Thresholds.Margin = DefaultMargin
	}
	if d.EvaluateEvery == 0 {
		d.EvaluateEvery = Duration(DefaultEvaluateEvery)
	}
	for i := range d.Policies {
		p := &d.Policies[i]
		if p.Check == CheckCommand && p.Timeout == 0 {
			p.Timeout = Duration(DefaultCommandTimeout)
		}
		if p.Check == CheckMeterRunning && p.MaxAge == 0 {
			p.MaxAge = Duration(DefaultHeartbeatAge)
		}
	}
}

// Validate checks every field and names the first wrong one.
func (d *Document) Validate() error {
	if d.Version == 0 {
		return invalid("version", "missing: a bundle needs a version number of 1 or more, higher than the last one published")
	}
	t := d.Thresholds
	if t.Sanction < 1 || t.Sanction > 100 {
		return invalid("thresholds.sanction", "%d is not between 1 and 100", t.Sanction)
	}
	if t.NonOperational < 0 || t.NonOperational >= t.Sanction {
		return invalid("thresholds.nonoperational", "%d must be 0 or more and below thresholds.sanction (%d)", t.NonOperational, t.Sanction)
	}
	if t.Margin < 0 || t.Sanction+t.Margin > 100 {
		return invalid("thresholds.margin", "%d must be 0 or more, and sanction + margin (%d) at most 100, or the sanction mode could never be left", t.Margin, t.Sanction+t.Margin)
	}
	if d.EvaluateEvery.D() < time.Second || d.EvaluateEvery.D() > 24*time.Hour {
		return invalid("evaluate_every", "%s must be between 1s and 24h", d.EvaluateEvery)
	}
	if len(d.Policies) == 0 {
		return invalid("policies", "empty: a bundle needs at least one policy")
	}
	if len(d.Policies) > 200 {
		return invalid("policies", "%d policies; at most 200", len(d.Policies))
	}
	seen := map[string]bool{}
	for i, p := range d.Policies {
		f := func(name string) string { return fmt.Sprintf("policies[%d].%s", i, name) }
		if !idRE.MatchString(p.ID) {
			return invalid(f("id"), "%q must be 1-63 lower-case letters, digits, '.', '_' or '-'", p.ID)
		}
		if seen[p.ID] {
			return invalid(f("id"), "%q is used twice; each policy needs its own id", p.ID)
		}
		seen[p.ID] = true
		known := false
		for _, c := range BuiltinChecks {
			known = known || c == p.Check
		}
		if !known {
			return invalid(f("check"), "%q is not a check; use one of %s", p.Check, strings.Join(BuiltinChecks, ", "))
		}
		if p.Weight < 1 || p.Weight > 1000 {
			return invalid(f("weight"), "%d is not between 1 and 1000", p.Weight)
		}
		if p.Grace.D() > 365*24*time.Hour {
			return invalid(f("grace"), "%s is more than a year", p.Grace)
		}
		if strings.TrimSpace(p.Fix) == "" {
			return invalid(f("fix"), "missing: say what the user does to put it right")
		}
		switch p.Check {
		case CheckVendorReached:
			if p.Days < 1 {
				return invalid(f("days"), "vendor_reached needs days: 1 or more")
			}
		case CheckBinaryHashes:
			if len(p.Hashes) == 0 {
				return invalid(f("hashes"), "binary_hashes needs hashes: path (or \"agent\") to SHA-256 hex")
			}
			for path, h := range p.Hashes {
				if path != CheckAgentBinaryKey && !strings.HasPrefix(path, "/") {
					return invalid(f("hashes"), "%q is neither \"agent\" nor an absolute path", path)
				}
				if len(h) != 64 || strings.Trim(strings.ToLower(h), "0123456789abcdef") != "" {
					return invalid(f("hashes["+path+"]"), "%q is not a SHA-256 in hex (64 digits)", h)
				}
			}
		case CheckCommand:
			if len(p.Command) == 0 || p.Command[0] == "" {
				return invalid(f("command"), "a command check needs command: [program, args...]")
			}
			if p.Timeout.D() <= 0 || p.Timeout.D() > 5*time.Minute {
				return invalid(f("timeout"), "%s must be above 0 and at most 5m", p.Timeout)
			}
		}
	}
	return nil
}

// Policy returns the policy with id, or nil.
func (d *Document) Policy(id string) *Policy {
	for i := range d.Policies {
		if d.Policies[i].ID == id {
			return &d.Policies[i]
		}
	}
	return nil
}

// Sign signs d with the provisioning key and its chain and returns the
// armored bundle.
func Sign(d *Document, s *keys.Signer, chain [][]byte) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	env, err := envelope.Sign(BundleType, FormatVersion, d, s, chain)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "sign the policy bundle")
	}
	return armor.Encode(armor.Block{Type: ArmorBundle, Version: FormatVersion, Body: env.Marshal()}), nil
}

// openSigned decodes an armored signed document and verifies it against
// root: a provisioning certificate chained to root signed it.
func openSigned(text []byte, armorType, envType string, root *x509.Certificate, at time.Time, v any) error {
	blk, err := armor.Decode(text, armorType)
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "not a LICET %s block", armorType)
	}
	env, err := envelope.ParseSigned(blk.Body, envType, FormatVersion)
	if err != nil {
		return err
	}
	cert, err := pki.VerifyProvisioning(env.Certificates, root, at)
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "%s: the signer is not the vendor's provisioning key under the pinned root", envType)
	}
	if err := env.Verify(cert.PublicKey.(ed25519.PublicKey)); err != nil {
		return err
	}
	return env.Decode(v)
}

// Open verifies an armored bundle against the vendor root and returns its
// document, validated.
func Open(text []byte, root *x509.Certificate, at time.Time) (*Document, error) {
	var d Document
	if err := openSigned(text, ArmorBundle, BundleType, root, at, &d); err != nil {
		return nil, err
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

// Reset is a reset packet: it lifts the non-operational mode of one device.
type Reset struct {
	DeviceID string    `json:"device_id"`
	Sequence uint64    `json:"sequence"` // per device, from 1; a device applies each once
	Reason   string    `json:"reason,omitempty"`
	Issued   time.Time `json:"issued"`
}

// MakeReset signs a reset packet and returns it armored.
func MakeReset(r Reset, s *keys.Signer, chain [][]byte) ([]byte, error) {
	if r.DeviceID == "" || r.Sequence == 0 {
		return nil, errs.E(errs.Invalid, "a reset packet needs a device ID and a sequence of 1 or more")
	}
	env, err := envelope.Sign(ResetType, FormatVersion, r, s, chain)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "sign the reset packet")
	}
	return armor.Encode(armor.Block{Type: ArmorReset, Version: FormatVersion, Body: env.Marshal()}), nil
}

// OpenReset verifies an armored reset packet against root and checks that
// it names deviceID.
func OpenReset(text []byte, root *x509.Certificate, deviceID string, at time.Time) (*Reset, error) {
	var r Reset
	if err := openSigned(text, ArmorReset, ResetType, root, at, &r); err != nil {
		return nil, err
	}
	if r.DeviceID != deviceID {
		return nil, errs.E(errs.Forbidden, "the reset packet is for device %s, not this device (%s): ask the vendor for this device's reset", r.DeviceID, deviceID)
	}
	return &r, nil
}

// Blocks finds the armored bundles and reset packets in a file.
func Blocks(text []byte) (bundles, resets [][]byte) {
	return blockRE(ArmorBundle).FindAll(text, -1), blockRE(ArmorReset).FindAll(text, -1)
}

func blockRE(t string) *regexp.Regexp {
	return regexp.MustCompile(`(?s)-----BEGIN LICET ` + t + `-----.*?-----END LICET ` + t + `-----\n?`)
}

// Report is the compliance part of a device's sync request
// (docs/payg-protocol.md): what the vendor needs to send the newest bundle
// and the device's reset packets, and to list devices by score.
type Report struct {
	BundleVersion uint64    `json:"bundle_version"`
	ResetSequence uint64    `json:"reset_sequence"`
	Score         int       `json:"score"`
	Mode          string    `json:"mode"` // compliant, sanction, nonoperational, or unknown
	Failing       []string  `json:"failing,omitempty"`
	Evaluated     time.Time `json:"evaluated,omitzero"`
}

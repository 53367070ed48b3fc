package agent

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/hwid"
	"github.com/licet/licet/internal/fsutil"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/softid"
)

// The files of an agent identity, inside its directory.
const (
	KeyFile      = "client.key"
	HPKEKeyFile  = "client-hpke.key"
	HardwareFile = "hardware.json"
	ConfigFile   = "agent.json"
)

// identityFiles in the order Init writes them; agent.json comes last, so a
// directory without it holds no complete identity.
var identityFiles = []string{KeyFile, HPKEKeyFile, HardwareFile, ConfigFile}

// ConfigVersion is the format version of agent.json.
const ConfigVersion = 1

// Config is the content of agent.json.
type Config struct {
	Version   int    `json:"version"`
	Platform  string `json:"platform"`             // one of softid.Platforms
	ServerURL string `json:"server_url,omitempty"` // the site or gateway; may be set later
}

// InitOptions configures Init.
type InitOptions struct {
	// Platform is the client platform, one of softid.Platforms. Empty means
	// "windows" on Windows and "non-windows" elsewhere.
	Platform string
	// ServerURL is the site or gateway URL (http or https); it may be empty.
	ServerURL string
	// HWRoot is the filesystem root the hardware is read from; empty means "/".
	// Tests point it at a fake tree.
	HWRoot string
}

// LoadOptions configures LoadWith.
type LoadOptions struct {
	// HWRoot is the filesystem root the hardware is read from; empty means "/".
	HWRoot string
}

// Identity is a loaded agent identity.
type Identity struct {
	Dir       string          // the agent's directory
	Signer    *keys.Signer    // the client's Ed25519 key
	Decrypter *keys.Decrypter // the client's HPKE key
	ClientID  string          // "client-" and 16 hex digits; see ClientIDFor
	SystemID  string          // the hwid system ID recorded at init
	Platform  string          // one of softid.Platforms
	ServerURL string          // from agent.json; may be empty

	// Hardware is the fingerprint recorded at init.
	Hardware hwid.Fingerprint
	// HardwareChanged lists the component kinds that differ from the
	// recorded ones but were tolerated (see package hwid); nil after Init.
	HardwareChanged []hwid.Kind
}

// ClientIDFor returns the client ID of an Ed25519 public key: "client-" and
// the first 8 bytes of its SHA-256 in hex.
func ClientIDFor(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "client-" + hex.EncodeToString(sum[:8])
}

// DefaultPlatform is the platform Init records when none is given.
func DefaultPlatform() string {
	if runtime.GOOS == "windows" {
		return "windows"
	}
	return "non-windows"
}

func checkPlatform(p string) error {
	if code, ok := softid.PlatformCode(p); !ok || code == 0 {
		return errs.E(errs.Invalid, "platform %q is not one of %s", p, strings.Join(softid.Platforms, ", "))
	}
	return nil
}

func checkServerURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errs.E(errs.Invalid, "server URL %q is not an http or https URL such as https://licenses.example.com", s)
	}
	return nil
}

// Init creates a new agent identity in dir (created with mode 0700 if
// missing): signing and HPKE keys, the hardware fingerprint and agent.json.
// It refuses, with an errs.Conflict error, to overwrite any file of an
// existing identity. If it fails part way it removes the files it wrote.
func Init(dir string, opts InitOptions) (*Identity, error) {
	if opts.Platform == "" {
		opts.Platform = DefaultPlatform()
	}
	if err := checkPlatform(opts.Platform); err != nil {
		return nil, err
	}
	if err := checkServerURL(opts.ServerURL); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "create agent directory %s", dir)
	}
	for _, name := range identityFiles {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); err == nil {
			return nil, errs.E(errs.Conflict, "an agent identity already exists in %s (found %s); refusing to overwrite it: use it, or remove the directory to start over, which gives this machine a new client ID", dir, name)
		}
	}

	hw, err := hwid.Collect(opts.HWRoot)
	if err != nil {
		return nil, errs.Wrap(errs.KindOf(err), err, "cannot read this machine's hardware identity")
	}
	signer, err := keys.GenerateSigner()
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "generate the client key")
	}
	dec, err := keys.GenerateDecrypter()
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "generate the client HPKE key")
	}
	hwJSON, err := hw.Marshal()
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "encode the hardware fingerprint")
	}
	cfg := Config{Version: ConfigVersion, Platform: opts.Platform, ServerURL: opts.ServerURL}
	cfgJSON, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "encode %s", ConfigFile)
	}
	cfgJSON = append(cfgJSON, '\n')

	writers := []func(path string) error{
		signer.Save,
		dec.Save,
		func(p string) error { return fsutil.CreateExclusive(p, hwJSON, 0o600) },
		func(p string) error { return fsutil.CreateExclusive(p, cfgJSON, 0o644) },
	}
	var written []string
	for i, write := range writers {
		p := filepath.Join(dir, identityFiles[i])
		if err := write(p); err != nil {
			for _, w := range written {
				os.Remove(w)
			}
			return nil, errs.Wrap(errs.Internal, err, "write %s", p)
		}
		written = append(written, p)
	}
	return &Identity{
		Dir:       dir,
		Signer:    signer,
		Decrypter: dec,
		ClientID:  ClientIDFor(signer.Public()),
		SystemID:  hw.SystemID(),
		Platform:  cfg.Platform,
		ServerURL: cfg.ServerURL,
		Hardware:  hw,
	}, nil
}

// Load reads the agent identity in dir and checks it against this machine's
// hardware; see LoadWith.
func Load(dir string) (*Identity, error) { return LoadWith(dir, LoadOptions{}) }

// LoadWith reads the agent identity in dir, collects the hardware under
// opts.HWRoot and compares it with the fingerprint recorded at init by the
// tolerance rule of package hwid. If the hardware belongs to another machine
// it fails with an errs.Invalid error: the directory was copied. A missing
// identity is errs.NotFound.
func LoadWith(dir string, opts LoadOptions) (*Identity, error) {
	cfgPath := filepath.Join(dir, ConfigFile)
	data, err := os.ReadFile(cfgPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errs.E(errs.NotFound, "no agent identity in %s (%s is missing); create one with 'licet agent init'", dir, ConfigFile)
	}
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "read %s", cfgPath)
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "%s is not valid JSON", cfgPath)
	}
	if cfg.Version != ConfigVersion {
		return nil, errs.E(errs.Invalid, "%s has format version %d; this licet reads version %d", cfgPath, cfg.Version, ConfigVersion)
	}
	if err := checkPlatform(cfg.Platform); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "%s", cfgPath)
	}
	if err := checkServerURL(cfg.ServerURL); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "%s", cfgPath)
	}

	signer, err := keys.LoadSigner(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fileError(err, dir, KeyFile)
	}
	dec, err := keys.LoadDecrypter(filepath.Join(dir, HPKEKeyFile))
	if err != nil {
		return nil, fileError(err, dir, HPKEKeyFile)
	}
	hwPath := filepath.Join(dir, HardwareFile)
	data, err = os.ReadFile(hwPath)
	if err != nil {
		return nil, fileError(err, dir, HardwareFile)
	}
	recorded, err := hwid.Unmarshal(data)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "%s", hwPath)
	}

	current, err := hwid.Collect(opts.HWRoot)
	if err != nil {
		return nil, errs.Wrap(errs.KindOf(err), err, "cannot read this machine's hardware to check the agent identity in %s", dir)
	}
	changed := recorded.ChangedKinds(current)
	if ok, _ := recorded.Match(current); !ok {
		kinds := recorded.Kinds()
		return nil, errs.E(errs.Invalid,
			"this agent's data was copied from another machine: of the hardware recorded when %s was set up (%s), %d of %d component kinds no longer match (%s), and at most %d may. "+
				"Run 'licet agent init' in a new directory on this machine; after a major hardware change on the same machine do the same (it gets a new client ID)",
			dir, joinKinds(kinds), len(changed), len(kinds), joinKinds(changed), len(kinds)-hwid.Required(len(kinds)))
	}
	return &Identity{
		Dir:             dir,
		Signer:          signer,
		Decrypter:       dec,
		ClientID:        ClientIDFor(signer.Public()),
		SystemID:        recorded.SystemID(),
		Platform:        cfg.Platform,
		ServerURL:       cfg.ServerURL,
		Hardware:        recorded,
		HardwareChanged: changed,
	}, nil
}

// fileError classifies a failure to read one identity file.
func fileError(err error, dir, name string) error {
	if errors.Is(err, fs.ErrNotExist) {
		return errs.Wrap(errs.NotFound, err, "the agent identity in %s is incomplete: %s is missing; remove the directory and run 'licet agent init' again", dir, name)
	}
	if errors.Is(err, fs.ErrPermission) {
		return errs.Wrap(errs.Internal, err, "cannot read %s in %s", name, dir)
	}
	return errs.Wrap(errs.Invalid, err, "%s in %s is damaged", name, dir)
}

func joinKinds(ks []hwid.Kind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

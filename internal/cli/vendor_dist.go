package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/licet/licet/api"
	"github.com/licet/licet/distribution/catalog"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/store"
)

// Software distribution, the vendor's commands (docs/distribution.md).

func vendorAppCommand() *command {
	return &command{name: "app", summary: "applications the vendor distributes", sub: []*command{
		leaf("add", "add an application", vendorAppAdd),
		leaf("list", "list applications", vendorDistList("app", "/v1/dist/apps", []string{"id", "name", "created"})),
	}}
}

func vendorReleaseCommand() *command {
	return &command{name: "release", summary: "releases of applications: upload, status, export for air-gapped sites", sub: []*command{
		leaf("add", "upload a release's artifacts and publish it", vendorReleaseAdd),
		leaf("list", "list releases", vendorDistList("release", "/v1/dist/releases", []string{"id", "app", "version", "channel", "created"})),
		leaf("status", "per customer: current and installed version, devices by status", vendorReleaseStatus),
		leaf("export", "write a customer's signed metadata and artifacts to a file for an air-gapped site", vendorReleaseExport),
		leaf("versions", "a customer's current and installed version of each application", vendorReleaseVersions),
		leaf("import-reports", "record an air-gapped site's signed file of device statuses", vendorReleaseImportReports),
		leaf("rotate-keys", "replace a TUF role's keys (and threshold) with a new signed root", vendorReleaseRotate),
	}}
}

func vendorBundleCommand() *command {
	return &command{name: "bundle", summary: "which release each group of a customer's devices gets", sub: []*command{
		leaf("add", "assign a release to a customer's device group and publish its signed metadata", vendorBundleAdd),
		leaf("list", "list bundles", vendorDistList("bundle", "/v1/dist/bundles", []string{"customer", "group", "app", "release", "updated", "rollout"})),
		leaf("advance", "let the next phase of a staged rollout's devices install", vendorRollout(catalog.ActionAdvance)),
		leaf("pause", "stop a staged rollout's new installs", vendorRollout(catalog.ActionPause)),
		leaf("resume", "resume a paused staged rollout", vendorRollout(catalog.ActionResume)),
		leaf("cancel", "end a staged rollout: no further installs", vendorRollout(catalog.ActionCancel)),
	}}
}

func vendorDistList(what, path string, cols []string) func(ctx context.Context, e *env, args []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		fs := flagSet(e, "licet vendor "+what+" list", "[--customer C] [--app A] [--json]", "Lists "+what+"s.")
		a := vendorAdmin(e, fs)
		customer := fs.String("customer", "", "only this customer's (bundles)")
		app := fs.String("app", "", "only this application's (releases)")
		if err := parse(fs, args, 0); err != nil {
			return err
		}
		q := url.Values{}
		if *customer != "" {
			q.Set("customer", *customer)
		}
		if *app != "" {
			q.Set("app", *app)
		}
		p := path
		if len(q) > 0 {
			p += "?" + q.Encode()
		}
		var rows []map[string]any
		if err := a.client(e).Get(ctx, p, &rows); err != nil {
			return err
		}
		if *a.json {
			return printJSON(e.stdout, rows)
		}
		var out [][]string
		for _, r := range rows {
			var line []string
			for _, c := range cols {
				line = append(line, fmt.Sprint(orDash(r[c])))
			}
			out = append(out, line)
		}
		table(e.stdout, cols, out)
		return nil
	}
}

func vendorAppAdd(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor app add", "--id ID [--name NAME]", "Adds an application whose releases the vendor distributes.")
	a := vendorAdmin(e, fs)
	var app catalog.App
	fs.StringVar(&app.ID, "id", "", "application ID (lower-case letters, digits, '.', '_', '-')")
	fs.StringVar(&app.Name, "name", "", "display name (default: the ID)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "id"); err != nil {
		return err
	}
	var out catalog.App
	if err := a.client(e).Post(ctx, "/v1/dist/apps", app, &out); err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "Added application %s (%s).\n", out.ID, out.Name)
	return nil
}

// uploadArtifact hashes a file as a stream, then uploads it chunk by chunk
// (skipping a blob the vendor has complete already).
func uploadArtifact(ctx context.Context, e *env, a adminFlags, platform, path string) (catalog.Artifact, error) {
	f, err := os.Open(path)
	if err != nil {
		return catalog.Artifact{}, errs.Wrap(errs.Usage, err, "--artifact %s=%s", platform, path)
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return catalog.Artifact{}, errs.Wrap(errs.Internal, err, "read %s", path)
	}
	if size == 0 {
		return catalog.Artifact{}, errs.E(errs.Usage, "--artifact %s=%s: the file is empty", platform, path)
	}
	sha := hex.EncodeToString(h.Sum(nil))
	art := catalog.Artifact{Platform: platform, Name: filepath.Base(path), Size: size, SHA256: sha}
	c := a.client(e)
	var st catalog.Blob
	if err := c.Get(ctx, "/v1/dist/blobs/"+sha+"/state", &st); err == nil && st.Complete {
		return art, nil
	}
	buf := make([]byte, catalog.ChunkSize)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return art, errs.Wrap(errs.Internal, err, "rewind %s", path)
	}
	hc := &http.Client{Timeout: 60 * time.Second}
	for idx := 0; ; idx++ {
		n, err := io.ReadFull(f, buf)
		if n == 0 {
			break
		}
		if err != nil && err != io.ErrUnexpectedEOF {
			return art, errs.Wrap(errs.Internal, err, "read %s", path)
		}
		req, rerr := http.NewRequestWithContext(ctx, http.MethodPut, fmt.Sprintf("%s/v1/dist/blobs/%s/chunks/%d", strings.TrimRight(c.BaseURL, "/"), sha, idx), bytes.NewReader(buf[:n]))
		if rerr != nil {
			return art, errs.Wrap(errs.Usage, rerr, "bad --server %q", c.BaseURL)
		}
		req.Header.Set("Authorization", "Bearer "+c.Token)
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, derr := hc.Do(req)
		if derr != nil {
			return art, errs.Wrap(errs.Internal, derr, "upload chunk %d of %s; run the command again to retry", idx, path)
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			return art, httpError(resp.StatusCode, msg)
		}
		if err == io.ErrUnexpectedEOF {
			break
		}
	}
	if err := c.Post(ctx, "/v1/dist/blobs/"+sha+"/commit", map[string]int64{"size": size}, &st); err != nil {
		return art, err
	}
	return art, nil
}

func httpError(status int, body []byte) error {
	var eb struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(body, &eb) == nil && eb.Error.Code != "" {
		return &errs.Error{Kind: errs.KindFromCode(eb.Error.Code), Message: eb.Error.Message}
	}
	return errs.E(errs.Internal, "server answered HTTP %d: %s", status, strings.TrimSpace(string(body)))
}

func vendorReleaseAdd(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor release add", "--app A --version V --artifact PLATFORM=FILE... [--channel C] [--notes TEXT | --notes-file F] [--id ID]",
		"Uploads each artifact (hashed as a stream, sent in chunks; a repeated run skips what the vendor\n"+
			"has) and records the release. Assign it to customers' device groups with 'licet vendor bundle add'.")
	a := vendorAdmin(e, fs)
	var rel catalog.Release
	fs.StringVar(&rel.App, "app", "", "application ID")
	fs.StringVar(&rel.Version, "version", "", "version, e.g. 2.1.0")
	fs.StringVar(&rel.Channel, "channel", "stable", "channel, e.g. stable or beta")
	fs.StringVar(&rel.ID, "id", "", "release ID (default APP-VERSION)")
	fs.StringVar(&rel.Notes, "notes", "", "release notes")
	notesFile := fs.String("notes-file", "", "read the release notes from this file")
	var arts listFlag
	fs.Var(&arts, "artifact", "PLATFORM=FILE, e.g. linux-amd64=dist/app (repeatable)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "app", "version"); err != nil {
		return err
	}
	if len(arts) == 0 {
		return errs.E(errs.Usage, "--artifact PLATFORM=FILE is required at least once")
	}
	if *notesFile != "" {
		b, err := os.ReadFile(*notesFile)
		if err != nil {
			return errs.Wrap(errs.Usage, err, "--notes-file")
		}
		rel.Notes = string(b)
	}
	for _, spec := range arts {
		platform, path, ok := strings.Cut(spec, "=")
		if !ok || platform == "" || path == "" {
			return errs.E(errs.Usage, "--artifact %q: give PLATFORM=FILE, e.g. linux-amd64=dist/app", spec)
		}
		art, err := uploadArtifact(ctx, e, a, platform, path)
		if err != nil {
			return err
		}
		rel.Artifacts = append(rel.Artifacts, art)
	}
	var out catalog.Release
	if err := a.client(e).Post(ctx, "/v1/dist/releases", rel, &out); err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "Released %s %s as %s (%d artifacts, channel %s).\n", out.App, out.Version, out.ID, len(out.Artifacts), out.Channel)
	return nil
}

func vendorBundleAdd(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor bundle add", "--customer C --group G (--release R | --channel C --app A) [--phases P,..,100 [--max-failures PCT]]",
		"Assigns release R to device group G of customer C (replacing the group's earlier release of\n"+
			"that application) and signs new metadata for the group. The customer's site fetches it on its\n"+
			"next sync; devices of other groups cannot install it.")
	a := vendorAdmin(e, fs)
	var b catalog.Bundle
	fs.StringVar(&b.Customer, "customer", "", "customer ID")
	fs.StringVar(&b.Group, "group", "", "the device group, as the site names it")
	fs.StringVar(&b.Release, "release", "", "release ID (APP-VERSION)")
	fs.StringVar(&b.Channel, "channel", "", "follow this release channel: newer releases of --app on it replace the bundle's")
	fs.StringVar(&b.App, "app", "", "with --channel and no --release: the application whose newest release on the channel to bundle")
	phases := fs.String("phases", "", "stage the rollout: percentages of the group's devices per phase, e.g. 10,50,100 ('licet vendor bundle advance' moves on)")
	maxFail := fs.Int("max-failures", 10, "with --phases: the rollout pauses when more than this percentage of the devices that reported failed")
	auto := fs.Int("auto-advance", 0, "with --phases: advance by itself once this percentage of the phase's devices (as the sites count them) confirmed the install; 0: advance by hand")
	by := fs.String("by", "devices", "with --phases: stage by devices (each device's place) or sites (all devices of a site together)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "customer", "group"); err != nil {
		return err
	}
	if b.Release == "" && (b.Channel == "" || b.App == "") {
		return errs.E(errs.Usage, "give --release R, or --channel C --app A to follow a channel")
	}
	if *phases != "" {
		r := &catalog.Rollout{MaxFailures: *maxFail, By: *by, AutoAdvance: *auto}
		for _, p := range strings.Split(*phases, ",") {
			var n int
			if _, err := fmt.Sscanf(strings.TrimSpace(p), "%d", &n); err != nil {
				return errs.E(errs.Usage, "--phases %q: give percentages separated by commas, e.g. 10,50,100", *phases)
			}
			r.Phases = append(r.Phases, n)
		}
		b.Rollout = r
	}
	var out catalog.Bundle
	if err := a.client(e).Post(ctx, "/v1/dist/bundles", b, &out); err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "Group %s of %s now gets %s%s.\n", out.Group, out.Customer, out.Release, rolloutText(out.Rollout))
	return nil
}

func rolloutText(r *catalog.Rollout) string {
	if r == nil {
		return ""
	}
	s := fmt.Sprintf(" (staged rollout %s: phase %d of %d, %d%% of the devices", r.State, r.Phase+1, len(r.Phases), r.Percent())
	if r.Reason != "" {
		s += "; " + r.Reason
	}
	return s + ")"
}

func vendorRollout(action string) func(ctx context.Context, e *env, args []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		fs := flagSet(e, "licet vendor bundle "+action, "--customer C --group G --app A [--json]",
			"Changes a staged rollout ('licet vendor bundle add --phases'): advance lets the next phase's\n"+
				"share of devices install, pause stops new installs, resume undoes a pause (also one the error\n"+
				"threshold made), cancel ends the rollout. The group's metadata is signed again.")
		a := vendorAdmin(e, fs)
		customer := fs.String("customer", "", "customer ID")
		group := fs.String("group", "", "device group")
		app := fs.String("app", "", "application ID")
		if err := parse(fs, args, 0); err != nil {
			return err
		}
		if err := required(fs, "customer", "group", "app"); err != nil {
			return err
		}
		var out catalog.Bundle
		if err := a.client(e).Post(ctx, "/v1/dist/bundles/rollout", map[string]string{"customer": *customer, "group": *group, "app": *app, "action": action}, &out); err != nil {
			return err
		}
		if *a.json {
			return printJSON(e.stdout, out)
		}
		fmt.Fprintf(e.stdout, "Group %s of %s: %s%s.\n", out.Group, out.Customer, out.Release, rolloutText(out.Rollout))
		return nil
	}
}

func printVersions(e *env, vs []catalog.CustomerVersion) {
	var rows [][]string
	for _, v := range vs {
		var devs []string
		for _, s := range catalog.Statuses {
			if n := v.Devices[s]; n > 0 {
				devs = append(devs, fmt.Sprintf("%s=%d", s, n))
			}
		}
		rows = append(rows, []string{v.Customer, v.App, distDash(v.Current), distDash(v.Installed), fmt.Sprint(v.UpToDate), distDash(strings.Join(devs, " "))})
	}
	table(e.stdout, []string{"customer", "app", "current", "installed", "up_to_date", "devices"}, rows)
}

func distDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func vendorReleaseStatus(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor release status", "--release R [--json]",
		"For each customer whose bundles carry release R: the current and the confirmed installed\nversion of its application, and the customer's devices by status for this release.")
	a := vendorAdmin(e, fs)
	id := fs.String("release", "", "release ID")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "release"); err != nil {
		return err
	}
	var vs []catalog.CustomerVersion
	if err := a.client(e).Get(ctx, "/v1/dist/releases/"+url.PathEscape(*id)+"/status", &vs); err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, vs)
	}
	printVersions(e, vs)
	return nil
}

func vendorReleaseVersions(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor release versions", "--customer C [--json]",
		"The customer's current version (what its bundles carry) and installed version (the last one a\ndevice confirmed) of each application.")
	a := vendorAdmin(e, fs)
	customer := fs.String("customer", "", "customer ID")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "customer"); err != nil {
		return err
	}
	var vs []catalog.CustomerVersion
	if err := a.client(e).Get(ctx, "/v1/dist/customers/"+url.PathEscape(*customer)+"/versions", &vs); err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, vs)
	}
	printVersions(e, vs)
	return nil
}

func vendorReleaseRotate(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor release rotate-keys", "--role root|targets|snapshot|timestamp [--threshold N]",
		"Moves a TUF role to new keys by signing a new root version (for the root role, with the old and\n"+
			"the new keys). Devices follow on their next check and refuse metadata signed by the retired keys.")
	a := vendorAdmin(e, fs)
	role := fs.String("role", "", "the role whose keys to replace")
	threshold := fs.Int("threshold", 1, "signatures the role needs from now on")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "role"); err != nil {
		return err
	}
	var out map[string]any
	if err := a.client(e).Post(ctx, "/v1/dist/keys/rotate", map[string]any{"role": *role, "threshold": *threshold}, &out); err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "Role %s has new keys (threshold %d); root metadata is at version %v.\n", *role, *threshold, out["root_version"])
	return nil
}

func vendorReleaseExport(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor release export", "--customer C -o FILE [--valid-for DURATION]",
		"Writes the customer's signed metadata (every group's bundle) and the artifacts they name to FILE,\n"+
			"for an air-gapped site ('licet site update import FILE'), which checks it as an online sync would.\n"+
			"The timestamps in it stay valid for --valid-for: the time the file may take to be imported.")
	a := vendorAdmin(e, fs)
	customer := fs.String("customer", "", "customer ID")
	out := fs.String("o", "", "the file to write")
	valid := fs.Duration("valid-for", 30*24*time.Hour, "how long the file's metadata stays valid")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "customer", "o"); err != nil {
		return err
	}
	c := a.client(e)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.BaseURL, "/")+"/v1/dist/customers/"+url.PathEscape(*customer)+"/export?valid_for="+valid.String(), nil)
	if err != nil {
		return errs.Wrap(errs.Usage, err, "bad --server %q", c.BaseURL)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "cannot reach %s; is the server running?", c.BaseURL)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return httpError(resp.StatusCode, msg)
	}
	tmp := *out + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return errs.Wrap(errs.Usage, err, "-o %s", *out)
	}
	n, err := io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return errs.Wrap(errs.Internal, err, "download the export file")
	}
	if err := os.Rename(tmp, *out); err != nil {
		return errs.Wrap(errs.Internal, err, "write %s", *out)
	}
	fmt.Fprintf(e.stderr, "Wrote the export file for %s to %s (%d bytes).\n", *customer, *out, n)
	return nil
}

func vendorReleaseImportReports(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor release import-reports", "FILE",
		"Records the device statuses in a file an air-gapped site wrote ('licet site update\n"+
			"export-reports'), after checking the site's signature and certificate; the customer is the\n"+
			"one the site certificate names. Importing a file twice changes nothing.")
	a := vendorAdmin(e, fs)
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	body, err := readInput(fs.Arg(0))
	if err != nil {
		return err
	}
	var out struct {
		Customer string `json:"customer"`
		Site     string `json:"site"`
		Recorded int    `json:"recorded"`
	}
	if err := a.client(e).Post(ctx, "/v1/dist/reports/import", body, &out); err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "Recorded %d device statuses of %s (site %s).\n", out.Recorded, out.Customer, out.Site)
	return nil
}

// prepareDistribution readies software distribution of the vendor data
// directory dir to run without the root key, while the root key is still in
// dir: it certifies the distribution key if dir has none and moves update
// role keys derived from the root key to it (catalog.Service.CheckKeys). It
// does nothing once the root key is gone.
func prepareDistribution(ctx context.Context, dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "root.key")); err != nil {
		return nil // exported already: ExportRoot says so
	}
	svc, err := clearinghouse.Open(ctx, dir, "", store.OpenVendor)
	if err != nil {
		return err
	}
	defer svc.Close()
	cat, err := api.DistCatalog(svc, dir)
	if err == nil {
		err = cat.CheckKeys(ctx)
	}
	if err != nil {
		return errs.Wrap(errs.KindOf(err), err, "software distribution is not ready to run without the root key; nothing was exported")
	}
	return nil
}

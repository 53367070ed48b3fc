package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/licet/licet/distribution/blobstore"
	"github.com/licet/licet/distribution/catalog"
	"github.com/licet/licet/distribution/mirror"
	"github.com/licet/licet/distribution/siteauth"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/pki"
)

// Distribution API (docs/distribution.md).
//
// Vendor, admin token:
//
//	POST /v1/dist/apps                          add an application
//	GET  /v1/dist/apps                          list applications
//	PUT  /v1/dist/blobs/{sha256}/chunks/{idx}   upload one chunk (catalog.ChunkSize bytes but the last)
//	POST /v1/dist/blobs/{sha256}/commit         {"size": N}: hash the chunks and mark the blob complete
//	POST /v1/dist/releases                      add a release (catalog.Release)
//	GET  /v1/dist/releases[?app=A]              list releases
//	GET  /v1/dist/releases/{id}/status          per customer: current, installed, devices by status
//	POST /v1/dist/bundles                       assign a release to a customer's group, publish its metadata
//	POST /v1/dist/bundles/rollout               {"customer","group","app","action"}: advance, pause, resume or cancel a staged rollout
//	GET  /v1/dist/bundles[?customer=C]          list bundles
//	GET  /v1/dist/customers/{id}/versions       current and installed versions of a customer
//	GET  /v1/dist/customers/{id}/export[?valid_for=720h]  the export file of an air-gapped site
//	POST /v1/dist/reports/import                a site's signed reports file (air-gapped sites)
//	POST /v1/dist/keys/rotate                   {"role": R, "threshold": N}: new keys, new root version
//
// Vendor, signed by a certified site (package siteauth), for its own customer:
//
//	GET  /v1/dist/sync[?devices=G:N,…]          the sync payload (catalog.Payload); the site's device counts per group
//	GET  /v1/dist/blobs/{sha256}                an artifact of the customer's bundles; Range honoured
//	POST /v1/dist/reports                       device statuses ([]catalog.Status)
//
// Site, device token (Authorization: Bearer licetdev_…), its own group only:
//
//	GET  /v1/update/whoami                      the device, its group and customer
//	GET  /v1/update/anchor                      root metadata version 1, the distribution key's signature of it and its certificate
//	GET  /v1/update/roots/{version}             root metadata
//	GET  /v1/update/groups/{group}/timestamp    the update check
//	GET  /v1/update/groups/{group}/snapshot/{version}
//	GET  /v1/update/groups/{group}/targets/{version}
//	GET  /v1/update/groups/{group}/blobs/{sha256}   an artifact of the group's bundle; Range honoured
//	POST /v1/update/reports                     a status: {"app","version","status","log"}

// DistCatalog wires the vendor's distribution catalogue to the clearinghouse
// and the vendor data directory dir: its store, the distribution key of dir
// (made and certified by the root if dir has none and the root key is
// present, see catalog.Authority), which anchors the metadata and whose seed
// derives the TUF role keys, and the root key's seed while the root key is
// present, for role keys made before the distribution key existed.
func DistCatalog(svc *clearinghouse.Service, dir string) (*catalog.Service, error) {
	st, ok := svc.Store.(catalog.Store)
	if !ok {
		return nil, errs.E(errs.Internal, "the vendor store does not keep distribution data")
	}
	dist, err := catalog.Authority(dir, svc.Root, svc.Config.VendorName, svc.Now())
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "software distribution needs its key")
	}
	cat := &catalog.Service{
		Store: st, Secret: dist.Signer.Private().Seed(), Anchor: catalog.SignAnchor(dist),
		CustomerExists: func(ctx context.Context, id string) error { _, err := svc.Store.Customer(ctx, id); return err },
		Expiries:       catalog.DefaultExpiries, Now: svc.Now,
	}
	if svc.Root.Signer != nil {
		cat.LegacySecret = svc.Root.Signer.Private().Seed()
	}
	return cat, nil
}

// DistMirror wires a certified site's distribution mirror: artifacts under
// DATA/dist/blobs, the vendor reached with the site's certified key.
func DistMirror(srv *licenseserver.Server) (*mirror.Service, error) {
	st, ok := srv.Store.(mirror.Store)
	if !ok {
		return nil, errs.E(errs.Internal, "the site store does not keep distribution data")
	}
	cert := srv.ID.Certificate()
	if cert == nil {
		return nil, errs.E(errs.Invalid, "this site is not certified yet: enroll it or install its certificate ('licet site cert install') before distributing software")
	}
	now := srv.Now
	if now == nil {
		now = time.Now
	}
	return &mirror.Service{
		Store: st, Blobs: blobstore.Dir(filepath.Join(srv.ID.Dir, "dist", "blobs")),
		Customer: cert.Site.CustomerID, SiteID: srv.ID.SiteID, VendorRoot: cert.Root, Now: now,
		Vendor: &mirror.Vendor{URL: srv.ID.Config.VendorURL, Signer: srv.ID.Signer, CurrentChain: srv.ID.SiteChain, HTTP: &http.Client{}, Now: now},
	}, nil
}

// noDeadline lifts the server's write timeout for a long stream.
func noDeadline(w http.ResponseWriter) {
	http.NewResponseController(w).SetWriteDeadline(time.Time{})
}

// byteRange parses a single "bytes=START-[END]" range within size.
func byteRange(h string, size int64) (start, end int64, ok bool) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false
	}
	a, b, _ := strings.Cut(spec, "-")
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 || start >= size {
		return 0, 0, false
	}
	end = size - 1
	if b != "" {
		if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
			return 0, 0, false
		}
		end = min(end, size-1)
	}
	return start, end, true
}

// limitWriter stops writing after n bytes.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.w.Write(p)
	l.n -= int64(n)
	if err == nil && l.n == 0 {
		return n, errStopWrite
	}
	return n, err
}

var errStopWrite = errs.E(errs.Internal, "range complete")

// AddDistributionVendorRoutes adds the vendor's distribution API over cat
// (DistCatalog) to s; svc checks the sites' signatures.
func AddDistributionVendorRoutes(s *Server, svc *clearinghouse.Service, cat *catalog.Service) {
	site := func(r *http.Request, body []byte) (*pki.Site, error) {
		return siteauth.Verify(r, body, svc.Root.Cert, svc.Now())
	}
	s.Admin("POST /v1/dist/apps", func(w http.ResponseWriter, r *http.Request) error {
		var a catalog.App
		if err := readJSON(r, &a); err != nil {
			return err
		}
		if err := cat.AddApp(r.Context(), &a); err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, a)
		return nil
	})
	s.Admin("GET /v1/dist/apps", func(w http.ResponseWriter, r *http.Request) error {
		as, err := cat.Store.DistApps(r.Context())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, as)
		return nil
	})
	s.Admin("PUT /v1/dist/blobs/{sha}/chunks/{idx}", func(w http.ResponseWriter, r *http.Request) error {
		idx, err := strconv.ParseInt(r.PathValue("idx"), 10, 64)
		if err != nil {
			return errs.E(errs.Invalid, "chunk index %q is not a number", r.PathValue("idx"))
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, catalog.ChunkSize+1))
		if err != nil {
			return bodyError(err, "could not read the chunk")
		}
		if err := cat.PutChunk(r.Context(), r.PathValue("sha"), idx, body); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	s.Admin("POST /v1/dist/blobs/{sha}/commit", func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Size int64 `json:"size"`
		}
		if err := readJSON(r, &req); err != nil {
			return err
		}
		b, err := cat.CommitBlob(r.Context(), r.PathValue("sha"), req.Size)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, b)
		return nil
	})
	s.Admin("GET /v1/dist/blobs/{sha}/state", func(w http.ResponseWriter, r *http.Request) error {
		b, err := cat.Store.DistBlob(r.Context(), r.PathValue("sha"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, b)
		return nil
	})
	s.Admin("POST /v1/dist/releases", func(w http.ResponseWriter, r *http.Request) error {
		var rel catalog.Release
		if err := readJSON(r, &rel); err != nil {
			return err
		}
		if err := cat.AddRelease(r.Context(), &rel); err != nil {
			return err
		}
		s.Log.Info("release added", "release", rel.ID, "by", caller(r))
		writeJSON(w, http.StatusCreated, rel)
		return nil
	})
	s.Admin("GET /v1/dist/releases", func(w http.ResponseWriter, r *http.Request) error {
		rs, err := cat.Store.DistReleases(r.Context(), r.URL.Query().Get("app"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, rs)
		return nil
	})
	s.Admin("GET /v1/dist/releases/{id}/status", func(w http.ResponseWriter, r *http.Request) error {
		st, err := cat.ReleaseStatus(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, st)
		return nil
	})
	s.Admin("POST /v1/dist/bundles", func(w http.ResponseWriter, r *http.Request) error {
		var b catalog.Bundle
		if err := readJSON(r, &b); err != nil {
			return err
		}
		if _, err := cat.AddBundle(r.Context(), &b); err != nil {
			return err
		}
		s.Log.Info("bundle set", "customer", b.Customer, "group", b.Group, "release", b.Release, "by", caller(r))
		writeJSON(w, http.StatusCreated, b)
		return nil
	})
	s.Admin("POST /v1/dist/bundles/rollout", func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Customer string `json:"customer"`
			Group    string `json:"group"`
			App      string `json:"app"`
			Action   string `json:"action"`
		}
		if err := readJSON(r, &req); err != nil {
			return err
		}
		b, err := cat.RolloutAction(r.Context(), req.Customer, req.Group, req.App, req.Action)
		if err != nil {
			return err
		}
		s.Log.Info("rollout "+req.Action, "customer", b.Customer, "group", b.Group, "release", b.Release, "by", caller(r))
		writeJSON(w, http.StatusOK, b)
		return nil
	})
	s.Admin("GET /v1/dist/bundles", func(w http.ResponseWriter, r *http.Request) error {
		bs, err := cat.Store.DistBundles(r.Context(), r.URL.Query().Get("customer"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, bs)
		return nil
	})
	s.Admin("GET /v1/dist/customers/{id}/versions", func(w http.ResponseWriter, r *http.Request) error {
		vs, err := cat.Versions(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, vs)
		return nil
	})
	s.Admin("POST /v1/dist/keys/rotate", func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Role      string `json:"role"`
			Threshold int    `json:"threshold"`
		}
		if err := readJSON(r, &req); err != nil {
			return err
		}
		if req.Threshold == 0 {
			req.Threshold = 1
		}
		rec, err := cat.Rotate(r.Context(), req.Role, req.Threshold)
		if err != nil {
			return err
		}
		s.Log.Info("distribution keys rotated", "role", req.Role, "root_version", rec.Version, "by", caller(r))
		writeJSON(w, http.StatusOK, map[string]any{"root_version": rec.Version, "keyring": rec.Keyring})
		return nil
	})
	s.Admin("GET /v1/dist/customers/{id}/export", func(w http.ResponseWriter, r *http.Request) error {
		valid := 30 * 24 * time.Hour
		if v := r.URL.Query().Get("valid_for"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < time.Hour || d > 366*24*time.Hour {
				return errs.E(errs.Invalid, "valid_for %q: give a duration from 1h to 8784h", v)
			}
			valid = d
		}
		noDeadline(w)
		w.Header().Set("Content-Type", "application/x-tar")
		return cat.Export(r.Context(), r.PathValue("id"), valid, w)
	})
	s.Admin("POST /v1/dist/reports/import", func(w http.ResponseWriter, r *http.Request) error {
		body, err := readBody(r)
		if err != nil {
			return err
		}
		st, payload, err := siteauth.VerifyFile(body, svc.Root.Cert, svc.Now())
		if err != nil {
			return err
		}
		var sts []*catalog.Status
		if err := json.Unmarshal(payload, &sts); err != nil {
			return errs.Wrap(errs.Invalid, err, "the reports file's payload is not a list of statuses")
		}
		if err := cat.RecordStatus(r.Context(), st.CustomerID, st.SiteID, sts); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"customer": st.CustomerID, "site": st.SiteID, "recorded": len(sts)})
		return nil
	})
	s.Public("GET /v1/dist/sync", func(w http.ResponseWriter, r *http.Request) error {
		st, err := site(r, nil)
		if err != nil {
			return err
		}
		if q := r.URL.Query().Get("devices"); q != "" {
			counts, err := parseDeviceCounts(q)
			if err != nil {
				return err
			}
			if err := cat.SiteDevices(r.Context(), st.CustomerID, st.SiteID, counts); err != nil {
				return err
			}
		}
		p, err := cat.Payload(r.Context(), st.CustomerID, cat.Expiries.Timestamp)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, p)
		return nil
	})
	s.Public("GET /v1/dist/blobs/{sha}", func(w http.ResponseWriter, r *http.Request) error {
		st, err := site(r, nil)
		if err != nil {
			return err
		}
		b, err := cat.CustomerBlob(r.Context(), st.CustomerID, r.PathValue("sha"))
		if err != nil {
			return err
		}
		noDeadline(w)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Accept-Ranges", "bytes")
		start, end := int64(0), b.Size-1
		if rs, re, ok := byteRange(r.Header.Get("Range"), b.Size); ok {
			start, end = rs, re
			w.Header().Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(end, 10)+"/"+strconv.FormatInt(b.Size, 10))
			w.Header().Set("Content-Length", strconv.FormatInt(end-start+1, 10))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", strconv.FormatInt(b.Size, 10))
		}
		err = cat.WriteBlob(r.Context(), &limitWriter{w: w, n: end - start + 1}, b, start)
		if err != nil && err != errStopWrite {
			s.Log.Warn("blob stream ended early", "sha256", b.SHA256, "err", err)
		}
		return nil
	})
	s.Public("POST /v1/dist/reports", func(w http.ResponseWriter, r *http.Request) error {
		body, err := readBody(r)
		if err != nil {
			return err
		}
		st, err := site(r, body)
		if err != nil {
			return err
		}
		var sts []*catalog.Status
		if err := json.Unmarshal(body, &sts); err != nil {
			return errs.Wrap(errs.Invalid, err, "reports: the body must be a JSON array of statuses")
		}
		if err := cat.RecordStatus(r.Context(), st.CustomerID, st.SiteID, sts); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]int{"recorded": len(sts)})
		return nil
	})
}

// parseDeviceCounts reads a site's "GROUP:N,GROUP:N" device counts.
func parseDeviceCounts(q string) (map[string]int, error) {
	out := map[string]int{}
	for _, kv := range strings.Split(q, ",") {
		g, n, ok := strings.Cut(kv, ":")
		c, err := strconv.Atoi(n)
		if !ok || err != nil {
			return nil, errs.E(errs.Invalid, "devices %q: give GROUP:COUNT pairs separated by commas", q)
		}
		out[g] = c
	}
	return out, nil
}

// AnchorResponse is the answer of GET /v1/update/anchor.
type AnchorResponse struct {
	Root   []byte `json:"root"`   // root metadata version 1
	Anchor []byte `json:"anchor"` // the distribution key's signature of catalog.AnchorMessage(Root)
	// Chain is the distribution certificate (DER), issued by the vendor
	// root; empty when Anchor is the vendor root key's own signature (a site
	// that first synced from licet before the distribution key existed).
	Chain [][]byte `json:"chain,omitempty"`
}

// WhoAmI is the answer of GET /v1/update/whoami.
type WhoAmI struct {
	Device   string `json:"device"`
	Group    string `json:"group"`
	Customer string `json:"customer"`
	Site     string `json:"site"` // the site's ID (staged rollouts by site)
}

// AddDistributionSiteRoutes adds the device update routes to a site server
// over m (exported for benchmarks that build a site in-process).
func AddDistributionSiteRoutes(s *Server, m *mirror.Service) {
	device := func(r *http.Request) (*mirror.Device, error) {
		tok, ok := bearerToken(r)
		if !ok {
			return nil, errs.E(errs.Unauthenticated, "this call needs the device token: send 'Authorization: Bearer licetdev_…' (from 'licet site device add')")
		}
		return m.Authenticate(r.Context(), tok)
	}
	inGroup := func(r *http.Request) (*mirror.Device, error) {
		d, err := device(r)
		if err != nil {
			return nil, err
		}
		return d, mirror.CheckGroup(d, r.PathValue("group"))
	}
	version := func(r *http.Request) (int64, error) {
		v, err := strconv.ParseInt(r.PathValue("version"), 10, 64)
		if err != nil || v < 1 {
			return 0, errs.E(errs.Invalid, "version %q is not a positive number", r.PathValue("version"))
		}
		return v, nil
	}
	writeMeta := func(w http.ResponseWriter, body []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(body)
	}
	s.Public("GET /v1/update/whoami", func(w http.ResponseWriter, r *http.Request) error {
		d, err := device(r)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, WhoAmI{Device: d.Name, Group: d.Group, Customer: m.Customer, Site: m.SiteID})
		return nil
	})
	s.Public("GET /v1/update/anchor", func(w http.ResponseWriter, r *http.Request) error {
		if _, err := device(r); err != nil {
			return err
		}
		root, anchor, err := m.Anchor(r.Context())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, AnchorResponse{Root: root, Anchor: anchor.Signature, Chain: anchor.Chain})
		return nil
	})
	s.Public("GET /v1/update/roots/{version}", func(w http.ResponseWriter, r *http.Request) error {
		if _, err := device(r); err != nil {
			return err
		}
		v, err := version(r)
		if err != nil {
			return err
		}
		body, err := m.Root(r.Context(), v)
		if err != nil {
			return err
		}
		writeMeta(w, body)
		return nil
	})
	s.Public("GET /v1/update/groups/{group}/timestamp", func(w http.ResponseWriter, r *http.Request) error {
		if _, err := inGroup(r); err != nil {
			return err
		}
		body, err := m.Timestamp(r.Context(), r.PathValue("group"))
		if err != nil {
			return err
		}
		writeMeta(w, body)
		return nil
	})
	for _, role := range []string{"snapshot", "targets"} {
		s.Public("GET /v1/update/groups/{group}/"+role+"/{version}", func(w http.ResponseWriter, r *http.Request) error {
			if _, err := inGroup(r); err != nil {
				return err
			}
			v, err := version(r)
			if err != nil {
				return err
			}
			body, err := m.Meta(r.Context(), r.PathValue("group"), role, v)
			if err != nil {
				return err
			}
			writeMeta(w, body)
			return nil
		})
	}
	s.Public("GET /v1/update/groups/{group}/blobs/{sha}", func(w http.ResponseWriter, r *http.Request) error {
		if _, err := inGroup(r); err != nil {
			return err
		}
		path, err := m.BlobPath(r.Context(), r.PathValue("group"), r.PathValue("sha"))
		if err != nil {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return errs.E(errs.NotFound, "artifact %s is not at this site yet: the site is still fetching it; retry after 'licet site update sync'", r.PathValue("sha"))
		}
		defer f.Close()
		noDeadline(w)
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", time.Time{}, f)
		return nil
	})
	s.Public("POST /v1/update/reports", func(w http.ResponseWriter, r *http.Request) error {
		d, err := device(r)
		if err != nil {
			return err
		}
		var rep mirror.Report
		if err := readJSON(r, &rep); err != nil {
			return err
		}
		if err := m.Report(r.Context(), d, &rep); err != nil {
			return err
		}
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "queued"})
		return nil
	})
}

func addDistributionSiteRoutes(s *Server, srv *licenseserver.Server) {
	m, err := DistMirror(srv)
	if err != nil {
		s.Public("/v1/update/", func(w http.ResponseWriter, r *http.Request) error { return err })
		return
	}
	AddDistributionSiteRoutes(s, m)
}

package catalog

import (
	"archive/tar"
	"context"
	"encoding/json"
	"io"
	"slices"
	"time"

	"github.com/licet/licet/distribution/tufmeta"
	"github.com/licet/licet/errs"
)

// PayloadFormat is the version of the sync payload and export file format.
const PayloadFormat = 1

// Payload is what a site receives from the vendor, online (GET
// /v1/dist/sync) or in an export file: every root version, each group's
// current timestamp, snapshot and targets metadata, and the blobs those
// targets name. Nothing in it is trusted until tufmeta.Refresh accepts it.
type Payload struct {
	Format   int       `json:"format"`
	Customer string    `json:"customer"`
	Created  time.Time `json:"created"`
	Anchor   []byte    `json:"anchor"` // the distribution key's signature of AnchorMessage(Roots[0]) (Anchor.Signature)
	// AnchorChain is the distribution certificate (DER, Anchor.Chain); empty
	// when Anchor is the vendor root key's own signature (licet before the
	// distribution key).
	AnchorChain [][]byte    `json:"anchor_chain,omitempty"`
	Roots       [][]byte    `json:"roots"` // root metadata, version 1 first
	Groups      []GroupMeta `json:"groups"`
	Blobs       []Blob      `json:"blobs"` // the artifacts the groups' targets name
}

// GroupMeta is one group's current metadata.
type GroupMeta struct {
	Group     string `json:"group"`
	Timestamp []byte `json:"timestamp"`
	Snapshot  []byte `json:"snapshot"`
	Targets   []byte `json:"targets"`
}

// Payload assembles the sync payload of a customer, with timestamps valid
// for at least half of tsValid.
func (s *Service) Payload(ctx context.Context, customer string, tsValid time.Duration) (*Payload, error) {
	roots, err := s.Roots(ctx)
	if err != nil {
		return nil, err
	}
	p := &Payload{Format: PayloadFormat, Customer: customer, Created: s.now(), Groups: []GroupMeta{}, Blobs: []Blob{}}
	for _, r := range roots {
		p.Roots = append(p.Roots, r.Body)
	}
	if s.Anchor != nil {
		a := s.Anchor(AnchorMessage(roots[0].Body))
		p.Anchor, p.AnchorChain = a.Signature, a.Chain
	}
	bundles, err := s.Store.DistBundles(ctx, customer)
	if err != nil {
		return nil, err
	}
	var groups []string
	seen := map[string]bool{}
	for _, b := range bundles {
		if !slices.Contains(groups, b.Group) {
			groups = append(groups, b.Group)
		}
		rel, err := s.Store.DistRelease(ctx, b.Release)
		if err != nil {
			return nil, err
		}
		for _, a := range rel.Artifacts {
			if !seen[a.SHA256] {
				seen[a.SHA256] = true
				p.Blobs = append(p.Blobs, Blob{SHA256: a.SHA256, Size: a.Size, Complete: true})
			}
		}
	}
	for _, g := range groups {
		ts, snap, tg, err := s.Fresh(ctx, customer, g, tsValid)
		if err != nil {
			return nil, err
		}
		p.Groups = append(p.Groups, GroupMeta{Group: g, Timestamp: ts.Body, Snapshot: snap.Body, Targets: tg.Body})
	}
	return p, nil
}

// CustomerBlob returns a blob if one of the customer's bundles names it, and
// Forbidden otherwise: a site fetches its own customer's artifacts only.
func (s *Service) CustomerBlob(ctx context.Context, customer, sha string) (*Blob, error) {
	if err := CheckSHA256("sha256", sha); err != nil {
		return nil, err
	}
	bundles, err := s.Store.DistBundles(ctx, customer)
	if err != nil {
		return nil, err
	}
	for _, b := range bundles {
		rel, err := s.Store.DistRelease(ctx, b.Release)
		if err != nil {
			return nil, err
		}
		for _, a := range rel.Artifacts {
			if a.SHA256 == sha {
				return s.Store.DistBlob(ctx, sha)
			}
		}
	}
	return nil, errs.E(errs.Forbidden, "blob %s is in none of customer %s's bundles", sha, customer)
}

// WriteBlob writes a stored blob from byte offset from on, chunk by chunk.
func (s *Service) WriteBlob(ctx context.Context, w io.Writer, b *Blob, from int64) error {
	if from < 0 || from > b.Size {
		return errs.E(errs.Invalid, "offset %d is outside blob %s of %d bytes", from, b.SHA256, b.Size)
	}
	return s.Store.DistChunks(ctx, b.SHA256, from/ChunkSize, func(idx int64, data []byte) error {
		if off := idx * ChunkSize; off < from {
			data = data[from-off:]
		}
		_, err := w.Write(data)
		return err
	})
}

// Export writes a customer's payload and blobs as a tar file for an
// air-gapped site: payload.json first, then blobs/SHA256 for each blob.
// Its timestamps are valid for validFor, the time the file may take to
// reach the site and be imported.
func (s *Service) Export(ctx context.Context, customer string, validFor time.Duration, w io.Writer) error {
	if s.CustomerExists != nil {
		if err := s.CustomerExists(ctx, customer); err != nil {
			return err
		}
	}
	// Metadata for an export is signed fresh with the requested validity.
	bundles, err := s.Store.DistBundles(ctx, customer)
	if err != nil {
		return err
	}
	done := map[string]bool{}
	for _, b := range bundles {
		if !done[b.Group] {
			done[b.Group] = true
			if _, err := s.Publish(ctx, customer, b.Group, validFor); err != nil {
				return err
			}
		}
	}
	p, err := s.Payload(ctx, customer, validFor)
	if err != nil {
		return err
	}
	body, err := json.Marshal(p)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "encode payload")
	}
	tw := tar.NewWriter(w)
	hdr := &tar.Header{Name: "payload.json", Mode: 0o644, Size: int64(len(body)), ModTime: p.Created, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return errs.Wrap(errs.Internal, err, "write export")
	}
	if _, err := tw.Write(body); err != nil {
		return errs.Wrap(errs.Internal, err, "write export")
	}
	for _, b := range p.Blobs {
		if err := tw.WriteHeader(&tar.Header{Name: "blobs/" + b.SHA256, Mode: 0o644, Size: b.Size, ModTime: p.Created, Format: tar.FormatPAX}); err != nil {
			return errs.Wrap(errs.Internal, err, "write export")
		}
		if err := s.WriteBlob(ctx, tw, &b, 0); err != nil {
			return err
		}
	}
	return tw.Close()
}

// Scope returns the tufmeta scope of a customer's group.
func Scope(customer, group string) tufmeta.Scope {
	return tufmeta.Scope{Customer: customer, Group: group}
}

// ReleaseStatus reports, for every customer with a bundle naming the
// release, the current and installed versions of its application and the
// devices by status for this release's version.
func (s *Service) ReleaseStatus(ctx context.Context, id string) ([]*CustomerVersion, error) {
	rel, err := s.Store.DistRelease(ctx, id)
	if err != nil {
		return nil, err
	}
	bundles, err := s.Store.DistBundles(ctx, "")
	if err != nil {
		return nil, err
	}
	out := []*CustomerVersion{}
	seen := map[string]bool{}
	for _, b := range bundles {
		if b.Release != id || seen[b.Customer] {
			continue
		}
		seen[b.Customer] = true
		vs, err := s.Versions(ctx, b.Customer)
		if err != nil {
			return nil, err
		}
		sts, err := s.Store.DistStatuses(ctx, b.Customer)
		if err != nil {
			return nil, err
		}
		for _, v := range vs {
			if v.App != rel.App {
				continue
			}
			v.Devices = map[string]int{}
			for _, st := range sts {
				if st.App == rel.App && st.Version == rel.Version {
					v.Devices[st.Status]++
				}
			}
			out = append(out, v)
		}
	}
	return out, nil
}

// Source serves one group's metadata of a payload to tufmeta.Refresh.
func (p *Payload) Source(g GroupMeta) tufmeta.Source { return payloadSource{p, g} }

type payloadSource struct {
	p *Payload
	g GroupMeta
}

func (s payloadSource) Root(_ context.Context, v int64) ([]byte, error) {
	if v < 1 || int(v) > len(s.p.Roots) {
		return nil, errs.E(errs.NotFound, "no root metadata version %d", v)
	}
	return s.p.Roots[v-1], nil
}
func (s payloadSource) Timestamp(context.Context) ([]byte, error)       { return s.g.Timestamp, nil }
func (s payloadSource) Snapshot(context.Context, int64) ([]byte, error) { return s.g.Snapshot, nil }
func (s payloadSource) Targets(context.Context, int64) ([]byte, error)  { return s.g.Targets, nil }

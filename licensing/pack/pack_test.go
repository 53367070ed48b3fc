package pack_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/canonjson"
	"github.com/licet/licet/envelope"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/pack"
	"github.com/licet/licet/pki"
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// world is a vendor (root and clearinghouse) and two certified sites.
type world struct {
	root  *pki.Authority
	ch    *keys.Signer
	chDER []byte
	a, b  *site
}

type site struct {
	key  *keys.Signer
	hpke *keys.Decrypter
	der  []byte // site certificate
	id   string
}

// must returns v, or panics on err: for test set-up that cannot fail.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func newRoot(t testing.TB) *pki.Authority {
	return must(pki.NewRoot(must(keys.GenerateSigner()), "ACME", now))
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{root: newRoot(t), ch: must(keys.GenerateSigner())}
	w.chDER = must(w.root.IssueClearinghouse(w.ch.Public(), "ACME", now))
	w.a = newSite(t, w.root, "cust-a")
	w.b = newSite(t, w.root, "cust-b")
	return w
}

func newSite(t testing.TB, root *pki.Authority, customer string) *site {
	t.Helper()
	s := &site{key: must(keys.GenerateSigner()), hpke: must(keys.GenerateDecrypter())}
	csr := must(pki.NewSiteRequest(s.key, s.hpke.PublicBytes(), "Plant "+customer))
	req := must(pki.ParseSiteRequest(csr))
	s.der = must(root.CertifySite(req, customer, now))
	s.id = req.SiteID
	return s
}

func (s *site) authority(t testing.TB) *pki.Authority {
	return &pki.Authority{Cert: must(x509.ParseCertificate(s.der)), Signer: s.key}
}

func (w *world) pack(s *site) *pack.Pack {
	first, exp := now.Add(-24*time.Hour), now.Add(365*24*time.Hour)
	return &pack.Pack{
		PackID: "pk-0001", OrderID: "ord-0001", SiteID: s.id, CustomerID: "cust-a",
		Issued: now.Add(-time.Hour), FirstActive: &first, Expires: &exp,
		BeginSerial: 1001, Quantity: 25, Platform: "windows",
		Product:      pack.Product{ID: "acme-cad", Name: "ACME CAD", Version: "7.2"},
		Features:     []string{"render", "export-step"},
		Descriptions: map[string]string{"en": "ACME CAD, 25 seats", "de": "ACME CAD, 25 Plätze"},
		Manufacturer: "ACME Tools Inc.",
		ProductData:  map[string]string{"tier": "pro"},
	}
}

// seal makes a pack file from any document, signer and chain, for the
// attacks that pack.Seal would not let one write; every layer states version.
func seal(t testing.TB, typ string, version int, doc any, signer *keys.Signer, chain [][]byte, to *site) []byte {
	t.Helper()
	sd := must(envelope.Sign(typ, version, doc, signer, chain))
	return resealed(t, sd, version, to)
}

// resealed encrypts a Signed envelope to the site as a pack file whose armor
// and Sealed envelope state version, as a site that holds its own HPKE key
// can do with any pack it opened.
func resealed(t testing.TB, sd *envelope.Signed, version int, to *site) []byte {
	t.Helper()
	sl := must(envelope.Seal(pack.TypePack, version, to.hpke.PublicBytes(), sd.Marshal()))
	return armor.Encode(armor.Block{Type: armor.TypeLicensePack, Version: version, Body: sl.Marshal()})
}

func wantInvalid(t *testing.T, what string, err error, substr ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted", what)
	}
	if !errs.Is(err, errs.Invalid) {
		t.Errorf("%s: error kind %v, want invalid: %v", what, errs.KindOf(err), err)
	}
	for _, s := range substr {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%s: error %q does not contain %q", what, err, s)
		}
	}
}

func sameJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, _ := canonjson.Marshal(got)
	w, _ := canonjson.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

func TestRoundTrip(t *testing.T) {
	w := newWorld(t)
	// The site asks for its order.
	reqFile := must(pack.NewPurchaseRequest(w.a.key, [][]byte{w.a.der}, "ord-0001", now.Add(123*time.Millisecond)))
	if !bytes.HasPrefix(reqFile, []byte("-----BEGIN LICET PURCHASE REQUEST-----\nVersion: 1\n")) {
		t.Fatalf("purchase request file:\n%s", reqFile)
	}
	req, st, err := pack.ReadPurchaseRequest(reqFile, w.root.Cert, now)
	if err != nil {
		t.Fatal(err)
	}
	if req.SiteID != w.a.id || req.OrderID != "ord-0001" || !req.Created.Equal(now) || !strings.HasPrefix(req.RequestID, "req-") {
		t.Fatalf("purchase request %+v", req)
	}
	if st.SiteID != w.a.id || st.CustomerID != "cust-a" || !bytes.Equal(st.HPKEKey, w.a.hpke.PublicBytes()) {
		t.Fatalf("site %+v", st)
	}
	// The clearinghouse answers with a pack for that site.
	p := w.pack(w.a)
	packFile := must(pack.Seal(p, w.ch, [][]byte{w.chDER}, st.HPKEKey))
	if !bytes.HasPrefix(packFile, []byte("-----BEGIN LICET LICENSE PACK-----\nVersion: 1\n")) {
		t.Fatalf("pack file:\n%s", packFile)
	}
	got, err := pack.Open(packFile, w.a.hpke, w.a.id, w.root.Cert, now)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "opened pack", got, p)
	if !got.Issued.Equal(p.Issued) || !got.Expires.Equal(*p.Expires) || got.Descriptions["de"] != "ACME CAD, 25 Plätze" {
		t.Fatalf("pack fields changed: %+v", got)
	}
	// A pack without optional dates or maps opens too.
	p2 := &pack.Pack{PackID: "pk-2", OrderID: "o", SiteID: w.a.id, Issued: now, Quantity: 1, Platform: "legacy"}
	got, err = pack.Open(must(pack.Seal(p2, w.ch, [][]byte{w.chDER}, w.a.hpke.PublicBytes())), w.a.hpke, w.a.id, w.root.Cert, now)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "minimal pack", got, p2)
	// The site certificate with the root behind it is accepted as well.
	reqFile = must(pack.NewPurchaseRequest(w.a.key, [][]byte{w.a.der, w.root.Cert.Raw}, "ord-0002", now))
	if _, _, err := pack.ReadPurchaseRequest(reqFile, w.root.Cert, now); err != nil {
		t.Fatal(err)
	}
}

func TestSurvivesMail(t *testing.T) {
	w := newWorld(t)
	file := must(pack.Seal(w.pack(w.a), w.ch, [][]byte{w.chDER}, w.a.hpke.PublicBytes()))
	mail := "Hi,\r\n\r\nyour pack:\r\n\r\n" + strings.ReplaceAll(string(file), "\n", "\r\n") + "\r\nRegards\r\n"
	if _, err := pack.Open([]byte(mail), w.a.hpke, w.a.id, w.root.Cert, now); err != nil {
		t.Fatal(err)
	}
}

func TestPlatforms(t *testing.T) {
	for _, p := range []string{"windows", "non-windows", "legacy", "direct-connect"} {
		if err := pack.CheckPlatform(p); err != nil {
			t.Error(err)
		}
	}
	wantInvalid(t, "unknown platform", pack.CheckPlatform("amiga"), `platform "amiga" is not one of`)
}

func TestOpenForAnotherSite(t *testing.T) {
	w := newWorld(t)
	// Encrypted to site B: site A cannot even decrypt it, and is told why.
	file := must(pack.Seal(w.pack(w.b), w.ch, [][]byte{w.chDER}, w.b.hpke.PublicBytes()))
	_, err := pack.Open(file, w.a.hpke, w.a.id, w.root.Cert, now)
	wantInvalid(t, "pack encrypted to another site", err, w.b.hpke.ID(), w.a.hpke.ID(), "made for another server")
	// Issued to site B, decrypted by B and re-encrypted to A: the signed
	// content names B, so A refuses it.
	file = must(pack.Seal(w.pack(w.b), w.ch, [][]byte{w.chDER}, w.a.hpke.PublicBytes()))
	_, err = pack.Open(file, w.a.hpke, w.a.id, w.root.Cert, now)
	wantInvalid(t, "pack issued to another site", err, "was issued to site "+w.b.id+", not to this site ("+w.a.id+")")
}

func TestOpenUncertifiedClearinghouse(t *testing.T) {
	w := newWorld(t)
	p := w.pack(w.a)
	// A clearinghouse certified by another root (same vendor name).
	rogue := newRoot(t)
	rogueCH := must(keys.GenerateSigner())
	rogueDER := must(rogue.IssueClearinghouse(rogueCH.Public(), "ACME", now))
	// A clearinghouse certificate minted by a site with its own CA key.
	siteCH := must(keys.GenerateSigner())
	siteCHDER := must(w.a.authority(t).IssueClearinghouse(siteCH.Public(), "ACME", now))
	cases := []struct {
		name   string
		signer *keys.Signer
		chain  [][]byte
		want   string
	}{
		{"clearinghouse of another root", rogueCH, [][]byte{rogueDER, rogue.Cert.Raw}, "not signed by this vendor's clearinghouse"},
		{"clearinghouse certified by a site", siteCH, [][]byte{siteCHDER, w.a.der, w.root.Cert.Raw}, "not signed by this vendor's clearinghouse"},
		{"real certificate, other key", rogueCH, [][]byte{w.chDER}, "is not signed by key " + w.ch.ID()},
		{"signed by the root key", w.root.Signer, [][]byte{w.root.Cert.Raw}, `role "root", not "clearinghouse"`},
		{"signed by a site", w.a.key, [][]byte{w.a.der}, `role "site", not "clearinghouse"`},
		{"no certificate", w.ch, nil, "no certificate given for the clearinghouse"},
		{"garbage certificate", w.ch, [][]byte{[]byte("cert")}, "not valid X.509"},
	}
	for _, c := range cases {
		_, err := pack.Open(seal(t, pack.TypePack, pack.PackVersion, p, c.signer, c.chain, w.a), w.a.hpke, w.a.id, w.root.Cert, now)
		wantInvalid(t, c.name, err, c.want)
	}
	// The genuine one, built the same way, opens.
	if _, err := pack.Open(seal(t, pack.TypePack, pack.PackVersion, p, w.ch, [][]byte{w.chDER}, w.a), w.a.hpke, w.a.id, w.root.Cert, now); err != nil {
		t.Fatal(err)
	}
}

func TestOpenExpired(t *testing.T) {
	w := newWorld(t)
	p := w.pack(w.a)
	exp := now.Add(-time.Second)
	p.Expires = &exp
	file := must(pack.Seal(p, w.ch, [][]byte{w.chDER}, w.a.hpke.PublicBytes()))
	_, err := pack.Open(file, w.a.hpke, w.a.id, w.root.Cert, now)
	wantInvalid(t, "expired pack", err, "license pack pk-0001 expired on 2026-05-01")
	exp = now
	file = must(pack.Seal(p, w.ch, [][]byte{w.chDER}, w.a.hpke.PublicBytes()))
	_, err = pack.Open(file, w.a.hpke, w.a.id, w.root.Cert, now)
	wantInvalid(t, "pack expiring this instant", err, "expired")
	if _, err := pack.Open(file, w.a.hpke, w.a.id, w.root.Cert, now.Add(-time.Second)); err != nil {
		t.Fatalf("pack one second before its expiry: %v", err)
	}
	// The clearinghouse certificate expired: the pack is refused too.
	p = w.pack(w.a)
	p.Expires = nil
	file = must(pack.Seal(p, w.ch, [][]byte{w.chDER}, w.a.hpke.PublicBytes()))
	_, err = pack.Open(file, w.a.hpke, w.a.id, w.root.Cert, now.Add(pki.ClearinghouseValidity+time.Hour))
	wantInvalid(t, "clearinghouse certificate expired", err, "has expired")
}

func TestOpenRejectsContent(t *testing.T) {
	w := newWorld(t)
	for name, f := range map[string]func(*pack.Pack){
		"no seats":   func(p *pack.Pack) { p.Quantity = 0 },
		"negative":   func(p *pack.Pack) { p.Quantity = -5 },
		"no pack ID": func(p *pack.Pack) { p.PackID = "" },
	} {
		p := w.pack(w.a)
		f(p)
		_, err := pack.Open(must(pack.Seal(p, w.ch, [][]byte{w.chDER}, w.a.hpke.PublicBytes())), w.a.hpke, w.a.id, w.root.Cert, now)
		wantInvalid(t, name, err, "no ID or no seats")
	}
	// A signed document that is not a pack object.
	_, err := pack.Open(seal(t, pack.TypePack, 1, []int{1, 2}, w.ch, [][]byte{w.chDER}, w.a), w.a.hpke, w.a.id, w.root.Cert, now)
	wantInvalid(t, "payload not an object", err, "payload is not valid JSON")
	// A field of the wrong JSON type.
	_, err = pack.Open(seal(t, pack.TypePack, 1, map[string]any{"pack_id": "p", "site_id": w.a.id, "quantity": "25"}, w.ch, [][]byte{w.chDER}, w.a), w.a.hpke, w.a.id, w.root.Cert, now)
	wantInvalid(t, "quantity as a string", err, "payload is not valid JSON")
}

func TestVersionsAndTypes(t *testing.T) {
	w := newWorld(t)
	p := w.pack(w.a)
	good := must(pack.Seal(p, w.ch, [][]byte{w.chDER}, w.a.hpke.PublicBytes()))
	blk := must(armor.Decode(good, armor.TypeLicensePack))

	// Format version 3 is from a future licet, at every layer.
	v3 := armor.Encode(armor.Block{Type: armor.TypeLicensePack, Version: 3, Body: blk.Body})
	_, err := pack.Open(v3, w.a.hpke, w.a.id, w.root.Cert, now)
	wantInvalid(t, "armor version 3", err, "license pack format version 3 is not supported (this licet reads up to 2)")
	_, err = pack.Open(seal(t, pack.TypePack, 3, p, w.ch, [][]byte{w.chDER}, w.a), w.a.hpke, w.a.id, w.root.Cert, now)
	wantInvalid(t, "signed version 3", err, "version 3 is not supported")
	sl := must(envelope.ParseSealed(blk.Body, pack.TypePack, 1))
	sl.Version = 3
	_, err = pack.Open(armor.Encode(armor.Block{Type: armor.TypeLicensePack, Version: 1, Body: sl.Marshal()}), w.a.hpke, w.a.id, w.root.Cert, now)
	wantInvalid(t, "sealed version 3", err, "version 3 is not supported")

	// A purchase request where a pack is expected, and the other way round.
	reqFile := must(pack.NewPurchaseRequest(w.a.key, [][]byte{w.a.der}, "ord-1", now))
	_, err = pack.Open(reqFile, w.a.hpke, w.a.id, w.root.Cert, now)
	wantInvalid(t, "purchase request as pack", err, "this file is a purchase request, not a license pack")
	_, _, err = pack.ReadPurchaseRequest(good, w.root.Cert, now)
	wantInvalid(t, "pack as purchase request", err, "this file is a license pack, not a purchase request")

	// A document signed by the clearinghouse as another type, sealed as a
	// pack: the signature's type is checked.
	_, err = pack.Open(seal(t, "licet.license", 1, p, w.ch, [][]byte{w.chDER}, w.a), w.a.hpke, w.a.id, w.root.Cert, now)
	wantInvalid(t, "other signed type inside a pack", err, `type "licet.license", expected "licet.pack"`)
	// Same signature, type field rewritten: the signature no longer verifies.
	sd := must(envelope.Sign("licet.license", 1, p, w.ch, [][]byte{w.chDER}))
	sd.Type = pack.TypePack
	sl2 := must(envelope.Seal(pack.TypePack, 1, w.a.hpke.PublicBytes(), sd.Marshal()))
	_, err = pack.Open(armor.Encode(armor.Block{Type: armor.TypeLicensePack, Version: 1, Body: sl2.Marshal()}), w.a.hpke, w.a.id, w.root.Cert, now)
	wantInvalid(t, "relabelled signature", err, "does not verify")
	// A sealed envelope of another type.
	sl3 := must(envelope.Seal("licet.license", 1, w.a.hpke.PublicBytes(), sd.Marshal()))
	_, err = pack.Open(armor.Encode(armor.Block{Type: armor.TypeLicensePack, Version: 1, Body: sl3.Marshal()}), w.a.hpke, w.a.id, w.root.Cert, now)
	wantInvalid(t, "sealed envelope of another type", err, `type "licet.license", expected "licet.pack"`)
}

func TestForwardCompatible(t *testing.T) {
	w := newWorld(t)
	p := w.pack(w.a)
	doc := map[string]any{}
	if err := canonjson.UnmarshalStrict(must(canonjson.Marshal(p)), &doc); err != nil {
		t.Fatal(err)
	}
	doc["seat_pools"] = []any{map[string]any{"name": "night shift", "seats": 5}}
	doc["product"].(map[string]any)["edition"] = "2027"
	got, err := pack.Open(seal(t, pack.TypePack, 1, doc, w.ch, [][]byte{w.chDER}, w.a), w.a.hpke, w.a.id, w.root.Cert, now)
	if err != nil {
		t.Fatalf("pack with unknown fields refused: %v", err)
	}
	sameJSON(t, "pack with unknown fields", got, p)
}

// TestFlipEveryByte flips the low bit of every byte of a pack file and of a
// purchase request, from the BEGIN line through the END line: every copy
// must be refused.
func TestFlipEveryByte(t *testing.T) {
	w := newWorld(t)
	file := must(pack.Seal(w.pack(w.a), w.ch, [][]byte{w.chDER}, w.a.hpke.PublicBytes()))
	if _, err := pack.Open(file, w.a.hpke, w.a.id, w.root.Cert, now); err != nil {
		t.Fatal(err)
	}
	for i := range file {
		c := bytes.Clone(file)
		c[i] ^= 0x01
		if _, err := pack.Open(c, w.a.hpke, w.a.id, w.root.Cert, now); err == nil {
			t.Fatalf("pack with byte %d (%q) flipped opened", i, file[i])
		}
	}
	req := must(pack.NewPurchaseRequest(w.a.key, [][]byte{w.a.der}, "ord-1", now))
	for i := range req {
		c := bytes.Clone(req)
		c[i] ^= 0x01
		if _, _, err := pack.ReadPurchaseRequest(c, w.root.Cert, now); err == nil {
			t.Fatalf("purchase request with byte %d (%q) flipped accepted", i, req[i])
		}
	}
}

func TestReadPurchaseRequestRejects(t *testing.T) {
	w := newWorld(t)
	rogue := newRoot(t)
	rogueSite := newSite(t, rogue, "cust-a")
	// Site A certifies another key as a site with its own CA key.
	minted := must(keys.GenerateSigner())
	mintedHPKE := must(keys.GenerateDecrypter())
	mintedReq := must(pki.ParseSiteRequest(must(pki.NewSiteRequest(minted, mintedHPKE.PublicBytes(), "x"))))
	mintedDER := must(w.a.authority(t).CertifySite(mintedReq, "cust-a", now))

	signed := func(signer *keys.Signer, chain [][]byte, req pack.PurchaseRequest) []byte {
		sd := must(envelope.Sign(pack.TypePurchaseRequest, 1, req, signer, chain))
		return armor.Encode(armor.Block{Type: armor.TypePurchaseRequest, Version: 1, Body: sd.Marshal()})
	}
	reqOf := func(s string) pack.PurchaseRequest {
		return pack.PurchaseRequest{RequestID: "req-1", SiteID: s, OrderID: "ord-1", Created: now}
	}
	cases := []struct {
		name string
		file []byte
		at   time.Time
		want string
	}{
		{"site certified by another root", must(pack.NewPurchaseRequest(rogueSite.key, [][]byte{rogueSite.der, rogue.Cert.Raw}, "ord-1", now)), now, "was not issued by this vendor's root"},
		{"site certified by a site", must(pack.NewPurchaseRequest(minted, [][]byte{mintedDER, w.a.der}, "ord-1", now)), now, "was not issued by this vendor's root"},
		{"no certificate", must(pack.NewPurchaseRequest(w.a.key, nil, "ord-1", now)), now, "no certificate given for the site"},
		{"clearinghouse certificate", must(pack.NewPurchaseRequest(w.ch, [][]byte{w.chDER}, "ord-1", now)), now, `role "clearinghouse", not "site"`},
		{"site A's certificate, site B's key", must(pack.NewPurchaseRequest(w.b.key, [][]byte{w.a.der}, "ord-1", now)), now, "is not signed by key " + w.a.key.ID()},
		{"names another site", signed(w.a.key, [][]byte{w.a.der}, reqOf(w.b.id)), now, "purchase request names site " + w.b.id + " but is signed by site " + w.a.id},
		{"no order", must(pack.NewPurchaseRequest(w.a.key, [][]byte{w.a.der}, "", now)), now, "names no order"},
		{"site certificate expired", must(pack.NewPurchaseRequest(w.a.key, [][]byte{w.a.der}, "ord-1", now)), now.Add(pki.SiteValidity + time.Hour), "has expired"},
		{"signed version 2", func() []byte {
			sd := must(envelope.Sign(pack.TypePurchaseRequest, 2, reqOf(w.a.id), w.a.key, [][]byte{w.a.der}))
			return armor.Encode(armor.Block{Type: armor.TypePurchaseRequest, Version: 1, Body: sd.Marshal()})
		}(), now, "version 2 is not supported"},
		{"armor version 2", func() []byte {
			sd := must(envelope.Sign(pack.TypePurchaseRequest, 1, reqOf(w.a.id), w.a.key, [][]byte{w.a.der}))
			return armor.Encode(armor.Block{Type: armor.TypePurchaseRequest, Version: 2, Body: sd.Marshal()})
		}(), now, "purchase request format version 2 is not supported"},
		{"pack type signature", func() []byte {
			sd := must(envelope.Sign(pack.TypePack, 1, reqOf(w.a.id), w.a.key, [][]byte{w.a.der}))
			return armor.Encode(armor.Block{Type: armor.TypePurchaseRequest, Version: 1, Body: sd.Marshal()})
		}(), now, `expected "licet.purchase-request"`},
		{"garbled", []byte("-----BEGIN LICET PURCHASE REQUEST-----\nVersion: 1\nChecksum: sha256:00\n\n!!\n-----END LICET PURCHASE REQUEST-----\n"), now, "purchase request rejected"},
	}
	for _, c := range cases {
		_, _, err := pack.ReadPurchaseRequest(c.file, w.root.Cert, c.at)
		wantInvalid(t, c.name, err, c.want)
	}
	// Tampering with the signed request: another order.
	good := signed(w.a.key, [][]byte{w.a.der}, reqOf(w.a.id))
	blk := must(armor.Decode(good, armor.TypePurchaseRequest))
	sd := must(envelope.ParseSigned(blk.Body, pack.TypePurchaseRequest, 1))
	sd.Payload = bytes.Replace(sd.Payload, []byte("ord-1"), []byte("ord-2"), 1)
	_, _, err := pack.ReadPurchaseRequest(armor.Encode(armor.Block{Type: armor.TypePurchaseRequest, Version: 1, Body: sd.Marshal()}), w.root.Cert, now)
	wantInvalid(t, "order changed after signing", err, "does not verify")
}

func FuzzOpen(f *testing.F) {
	w := newWorld(f)
	good := must(pack.Seal(w.pack(w.a), w.ch, [][]byte{w.chDER}, w.a.hpke.PublicBytes()))
	f.Add(good)
	f.Add(must(pack.Seal(w.pack(w.b), w.ch, [][]byte{w.chDER}, w.b.hpke.PublicBytes())))
	f.Add([]byte(strings.ReplaceAll(string(good), "\n", "\r\n")))
	f.Add(must(pack.NewPurchaseRequest(w.a.key, [][]byte{w.a.der}, "ord-1", now)))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := pack.Open(data, w.a.hpke, w.a.id, w.root.Cert, now)
		if err != nil {
			return
		}
		if p.SiteID != w.a.id || p.PackID == "" || p.Quantity < 1 {
			t.Fatalf("opened pack %+v", p)
		}
	})
}

// FuzzOpenPlaintext fuzzes what is inside the encryption. Anyone can encrypt
// to a site's public key, so this is as exposed as the outer file.
func FuzzOpenPlaintext(f *testing.F) {
	w := newWorld(f)
	sd := must(envelope.Sign(pack.TypePack, 1, w.pack(w.a), w.ch, [][]byte{w.chDER}))
	f.Add(sd.Marshal())
	sd2 := must(envelope.Sign(pack.TypePack, 1, map[string]any{"pack_id": "p", "site_id": w.a.id, "quantity": 1, "x": []int{1}}, w.ch, [][]byte{w.chDER, w.root.Cert.Raw}))
	f.Add(sd2.Marshal())
	f.Add([]byte(`{"type":"licet.pack","version":1,"payload":"e30=","signatures":[{"kid":"` + w.ch.ID() + `","alg":"ed25519","sig":""}],"certificates":["` + "AAAA" + `"]}`))
	pub := w.a.hpke.PublicBytes()
	f.Fuzz(func(t *testing.T, plaintext []byte) {
		sl, err := envelope.Seal(pack.TypePack, 1, pub, plaintext)
		if err != nil {
			t.Fatal(err)
		}
		file := armor.Encode(armor.Block{Type: armor.TypeLicensePack, Version: 1, Body: sl.Marshal()})
		p, err := pack.Open(file, w.a.hpke, w.a.id, w.root.Cert, now)
		if err != nil {
			return
		}
		if p.SiteID != w.a.id || p.PackID == "" || p.Quantity < 1 {
			t.Fatalf("opened pack %+v", p)
		}
		s, err := envelope.ParseSigned(plaintext, pack.TypePack, 1)
		if err != nil || s.Verify(w.ch.Public()) != nil {
			t.Fatalf("opened a pack the clearinghouse did not sign: %s", plaintext)
		}
	})
}

func FuzzReadPurchaseRequest(f *testing.F) {
	w := newWorld(f)
	good := must(pack.NewPurchaseRequest(w.a.key, [][]byte{w.a.der}, "ord-1", now))
	f.Add(good)
	f.Add(must(pack.NewPurchaseRequest(w.b.key, [][]byte{w.b.der, w.root.Cert.Raw}, "ord-2", now)))
	f.Add([]byte(strings.ReplaceAll(string(good), "\n", "\r\n")))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, st, err := pack.ReadPurchaseRequest(data, w.root.Cert, now)
		if err != nil {
			return
		}
		if req.SiteID != st.SiteID || req.OrderID == "" || (st.SiteID != w.a.id && st.SiteID != w.b.id) {
			t.Fatalf("accepted request %+v from %+v", req, st)
		}
	})
}

// FuzzReadPurchaseRequestBody fuzzes the signed document inside the armor,
// which the armor checksum would otherwise keep the fuzzer away from.
func FuzzReadPurchaseRequestBody(f *testing.F) {
	w := newWorld(f)
	good := must(pack.NewPurchaseRequest(w.a.key, [][]byte{w.a.der}, "ord-1", now))
	f.Add(must(armor.Decode(good, armor.TypePurchaseRequest)).Body)
	sd := must(envelope.Sign(pack.TypePurchaseRequest, 1, map[string]any{"site_id": w.a.id, "order_id": "o", "created": "2026-05-01T12:00:00Z", "future": true}, w.a.key, [][]byte{w.a.der}))
	f.Add(sd.Marshal())
	f.Fuzz(func(t *testing.T, body []byte) {
		file := armor.Encode(armor.Block{Type: armor.TypePurchaseRequest, Version: 1, Body: body})
		req, st, err := pack.ReadPurchaseRequest(file, w.root.Cert, now)
		if err != nil {
			return
		}
		if req.SiteID != st.SiteID || req.OrderID == "" || st.SiteID != w.a.id {
			t.Fatalf("accepted request %+v from %+v", req, st)
		}
	})
}

// TestUpgradePack checks that an upgrade pack is written as format version 2
// (so a site that does not know upgrades refuses it) and keeps its range, and
// that a pack with an impossible range is refused.
func TestUpgradePack(t *testing.T) {
	w := newWorld(t)
	seat := w.pack(w.a)
	if blk := must(armor.Decode(must(pack.Seal(seat, w.ch, [][]byte{w.chDER}, w.a.hpke.PublicBytes())), armor.TypeLicensePack)); blk.Version != 1 {
		t.Fatalf("a seat pack is written as version %d, want 1 (readable by every licet)", blk.Version)
	}
	up := w.pack(w.a)
	up.Product.Version = "2.0"
	up.Upgrade = &pack.Upgrade{FromMin: "1.0", FromMax: "1.9"}
	file := must(pack.Seal(up, w.ch, [][]byte{w.chDER}, w.a.hpke.PublicBytes()))
	if blk := must(armor.Decode(file, armor.TypeLicensePack)); blk.Version != 2 {
		t.Fatalf("an upgrade pack is written as version %d, want 2", blk.Version)
	}
	got, err := pack.Open(file, w.a.hpke, w.a.id, w.root.Cert, now)
	if err != nil {
		t.Fatal(err)
	}
	if got.Upgrade == nil || *got.Upgrade != *up.Upgrade {
		t.Fatalf("upgrade range read back as %+v", got.Upgrade)
	}
	for _, v := range []string{"1.0", "1.5", "1.9", "1.9.0"} {
		if !got.Upgrade.Covers(v) {
			t.Errorf("range 1.0..1.9 does not cover %s", v)
		}
	}
	for _, v := range []string{"0.9", "1.10", "2.0"} {
		if got.Upgrade.Covers(v) {
			t.Errorf("range 1.0..1.9 covers %s", v)
		}
	}
	for name, u := range map[string]*pack.Upgrade{
		"empty range":      {FromMin: "1.5", FromMax: "1.2"},
		"above the target": {FromMin: "1.0", FromMax: "2.1"},
		"no lower end":     {FromMax: "1.0"},
	} {
		bad := w.pack(w.a)
		bad.Product.Version = "2.0"
		bad.Upgrade = u
		_, err := pack.Open(must(pack.Seal(bad, w.ch, [][]byte{w.chDER}, w.a.hpke.PublicBytes())), w.a.hpke, w.a.id, w.root.Cert, now)
		wantInvalid(t, name, err, "upgrade")
	}
}

// TestRelabelledUpgradePack is the relabel attack of issue 12: a site opens
// a version 2 upgrade pack with its own HPKE key, rewrites the version to 1
// at every layer and encrypts it to itself again, hoping that a licet which
// predates upgrade packs (and reads only version 1) grants its seats as new
// licenses. The signature binds the version, so neither this licet nor the
// version 1 rule of an older one accepts it.
func TestRelabelledUpgradePack(t *testing.T) {
	w := newWorld(t)
	up := w.pack(w.a)
	up.Product.Version = "2.0"
	up.Upgrade = &pack.Upgrade{FromMin: "1.0", FromMax: "1.9"}
	file := must(pack.Seal(up, w.ch, [][]byte{w.chDER}, w.a.hpke.PublicBytes()))
	blk := must(armor.Decode(file, armor.TypeLicensePack))
	sl := must(envelope.ParseSealed(blk.Body, pack.TypePack, pack.PackVersion))
	sd := must(envelope.ParseSigned(must(sl.Open(w.a.hpke)), pack.TypePack, pack.PackVersion))
	if sd.Version != 2 {
		t.Fatalf("upgrade pack signed as version %d, want 2", sd.Version)
	}

	// Relabelled at every layer, re-encrypted by the site to itself.
	sd.Version = 1
	_, err := pack.Open(resealed(t, sd, 1, w.a), w.a.hpke, w.a.id, w.root.Cert, now)
	wantInvalid(t, "upgrade pack relabelled version 1", err, "licet.pack (format version 1) signature", "does not verify")
	// What a licet that reads version 1 only checks: the version 1 message.
	chPub := must(pki.VerifyClearinghouse(sd.Certificates, w.root.Cert, now))
	if ed25519.Verify(chPub, append([]byte("licet/v1 signed licet.pack\x00"), sd.Payload...), sd.Signatures[0].Sig) {
		t.Fatal("the upgrade pack's signature verifies as a version 1 pack: an older site would grant its seats")
	}
	// The Sealed envelope's version alone rewritten: HPKE refuses it.
	sl.Version = 1
	_, err = pack.Open(armor.Encode(armor.Block{Type: armor.TypeLicensePack, Version: 1, Body: sl.Marshal()}), w.a.hpke, w.a.id, w.root.Cert, now)
	wantInvalid(t, "sealed envelope relabelled version 1", err, "cannot be decrypted")
	// Layers that disagree.
	sd.Version = 2
	two := resealed(t, sd, 2, w.a)
	b2 := must(armor.Decode(two, armor.TypeLicensePack))
	_, err = pack.Open(armor.Encode(armor.Block{Type: armor.TypeLicensePack, Version: 1, Body: b2.Body}), w.a.hpke, w.a.id, w.root.Cert, now)
	wantInvalid(t, "armor relabelled version 1", err, "armor, 2 encrypted and 2 signed")

	// An upgrade pack signed the old way (the version 1 message, as licet
	// before this format wrote version 2 packs): refused as version 2 (old
	// messages stand for version 1 only), and refused relabelled version 1
	// because a version 1 pack cannot carry an upgrade.
	payload := must(canonjson.Marshal(up))
	old := &envelope.Signed{Type: pack.TypePack, Version: 2, Payload: payload, Certificates: [][]byte{w.chDER},
		Signatures: []envelope.Signature{{KeyID: w.ch.ID(), Alg: "ed25519", Sig: w.ch.Sign(append([]byte("licet/v1 signed licet.pack\x00"), payload...))}}}
	_, err = pack.Open(resealed(t, old, 2, w.a), w.a.hpke, w.a.id, w.root.Cert, now)
	wantInvalid(t, "old-format signature on a version 2 pack", err, "does not verify")
	old.Version = 1
	_, err = pack.Open(resealed(t, old, 1, w.a), w.a.hpke, w.a.id, w.root.Cert, now)
	wantInvalid(t, "old-format upgrade pack relabelled version 1", err, "upgrade pack labelled format version 1")
}

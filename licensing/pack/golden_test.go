package pack_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/canonjson"
	"github.com/licet/licet/envelope"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/pack"
	"github.com/licet/licet/pki"
)

// The golden files under testdata/formats are the test vectors of
// docs/formats.md. They were written by an earlier licet; this test checks
// that the current code still reads them, so that a change that breaks files
// already in customers' hands fails here. Regenerate them only for a new
// format version, with:
//
//	go test ./pack -run Golden -update
var update = flag.Bool("update", false, "rewrite the golden files under testdata/formats")

const goldenDir = "../../testdata/formats"

// vectors is testdata/formats/vectors.json: the time the files were made
// (and at which they verify, since certificates and packs expire) and what
// each file must decode to.
type vectors struct {
	Comment         string               `json:"comment"`
	Generated       time.Time            `json:"generated"`
	Vendor          string               `json:"vendor"`
	RootFingerprint string               `json:"root_fingerprint"`
	ClearinghouseID string               `json:"clearinghouse_key_id"`
	SiteID          string               `json:"site_id"`
	SiteName        string               `json:"site_name"`
	SiteHPKEID      string               `json:"site_hpke_key_id"`
	CustomerID      string               `json:"customer_id"`
	PurchaseRequest pack.PurchaseRequest `json:"purchase_request"`
	Pack            pack.Pack            `json:"pack"`
	FuturePack      pack.Pack            `json:"pack_future"`
}

func golden(name string) string { return filepath.Join(goldenDir, name) }

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(golden(name))
	if err != nil {
		t.Fatalf("golden file missing (regenerate with 'go test ./pack -run Golden -update'): %v", err)
	}
	return b
}

func TestGolden(t *testing.T) {
	if *update {
		writeGolden(t)
	}
	var v vectors
	if err := json.Unmarshal(readGolden(t, "vectors.json"), &v); err != nil {
		t.Fatal(err)
	}
	at := v.Generated

	// The vendor root, as GET /v1/root serves it.
	blk, _ := pem.Decode(readGolden(t, "root.crt"))
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatal("root.crt is not a PEM certificate")
	}
	root, err := pki.ParseRoot(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if pki.Fingerprint(root.Raw) != v.RootFingerprint {
		t.Fatalf("root fingerprint %s, want %s", pki.Fingerprint(root.Raw), v.RootFingerprint)
	}
	blk, _ = pem.Decode(readGolden(t, "clearinghouse.crt"))
	if blk == nil {
		t.Fatal("clearinghouse.crt is not PEM")
	}
	chPub, err := pki.VerifyClearinghouse([][]byte{blk.Bytes}, root, at)
	if err != nil {
		t.Fatal(err)
	}
	if keys.SignerID(chPub) != v.ClearinghouseID {
		t.Fatalf("clearinghouse key %s, want %s", keys.SignerID(chPub), v.ClearinghouseID)
	}

	// The site's key files.
	siteKey, err := keys.LoadSigner(golden("site.key"))
	if err != nil {
		t.Fatal(err)
	}
	siteHPKE, err := keys.LoadDecrypter(golden("site-hpke.key"))
	if err != nil {
		t.Fatal(err)
	}
	if pki.SiteID(siteKey.Public()) != v.SiteID || siteHPKE.ID() != v.SiteHPKEID {
		t.Fatalf("site keys are %s and %s, want %s and %s", pki.SiteID(siteKey.Public()), siteHPKE.ID(), v.SiteID, v.SiteHPKEID)
	}

	t.Run("site-request-v1", func(t *testing.T) {
		blk, err := armor.Decode(readGolden(t, "site-request-v1.txt"), armor.TypeCertRequest)
		if err != nil {
			t.Fatal(err)
		}
		req, err := pki.ParseSiteRequest(blk.Body)
		if err != nil {
			t.Fatal(err)
		}
		if blk.Version != 1 || req.SiteID != v.SiteID || req.Name != v.SiteName || !bytes.Equal(req.HPKEKey, siteHPKE.PublicBytes()) {
			t.Fatalf("site request version %d: %+v", blk.Version, req)
		}
	})

	t.Run("site-certificate-v1", func(t *testing.T) {
		blk, err := armor.Decode(readGolden(t, "site-certificate-v1.txt"), armor.TypeSiteCertificate)
		if err != nil {
			t.Fatal(err)
		}
		var file struct {
			Certificates [][]byte `json:"certificates"`
		}
		if err := canonjson.UnmarshalStrict(blk.Body, &file); err != nil || blk.Version != 1 || len(file.Certificates) != 2 {
			t.Fatalf("site certificate file version %d, %d certificates: %v", blk.Version, len(file.Certificates), err)
		}
		if !bytes.Equal(file.Certificates[1], root.Raw) {
			t.Fatal("the second certificate is not the vendor root")
		}
		site, err := pki.VerifySite(file.Certificates[:1], root, at)
		if err != nil {
			t.Fatal(err)
		}
		if site.SiteID != v.SiteID || site.CustomerID != v.CustomerID || site.Name != v.SiteName || !bytes.Equal(site.HPKEKey, siteHPKE.PublicBytes()) {
			t.Fatalf("site %+v", site)
		}
	})

	t.Run("purchase-request-v1", func(t *testing.T) {
		req, site, err := pack.ReadPurchaseRequest(readGolden(t, "purchase-request-v1.txt"), root, at)
		if err != nil {
			t.Fatal(err)
		}
		if site.SiteID != v.SiteID || site.CustomerID != v.CustomerID {
			t.Fatalf("purchase request from %+v", site)
		}
		sameJSON(t, "purchase request", req, v.PurchaseRequest)
	})

	t.Run("pack-v1", func(t *testing.T) {
		data := readGolden(t, "pack-v1.txt")
		p, err := pack.Open(data, siteHPKE, v.SiteID, root, at)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "pack", p, v.Pack)
		if p.Expires == nil || !p.Expires.After(at) {
			t.Fatal("the golden pack should expire after its generation time")
		}
		// And it is refused once expired: the fixed time is what makes it open.
		if _, err := pack.Open(data, siteHPKE, v.SiteID, root, *p.Expires); err == nil {
			t.Fatal("golden pack opens at its expiry time")
		}
		checkDocumentedCrypto(t, data, siteHPKE, chPub)
	})

	t.Run("pack-v1-future", func(t *testing.T) {
		data := readGolden(t, "pack-v1-future.txt")
		p, err := pack.Open(data, siteHPKE, v.SiteID, root, at)
		if err != nil {
			t.Fatalf("a version 1 pack with fields from a newer licet must open: %v", err)
		}
		sameJSON(t, "future pack", p, v.FuturePack)
		// Make sure the file really carries unknown fields at every layer.
		layers := append(mustArmorBody(t, data), unwrap(t, data, siteHPKE)...)
		for _, field := range []string{`"sealed_note"`, `"signed_note"`, `"regional_terms"`, `"edition"`} {
			if !bytes.Contains(layers, []byte(field)) {
				t.Errorf("future pack lacks the unknown field %s", field)
			}
		}
	})
}

func mustArmorBody(t *testing.T, data []byte) []byte {
	t.Helper()
	blk, err := armor.Decode(data, armor.TypeLicensePack)
	if err != nil {
		t.Fatal(err)
	}
	return blk.Body
}

// unwrap returns the signed document and its payload inside a pack file.
func unwrap(t *testing.T, data []byte, d *keys.Decrypter) []byte {
	t.Helper()
	sl, err := envelope.ParseSealed(mustArmorBody(t, data), pack.TypePack, pack.PackVersion)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := sl.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := envelope.ParseSigned(plain, pack.TypePack, pack.PackVersion)
	if err != nil {
		t.Fatal(err)
	}
	return append(plain, sd.Payload...)
}

// checkDocumentedCrypto opens a pack the way docs/formats.md describes it,
// with the standard library alone, so the document and the code agree.
func checkDocumentedCrypto(t *testing.T, data []byte, site *keys.Decrypter, chPub ed25519.PublicKey) {
	t.Helper()
	var sealed struct {
		Type       string `json:"type"`
		Version    int    `json:"version"`
		Recipient  string `json:"recipient"`
		KEM        uint16 `json:"kem"`
		KDF        uint16 `json:"kdf"`
		AEAD       uint16 `json:"aead"`
		Ciphertext string `json:"ciphertext"`
	}
	if err := json.Unmarshal(mustArmorBody(t, data), &sealed); err != nil {
		t.Fatal(err)
	}
	if sealed.Type != "licet.pack" || sealed.Version != 1 || sealed.KEM != 0x647a || sealed.KDF != 0x0001 || sealed.AEAD != 0x0002 || sealed.Recipient != site.ID() {
		t.Fatalf("sealed envelope %+v", sealed)
	}
	ct, err := base64.StdEncoding.DecodeString(sealed.Ciphertext)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(golden("site-hpke.key"))
	blk, _ := pem.Decode(raw)
	priv, err := hpke.MLKEM768X25519().NewPrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	info := []byte("licet/v1 sealed licet.pack\x00" + sealed.Recipient)
	plain, err := hpke.Open(priv, hpke.HKDFSHA256(), hpke.AES256GCM(), info, ct)
	if err != nil {
		t.Fatalf("HPKE open with the documented info: %v", err)
	}
	var signed struct {
		Type       string `json:"type"`
		Version    int    `json:"version"`
		Payload    string `json:"payload"`
		Signatures []struct {
			KID string `json:"kid"`
			Alg string `json:"alg"`
			Sig string `json:"sig"`
		} `json:"signatures"`
		Certificates []string `json:"certificates"`
	}
	if err := json.Unmarshal(plain, &signed); err != nil {
		t.Fatal(err)
	}
	payload, _ := base64.StdEncoding.DecodeString(signed.Payload)
	sig, _ := base64.StdEncoding.DecodeString(signed.Signatures[0].Sig)
	msg := append([]byte("licet/v1 signed licet.pack\x00"), payload...)
	if signed.Signatures[0].KID != keys.SignerID(chPub) || signed.Signatures[0].Alg != "ed25519" || !ed25519.Verify(chPub, msg, sig) {
		t.Fatal("the clearinghouse signature does not verify over the documented message")
	}
	certDER, _ := base64.StdEncoding.DecodeString(signed.Certificates[0])
	cert, err := x509.ParseCertificate(certDER)
	if err != nil || !bytes.Equal(cert.PublicKey.(ed25519.PublicKey), chPub) {
		t.Fatalf("first certificate is not the clearinghouse's: %v", err)
	}
	canon, err := canonjson.Marshal(json.RawMessage(payload))
	if err != nil || !bytes.Equal(canon, payload) {
		t.Fatalf("payload is not canonical JSON:\n%s\n%s", payload, canon)
	}
}

// writeGolden makes a new vendor, site and order and writes every file.
func writeGolden(t *testing.T) {
	at := time.Now().UTC().Truncate(time.Second)
	const vendor, customer, siteName = "ACME Tools", "cust-acme", "ACME plant 7"
	if err := os.MkdirAll(goldenDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"site.key", "site-hpke.key"} {
		if err := os.Remove(golden(name)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(golden(name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root := must(pki.NewRoot(must(keys.GenerateSigner()), vendor, at))
	ch := must(keys.GenerateSigner())
	chDER := must(root.IssueClearinghouse(ch.Public(), vendor, at))
	siteKey, siteHPKE := must(keys.GenerateSigner()), must(keys.GenerateDecrypter())
	if err := siteKey.Save(golden("site.key")); err != nil {
		t.Fatal(err)
	}
	if err := siteHPKE.Save(golden("site-hpke.key")); err != nil {
		t.Fatal(err)
	}
	write("root.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Cert.Raw}))
	write("clearinghouse.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chDER}))

	csr := must(pki.NewSiteRequest(siteKey, siteHPKE.PublicBytes(), siteName))
	write("site-request-v1.txt", armor.Encode(armor.Block{Type: armor.TypeCertRequest, Version: 1, Body: csr}))
	siteDER := must(root.CertifySite(must(pki.ParseSiteRequest(csr)), customer, at))
	certFile := must(json.Marshal(struct {
		Certificates [][]byte `json:"certificates"`
	}{[][]byte{siteDER, root.Cert.Raw}}))
	write("site-certificate-v1.txt", armor.Encode(armor.Block{Type: armor.TypeSiteCertificate, Version: 1, Body: certFile}))

	reqFile := must(pack.NewPurchaseRequest(siteKey, [][]byte{siteDER}, "ord-golden-1", at))
	write("purchase-request-v1.txt", reqFile)
	req, _ := must2(pack.ReadPurchaseRequest(reqFile, root.Cert, at))

	siteID := pki.SiteID(siteKey.Public())
	first, exp := at, at.AddDate(1, 0, 0)
	p := pack.Pack{
		PackID: "pk-golden-1", OrderID: "ord-golden-1", SiteID: siteID, CustomerID: customer,
		Issued: at, FirstActive: &first, Expires: &exp, BeginSerial: 1001, Quantity: 25, Platform: "windows",
		Product:      pack.Product{ID: "acme-cad", Name: "ACME CAD", Version: "7.2"},
		Features:     []string{"export-step", "render"},
		Descriptions: map[string]string{"en": "ACME CAD, 25 seats", "de": "ACME CAD, 25 Plätze"},
		Manufacturer: "ACME Tools Inc.",
		ProductData:  map[string]string{"tier": "pro", "support": "gold"},
	}
	write("pack-v1.txt", must(pack.Seal(&p, ch, [][]byte{chDER}, siteHPKE.PublicBytes())))

	// A version 1 pack as a newer licet might write it: unknown fields in the
	// pack document, in the signed envelope and in the sealed envelope.
	fp := p
	fp.PackID, fp.OrderID, fp.BeginSerial = "pk-golden-2", "ord-golden-2", 2001
	doc := map[string]any{}
	if err := canonjson.UnmarshalStrict(must(canonjson.Marshal(fp)), &doc); err != nil {
		t.Fatal(err)
	}
	doc["regional_terms"] = map[string]any{"eu": "EULA-2031", "grace_days": 14}
	doc["product"].(map[string]any)["edition"] = "enterprise"
	sd := must(envelope.Sign(pack.TypePack, pack.PackVersion, doc, ch, [][]byte{chDER}))
	signed := addField(t, sd.Marshal(), "signed_note", "added by a newer licet; ignored")
	sl := must(envelope.Seal(pack.TypePack, pack.PackVersion, siteHPKE.PublicBytes(), signed))
	sealed := addField(t, sl.Marshal(), "sealed_note", "added by a newer licet; ignored")
	write("pack-v1-future.txt", armor.Encode(armor.Block{Type: armor.TypeLicensePack, Version: pack.PackVersion, Body: sealed}))

	v := vectors{
		Comment: "Test vectors of docs/formats.md. Every file here verifies at 'generated'. " +
			"Regenerate with: go test ./pack -run Golden -update",
		Generated: at, Vendor: vendor, RootFingerprint: pki.Fingerprint(root.Cert.Raw), ClearinghouseID: ch.ID(),
		SiteID: siteID, SiteName: siteName, SiteHPKEID: siteHPKE.ID(), CustomerID: customer,
		PurchaseRequest: *req, Pack: p, FuturePack: fp,
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	write("vectors.json", append(out, '\n'))
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}

// addField adds a top-level field to a JSON object.
func addField(t *testing.T, obj []byte, k, v string) []byte {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		t.Fatal(err)
	}
	m[k] = must(json.Marshal(v))
	return must(json.Marshal(m))
}

package armor_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/licet/licet/armor"
)

// body returns n deterministic bytes that cover every byte value.
func body(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/256)
	}
	return b
}

func TestEncodeExactText(t *testing.T) {
	// A fixed test vector, also given in docs/formats.md.
	got := string(armor.Encode(armor.Block{Type: armor.TypeLicense, Version: 1, Body: []byte("hello, licet")}))
	want := "-----BEGIN LICET LICENSE-----\n" +
		"Version: 1\n" +
		"Checksum: sha256:18009411aa524526\n" +
		"\n" +
		"aGVsbG8sIGxpY2V0\n" +
		"-----END LICET LICENSE-----\n"
	if got != want {
		t.Fatalf("Encode:\n%s\nwant:\n%s", got, want)
	}
	sum := sha256.Sum256([]byte("hello, licet"))
	if hex.EncodeToString(sum[:8]) != "18009411aa524526" {
		t.Fatal("the checksum is not the first 8 bytes of SHA-256 in hex")
	}
}

// Encode writes the text the format describes (header, then base64 cut
// into lines of 64) for bodies around the line boundaries, and its lines
// are those encoding/pem writes.
func TestEncodeLines(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 47, 48, 49, 95, 96, 97, 1000, 4096} {
		b := body(n)
		enc := base64.StdEncoding.EncodeToString(b)
		var lines strings.Builder
		for len(enc) > 64 {
			lines.WriteString(enc[:64] + "\n")
			enc = enc[64:]
		}
		if enc != "" {
			lines.WriteString(enc + "\n")
		}
		sum := sha256.Sum256(b)
		want := "-----BEGIN LICET LICENSE-----\nVersion: 12\nChecksum: sha256:" + hex.EncodeToString(sum[:8]) + "\n\n" +
			lines.String() + "-----END LICET LICENSE-----\n"
		if got := string(armor.Encode(armor.Block{Type: armor.TypeLicense, Version: 12, Body: b})); got != want {
			t.Fatalf("n=%d: Encode:\n%s\nwant:\n%s", n, got, want)
		}
		pemText := string(pem.EncodeToMemory(&pem.Block{Type: "X", Bytes: b}))
		pemBody := strings.TrimSuffix(strings.TrimPrefix(pemText, "-----BEGIN X-----\n"), "-----END X-----\n")
		if got := string(armor.AppendBase64Lines([]byte("x"), b)); got != "x"+pemBody {
			t.Fatalf("n=%d: AppendBase64Lines = %q, encoding/pem writes %q", n, got, pemBody)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	types := []string{armor.TypeCertRequest, armor.TypeSiteCertificate, armor.TypePurchaseRequest,
		armor.TypeLicensePack, armor.TypeLicense, armor.TypeImageSignature}
	for _, n := range []int{0, 1, 2, 3, 47, 48, 49, 95, 96, 97, 1000, 4096} {
		for _, typ := range types {
			in := armor.Block{Type: typ, Version: 1 + n%3, Body: body(n)}
			text := armor.Encode(in)
			if !bytes.HasSuffix(text, []byte("\n")) {
				t.Fatalf("n=%d: encoding does not end in a newline", n)
			}
			for _, l := range strings.Split(string(text), "\n") {
				if len(l) > 64 && !strings.HasPrefix(l, "-----") {
					t.Fatalf("n=%d: line longer than 64 columns: %q", n, l)
				}
			}
			out, err := armor.Decode(text, typ)
			if err != nil {
				t.Fatalf("n=%d type=%s: %v", n, typ, err)
			}
			if out.Type != in.Type || out.Version != in.Version || !bytes.Equal(out.Body, in.Body) {
				t.Fatalf("n=%d: round trip changed the block: %+v", n, out)
			}
			if _, err := armor.Decode(text, ""); err != nil {
				t.Fatalf("n=%d: Decode without a wanted type: %v", n, err)
			}
		}
	}
}

// TestSurvivesMail checks the changes that mail clients, editors and copy and
// paste make around and inside a block, all of which must be accepted.
func TestSurvivesMail(t *testing.T) {
	in := armor.Block{Type: armor.TypeLicensePack, Version: 1, Body: body(700)}
	text := string(armor.Encode(in))
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	blank := 3 // index of the blank line after the headers
	bodyText := strings.Join(lines[blank+1:len(lines)-1], "")
	rewrap := func(width int) string {
		var b strings.Builder
		for _, l := range lines[:blank+1] {
			b.WriteString(l + "\n")
		}
		for s := bodyText; s != ""; {
			n := min(width, len(s))
			b.WriteString(s[:n] + "\n")
			s = s[n:]
		}
		b.WriteString(lines[len(lines)-1] + "\n")
		return b.String()
	}
	cases := map[string]string{
		"as written":             text,
		"CRLF":                   strings.ReplaceAll(text, "\n", "\r\n"),
		"CR only":                strings.ReplaceAll(text, "\n", "\r"),
		"no final EOL":           strings.TrimSuffix(text, "\n"),
		"mail around it":         "Hello,\r\n\r\nplease find your license pack below.\r\n\r\n" + strings.ReplaceAll(text, "\n", "\r\n") + "\r\n-- \r\nSales\r\nACME: we make licenses\r\n",
		"trailing blanks":        strings.ReplaceAll(text, "\n", " \t \n"),
		"indented BEGIN":         "   " + text,
		"rewrapped 76":           rewrap(76),
		"rewrapped 20":           rewrap(20),
		"blank lines in body":    strings.Replace(text, "\n"+bodyText[:64]+"\n", "\n"+bodyText[:64]+"\n\n\n", 1),
		"two blocks, first wins": text + string(armor.Encode(armor.Block{Type: armor.TypeLicensePack, Version: 1, Body: []byte("second")})),
		"colon-less text before": "-----\nsome text: with colon\n" + text,
	}
	for name, c := range cases {
		out, err := armor.Decode([]byte(c), armor.TypeLicensePack)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(out.Body, in.Body) || out.Version != 1 {
			t.Errorf("%s: decoded block differs", name)
		}
	}
}

func TestRejects(t *testing.T) {
	good := string(armor.Encode(armor.Block{Type: armor.TypeLicensePack, Version: 1, Body: body(300)}))
	lines := strings.Split(good, "\n")
	replaceLine := func(i int, l string) string {
		c := append([]string(nil), lines...)
		c[i] = l
		return strings.Join(c, "\n")
	}
	cases := []struct {
		name, text, want string
	}{
		{"empty", "", "not a licet file"},
		{"no BEGIN line", "hello\nworld\n", "no '-----BEGIN LICET ...-----' line found"},
		{"PGP block", "-----BEGIN PGP MESSAGE-----\n\nabc\n-----END PGP MESSAGE-----\n", "not a licet file"},
		{"wrong type", string(armor.Encode(armor.Block{Type: armor.TypeLicense, Version: 1, Body: []byte("x")})), "this file is a license, not a license pack"},
		{"truncated in body", good[:len(good)/2], "license pack file is truncated"},
		{"truncated before END", strings.Join(lines[:len(lines)-2], "\n"), "truncated"},
		{"truncated after BEGIN", lines[0] + "\n", "truncated"},
		{"END of another type", strings.Replace(good, "-----END LICET LICENSE PACK-----", "-----END LICET LICENSE-----", 1), "truncated"},
		{"garbled base64", replaceLine(5, "*"+lines[5][1:]), "not valid base64"},
		{"base64 with a space", replaceLine(5, lines[5][:10]+" "+lines[5][10:]), "not valid base64"},
		{"quoted by a mail client", strings.ReplaceAll(good, "\n", "\n> "), "truncated"},
		{"missing Version", strings.Replace(good, "Version: 1\n", "", 1), "has no Version header"},
		{"Version zero", strings.Replace(good, "Version: 1\n", "Version: 0\n", 1), "not a positive number"},
		{"Version negative", strings.Replace(good, "Version: 1\n", "Version: -1\n", 1), "not a positive number"},
		{"Version word", strings.Replace(good, "Version: 1\n", "Version: one\n", 1), "not a positive number"},
		{"Version with plus", strings.Replace(good, "Version: 1\n", "Version: +1\n", 1), "not a positive number"},
		{"Version leading zero", strings.Replace(good, "Version: 1\n", "Version: 01\n", 1), "not a positive number"},
		{"Version twice", strings.Replace(good, "Version: 1\n", "Version: 1\nVersion: 2\n", 1), "appears more than once"},
		{"Checksum twice", strings.Replace(good, "Version: 1\n", "Version: 1\n"+lines[2]+"\n", 1), "appears more than once"},
		{"missing Checksum", strings.Replace(good, lines[2]+"\n", "", 1), "has no Checksum header"},
		{"wrong Checksum", replaceLine(2, "Checksum: sha256:0000000000000000"), "checksum does not match"},
		{"other checksum algorithm", replaceLine(2, "Checksum: sha512:"+lines[2][len("Checksum: sha256:"):]), "checksum does not match"},
		{"unknown header", strings.Replace(good, "Version: 1\n", "Version: 1\nComment: hi\n", 1), `unknown header "Comment"`},
		{"lower-case header", strings.Replace(good, "Version: 1\n", "version: 1\n", 1), `unknown header "version"`},
		{"header without colon", strings.Replace(good, "Version: 1\n", "Version 1\n", 1), "is not 'Name: value'"},
		{"no blank line", strings.Replace(good, lines[2]+"\n\n", lines[2]+"\n", 1), "is not 'Name: value'"},
		{"no body", strings.Join(append(lines[:3:3], lines[len(lines)-2:]...), "\n"), "has no body"},
		{"body changed", replaceLine(6, strings.Repeat("A", len(lines[6]))), "damaged"},
		{"body line dropped", strings.Replace(good, lines[6]+"\n", "", 1), "damaged"},
	}
	for _, c := range cases {
		_, err := armor.Decode([]byte(c.text), armor.TypeLicensePack)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not contain %q", c.name, err, c.want)
		}
		var ae *armor.Error
		if !errors.As(err, &ae) {
			t.Errorf("%s: error is a %T, not an *armor.Error", c.name, err)
		}
	}
}

// TestEveryByteFlip flips the low bit of every byte of an armored block,
// from the BEGIN line through the END line, and requires each copy to be
// rejected.
func TestEveryByteFlip(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 200} {
		text := armor.Encode(armor.Block{Type: armor.TypeLicensePack, Version: 1, Body: body(n)})
		for i := range text {
			c := bytes.Clone(text)
			c[i] ^= 0x01
			for _, want := range []string{"", armor.TypeLicensePack} {
				if b, err := armor.Decode(c, want); err == nil {
					t.Fatalf("body %d bytes: flipping byte %d (%q) was not caught (want %q): got %+v", n, i, text[i], want, b)
				}
			}
		}
	}
}

func TestDecodeStandardBase64(t *testing.T) {
	// The body is standard base64 with padding; URL-safe characters are refused.
	raw := []byte{0xfb, 0xff, 0xbf} // "+/+/" in standard, "-_-_" in URL encoding
	text := string(armor.Encode(armor.Block{Type: armor.TypeLicense, Version: 1, Body: raw}))
	if !strings.Contains(text, "\n"+base64.StdEncoding.EncodeToString(raw)+"\n") {
		t.Fatalf("body is not standard base64:\n%s", text)
	}
	url := strings.Replace(text, base64.StdEncoding.EncodeToString(raw), base64.URLEncoding.EncodeToString(raw), 1)
	if _, err := armor.Decode([]byte(url), armor.TypeLicense); err == nil || !strings.Contains(err.Error(), "base64") {
		t.Fatalf("URL-safe base64 accepted: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(armor.Encode(armor.Block{Type: armor.TypeLicensePack, Version: 1, Body: body(100)}))
	f.Add(armor.Encode(armor.Block{Type: armor.TypeLicense, Version: 3, Body: nil}))
	f.Add([]byte(strings.ReplaceAll(string(armor.Encode(armor.Block{Type: armor.TypePurchaseRequest, Version: 1, Body: body(5)})), "\n", "\r\n")))
	f.Add([]byte("-----BEGIN LICET X-----\nVersion: 1\n\n-----END LICET X-----\n"))
	f.Add([]byte("-----BEGIN LICET -----"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := armor.Decode(data, "")
		if err != nil {
			return
		}
		// Whatever decodes must encode and decode to the same block.
		again, err := armor.Decode(armor.Encode(b), b.Type)
		if err != nil {
			t.Fatalf("re-encoded block does not decode: %v", err)
		}
		if again.Type != b.Type || again.Version != b.Version || !bytes.Equal(again.Body, b.Body) {
			t.Fatalf("re-encoded block differs: %+v vs %+v", again, b)
		}
		if _, err := armor.Decode(data, armor.TypeLicensePack); err == nil && b.Type != armor.TypeLicensePack {
			t.Fatalf("block of type %q accepted as a license pack", b.Type)
		}
	})
}

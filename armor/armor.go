// Package armor reads and writes licet's armored text files: the purchase
// requests, packs, certificates and licenses that people carry by e-mail or USB
// stick. An armored file names its own type and format version, carries a
// checksum so that a garbled or truncated copy is caught before anything else
// reads it, and survives mail clients that rewrap lines or change line endings.
//
//	-----BEGIN LICET LICENSE PACK-----
//	Version: 1
//	Checksum: sha256:1f2e3d4c5b6a7980
//
//	eyJ0eXBlIjoi...
//	-----END LICET LICENSE PACK-----
//
// The package imports the standard library only, so the verifier may use it.
package armor

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// The types of armored block licet writes.
const (
	TypeCertRequest     = "CERTIFICATION REQUEST"
	TypeSiteCertificate = "SITE CERTIFICATE"
	TypePurchaseRequest = "PURCHASE REQUEST"
	TypeLicensePack     = "LICENSE PACK"
	TypeLicense         = "LICENSE"
	TypeImageSignature  = "IMAGE SIGNATURE"
	TypePAYGPacket      = "PAYG PACKET"
	TypeUsageReport     = "USAGE REPORT"
	TypeSiteRenewal     = "SITE RENEWAL"
)

const (
	beginPrefix = "-----BEGIN LICET "
	endPrefix   = "-----END LICET "
	dashes      = "-----"
	lineWidth   = 64
)

// Block is one decoded armored block.
type Block struct {
	Type    string // e.g. TypeLicensePack
	Version int    // format version of the body
	Body    []byte // the decoded body
}

// Encode writes b as armored text ending in a newline.
func Encode(b Block) []byte {
	n := base64.StdEncoding.EncodedLen(len(b.Body))
	out := make([]byte, 0, 2*len(b.Type)+n+n/lineWidth+96)
	out = append(out, beginPrefix...)
	out = append(out, b.Type...)
	out = append(out, dashes+"\nVersion: "...)
	out = strconv.AppendInt(out, int64(b.Version), 10)
	out = append(out, "\nChecksum: "...)
	out = appendChecksum(out, b.Body)
	out = append(out, "\n\n"...)
	out = AppendBase64Lines(out, b.Body)
	out = append(out, endPrefix...)
	out = append(out, b.Type...)
	return append(out, dashes+"\n"...)
}

// AppendBase64Lines appends data in standard base64 to dst, 64 characters a
// line, each line ending in a newline: the body of an armored block, and of
// a PEM block as encoding/pem writes it.
func AppendBase64Lines(dst, data []byte) []byte {
	const perLine = lineWidth / 4 * 3 // bytes that make one full line
	for len(data) > 0 {
		k := min(perLine, len(data))
		dst = base64.StdEncoding.AppendEncode(dst, data[:k])
		dst = append(dst, '\n')
		data = data[k:]
	}
	return dst
}

func appendChecksum(dst, body []byte) []byte {
	sum := sha256.Sum256(body)
	return hex.AppendEncode(append(dst, "sha256:"...), sum[:8])
}

func checksum(body []byte) string { return string(appendChecksum(nil, body)) }

// Error describes why an armored file could not be read.
type Error struct{ Reason string }

func (e *Error) Error() string { return e.Reason }

func fail(format string, args ...any) error { return &Error{Reason: fmt.Sprintf(format, args...)} }

// Decode finds the first armored block in data and decodes it. Text around the
// block (a mail's greeting, a signature) is ignored; inside it, only line
// endings and trailing blanks may differ from what Encode wrote, and every
// other change is caught. If wantType is not empty,
// a block of another type is an error that names both types.
func Decode(data []byte, wantType string) (Block, error) {
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	lines := strings.Split(text, "\n")
	start := -1
	var typ string
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, beginPrefix) && strings.HasSuffix(l, dashes) && len(l) > len(beginPrefix)+len(dashes) {
			typ = l[len(beginPrefix) : len(l)-len(dashes)]
			start = i
			break
		}
	}
	if start < 0 {
		return Block{}, fail("not a licet file: no '-----BEGIN LICET ...-----' line found")
	}
	if wantType != "" && typ != wantType {
		return Block{}, fail("this file is a %s, not a %s", strings.ToLower(typ), strings.ToLower(wantType))
	}
	b := Block{Type: typ}
	endLine := endPrefix + typ + dashes
	if !hasLine(lines[start+1:], endLine) {
		return Block{}, fail("%s file is truncated: no %q line; copy the whole file again", strings.ToLower(typ), endLine)
	}
	i := start + 1
	var sum string
	seen := map[string]bool{}
	// Headers run up to the first blank line.
	for ; i < len(lines); i++ {
		l := strings.TrimRight(lines[i], " \t")
		if l == "" {
			i++
			break
		}
		if l == endLine {
			return Block{}, fail("%s file has no body", strings.ToLower(typ))
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			return Block{}, fail("%s file is garbled: header line %d (%q) is not 'Name: value'", strings.ToLower(typ), i+1, l)
		}
		v = strings.TrimPrefix(v, " ")
		if seen[k] {
			return Block{}, fail("%s file is garbled: header %q appears more than once", strings.ToLower(typ), k)
		}
		seen[k] = true
		switch k {
		case "Version":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || strconv.Itoa(n) != v {
				return Block{}, fail("%s file is garbled: Version %q is not a positive number", strings.ToLower(typ), v)
			}
			b.Version = n
		case "Checksum":
			sum = v
		default:
			return Block{}, fail("%s file is garbled: unknown header %q", strings.ToLower(typ), k)
		}
	}
	if b.Version == 0 {
		return Block{}, fail("%s file is garbled: it has no Version header", strings.ToLower(typ))
	}
	var body strings.Builder
	found := false
	for ; i < len(lines); i++ {
		l := strings.TrimRight(lines[i], " \t")
		if l == endLine {
			found = true
			break
		}
		body.WriteString(l)
	}
	if !found {
		return Block{}, fail("%s file is truncated: no %q line; copy the whole file again", strings.ToLower(typ), endLine)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(body.String())
	if err != nil {
		return Block{}, fail("%s file is garbled: its body is not valid base64 (%v); copy the whole file again", strings.ToLower(typ), err)
	}
	if sum == "" {
		return Block{}, fail("%s file is garbled: it has no Checksum header", strings.ToLower(typ))
	}
	if sum != checksum(raw) {
		return Block{}, fail("%s file is damaged: its checksum does not match its body; copy the whole file again", strings.ToLower(typ))
	}
	b.Body = raw
	return b, nil
}

// hasLine reports whether one of lines, without trailing blanks, is want.
func hasLine(lines []string, want string) bool {
	for _, l := range lines {
		if strings.TrimRight(l, " \t") == want {
			return true
		}
	}
	return false
}

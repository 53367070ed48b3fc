package gateway

import (
	"encoding/base64"
	"strconv"
	"strings"
)

// This file parses the part of Structured Field Values (RFC 8941) that the
// Signature-Input, Signature and Content-Digest headers of HTTP Message
// Signatures (RFC 9421) and Digest Fields (RFC 9530) use: dictionaries whose
// members are inner lists of strings or byte sequences, with parameters whose
// values are integers, strings, tokens or booleans. Decimals are not
// supported (no field licet reads uses them) and are a parse error.

// sfKind is the type of a bare item.
type sfKind uint8

const (
	sfInteger sfKind = iota + 1
	sfString
	sfToken
	sfBytes
	sfBool
)

// sfItem is a bare item.
type sfItem struct {
	kind  sfKind
	i     int64  // sfInteger; sfBool: 0 or 1
	s     string // sfString, sfToken
	bytes []byte // sfBytes
}

// sfParam is one parameter, in the order sent.
type sfParam struct {
	key string
	val sfItem
}

// sfMember is a dictionary member: an item or an inner list, with parameters.
type sfMember struct {
	key    string
	inner  bool      // the value is an inner list
	item   sfItem    // !inner
	list   []sfInner // inner
	params []sfParam // of the item or the inner list
}

// sfInner is an item of an inner list.
type sfInner struct {
	item   sfItem
	params []sfParam
}

// maxSFMembers bounds the members of a dictionary and the items of an inner
// list, so that a hostile header costs little.
const maxSFMembers = 64

// parseDictionary parses an RFC 8941 dictionary (section 4.2.2). A key given
// twice keeps its last value, as the RFC says, in the place of the first.
func parseDictionary(s string) ([]sfMember, string) {
	p := sfParser{s: s}
	p.skipSP()
	var out []sfMember
	for !p.done() {
		key, problem := p.key()
		if problem != "" {
			return nil, problem
		}
		m := sfMember{key: key}
		if p.peek() == '=' {
			p.i++
			if p.peek() == '(' {
				m.inner = true
				if m.list, problem = p.innerList(); problem != "" {
					return nil, problem
				}
			} else if m.item, problem = p.bareItem(); problem != "" {
				return nil, problem
			}
		} else {
			m.item = sfItem{kind: sfBool, i: 1}
		}
		if m.params, problem = p.params(); problem != "" {
			return nil, problem
		}
		replaced := false
		for i := range out {
			if out[i].key == key {
				out[i], replaced = m, true
			}
		}
		if !replaced {
			if len(out) == maxSFMembers {
				return nil, "more than 64 members"
			}
			out = append(out, m)
		}
		p.skipOWS()
		if p.done() {
			break
		}
		if p.peek() != ',' {
			return nil, "members are not separated by a comma at position " + strconv.Itoa(p.i)
		}
		p.i++
		p.skipOWS()
		if p.done() {
			return nil, "a comma ends the field"
		}
	}
	return out, ""
}

// sfParser is a position in a field value.
type sfParser struct {
	s string
	i int
}

func (p *sfParser) done() bool { return p.i >= len(p.s) }

func (p *sfParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *sfParser) skipSP() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *sfParser) skipOWS() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// key parses a key: lcalpha or "*", then lcalpha, digits, "_-.*".
func (p *sfParser) key() (string, string) {
	start := p.i
	if c := p.peek(); !(c >= 'a' && c <= 'z' || c == '*') {
		return "", "a key does not start with a lowercase letter or * at position " + strconv.Itoa(p.i)
	}
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '*' {
			p.i++
			continue
		}
		break
	}
	return p.s[start:p.i], ""
}

// innerList parses "(" items ")" (without the parameters after it).
func (p *sfParser) innerList() ([]sfInner, string) {
	p.i++ // (
	var out []sfInner
	for {
		p.skipSP()
		if p.done() {
			return nil, "an inner list is not closed"
		}
		if p.peek() == ')' {
			p.i++
			return out, ""
		}
		if len(out) == maxSFMembers {
			return nil, "an inner list has more than 64 items"
		}
		it, problem := p.bareItem()
		if problem != "" {
			return nil, problem
		}
		params, problem := p.params()
		if problem != "" {
			return nil, problem
		}
		out = append(out, sfInner{item: it, params: params})
		if c := p.peek(); c != ' ' && c != ')' {
			return nil, "items of an inner list are not separated by spaces at position " + strconv.Itoa(p.i)
		}
	}
}

// params parses *( ";" *SP key [ "=" bare-item ] ).
func (p *sfParser) params() ([]sfParam, string) {
	var out []sfParam
	for p.peek() == ';' {
		p.i++
		p.skipSP()
		key, problem := p.key()
		if problem != "" {
			return nil, problem
		}
		val := sfItem{kind: sfBool, i: 1}
		if p.peek() == '=' {
			p.i++
			if val, problem = p.bareItem(); problem != "" {
				return nil, problem
			}
		}
		replaced := false
		for i := range out {
			if out[i].key == key {
				out[i].val, replaced = val, true
			}
		}
		if !replaced {
			if len(out) == maxSFMembers {
				return nil, "more than 64 parameters"
			}
			out = append(out, sfParam{key: key, val: val})
		}
	}
	return out, ""
}

// bareItem parses an integer, string, token, byte sequence or boolean.
func (p *sfParser) bareItem() (sfItem, string) {
	c := p.peek()
	switch {
	case c == '-' || c >= '0' && c <= '9':
		start := p.i
		if c == '-' {
			p.i++
		}
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
		}
		digits := p.i - start
		if c == '-' {
			digits--
		}
		if digits == 0 || digits > 15 {
			return sfItem{}, "an integer has no digits or more than 15"
		}
		if p.peek() == '.' {
			return sfItem{}, "decimals are not supported"
		}
		n, _ := strconv.ParseInt(p.s[start:p.i], 10, 64)
		return sfItem{kind: sfInteger, i: n}, ""
	case c == '"':
		p.i++
		var b strings.Builder
		for {
			if p.done() {
				return sfItem{}, "a string is not closed"
			}
			ch := p.s[p.i]
			p.i++
			switch {
			case ch == '\\':
				if p.done() || (p.s[p.i] != '"' && p.s[p.i] != '\\') {
					return sfItem{}, "a string has an escape other than \\\" or \\\\"
				}
				b.WriteByte(p.s[p.i])
				p.i++
			case ch == '"':
				return sfItem{kind: sfString, s: b.String()}, ""
			case ch < 0x20 || ch > 0x7e:
				return sfItem{}, "a string holds a character outside printable ASCII"
			default:
				b.WriteByte(ch)
			}
		}
	case c == ':':
		p.i++
		end := strings.IndexByte(p.s[p.i:], ':')
		if end < 0 {
			return sfItem{}, "a byte sequence is not closed with ':'"
		}
		b, err := base64.StdEncoding.DecodeString(p.s[p.i : p.i+end])
		if err != nil {
			return sfItem{}, "a byte sequence is not standard base64"
		}
		p.i += end + 1
		return sfItem{kind: sfBytes, bytes: b}, ""
	case c == '?':
		p.i++
		switch p.peek() {
		case '0', '1':
			v := int64(p.peek() - '0')
			p.i++
			return sfItem{kind: sfBool, i: v}, ""
		}
		return sfItem{}, "a boolean is not ?0 or ?1"
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '*':
		start := p.i
		for p.i < len(p.s) && isTokenChar(p.s[p.i]) {
			p.i++
		}
		return sfItem{kind: sfToken, s: p.s[start:p.i]}, ""
	}
	return sfItem{}, "no value at position " + strconv.Itoa(p.i)
}

// isTokenChar reports whether c may appear in an sf-token after its first
// character: tchar, ":" or "/".
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~:/", c) >= 0
}

// appendSFString appends s as an sf-string (s holds printable ASCII only).
func appendSFString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, s[i])
	}
	return append(dst, '"')
}

// appendSFItem appends the serialization of a bare item (RFC 8941 4.1.3).
func appendSFItem(dst []byte, it sfItem) []byte {
	switch it.kind {
	case sfInteger:
		return strconv.AppendInt(dst, it.i, 10)
	case sfString:
		return appendSFString(dst, it.s)
	case sfToken:
		return append(dst, it.s...)
	case sfBytes:
		dst = append(dst, ':')
		dst = base64.StdEncoding.AppendEncode(dst, it.bytes)
		return append(dst, ':')
	case sfBool:
		if it.i == 1 {
			return append(dst, "?1"...)
		}
		return append(dst, "?0"...)
	}
	return dst
}

// appendSFParams appends ";key=value" for each parameter (";key" for true).
func appendSFParams(dst []byte, params []sfParam) []byte {
	for _, p := range params {
		dst = append(dst, ';')
		dst = append(dst, p.key...)
		if p.val.kind == sfBool && p.val.i == 1 {
			continue
		}
		dst = append(dst, '=')
		dst = appendSFItem(dst, p.val)
	}
	return dst
}

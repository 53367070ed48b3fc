// Package canonjson encodes values as canonical JSON: object keys sorted,
// no insignificant white space, no HTML escaping, numbers as written. The same
// value always gives the same bytes, which is what licet signs. Verification
// never re-encodes: it checks the signature over the bytes as received.
//
// The package imports the standard library only, so the verifier may use it.
package canonjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// Canonical is implemented by a type that encodes itself as canonical JSON
// in one pass (its fields in the order of their keys, no HTML escaping),
// where Marshal would encode, decode and encode again: Marshal returns its
// bytes as they are. The type's tests must show that they are the bytes
// Marshal makes of the same value without it.
type Canonical interface {
	CanonicalJSON() ([]byte, error)
}

// Marshal returns the canonical JSON encoding of v.
func Marshal(v any) ([]byte, error) {
	if c, ok := v.(Canonical); ok {
		return c.CanonicalJSON()
	}
	first, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(first))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return nil, fmt.Errorf("canonjson: re-read: %w", err)
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(generic); err != nil { // maps encode with sorted keys
		return nil, err
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

// UnmarshalStrict decodes data into v, refusing trailing data. Unknown fields
// are allowed, so that a newer format version stays readable by older code.
func UnmarshalStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// dec.More would miss a stray '}' or ']': only the end of input may follow.
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("unexpected data after the JSON value")
	}
	return nil
}

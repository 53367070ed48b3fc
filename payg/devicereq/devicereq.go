// Package devicereq is the wire contract of a pay-as-you-go device's
// requests to the vendor (docs/payg-protocol.md): what a registration's
// signature covers, and the headers of a signed device request, whose
// Ed25519 signature and HMAC under the initialization key cover one message.
// The agent (payg/meter) makes them and the vendor (payg/provisioning)
// checks them with this one definition, so the two cannot drift apart.
package devicereq

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"time"
)

// Signature contexts: a registration signature can never pass for a request
// signature, nor the other way round.
const (
	RegisterContext = "licet/v1 payg register\x00"
	RequestContext  = "licet/v1 payg request\x00"
)

// Headers of a signed device request.
const (
	HeaderDevice    = "Licet-Device"
	HeaderDate      = "Licet-Date"
	HeaderNonce     = "Licet-Nonce"
	HeaderSignature = "Licet-Signature"
	HeaderMAC       = "Licet-MAC"
)

// RegisterMessage is what a registration's signature covers: the one-time
// code and the device's HPKE key as sent (base64).
func RegisterMessage(code, hpkeKeyB64 string) []byte {
	return []byte(RegisterContext + code + "\x00" + hpkeKeyB64)
}

// Message is what a device request's signature and MAC cover.
func Message(method, pathQuery, deviceID, date, nonce string, body []byte) []byte {
	sum := sha256.Sum256(body)
	return []byte(RequestContext + method + "\x00" + pathQuery + "\x00" + deviceID + "\x00" + date + "\x00" + nonce + "\x00" + hex.EncodeToString(sum[:]))
}

// Sign sets on h the headers of a signed device request: device, date,
// a fresh 16-byte nonce, the Ed25519 signature by dev and the HMAC-SHA256
// under initKey, both over Message.
func Sign(h http.Header, method, pathQuery, deviceID string, dev ed25519.PrivateKey, initKey []byte, now time.Time, body []byte) {
	var n [16]byte
	rand.Read(n[:])
	date := now.UTC().Format(time.RFC3339)
	nonce := base64.RawURLEncoding.EncodeToString(n[:])
	msg := Message(method, pathQuery, deviceID, date, nonce, body)
	mac := hmac.New(sha256.New, initKey)
	mac.Write(msg)
	h.Set(HeaderDevice, deviceID)
	h.Set(HeaderDate, date)
	h.Set(HeaderNonce, nonce)
	h.Set(HeaderSignature, base64.StdEncoding.EncodeToString(ed25519.Sign(dev, msg)))
	h.Set(HeaderMAC, base64.StdEncoding.EncodeToString(mac.Sum(nil)))
}

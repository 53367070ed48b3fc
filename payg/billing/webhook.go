package billing

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/ids"
)

// SignatureHeader carries a webhook's signature, as Stripe's
// Stripe-Signature does: "t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
// t + "." + raw body)>". Several v1 entries may be given (a processor
// rotating its secret); one matching suffices.
const SignatureHeader = "Licet-Webhook-Signature"

// WebhookTolerance is how far a webhook's timestamp may be from the
// vendor's clock, either way; older deliveries are refused as replays.
const WebhookTolerance = 5 * time.Minute

// Webhook is an endpoint a payment processor posts events to.
type Webhook struct {
	Name    string    `json:"name"`
	Secret  []byte    `json:"-"` // as stored: sealed if the vendor has a data key
	Created time.Time `json:"created"`
}

// Event is the body a processor posts: one payment received or refunded.
type Event struct {
	ID        string      `json:"id"`   // the processor's event ID: a redelivery carries the same
	Type      string      `json:"type"` // "payment" or "refund"
	Account   string      `json:"account"`
	Amount    json.Number `json:"amount"`
	Currency  string      `json:"currency"`
	Reference string      `json:"reference,omitempty"`
}

// WebhookAnswer is the answer to a delivered event.
type WebhookAnswer struct {
	Event    string   `json:"event"`
	Posting  *Posting `json:"posting"`
	Replayed bool     `json:"replayed"` // a redelivery: nothing was posted
}

// AddWebhook makes an endpoint and its secret, returned once
// ("whsec_" and 64 hex digits).
func (s *Service) AddWebhook(ctx context.Context, name string) (*Webhook, string, error) {
	if err := ids.CheckSlug("name", name); err != nil {
		return nil, "", err
	}
	secret := "whsec_" + hex.EncodeToString(ids.Random(32))
	stored := []byte(secret)
	if s.Secrets != nil {
		var err error
		if stored, err = s.Secrets.Seal("webhook:"+name, stored); err != nil {
			return nil, "", err
		}
	}
	w := &Webhook{Name: name, Secret: stored, Created: s.Now().UTC()}
	if err := s.Store.CreateWebhook(ctx, w); err != nil {
		return nil, "", err
	}
	return w, secret, nil
}

// SignWebhook returns the signature header value of body at time t under
// secret, as a processor computes it.
func SignWebhook(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(webhookMAC(secret, ts, body))
}

func webhookMAC(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

// verifyWebhook checks header against body and secret at now.
func verifyWebhook(secret, header string, body []byte, now time.Time) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return errs.E(errs.Unauthenticated, "%s header is missing or malformed: want t=<unix seconds>,v1=<hex HMAC-SHA256>", SignatureHeader)
	}
	want := webhookMAC(secret, ts, body)
	ok := false
	for _, sig := range sigs {
		if hmac.Equal(sig, want) { // constant time
			ok = true
		}
	}
	if !ok {
		return errs.E(errs.Unauthenticated, "webhook signature does not match: check the endpoint's secret")
	}
	age := now.Sub(time.Unix(unix, 0))
	if age > WebhookTolerance || age < -WebhookTolerance {
		return errs.E(errs.Unauthenticated, "webhook timestamp %s is %s away from the vendor's clock (at most %s allowed): a stale or replayed delivery; check the clocks", time.Unix(unix, 0).UTC().Format(time.RFC3339), age.Round(time.Second), WebhookTolerance)
	}
	return nil
}

// maxEventID bounds an event ID.
const maxEventID = 255

// Deliver checks and applies one webhook delivery: the signature header
// against the endpoint's secret (constant time) and its timestamp (at most
// WebhookTolerance old), then posts the event, keyed by its ID so that a
// redelivery answers as the first delivery did without a second posting.
func (s *Service) Deliver(ctx context.Context, endpoint, header string, body []byte) (*WebhookAnswer, error) {
	w, err := s.Store.Webhook(ctx, endpoint)
	if errs.Is(err, errs.NotFound) {
		return nil, errs.E(errs.NotFound, "no webhook endpoint %q; make one with 'licet vendor webhook add --name %s'", endpoint, endpoint)
	}
	if err != nil {
		return nil, err
	}
	secret := w.Secret
	if s.Secrets != nil {
		if secret, err = s.Secrets.Open("webhook:"+w.Name, w.Secret); err != nil {
			return nil, err
		}
	}
	if err := verifyWebhook(string(secret), header, body, s.Now()); err != nil {
		return nil, err
	}
	var ev Event
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "webhook event is not the expected JSON {id, type, account, amount, currency, reference}")
	}
	if ev.ID == "" || len(ev.ID) > maxEventID {
		return nil, errs.E(errs.Invalid, "id: the event ID is required (at most %d bytes)", maxEventID)
	}
	if ev.Type != KindPayment && ev.Type != KindRefund {
		return nil, errs.E(errs.Invalid, "type %q is not an event this endpoint takes: send \"payment\" or \"refund\"", ev.Type)
	}
	sum := sha256.Sum256(body)
	idem := Idempotency{Key: "webhook:" + endpoint + ":" + ev.ID, Op: "webhook " + ev.Type, RequestHash: sum[:]}
	p, replayed, err := s.pay(ctx, ev.Type, MoneyRequest{Account: ev.Account, Amount: ev.Amount, Currency: ev.Currency, Reference: ev.Reference, Memo: "webhook " + endpoint + " event " + ev.ID}, idem)
	if errs.Is(err, errs.Conflict) {
		return nil, errs.E(errs.Conflict, "event %s was delivered before with another body; a redelivery must be byte for byte the same", ev.ID)
	}
	if err != nil {
		return nil, err
	}
	return &WebhookAnswer{Event: ev.ID, Posting: p, Replayed: replayed}, nil
}

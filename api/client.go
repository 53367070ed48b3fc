package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/licensing/clientimage"
	"github.com/licet/licet/licensing/licenseserver"
)

// Client calls a licet server's API.
type Client struct {
	BaseURL string       // e.g. http://127.0.0.1:8080
	Token   string       // admin bearer token; empty for public calls
	HTTP    *http.Client // nil means a client with a 30 s timeout
}

// maxResponse bounds what a client reads from a server.
const maxResponse = 16 << 20

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 30 * time.Second}
}

// do sends a request with body in (JSON-encoded unless it is []byte) and
// decodes a JSON answer into out. A JSON error answer becomes an *errs.Error of
// the same kind.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ctype := "application/json"
	switch v := in.(type) {
	case nil:
	case []byte:
		body, ctype = bytes.NewReader(v), ContentTypeArmor
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	data, err := c.send(ctx, method, path, body, ctype)
	if err != nil || out == nil {
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return errs.Wrap(errs.Internal, err, "%s %s: answer is not the expected JSON", method, path)
	}
	return nil
}

// PostJSON sends body, already encoded as JSON, to path and returns the
// answer undecoded; an error answer is an error as with Post. For a caller
// that encodes its requests ahead of time or reads only part of the answer
// (the load generator).
func (c *Client) PostJSON(ctx context.Context, path string, body []byte) ([]byte, error) {
	return c.send(ctx, http.MethodPost, path, bytes.NewReader(body), "application/json")
}

// send sends a request and returns the body of a successful answer.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader, ctype string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, body)
	if err != nil {
		return nil, errs.Wrap(errs.Usage, err, "bad server URL %q", c.BaseURL)
	}
	if body != nil {
		req.Header.Set("Content-Type", ctype)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "cannot reach %s; is the server running?", c.BaseURL)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "read answer of %s %s", method, path)
	}
	if resp.StatusCode >= 400 {
		var eb errorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			e := &errs.Error{Kind: errs.KindFromCode(eb.Error.Code), Message: eb.Error.Message}
			if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs >= 0 {
				return nil, &RetryError{After: time.Duration(secs) * time.Second, Err: e}
			}
			return nil, e
		}
		return nil, errs.E(errs.Internal, "%s %s: server answered %s", method, path, resp.Status)
	}
	return data, nil
}

// Get fetches path and decodes the JSON answer into out.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, out)
}

// Post sends in (JSON, or []byte as armored text) to path and decodes the answer into out.
func (c *Client) Post(ctx context.Context, path string, in, out any) error {
	return c.do(ctx, http.MethodPost, path, in, out)
}

// AddProduct creates a product at the vendor.
func (c *Client) AddProduct(ctx context.Context, p *clearinghouse.Product) (*clearinghouse.Product, error) {
	var out clearinghouse.Product
	return &out, c.Post(ctx, "/v1/products", p, &out)
}

// ReleaseRequest is the body of POST /v1/products/{id}/releases.
type ReleaseRequest struct {
	Version string `json:"version"`
}

// ReleaseVersion makes version the product's current version at the vendor.
func (c *Client) ReleaseVersion(ctx context.Context, productID, version string) (*clearinghouse.Product, error) {
	var out clearinghouse.Product
	return &out, c.Post(ctx, "/v1/products/"+url.PathEscape(productID)+"/releases", ReleaseRequest{Version: version}, &out)
}

// AddCustomer creates a customer at the vendor.
func (c *Client) AddCustomer(ctx context.Context, cu *clearinghouse.Customer) (*clearinghouse.Customer, error) {
	var out clearinghouse.Customer
	return &out, c.Post(ctx, "/v1/customers", cu, &out)
}

// CreateEnrollment makes a one-time enrollment code for a customer.
func (c *Client) CreateEnrollment(ctx context.Context, customerID string) (*EnrollmentResponse, error) {
	var out EnrollmentResponse
	return &out, c.Post(ctx, "/v1/customers/"+customerID+"/enrollments", struct{}{}, &out)
}

// Enroll certifies a site online with an enrollment code; it returns the
// armored site certificate file.
func (c *Client) Enroll(ctx context.Context, code string, request []byte) ([]byte, error) {
	var out CertificateResponse
	err := c.Post(ctx, "/v1/sites/enroll", EnrollRequest{Code: code, Request: string(request)}, &out)
	return []byte(out.Certificate), err
}

// Certify certifies a site from its request file (admin).
func (c *Client) Certify(ctx context.Context, customerID string, request []byte) ([]byte, error) {
	var out CertificateResponse
	err := c.Post(ctx, "/v1/sites/certify", CertifyRequest{CustomerID: customerID, Request: string(request)}, &out)
	return []byte(out.Certificate), err
}

// AddOrder records an order at the vendor.
func (c *Client) AddOrder(ctx context.Context, o *clearinghouse.Order) (*clearinghouse.Order, error) {
	var out clearinghouse.Order
	return &out, c.Post(ctx, "/v1/orders", o, &out)
}

// Purchase sends a purchase request file and returns the pack.
func (c *Client) Purchase(ctx context.Context, request []byte) (*PackResponse, error) {
	var out PackResponse
	return &out, c.Post(ctx, "/v1/packs", request, &out)
}

// RetryError is an error answer that came with a Retry-After header.
type RetryError struct {
	After time.Duration
	Err   *errs.Error
}

// Error implements error.
func (e *RetryError) Error() string { return e.Err.Error() }

// Unwrap gives the server's error, so that errs.KindOf sees its kind.
func (e *RetryError) Unwrap() error { return e.Err }

// RetryAfter is the delay the server asked for.
func (e *RetryError) RetryAfter() time.Duration { return e.After }

// ChallengeWait bounds how long Challenge keeps asking a site whose
// precomputed challenges ran out (503 with Retry-After).
const ChallengeWait = 30 * time.Second

// Challenge asks a site (or a gateway in front of it) for a platform
// challenge. While the site answers that its precomputed challenges ran out,
// it asks again after the delay the site gives, for up to ChallengeWait.
func (c *Client) Challenge(ctx context.Context, req licenseserver.ChallengeRequest) (*licenseserver.ChallengeResponse, error) {
	deadline := time.Now().Add(ChallengeWait)
	for {
		out, err := c.challengeOnce(ctx, req)
		var re *RetryError
		if err == nil || !errors.As(err, &re) || errs.KindOf(err) != errs.Exhausted || time.Now().Add(re.After).After(deadline) {
			return out, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(re.After):
		}
	}
}

// challengeOnce is one challenge request, without retries.
func (c *Client) challengeOnce(ctx context.Context, req licenseserver.ChallengeRequest) (*licenseserver.ChallengeResponse, error) {
	var out licenseserver.ChallengeResponse
	return &out, c.Post(ctx, "/v1/challenges", req, &out)
}

// Grant answers a challenge and returns the license file.
func (c *Client) Grant(ctx context.Context, req *licenseserver.GrantRequest) (*GrantResponse, error) {
	var out GrantResponse
	return &out, c.Post(ctx, "/v1/licenses", req, &out)
}

// Upgrade exchanges an expired or older license (PEM) for an upgraded one.
func (c *Client) Upgrade(ctx context.Context, licensePEM []byte) (*UpgradeResponse, error) {
	var out UpgradeResponse
	return &out, c.Post(ctx, "/v1/upgrades", UpgradeRequest{License: string(licensePEM)}, &out)
}

// SignImage asks the vendor to sign a client image manifest (admin).
func (c *Client) SignImage(ctx context.Context, m *clientimage.Manifest) ([]byte, error) {
	var out ImageSignatureResponse
	err := c.Post(ctx, "/v1/images", m, &out)
	return []byte(out.Signature), err
}

// Root fetches the vendor root certificate (PEM) a server trusts.
func (c *Client) Root(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.BaseURL, "/")+"/v1/root", nil)
	if err != nil {
		return nil, errs.Wrap(errs.Usage, err, "bad server URL %q", c.BaseURL)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "cannot reach %s; is the server running?", c.BaseURL)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, errs.E(errs.Internal, "GET %s/v1/root: %s", c.BaseURL, resp.Status)
	}
	return data, nil
}

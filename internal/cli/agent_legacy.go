package cli

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/licet/licet/agent"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/gateway"
)

// legacyFlags are the flags of the agent's legacy commands: the agent, and
// the gateway that keeps its license.
type legacyFlags struct {
	fs                          *flag.FlagSet
	data, hwRoot, server, cacrt *string
	timeout                     *time.Duration
}

func addLegacyFlags(fs *flag.FlagSet) *legacyFlags {
	return &legacyFlags{fs: fs,
		data:    fs.String("data", "", "agent data directory (its client key signs the requests)"),
		hwRoot:  fs.String("hw-root", "", "read hardware from this directory instead of /"),
		server:  fs.String("server", "", "gateway URL, http:// or https:// (default: the one given at init); started with --legacy-dir"),
		cacrt:   fs.String("cacert", "", "trust the gateway's TLS certificate from this PEM file (default: the system roots)"),
		timeout: fs.Duration("timeout", 60*time.Second, "give up on the request after this long"),
	}
}

// legacyClient is what a legacy command needs: the agent, an HTTP client,
// the gateway's URL and the clock.
type legacyClient struct {
	id   *agent.Identity
	hc   *http.Client
	base *url.URL
	now  func() time.Time
}

func (f *legacyFlags) open(e *env) (*legacyClient, error) {
	if err := required(f.fs, "data"); err != nil {
		return nil, err
	}
	id, err := loadAgent(*f.data, *f.hwRoot)
	if err != nil {
		return nil, err
	}
	server := *f.server
	if server == "" {
		server = id.ServerURL
	}
	if server == "" {
		return nil, errs.E(errs.Usage, "--server is required: this agent has no server URL configured")
	}
	base, err := parseServerURL("server", server)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if *f.cacrt != "" {
		if tr.TLSClientConfig, err = tlsTrusting(*f.cacrt); err != nil {
			return nil, err
		}
	}
	now, err := e.clock()
	if err != nil {
		return nil, err
	}
	return &legacyClient{id: id, hc: &http.Client{Timeout: *f.timeout, Transport: tr}, base: base, now: now}, nil
}

// do signs a request to target (a path and query on the gateway, or a full
// URL) with the client key alone (gateway.SignLegacyRequest) and sends it.
func (c *legacyClient) do(ctx context.Context, method, target string, body []byte, setHeaders func(*http.Request) error) (*http.Response, error) {
	u, err := agent.RequestURL(c.base, target)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, errs.Wrap(errs.Usage, err, "bad request")
	}
	if setHeaders != nil {
		if err := setHeaders(req); err != nil {
			return nil, err
		}
	}
	if err := gateway.SignLegacyRequest(req, body, c.id.Signer, c.now()); err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "the gateway at %s did not answer", c.base.Redacted())
	}
	return resp, nil
}

func agentLegacyDeposit(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent legacy deposit", "--data DIR (--product P | --license FILE) [--server GATEWAY_URL] [--json]",
		"Deposits the client's license at a gateway's legacy license store (a gateway started\n"+
			"with --legacy-dir), for a client that cannot keep a license file: a PUT of the license\n"+
			"file to "+gateway.LegacyPath+", signed by the license's key (HTTP Message Signatures,\n"+
			"docs/formats.md section 9.7). From then on 'licet agent legacy request' sends requests\n"+
			"signed by the client key alone, which the gateway checks with the deposited license. A\n"+
			"deposit replaces the client's earlier one. 'licet agent legacy request /v1/legacy/license'\n"+
			"shows the deposited license, and with -X DELETE removes it.")
	f := addLegacyFlags(fs)
	product := fs.String("product", "", "deposit the cached license of this product")
	licFile := fs.String("license", "", "deposit this license file (PEM) instead of a cached one")
	asJSON := fs.Bool("json", false, "print the gateway's answer as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if (*product == "") == (*licFile == "") {
		return errs.E(errs.Usage, "give --product (deposit the cached license of that product) or --license FILE, one of them")
	}
	c, err := f.open(e)
	if err != nil {
		return err
	}
	var pem []byte
	if *licFile != "" {
		pem, err = readInput(*licFile)
	} else if pem, err = os.ReadFile(c.id.LicensePath(*product)); os.IsNotExist(err) {
		return errs.E(errs.NotFound, "this agent has no license of %s; get one with 'licet agent license acquire', or give --license FILE", *product)
	}
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "read the license to deposit")
	}
	if err := notPrivateKey(pem, *licFile); err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodPut, gateway.LegacyPath, pem, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var ans gateway.LegacyDeposit
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return printAnswer(e, resp, *asJSON, nil)
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(&ans); err != nil {
		return errs.Wrap(errs.Internal, err, "the gateway's answer to the deposit is not its JSON; is %s a licet gateway started with --legacy-dir?", c.base.Redacted())
	}
	if *asJSON {
		return printJSON(e.stdout, ans)
	}
	what := "Deposited"
	if ans.Replaced {
		what = "Deposited (replacing the client's earlier license)"
	}
	fmt.Fprintf(e.stdout, "%s license %d of %s for client %s at %s; it ends %s.\nRequests signed by the client key alone ('licet agent legacy request') now pass.\n",
		what, ans.LicenseID, ans.ProductID, ans.ClientID, c.base.Redacted(), ans.Expires.Format(time.DateOnly))
	return nil
}

// notPrivateKey refuses a file to deposit that holds a private key (the
// client key given as --license by mistake), before it leaves the machine:
// a deposit sends the file to the gateway as it is.
func notPrivateKey(data []byte, path string) error {
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil
		}
		if strings.Contains(b.Type, "PRIVATE KEY") {
			return errs.E(errs.Usage, "--license %s holds a private key (%s), not a license; it was not sent. Give the license file (PEM certificates: the agent keeps it as licenses/PRODUCT.pem), or --product", path, b.Type)
		}
	}
}

func agentLegacyRequest(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet agent legacy request", "--data DIR [--server GATEWAY_URL] [-X METHOD] [--body @FILE|-|TEXT] [-H 'Name: value'] [--json] URL_PATH",
		"Sends one HTTP request through a licet gateway like 'licet agent request', but signed by the\n"+
			"client key alone, without the license (gateway.SignLegacyRequest: an HTTP Message\n"+
			"Signature, docs/formats.md section 9.7): the gateway checks it with the license the\n"+
			"client deposited ('licet agent legacy deposit'). It prints the application's answer.\n\n"+
			"URL_PATH is the path and query on the gateway (/v1/render?job=1), or a full URL;\n"+
			gateway.LegacyPath+" shows the deposited license (GET) or removes it (-X DELETE).\n"+
			"Exit 0 for a 2xx answer; otherwise the body is still printed and the exit code\n"+
			"follows the answer: 4 for 401/403, 3 for other 4xx, 1 for 5xx or no answer.")
	f := addLegacyFlags(fs)
	rf := addRequestFlags(fs)
	asJSON := fs.Bool("json", false, "print the status and the body as JSON")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	c, err := f.open(e)
	if err != nil {
		return err
	}
	method, data, err := rf.read()
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, method, fs.Arg(0), data, rf.setHeaders)
	if err != nil {
		return err
	}
	return printAnswer(e, resp, *asJSON, func(j map[string]any) { j["client_id"] = c.id.ClientID })
}

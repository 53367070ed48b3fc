package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/licet/licet/api"
	"github.com/licet/licet/auth"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/store"
	"golang.org/x/sync/errgroup"
)

// API token administration. The vendor's commands are 'licet vendor
// apitoken ...' because 'licet vendor token ...' is taken by the keypad
// (OpenPAYGO) tokens; the site's are 'licet site token ...', which is free.

// vendorAPITokenCommand is 'licet vendor apitoken'.
func vendorAPITokenCommand() *command {
	return &command{name: "apitoken", summary: "tokens for the vendor API: create, list, revoke", sub: []*command{
		leaf("create", "make a vendor API token (admin or metrics), printed once", vendorAPITokenCreate),
		leaf("list", "list the vendor API tokens with their expiry and state", vendorAPITokenList),
		leaf("revoke", "revoke a vendor API token at once, in every vendor process", vendorAPITokenRevoke),
	}}
}

// expiryFlag reads --expires: a number of days ("90d"), a Go duration
// ("720h") or a date ("2027-01-31" or RFC 3339), relative to now.
func parseExpires(v string, now time.Time) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(v, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n > 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return d, nil
	}
	for _, layout := range []string{time.RFC3339, time.DateOnly} {
		if t, err := time.Parse(layout, v); err == nil {
			if !t.After(now) {
				return 0, errs.E(errs.Usage, "--expires %s is in the past; give a later date or a validity such as 90d", v)
			}
			return t.Sub(now), nil
		}
	}
	return 0, errs.E(errs.Usage, "--expires %q is not a validity (90d, 720h) or a date (2027-01-31); default %d days", v, int(auth.DefaultExpiry/(24*time.Hour)))
}

// tokenCreateFlags are the flags of the token create commands.
type tokenCreateFlags struct {
	name, scope, product, expires *string
}

func addTokenCreateFlags(fs interface {
	String(string, string, string) *string
}, defaultScope, scopes string) tokenCreateFlags {
	return tokenCreateFlags{
		name:    fs.String("name", "", "what the token is for, e.g. gateway-berlin or prometheus"),
		scope:   fs.String("scope", defaultScope, scopes),
		product: fs.String("product", "", "bind the token to one product (scope upgrade: it upgrades that product's licenses only)"),
		expires: fs.String("expires", "", "validity: days (90d), a duration (720h) or a date (2027-01-31); default 90 days"),
	}
}

func printCreated(e *env, asJSON bool, c api.TokenCreated) error {
	if asJSON {
		return printJSON(e.stdout, c)
	}
	prod := ""
	if c.Product != "" {
		prod = ", product " + c.Product
	}
	fmt.Fprintf(e.stdout, "Token %s %q, scope %s%s, expires %s (shown once; keep it safe):\n  %s\n",
		c.ID, c.Name, c.Scope, prod, c.Expires.UTC().Format(time.RFC3339), c.Token)
	return nil
}

func printTokens(w io.Writer, asJSON bool, list []api.TokenInfo) error {
	if asJSON {
		return printJSON(w, list)
	}
	var rows [][]string
	for _, t := range list {
		exp := "never (rotate it)"
		if t.Expires != nil {
			exp = t.Expires.UTC().Format(time.RFC3339)
		}
		rows = append(rows, []string{t.ID, t.Name, t.Scope, fmt.Sprint(orDash(t.Product)), t.Created.UTC().Format(time.RFC3339), exp, t.Status})
	}
	table(w, []string{"ID", "NAME", "SCOPE", "PRODUCT", "CREATED", "EXPIRES", "STATUS"}, rows)
	return nil
}

func vendorAPITokenCreate(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor apitoken create", "--name NAME [--scope admin|metrics] [--expires 90d] [--data DIR]",
		"Makes a token for the vendor API and prints it once; only its hash is stored. Scope\n"+
			"admin may call everything (a vendor has as many admin tokens as it likes; the one\n"+
			"'licet vendor init' printed is one of them); scope metrics may only read /metrics.\n"+
			"Every token expires (default 90 days). With --data the token is made in the vendor's\n"+
			"database directly, without the API: the way back in when every admin token expired.")
	a := vendorAdmin(e, fs)
	tf := addTokenCreateFlags(fs, auth.ScopeAdmin, "admin or metrics")
	data := fs.String("data", "", "make the token in this vendor data directory's database, without the API")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "name"); err != nil {
		return err
	}
	now := time.Now()
	exp, err := parseExpires(*tf.expires, now)
	if err != nil {
		return err
	}
	if *tf.scope == auth.ScopeUpgrade {
		return errs.E(errs.Usage, "--scope upgrade is a site token scope ('licet site token create'); vendor tokens are admin or metrics")
	}
	if *data != "" {
		svc, err := clearinghouse.Open(ctx, *data, "", store.OpenVendor)
		if err != nil {
			return err
		}
		defer svc.Close()
		secret, t, err := auth.Create(ctx, svc.Store, *tf.name, auth.Options{Scope: *tf.scope, Product: *tf.product, Expiry: exp}, now)
		if err != nil {
			return err
		}
		return printCreated(e, *a.json, api.TokenCreated{TokenInfo: api.NewTokenInfo(t, now), Token: secret})
	}
	c, err := a.client(e).CreateToken(ctx, api.TokenRequest{Name: *tf.name, Scope: *tf.scope, Product: *tf.product, ExpiresIn: int64(exp / time.Second)})
	if err != nil {
		return err
	}
	return printCreated(e, *a.json, *c)
}

func vendorAPITokenList(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor apitoken list", "", "Lists the vendor API tokens (never their secrets): scope, expiry and state.")
	a := vendorAdmin(e, fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	list, err := a.client(e).ListTokens(ctx)
	if err != nil {
		return err
	}
	return printTokens(e.stdout, *a.json, list)
}

func vendorAPITokenRevoke(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor apitoken revoke", "TOKEN-ID",
		"Revokes a vendor API token (its ID from 'licet vendor apitoken list'). Every vendor\nprocess sharing the database refuses it from the next request on.")
	a := vendorAdmin(e, fs)
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	t, err := a.client(e).RevokeToken(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, t)
	}
	fmt.Fprintf(e.stdout, "Token %s %q revoked on %s.\n", t.ID, t.Name, t.Revoked.UTC().Format(time.RFC3339))
	return nil
}

func siteTokenCreate(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site token create", "--data DIR --name NAME [--scope upgrade|admin|metrics] [--product P] [--expires 90d]",
		"Makes a token for the site API and prints it once; only its hash is stored.\n"+
			"Scope upgrade may only call POST /v1/upgrades: give it to a gateway\n"+
			"('licet gateway --site-token-file'), which lets clients be upgraded only after they\n"+
			"proved they hold their license's key; --product binds it to one product. Scope\n"+
			"metrics may only read /metrics. Scope admin may call everything. Every token\n"+
			"expires (default 90 days).")
	sf := addSiteFlags(fs)
	tf := addTokenCreateFlags(fs, auth.ScopeUpgrade, "upgrade, admin or metrics")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data", "name"); err != nil {
		return err
	}
	srv, closeFn, err := sf.open(ctx, e)
	if err != nil {
		return err
	}
	defer closeFn()
	now := srv.Now // e.clock(), read by open
	exp, err := parseExpires(*tf.expires, now())
	if err != nil {
		return err
	}
	secret, t, err := auth.Create(ctx, srv.Store, *tf.name, auth.Options{Scope: *tf.scope, Product: *tf.product, Expiry: exp}, now())
	if err != nil {
		return err
	}
	return printCreated(e, *sf.json, api.TokenCreated{TokenInfo: api.NewTokenInfo(t, now()), Token: secret})
}

func siteTokenList(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site token list", "--data DIR", "Lists the site API tokens (never their secrets): scope, product, expiry and state.")
	sf := addSiteFlags(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	srv, closeFn, err := sf.open(ctx, e)
	if err != nil {
		return err
	}
	defer closeFn()
	now := srv.Now // e.clock(), read by open
	list, err := srv.Store.Tokens(ctx)
	if err != nil {
		return err
	}
	out := make([]api.TokenInfo, 0, len(list))
	for _, t := range list {
		out = append(out, api.NewTokenInfo(t, now()))
	}
	return printTokens(e.stdout, *sf.json, out)
}

func siteTokenRevoke(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet site token revoke", "--data DIR TOKEN-ID",
		"Revokes a site API token (its ID from 'licet site token list'). Every site process\nsharing the database refuses it from the next request on.")
	sf := addSiteFlags(fs)
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	srv, closeFn, err := sf.open(ctx, e)
	if err != nil {
		return err
	}
	defer closeFn()
	now := srv.Now // e.clock(), read by open
	t, err := srv.Store.RevokeToken(ctx, fs.Arg(0), now())
	if err != nil {
		return err
	}
	if *sf.json {
		return printJSON(e.stdout, api.NewTokenInfo(t, now()))
	}
	fmt.Fprintf(e.stdout, "Token %s %q revoked on %s.\n", t.ID, t.Name, t.Revoked.UTC().Format(time.RFC3339))
	return nil
}

// vendorRootCommand is 'licet vendor root'.
func vendorRootCommand() *command {
	return &command{name: "root", summary: "the vendor root key", sub: []*command{
		leaf("export", "move the root key out of the data directory, for offline storage", vendorRootExport),
	}}
}

func vendorRootExport(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor root export", "--data DIR -o FILE",
		"Writes the vendor root key to FILE (which must not exist; mode 0600), reads it back to\n"+
			"check it was written whole, and then removes it from the data directory. The vendor\n"+
			"server runs without it: the issuing CA certifies sites. Keep FILE offline (and a\n"+
			"copy); it is needed only to certify a new issuing, clearinghouse, provisioning or\n"+
			"distribution key. Copy it back as DIR/root.key for that, and export it again afterwards.\n"+
			"Before the key leaves, software distribution is made ready to run without it: the\n"+
			"distribution key is certified if DIR has none, and update role keys that older licet\n"+
			"derived from the root key move to it.")
	data := fs.String("data", "", "vendor data directory")
	out := fs.String("o", "", "file to write the root key to, e.g. on a USB stick kept in a safe")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "data", "o"); err != nil {
		return err
	}
	if err := prepareDistribution(ctx, *data); err != nil {
		return err
	}
	if err := clearinghouse.ExportRoot(*data, *out); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "The root key is now in %s and no longer in %s.\n", *out, *data)
	fmt.Fprintf(e.stderr, "WARNING: %s is the vendor root key. Whoever holds it can certify license servers\n"+
		"and clearinghouses for your vendor; whoever loses it cannot renew the issuing CA. Keep it\n"+
		"offline, with a second copy, and delete every other copy (backups of %s included).\n", *out, *data)
	return nil
}

// warnRootOnline logs where the vendor's root key stands at start.
func warnRootOnline(log interface{ Warn(string, ...any) }, svc *clearinghouse.Service, data string) {
	switch {
	case svc.Issuing == nil:
		log.Warn("the vendor root predates the issuing CA and certifies sites itself, so root.key must stay online; a new vendor root is needed to keep it offline", "data", data)
	case !svc.RootOffline():
		log.Warn("root.key is in the data directory; move it offline with 'licet vendor root export --data DIR -o FILE'", "data", data)
	}
}

// serveWithMetrics serves s on ln until ctx ends and, with metricsAddr, its
// /metrics without a token on a listener of its own (--metrics-listen), for a
// monitoring network that the API's clients do not reach.
func serveWithMetrics(ctx context.Context, e *env, ln net.Listener, s *api.Server, metricsAddr string, log *slog.Logger) error {
	if metricsAddr == "" {
		return api.Serve(ctx, ln, s, log)
	}
	mln, err := net.Listen("tcp", metricsAddr)
	if err != nil {
		ln.Close()
		return errs.Wrap(errs.Internal, err, "cannot listen on --metrics-listen %s; choose another address", metricsAddr)
	}
	fmt.Fprintf(e.stdout, "metrics listening on http://%s/metrics\n", mln.Addr())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return api.Serve(gctx, ln, s, log) })
	g.Go(func() error { return api.Serve(gctx, mln, s.MetricsHandler(), log) })
	return g.Wait()
}

// publicURL is u without its user information, for the places where a URL
// is shown to others: a WWW-Authenticate challenge, error texts, logs.
func publicURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

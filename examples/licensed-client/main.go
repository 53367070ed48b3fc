// Command licensed-client is a small program that calls an application
// behind a licet gateway, licensed: it uses package agent to present the
// machine's license, to fetch one through the gateway the first time (the
// license server challenges this very executable, so register it with the
// site first), to renew it before it expires and to pick up an upgraded one.
//
// See README.md beside this file for the whole demo.
//
//	licensed-client --agent DIR --gateway URL --product P --software-id ID [--cacert FILE] [PATH]
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/licet/licet/agent"
	"github.com/licet/licet/licensing/softid"
)

func main() {
	agentDir := flag.String("agent", "agent", "the agent directory ('licet agent init --data DIR')")
	gatewayURL := flag.String("gateway", "", "the licet gateway in front of the application (default: the agent's server URL)")
	product := flag.String("product", "demo-app", "the product the gateway requires a license for")
	software := flag.String("software-id", "non-windows/7/312", "this program's software ID, as registered with the site")
	image := flag.String("image", "", "the file the license server's challenge is computed over (default: this executable)")
	cacert := flag.String("cacert", "", "PEM file with the gateway's TLS certificate, for a gateway with a private CA")
	hwRoot := flag.String("hw-root", "", "read the hardware identity from this directory instead of / (tests, containers)")
	flag.Parse()
	path := "/"
	if flag.NArg() > 0 {
		path = flag.Arg(0)
	}
	if err := run(*agentDir, *gatewayURL, *product, *software, *image, *cacert, *hwRoot, path); err != nil {
		fmt.Fprintln(os.Stderr, "licensed-client:", err)
		os.Exit(1)
	}
}

func run(agentDir, gatewayURL, product, software, image, cacert, hwRoot, path string) error {
	// 1. The machine's agent identity: its keys, its client ID, and the
	//    license cache. Load refuses a directory copied from another machine.
	id, err := agent.LoadWith(agentDir, agent.LoadOptions{HWRoot: hwRoot})
	if err != nil {
		return err
	}
	sid, err := softid.Parse(software)
	if err != nil {
		return err
	}

	// 2. Trust the gateway's TLS certificate if it comes from a private CA.
	var tlsConf *tls.Config
	if cacert != "" {
		pem, err := os.ReadFile(cacert)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s holds no PEM certificate", cacert)
		}
		tlsConf = &tls.Config{RootCAs: pool}
	}

	// 3. The licensed HTTP client. Over https it presents the license as its
	//    TLS client certificate; over http it signs each request instead.
	//    Without a license it runs the grant through the gateway (challenge
	//    over the image, grant, verification against the pinned vendor root)
	//    and caches the result in the agent directory.
	c, err := agent.NewClient(id, agent.ClientOptions{
		Server:     gatewayURL, // empty: the agent's configured server
		Product:    product,
		SoftwareID: sid,
		Image:      image, // empty: this executable
		TLS:        tlsConf,
		Timeout:    30 * time.Second,
	})
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()

	// 4. An ordinary request. Do adds the credential, fetches or renews the
	//    license when needed and retries once after a 401 license_required
	//    or license_expired.
	ctx := context.Background()
	req, err := c.NewRequest(ctx, "GET", path, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}

	// 5. The license it used, verified offline against the vendor root.
	if lic := c.License(); lic != nil {
		fmt.Fprintf(os.Stderr, "license %d of %s for %s, valid until %s (temporary: %v)\n",
			lic.LicenseID, lic.ProductID, lic.ClientID, lic.NotAfter.Format(time.RFC3339), lic.Temporary())
	}
	fmt.Fprintf(os.Stderr, "%s %s: %s\n", req.Method, req.URL, resp.Status)
	os.Stdout.Write(body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the gateway answered %s", resp.Status)
	}
	return nil
}

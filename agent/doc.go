// Package agent is licet's client: the process on each client machine that
// obtains seat licenses from its site's license server, answers platform
// challenges and keeps its state in a directory of its own.
//
// The agent's identity (identity.go) lives in that directory:
//
//	client.key       Ed25519 signing key (PKCS#8 PEM, mode 0600); its public
//	                 key defines the client ID
//	client-hpke.key  HPKE private key licenses are encrypted to (mode 0600)
//	hardware.json    the hwid.Fingerprint of the machine at init (mode 0600)
//	agent.json       configuration: platform, server URL
//
// Init creates it once; Load reads it back and refuses to run if the
// hardware shows that the directory was copied to another machine.
//
// Licenses (license.go) are cached under licenses/, one PEM file per product,
// next to root.crt, the vendor root pinned on first use. A Client
// (client.go) calls an application behind a licet gateway with them: it
// presents the cached license as the TLS client certificate or in signed
// headers, fetches one through the gateway when it has none or the gateway
// refuses it, renews it before it expires and installs an upgrade the
// gateway hands back.
package agent

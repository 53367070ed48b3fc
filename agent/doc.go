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
package agent

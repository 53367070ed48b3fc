// Package gateway is the license check that sits in front of an application
// server: the intermediate server of licet. A request reaches the application
// only with a valid, unexpired license for the application's product, checked
// offline against the vendor root with package verify.
//
// Use it as Go middleware inside the application,
//
//	v, _ := verify.New(rootPEM)
//	h := gateway.Middleware(v, gateway.Options{Product: "acme-cad", SiteURL: "https://licenses.example.com"})(app)
//
// where the handler reads the verified license with LicenseFrom(r.Context()),
// or as a reverse proxy in front of an application written in anything
// (NewProxy), which reads the Licet-Client-* and Licet-License-* headers.
//
// # Presenting a license
//
// A client presents its license in one of two ways.
//
// As the TLS client certificate chain: the license file (license
// certificate, then site certificate) and the client's key, as in
// tls.X509KeyPair(licenseFile, keyFile). The TLS handshake proves that the
// client holds the license's key; the gateway verifies the chain against the
// vendor root, the product and the time. Serve with TLSConfig (ClientAuth
// tls.RequestClientCert) rather than tls.VerifyClientCertIfGiven: the
// verification happens in the gateway either way, but then a client whose
// license has expired still connects and is told, in a 401 answer, where to
// renew it, instead of failing the handshake with a bare TLS alert. When a
// TLS client certificate is present it is the credential; the headers below
// are then ignored (and removed).
//
// As headers, for clients that cannot do mutual TLS: the license file in
//
//	Licet-License: <base64 (standard alphabet, padded, no line breaks) of the license file (PEM)>
//
// and the request signed with the license's key in HTTP Message Signatures
// (RFC 9421), with the body's SHA-256 in Content-Digest (RFC 9530):
//
//	Content-Digest: sha-256=:<base64 of the SHA-256 of the body>:
//	Signature-Input: licet=("@method" "@authority" "@path" "@query" "content-digest" ...);created=<unix seconds>;nonce="<random>";keyid="<client ID>";alg="ed25519";tag="licet"
//	Signature: licet=:<base64 of the Ed25519 signature>:
//
// SignRequest writes them. The signature must cover the method, the
// authority, the path, the query and the Content-Digest, and every header
// of CoveredHeaders (Content-Type, Cookie, X-HTTP-Method-Override) that the
// request carries, so that a proxy on a plain HTTP path can change none of
// them; the tag must be "licet". docs/formats.md (section 9.6) specifies the
// signature base, the parameters and the checks, with a test vector
// (TestMessageSignatureVector checks it), for clients in other languages.
//
// Replay: created must be within Options.MaxSkew (default 60 seconds) of
// the gateway's clock, either way, and expires, if given, not past; a nonce
// is accepted once: the gateway remembers every nonce it accepted, per
// client, for as long as its created is acceptable. The signed authority
// must be one of Options.PublicNames (licet gateway --public-name, default
// its listen address), else the request is refused with wrong_gateway: a
// request signed for one gateway does not pass another. A proxy in front of
// the gateway must pass the Host header through unchanged (nginx:
// proxy_set_header Host $http_host). In header mode the gateway reads the
// whole body (at most Options.MaxBody, default 1 MiB; larger bodies get 413)
// to hash it, then hands it on; clients that stream large bodies should use
// mutual TLS.
//
// # The Licet-Signature scheme
//
// Before RFC 9421, licet signed requests with one header, which does not
// cover other headers. A gateway accepts it only with
// Options.AcceptLicetSignature (licet gateway --accept-licet-signature), for
// a transition while clients are updated (SignRequestV1 writes it):
//
//	Licet-Signature: keyid=<client ID>,ts=<unix seconds>,nonce=<nonce>,sig=<signature>
//
// The fields are separated by commas (optional spaces or tabs around each
// field), each name=value, each exactly once, in any order; unknown fields
// are refused. keyid is the client ID; ts the time of signing, decimal Unix
// seconds, within the skew; nonce 16 to 64 characters of the base64url
// alphabet, fresh for each request; sig the Ed25519 signature by the
// license's key, standard base64 with padding (88 characters), of these
// seven lines joined by "\n" (a single line feed, no trailing one):
//
//	licet/v1 request
//	<method>          as sent, e.g. POST
//	<request target>  the path and query exactly as sent on the request line (origin form), e.g. /v1/render?job=42
//	<host>            the Host header (HTTP/1.1) or :authority (HTTP/2) as sent, ASCII letters lowercased, with the port if sent
//	<ts>              the ts field, as sent
//	<nonce>           the nonce field, as sent
//	<body hash>       lowercase hex of the SHA-256 of the request body as sent (after de-chunking, before any content decoding);
//	                  of an empty body: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
//
// The public names apply to its host as well.
//
// Test vector (TestSignatureVectorV1 checks it): the Ed25519 key with seed
// 00 01 02 ... 1f, whose client ID is client-56475aa75463474c; method POST,
// target /v1/render?job=42, host app.example.com, ts 1767225600, nonce
// AAECAwQFBgcICQoLDA0ODw, body {"scene":1}. The message, with \n for the
// line feeds, is
//
//	licet/v1 request\nPOST\n/v1/render?job=42\napp.example.com\n1767225600\nAAECAwQFBgcICQoLDA0ODw\ned95557e5e74b2039de6c31045e8679922cee52b6f479ef762f61d919a8a15de
//
// and the header
//
//	Licet-Signature: keyid=client-56475aa75463474c,ts=1767225600,nonce=AAECAwQFBgcICQoLDA0ODw,sig=meeX2LKw795BRwD/020yKz3AzKzfC4M/A6bUoiV9YH8UvBR2G1JrN8BqY9/trWrGcYItnbnqrHKysYBmoNX8AA==
//
// # What the application sees
//
// On success the gateway removes the headers a client could use to pass
// itself off as someone else: every incoming header whose name, compared
// without regard to case and with "_" counted as "-", is Licet-License,
// Licet-Signature or begins with Licet-Client- or Licet-License- (and such
// names in the Connection header's list, so that a proxy behind the gateway
// cannot be told to drop the verified headers as hop-by-hop; a request that
// declares such a trailer is refused). The handler gets a copy of the
// request with these headers set:
//
//	Licet-Client-Id          the client ID
//	Licet-License-Id         the license ID (decimal)
//	Licet-License-Product    the product ID
//	Licet-License-Version    the product version
//	Licet-License-Platform   the platform
//	Licet-License-Features   the features, comma-separated, no spaces (empty if none)
//	Licet-License-Expires    the license's NotAfter, RFC 3339 in UTC (valid strictly before it)
//	Licet-License-Temporary  "true" or "false"
//	Licet-License-Site       the ID of the site that issued the license
//	Licet-License-Customer   the customer the vendor certified that site for
//
// and the *verify.License in its context (LicenseFrom).
//
// # Refusals
//
// Errors are JSON, {"error":{"code":...,"message":...}}, with the codes of
// package errs, as every licet server writes them. Every refused credential
// is 401 "unauthenticated" with a message that says what is wrong and what
// to do, and a challenge
//
//	WWW-Authenticate: Licet realm="<product>", site="<Options.SiteURL>", error="<reason>"
//
// that tells the client where to get a license (site is left out when
// Options.SiteURL is empty). The reason is for programs: license_required
// (none presented), invalid_license (malformed, not from a certified site,
// altered), license_expired (a temporary license that expired included),
// license_not_yet_valid, wrong_product, wrong_client (the license belongs to
// another key than the one that signed), invalid_signature (a missing,
// malformed or non-verifying signature, or a header it should cover and does
// not), stale_request (created or ts outside the allowed skew, or expires
// past), replayed_request (a nonce already used), wrong_gateway (signed
// for another authority than the gateway's public names), not_sold (the
// license lies outside the clearinghouse-signed statement of its pack: a
// product, feature, serial or time the vendor never sold, or no statement
// at all without Options.AllowUnbound) and wrong_site (a site outside
// Options.Sites and Options.Customers).
//
// A license for another product is 401, not 403: the client is refused for
// want of a credential for this product, and the remedy is the same as for
// no license at all, to get one from the license server the challenge names.
// A body over Options.MaxBody is 413 "too_large"; a gateway whose nonce
// memory is full (Options.MaxNonces) answers 429 "rate_limited" with
// Retry-After rather than forget nonces early, and so does a gateway whose
// memory holds a client's share already (Options.MaxNoncesPerClient): one
// license holder cannot fill it for everyone.
//
// # Cost
//
// A gateway remembers the licenses it has verified (by the SHA-256 of the
// certificate or of the Licet-License header, up to 16384, each until its
// chain expires), so after a client's first request its license costs a hash
// and a map lookup, not an Ed25519 verification. A request over mutual TLS
// then costs a few microseconds; a signed request costs the Ed25519
// verification of its signature, which is the price of not using mutual TLS.
//
// # Legacy clients
//
// A legacy client cannot keep a license file (nor produce a hardware system
// ID), but holds an Ed25519 key and an HPKE key like any agent. A gateway
// with a legacy license store (Options.Legacy, a LegacyStore; licet gateway
// --legacy-dir DIR) keeps its license for it.
//
// First the client acquires a license through the gateway's relay as usual;
// the license file is sealed to its HPKE key, so only it can open it. Then
// it deposits the opened license file at the gateway (LegacyPath, served by
// LegacyStore.Handler), with no Licet-License header:
//
//	PUT /v1/legacy/license
//	Content-Digest, Signature-Input, Signature: as above, keyid its client ID
//
//	<the license file, PEM>
//
// The deposit is checked exactly as a signed request presenting that
// license: the license verifies against the vendor root, is for the
// gateway's product and is valid now; the keyid is its client ID; the
// signature over the request (body included) is by the license's key; the
// nonce is fresh. So nobody can deposit a license for a key they do not
// hold. The answer is 201 (stored) or 200 (replaced an earlier one) with a
// JSON summary of the license (client_id, license_id, product_id, expires,
// temporary, replaced).
//
// From then on the client sends signed requests without Licet-License
// (SignLegacyRequest). A signed request without Licet-License
// is checked as a signed request with the license stored for its keyid:
// signature by that license's key, ts, nonce, product, expiry. One client
// cannot use another's license: the signature must verify under the stored
// license's key, which only that client holds.
//
// GET /v1/legacy/license, signed the same way, answers the client's stored
// license file; DELETE removes it (204). A keyid with no stored license is
// 401 license_required; a stored license that has expired is 401
// license_expired, with a message telling the client to acquire a license
// and deposit it again. The keyid must be exactly a client ID ("client-" and
// 16 lowercase hex digits), which is also the name of the license's file in
// the store's directory: anything else is 401 invalid_signature and never
// touches the file system.
//
// Upgrades (see Options.Upgrade): a deposit, and the GET and DELETE of the
// store's endpoints, never exchange a license: a license deposited must be
// valid now and not older than Options.MinVersion (else 401
// license_expired or old_version). On the way to the application, a stored
// license that has expired or is too old is exchanged like any other, and
// the upgraded license then replaces the stored file (unless the client
// deposited or deleted meanwhile), so the license server is asked once.
//
// A deposit replaces the stored license of the same client with any license
// that passes the checks above, not only one with a later NotAfter: only the
// key holder can deposit, and a client must be able to go from a temporary
// license to a permanent one that expires earlier, or back to a current
// license after the site reissued it. A license of another client (another
// key) can never replace it, since the file is named by the verified client
// ID.
//
// The store writes each license atomically (a temporary file, fsync, rename,
// mode 0600) and keeps what it read or wrote in memory, so a stored license
// costs a map lookup on top of the ordinary signed-request check. One
// gateway process owns a directory, and a directory holds the licenses of
// the gateway's one product; a new LegacyStore on the same directory, after
// a restart, keeps the licenses. The store's endpoints have a nonce memory
// of their own, so a deposit cannot be replayed either.
//
// System IDs: a legacy client has no hardware system ID to send in its grant
// request, so it sends an empty one or one it makes up; the gateway cannot
// vouch for its hardware. The site's rule of one temporary license per
// system then holds per client key (per made-up system ID) rather than per
// machine, which the site's administrator should know when enabling
// temporary licenses for products that legacy clients use. A legacy client
// should make up one system ID, random, when it creates its key, and keep
// it: the site keeps the temporary licenses by system ID, so all clients
// that send an empty one share a single temporary license per product (the
// first one to ask gets it, the others are refused).
package gateway

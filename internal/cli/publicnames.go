package cli

import (
	"net"
	"strings"

	"github.com/licet/licet/errs"
)

// stringList is a repeatable string flag.
type stringList []string

// String returns the values, comma-separated.
func (l *stringList) String() string { return strings.Join(*l, ",") }

// Set adds a value.
func (l *stringList) Set(v string) error {
	if strings.TrimSpace(v) == "" {
		return errs.E(errs.Usage, "an empty value; give a host or host:port")
	}
	*l = append(*l, v)
	return nil
}

// defaultPublicNames are the names a gateway listening on addr (as
// listened, with the port chosen) answers signed requests for when no
// --public-name is given: addr itself, and, when it listens on all
// interfaces or on loopback, the loopback names with its port.
func defaultPublicNames(addr string) []string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return []string{addr}
	}
	names := []string{addr}
	ip := net.ParseIP(host)
	if host == "" || ip != nil && (ip.IsUnspecified() || ip.IsLoopback()) {
		for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
			if n := net.JoinHostPort(h, port); n != addr {
				names = append(names, n)
			}
		}
	}
	return names
}

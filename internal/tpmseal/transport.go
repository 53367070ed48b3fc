package tpmseal

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"

	"github.com/licet/licet/errs"
)

// DefaultDevice is the kernel's resource-managed TPM 2.0 device.
const DefaultDevice = "/dev/tpmrm0"

// commandTimeout bounds one command to a TPM reached over a socket.
const commandTimeout = 30 * time.Second

// Available reports whether path names a TPM that can be opened: a device
// file, a unix socket, or "tcp:HOST:PORT". It does not talk to the TPM.
func Available(path string) bool {
	if strings.HasPrefix(path, "tcp:") {
		return true
	}
	_, err := os.Stat(strings.TrimPrefix(path, "unix:"))
	return err == nil
}

// open connects to the TPM named by path:
//   - "tcp:HOST:PORT": a TPM simulator's command port speaking the raw TPM
//     protocol (swtpm socket --server type=tcp);
//   - "unix:PATH", or PATH naming a unix socket: the same over a unix
//     socket (swtpm socket --server type=unixio);
//   - any other PATH: a TPM device (/dev/tpmrm0).
func open(path string) (transport.TPMCloser, error) {
	var network, addr string
	switch {
	case strings.HasPrefix(path, "tcp:"):
		network, addr = "tcp", strings.TrimPrefix(path, "tcp:")
	case strings.HasPrefix(path, "unix:"):
		network, addr = "unix", strings.TrimPrefix(path, "unix:")
	default:
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			network, addr = "unix", path
		}
	}
	if network == "" {
		t, err := linuxtpm.Open(path)
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "open the TPM %s (is it present, and may this user open it? root or the tss group)", path)
		}
		return t, nil
	}
	c, err := net.DialTimeout(network, addr, commandTimeout)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "connect to the TPM at %s (is the TPM simulator running?)", path)
	}
	return transport.FromReadWriteCloser(&framed{c: c}), nil
}

// framed carries raw TPM commands over a stream: a response is read whole
// (its size is in its header), however the stream splits it.
type framed struct {
	c net.Conn
}

func (f *framed) Write(p []byte) (int, error) {
	f.c.SetDeadline(time.Now().Add(commandTimeout))
	return f.c.Write(p)
}

// Read reads one whole response: tag (2), size (4), code (4), then the rest.
func (f *framed) Read(p []byte) (int, error) {
	var hdr [10]byte
	if _, err := io.ReadFull(f.c, hdr[:]); err != nil {
		return 0, err
	}
	size := int(binary.BigEndian.Uint32(hdr[2:6]))
	if size < len(hdr) || size > len(p) {
		return 0, errs.E(errs.Internal, "the TPM sent a response of %d bytes (at most %d expected)", size, len(p))
	}
	n := copy(p, hdr[:])
	if _, err := io.ReadFull(f.c, p[n:size]); err != nil {
		return 0, err
	}
	return size, nil
}

func (f *framed) Close() error { return f.c.Close() }

package tpmseal

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// A TPM reached over TCP whose response arrives in pieces: the framing
// reads it whole.
func TestTCPTransportSplitResponse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		c.Read(buf) // the GetRandom command
		// TPM_ST_NO_SESSIONS, size 16, TPM_RC_SUCCESS, TPM2B of 4 bytes.
		rsp := []byte{0x80, 0x01, 0, 0, 0, 16, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4}
		for _, part := range [][]byte{rsp[:3], rsp[3:11], rsp[11:]} {
			c.Write(part)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	tp, err := open("tcp:" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	r, err := tpm2.GetRandom{BytesRequested: 4}.Execute(tp)
	if err != nil {
		t.Fatalf("GetRandom over a split response: %v", err)
	}
	if !bytes.Equal(r.RandomBytes.Buffer, []byte{1, 2, 3, 4}) {
		t.Fatalf("got %x", r.RandomBytes.Buffer)
	}
}

func TestOpenMissingDevice(t *testing.T) {
	if _, err := open("/nonexistent/tpmrm0"); err == nil || !bytes.Contains([]byte(err.Error()), []byte("open the TPM /nonexistent/tpmrm0")) {
		t.Fatalf("a missing device: %v", err)
	}
	if Available("/nonexistent/tpmrm0") {
		t.Fatal("a missing device is available")
	}
}
